"""A training run's claim on its workdir: writable, and used by no other run at the same time.

`claim(workdir)` checks, before the first step, that the workdir is a directory this process can
write (creating it), and takes an exclusive `fcntl.flock` on `workdir/train.lock`. The kernel
releases the lock when the process ends in any way (`kill -9` included), so a lock is never
stale: the file stays, but only a live process holds the lock. The file names the holder
(host, pid, start time) for the refusal message.

Multi-host runs: the hosts of one run share the workdir, so only process 0 takes the lock (the
others would collide with it); a second run is still refused on its process 0. On file systems
without `flock` (some FUSE mounts) the run goes on with a warning and without the lock.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import tempfile
import time
from collections.abc import Iterator

from absl import logging

from flowergan import errors, storage

LOCK_FILE = "train.lock"


class WorkdirError(errors.FlowerganError):
  """The workdir cannot be written, or another run is using it (one line)."""


def check_writable(directory: str, *, what: str = "workdir") -> None:
  """Creates `directory` if needed and proves it writable by writing and removing a file.

  Remote (`gs://`) directories are left to `storage.check_reachable`.
  """
  if storage.is_remote(directory):
    return
  if os.path.exists(directory) and not os.path.isdir(directory):
    raise WorkdirError(f"the {what} {directory} is a file, not a folder: pass another --workdir.")
  try:
    os.makedirs(directory, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-test-"):
      pass
  except OSError as e:
    reason = e.strerror or type(e).__name__
    raise WorkdirError(
        f"cannot write to the {what} {directory} ({reason}): pass a writable --workdir."
    ) from None


# What a training run writes in its workdir besides the checkpoints folder and the lock:
# (what, path in the workdir, is a folder, written only when the run evaluates). clu's TensorBoard
# writer puts its event files in the workdir itself, checked by `check_writable`.
RUN_OUTPUTS = (
    ("the sample grids", "samples", True, False),
    ("the checkpoints", "checkpoints", True, False),
    ("the damaged checkpoints set aside", "damaged_checkpoints", True, False),
    ("the evaluation's metrics", "metrics.jsonl", False, True),
    ("the evaluation's classifier cache", "eval", True, True),
)


def check_run_outputs(workdir: str, *, evaluates: bool) -> None:
  """Refuses, before any data is read or any step trained, a workdir where one of the run's
  outputs (`RUN_OUTPUTS`) cannot be written: a directory where a file goes (`metrics.jsonl`), a
  file, FIFO or read-only folder where a folder goes, or a link that leads out of the workdir.
  Without this a finished run given more steps trained them and then failed before saving.
  """
  if storage.is_remote(workdir):
    return
  for what, name, folder, for_evaluation in RUN_OUTPUTS:
    if for_evaluation and not evaluates:
      continue
    path = os.path.join(workdir, name)
    problem = storage.destination_problem(path, folder=folder, append=not folder, root=workdir)
    if problem:
      raise WorkdirError(
          f"cannot write {what} to {path}: {problem}; fix or remove it, or pass another "
          "--workdir (nothing was trained)."
      )


@contextlib.contextmanager
def claim(workdir: str, *, take_lock: bool = True) -> Iterator[None]:
  """Checks that `workdir` is writable and holds its lock for the duration of the block."""
  check_writable(workdir)
  if storage.is_remote(workdir):
    logging.warning("%s is remote: no lock keeps a second run out of it.", workdir)
    take_lock = False
  if not take_lock:
    yield
    return
  path = os.path.join(workdir, LOCK_FILE)
  fd = _open_lock_file(path)
  try:
    if _lock(fd, path):
      _describe_holder(fd)
    yield
  finally:
    os.close(fd)  # releases the lock


def _open_lock_file(path: str) -> int:
  """The lock file's descriptor; `WorkdirError` if it is not a file that can be opened (a
  folder, a FIFO, or a link: the holder's description is written into it)."""
  if os.path.islink(path) or (os.path.exists(path) and not os.path.isfile(path)):
    raise WorkdirError(
        f"{path} is not a regular file (flowergan keeps its lock there): remove or rename it, "
        "or pass another --workdir."
    )
  try:
    # Opened without truncating: the holder's description must survive a refused attempt.
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)
  except OSError as e:
    raise WorkdirError(
        f"cannot open the lock file {path} ({e.strerror or type(e).__name__}): fix its "
        "permissions or pass another --workdir."
    ) from None


def _lock(fd: int, path: str) -> bool:
  """True if this process now holds the lock; refuses if another one does."""
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return True
  except BlockingIOError:
    raise WorkdirError(
        f"{os.path.dirname(path)} is in use by another training run ({_holder(fd)}): wait "
        "for it to finish or stop it, or pass another --workdir."
    ) from None
  except OSError as e:
    if e.errno not in (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
      raise
    logging.warning(
        "cannot lock %s (%s): nothing stops a second run on this workdir.", path, e.strerror
    )
    return False


def _describe_holder(fd: int) -> None:
  started = time.strftime("%Y-%m-%d %H:%M:%S")
  text = f"pid {os.getpid()} on {socket.gethostname()}, started {started}"
  os.ftruncate(fd, 0)
  os.pwrite(fd, (text + "\n").encode(), 0)


def _holder(fd: int) -> str:
  try:
    text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
  except OSError:
    text = ""
  return " ".join(text.split()) or "holder unknown"
