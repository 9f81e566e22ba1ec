"""Writing files so that an interrupted write never leaves a broken one behind."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


@contextlib.contextmanager
def atomic_file(path: str) -> Iterator[str]:
  """Yields a temporary path beside `path`; on success it becomes `path` (one rename).

  The finished file gets the permissions of a plain `open(path, 'w')` (the user's umask), not
  the 0600 of the temporary file. On any error the temporary file is removed and `path` is left
  as it was.
  """
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
  os.close(fd)
  try:
    yield tmp
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


@contextlib.contextmanager
def atomic_directory(path: str) -> Iterator[str]:
  """Yields a temporary directory beside `path`; on success it becomes `path` (one rename).

  If another process created `path` meanwhile, theirs is kept and ours is discarded. On any
  error the temporary directory is removed.
  """
  parent = os.path.dirname(os.path.abspath(path))
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.tmp-", dir=parent)
  try:
    yield tmp
    os.chmod(tmp, 0o777 & ~_umask())
    try:
      os.rename(tmp, path)
    except OSError:
      if not os.path.isdir(path):  # not a lost race with another process: a real error
        raise
      shutil.rmtree(tmp, ignore_errors=True)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
