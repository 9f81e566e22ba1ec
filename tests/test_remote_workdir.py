"""`gs://` workdirs: the URL reaches every writer unchanged; an unreachable one fails in one line.

Nothing here touches a real bucket: the in-process run fakes the storage layer (and refuses any
socket), and the unreachable-bucket run has no network at all (`unshare -n`).
"""

import os
import socket
import subprocess
import sys
import time

import pytest
from clu import metric_writers

from flowergan import checkpointing, storage
from flowergan import train as train_lib
from tests import tiny_config

BUCKET_RUN = "gs://flowergan-fake-bucket/run"


def test_workdir_path_keeps_urls_and_makes_local_paths_absolute(tmp_path, monkeypatch):
  assert str(storage.workdir_path(BUCKET_RUN)) == BUCKET_RUN
  assert str(checkpointing.checkpoint_dir(BUCKET_RUN)) == BUCKET_RUN + "/checkpoints"
  monkeypatch.chdir(tmp_path)
  assert str(storage.workdir_path("runs/x")) == str(tmp_path / "runs" / "x")
  assert storage.is_remote(BUCKET_RUN) and not storage.is_remote("runs/x")


def test_local_write_bytes_and_append_line(tmp_path):
  path = tmp_path / "a" / "b.bin"
  storage.write_bytes(path, b"xy")
  assert storage.read_bytes(path) == b"xy" and storage.exists(path)
  storage.append_line(tmp_path / "m.jsonl", "1")
  storage.append_line(tmp_path / "m.jsonl", "2")
  assert (tmp_path / "m.jsonl").read_text() == "1\n2\n"


class _FakeManager:
  """Stands in for flowergan's checkpoint manager (Orbax's CheckpointManager with damage
  handling): records its directory and the saved steps."""

  instances = []

  def __init__(self, directory, options=None, item_names=None):
    self.directory, self.steps = str(directory), []
    self.damaged_metrics, self.failed_saves = {}, set()
    _FakeManager.instances.append(self)

  def latest_step(self):
    return max(self.steps) if self.steps else None

  def all_steps(self):
    return list(self.steps)

  def save(self, step, args=None, metrics=None, force=False):
    self.steps.append(step)
    return True

  def reached_preemption(self, step):
    return False

  def wait_until_finished(self):
    pass

  def close(self):
    pass


@pytest.fixture
def fake_storage(monkeypatch):
  """In-memory objects instead of a bucket; every path written or read is recorded."""
  objects, touched = {}, []

  def write_bytes(path, data):
    touched.append(str(path))
    objects[str(path)] = bytes(data)

  def append_line(path, line):
    touched.append(str(path))
    objects[str(path)] = objects.get(str(path), b"") + (line + "\n").encode()

  def exists(path):
    touched.append(str(path))
    return str(path) in objects

  def read_bytes(path):
    touched.append(str(path))
    return objects[str(path)]

  def create_default_writer(logdir, just_logging=False, **kwargs):
    touched.append(str(logdir))
    return metric_writers.LoggingWriter()

  def no_network(*args, **kwargs):
    raise AssertionError("a test tried to use the network")

  for name, fake in [
      ("write_bytes", write_bytes),
      ("append_line", append_line),
      ("exists", exists),
      ("read_bytes", read_bytes),
      ("check_reachable", lambda workdir, timeout_s=None: touched.append(str(workdir))),
  ]:
    monkeypatch.setattr(storage, name, fake)
  monkeypatch.setattr(metric_writers, "create_default_writer", create_default_writer)
  monkeypatch.setattr(checkpointing, "_Manager", _FakeManager)
  monkeypatch.setattr(socket.socket, "connect", no_network)
  monkeypatch.setattr(socket, "getaddrinfo", no_network)
  _FakeManager.instances.clear()
  return objects, touched


def test_gs_workdir_reaches_every_writer_unchanged(fake_storage, tmp_path):
  objects, touched = fake_storage
  config = tiny_config.get_config(cache_dir=tmp_path / "cache")
  config.train.num_steps = 2
  config.eval_every = 0  # the evaluation at the end: metrics.jsonl and the classifier cache
  train_lib.train_and_evaluate(config, BUCKET_RUN)

  assert [m.directory for m in _FakeManager.instances] == [BUCKET_RUN + "/checkpoints"]
  assert _FakeManager.instances[0].steps == [2]
  assert all(p == BUCKET_RUN or p.startswith(BUCKET_RUN + "/") for p in touched), touched
  assert BUCKET_RUN in touched  # the reachability check and the TensorBoard writer's logdir
  written = sorted(objects)
  assert BUCKET_RUN + "/samples/dandelion_step0000002.png" in written
  assert BUCKET_RUN + "/metrics.jsonl" in written
  assert BUCKET_RUN + "/eval/classifier.msgpack" in written
  assert not os.path.exists("gs:")  # nothing mangled into a local `gs:/...` directory


def _can_unshare_network() -> bool:
  try:
    return (
        subprocess.run(["unshare", "-n", "true"], capture_output=True, timeout=10).returncode == 0
    )
  except (OSError, subprocess.TimeoutExpired):
    return False


@pytest.mark.skipif(not _can_unshare_network(), reason="needs `unshare -n` (root, Linux)")
def test_unreachable_gs_workdir_fails_in_one_line_without_network(tmp_path):
  env = dict(os.environ, PYTHONPATH=str(tiny_config.REPO), FLOWERGAN_REMOTE_TIMEOUT_S="20")
  start = time.monotonic()
  result = subprocess.run(
      ["unshare", "-n", sys.executable, str(tiny_config.REPO / "train.py")]
      + [f"--config={tiny_config.CONFIG_FILE}:tiny", "--workdir=gs://flowergan-no-bucket/run"]
      + [f"--config.data.cache_dir={tmp_path / 'cache'}"],
      cwd=tmp_path,
      env=env,
      capture_output=True,
      text=True,
      timeout=240,
  )
  elapsed = time.monotonic() - start
  assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith("error: ") and "gs://flowergan-no-bucket/run" in last, last
  assert elapsed < 180
  assert not (tmp_path / "gs:").exists()
