"""The best evaluated checkpoint is kept besides the latest ones, and `--step=best` loads it."""

import dataclasses
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from flowergan import best_checkpoint, checkpointing, trained
from flowergan import mesh as mesh_lib
from flowergan import train_step as ts
from tests import tiny_config

KIDS = {1: 0.5, 2: 0.1, 3: 0.3, 4: 0.4, 5: 0.6}  # step 2 is the best; 3, 4, 5 are worse


def _save_run(workdir, kids: dict, keep: int = 2) -> None:
  """Saves the tiny model's initial state at each step of `kids` with that KID."""
  config = tiny_config.get_config()
  gan = ts.wgangp_from_config(config, num_classes=2)
  state = ts.init_state(gan, jax.random.key(0), mesh_lib.make_mesh())
  metadata = checkpointing.make_metadata(config, ["dandelion", "marigold"])
  best = best_checkpoint.best_checkpoint_of(config)
  manager = checkpointing.make_manager(str(workdir), max_to_keep=keep, best=best)
  for step, kid in kids.items():
    at_step = dataclasses.replace(state, step=jnp.asarray(step, state.step.dtype))
    metrics = None if kid is None else {"kid": kid, "fd": 1.0}
    checkpointing.save(manager, step, ts.checkpoint_items(at_step), metadata, metrics=metrics)
    manager.wait_until_finished()
  manager.close()


@pytest.fixture(scope="module")
def ranked_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("best") / "run"
  _save_run(workdir, KIDS)
  return workdir


def test_best_step_survives_newer_worse_ones(ranked_run):
  kept = sorted(int(p.name) for p in (ranked_run / "checkpoints").iterdir())
  assert kept == [2, 4, 5]  # the best (2) and the latest two


def test_load_trained_best(ranked_run):
  assert trained.load_trained(str(ranked_run), step="best").step == 2
  assert trained.load_trained(str(ranked_run)).step == 5


def test_default_config_ranks_by_class_averaged_kid_lower_is_better():
  best = best_checkpoint.best_checkpoint_of(tiny_config.get_config())
  assert (best.metric, best.mode, best.keep) == ("kid", "min", 1)


def test_best_without_metrics_is_one_line_error(tmp_path):
  workdir = tmp_path / "unranked"
  _save_run(workdir, {1: None})
  with pytest.raises(checkpointing.CheckpointError, match="no evaluated checkpoint"):
    trained.load_trained(str(workdir), step="best")


def test_sample_cli_step_best(ranked_run, tmp_path):
  out = tmp_path / "best.png"
  result = subprocess.run(
      [sys.executable, str(tiny_config.REPO / "sample.py"), f"--workdir={ranked_run}"]
      + ["--step=best", "--num=2", f"--out={out}"],
      capture_output=True,
      text=True,
      timeout=300,
  )
  assert result.returncode == 0, result.stderr[-2000:]
  assert "step 2," in result.stdout and out.exists()
  result = subprocess.run(
      [sys.executable, str(tiny_config.REPO / "sample.py"), f"--workdir={ranked_run}"]
      + ["--step=worst"],
      capture_output=True,
      text=True,
      timeout=300,
  )
  assert result.returncode != 0 and "Traceback" not in result.stderr
  assert result.stderr.strip().splitlines()[-1].startswith("error: --step must be")
