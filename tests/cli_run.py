"""Running the entry points (train.py, sample.py, evaluate.py) as a user does, in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys

from flowergan import cli
from tests import tiny_config

REPO = tiny_config.REPO
TINY_FLAGS = [f"--config={tiny_config.CONFIG_FILE}:tiny", "--config.eval_every=-1"]


def make_env(devices=8, **extra):
  out = dict(os.environ)
  out["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  out["PYTHONPATH"] = str(REPO)
  out.update(extra)
  return out


def _umask_022():
  os.umask(0o022)


def run(script, *args, cwd=REPO, devices=8, env=None, timeout=300):
  """`script` (train.py, sample.py, evaluate.py) as a user runs it."""
  return subprocess.run(
      [sys.executable, str(REPO / script), *args],
      cwd=cwd,
      env=env or make_env(devices),
      capture_output=True,
      text=True,
      timeout=timeout,
      preexec_fn=_umask_022,
  )


def assert_one_line_error(result, *needles):
  """Exit status 1, no traceback, one `error: ` line holding every needle; returns it."""
  assert result.returncode == cli.EXIT_ERROR, (result.returncode, result.stderr[-2000:])
  assert "Traceback" not in result.stderr, result.stderr[-3000:]
  lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
  assert len(lines) == 1, result.stderr[-3000:]
  for needle in needles:
    assert needle in lines[0], (needle, lines[0])
  return lines[0]
