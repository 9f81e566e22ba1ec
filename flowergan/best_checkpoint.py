"""The best-checkpoint policy: which evaluation metric ranks a run's checkpoints, how many of the
best the checkpoint manager keeps besides the latest ones, and which step is the best.

Training saves each checkpoint with its evaluation metrics (`checkpointing.save`); Orbax's
manager ranks the steps by them as `BestCheckpoint.manager_options` says, and `best_step`
reads the ranking back (`sample.py --step=best`).
"""

from __future__ import annotations

import dataclasses

import ml_collections
import orbax.checkpoint as ocp

from flowergan import checkpoint_recovery, checkpointing, config_checks

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

  def manager_options(self, max_to_keep: int) -> dict:
    """Orbax manager options that keep the latest `max_to_keep` and the `keep` best."""
    policies = ocp.checkpoint_managers
    return {
        "preservation_policy": policies.AnyPreservationPolicy(
            [
                policies.LatestN(n=max_to_keep),
                # BestN keeps the last `n` of the ascending order: reverse it when lower is better.
                policies.BestN(
                    get_metric_fn=self.value,
                    reverse=self.mode == "min",
                    n=self.keep,
                    keep_checkpoints_without_metrics=False,
                ),
            ]
        ),
        "best_fn": self.value,
        "best_mode": self.mode,
    }


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


def best_step(workdir: str, manager: ocp.CheckpointManager) -> int:
  """The step of the best checkpoint, ranked as the run's config says (`best_checkpoint`) in
  the newest step whose metadata reads; steps whose metrics are damaged are not ranked."""
  _, metadata, _ = checkpoint_recovery.restore_newest(
      manager,
      lambda step: checkpointing.read_metadata(manager, step),
      advice="train again (another --workdir) or restore them.",
  )
  best = best_checkpoint_of(checkpointing.config_from_metadata(metadata))
  if best is None:
    raise checkpointing.CheckpointError(
        f"the run in {workdir} does not rank its checkpoints (no config.best_checkpoint): "
        "pass --step=N or leave --step out for the latest."
    )
  ranked = checkpointing.make_manager(workdir, create=False, best=best)
  step = ranked.best_step()  # None when no checkpoint has metrics
  ranked.close()
  if step is None:
    raise checkpointing.CheckpointError(
        f"no evaluated checkpoint in {workdir} (config.eval_every > 0 evaluates during "
        "training): pass --step=N or leave --step out for the latest."
    )
  return step
