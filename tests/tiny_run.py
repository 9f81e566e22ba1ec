"""One tiny run trained by the real train.py (16×16, 2 steps, with its final evaluation),
shared by the tests of the demo, the walks and the saved noise (trained once per session)."""

import os
import subprocess
import sys

from tests import tiny_config

REPO = tiny_config.REPO
FLAGS = [
    "--config=" + str(REPO / "configs" / "cwgan128.py") + ":tiny",
    "--config.train.num_steps=2",
    # The evaluation at the end writes metrics.jsonl (shown by the demo); kept tiny.
    "--config.eval_every=0",
    "--config.eval.classifier_steps=10",
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
