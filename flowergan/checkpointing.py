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
read: a step that does not restore is *damaged* (`DamagedCheckpointError`, naming the step);
`flowergan.checkpoint_recovery` falls back to the newest one that restores. Class names and the
stored config are validated like the user's own (`flowergan.config_checks`). Which checkpoints
the manager keeps besides the latest is `flowergan.best_checkpoint`'s policy; the echoes of a
failed Orbax operation are silenced by `flowergan.orbax_logs`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import jax
import ml_collections
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

from flowergan import config_checks, default_config, errors, orbax_logs, storage
from flowergan import mesh as mesh_lib

if TYPE_CHECKING:  # `best_checkpoint` reads checkpoints through this module
  from flowergan import best_checkpoint

FORMAT_VERSION = 2  # 1: no `generator` item (the generator's variables only inside `state`)
STATE, GENERATOR, METADATA = "state", "generator", "metadata"  # the items of a step
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
    for attempt in range(LISTING_ATTEMPTS):
      self.damaged_metrics = {}
      try:
        return super()._load_checkpoint_infos(*args, **kwargs)
      except FileNotFoundError:  # a step deleted between Orbax's glob and its reads
        if attempt == LISTING_ATTEMPTS - 1:
          raise
        time.sleep(0.1 * (attempt + 1))


LISTING_ATTEMPTS = 5  # listings of a checkpoint folder whose steps keep vanishing


def make_manager(
    workdir: str,
    *,
    max_to_keep: int = 3,
    create: bool = True,
    best: best_checkpoint.BestCheckpoint | None = None,
) -> ocp.CheckpointManager:
  """Manager keeping the last `max_to_keep` checkpoints, and the best by `best` (see
  `flowergan.best_checkpoint`)."""
  orbax_logs.ignore_aborted_operation_noise()
  keep = {"max_to_keep": max_to_keep} if best is None else best.manager_options(max_to_keep)
  # Synchronous saves: a save that fails raises in `save` at once. Async ones left Orbax's
  # signalling threads waiting 300 s when the step directory could not be created.
  return _Manager(
      checkpoint_dir(workdir),
      options=ocp.CheckpointManagerOptions(create=create, enable_async_checkpointing=False, **keep),
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

  Call it only with a target whose architecture matches the checkpoint's
  (`checkpoint_recovery.check_compatible`), so that a failure here means damage, not a changed
  config.
  """
  orbax_logs.ignore_aborted_operation_noise()
  try:
    return restore()
  except Exception as e:  # pylint: disable=broad-except  # pytree / TensorStore / asyncio errors
    raise DamagedCheckpointError(step, manager.directory, e) from None


def read_state(manager: ocp.CheckpointManager, step: int, target: Any) -> Any:
  """The `state` item of `step` in the abstract `target` (see `read_item`)."""
  return read_item(manager, step, lambda: restore_item(manager, step, STATE, target))
