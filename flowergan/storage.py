"""The one writer: every file or folder a flowergan command writes goes through this module.

Paths may be local or remote (`gs://bucket/run`, through `etils.epath`, what Orbax itself uses),
so a `gs://` workdir reaches the checkpoints, the TensorBoard writer, the sample PNGs,
`metrics.jsonl` and the evaluation cache unchanged. Local writes keep these promises:

- atomic: a file is written under an unpredictable temporary name in its own folder
  (`tempfile.mkstemp`, created exclusively, never through a planted link) and renamed into place
  (`atomic_file`, `write_bytes`); a folder appears whole (`atomic_directory`, `new_folder`) or
  its new files together (`atomic_files_into`); an interrupt leaves nothing behind;
- no link is followed out of the destination: a path that leads out of its `root` through a
  symbolic link (by default the destination's own folder; the workdir for a run's files) is
  refused (`check_inside`), and appends open the file with `O_NOFOLLOW`;
- a destination that exists and is not a regular file (a FIFO, a device, a socket, a
  directory where a file goes) is refused, never replaced (`check_regular_file`);
- an existing non-empty folder is refused where a command makes a new one (`new_folder`);
- `destination_problem` / `check_destinations` say before any work whether every output of a
  command can be written, so that a command writes all of its files or none.

Orbax writes its checkpoints itself (a temporary folder renamed when complete) and clu's
TensorBoard writer its event files; both write into folders checked here first.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Iterator, Sequence

import numpy as np
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


def write_bytes(path: str | os.PathLike, data: bytes, *, root: str | None = None) -> None:
  """Writes `data` to `path`: atomically (one rename) if local, one object write if remote.

  `root`: the folder `path` must stay in, links followed (default: `path`'s own folder).
  """
  if is_remote(path):
    target = epath.Path(os.fspath(path))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return
  with atomic_file(os.fspath(path), root=root) as tmp, open(tmp, "wb") as f:
    f.write(data)


def save_npy(path: str, array: np.ndarray) -> None:
  """`array` as a `.npy` file (no pickles), atomically."""
  buffer = io.BytesIO()
  np.save(buffer, array, allow_pickle=False)
  write_bytes(path, buffer.getvalue())


def save_npz(path: str, arrays: dict[str, np.ndarray]) -> None:
  """`arrays` as an uncompressed `.npz` file (no pickles), atomically."""
  buffer = io.BytesIO()
  np.savez(buffer, **arrays)
  write_bytes(path, buffer.getvalue())


def write_new_file(path: str, data: bytes) -> None:
  """Creates `path` with `data`, exclusively and without following a link: for the files of a
  folder being built under a temporary name (`atomic_directory`, `new_folder`), which is what
  makes them atomic; many threads may call it (no umask juggling: `open` applies the umask)."""
  fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
  with os.fdopen(fd, "wb") as f:
    f.write(data)


def copy_file(source: str, path: str, *, root: str | None = None) -> None:
  """A copy of the regular file `source` at `path`, written like `write_bytes`."""
  with atomic_file(path, root=root) as tmp:
    shutil.copyfile(source, tmp)


def read_bytes(path: str | os.PathLike) -> bytes:
  return epath.Path(os.fspath(path)).read_bytes()


def exists(path: str | os.PathLike) -> bool:
  return epath.Path(os.fspath(path)).exists()


def append_line(path: str | os.PathLike, line: str) -> None:
  """Appends `line` and a newline; remote objects cannot be appended to, so they are rewritten."""
  if not is_remote(path):
    path = os.path.abspath(os.fspath(path))
    check_regular_file(path)  # opening a FIFO would wait for a reader forever
    check_inside(path, os.path.dirname(path))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    # O_NOFOLLOW: a link planted after the check is refused (ELOOP), not written through.
    flags_ = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(os.path.realpath(path), flags_, 0o666)
    with os.fdopen(fd, "a") as f:
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


def _within(path: str, root: str) -> bool:
  return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def check_inside(path: str, root: str) -> str:
  """`path` with its links resolved; `StorageError` if that leads out of `root` (resolved too).

  A link in a workdir received from elsewhere (`metrics.jsonl -> ~/.bashrc`, `samples ->
  /etc`) must not make a command write outside it. Links that stay inside are followed.
  """
  real, real_root = os.path.realpath(path), os.path.realpath(root)
  if not _within(real, real_root):
    raise StorageError(
        f"{path} leads out of {root} through a symbolic link (to {real}): flowergan writes "
        "nothing through such a link; remove the link or choose another path."
    )
  return real


def _creatable_in(directory: str) -> str | None:
  """Why no file can be created in `directory` (made with its parents if missing), or None."""
  existing = os.path.abspath(directory)
  while not os.path.lexists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    return f"{existing} is a file, not a folder"
  try:
    with tempfile.TemporaryFile(dir=existing):
      pass
  except OSError as e:
    return f"{existing} is not writable ({e.strerror or type(e).__name__})"
  return None


def destination_problem(
    path: str,
    *,
    folder: bool = False,
    append: bool = False,
    new: bool = False,
    root: str | None = None,
) -> str | None:
  """Why `path` cannot be written as a file (`folder`: as a folder of files), or None.

  For checks before anything is computed or written, so that a command that writes several
  files writes all of them or none. Nothing is created: the nearest existing folder is probed
  with a temporary file, which also catches read-only mounts and root on immutable folders.
  `append`: an existing file is appended to, so it must itself be writable. `new` (a folder): it
  must not exist or be empty. `root`: the folder `path` must stay in, links followed (default:
  the folder `path` is in; see `check_inside`). Remote (`gs://`) paths are left to the write.
  """
  if is_remote(path):
    return None
  path = os.path.abspath(path)
  real = os.path.realpath(path)
  real_root = os.path.realpath(root if root is not None else os.path.dirname(path))
  if not _within(real, real_root):
    return f"it leads out of {root or os.path.dirname(path)} through a symbolic link (to {real})"
  if folder:
    if os.path.lexists(path) and not os.path.isdir(path):
      return "it is a file, not a folder" if os.path.isfile(path) else "it is not a folder"
    if new and os.path.isdir(path) and os.listdir(path):
      return "it is a folder that is not empty (nothing in it is replaced)"
    return _creatable_in(path)
  if os.path.isdir(path):
    return "it is a directory"
  if os.path.lexists(path) and not os.path.isfile(path):
    return "it exists and is not a regular file"
  if append and os.path.exists(path) and not os.access(path, os.W_OK):
    return "it is not writable"
  return _creatable_in(os.path.dirname(path))


def check_destinations(
    outputs: Sequence[tuple[str, str, bool]], *, root: str | None = None
) -> None:
  """`StorageError` naming the first output `(name, path, is_folder)` that cannot be written
  (`destination_problem`), or two that are the same file, before any is written; `name` says
  which flag or file gave the path."""
  seen = {}
  for name, path, folder in outputs:
    problem = destination_problem(path, folder=folder, root=root)
    if problem:
      raise StorageError(f"cannot write to {path} ({name}): {problem}; choose another path.")
    key = path if is_remote(path) else os.path.realpath(path)
    if key in seen:
      raise StorageError(
          f"{seen[key]} and {name} name the same file ({path}): choose another path."
      )
    seen[key] = name


@contextlib.contextmanager
def atomic_file(path: str, *, root: str | None = None) -> Iterator[str]:
  """Yields a temporary path beside `path`; on success it becomes `path` (one rename).

  The temporary name is unpredictable and created exclusively (`mkstemp`), so a link planted
  at a guessed name is never written through; the rename replaces a link planted at `path`
  itself rather than following it. The finished file gets the permissions of a plain
  `open(path, 'w')` (the user's umask), not the 0600 of the temporary file. On any error the
  temporary file is removed and `path` is left as it was. Refused before anything is written:
  a `path` that exists and is not a regular file (`check_regular_file`), and one that leads out
  of `root` (default: its own folder) through a link (`check_inside`).
  """
  path = os.path.abspath(path)
  check_regular_file(path)
  target = check_inside(path, root if root is not None else os.path.dirname(path))
  directory = os.path.dirname(target)
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".tmp", dir=directory)
  os.close(fd)
  try:
    yield tmp
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, target)
  except BaseException:
    if os.path.lexists(tmp):
      os.remove(tmp)
    raise


def _sibling_temporary_directory(path: str, root: str | None) -> tuple[str, str]:
  """`path` resolved (`check_inside`) and a new hidden directory beside it (same file system:
  it can be renamed into place); a `path` that exists and is not a directory is refused first."""
  path = os.path.abspath(path)
  check_directory(path)
  target = check_inside(path, root if root is not None else os.path.dirname(path))
  parent = os.path.dirname(target)
  os.makedirs(parent, exist_ok=True)
  return target, tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.tmp-", dir=parent)


@contextlib.contextmanager
def atomic_directory(
    path: str, *, root: str | None = None, keep_theirs: bool = True
) -> Iterator[str]:
  """Yields a temporary directory beside `path`; on success it becomes `path` (one rename).

  If another process created `path` meanwhile, theirs is kept and ours is discarded (with
  `keep_theirs=False`: `StorageError`, ours discarded). An empty folder at `path` is replaced.
  On any error or interrupt the temporary directory is removed. A `path` that exists and is
  not a directory, or that leads out of `root` (default: its folder), is refused first.
  """
  target, tmp = _sibling_temporary_directory(path, root)
  try:
    yield tmp
    os.chmod(tmp, 0o777 & ~_umask())
    try:
      os.rename(tmp, target)
    except OSError:
      if not os.path.isdir(target):  # not a lost race with another process: a real error
        raise
      if not keep_theirs:
        raise StorageError(
            f"{path} appeared while flowergan was writing it and is not empty: nothing of it "
            "was replaced; choose another path."
        ) from None
      shutil.rmtree(tmp, ignore_errors=True)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise


def check_new_folder(path: str, *, what: str) -> None:
  """`StorageError` unless `path` is missing or an empty folder (`what`: the flag)."""
  if os.path.lexists(path) and (not os.path.isdir(path) or os.listdir(path)):
    kind = "a folder that is not empty" if os.path.isdir(path) else "not a folder"
    raise StorageError(
        f"{what}={path} already exists and is {kind}: choose a new folder (flowergan replaces "
        "nothing in it)."
    )


@contextlib.contextmanager
def new_folder(path: str, *, what: str, root: str | None = None) -> Iterator[str]:
  """A new folder at `path`, written whole or not at all (`atomic_directory`); `path` must be
  missing or empty, before and at the end (`check_new_folder`)."""
  check_new_folder(path, what=what)
  with atomic_directory(path, root=root, keep_theirs=False) as tmp:
    yield tmp


@contextlib.contextmanager
def atomic_files_into(path: str, *, root: str | None = None) -> Iterator[str]:
  """Yields a temporary directory beside `path`; on success its files move into `path`.

  All of them or none: if the block fails (a full disk), the temporary directory goes and
  `path` is left as it was. A new `path` appears with one rename; into an existing one the files
  are moved one by one (renames need no space), replacing files of the same names (a link of
  that name is replaced, not followed); any of those names that is not a regular file, or a
  `path` that is not a directory or leads out of `root` (default: its folder), is refused
  before anything is moved.
  """
  target, tmp = _sibling_temporary_directory(path, root)
  try:
    yield tmp
    os.chmod(tmp, 0o777 & ~_umask())
    if not os.path.exists(target):
      with contextlib.suppress(OSError):  # created meanwhile: moved in file by file below
        os.rename(tmp, target)
        return
    names = sorted(os.listdir(tmp))
    for name in names:
      check_regular_file(os.path.join(target, name))
    for name in names:
      os.replace(os.path.join(tmp, name), os.path.join(target, name))
  finally:
    shutil.rmtree(tmp, ignore_errors=True)


def file_sha256(path: str) -> str:
  """The SHA-256 of a local file, read in 1 MiB chunks (weight files run to hundreds of MB)."""
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      digest.update(chunk)
  return digest.hexdigest()
