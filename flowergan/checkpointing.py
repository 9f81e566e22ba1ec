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
import logging as py_logging
import os
import re
import sys
import time
import traceback
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


class _Manager(ocp.CheckpointManager):
  """Orbax's manager, listing steps whose files are damaged or vanish while it reads them.

  Orbax reads every step's `metrics/metrics` (the best-checkpoint ranking) while it lists the
  steps, and raises `JSONDecodeError` for an empty or truncated one: before any fallback, and
  for every step alike. Here such a step is listed without metrics and remembered in
  `damaged_metrics` (step → error), which `read_metadata` reports as damage of that step. A step
  deleted while it is listed (a training run rotating its checkpoints) makes the listing start
  again. The temporary folders of failed saves are removed at `close`.
  """

  def __init__(self, *args, **kwargs):
    self.damaged_metrics: dict[int, Exception] = {}
    self.failed_saves: set[int] = set()  # their temporary folders are removed at `close`
    super().__init__(*args, **kwargs)

  def _get_metrics(self, step: int):
    try:
      return super()._get_metrics(step)
    except Exception as e:  # pylint: disable=broad-except  # JSON, UTF-8 or I/O errors: damage
      self.damaged_metrics[step] = e
      return None

  def close(self):
    try:
      super().close()  # waits for Orbax's threads
    except Exception:  # pylint: disable=broad-except
      if not self.failed_saves:
        raise
      # Orbax's threads re-raise the failure of a save that `save` has reported already.
    finally:
      if self.failed_saves:
        _remove_settled(self.directory, sorted(self.failed_saves))

  def _load_checkpoint_infos(self, *args, **kwargs):
    for attempt in range(_LISTING_ATTEMPTS):
      self.damaged_metrics = {}
      try:
        return super()._load_checkpoint_infos(*args, **kwargs)
      except FileNotFoundError:  # a step deleted between Orbax's glob and its reads
        if attempt == _LISTING_ATTEMPTS - 1:
          raise
        time.sleep(0.1 * (attempt + 1))


_LISTING_ATTEMPTS = 5  # listings of a checkpoint folder whose steps keep vanishing


def make_manager(
    workdir: str,
    *,
    max_to_keep: int = 3,
    create: bool = True,
    best: BestCheckpoint | None = None,
) -> ocp.CheckpointManager:
  """Manager keeping the last `max_to_keep` checkpoints, and the best by `best`."""
  _ignore_aborted_restore_noise()
  # Synchronous saves: a save that fails raises in `save` at once. Async ones left Orbax's
  # signalling threads waiting 300 s when the step directory could not be created.
  return _Manager(
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
    _remove_partial_save(manager, step)
    raise CheckpointError(f"cannot save step {step} to {manager.directory} ({_reason(e)})") from e


def _remove_partial_save(manager: ocp.CheckpointManager, step: int) -> None:
  """Removes the temporary folder of a failed save of `step` (Orbax leaves it behind, e.g. on a
  full disk, where it holds the space a retry needs). Process 0 only: the folder is shared.

  Orbax's threads may still write into it after the save raised: removed now, and again when
  the manager closes (`_Manager.close`, after those threads are done).
  """
  if jax.process_index() != 0:
    return
  if isinstance(manager, _Manager):
    manager.failed_saves.add(step)
  try:
    manager.wait_until_finished()
  except Exception:  # pylint: disable=broad-except  # the save's own failure, reported already
    pass
  remove_partial_saves(manager.directory, [step], quiet=True)


def _remove_settled(directory, steps, attempts: int = 10, pause_s: float = 0.3) -> None:
  """`remove_partial_saves` until the folders stay away: TensorStore's writes of the failed
  save that were still queued create their parent folders again when they run."""
  for _ in range(attempts):
    remove_partial_saves(directory, steps, quiet=True)
    time.sleep(pause_s)
    if not any(True for s in steps for _ in epath.Path(directory).glob(f"{s}{_ORBAX_TMP_SUFFIX}*")):
      return
  remove_partial_saves(directory, steps)


def remove_partial_saves(directory, steps, *, quiet: bool = False) -> None:
  """Removes Orbax's temporary folders of `steps` in `directory`."""
  for step in steps:
    for partial in epath.Path(directory).glob(f"{step}{_ORBAX_TMP_SUFFIX}*"):
      try:
        partial.rmtree()
      except OSError as e:
        if not quiet:
          logging.warning("cannot remove the partial checkpoint %s (%s).", partial, _reason(e))


_ORBAX_TMP_SUFFIX = ".orbax-checkpoint-tmp"  # Orbax writes a step there, then renames it


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


def check_item_files(item_dir: epath.Path) -> None:
  """Raises `FileNotFoundError` or `ValueError` when an array item lacks the files that say
  where its arrays are (`_METADATA`, and `manifest.ocdbt` beside OCDBT data), or they are empty.

  Checked before Orbax reads anything: without them its asynchronous reads fail one by one in
  background tasks, whose tracebacks reached stderr after the fallback, depending on timing.
  """
  required = ["_METADATA"]
  if any(p.name.startswith("ocdbt.process_") for p in item_dir.iterdir()):
    required.append("manifest.ocdbt")
  for name in required:
    path = item_dir / name
    if not path.is_file():
      raise FileNotFoundError(f"{path} is missing")
    if path.stat().length == 0:
      raise ValueError(f"{path} is empty")


def restore_item(manager: ocp.CheckpointManager, step: int, name: str, target: Any) -> Any:
  """The item `name` of `step` restored into the abstract `target`; no other item is read.

  An item without Orbax's tree description (`_METADATA`, written with it) is incomplete: Orbax
  would restore a plain dict without it, unchecked, so `check_item_files` refuses it first.
  """
  check_item_files(epath.Path(manager.directory) / str(step) / name)
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
  item_dir = epath.Path(manager.directory) / str(step) / name
  check_item_files(item_dir)
  # Its own checkpointer on the item's folder: a manager that has saved or restored the item with
  # `StandardSave/Restore` holds a handler that refuses `PyTreeRestore` arguments.
  with ocp.Checkpointer(ocp.PyTreeCheckpointHandler()) as checkpointer:
    return checkpointer.restore(item_dir, args=partial)


def read_metadata(manager: ocp.CheckpointManager, step: int) -> dict:
  """`restore_metadata` with its contents checked.

  Raises:
    DamagedCheckpointError: it does not parse or lacks a field, or the step's best-checkpoint
      metrics do not parse.
    config_checks.ClassNameError: a class name could choose where files go (`../x`).
  """
  try:
    if step in getattr(manager, "damaged_metrics", {}):
      raise manager.damaged_metrics[step]
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
  _ignore_aborted_restore_noise()
  try:
    return restore()
  except Exception as e:  # pylint: disable=broad-except  # pytree / TensorStore / asyncio errors
    raise DamagedCheckpointError(step, manager.directory, e) from None


def read_state(manager: ocp.CheckpointManager, step: int, target: Any) -> Any:
  """The `state` item of `step` in the abstract `target` (see `read_item`)."""
  return read_item(manager, step, lambda: restore_item(manager, step, STATE, target))


def _ignore_aborted_restore_noise() -> None:
  """Silences the leftovers of an aborted restore or save (installed once per process).

  When one array of a restore fails, Orbax closes its event loop while TensorStore still
  completes the other reads; each completion then reports "Event loop is closed" through
  `sys.unraisablehook`, and Orbax's tasks and threads that fail after that are reported by
  asyncio's logger and Orbax's (`_OrbaxBackgroundReports`), each with a traceback: a hundred of
  them, before or after the restore or save raises, depending on timing. The failure is reported
  in one line instead, and TensorStore's errors (status-coded `ValueError`s) of the reads and
  writes still finishing are dropped with them. Only those are dropped: other unraisable
  errors, and the reports of tasks that are not Orbax's, pass.
  """
  for name in ("asyncio", "absl"):
    logger = py_logging.getLogger(name)
    if not any(isinstance(f, _OrbaxBackgroundReports) for f in logger.filters):
      logger.addFilter(_OrbaxBackgroundReports())
  previous = sys.unraisablehook
  if getattr(previous, "_flowergan_filter", False):
    return

  def hook(unraisable):
    error = unraisable.exc_value
    if isinstance(error, RuntimeError) and str(error) == "Event loop is closed":
      return
    if _tensorstore_error(error):  # a read or write of the aborted operation, finishing late
      return
    previous(unraisable)

  hook._flowergan_filter = True
  sys.unraisablehook = hook


class _OrbaxBackgroundReports(py_logging.Filter):
  """Drops the reports of Orbax's background work that failed with a save or restore.

  The failure itself reaches the caller (one line): these are its echoes, each with a
  traceback, printed before or after that line depending on timing: asyncio's reports of
  Orbax's tasks (failed unobserved, or destroyed pending) and Orbax's own log of each of its
  signalling threads that raised.
  """

  def filter(self, record: py_logging.LogRecord) -> bool:
    if record.name == "asyncio":
      message = record.getMessage()
      return not (message.startswith(_ASYNCIO_REPORTS) and _from_orbax(message, record))
    if _ORBAX_SOURCE in record.pathname:
      return "_SignalingThread.run() raised an exception" not in str(record.msg)
    return True


_ORBAX_SOURCE = f"{os.sep}orbax{os.sep}checkpoint{os.sep}"
_ASYNCIO_REPORTS = (
    "Task exception was never retrieved",
    "Future exception was never retrieved",
    "_GatheringFuture exception was never retrieved",
    "Task was destroyed but it is pending",
)


def _from_orbax(message: str, record: py_logging.LogRecord) -> bool:
  """Whether the task in an asyncio report is Orbax's: its coroutine or a frame of its
  exception's traceback is in Orbax's source (a gathering future names neither), or its error
  is TensorStore's (which flowergan uses only through Orbax; a bare future names nothing)."""
  if _ORBAX_SOURCE in message:
    return True
  error = record.exc_info[1] if record.exc_info else None
  if error is None:
    return False
  frames = traceback.extract_tb(error.__traceback__)
  return any(_ORBAX_SOURCE in frame.filename for frame in frames) or _tensorstore_error(error)


_STATUS_CODES = (
    "CANCELLED|UNKNOWN|INVALID_ARGUMENT|DEADLINE_EXCEEDED|NOT_FOUND|ALREADY_EXISTS|"
    "PERMISSION_DENIED|RESOURCE_EXHAUSTED|FAILED_PRECONDITION|ABORTED|OUT_OF_RANGE|"
    "UNIMPLEMENTED|INTERNAL|UNAVAILABLE|DATA_LOSS|UNAUTHENTICATED"
)
_TENSORSTORE_ERROR = re.compile(rf"^({_STATUS_CODES}): ")


def _tensorstore_error(error: BaseException) -> bool:
  """Whether `error` is TensorStore's: a ValueError whose text starts with a status code."""
  return isinstance(error, ValueError) and bool(_TENSORSTORE_ERROR.match(str(error)))


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
  for _ in range(_LISTING_ATTEMPTS):
    deleted = False
    for step in sorted(manager.all_steps(), reverse=True):
      if step in damaged:
        continue
      try:
        result = restore(step)
      except DamagedCheckpointError as e:
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
    raise CheckpointError(
        f"the checkpoints in {manager.directory} were deleted while being read (a training run "
        f"rotating them?): {advice}"
    )
  raise CheckpointError(
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
  """The step of the best checkpoint, ranked as the run's config says (`best_checkpoint`) in
  the newest step whose metadata reads; steps whose metrics are damaged are not ranked."""
  _, metadata, _ = restore_newest(
      manager,
      lambda step: read_metadata(manager, step),
      advice="train again (another --workdir) or restore them.",
  )
  best = best_checkpoint_of(config_from_metadata(metadata))
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
