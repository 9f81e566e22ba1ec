"""Reading a run back despite damage: the newest step that restores, damaged steps set aside,
and the check that tells a damaged step from one of another setup.

A step that does not restore is damaged (`checkpointing.DamagedCheckpointError`): the readers
fall back to an older one (`restore_newest`), and training moves the damaged ones out of Orbax's
sight before it saves again (`set_aside`). A step trained with another architecture or classes
would not restore either, but is no damage: `check_compatible` refuses it first, so that a
restore that fails afterwards means damage.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import ml_collections
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

from flowergan import checkpointing, storage

DAMAGED_DIR = "damaged_checkpoints"  # in the workdir: where training moves unrestorable steps
_T = TypeVar("_T")


def restore_newest(
    manager: ocp.CheckpointManager, restore: Callable[[int], _T], *, advice: str
) -> tuple[int, _T, list[int]]:
  """`(step, restore(step), damaged steps)` for the newest step that restores.

  Each damaged step gets one warning; when none restores, `CheckpointError` says so and ends
  with `advice`. A step that vanishes while it is read was deleted (a training run rotating its
  checkpoints), not damaged: the steps are listed again and the newest is tried again. Other
  errors of `restore` (an incompatible config) pass through at once.
  """
  damaged, newest_damage = {}, None
  for _ in range(checkpointing.LISTING_ATTEMPTS):
    deleted = False
    for step in sorted(manager.all_steps(), reverse=True):
      if step in damaged:
        continue
      try:
        result = restore(step)
      except checkpointing.DamagedCheckpointError as e:
        if not step_exists(manager, step):
          deleted = True
          break
        logging.warning("%s; trying the previous checkpoint.", e)
        damaged[step] = e
        newest_damage = newest_damage or e
        continue
      if damaged:
        logging.warning(
            "using checkpoint step %d of %s instead of the damaged step(s) %s.",
            step,
            manager.directory,
            sorted(damaged),
        )
      return step, result, sorted(damaged)
    if not deleted:
      break
    logging.info(
        "a checkpoint of %s was deleted while being read; listing again.", manager.directory
    )
    manager.reload()
  if not damaged:
    raise checkpointing.CheckpointError(
        f"the checkpoints in {manager.directory} were deleted while being read (a training run "
        f"rotating them?): {advice}"
    )
  raise checkpointing.CheckpointError(
      f"no checkpoint in {manager.directory} restores (damaged: steps {sorted(damaged)}; the "
      f"newest: {newest_damage}): {advice}"
  )


def step_exists(manager: ocp.CheckpointManager, step: int) -> bool:
  """Whether the folder of `step` is (still) there."""
  return (epath.Path(manager.directory) / str(step)).is_dir()


def set_aside(manager: ocp.CheckpointManager, workdir: str, steps) -> list[str]:
  """Moves damaged `steps` to `workdir/damaged_checkpoints/` (kept, out of Orbax's sight).

  Training does this before it saves again: Orbax neither overwrites a step nor saves one below
  its latest, so with the damaged step in place the steps trained again would not be saved (and
  `max_to_keep` would count it). Returns the new paths.
  """
  moved = []
  for step in steps:
    source = checkpointing.checkpoint_dir(workdir) / str(step)
    target = storage.workdir_path(workdir) / DAMAGED_DIR / str(step)
    if target.exists():
      target = target.parent / (target.name + time.strftime("-%Y%m%d-%H%M%S"))
    target.parent.mkdir(parents=True, exist_ok=True)
    source.rename(target)
    logging.warning("moved damaged checkpoint step %d to %s (kept for inspection).", step, target)
    moved.append(target)
  manager.reload()
  return moved


def check_compatible(
    metadata: dict, config: ml_collections.ConfigDict, class_names, workdir: str
) -> None:
  """Refuses to resume a run whose image size, classes or architecture differ from `config`,
  and a workdir of `flowergan.import_torch` (random critic) unless `train.fresh_critic`."""
  saved = checkpointing.config_from_metadata(metadata)
  problems = []
  if metadata["class_names"] != list(class_names):
    problems.append(f"classes {metadata['class_names']} vs {list(class_names)}")
  if metadata["image_size"] != config.data.image_size:
    problems.append(f"image_size {metadata['image_size']} vs {config.data.image_size}")
  for field in (
      "z_dim",
      "width",
      "upsample",
      "critic_width",
      "conditioning",
      "critic_normalization",
  ):
    if saved.model[field] != config.model[field]:
      problems.append(f"model.{field} {saved.model[field]!r} vs {config.model[field]!r}")
  if problems:
    raise checkpointing.CheckpointError(
        f"the checkpoint in {workdir} was trained with a different setup ("
        + "; ".join(problems)
        + "): pass a new --workdir, or restore the old config."
    )
  imported = metadata.get("imported_generator")
  if imported and not config.train.fresh_critic:
    raise checkpointing.CheckpointError(
        f"{workdir} holds the authors' generator ({imported.get('file')}) but no trained critic "
        f"(they never published theirs): pass --config.train.fresh_critic=True to train it "
        f"against a freshly initialised critic."
    )
