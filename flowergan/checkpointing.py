"""Orbax checkpoints of the training state plus the JSON metadata needed to use them alone.

Layout: `workdir/checkpoints/<step>/{state, metadata}`. `metadata` holds the whole config as JSON
and the class names, so sampling needs nothing but the workdir. Arrays are restored onto the
current mesh (a run saved on 8 devices samples on 1).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp
from etils import epath

from flowergan import errors, storage
from flowergan import train_step as ts
from flowergan import mesh as mesh_lib

FORMAT_VERSION = 1


class CheckpointError(errors.FlowerganError):
  """A checkpoint is missing or does not fit the current config (one-line message)."""


def checkpoint_dir(workdir: str | os.PathLike) -> epath.Path:
  """`workdir/checkpoints`; a `gs://` workdir stays a URL (see `flowergan.storage`)."""
  return storage.workdir_path(workdir) / "checkpoints"


@dataclasses.dataclass(frozen=True)
class BestCheckpoint:
  """Which evaluation metric ranks checkpoints: `metric` a key of `evaluate`'s results."""

  metric: str = "kid"
  mode: str = "min"  # 'min': lower is better; 'max': higher is better
  keep: int = 1

  def value(self, metrics: dict) -> float:
    return float(metrics[self.metric])


def best_checkpoint_of(config: ml_collections.ConfigDict) -> BestCheckpoint | None:
  """The config's `best_checkpoint` settings (None without one, or with an empty metric)."""
  best = config.get("best_checkpoint")
  if not best or not best.get("metric"):
    return None
  if best.get("mode", "min") not in ("min", "max") or best.get("keep", 1) < 1:
    raise CheckpointError(
        f"config.best_checkpoint: mode must be 'min' or 'max' and keep >= 1, got "
        f"mode={best.get('mode')!r}, keep={best.get('keep')!r}."
    )
  return BestCheckpoint(str(best.metric), str(best.get("mode", "min")), int(best.get("keep", 1)))


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
  """Async-saving manager keeping the last `max_to_keep` checkpoints, and the best by `best`."""
  return ocp.CheckpointManager(
      checkpoint_dir(workdir),
      options=ocp.CheckpointManagerOptions(
          create=create, enable_async_checkpointing=True, **_preservation(max_to_keep, best)
      ),
      item_names=("state", "metadata"),
  )


def make_metadata(config: ml_collections.ConfigDict, class_names) -> dict:
  return {
      "format_version": FORMAT_VERSION,
      "class_names": list(class_names),
      "image_size": int(config.data.image_size),
      "config": json.loads(config.to_json()),
  }


def config_from_metadata(metadata: dict) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(metadata["config"])


def save(
    manager: ocp.CheckpointManager,
    state: ts.TrainState,
    metadata: dict,
    *,
    force: bool = False,
    metrics: dict | None = None,
) -> bool:
  """Starts an async save of `state` at its step (returns at once; `wait_until_finished`).

  `metrics` (the same on every process) rank the checkpoint for the best-checkpoint policy.
  """
  step = int(jax.device_get(state.step))
  if step in manager.all_steps():
    return False
  return manager.save(
      step,
      args=ocp.args.Composite(
          state=ocp.args.StandardSave(state), metadata=ocp.args.JsonSave(metadata)
      ),
      metrics=metrics,
      force=force,
  )


def restore_metadata(manager: ocp.CheckpointManager, step: int) -> dict:
  restored = manager.restore(step, args=ocp.args.Composite(metadata=ocp.args.JsonRestore()))
  return dict(restored["metadata"])


def abstract_state(gan: ts.WGANGP, mesh) -> Any:
  """Shapes, dtypes and (replicated, current-mesh) shardings of the state, without computing it."""
  shapes = jax.eval_shape(gan.init, jax.random.key(0))
  sharding = mesh_lib.replicated(mesh)
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), shapes)


def restore_state(manager: ocp.CheckpointManager, step: int, gan: ts.WGANGP, mesh) -> ts.TrainState:
  restored = manager.restore(
      step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state(gan, mesh)))
  )
  return restored["state"]


def check_compatible(
    metadata: dict, config: ml_collections.ConfigDict, class_names, workdir: str
) -> None:
  """Refuses to resume a run whose image size, classes or architecture differ from `config`."""
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


@dataclasses.dataclass
class TrainedModel:
  """A trained run as loaded from its checkpoint: what sampling, evaluation and the demo use."""

  gan: ts.WGANGP
  state: ts.TrainState
  class_names: list[str]
  step: int
  config: object

  def variables(self, use_ema: bool = True) -> tuple:
    params = self.state.ema_params if use_ema else self.state.g_params
    return params, self.state.g_batch_stats


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


def load_trained(workdir: str, step: int | str | None = None) -> TrainedModel:
  """The generator (and the rest of the state) from `workdir`'s latest or given checkpoint.

  `step`: a step number, None for the latest, or `'best'` for the best evaluated one.
  """
  directory = checkpoint_dir(workdir)
  how_to_train = "train one with `python train.py --config=configs/cwgan128.py` (or pass --workdir)"
  if not directory.is_dir():
    raise CheckpointError(f"no checkpoint in {workdir}: {how_to_train}.")
  manager = make_manager(workdir, create=False)
  steps = manager.all_steps()
  if not steps:
    raise CheckpointError(f"no checkpoint in {workdir}: {how_to_train}.")
  if step is None:
    step = max(steps)
  elif step == "best":
    step = best_step(workdir, manager)
  elif step not in steps:
    raise CheckpointError(
        f"no checkpoint for step {step} in {workdir}; available steps: {sorted(steps)}."
    )
  metadata = restore_metadata(manager, step)
  config = config_from_metadata(metadata)
  class_names = metadata["class_names"]
  gan = ts.wgangp_from_config(config, num_classes=len(class_names))
  state = restore_state(manager, step, gan, mesh_lib.make_mesh())
  manager.close()
  return TrainedModel(gan=gan, state=state, class_names=class_names, step=step, config=config)
