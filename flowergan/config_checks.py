"""One validation pass over a config, before any data is read or anything is written.

`validate(config)` is called by train.py, sample.py and `flowergan.evaluate` (on the config a
checkpoint carries) and reports every bad value in one line. Class names become file names, so
`check_class_names` guards them wherever they enter (the config, data folders, TFDS, checkpoint
metadata) and `file_stem` is the form that file names are built from.
"""

from __future__ import annotations

import math
import numbers
import unicodedata
from collections.abc import Iterable, Sequence

from flowergan import errors

# The names each choice accepts; the models and ops check them again where they are used.
CHOICES = {
    "model.upsample": ("bilinear", "transpose"),
    "model.conditioning": ("projection", "concat"),
    "model.critic_normalization": ("none", "layernorm"),
    "model.generator_conv": ("auto", "dots", "lax"),
    "model.generator_padding": ("zeros", "reflect"),
    "model.critic_conv": ("auto", "im2col", "lax"),
    "train.dtype": ("float32", "bfloat16"),
}
DIFFAUGMENT_POLICIES = ("color", "translation", "cutout")
MAX_CLASS_NAME_BYTES = 100  # leaves room for `_step0000000.png` within a 255-byte file name
# Seeds become `jax.random.key(seed)`, a signed 64-bit integer. Negative seeds work there, so
# configs (and the checkpoints that store them) may hold them; a seed given on the command line
# is a non-negative one (numpy's generators, which the evaluation also seeds, refuse negatives).
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_SEED = INT64_MAX
SEED_RANGES = {
    "seed": (INT64_MIN, INT64_MAX - 1),  # training also draws its sample grids from seed + 1
    "data.synthetic_seed": (INT64_MIN, INT64_MAX),
    "eval.seed": (INT64_MIN, INT64_MAX),
    "eval.classifier_seed": (INT64_MIN, INT64_MAX),
}


class ConfigError(errors.FlowerganError):
  """A config value that cannot work; the message names every bad field in one line."""


class ClassNameError(errors.FlowerganError):
  """A class name that cannot be used as part of a file name (one line)."""


def validate(config, *, what: str = "config") -> None:
  """Raises `ConfigError` naming every bad value of `config`; fields it lacks are not checked.

  Args:
    config: a full flowergan config (`configs/cwgan128.py`), or one stored in a checkpoint
      (older ones lack newer fields).
    what: how the message names the config, e.g. "the config of checkpoint step 4".
  """
  problems = [
      *_data_problems(config.get("data")),
      *_model_problems(config.get("model")),
      *_train_problems(config.get("train")),
      *_run_problems(config),
      _best_checkpoint_problem(config.get("best_checkpoint")),
      _best_metric_problem(config.get("best_checkpoint"), config.get("eval")),
      *_eval_problems(config.get("eval")),
  ]
  problems = [p for p in problems if p]
  if problems:
    raise ConfigError(f"bad {what}: " + "; ".join(problems) + ".")


# -------------------------------------------------------------------------------- fields


def _is_int(value) -> bool:
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value) -> bool:
  return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _int_at_least(section, prefix: str, names: Iterable[str], minimum: int) -> list[str | None]:
  out = []
  for name in names:
    if section is not None and name in section:
      value = section[name]
      if not _is_int(value) or value < minimum:
        out.append(f"{prefix}.{name} must be an integer >= {minimum}, got {value!r}")
  return out


def _real_in(
    section,
    prefix: str,
    name: str,
    low: float,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = True,
) -> str | None:
  """Checks that a number lies in the interval; `high=None`: no upper bound."""
  if section is None or name not in section:
    return None
  value = section[name]
  ok = _is_real(value) and (value > low if low_open else value >= low)
  if ok and high is not None:
    ok = value < high if high_open else value <= high
  if ok:
    return None
  if high is None:
    wanted = f"{'>' if low_open else '>='} {low:g}"
  else:
    wanted = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
  return f"{prefix}.{name} must be a finite number {wanted}, got {value!r}"


def _choice(section, key: str) -> str | None:
  prefix, name = key.split(".")
  if section is None or name not in section:
    return None
  value = section[name]
  if value not in CHOICES[key]:
    return f"config.{key} must be one of {', '.join(map(repr, CHOICES[key]))}, got {value!r}"
  return None


def _data_problems(data) -> list[str | None]:
  if data is None:
    return []
  size = data.get("image_size")
  out = []
  if not _is_int(size) or size < 8 or size & (size - 1):
    out.append(f"config.data.image_size must be a power of two >= 8 (32, 64, 128…), got {size!r}")
  out.append(_source_problem(data))
  out.append(_real_in(data, "config.data", "max_rotation_deg", 0.0, 180.0, high_open=False))
  out += _int_at_least(data, "config.data", ("synthetic_num_per_class",), 1)
  out += _int_at_least(data, "config.data", ("max_image_pixels",), 0)
  classes = data.get("classes") or ()
  if isinstance(classes, str):
    out.append(f"config.data.classes must be a tuple of names, got the string {classes!r}")
  else:
    out.append(_class_names_problem(classes, "config.data.classes"))
  return out


def _source_problem(data) -> str | None:
  if "source" not in data:
    return None  # as any field `validate` is given without; its default is default_config's
  source = data["source"]
  if isinstance(source, str) and (
      source == "synthetic" or (source.startswith(("folder:", "tfds:")) and source.split(":", 1)[1])
  ):
    return None
  return f"config.data.source must be 'synthetic', 'folder:PATH' or 'tfds:NAME', got {source!r}"


def _model_problems(model) -> list[str | None]:
  out = _int_at_least(model, "config.model", ("z_dim", "width", "critic_width"), 1)
  for key in CHOICES:
    if key.startswith("model."):
      out.append(_choice(model, key))
  return out


def _train_problems(train) -> list[str | None]:
  if train is None:
    return []
  out = _int_at_least(train, "config.train", ("batch_size", "n_critic", "num_steps"), 1)
  out.append(_real_in(train, "config.train", "gp_weight", 0.0))
  for name in ("generator_lr", "critic_lr"):
    out.append(_real_in(train, "config.train", name, 0.0, low_open=True))
  for name in ("adam_b1", "adam_b2", "ema_decay"):
    out.append(_real_in(train, "config.train", name, 0.0, 1.0))
  out.append(_choice(train, "train.dtype"))
  policy = train.get("diffaugment", "")
  if not isinstance(policy, str):
    out.append(f"config.train.diffaugment must be a string, got {policy!r}")
  else:
    bad = [p.strip() for p in policy.split(",") if p.strip() not in ("", *DIFFAUGMENT_POLICIES)]
    if bad:
      out.append(
          f"config.train.diffaugment has unknown policies {bad} (valid: "
          f"{', '.join(DIFFAUGMENT_POLICIES)}, comma-separated)"
      )
  out.extend(_ada_problems(train.get("ada")))
  return out


def _ada_problems(ada) -> list[str | None]:
  """`config.train.ada` (flowergan.ada): flags are booleans, the target a share in (0, 1)."""
  if ada is None:
    return []
  out = [
      f"config.train.ada.{name} must be True or False, got {ada[name]!r}"
      for name in ("enabled", "hue")
      if name in ada and not isinstance(ada[name], bool)
  ]
  out.append(_real_in(ada, "config.train.ada", "target", 0.0, 1.0, low_open=True))
  out.extend(_int_at_least(ada, "config.train.ada", ("interval",), 1))
  out.append(_real_in(ada, "config.train.ada", "kimg", 0.0, low_open=True))
  return out


def _run_problems(config) -> list[str | None]:
  names = ("log_every", "sample_every", "checkpoint_every", "keep_checkpoints")
  out = _int_at_least(config, "config", names, 1)
  if "eval_every" in config and not _is_int(config["eval_every"]):
    out.append(f"config.eval_every must be an integer, got {config['eval_every']!r}")
  for key, (low, high) in SEED_RANGES.items():
    *section, name = key.split(".")
    fields = config.get(section[0]) if section else config
    if fields is not None and name in fields:
      out.append(seed_problem(fields[name], f"config.{key}", low, high))
  return out


def seed_problem(value, name: str, low: int = 0, high: int = MAX_SEED) -> str | None:
  """Why `value` cannot be the seed `name`, or None (it must be an integer in [low, high])."""
  if _is_int(value) and low <= value <= high:
    return None
  return f"{name} must be an integer in [{low}, {high}], got {value!r}"


def check_seed(value, name: str) -> int:
  """`value` if it can be a seed given as `name` (a flag such as `--seed`), else `ConfigError`.

  Flags are checked here too, where they are read, so that a seed of more than 64 bits is one
  line before anything is loaded, not an `OverflowError` once the noise is drawn.
  """
  problem = seed_problem(value, name)
  if problem:
    raise ConfigError(problem + ".")
  return value


def _best_checkpoint_problem(best) -> str | None:
  if not best or not best.get("metric"):
    return None  # not ranked: mode and keep unused
  mode, keep = best.get("mode"), best.get("keep")
  if mode not in ("min", "max") or not _is_int(keep) or keep < 1:
    return (
        f"config.best_checkpoint: mode must be 'min' or 'max' and keep >= 1, got "
        f"mode={mode!r}, keep={keep!r}"
    )
  return None


def _best_metric_problem(best, ev) -> str | None:
  """Why `best_checkpoint.metric` cannot be measured with `eval`'s settings, or None.

  'fid' (and any `inception/...` key) is measured only with `eval.inception_weights` set.
  """
  metric = str(best.get("metric") or "") if best else ""
  if metric != "fid" and not metric.startswith("inception/"):
    return None
  if not ev or not ev.get("inception_weights"):
    return (
        f"config.best_checkpoint.metric={metric!r} needs the Inception weights: set "
        "config.eval.inception_weights to the file pt_inception-2015-12-05-6726825d.pth"
    )
  if metric == "fid" and best.get("mode") != "min":
    return "config.best_checkpoint.metric='fid' is lower-is-better: mode must be 'min'"
  return None


def check_best_checkpoint(best) -> None:
  """`ConfigError` if `config.best_checkpoint` cannot rank checkpoints (`validate` checks it
  too; this is for stored configs read before their validation)."""
  problem = _best_checkpoint_problem(best)
  if problem:
    raise ConfigError(problem + ".")


def _eval_problems(ev) -> list[str | None]:
  names = (
      "num_per_class",
      "batch_size",
      "classifier_steps",
      "classifier_batch_size",
      "kid_subsets",
      "kid_subset_size",
      "swd_nhoods_per_image",
      "inception_batch_size",
  )
  weights = ev.get("inception_weights", "") if ev else ""
  return [
      *_int_at_least(ev, "config.eval", names, 1),
      None
      if isinstance(weights, str)
      else f"config.eval.inception_weights must be a file path or '', got {weights!r}",
      _real_in(ev, "config.eval", "classifier_learning_rate", 0.0, low_open=True),
      _real_in(ev, "config.eval", "classifier_holdout", 0.0, 1.0),
  ]


# ---------------------------------------------------------------------------- class names


def class_name_problem(name) -> str | None:
  """Why `name` cannot be a class name (it becomes part of file names), or None."""
  if not isinstance(name, str):
    return f"{name!r} is not a string"
  if not name.strip():
    return f"{name!r} is empty"
  if "/" in name or "\\" in name:
    return f"{name!r} contains a path separator"
  if name.startswith("."):
    return f"{name!r} starts with '.'"
  if any(unicodedata.category(c) in ("Cc", "Cf") for c in name):
    return f"{name!r} contains a control character"
  if len(name.encode("utf-8")) > MAX_CLASS_NAME_BYTES:
    return f"{name[:20]!r}… is longer than {MAX_CLASS_NAME_BYTES} bytes"
  return None


def _class_names_problem(names: Sequence, where: str) -> str | None:
  for name in names:
    problem = class_name_problem(name)
    if problem:
      return f"class name {problem} in {where} (names become file names)"
  duplicates = sorted({n for n in names if list(names).count(n) > 1})
  if duplicates:
    return f"{where} lists {duplicates} more than once"
  return None


def check_class_names(names: Sequence, where: str) -> list[str]:
  """`names` as a list, or `ClassNameError` if one is unusable as part of a file name.

  Refused: non-strings, empty names, path separators, a leading '.', control characters,
  more than `MAX_CLASS_NAME_BYTES` bytes, duplicates.
  """
  problem = _class_names_problem(list(names), where)
  if problem:
    raise ClassNameError(f"{problem}: rename it (letters, digits, spaces, '-', '_').")
  return list(names)


def file_stem(name: str) -> str:
  """`name` as a file name: separators and control characters become '_', no leading dot.

  Class names are checked when they enter (`check_class_names`), so this changes nothing for
  them; it keeps any other string from choosing a directory.
  """
  stem = "".join(
      "_" if c in "/\\" or unicodedata.category(c) in ("Cc", "Cf") else c for c in str(name)
  )
  stem = stem.lstrip(".").encode("utf-8")[:MAX_CLASS_NAME_BYTES].decode("utf-8", "ignore")
  return stem or "_"
