r"""Samples a trained flowergan: python sample.py --label=marigold [--workdir=runs/cwgan128].

Needs only the workdir: the checkpoint carries its config and class names.

  python sample.py --label=marigold --num=16 --seed=3 --truncation=1.5   # a 4×4 grid
  python sample.py --label=random --num=16 --seed=3 --truncation=1.5     # the web demo's ALL
  python sample.py --label=marigold --interpolate=3,7 --frames=8         # a latent walk
  python sample.py --label=dandelion,marigold --interpolate=3,3          # a class morph
  python sample.py --label=marigold --seed=3 --save_z=z.npy              # keep the noise …
  python sample.py --label=marigold --z_file=z.npy                       # … and reuse it
  python sample.py --dataset=synth --num_per_class=1000 --seed=0         # a labelled dataset
"""

import sys

from absl import flags

from flowergan import cli

_WORKDIR = flags.DEFINE_string("workdir", "runs/cwgan128", "Run directory of train.py.")
_LABEL = flags.DEFINE_string(
    "label",
    "all",
    "A class name; 'all' for --num of each class; 'random' for --num classes drawn from --seed "
    "(the web demo's ALL); with --interpolate also A,B (a class morph from A to B).",
)
_NUM = flags.DEFINE_integer(
    "num", 16, "Images per class; one request makes at most 4096 (sampling.MAX_IMAGES)."
)
_SEED = flags.DEFINE_integer("seed", 0, "Noise seed: same seed, same images.")
_TRUNCATION = flags.DEFINE_float(
    "truncation",
    None,
    "Truncated-normal noise at ±this, a finite number > 0 (the original demo: 0.01-3.0, "
    "default 1.5); unset = plain normal (what inf would mean).",
)
_OUT = flags.DEFINE_string(
    "out",
    None,
    "A .png/.jpg/.jpeg/.webp path for one grid (at most 16 columns), or a path without an "
    "extension for a directory of single PNGs (default: "
    "<workdir>/samples/sample_<label>_seed<seed>.png). For a walk: the .png strip; the GIF is "
    "written beside it.",
)
_STEP = flags.DEFINE_string(
    "step", None, "Checkpoint step: a number, 'best' (the best evaluated) or the latest if unset."
)
_NO_EMA = flags.DEFINE_bool("no_ema", False, "Use the raw generator weights, not their EMA.")
_INTERPOLATE = flags.DEFINE_string(
    "interpolate",
    None,
    "SEED_A,SEED_B: a latent walk (spherical interpolation) from the single sample of seed A "
    "to that of seed B, written as a PNG strip and an animated GIF.",
)
_FRAMES = flags.DEFINE_integer(
    "frames", 8, "Frames of a walk (--interpolate), ends included: 2 to 256 (latents.MAX_FRAMES)."
)
_SAVE_Z = flags.DEFINE_string("save_z", None, "Also write the exact noise used to this .npy.")
_Z_FILE = flags.DEFINE_string(
    "z_file",
    None,
    "Read the noise from this .npy (from --save_z) instead of drawing it from --seed; the "
    "image count is its row count (at most 4096, latents.MAX_NOISE_ROWS).",
)
_DATASET = flags.DEFINE_string(
    "dataset",
    None,
    "Write a labelled dataset instead: DIR/<class>/<index>.png (what data.source='folder:DIR' "
    "reads), DIR/noise.npy and DIR/manifest.json; DIR must be new or empty.",
)
_NUM_PER_CLASS = flags.DEFINE_integer(
    "num_per_class",
    100,
    "Images of each class of --dataset (written in batches), at most 10000 "
    "(dataset_writer.MAX_PER_CLASS).",
)


def _request():
  """The flags as a `sampling.SampleRequest`: the options not given are None."""
  from flowergan import sampling

  return sampling.SampleRequest(
      label=_LABEL.value,
      num=_NUM.value if _NUM.present else None,
      seed=_SEED.value,
      truncation=_TRUNCATION.value,
      interpolate=_INTERPOLATE.value,
      frames=_FRAMES.value,
      z_file=_Z_FILE.value,
      save_z=_SAVE_Z.value,
      out=_OUT.value,
      dataset=_DATASET.value,
      num_per_class=_NUM_PER_CLASS.value,
      use_ema=not _NO_EMA.value,
  )


def main(argv):
  del argv  # cli.run refuses arguments that are not flags
  cli.quiet_logs()
  from flowergan import errors, sample_files  # after the log settings; keeps --help fast

  try:
    message = sample_files.write_request(_WORKDIR.value, _request(), _STEP.value)
  except errors.FlowerganError as e:
    sys.exit(f"error: {e}")
  print(message)


if __name__ == "__main__":
  cli.run(main)
