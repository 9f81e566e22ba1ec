"""The entry points' shared behaviour (flowergan.cli): flag errors in one line before any data
is read, exit statuses, and a console that shows flowergan's own lines."""

import os
import signal
import subprocess
import sys

import pytest

from flowergan import cli
from flowergan import train as train_lib
from tests import cli_run

TINY_FLAGS = cli_run.TINY_FLAGS
_run = cli_run.run
_assert_one_line_error = cli_run.assert_one_line_error


@pytest.mark.parametrize(
    "flag, needle",
    [
        (
            "--config.train.bach_size=8",
            "unknown config field 'bach_size' in --config.train.bach_size: Did you mean "
            '"batch_size" instead of "bach_size"?',
        ),
        ("--config.data.image_size=100", "power of two >= 8"),
    ],
)
def test_train_cli_bad_values_are_one_line_before_any_data_is_read(tmp_path, flag, needle):
  result = _run(
      "train.py",
      *TINY_FLAGS,
      flag,
      f"--config.data.cache_dir={tmp_path / 'cache'}",
      f"--workdir={tmp_path / 'run'}",
      devices=1,
  )
  _assert_one_line_error(result, needle)
  assert not (tmp_path / "cache").exists() and not (tmp_path / "run").exists()


def test_the_stopped_early_status_is_defined_once():
  assert cli.EXIT_STOPPED_EARLY == 3 and cli.EXIT_ERROR == 1
  assert not hasattr(train_lib, "EXIT_STOPPED_EARLY")


# What TensorFlow, XLA and Orbax print on their own: not for a flowergan user's console.
LIBRARY_NOISE = (
    "oneDNN custom operations",
    "cpu_feature_guard",
    "All log messages before absl::InitializeLog()",
    "pjrt_client",
    "Requested `tracked_metric`; did not provide metrics.",
)


def test_the_quiet_tensorflow_import_drops_its_start_up_lines_and_keeps_the_rest(capfd):
  noise = [
      "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
      "I0000 00:00:1796336572.152837    9845 port.cc:153] oneDNN custom operations are on.\n",
      "W1203 22:16:19.123456  1234 cpu_feature_guard.cc:227] This TensorFlow binary is ...\n",
      "To enable the following instructions: AVX2 FMA, in other operations, rebuild ...\n",
  ]
  kept = [
      "E1203 22:16:19.123456  1234 cuda_dnn.cc:8579] Unable to register cuDNN factory\n",
      "a Python warning, written while TensorFlow loads\n",
  ]
  with cli._native_stderr_without(cli._TENSORFLOW_IMPORT_NOISE):  # pylint: disable=protected-access
    for line in [noise[0], kept[0], *noise[1:], kept[1]]:
      os.write(2, line.encode())  # as C++ code writes: file descriptor 2, not sys.stderr
  assert capfd.readouterr().err == "".join(kept)


@pytest.fixture(scope="module")
def consoles(tmp_path_factory):
  """stdout + stderr of two 2-step tiny runs (no evaluation, checkpoints at steps 2): at the
  default verbosity and at --verbosity=1."""
  root = tmp_path_factory.mktemp("console")
  env = cli_run.make_env(1)
  for name in cli.QUIET_NATIVE_ENV:  # as a user's shell has them: unset
    env.pop(name, None)
  out = {}
  for name, flags in (("default", []), ("verbose", ["--verbosity=1"])):
    result = _run(
        "train.py",
        *TINY_FLAGS,
        *flags,
        "--config.train.num_steps=2",
        f"--config.data.cache_dir={root / 'cache'}",
        f"--workdir={root / name}",
        devices=1,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out[name] = result.stdout + result.stderr
  return out


def test_default_console_has_flowergan_lines_and_no_library_noise(consoles):
  console = consoles["default"]
  assert "step 2/2" in console and "done: checkpoints and samples in" in console
  for noise in LIBRARY_NOISE:
    assert noise not in console, (noise, console[-3000:])


def test_verbosity_shows_what_the_default_hides(consoles):
  console = consoles["verbose"]
  assert "step 2/2" in console
  assert "Requested `tracked_metric`; did not provide metrics." in console, console[-3000:]


@pytest.mark.parametrize("script", ["train.py", "sample.py", "evaluate.py"])
def test_an_extra_positional_argument_is_one_error_line_without_the_help(tmp_path, script):
  result = _run(script, f"--workdir={tmp_path / 'run'}", "marigold", devices=1)
  line = _assert_one_line_error(result, "unexpected argument 'marigold'", "--name=value")
  assert len(result.stderr.strip().splitlines()) == 1, result.stderr[-3000:]
  assert "USAGE" not in result.stderr and "flags:" not in result.stderr, line
  assert not (tmp_path / "run").exists()


_STOPS_ITSELF = """
import os, signal, sys, time
from flowergan import cli

def main(argv):
  print("started", flush=True)
  os.kill(os.getpid(), signal.{signal})
  time.sleep(30)  # the signal arrives during this "start-up"

cli.run(main)
"""


@pytest.mark.parametrize("signal_name, needle", [("SIGTERM", "SIGTERM"), ("SIGINT", "Ctrl-C")])
def test_a_stop_during_start_up_is_one_error_line(tmp_path, signal_name, needle):
  script = tmp_path / "stops_itself.py"
  script.write_text(_STOPS_ITSELF.format(signal=signal_name))
  result = subprocess.run(
      [sys.executable, str(script)],
      env=cli_run.make_env(1),
      capture_output=True,
      text=True,
      timeout=60,
  )
  assert result.stdout == "started\n"
  _assert_one_line_error(result, needle, "rerun")
  assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_train_stopped_during_start_up_says_so_in_one_line_with_the_stopped_status(tmp_path, sig):
  process = subprocess.Popen(
      [
          sys.executable,
          str(cli_run.REPO / "train.py"),
          *TINY_FLAGS,
          f"--config.data.cache_dir={tmp_path / 'cache'}",
          f"--workdir={tmp_path / 'run'}",
      ],
      cwd=cli_run.REPO,
      env=cli_run.make_env(1),
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
  )
  first = process.stdout.readline()  # `process 0 of 1: ...`, printed once JAX is imported
  assert first.startswith("process 0 of 1"), first
  process.send_signal(sig)
  stdout, stderr = process.communicate(timeout=120)
  assert process.returncode == cli.EXIT_STOPPED_EARLY, (process.returncode, stderr[-3000:])
  assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[-3000:]
  assert signal.Signals(sig).name in stdout + stderr, (stdout, stderr[-3000:])
  assert "done:" not in stdout
