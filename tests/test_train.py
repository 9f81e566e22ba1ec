"""The training loop (flowergan.train) with checkpoints on disk: resuming past damaged steps,
a save that fails (a full disk), a non-finite step, newer checkpoints, the files it writes."""

import os
import stat
import subprocess
import time

import pytest

from flowergan import checkpoint_recovery, checkpointing, config_checks
from flowergan import train as train_lib
from flowergan import trained as trained_lib
from flowergan import workdir_guard
from tests import cli_run, damaged_checkpoints

TINY_FLAGS = cli_run.TINY_FLAGS
_run = cli_run.run


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """One 4-step run through the real train.py (umask 022): checkpoints at steps 2 and 4."""
  root = tmp_path_factory.mktemp("train")
  workdir = root / "run"
  result = _run(
      "train.py",
      *TINY_FLAGS,
      f"--config.data.cache_dir={root / 'cache'}",
      f"--workdir={workdir}",
  )
  assert result.returncode == 0, result.stderr[-3000:]
  return workdir, root


@pytest.mark.parametrize(
    "how", ["truncated data file", "broken metadata JSON", "empty metrics", "every file truncated"]
)
def test_training_resumes_from_the_newest_checkpoint_that_restores(trained, tmp_path, how):
  workdir = damaged_checkpoints.copy_run(trained[0], tmp_path / "run")
  damaged_checkpoints.damage(workdir, 4, how)
  config = damaged_checkpoints.tiny_training_config(trained[1], num_steps=6)
  config.keep_checkpoints = 2
  state = train_lib.train_and_evaluate(config, str(workdir))
  assert int(state.step) == 6
  # Steps 4 and 6 were trained again and saved; the damaged 4 is kept, out of Orbax's sight,
  # and garbage collection (keep 2) removed the oldest good one, not the new ones.
  assert sorted(os.listdir(workdir / "checkpoints")) == ["4", "6"]
  assert os.listdir(workdir / checkpoint_recovery.DAMAGED_DIR) == ["4"]
  assert trained_lib.load_trained(str(workdir)).step == 6
  assert trained_lib.load_trained(str(workdir), step=4).step == 4


def test_an_older_step_with_damaged_metrics_is_set_aside(trained, tmp_path, caplog):
  """The newest step resumes; the older one, which the best-checkpoint ranking cannot see, is
  moved aside with a warning (not kept or deleted by that ranking)."""
  workdir = damaged_checkpoints.copy_run(trained[0], tmp_path / "run")
  damaged_checkpoints.damage(workdir, 2, "metrics not JSON")
  state = train_lib.train_and_evaluate(
      damaged_checkpoints.tiny_training_config(trained[1], num_steps=6), str(workdir)
  )
  assert int(state.step) == 6
  assert sorted(os.listdir(workdir / "checkpoints")) == ["4", "6"]
  assert os.listdir(workdir / checkpoint_recovery.DAMAGED_DIR) == ["2"]
  assert any("checkpoint step 2" in r.getMessage() for r in caplog.records)


def test_when_no_checkpoint_restores_training_refuses_and_moves_nothing(trained, tmp_path):
  workdir = damaged_checkpoints.copy_run(trained[0], tmp_path / "run")
  for step in (2, 4):
    damaged_checkpoints.damage(workdir, step, "broken metadata JSON")
  before = damaged_checkpoints.files(workdir)
  with pytest.raises(checkpointing.CheckpointError, match=r"no checkpoint .* restores.*\[2, 4\]"):
    train_lib.train_and_evaluate(
        damaged_checkpoints.tiny_training_config(trained[1], num_steps=6), str(workdir)
    )
  assert damaged_checkpoints.files(workdir) == before


def test_a_failing_save_stops_training_at_once_and_keeps_the_saved_ones(
    trained, tmp_path, monkeypatch
):
  workdir = tmp_path / "run"
  config = damaged_checkpoints.tiny_training_config(trained[1], num_steps=2)
  train_lib.train_and_evaluate(config, str(workdir))
  checkpoints = workdir / "checkpoints"
  write_samples = train_lib._write_samples

  def samples_then_lose_the_folder(*args):
    write_samples(*args)  # step 4: just before its save, the checkpoint folder goes away
    checkpoints.rename(workdir / "aside")
    checkpoints.write_text("")

  monkeypatch.setattr(train_lib, "_write_samples", samples_then_lose_the_folder)
  start = time.monotonic()
  with pytest.raises(train_lib.TrainingError) as e:
    train_lib.train_and_evaluate(
        damaged_checkpoints.tiny_training_config(trained[1], num_steps=6), str(workdir)
    )
  assert time.monotonic() - start < 120  # Orbax's async saves waited 300 s here
  message = str(e.value)
  assert "\n" not in message
  assert "cannot save step 4" in message and "stopped at step 4" in message
  assert "last good checkpoint (step 2)" in message
  checkpoints.unlink()
  (workdir / "aside").rename(checkpoints)
  assert trained_lib.load_trained(str(workdir)).step == 2


@pytest.fixture
def small_disk(tmp_path):
  """A 1000 KiB file system (tmpfs): room for one tiny checkpoint and the samples, not two."""
  mount_point = tmp_path / "disk"
  mount_point.mkdir()
  if os.geteuid() != 0:
    pytest.skip("a full disk is simulated by mounting a small tmpfs, which needs root")
  subprocess.run(
      ["mount", "-t", "tmpfs", "-o", "size=1000k", "tmpfs", str(mount_point)], check=True
  )
  yield mount_point
  subprocess.run(["umount", str(mount_point)], check=True)


def test_a_full_disk_during_a_save_is_one_line_and_keeps_the_last_checkpoint(small_disk, tmp_path):
  """No tracebacks of Orbax's threads; its temporary folder is removed; step 2 still loads."""
  workdir = small_disk / "run"
  result = _run(
      "train.py",
      *TINY_FLAGS,
      f"--config.data.cache_dir={tmp_path / 'cache'}",
      f"--workdir={workdir}",
      devices=1,
  )
  line = cli_run.assert_one_line_error(
      result, "cannot save step 4", "stopped at step 4", "last good checkpoint (step 2)"
  )
  assert result.stderr.strip().splitlines()[-1] == line
  assert os.listdir(workdir / "checkpoints") == ["2"]
  assert trained_lib.load_trained(str(workdir)).step == 2


def test_non_finite_first_step_says_no_checkpoint_was_saved(trained, tmp_path, monkeypatch):
  monkeypatch.setattr(config_checks, "validate", lambda config, **kwargs: None)  # let NaN through
  with pytest.raises(train_lib.TrainingError) as e:
    train_lib.train_and_evaluate(
        damaged_checkpoints.tiny_training_config(trained[1], num_steps=2, gp_weight=float("nan")),
        str(tmp_path / "nan"),
    )
  assert "at step 1" in str(e.value) and "no checkpoint had been saved yet" in str(e.value)
  assert "step 0" not in str(e.value)


def test_a_checkpoint_of_a_newer_format_stops_training_in_one_line(trained, tmp_path):
  workdir = damaged_checkpoints.copy_run(trained[0], tmp_path / "run")
  damaged_checkpoints.set_format_version(workdir, 4, checkpointing.FORMAT_VERSION + 1)
  before = damaged_checkpoints.files(workdir)
  with pytest.raises(checkpointing.CheckpointError, match="step 4 .* newer than this flowergan"):
    train_lib.train_and_evaluate(
        damaged_checkpoints.tiny_training_config(trained[1], num_steps=6), str(workdir)
    )
  assert damaged_checkpoints.files(workdir) == before


def test_written_files_follow_the_umask(trained, tmp_path):
  workdir, _ = trained  # trained under umask 022
  for name in os.listdir(workdir / "samples"):
    assert stat.S_IMODE(os.stat(workdir / "samples" / name).st_mode) == 0o644, name
  out = tmp_path / "grid.png"
  result = _run("sample.py", f"--workdir={workdir}", f"--out={out}", devices=1)
  assert result.returncode == 0, result.stderr[-3000:]
  assert stat.S_IMODE(os.stat(out).st_mode) == 0o644


def test_outputs_are_checked_before_training_so_a_finished_run_loses_nothing(trained, tmp_path):
  """A finished run given more steps, its `metrics.jsonl` a directory: it used to train the new
  steps and fail in the final evaluation before saving them. Now: one line, before step 5."""
  workdir = damaged_checkpoints.copy_run(trained[0], tmp_path / "run")
  (workdir / "metrics.jsonl").mkdir()
  config = damaged_checkpoints.tiny_training_config(trained[1], num_steps=6)
  config.eval_every = 0  # the final evaluation appends to metrics.jsonl
  before = damaged_checkpoints.files(workdir)
  with pytest.raises(workdir_guard.WorkdirError, match="metrics.jsonl: it is a directory") as e:
    train_lib.train_and_evaluate(config, str(workdir))
  assert "\n" not in str(e.value) and "nothing was trained" in str(e.value)
  assert damaged_checkpoints.files(workdir) - {"train.lock"} == before - {"train.lock"}
  assert sorted(os.listdir(workdir / "checkpoints")) == ["2", "4"]
