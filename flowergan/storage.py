"""Workdir paths that may be local or remote (`gs://bucket/run`), through `etils.epath`.

`etils.epath` is what Orbax itself uses, so a `gs://` workdir reaches the checkpoints, the
TensorBoard writer, the sample PNGs, `metrics.jsonl` and the evaluation cache unchanged. Local
paths keep the local guarantees: atomic writes (`atomic_file`, `atomic_directory`: an
interrupted write never leaves a broken file behind) and appends.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Iterator

from etils import epath

from flowergan import errors

# How long the first access to a remote workdir may take before the run gives up.
# flowergan's cache on this machine (rendered synthetic data, the Inception weights as .npz):
# `default_config.CACHE_DIR` and the commands' --cache_dir default to it.
CACHE_DIR = "~/.cache/flowergan"
ENV_REMOTE_TIMEOUT = "FLOWERGAN_REMOTE_TIMEOUT_S"
DEFAULT_REMOTE_TIMEOUT_S = 60.0


class StorageError(errors.FlowerganError):
  """A workdir that cannot be reached or written (one line)."""


def is_remote(path: str | os.PathLike) -> bool:
  """True for URL-style paths (`gs://...`, `s3://...`): no local file system operations."""
  return "://" in os.fspath(path)


def workdir_path(workdir: str | os.PathLike) -> epath.Path:
  """`workdir` as an `epath.Path`: local paths absolute (with `~` expanded), URLs untouched."""
  if is_remote(workdir):
    return epath.Path(os.fspath(workdir))
  return epath.Path(os.path.abspath(os.path.expanduser(os.fspath(workdir))))


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
  """Writes `data` to `path`: atomically (one rename) if local, one object write if remote."""
  if is_remote(path):
    target = epath.Path(os.fspath(path))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return
  with atomic_file(os.fspath(path)) as tmp, open(tmp, "wb") as f:
    f.write(data)


def read_bytes(path: str | os.PathLike) -> bytes:
  return epath.Path(os.fspath(path)).read_bytes()


def exists(path: str | os.PathLike) -> bool:
  return epath.Path(os.fspath(path)).exists()


def append_line(path: str | os.PathLike, line: str) -> None:
  """Appends `line` and a newline; remote objects cannot be appended to, so they are rewritten."""
  if not is_remote(path):
    check_regular_file(os.fspath(path))  # opening a FIFO would wait for a reader forever
    os.makedirs(os.path.dirname(os.fspath(path)), exist_ok=True)
    with open(path, "a") as f:
      f.write(line + "\n")
    return
  target = epath.Path(os.fspath(path))
  before = target.read_text() if target.exists() else ""
  write_bytes(target, (before + line + "\n").encode())


def check_reachable(workdir: str | os.PathLike, timeout_s: float | None = None) -> None:
  """Creates a remote `workdir` (if needed) within `timeout_s`, else one-line `StorageError`.

  Local workdirs are left to the code that writes them. Remote storage clients retry for
  minutes when the network or the credentials are missing; this bounds the wait.
  """
  if not is_remote(workdir):
    return
  if timeout_s is None:
    timeout_s = float(os.environ.get(ENV_REMOTE_TIMEOUT, DEFAULT_REMOTE_TIMEOUT_S))
  outcome = []

  def probe():
    try:
      epath.Path(os.fspath(workdir)).mkdir(parents=True, exist_ok=True)
      outcome.append(None)
    except Exception as e:  # pylint: disable=broad-except  # any backend's error
      outcome.append(e)

  thread = threading.Thread(target=probe, daemon=True)  # a hung client must not block exit
  thread.start()
  thread.join(timeout_s)
  if not outcome:
    raise StorageError(
        f"workdir {workdir} did not answer within {timeout_s:g} s: check the bucket name, the "
        f"credentials and the network (or raise {ENV_REMOTE_TIMEOUT})."
    )
  if outcome[0] is not None:
    e = outcome[0]
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    raise StorageError(
        f"cannot create workdir {workdir} ({type(e).__name__}: {first[:200]}): check the bucket "
        "name, the credentials and the network."
    )


# ------------------------------------------------------------------ atomic local writes


def _kind(mode: int) -> str:
  for test, name in (
      (stat.S_ISDIR, "a directory"),
      (stat.S_ISFIFO, "a FIFO"),
      (stat.S_ISCHR, "a character device"),
      (stat.S_ISBLK, "a block device"),
      (stat.S_ISSOCK, "a socket"),
  ):
    if test(mode):
      return name
  return "not a regular file"


def check_regular_file(path: str) -> None:
  """`StorageError` if `path` exists (links followed) and is not a regular file.

  A write replaces its destination by a rename: over a device (`/dev/null`), a FIFO or a socket
  it would put a regular file in its place, and over a directory it fails only at the end.
  """
  try:
    mode = os.stat(path).st_mode
  except FileNotFoundError:
    return  # a new file (or a link to one that does not exist yet)
  except OSError:
    return  # not reachable (e.g. a missing parent folder): the write itself will say why
  if not stat.S_ISREG(mode):
    raise StorageError(
        f"{path} exists and is {_kind(mode)}, not a regular file: flowergan writes files only "
        "(it would replace it), choose another path."
    )


def check_directory(path: str) -> None:
  """`StorageError` if `path` exists (links followed) and is not a directory."""
  try:
    mode = os.stat(path).st_mode
  except OSError:
    return
  if not stat.S_ISDIR(mode):
    kind = "a regular file" if stat.S_ISREG(mode) else _kind(mode)
    raise StorageError(
        f"{path} exists and is {kind}, not a directory: choose another path for the folder."
    )


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


@contextlib.contextmanager
def atomic_file(path: str) -> Iterator[str]:
  """Yields a temporary path beside `path`; on success it becomes `path` (one rename).

  The finished file gets the permissions of a plain `open(path, 'w')` (the user's umask), not
  the 0600 of the temporary file. On any error the temporary file is removed and `path` is left
  as it was. A `path` that exists and is not a regular file is refused (`check_regular_file`)
  before anything is written.
  """
  check_regular_file(path)
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


def _sibling_temporary_directory(path: str) -> str:
  """A new hidden directory beside `path` (same file system: it can be renamed into place);
  a `path` that exists and is not a directory is refused first."""
  check_directory(path)
  parent = os.path.dirname(os.path.abspath(path))
  os.makedirs(parent, exist_ok=True)
  return tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.tmp-", dir=parent)


@contextlib.contextmanager
def atomic_directory(path: str) -> Iterator[str]:
  """Yields a temporary directory beside `path`; on success it becomes `path` (one rename).

  If another process created `path` meanwhile, theirs is kept and ours is discarded. On any
  error the temporary directory is removed. A `path` that exists and is not a directory is
  refused before anything is written.
  """
  tmp = _sibling_temporary_directory(path)
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


@contextlib.contextmanager
def atomic_files_into(path: str) -> Iterator[str]:
  """Yields a temporary directory beside `path`; on success its files move into `path`.

  All of them or none: if the block fails (a full disk), the temporary directory goes and
  `path` is left as it was. A new `path` appears with one rename; into an existing one the files
  are moved one by one (renames need no space), replacing files of the same names; any of those
  names that is not a regular file, or a `path` that is not a directory, is refused before
  anything is moved.
  """
  tmp = _sibling_temporary_directory(path)
  try:
    yield tmp
    os.chmod(tmp, 0o777 & ~_umask())
    if not os.path.exists(path):
      with contextlib.suppress(OSError):  # created meanwhile: moved in file by file below
        os.rename(tmp, path)
        return
    names = sorted(os.listdir(tmp))
    for name in names:
      check_regular_file(os.path.join(path, name))
    for name in names:
      os.replace(os.path.join(tmp, name), os.path.join(path, name))
  finally:
    shutil.rmtree(tmp, ignore_errors=True)


def file_sha256(path: str) -> str:
  """The SHA-256 of a local file, read in 1 MiB chunks (weight files run to hundreds of MB)."""
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      digest.update(chunk)
  return digest.hexdigest()
