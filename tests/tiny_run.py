"""One tiny run trained by the real train.py (16×16, 2 steps, with its final evaluation),
shared by the tests of the demo, the walks and the saved noise (trained once per session)."""

import os
import subprocess
import sys

from tests import tiny_config

REPO = tiny_config.REPO
FLAGS = [
    "--config=" + str(REPO / "configs" / "demo.py"),
    "--config.data.image_size=16",
    "--config.data.synthetic_num_per_class=16",
    "--config.model.z_dim=8",
    "--config.model.width=8",
    "--config.model.critic_width=8",
    "--config.train.batch_size=8",
    "--config.train.n_critic=2",
    "--config.train.num_steps=2",
    "--config.log_every=1",
    "--config.sample_every=2",
    "--config.checkpoint_every=2",
    # The evaluation at the end writes metrics.jsonl (shown by the demo); kept tiny.
    "--config.eval_every=0",
    "--config.eval.num_per_class=16",
    "--config.eval.batch_size=32",
    "--config.eval.classifier_steps=10",
    "--config.eval.classifier_batch_size=16",
    "--config.eval.kid_subsets=5",
    "--config.eval.kid_subset_size=16",
    "--config.eval.swd_nhoods_per_image=16",
]
_RUNS = {}


def env(devices: int = 1) -> dict:
  out = dict(os.environ)
  out["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  out["PYTHONPATH"] = str(REPO)
  return out


def run(script: str, *args, cwd=REPO, timeout: int = 600) -> subprocess.CompletedProcess:
  """`python script args…` from the repository (one CPU device), output captured."""
  return subprocess.run(
      [sys.executable, str(REPO / script), *args],
      cwd=cwd,
      env=env(),
      capture_output=True,
      text=True,
      timeout=timeout,
  )


def trained_workdir(tmp_path_factory):
  """The workdir of the shared tiny run (trained at the first call of the session)."""
  if "workdir" not in _RUNS:
    root = tmp_path_factory.mktemp("tiny_run")
    workdir = root / "run"
    result = run(
        "train.py", *FLAGS, f"--config.data.cache_dir={root / 'cache'}", f"--workdir={workdir}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    _RUNS["workdir"] = workdir
  return _RUNS["workdir"]
