"""The images of `data.source`, decoded to arrays: a folder, a prepared TFDS data set or the
synthetic flowers (this module was `flowergan.imagesets`; `flowergan.imaging` encodes the images
flowergan writes).

`load_images(data_config)` decodes every image of this process's shard ONCE with PIL (thread
pool, `flowergan.decoding`): shorter side resized to `image_size` (LANCZOS, antialiased), then
centre-cropped. Result: uint8 (N, S, S, 3), int32 labels, class names. Sources:

* `folder:PATH`: `PATH/<class>/**/*.{jpg,jpeg,png,bmp,gif,webp}` (`flowergan.folder_source`).
* `tfds:NAME`: an already prepared TFDS data set, never downloaded (`flowergan.tfds_source`).
* `synthetic`: `flowergan.synthetic` renders the set once into
  `cache_dir/synthetic-<seed>-<n>-<size>/<class>/*.png` (atomically, through
  `storage.atomic_directory`) and it is then read as a folder.

Class names become file names: unusable ones (`config_checks.check_class_names`) are refused,
whatever the source. Errors are `data_errors.DataError`, one line each.

PIL and numpy only: TensorFlow (and tensorflow_datasets) is imported by the TFDS source alone,
when it reads a data set, so evaluating or sampling from folder / synthetic data never loads it.
"""

from __future__ import annotations

import os
import time

from absl import logging

from flowergan import config_checks, data_errors, default_config, folder_source, storage
from flowergan import synthetic, tfds_source


def load_images(data_config, *, process_index: int = 0, process_count: int = 1):
  """Decoded, resized (shorter side to `image_size`, centre crop), un-augmented images.

  Returns (uint8 (N, S, S, 3), int32 labels (N,), class_names). With several processes, each
  gets a disjoint shard of every class.
  """
  if process_count < 1 or not 0 <= process_index < process_count:
    raise data_errors.data_error(
        f"Invalid process_index={process_index} / process_count={process_count}."
    )
  source = str(data_config.source)
  size = int(data_config.image_size)
  if size < 1:
    raise data_errors.data_error(f"data.image_size must be a positive integer, got {size}.")
  classes = tuple(data_config.classes or ())
  # Before anything is read: `../x` in data.classes would also be read outside the folder.
  config_checks.check_class_names(classes, "data.classes")
  images, labels, class_names = _load_source(
      source, data_config, classes, size, process_index, process_count
  )
  config_checks.check_class_names(class_names, f"the class names of {source}")
  return images, labels, class_names


def _load_source(source: str, data_config, classes, size, process_index, process_count):
  """The images of `data.source`: this process's shard of each class, decoded."""
  max_pixels = int(data_config.max_image_pixels)
  if source == "synthetic":
    folder = ensure_synthetic(data_config)
    return folder_source.load_folder(
        folder,
        classes or default_config.classes_of(data_config),
        size,
        process_index,
        process_count,
        what="data.cache_dir",
        max_pixels=max_pixels,
    )
  if source.startswith("folder:"):
    path = source[len("folder:") :]
    if not path:
      raise data_errors.data_error(
          "data.source='folder:' needs a path, e.g. 'folder:/data/flowers'."
      )
    return folder_source.load_folder(
        path, classes, size, process_index, process_count, max_pixels=max_pixels
    )
  if source.startswith("tfds:"):
    name = source[len("tfds:") :]
    if not name:
      raise data_errors.data_error(
          "data.source='tfds:' needs a dataset name, e.g. 'tfds:oxford_flowers102'."
      )
    return tfds_source.load_tfds(name, data_config, size, process_index, process_count)
  raise data_errors.data_error(
      f"Unknown data.source '{source}': use 'synthetic', 'folder:PATH' or 'tfds:NAME'."
  )


def synthetic_dir(data_config) -> str:
  """Where the synthetic set for this config lives (rendered on first use)."""
  cache_dir = os.path.abspath(os.path.expanduser(str(data_config.cache_dir)))
  n = int(data_config.synthetic_num_per_class)
  seed = int(data_config.synthetic_seed)
  size = int(data_config.image_size)
  return os.path.join(cache_dir, f"synthetic-{seed}-{n}-{size}")


def ensure_synthetic(data_config) -> str:
  """Renders the synthetic set once (atomically, see `storage.atomic_directory`); its folder."""
  final = synthetic_dir(data_config)
  if os.path.isdir(final):
    return final
  n = int(data_config.synthetic_num_per_class)
  if n < 1:
    raise data_errors.data_error(f"data.synthetic_num_per_class must be >= 1, got {n}.")
  seed = int(data_config.synthetic_seed)
  size = int(data_config.image_size)
  start = time.time()
  try:
    with storage.atomic_directory(final) as tmp:
      synthetic.write_dataset(tmp, n, seed, size)
  except (OSError, storage.StorageError) as e:
    why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
    raise data_errors.data_error(
        f"cannot render the synthetic data set into {final} ({why}): set data.cache_dir "
        "(evaluate.py: --cache_dir) to a folder that can be created and written."
    ) from None
  logging.info(
      "Rendered synthetic data set (%d images) to %s in %.1fs", 2 * n, final, time.time() - start
  )
  return final
