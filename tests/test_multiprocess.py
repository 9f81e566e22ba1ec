"""Two processes × two CPU devices on localhost: a real multi-process run of train.py.

`jax.distributed` with gloo collectives between the processes stands in for two hosts. Two
launches share one workdir: (A) a run that a SIGTERM to process 1 stops, every process at the
same step; (B) the rerun, which resumes, evaluates once and is cut short by killing process 1.
Then one process with 4 devices trains the same steps from scratch for the comparison.

Run alone: `python -m pytest -q -m multiprocess`. About 6.5 minutes on 2 loaded cores, most of it
compilation: every process compiles the step itself (see `_env`).
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import chex
import jax
import numpy as np
import pytest
from PIL import Image

from flowergan import checkpointing, cli, trained
from flowergan import mesh as mesh_lib
from flowergan import train_step as ts
from tests import tiny_config

pytestmark = pytest.mark.multiprocess

REPO = tiny_config.REPO
NUM_PROCESSES = 2
HEARTBEAT_TIMEOUT_S = 10  # how soon a killed process is noticed (JAX's default: 100 s)
LAUNCH_TIMEOUT_S = 420  # hard limit for one launch of both processes

# An audit hook for the subprocesses: the paths each process opens for writing in the workdir.
_SITECUSTOMIZE = """
import os, sys
_root, _log = os.environ.get("TEST_WORKDIR"), os.environ.get("TEST_WRITES_LOG")
if _root and _log:
  _fd = os.open(_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
  def _record(event, args):
    if event != "open" or not isinstance(args[0], (str, bytes, os.PathLike)):
      return
    mode, flags = args[1] or "", args[2] or 0
    if any(c in mode for c in "wax+") or flags & (os.O_WRONLY | os.O_RDWR):
      path = os.path.abspath(os.fsdecode(args[0]))
      if path.startswith(_root):
        os.write(_fd, (path + "\\n").encode())
  sys.addaudithook(_record)
"""


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _env(devices: int, hooks=None, workdir=None, writes_log=None) -> dict:
  env = dict(os.environ)
  env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  env["JAX_PLATFORMS"] = "cpu"
  env["PYTHONPATH"] = os.pathsep.join(filter(None, [hooks and str(hooks), str(REPO)]))
  env["FLOWERGAN_HEARTBEAT_TIMEOUT_S"] = str(HEARTBEAT_TIMEOUT_S)
  env["PYTHONUNBUFFERED"] = "1"
  if devices == 2:
    # No persistent compilation cache for the processes of a multi-process run: JAX's cache key
    # differs between process 0 and the others (jax 0.10.2), so with a warm cache process 0
    # reaches the first collective a minute before process 1, and gloo's rendezvous gives up
    # after 30 s. Cold, both compile at the same pace. (Checked: even a program over both
    # processes' devices gets another key in each process, and only process 0 writes the cache,
    # so `jax_share_binary_between_hosts` leaves process 1 waiting for a key never written.)
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
  if workdir is not None:
    env.update(TEST_WORKDIR=str(workdir), TEST_WRITES_LOG=str(writes_log))
  return env


class _Process:
  """One train.py process whose stdout and stderr are collected by threads."""

  def __init__(self, args, env):
    self.popen = subprocess.Popen(
        [sys.executable, str(REPO / "train.py"), *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    self.out, self.err = [], []
    self._threads = [
        threading.Thread(target=self._collect, args=(stream, lines), daemon=True)
        for stream, lines in ((self.popen.stdout, self.out), (self.popen.stderr, self.err))
    ]
    for t in self._threads:
      t.start()

  @staticmethod
  def _collect(stream, lines):
    for line in stream:
      lines.append(line)

  def stdout(self) -> str:
    return "".join(self.out)

  def stderr(self) -> str:
    return "".join(self.err)

  def wait(self, deadline: float) -> int | None:
    try:
      self.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
      return None
    for t in self._threads:
      t.join(timeout=5)
    return self.popen.returncode

  def kill(self):
    if self.popen.poll() is None:
      self.popen.kill()
      self.popen.wait()


def _wait_until(condition, deadline: float, processes) -> None:
  while not condition():
    if time.monotonic() > deadline or any(p.popen.poll() is not None for p in processes):
      logs = "\n".join(p.stdout()[-1500:] + p.stderr()[-1500:] for p in processes)
      raise AssertionError(f"condition not reached; logs:\n{logs}")
    time.sleep(0.5)


def _launch(root, workdir, *flags):
  """Both processes of one run, started together on a fresh coordinator port."""
  port = _free_port()
  common = [
      f"--config={tiny_config.CONFIG_FILE}:tiny",
      f"--config.data.cache_dir={root / 'cache'}",
      "--config.train.n_critic=1",  # half the step to compile, in every process of every launch
      f"--workdir={workdir}",
      f"--coordinator_address=localhost:{port}",
      f"--num_processes={NUM_PROCESSES}",
      "--verbosity=1",  # the names of the files each process reads
      *flags,
  ]
  return [
      _Process(
          [*common, f"--process_id={i}"],
          _env(2, root / "hooks", workdir, root / f"writes{i}.log"),
      )
      for i in range(NUM_PROCESSES)
  ]


def _steps(workdir) -> list[int]:
  directory = workdir / "checkpoints"
  return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """Launch A (stopped by SIGTERM), launch B (resumes, evaluates, loses process 1)."""
  root = tmp_path_factory.mktemp("multiprocess")
  (root / "hooks").mkdir()
  (root / "hooks" / "sitecustomize.py").write_text(_SITECUSTOMIZE)
  workdir = root / "run"
  start = time.monotonic()
  a = _launch(
      root,
      workdir,
      "--config.train.num_steps=1000",
      "--config.checkpoint_every=2",
      "--config.sample_every=2",
      "--config.eval_every=-1",
  )
  try:
    deadline = time.monotonic() + LAUNCH_TIMEOUT_S
    _wait_until(lambda: any(line.startswith("step 3/") for line in a[0].out), deadline, a)
    a[1].popen.send_signal(signal.SIGTERM)
    codes_a = [p.wait(deadline) for p in a]
  finally:
    for p in a:
      p.kill()
  stops = [re.findall(r"stopped at step (\d+)", p.stdout()) for p in a]
  # Stopped early, resumable: train.py's documented exit status, on every process.
  assert codes_a == [cli.EXIT_STOPPED_EARLY] * 2 and all(stops), [p.stderr()[-3000:] for p in a]
  stop = int(stops[0][0])
  steps_a = _steps(workdir)
  time_a = time.monotonic() - start

  b = _launch(
      root,
      workdir,
      "--config.train.num_steps=1000",
      "--config.checkpoint_every=1",
      "--config.sample_every=1000",
      "--config.keep_checkpoints=10",
      f"--config.eval_every={stop + 1}",
  )
  try:
    deadline = time.monotonic() + LAUNCH_TIMEOUT_S
    _wait_until(lambda: stop + 2 in _steps(workdir), deadline, b)
    b[1].popen.kill()
    killed = time.monotonic()
    code_b0 = b[0].wait(killed + 6 * HEARTBEAT_TIMEOUT_S)
    exit_after = time.monotonic() - killed
  finally:
    for p in b:
      p.kill()
  return dict(
      root=root,
      workdir=workdir,
      a=a,
      b=b,
      stop=stop,
      stops=stops,
      steps_a=steps_a,
      code_b0=code_b0,
      exit_after=exit_after,
      times=(time_a, time.monotonic() - start - time_a),
  )


def test_every_process_reports_its_place(runs):
  for i, p in enumerate(runs["a"]):
    assert f"process {i} of 2: 2 local devices, 4 global devices (cpu)" in p.stdout()


def test_sigterm_to_one_process_stops_all_at_the_same_step(runs):
  stops, stop = runs["stops"], runs["stop"]
  assert [s[0] for s in stops] == [str(stop)] * NUM_PROCESSES and stop >= 3
  assert runs["steps_a"][-1] == stop  # the checkpoint of the stop step is the newest
  assert all(s % 2 == 0 for s in runs["steps_a"][:-1])  # the rest are the periodic ones


def test_rerun_resumes_from_the_stop_checkpoint(runs):
  stop = runs["stop"]
  out = runs["b"][0].stdout()
  first = re.search(r"^step (\d+)/", out, re.M)
  assert first and int(first.group(1)) == stop + 1, out[-2000:]
  assert f"Resumed from {runs['workdir'] / 'checkpoints'} at step {stop}" in runs["b"][0].stderr()


def test_each_process_reads_a_disjoint_part_of_every_class(runs):
  shards = {}
  for i, p in enumerate(runs["a"]):
    for cls, files in re.findall(r"shard of process \d+, class '(\w+)': (.*)", p.stderr()):
      shards[i, cls] = set(files.split())
  cache = next((runs["root"] / "cache").iterdir())
  for cls in ("dandelion", "marigold"):
    mine, theirs = shards[0, cls], shards[1, cls]
    assert mine and theirs and not mine & theirs
    assert mine | theirs == {f"{cls}/{f.name}" for f in (cache / cls).iterdir()}


def test_only_process_zero_writes_samples_events_and_metrics(runs):
  workdir = runs["workdir"]
  outside_checkpoints = lambda log: {
      line
      for line in (log.read_text().split() if log.exists() else [])
      if not line.startswith(str(workdir / "checkpoints"))
  }
  writes0 = outside_checkpoints(runs["root"] / "writes0.log")
  writes1 = outside_checkpoints(runs["root"] / "writes1.log")
  assert writes1 == set()
  assert any("/samples/" in w for w in writes0) and any("metrics.jsonl" in w for w in writes0)
  assert len(os.listdir(workdir / "samples")) > 0
  pids0 = {str(runs["a"][0].popen.pid), str(runs["b"][0].popen.pid)}
  events = [f for f in os.listdir(workdir) if f.startswith("events.out.tfevents")]
  writers = [re.search(r"\.(\d+)\.\d+\.v2$", f).group(1) for f in events]  # <host>.<pid>.N.v2
  assert events and set(writers) <= pids0, (events, pids0)
  lines = (workdir / "metrics.jsonl").read_text().splitlines()
  assert [json.loads(line)["step"] for line in lines] == [runs["stop"] + 1]


def test_the_evaluated_step_is_the_best_checkpoint(runs):
  model = trained.load_trained(str(runs["workdir"]), step="best")
  assert model.step == runs["stop"] + 1


def test_a_dying_process_stops_the_others_in_bounded_time(runs):
  assert runs["code_b0"] not in (None, 0), runs["b"][0].stderr()[-3000:]
  assert runs["exit_after"] < 6 * HEARTBEAT_TIMEOUT_S
  assert "another task died" in runs["b"][0].stderr()


@pytest.fixture(scope="module")
def single_process_reference(runs):
  """The same config and seed, one process with 4 devices, straight to the compared step."""
  workdir = runs["root"] / "reference"
  step = runs["stop"] + 2
  start = time.monotonic()
  result = subprocess.run(
      [
          sys.executable,
          str(REPO / "train.py"),
          f"--config={tiny_config.CONFIG_FILE}:tiny",
          f"--config.data.cache_dir={runs['root'] / 'cache'}",
          "--config.train.n_critic=1",
          "--config.data.input_shards=2",  # the two processes' shards of the files, side by side
          f"--config.train.num_steps={step}",
          "--config.eval_every=-1",
          f"--workdir={workdir}",
      ],
      cwd=REPO,
      env=_env(4),
      capture_output=True,
      text=True,
      timeout=LAUNCH_TIMEOUT_S,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert "process 0 of 1: 4 local devices, 4 global devices (cpu)" in result.stdout
  return workdir, step, time.monotonic() - start


def test_two_processes_equal_one_process_with_four_devices(runs, single_process_reference):
  reference, step, _ = single_process_reference
  two = _restore_state(runs["workdir"], step)
  one = _restore_state(reference, step)
  # Same global batch, same reductions over 4 devices; only the cross-process all-reduce (gloo)
  # may sum in another order than XLA:CPU's in-process one: float32 rounding, nothing more.
  chex.assert_trees_all_close(jax.device_get(two), jax.device_get(one), rtol=1e-5, atol=1e-6)


def _restore_state(workdir, step: int):
  """The whole training state (both nets, optimisers, EMA) of checkpoint `step`."""
  manager = checkpointing.make_manager(str(workdir), create=False)
  try:
    config = checkpointing.config_from_metadata(checkpointing.read_metadata(manager, step))
    gan = ts.wgangp_from_config(config, num_classes=2)
    return checkpointing.read_state(manager, step, ts.abstract_state(gan, mesh_lib.make_mesh()))
  finally:
    manager.close()


def test_the_checkpoint_samples_in_a_single_process(runs, tmp_path):
  out = tmp_path / "grid.png"
  result = subprocess.run(
      [sys.executable, str(REPO / "sample.py"), f"--workdir={runs['workdir']}"]
      + [f"--step={runs['stop'] + 2}", "--num=2", f"--out={out}"],
      cwd=REPO,
      env=_env(1),
      capture_output=True,
      text=True,
      timeout=300,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert out.exists() and np.asarray(Image.open(out)).ndim == 3
