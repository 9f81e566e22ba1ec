"""Ways a checkpoint step gets damaged (truncated, deleted or unparsable files), for the tests of
the modules that read checkpoints."""

import json
import os
import shutil

from tests import tiny_config

DAMAGES = ["truncated data file", "no _METADATA", "no manifest.ocdbt", "broken metadata JSON"]


def damage(workdir, step, how):
  """Damages `step` as `how` says; array damage hits both array items, `state` (what training
  resumes from) and `generator` (what sampling reads)."""
  if how == "broken metadata JSON":
    (workdir / "checkpoints" / str(step) / "metadata" / "metadata").write_text("{broken")
    return
  if how in METRICS_DAMAGES:
    damage_metrics(workdir, step, how)
    return
  for item in ("state", "generator"):
    arrays = workdir / "checkpoints" / str(step) / item
    if how == "truncated data file":
      data = max((p for p in (arrays / "ocdbt.process_0" / "d").iterdir()), key=os.path.getsize)
      os.truncate(data, 100)
    elif how == "no _METADATA":
      os.remove(arrays / "_METADATA")
    elif how == "no manifest.ocdbt":
      os.remove(arrays / "manifest.ocdbt")


METRICS_DAMAGES = ["empty metrics", "metrics not JSON", "every file truncated"]


def damage_metrics(workdir, step, how):
  """The best-checkpoint metrics file of `step` empty or not JSON (written if the step has
  none), or every file of the step cut to nothing."""
  folder = workdir / "checkpoints" / str(step)
  if how == "every file truncated":
    for path in folder.rglob("*"):
      if path.is_file():
        path.write_bytes(b"")
    return
  (folder / "metrics").mkdir(exist_ok=True)
  (folder / "metrics" / "metrics").write_text("" if how == "empty metrics" else '{"kid": 0.')


def set_format_version(workdir, step, version):
  """Rewrites the `format_version` in the metadata of `step`."""
  path = workdir / "checkpoints" / str(step) / "metadata" / "metadata"
  metadata = json.loads(path.read_text())
  metadata["format_version"] = version
  path.write_text(json.dumps(metadata))


def files(root) -> set[str]:
  """Every file and folder under `root`, relative to it."""
  out = set()
  for base, dirs, names in os.walk(root):
    for name in dirs + names:
      out.add(os.path.relpath(os.path.join(base, name), root))
  return out


def copy_run(workdir, target):
  """A copy of a trained workdir to damage (the original serves the other tests)."""
  shutil.copytree(workdir, target)
  return target


def tiny_training_config(root, **train):
  """The tiny config without in-loop evaluation, its cache under `root`, `train` fields set."""
  config = tiny_config.get_config(cache_dir=root / "cache")
  config.eval_every = -1
  config.train.update(train)
  return config
