"""Orbax checkpoints of a run: items of arrays plus the JSON metadata needed to use them alone.

Layout (format version 2): `workdir/checkpoints/<step>/{state, generator, metadata}`.
`state` is what training resumes from (both nets and their optimisers); `generator` holds only
the generator's sampling variables (`ema_params`, `g_params`, `g_batch_stats`), so sampling,
the demo and evaluation read nothing else; `metadata` holds the whole config as JSON and the
class names, so sampling needs nothing but the workdir. Version-1 checkpoints have no
`generator` item (see `flowergan.trained`). Arrays are restored onto the current mesh (a run
saved on 8 devices samples on 1).

This module only reads and writes: it restores any item into the abstract target (shapes,
dtypes, shardings) its caller describes, and knows nothing of what the arrays mean.

Checkpoints are shared between people and survive crashes, so what they hold is checked when
read: a step that does not restore is *damaged* (`DamagedCheckpointError`, naming the step) and
the readers fall back to the newest one that restores (`restore_newest`); class names and the
stored config are validated like the user's own (`flowergan.config_checks`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

import jax
import ml_collections
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

from flowergan import config_checks, default_config, errors, storage
from flowergan import mesh as mesh_lib

FORMAT_VERSION = 2  # 1: no `generator` item (the generator's variables only inside `state`)
STATE, GENERATOR, METADATA = "state", "generator", "metadata"  # the items of a step
DAMAGED_DIR = "damaged_checkpoints"  # in the workdir: where training moves unrestorable steps
_T = TypeVar("_T")


class CheckpointError(errors.FlowerganError):
  """A checkpoint is missing or does not fit the current config (one-line message)."""


class DamagedCheckpointError(CheckpointError):
  """A checkpoint step that does not restore (truncated, missing or unparsable files)."""

  def __init__(self, step: int, directory, cause: BaseException):
    self.step = step
    super().__init__(f"checkpoint step {step} in {directory} is damaged ({_reason(cause)})")


def _reason(e: BaseException, limit: int = 160) -> str:
  """`e` in one short line (Orbax's and TensorStore's messages run to kilobytes)."""
  text = " ".join(str(getattr(e, "strerror", None) or e).split())
  if len(text) > limit:
    text = text[:limit] + "…"
  return f"{type(e).__name__}: {text}" if text else type(e).__name__


def checkpoint_dir(workdir: str | os.PathLike) -> epath.Path:
  """`workdir/checkpoints`; a `gs://` workdir stays a URL (see `flowergan.storage`)."""
  return storage.workdir_path(workdir) / "checkpoints"


# Short names of `best_checkpoint.metric` for evaluation results with a longer key.
METRIC_ALIASES = {"fid": "inception/fid"}


@dataclasses.dataclass(frozen=True)
class BestCheckpoint:
  """Which evaluation metric ranks checkpoints: `metric` a key of `evaluate`'s results."""

  metric: str = "kid"
  mode: str = "min"  # 'min': lower is better; 'max': higher is better
  keep: int = 1

  def value(self, metrics: dict) -> float:
    """The checkpoint's ranking value, from the metrics saved with it (keyed by `metric`)."""
    return float(metrics[self.metric])

  @property
  def result_key(self) -> str:
    """The key of `evaluate`'s results that `metric` names ('fid' is `inception/fid`)."""
    return METRIC_ALIASES.get(self.metric, self.metric)


def best_checkpoint_of(config: ml_collections.ConfigDict) -> BestCheckpoint | None:
  """The config's `best_checkpoint` settings (None with an empty metric).

  Raises:
    config_checks.ConfigError: a mode or keep that cannot work (a stored config reaches here
      unvalidated from `best_step`).
  """
  best = config.best_checkpoint
  config_checks.check_best_checkpoint(best)
  if not best.metric:
    return None
  return BestCheckpoint(str(best.metric), str(best.mode), int(best.keep))


def _preservation(max_to_keep: int, best: BestCheckpoint | None) -> dict:
  """Manager options that keep the latest `max_to_keep` and, with `best`, the best ones."""
  if best is None:
    return {"max_to_keep": max_to_keep}
  policies = ocp.checkpoint_managers
  return {
      "preservation_policy": policies.AnyPreservationPolicy(
          [
              policies.LatestN(n=max_to_keep),
              # BestN keeps the last `n` of the ascending order: reverse it when lower is better.
              policies.BestN(
                  get_metric_fn=best.value,
                  reverse=best.mode == "min",
                  n=best.keep,
                  keep_checkpoints_without_metrics=False,
              ),
          ]
      ),
      "best_fn": best.value,
      "best_mode": best.mode,
  }


def make_manager(
    workdir: str,
    *,
    max_to_keep: int = 3,
    create: bool = True,
    best: BestCheckpoint | None = None,
) -> ocp.CheckpointManager:
  """Manager keeping the last `max_to_keep` checkpoints, and the best by `best`."""
  # Synchronous saves: a save that fails raises in `save` at once. Async ones left Orbax's
  # signalling threads waiting 300 s when the step directory could not be created.
  return ocp.CheckpointManager(
      checkpoint_dir(workdir),
      options=ocp.CheckpointManagerOptions(
          create=create, enable_async_checkpointing=False, **_preservation(max_to_keep, best)
      ),
      item_names=(STATE, GENERATOR, METADATA),
  )


def make_metadata(config: ml_collections.ConfigDict, class_names) -> dict:
  return {
      "format_version": FORMAT_VERSION,
      "class_names": list(class_names),
      "image_size": int(config.data.image_size),
      "config": json.loads(config.to_json()),
  }


def config_from_metadata(metadata: dict) -> ml_collections.ConfigDict:
  """The stored config merged over today's defaults (older checkpoints lack newer fields)."""
  return default_config.from_stored(metadata["config"])


def save(
    manager: ocp.CheckpointManager,
    step: int,
    items: dict[str, Any],
    metadata: dict,
    *,
    force: bool = False,
    metrics: dict | None = None,
) -> bool:
  """Saves the array `items` (name → pytree) and `metadata` at `step`; `CheckpointError` in one
  line if they cannot be written.

  A step that is already on disk is not written again (returns False). `metrics` (the same on
  every process) rank the checkpoint for the best-checkpoint policy.
  """
  if step in manager.all_steps():
    return False
  args = {name: ocp.args.StandardSave(tree) for name, tree in items.items()}
  try:
    return manager.save(
        step,
        args=ocp.args.Composite(**args, metadata=ocp.args.JsonSave(metadata)),
        metrics=metrics,
        force=force,
    )
  except Exception as e:  # pylint: disable=broad-except  # any failure: one line, not 9 traces
    raise CheckpointError(f"cannot save step {step} to {manager.directory} ({_reason(e)})") from e


def restore_metadata(manager: ocp.CheckpointManager, step: int) -> dict:
  restored = manager.restore(step, args=ocp.args.Composite(metadata=ocp.args.JsonRestore()))
  return dict(restored["metadata"])


def on_mesh(shapes: Any, mesh) -> Any:
  """`shapes` (a pytree of arrays or `ShapeDtypeStruct`s) replicated on `mesh`: an abstract
  restore target."""
  sharding = mesh_lib.replicated(mesh)
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), shapes)


def has_item(manager: ocp.CheckpointManager, step: int, name: str) -> bool:
  """Whether `step` holds the item `name` (a version-1 step has no `generator`)."""
  return (epath.Path(manager.directory) / str(step) / name).exists()


def restore_item(manager: ocp.CheckpointManager, step: int, name: str, target: Any) -> Any:
  """The item `name` of `step` restored into the abstract `target`; no other item is read.

  An item without Orbax's tree description (`_METADATA`, written with it) is incomplete: Orbax
  would restore a plain dict without it, unchecked, so it is refused as `FileNotFoundError`.
  """
  description = epath.Path(manager.directory) / str(step) / name / "_METADATA"
  if not description.exists():
    raise FileNotFoundError(f"{description} is missing")
  restored = manager.restore(
      step, args=ocp.args.Composite(**{name: ocp.args.StandardRestore(target)})
  )
  return restored[name]


def restore_subtrees(manager: ocp.CheckpointManager, step: int, name: str, target: dict) -> dict:
  """Only the top-level entries of `target` out of the item `name` (a dict on disk), e.g. the
  generator's variables out of a version-1 `state`; the other entries are not read."""
  restore_args = jax.tree.map(
      lambda x: ocp.ArrayRestoreArgs(sharding=x.sharding, global_shape=x.shape, dtype=x.dtype),
      target,
  )
  partial = ocp.args.PyTreeRestore(item=target, restore_args=restore_args, partial_restore=True)
  # Its own checkpointer on the item's folder: a manager that has saved or restored the item with
  # `StandardSave/Restore` holds a handler that refuses `PyTreeRestore` arguments.
  with ocp.Checkpointer(ocp.PyTreeCheckpointHandler()) as checkpointer:
    return checkpointer.restore(epath.Path(manager.directory) / str(step) / name, args=partial)


def read_metadata(manager: ocp.CheckpointManager, step: int) -> dict:
  """`restore_metadata` with its contents checked.

  Raises:
    DamagedCheckpointError: it does not parse or lacks a field.
    config_checks.ClassNameError: a class name could choose where files go (`../x`).
  """
  try:
    metadata = restore_metadata(manager, step)
    for key in ("class_names", "image_size", "config"):
      metadata[key]  # pylint: disable=pointless-statement  # KeyError: damaged
    config = config_from_metadata(metadata)
    config.data, config.model, config.train  # pylint: disable=pointless-statement
  except Exception as e:  # pylint: disable=broad-except  # anything unreadable is damage
    raise DamagedCheckpointError(step, manager.directory, e) from None
  version = metadata.get("format_version", 1)
  if not isinstance(version, int) or version > FORMAT_VERSION:
    raise CheckpointError(
        f"checkpoint step {step} in {manager.directory} has format version {version!r}, newer "
        f"than this flowergan reads ({FORMAT_VERSION}): update flowergan."
    )
  config_checks.check_class_names(
      metadata["class_names"], f"the metadata of checkpoint step {step} in {manager.directory}"
  )
  return metadata


def read_item(manager: ocp.CheckpointManager, step: int, restore: Callable[[], _T]) -> _T:
  """`restore()` of one step's arrays, with any failure to read them as `DamagedCheckpointError`.

  Call it only with a target whose architecture matches the checkpoint's (`check_compatible`),
  so that a failure here means damage, not a changed config.
  """
  _ignore_closed_event_loop_callbacks()
  try:
    return restore()
  except Exception as e:  # pylint: disable=broad-except  # pytree / TensorStore / asyncio errors
    raise DamagedCheckpointError(step, manager.directory, e) from None


def read_state(manager: ocp.CheckpointManager, step: int, target: Any) -> Any:
  """The `state` item of `step` in the abstract `target` (see `read_item`)."""
  return read_item(manager, step, lambda: restore_item(manager, step, STATE, target))


def _ignore_closed_event_loop_callbacks() -> None:
  """Silences the leftovers of an aborted restore (installed once per process, before any).

  When one array of a restore fails, Orbax closes its event loop while TensorStore still
  completes the other reads; each completion then reports "Event loop is closed" through
  `sys.unraisablehook` (a hundred tracebacks, some before the restore raises). Only those are
  dropped; anything else still reaches the previous hook.
  """
  previous = sys.unraisablehook
  if getattr(previous, "_flowergan_filter", False):
    return

  def hook(unraisable):
    error = unraisable.exc_value
    if isinstance(error, RuntimeError) and str(error) == "Event loop is closed":
      return
    previous(unraisable)

  hook._flowergan_filter = True
  sys.unraisablehook = hook


def restore_newest(
    manager: ocp.CheckpointManager, restore: Callable[[int], _T], *, advice: str
) -> tuple[int, _T, list[int]]:
  """`(step, restore(step), damaged steps)` for the newest step that restores.

  Each damaged step gets one warning; when none restores, `CheckpointError` says so and ends
  with `advice`. Other errors of `restore` (an incompatible config) pass through at once.
  """
  damaged, newest_damage = [], None
  for step in sorted(manager.all_steps(), reverse=True):
    try:
      result = restore(step)
    except DamagedCheckpointError as e:
      logging.warning("%s; trying the previous checkpoint.", e)
      damaged.append(step)
      newest_damage = newest_damage or e
      continue
    if damaged:
      logging.warning(
          "using checkpoint step %d of %s instead of the damaged step(s) %s.",
          step,
          manager.directory,
          damaged,
      )
    return step, result, damaged
  raise CheckpointError(
      f"no checkpoint in {manager.directory} restores (damaged: steps {sorted(damaged)}; the "
      f"newest: {newest_damage}): {advice}"
  )


def set_aside(manager: ocp.CheckpointManager, workdir: str, steps) -> list[str]:
  """Moves damaged `steps` to `workdir/damaged_checkpoints/` (kept, out of Orbax's sight).

  Training does this before it saves again: Orbax neither overwrites a step nor saves one below
  its latest, so with the damaged step in place the steps trained again would not be saved (and
  `max_to_keep` would count it). Returns the new paths.
  """
  moved = []
  for step in steps:
    source = checkpoint_dir(workdir) / str(step)
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
  saved = config_from_metadata(metadata)
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
    raise CheckpointError(
        f"the checkpoint in {workdir} was trained with a different setup ("
        + "; ".join(problems)
        + "): pass a new --workdir, or restore the old config."
    )
  imported = metadata.get("imported_generator")
  if imported and not config.train.get("fresh_critic", False):
    raise CheckpointError(
        f"{workdir} holds the authors' generator ({imported.get('file')}) but no trained critic "
        f"(they never published theirs): pass --config.train.fresh_critic=True to train it "
        f"against a freshly initialised critic."
    )


def best_step(workdir: str, manager: ocp.CheckpointManager) -> int:
  """The step of the best checkpoint, ranked as the run's config says (`best_checkpoint`)."""
  config = config_from_metadata(restore_metadata(manager, manager.latest_step()))
  best = best_checkpoint_of(config)
  if best is None:
    raise CheckpointError(
        f"the run in {workdir} does not rank its checkpoints (no config.best_checkpoint): "
        "pass --step=N or leave --step out for the latest."
    )
  ranked = make_manager(workdir, create=False, best=best)
  step = ranked.best_step()  # None when no checkpoint has metrics
  ranked.close()
  if step is None:
    raise CheckpointError(
        f"no evaluated checkpoint in {workdir} (config.eval_every > 0 evaluates during "
        "training): pass --step=N or leave --step out for the latest."
    )
  return step
