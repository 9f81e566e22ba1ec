r"""Samples a trained flowergan: python sample.py --label=marigold [--workdir=runs/cwgan128].

Needs only the workdir: the checkpoint carries its config and class names.
"""

import sys

from absl import app, flags, logging

from flowergan import cli

_WORKDIR = flags.DEFINE_string("workdir", "runs/cwgan128", "Run directory of train.py.")
_LABEL = flags.DEFINE_string("label", "all", "A class name, or 'all' for --num of each class.")
_NUM = flags.DEFINE_integer("num", 16, "Images per class.")
_SEED = flags.DEFINE_integer("seed", 0, "Noise seed: same seed, same images.")
_TRUNCATION = flags.DEFINE_float(
    "truncation",
    None,
    "Truncated-normal noise at ±this (the original demo: 0.01-3.0, "
    "default 1.5); unset = plain normal.",
)
_OUT = flags.DEFINE_string(
    "out",
    None,
    "A .png/.jpg/.jpeg/.webp path for one grid (at most 16 columns), or a path without an "
    "extension for a directory of single PNGs (default: "
    "<workdir>/samples/sample_<label>_seed<seed>.png).",
)
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
_NO_EMA = flags.DEFINE_bool("no_ema", False, "Use the raw generator weights, not their EMA.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO; --verbosity=0 shows it
  # after flag parsing: keeps --help fast
  from flowergan import checkpointing, config_checks, errors, sampling

  try:
    if _NUM.value < 1:
      raise sampling.SamplingError(f"--num must be at least 1, got {_NUM.value}.")
    if _OUT.value:
      sampling.grid_format(_OUT.value)  # a bad extension fails before the checkpoint is read
    model = checkpointing.load_trained(_WORKDIR.value, _STEP.value)
    labels = sampling.resolve_labels(_LABEL.value, model.class_names, _NUM.value)
    params, batch_stats = model.variables(use_ema=not _NO_EMA.value)
    images = sampling.generate(
        model.gan, params, batch_stats, labels, seed=_SEED.value, truncation=_TRUNCATION.value
    )
    label = config_checks.file_stem(_LABEL.value)
    out = _OUT.value or f"{_WORKDIR.value}/samples/sample_{label}_seed{_SEED.value}.png"
    every_class = _LABEL.value == "all"
    paths = sampling.write_images(
        images,
        out,
        labels=labels,
        class_names=model.class_names,
        ncols=_NUM.value if every_class else None,
        group_size=_NUM.value if every_class else None,
    )
  except errors.FlowerganError as e:
    sys.exit(f"error: {e}")
  what = "a grid of" if len(paths) == 1 else f"{len(paths)} files with"
  print(
      f"wrote {what} {len(labels)} images ({_LABEL.value}, step {model.step}, seed "
      f"{_SEED.value}) to {out}"
  )


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
