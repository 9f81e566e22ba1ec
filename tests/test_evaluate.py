"""evaluate.py and evaluate_run: bad flags, and results that cannot be written."""

import contextlib
import os
import shutil
import subprocess
import sys

import pytest

from flowergan import evaluate, run_evaluation
from tests import cli_run, tiny_run

# No checkpoint there: a flag refused with this workdir was refused before loading one.
_NO_RUN = "--workdir=/nonexistent/flowergan-run"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  return tiny_run.trained_workdir(tmp_path_factory)


def _copy(workdir, tmp_path):
  """A copy of the tiny run (with its cached classifier) and its synthetic-data cache flag."""
  copy = tmp_path / "run"
  shutil.copytree(workdir, copy)
  return copy, f"--cache_dir={workdir.parent / 'cache'}"


@contextlib.contextmanager
def _read_only(directory):
  """`directory` and everything in it read-only, for root too (immutable), then writable again."""
  if os.geteuid() != 0:
    subprocess.run(["chmod", "-R", "a-w", str(directory)], check=True)
    try:
      yield
    finally:
      subprocess.run(["chmod", "-R", "u+w", str(directory)], check=True)
    return
  if subprocess.run(["chattr", "-R", "+i", str(directory)], capture_output=True).returncode:
    pytest.skip("running as root without the immutable attribute: nothing is read-only to root")
  try:
    yield
  finally:
    subprocess.run(["chattr", "-R", "-i", str(directory)], check=True)


@pytest.mark.parametrize("value", ["0", "-1", "1", str(run_evaluation.MAX_PER_CLASS + 1)])
def test_num_per_class_out_of_range_is_refused_before_loading(value):
  """Below 2 (KID compares pairs) or above the limit: one line, before a checkpoint is read."""
  result = cli_run.run("evaluate.py", _NO_RUN, f"--num_per_class={value}", devices=1)
  cli_run.assert_one_line_error(result, "--num_per_class must be between 2", value)
  with pytest.raises(evaluate.EvaluationError, match="--num_per_class must be between"):
    run_evaluation.evaluate_run("/nonexistent/flowergan-run", num_per_class=int(value))


def test_metrics_file_that_is_a_directory_is_refused_before_computing(workdir, tmp_path):
  run, cache_dir = _copy(workdir, tmp_path)
  os.remove(run / evaluate.METRICS_FILE)
  (run / evaluate.METRICS_FILE).mkdir()
  result = cli_run.run("evaluate.py", f"--workdir={run}", cache_dir, devices=1)
  cli_run.assert_one_line_error(result, "cannot write the evaluation's results", "is a directory")
  assert "class consistency" not in result.stdout  # refused before computing
  with pytest.raises(evaluate.EvaluationError, match="is a directory"):
    evaluate.check_results_writable(str(run))


def test_read_only_workdir_is_refused_before_computing(workdir, tmp_path):
  run, cache_dir = _copy(workdir, tmp_path)
  before = (run / evaluate.METRICS_FILE).read_bytes()
  with _read_only(run):
    result = cli_run.run("evaluate.py", f"--workdir={run}", cache_dir, devices=1)
  cli_run.assert_one_line_error(result, "cannot write the evaluation's results", str(run))
  assert "class consistency" not in result.stdout
  assert (run / evaluate.METRICS_FILE).read_bytes() == before


def test_metrics_are_printed_when_appending_them_fails(workdir, tmp_path):
  """A failure after computing (here a full disk) still shows the table, then one line."""
  run, cache_dir = _copy(workdir, tmp_path)
  script = (
      "import errno, runpy, sys\n"
      "from flowergan import storage\n"
      "def full(*args, **kwargs):\n"
      "  raise OSError(errno.ENOSPC, 'No space left on device')\n"
      "storage.append_line = full\n"
      "sys.argv = ['evaluate.py'] + sys.argv[1:]\n"
      f"runpy.run_path({str(cli_run.REPO / 'evaluate.py')!r}, run_name='__main__')\n"
  )
  result = subprocess.run(
      [sys.executable, "-c", script, f"--workdir={run}", cache_dir],
      env=cli_run.make_env(1),
      capture_output=True,
      text=True,
      timeout=600,
  )
  cli_run.assert_one_line_error(result, "cannot append", "No space left on device")
  assert "class consistency" in result.stdout


def test_nothing_is_appended_through_a_link_out_of_the_workdir(tmp_path):
  """`metrics.jsonl` or `eval/` linked outside the workdir: refused before computing, and the
  append itself refuses too (it used to append to the outside file)."""
  from flowergan import errors

  outside = tmp_path / "outside"
  outside.mkdir()
  victim = outside / "victim.jsonl"
  victim.write_text("precious\n")
  run = tmp_path / "run"
  run.mkdir()
  (run / evaluate.METRICS_FILE).symlink_to(victim)
  with pytest.raises(evaluate.EvaluationError, match="symbolic link") as e:
    evaluate.check_results_writable(str(run))
  assert "\n" not in str(e.value)
  with pytest.raises(errors.FlowerganError, match="symbolic link"):
    evaluate.append_metrics(str(run), {"step": 1})
  (run / evaluate.METRICS_FILE).unlink()
  (run / "eval").symlink_to(outside)
  with pytest.raises(evaluate.EvaluationError, match="symbolic link"):
    evaluate.check_results_writable(str(run))
  assert victim.read_text() == "precious\n" and os.listdir(outside) == ["victim.jsonl"]
