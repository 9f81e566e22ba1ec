"""Test setup: 8 fake CPU devices so the data-parallel code runs on a laptop."""

import atexit
import os
import shutil
import signal
import tempfile

import pytest

# Must happen before jax is imported anywhere, so multi-device code paths are exercised on CPU.
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# TensorFlow (input pipeline only) must never see an accelerator or spam the log.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _session_compilation_cache() -> None:
  """One persistent compilation cache for this run, shared with the subprocesses it starts.

  The same tiny networks are compiled by many tests and by every train.py, sample.py and
  evaluate.py the tests start; with the cache each program is compiled once per run. A fresh
  directory per run (removed at exit): no entry of an older run or jax version carries over.
  A directory given in `JAX_COMPILATION_CACHE_DIR` is used as it is.
  """
  if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    directory = tempfile.mkdtemp(prefix="flowergan-test-jax-cache-")
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = directory
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")


_session_compilation_cache()


@pytest.fixture(autouse=True)
def _shell_signal_dispositions():
  """Each test starts as a user's shell starts a command: Ctrl-C not ignored.

  A process inherits an ignored SIGINT across exec, so a library that leaves it ignored in a
  pytest worker would make every later Ctrl-C test of that worker see a command that cannot be
  stopped (seen in CI, in one xdist worker only). Put back, the tests check the command itself.
  """
  if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
  yield
