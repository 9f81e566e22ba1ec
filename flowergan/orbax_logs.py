"""Silencing the echoes of a failed Orbax save or restore (`ignore_aborted_operation_noise`).

The failure itself reaches the caller, reported in one line; its echoes (asyncio's and Orbax's
log reports of background tasks and threads, TensorStore's late completions through
`sys.unraisablehook`) are dropped, and only those.
"""

from __future__ import annotations

import logging as py_logging
import os
import re
import sys
import traceback


def ignore_aborted_operation_noise() -> None:
  """Silences the leftovers of an aborted restore or save (installed once per process).

  When one array of a restore fails, Orbax closes its event loop while TensorStore still
  completes the other reads; each completion then reports "Event loop is closed" through
  `sys.unraisablehook`, and Orbax's tasks and threads that fail after that are reported by
  asyncio's logger and Orbax's (`_OrbaxBackgroundReports`), each with a traceback: a hundred of
  them, before or after the restore or save raises, depending on timing. The failure is reported
  in one line instead, and TensorStore's errors (status-coded `ValueError`s) of the reads and
  writes still finishing are dropped with them. Only those are dropped: other unraisable
  errors, and the reports of tasks that are not Orbax's, pass.
  """
  for name in ("asyncio", "absl"):
    logger = py_logging.getLogger(name)
    if not any(isinstance(f, _OrbaxBackgroundReports) for f in logger.filters):
      logger.addFilter(_OrbaxBackgroundReports())
  previous = sys.unraisablehook
  if getattr(previous, "_flowergan_filter", False):
    return

  def hook(unraisable):
    error = unraisable.exc_value
    if isinstance(error, RuntimeError) and str(error) == "Event loop is closed":
      return
    if _tensorstore_error(error):  # a read or write of the aborted operation, finishing late
      return
    previous(unraisable)

  hook._flowergan_filter = True
  sys.unraisablehook = hook


class _OrbaxBackgroundReports(py_logging.Filter):
  """Drops the reports of Orbax's background work that failed with a save or restore.

  The failure itself reaches the caller (one line): these are its echoes, each with a
  traceback, printed before or after that line depending on timing: asyncio's reports of
  Orbax's tasks (failed unobserved, or destroyed pending) and Orbax's own log of each of its
  signalling threads that raised.
  """

  def filter(self, record: py_logging.LogRecord) -> bool:
    if record.name == "asyncio":
      message = record.getMessage()
      return not (message.startswith(_ASYNCIO_REPORTS) and _from_orbax(message, record))
    if _ORBAX_SOURCE in record.pathname:
      return "_SignalingThread.run() raised an exception" not in str(record.msg)
    return True


_ORBAX_SOURCE = f"{os.sep}orbax{os.sep}checkpoint{os.sep}"
_ASYNCIO_REPORTS = (
    "Task exception was never retrieved",
    "Future exception was never retrieved",
    "_GatheringFuture exception was never retrieved",
    "Task was destroyed but it is pending",
)


def _from_orbax(message: str, record: py_logging.LogRecord) -> bool:
  """Whether the task in an asyncio report is Orbax's: its coroutine or a frame of its
  exception's traceback is in Orbax's source (a gathering future names neither), or its error
  is TensorStore's (which flowergan uses only through Orbax; a bare future names nothing)."""
  if _ORBAX_SOURCE in message:
    return True
  error = record.exc_info[1] if record.exc_info else None
  if error is None:
    return False
  frames = traceback.extract_tb(error.__traceback__)
  return any(_ORBAX_SOURCE in frame.filename for frame in frames) or _tensorstore_error(error)


_STATUS_CODES = (
    "CANCELLED|UNKNOWN|INVALID_ARGUMENT|DEADLINE_EXCEEDED|NOT_FOUND|ALREADY_EXISTS|"
    "PERMISSION_DENIED|RESOURCE_EXHAUSTED|FAILED_PRECONDITION|ABORTED|OUT_OF_RANGE|"
    "UNIMPLEMENTED|INTERNAL|UNAVAILABLE|DATA_LOSS|UNAUTHENTICATED"
)
_TENSORSTORE_ERROR = re.compile(rf"^({_STATUS_CODES}): ")


def _tensorstore_error(error: BaseException) -> bool:
  """Whether `error` is TensorStore's: a ValueError whose text starts with a status code."""
  return isinstance(error, ValueError) and bool(_TENSORSTORE_ERROR.match(str(error)))
