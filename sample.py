r"""Samples a trained flowergan: python sample.py --label=marigold [--workdir=runs/cwgan128].

Needs only the workdir: the checkpoint carries its config and class names.
"""

import sys

from absl import app, flags, logging

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
    "A .png path for one grid, or a directory for single "
    "PNGs (default: <workdir>/samples/sample_<label>_seed<seed>.png).",
)
_STEP = flags.DEFINE_string(
    "step", None, "Checkpoint step: a number, 'best' (the best evaluated) or the latest if unset."
)
_NO_EMA = flags.DEFINE_bool("no_ema", False, "Use the raw generator weights, not their EMA.")


def _parse_step(value: str | None) -> int | str | None:
  """`--step`: None (the latest), 'best', or a step number."""
  from flowergan import sampling

  if value is None or value == "best":
    return value
  try:
    return int(value)
  except ValueError:
    raise sampling.SamplingError(
        f"--step must be a step number or 'best', got {value!r}."
    ) from None


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO; --verbosity=0 shows it
  from flowergan import checkpointing, errors, sampling  # after flag parsing: keeps --help fast

  try:
    if _NUM.value < 1:
      raise sampling.SamplingError(f"--num must be at least 1, got {_NUM.value}.")
    model = checkpointing.load_trained(_WORKDIR.value, _parse_step(_STEP.value))
    labels = sampling.resolve_labels(_LABEL.value, model.class_names, _NUM.value)
    params, batch_stats = model.variables(use_ema=not _NO_EMA.value)
    images = sampling.generate(
        model.gan, params, batch_stats, labels, seed=_SEED.value, truncation=_TRUNCATION.value
    )
    out = _OUT.value or f"{_WORKDIR.value}/samples/sample_{_LABEL.value}_seed{_SEED.value}.png"
    paths = sampling.write_images(
        images,
        out,
        labels=labels,
        class_names=model.class_names,
        ncols=_NUM.value if _LABEL.value == "all" else None,
    )
  except errors.FlowerganError as e:
    sys.exit(f"error: {e}")
  what = "a grid of" if len(paths) == 1 else f"{len(paths)} files with"
  print(
      f"wrote {what} {len(labels)} images ({_LABEL.value}, step {model.step}, seed "
      f"{_SEED.value}) to {out}"
  )


if __name__ == "__main__":
  app.run(main)
