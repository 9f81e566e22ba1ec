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
    "num_per_class", 100, "Images of each class of --dataset (written in batches)."
)


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
  del argv  # cli.run refuses arguments that are not flags
  cli.quiet_logs()
  from flowergan import errors, trained  # after the log settings; keeps --help fast

  try:
    _check_flags()
    model = trained.load_trained(_WORKDIR.value, _parse_step(_STEP.value))
    if _DATASET.value is not None:
      message = _dataset(model)
    else:
      message = _walk(model) if _INTERPOLATE.value is not None else _grid(model)
  except errors.FlowerganError as e:
    sys.exit(f"error: {e}")
  print(message)


def _check_flags() -> None:
  """Every flag and every output path, before the checkpoint is read or anything is written."""
  from flowergan import config_checks, imaging, latents, sampling

  config_checks.check_seed(_SEED.value, "--seed")
  if _INTERPOLATE.value is not None:
    for seed in latents.parse_seed_pair(_INTERPOLATE.value):
      config_checks.check_seed(seed, "each seed of --interpolate")
  if not 1 <= _NUM.value <= sampling.MAX_IMAGES:
    raise sampling.SamplingError(
        f"--num must be at least 1 and at most {sampling.MAX_IMAGES} (the images of one "
        f"request are held in memory), got {_NUM.value}."
    )
  sampling.check_truncation(_TRUNCATION.value)
  conflicts = [
      (_Z_FILE, _INTERPOLATE, "a walk draws its noise from its two seeds"),
      (_Z_FILE, _TRUNCATION, "the noise is read from the file as it is"),
      (_INTERPOLATE, _NUM, "a walk has --frames images"),
  ]
  conflicts += [
      (_DATASET, other, "--dataset draws --num_per_class images of every class from --seed")
      for other in (_INTERPOLATE, _Z_FILE, _OUT, _NUM, _SAVE_Z)
  ]
  for a, b, why in conflicts:
    if a.present and b.present:
      raise sampling.SamplingError(f"--{a.name} and --{b.name} exclude each other: {why}.")
  if "," in _LABEL.value and _INTERPOLATE.value is None:
    raise sampling.SamplingError(
        f"two labels ({_LABEL.value}) make a class morph, which needs --interpolate=SEED_A,SEED_B."
    )
  if _INTERPOLATE.value is not None:
    latents.parse_seed_pair(_INTERPOLATE.value)
    latents.check_frames(_FRAMES.value)
  if _DATASET.value is not None:
    imaging.check_dataset_request(_DATASET.value, _NUM_PER_CLASS.value)
    return
  imaging.check_outputs(_outputs())


def _outputs() -> list[tuple[str, str, bool]]:
  """The files this command writes, as `imaging.check_outputs` takes them."""
  from flowergan import imaging

  if _INTERPOLATE.value is None:
    out = _grid_out()
    outputs = [("--out", out, imaging.grid_format(out) is None)]  # a bad extension fails here
  else:
    png, gif = _walk_paths()
    outputs = [("--out", png, False), ("the GIF beside --out", gif, False)]
  if _SAVE_Z.value:
    outputs.append(("--save_z", _SAVE_Z.value, False))
  return outputs


def _grid_out() -> str:
  from flowergan import config_checks

  label = config_checks.file_stem(_LABEL.value)
  return _OUT.value or f"{_WORKDIR.value}/samples/sample_{label}_seed{_SEED.value}.png"


def _walk_paths() -> tuple[str, str]:
  """The walk's .png strip (--out) and the GIF beside it."""
  from flowergan import config_checks, latents

  seed_a, seed_b = latents.parse_seed_pair(_INTERPOLATE.value)
  pair = _LABEL.value.split(",")
  stems = "-".join(map(config_checks.file_stem, dict.fromkeys(pair)))
  out = _OUT.value or f"{_WORKDIR.value}/samples/walk_{stems}_seed{seed_a}-{seed_b}.png"
  if not out.lower().endswith(".png"):
    raise latents.LatentError(f"--out of a walk is the .png strip (the GIF goes beside it): {out}.")
  return out, out[: -len(".png")] + ".gif"


def _grid(model) -> str:
  """A grid (or single files) of `--num` images, the noise from --seed or --z_file."""
  from flowergan import imaging, latents, sampling

  class_names = model.class_names
  num, z = _NUM.value, None
  if _Z_FILE.value:
    z = latents.load_z(_Z_FILE.value, model.z_dim)
    num = _num_for_rows(len(z), len(class_names))
    wanted = len(sampling.resolve_labels(_LABEL.value, class_names, num, _SEED.value))
    if wanted != len(z):
      raise latents.LatentError(
          f"{_Z_FILE.value} has {len(z)} noise vectors but --label={_LABEL.value} "
          f"--num={_NUM.value} asks for {wanted} images."
      )
  samples = sampling.sample_grid(
      model, _LABEL.value, num, _SEED.value, _TRUNCATION.value, z=z, use_ema=not _NO_EMA.value
  )
  labels = samples.labels
  out = _grid_out()
  per_class = len(labels) // len(class_names) if _LABEL.value == "all" else None
  paths = imaging.write_images(
      samples.images,
      out,
      labels=labels,
      class_names=class_names,
      ncols=per_class,
      group_size=per_class,
  )
  if _SAVE_Z.value:
    latents.save_z(_SAVE_Z.value, samples.z)
  what = "a grid of" if len(paths) == 1 else f"{len(paths)} files with"
  source = f"noise {_Z_FILE.value}" if _Z_FILE.value else f"seed {_SEED.value}"
  return f"wrote {what} {len(labels)} images ({_LABEL.value}, step {model.step}, {source}) to {out}"


def _num_for_rows(rows: int, num_classes: int) -> int:
  """--num for a noise file of `rows` vectors: as given, or what makes the counts match."""
  if _NUM.present:
    return _NUM.value
  return max(1, rows // num_classes) if _LABEL.value == "all" else rows


def _walk(model) -> str:
  """A latent walk between the single samples of two seeds (and labels): PNG strip + GIF."""
  from flowergan import imaging, latents, sampling

  seed_a, seed_b = latents.parse_seed_pair(_INTERPOLATE.value)
  names = model.class_names
  pair = _LABEL.value.split(",")
  if len(pair) == 1:
    pair *= 2
  if len(pair) != 2 or any(name not in names for name in pair):
    raise latents.LatentError(
        f"--interpolate needs --label=CLASS or --label=A,B with classes from "
        f"{', '.join(names)}; got --label={_LABEL.value}."
    )
  out, gif = _walk_paths()
  walk = sampling.sample_walk(
      model,
      (seed_a, seed_b),
      (pair[0], pair[1]),
      _FRAMES.value,
      _TRUNCATION.value,
      use_ema=not _NO_EMA.value,
  )
  z = walk.z
  imaging.write_walk(walk.images, out, gif)
  if _SAVE_Z.value:
    latents.save_z(_SAVE_Z.value, z)
  return (
      f"wrote a walk of {len(z)} frames ({' → '.join(pair)}, seeds {seed_a} → {seed_b}, "
      f"step {model.step}) to {out} and {gif}"
  )


def _dataset(model) -> str:
  """A labelled dataset of --num_per_class images per class from --seed (`imaging.write_dataset`)."""
  from flowergan import imaging

  imaging.write_dataset(
      model,
      _DATASET.value,
      _NUM_PER_CLASS.value,
      seed=_SEED.value,
      truncation=_TRUNCATION.value,
      use_ema=not _NO_EMA.value,
      workdir=_WORKDIR.value,
      progress=imaging.print_progress,
  )
  return (
      f"wrote {_NUM_PER_CLASS.value} images per class of {', '.join(model.class_names)} "
      f"(step {model.step}, seed {_SEED.value}) to {_DATASET.value}/<class>/, with "
      f"{imaging.DATASET_MANIFEST} and {imaging.DATASET_NOISE}"
  )


if __name__ == "__main__":
  cli.run(main)
