"""flowergan.workdir_guard: one training run per workdir; the lock never outlives its holder."""

import os
import subprocess
import sys

import pytest

from flowergan import train as train_lib
from flowergan import workdir_guard
from tests import cli_run, tiny_config

TINY_FLAGS = cli_run.TINY_FLAGS
_env = cli_run.make_env
_run = cli_run.run
_assert_one_line_error = cli_run.assert_one_line_error


def _config(root, **train):
  config = tiny_config.get_config(cache_dir=root / "cache")
  config.eval_every = -1
  config.train.update(train)
  return config


def test_second_run_is_refused_and_a_killed_holder_leaves_no_stale_lock(tmp_path):
  workdir = tmp_path / "run"
  holder = subprocess.Popen(
      [
          sys.executable,
          "-c",
          "import sys, time; from flowergan import workdir_guard\n"
          "with workdir_guard.claim(sys.argv[1]):\n  print('locked', flush=True); time.sleep(600)",
          str(workdir),
      ],
      env=_env(),
      stdout=subprocess.PIPE,
      text=True,
  )
  try:
    assert holder.stdout.readline().strip() == "locked"
    result = _run("train.py", *TINY_FLAGS, f"--workdir={workdir}", devices=1)
    _assert_one_line_error(result, "in use by another training run", f"pid {holder.pid}")
    with pytest.raises(workdir_guard.WorkdirError, match=f"pid {holder.pid}"):
      train_lib.train_and_evaluate(_config(tmp_path, num_steps=1), str(workdir))
  finally:
    holder.kill()  # SIGKILL: no clean-up code runs
    holder.wait()
  state = train_lib.train_and_evaluate(_config(tmp_path, num_steps=1), str(workdir))
  assert int(state.step) == 1
  assert f"pid {os.getpid()}" in (workdir / workdir_guard.LOCK_FILE).read_text()


@pytest.mark.parametrize("kind", ["folder", "link"])
def test_a_lock_path_that_is_not_a_file_is_refused_in_one_line(tmp_path, kind):
  """A folder, or a link (its target would be overwritten), where the lock file goes."""
  workdir = tmp_path / "run"
  workdir.mkdir()
  target = tmp_path / "elsewhere.txt"
  target.write_text("keep me\n")
  if kind == "folder":
    (workdir / workdir_guard.LOCK_FILE).mkdir()
  else:
    (workdir / workdir_guard.LOCK_FILE).symlink_to(target)
  with pytest.raises(workdir_guard.WorkdirError, match="train.lock is not a regular file"):
    with workdir_guard.claim(str(workdir)):
      pass
  assert target.read_text() == "keep me\n"
  if kind == "folder":
    result = _run("train.py", *TINY_FLAGS, f"--workdir={workdir}", devices=1)
    _assert_one_line_error(result, "train.lock is not a regular file", "remove or rename it")


def test_unwritable_workdir_is_refused_before_the_first_step(tmp_path):
  (tmp_path / "a_file").write_text("")
  config = _config(tmp_path, num_steps=2)
  for workdir, needle in [
      (tmp_path / "a_file", "is a file"),
      ("/proc/flowergan/run", "cannot write to the workdir"),
  ]:
    with pytest.raises(workdir_guard.WorkdirError, match=needle):
      train_lib.train_and_evaluate(config, str(workdir))
  (tmp_path / "run").mkdir()
  (tmp_path / "run" / "checkpoints").write_text("")
  with pytest.raises(
      workdir_guard.WorkdirError, match="cannot write the checkpoints to .*: it is a file"
  ):
    train_lib.train_and_evaluate(config, str(tmp_path / "run"))
  result = _run("train.py", *TINY_FLAGS, "--workdir=/proc/flowergan/run", devices=1)
  _assert_one_line_error(result, "cannot write to the workdir /proc/flowergan/run")


def test_every_output_of_a_run_is_checked_before_it_trains(tmp_path):
  """Each output of `RUN_OUTPUTS` that cannot be written, or leads out of the workdir through a
  link, is refused in one line before any data is read (no cache, no checkpoint appears)."""
  outside = tmp_path / "outside"
  outside.mkdir()
  cases = [
      ("samples", lambda p: p.symlink_to(outside), "leads out of"),
      ("samples", lambda p: p.write_text(""), "it is a file, not a folder"),
      ("checkpoints", lambda p: p.symlink_to(outside), "leads out of"),
      ("metrics.jsonl", lambda p: p.symlink_to(outside / "m.jsonl"), "leads out of"),
      ("metrics.jsonl", os.mkfifo, "not a regular file"),
      ("eval", lambda p: p.symlink_to(outside), "leads out of"),
  ]
  for i, (name, make, needle) in enumerate(cases):
    workdir = tmp_path / f"run{i}"
    workdir.mkdir()
    make(workdir / name)
    config = _config(tmp_path, num_steps=1)
    config.eval_every = 0
    with pytest.raises(workdir_guard.WorkdirError, match=needle) as e:
      train_lib.train_and_evaluate(config, str(workdir))
    assert "\n" not in str(e.value) and name in str(e.value)
    assert sorted(os.listdir(workdir)) == sorted([name, workdir_guard.LOCK_FILE]), name
  assert os.listdir(outside) == [] and not (tmp_path / "cache").exists()
  workdir_guard.check_run_outputs(str(tmp_path / "run4"), evaluates=False)  # metrics not written
