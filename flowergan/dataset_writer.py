"""A labelled synthetic dataset: `sample.py --dataset=DIR`, in the layout `folder:DIR` reads.

`write_dataset` generates `num_per_class` images of every class of a trained model, the images
of one `sampling.sample_grid` request of them all, and writes them as `DIR/<class>/<index>.png`
with the noise they came from (`noise.npy`) and a manifest (`manifest.json`). The folder is
written under a temporary name beside `DIR` and renamed when complete (`storage.new_folder`), so
an interrupt (Ctrl-C, SIGTERM, a full disk) leaves no part of it and the same command can be run
again; a `kill -9` can leave only the hidden `.DIR.tmp-*` folder, which no command reads.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from flowergan import __version__, config_checks, imaging, sampling, storage

if TYPE_CHECKING:
  from flowergan.trained import TrainedModel

DATASET_MANIFEST = "manifest.json"
DATASET_NOISE = "noise.npy"
DATASET_CHUNK = 4 * 49  # images generated and written per step (4 of sampling's batches)
# The noise of every image is drawn at once and saved as one noise.npy: 10,000 images of each
# of 100 classes are 512 MB of it. Far larger counts fail deep inside XLA, so they are refused.
MAX_PER_CLASS = 10_000


def check_dataset_request(out_dir: str, num_per_class: int) -> None:
  """Refuses a dataset folder that exists and is not empty (or cannot be made: a file, a FIFO,
  a read-only folder, a link out of its folder), and counts outside 1 to `MAX_PER_CLASS` (one
  line)."""
  if not 1 <= num_per_class <= MAX_PER_CLASS:
    raise imaging.ImageError(
        f"--num_per_class must be at least 1 and at most {MAX_PER_CLASS} (the noise of every "
        f"image is held in memory), got {num_per_class}: for more, write several datasets "
        "with other --seed values."
    )
  if os.path.lexists(out_dir) and (not os.path.isdir(out_dir) or os.listdir(out_dir)):
    raise imaging.ImageError(
        f"{out_dir} already exists and is not an empty folder: choose a new folder for the "
        "dataset (nothing is overwritten)."
    )
  problem = storage.destination_problem(out_dir, folder=True, new=True)
  if problem:
    raise imaging.ImageError(
        f"cannot write the dataset to {out_dir}: {problem}; choose a new folder for the dataset."
    )


def write_dataset(
    model: TrainedModel,
    out_dir: str,
    num_per_class: int,
    *,
    seed: int = 0,
    truncation: float | None = None,
    use_ema: bool = True,
    workdir: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
  """`num_per_class` generated images of each class as `out_dir/<class>/<index>.png`.

  The layout `data.source='folder:DIR'` reads (`data_sources.load_images`), so the images train a
  classifier or another run as they are. The noise is `sampling.noise(seed, C * N, ...)` in
  class-major order (row `c * N + i` is `<class c>/<i>.png`), the request of `sample.py
  --label=all --num=N --seed=SEED`, so the images are that request's, bit for bit; it is saved
  as `out_dir/noise.npy` and described by `out_dir/manifest.json` (written last: a folder
  without it is incomplete). Generated and written `DATASET_CHUNK` images at a time, calling
  `progress(done, total)` after each, into a temporary folder renamed to `out_dir` at the end:
  an interrupt leaves nothing. An existing non-empty `out_dir` is refused. Returns the manifest.
  """
  check_dataset_request(out_dir, num_per_class)
  names = config_checks.check_class_names(model.class_names, "the checkpoint's class names")
  z = sampling.noise(seed, len(names) * num_per_class, model.z_dim, truncation)
  manifest = {
      "format": "flowergan labelled synthetic dataset (folder:DIR layout)",
      "flowergan_version": __version__,
      "workdir": workdir,
      "step": int(model.step),
      "use_ema": bool(use_ema),
      "seed": int(seed),
      "truncation": truncation,
      "num_per_class": int(num_per_class),
      "class_names": names,
      "image_size": int(model.image_size),
      "noise_file": DATASET_NOISE,
      "noise_order": "class-major: row c * num_per_class + i is <class_names[c]>/<i>.png",
  }
  try:
    with storage.new_folder(out_dir, what="--dataset") as tmp:
      _write_files(tmp, model, z, manifest, progress)
  except storage.StorageError as e:
    raise imaging.ImageError(str(e)) from None
  except OSError as e:
    raise imaging.ImageError(f"cannot write the dataset to {out_dir} ({e.strerror}).") from None
  return manifest


def _write_files(folder: str, model: TrainedModel, z, manifest: dict, progress) -> None:
  """The dataset of `manifest` in the new (temporary) `folder`: images, noise, manifest."""
  names, num_per_class = manifest["class_names"], manifest["num_per_class"]
  width = max(4, len(str(num_per_class - 1)))
  for name in names:
    os.mkdir(os.path.join(folder, name))  # inside the folder new_folder just made
  storage.save_npy(os.path.join(folder, DATASET_NOISE), np.asarray(z, np.float32))
  done = 0
  for c, name in enumerate(names):
    for start in range(0, num_per_class, DATASET_CHUNK):
      rows = z[c * num_per_class + start :][: min(DATASET_CHUNK, num_per_class - start)]
      samples = sampling.sample_grid(model, name, len(rows), z=rows, use_ema=manifest["use_ema"])
      for i, image in enumerate(imaging.to_uint8(samples.images)):
        imaging.save_png(image, os.path.join(folder, name, f"{start + i:0{width}d}.png"))
      done += len(rows)
      if progress:
        progress(done, len(z))
  data = json.dumps(manifest, indent=1).encode()
  storage.write_bytes(os.path.join(folder, DATASET_MANIFEST), data)


def print_progress(done: int, total: int) -> None:
  """One progress line on stderr, rewritten in place; a newline when done."""
  end = "\n" if done >= total else ""
  print(f"\r{done}/{total} images written", end=end, file=sys.stderr, flush=True)
