"""What the entry points share: flag parsing that fails in one line, the exit statuses, and a
console that shows flowergan's own lines.

Light on purpose (absl only): the entry points (train.py, sample.py, evaluate.py,
import_torch.py) import it before parsing their flags, and call `quiet_logs` before JAX or
TensorFlow is imported.
"""

from __future__ import annotations

import contextlib
import logging as py_logging
import os
import re
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence

from absl import app, flags, logging

EXIT_ERROR = 1  # a bad value, path, checkpoint or save: `error: <one line>` on stderr
EXIT_STOPPED_EARLY = 3  # train.py: SIGTERM, Ctrl-C or a preemption notice; saved, resumable


# The C++ loggers of TensorFlow and XLA read these when they load: INFO and WARNING lines
# (oneDNN, cpu_feature_guard, device counts, "All log messages before absl::InitializeLog()")
# are the libraries' business, not the user's. Log levels only: no numerics change.
QUIET_NATIVE_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "2",  # TensorFlow's and XLA's (TSL) logging: errors only
    "GLOG_minloglevel": "2",  # glog-style logging in native libraries: errors only
}
# Library log lines that say nothing to a user of flowergan, at any level below --verbosity=1.
QUIET_MESSAGES = (
    # Orbax, at every checkpoint saved without an evaluation: flowergan ranks only evaluated
    # checkpoints, by design (best_checkpoint).
    "Requested `tracked_metric`; did not provide metrics.",
)


# TensorFlow 2.21 logs through Abseil's C++ logging, which writes every message to stderr until
# `absl::InitializeLog()` is called (TensorFlow never calls it) and ignores TF_CPP_MIN_LOG_LEVEL:
# each of its two shared libraries prints, on import, "WARNING: All log messages before
# absl::InitializeLog() ..." and an INFO line (the oneDNN notice, or cpu_feature_guard's with
# its second line). INFO and WARNING lines in Abseil's format: `I1203 22:16:19.123456  1234
# port.cc:153] ...`.
_TENSORFLOW_IMPORT_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|[IW]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w.-]+:\d+\] "
    r"|To enable the following instructions: )"
)
_quiet = False  # set by `quiet_logs`: the default verbosity


class _QuietMessages(py_logging.Filter):

  def filter(self, record: py_logging.LogRecord) -> bool:
    message = record.getMessage()
    return not any(quiet in message for quiet in QUIET_MESSAGES)


def quiet_logs() -> None:
  """Unless `--verbosity` is passed: flowergan's own lines and real warnings only.

  Call it after the flags are parsed and before JAX or TensorFlow is imported (their C++
  loggers read the environment once). Values already in the environment are kept.
  """
  global _quiet
  if flags.FLAGS["verbosity"].present:
    return  # e.g. --verbosity=1: everything the libraries log
  _quiet = True
  logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO
  for name, value in QUIET_NATIVE_ENV.items():
    os.environ.setdefault(name, value)
  absl_logger = logging.get_absl_logger()
  if not any(isinstance(f, _QuietMessages) for f in absl_logger.filters):
    absl_logger.addFilter(_QuietMessages())


def import_tensorflow():
  """`import tensorflow`, the first time without its C++ start-up lines at the default verbosity.

  Only the lines of `_TENSORFLOW_IMPORT_NOISE` are dropped; anything else written to stderr
  while TensorFlow loads (errors, Python warnings) is written through after the import. Log
  output only: no setting of TensorFlow's changes.
  """
  if not _quiet or "tensorflow" in sys.modules:
    import tensorflow  # pylint: disable=g-import-not-at-top

    return tensorflow
  with _native_stderr_without(_TENSORFLOW_IMPORT_NOISE):
    import tensorflow  # pylint: disable=g-import-not-at-top
  return tensorflow


@contextlib.contextmanager
def _native_stderr_without(noise: re.Pattern[str]) -> Iterator[None]:
  """Captures file descriptor 2 (what C++ code writes too), then writes back the lines that do
  not match `noise`, also when the block raises or is interrupted."""
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as captured:
    os.dup2(captured.fileno(), 2)
    try:
      yield
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      captured.seek(0)
      text = captured.read().decode("utf-8", errors="replace")
      kept = [line for line in text.splitlines(keepends=True) if not noise.match(line)]
      if kept:
        sys.stderr.write("".join(kept))
        sys.stderr.flush()


def one_line(text) -> str:
  return " ".join(str(text).split())


def parse_flags(argv: list[str], positional: Sequence[str] | None = None) -> list[str]:
  """`flags.FLAGS(argv)`, or `error: <one line>` and exit 1 (for `app.run(flags_parser=...)`).

  absl prints its own parsing errors with the usage text; ml_collections raises a misspelt
  `--config.x.y` field as a chain of KeyError/AttributeError tracebacks, puts the traceback of
  a failing `get_config` into its message, and reports a missing config file only when the
  config is first used. All of them become one line here, "Did you mean" included. With
  `positional` (the names of the arguments that are not flags, e.g. `("FILE.pt",)`), a missing
  or extra argument is one line too, instead of absl's usage text.
  """
  try:
    remaining = flags.FLAGS(argv)
    if "config" in flags.FLAGS and flags.FLAGS["config"].value is not None:
      hasattr(flags.FLAGS["config"].value, "keys")  # loads it now: an OSError if it cannot
  except flags.Error as e:
    sys.exit(f"error: {_without_traceback(str(e))}")
  except (KeyError, AttributeError) as e:  # ml_collections: an override of an unknown field
    sys.exit(f"error: {_unknown_field(e, argv)}")
  except OSError as e:  # ml_collections: the config file does not load
    lines = [line for line in str(e).splitlines() if line.strip()]
    sys.exit(f"error: cannot load --config ({one_line(lines[-1] if lines else e)}).")
  if positional is not None:
    _check_positional(remaining[1:], positional)
  return remaining


def _check_positional(given: Sequence[str], wanted: Sequence[str]) -> None:
  """Exits with one `error:` line unless `given` has exactly one argument per name in `wanted`."""
  expected = " ".join(wanted) if wanted else "no arguments besides the flags"
  if len(given) > len(wanted):
    extra = given[len(wanted)]
    sys.exit(
        f"error: unexpected argument {extra!r} (this command takes {expected}): write flags as "
        "--name=value, see --help."
    )
  if len(given) < len(wanted):
    sys.exit(f"error: missing {' '.join(wanted[len(given):])}: see --help.")


class Interrupted(KeyboardInterrupt):
  """SIGTERM, raised where the program is (like Ctrl-C's `KeyboardInterrupt`), so that every
  `finally` and `with` block on the way out runs: temporary files go, locks are released."""


def _raise_interrupted(signum, frame) -> None:
  del signum, frame
  signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the clean-up
  raise Interrupted()


def run(
    main: Callable[[list[str]], None],
    *,
    positional: Sequence[str] = (),
    stopped_status: int = EXIT_ERROR,
    stopped_message: str = (
        "error: {signal}: interrupted; no partial file is left (every write is atomic): rerun "
        "the command."
    ),
) -> None:
  """`app.run(main)` with flag errors in one line (`parse_flags`) and one line for a stop.

  SIGTERM or Ctrl-C (SIGINT) at any point that does not handle them itself (start-up: parsing,
  imports, loading, compiling) unwinds the program like an error: `stopped_message` (with
  `{signal}` filled in) on stderr and exit `stopped_status`, instead of Python's silent death
  by SIGTERM (status 143) or a `KeyboardInterrupt` traceback. train.py's training loop installs
  its own handlers (save, then stop) and restores these afterwards.
  """
  signal.signal(signal.SIGTERM, _raise_interrupted)
  try:
    app.run(main, flags_parser=lambda argv: parse_flags(argv, positional))
  except KeyboardInterrupt as e:
    name = "SIGTERM" if isinstance(e, Interrupted) else "SIGINT (Ctrl-C)"
    print(stopped_message.format(signal=name), file=sys.stderr, flush=True)
    sys.exit(stopped_status)


def _without_traceback(message: str) -> str:
  """A message with an embedded traceback → its first part and the exception's last line."""
  head, marker, tail = message.partition("Traceback (most recent call last):")
  if not marker:
    return one_line(message)
  last = [line for line in tail.splitlines() if line.strip()][-1:]
  return one_line(head + " " + " ".join(last))


def _unknown_field(error: BaseException, argv: list[str]) -> str:
  """`unknown config field 'x' in --config.a.x: Did you mean "y" instead of "x"?`"""
  # AttributeError(KeyError("'x'\nDid you mean ...")) ← KeyError(the same) ← KeyError('x')
  chain = []
  while isinstance(error, (KeyError, AttributeError)):
    chain.append(error)
    error = error.__context__
  texts = [str(e.args[0]) for e in chain if e.args and isinstance(e.args[0], str)]
  field = texts[-1] if texts else "?"
  hints = [t.partition("\n")[2] for t in texts if "Did you mean" in t]
  where = next((a.split("=")[0] for a in argv if a.startswith("--config.") and field in a), "")
  where = f" in {where}" if where else " in a --config override"
  return one_line(f"unknown config field {field!r}{where}" + (f": {hints[0]}" if hints else "."))
