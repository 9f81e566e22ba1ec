"""flowergan.storage: a finished write or none at all, with the user's permissions."""

import contextlib
import os
import stat

import pytest

from flowergan import storage


@contextlib.contextmanager
def _umask(mask):
  old = os.umask(mask)
  try:
    yield
  finally:
    os.umask(old)


def _mode(path):
  return stat.S_IMODE(os.stat(path).st_mode)


def _write(path, text):
  with open(path, "w") as f:
    f.write(text)


def _read(path):
  with open(path) as f:
    return f.read()


def test_atomic_file_writes_the_file_and_its_missing_directories(tmp_path):
  path = tmp_path / "new" / "dir" / "out.txt"
  with storage.atomic_file(str(path)) as tmp:
    assert os.path.dirname(tmp) == str(path.parent) and tmp != str(path)
    _write(tmp, "hello")
    assert not path.exists()  # only the rename makes it appear
  assert _read(path) == "hello"
  assert os.listdir(path.parent) == ["out.txt"]


def test_atomic_file_replaces_an_existing_file(tmp_path):
  path = tmp_path / "out.txt"
  _write(path, "old")
  with storage.atomic_file(str(path)) as tmp:
    _write(tmp, "new")
  assert _read(path) == "new"
  assert os.listdir(tmp_path) == ["out.txt"]


def test_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path):
  path = tmp_path / "out.txt"
  _write(path, "old")
  with pytest.raises(RuntimeError, match="disk on fire"):
    with storage.atomic_file(str(path)) as tmp:
      _write(tmp, "half of the new")
      raise RuntimeError("disk on fire")
  assert _read(path) == "old"
  assert os.listdir(tmp_path) == ["out.txt"]


def test_failed_first_write_leaves_nothing(tmp_path):
  path = tmp_path / "out.txt"
  with pytest.raises(KeyboardInterrupt):
    with storage.atomic_file(str(path)) as tmp:
      _write(tmp, "half")
      raise KeyboardInterrupt
  assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_file_mode_follows_the_umask(tmp_path, mask, mode):
  path = tmp_path / "out.txt"
  with _umask(mask):
    with storage.atomic_file(str(path)) as tmp:
      _write(tmp, "x")
  assert _mode(path) == mode


def test_atomic_directory_appears_whole(tmp_path):
  path = tmp_path / "cache" / "entry"
  with _umask(0o022):
    with storage.atomic_directory(str(path)) as tmp:
      _write(os.path.join(tmp, "a.txt"), "a")
      assert not path.exists()
  assert os.listdir(path) == ["a.txt"] and _read(path / "a.txt") == "a"
  assert os.listdir(path.parent) == ["entry"]
  assert _mode(path) == 0o755


def test_failed_atomic_directory_leaves_nothing(tmp_path):
  path = tmp_path / "entry"
  with pytest.raises(RuntimeError):
    with storage.atomic_directory(str(path)) as tmp:
      _write(os.path.join(tmp, "a.txt"), "a")
      raise RuntimeError("interrupted")
  assert os.listdir(tmp_path) == []


def test_atomic_directory_keeps_the_one_another_process_finished_first(tmp_path):
  path = tmp_path / "entry"
  with storage.atomic_directory(str(path)) as tmp:
    _write(os.path.join(tmp, "ours.txt"), "ours")
    os.makedirs(path)  # the other process wins the race
    _write(path / "theirs.txt", "theirs")
  assert os.listdir(path) == ["theirs.txt"]
  assert os.listdir(tmp_path) == ["entry"]


def _special_files(tmp_path):
  """A FIFO, a directory and a link to a FIFO: destinations that are not regular files."""
  fifo = tmp_path / "fifo"
  os.mkfifo(fifo)
  folder = tmp_path / "folder"
  folder.mkdir()
  link = tmp_path / "link"
  link.symlink_to(fifo)
  return {"FIFO": fifo, "directory": folder, "link": link}


@pytest.mark.parametrize("kind", ["FIFO", "directory", "link"])
def test_atomic_writers_refuse_a_destination_that_is_not_a_regular_file(tmp_path, kind):
  path = _special_files(tmp_path)[kind]
  before = sorted(os.listdir(tmp_path))
  with pytest.raises(storage.StorageError) as e:
    storage.write_bytes(str(path), b"data")
  message = str(e.value)
  assert "\n" not in message and str(path) in message and "not a regular file" in message
  with pytest.raises(storage.StorageError):
    with storage.atomic_file(str(path)):
      pytest.fail("the block must not run")
  with pytest.raises(storage.StorageError):
    storage.append_line(str(path), "{}")  # appending to a FIFO would wait for a reader
  assert sorted(os.listdir(tmp_path)) == before  # no temporary file left
  assert stat.S_ISFIFO(os.stat(tmp_path / "fifo").st_mode)  # still a FIFO
  assert (tmp_path / "folder").is_dir() and not os.listdir(tmp_path / "folder")


def test_atomic_directories_refuse_a_destination_that_is_not_a_directory(tmp_path):
  fifo = _special_files(tmp_path)["FIFO"]
  for writer in (storage.atomic_directory, storage.atomic_files_into):
    with pytest.raises(storage.StorageError, match="FIFO, not a directory"):
      with writer(str(fifo)):
        pytest.fail("the block must not run")
  assert stat.S_ISFIFO(os.stat(fifo).st_mode)
  assert sorted(os.listdir(tmp_path)) == ["fifo", "folder", "link"]


def test_atomic_files_into_a_new_folder_appear_together(tmp_path):
  path = tmp_path / "out"
  with _umask(0o022):
    with storage.atomic_files_into(str(path)) as tmp:
      _write(os.path.join(tmp, "a.txt"), "a")
      _write(os.path.join(tmp, "b.txt"), "b")
      assert not path.exists()
  assert sorted(os.listdir(path)) == ["a.txt", "b.txt"] and _mode(path) == 0o755
  assert os.listdir(tmp_path) == ["out"]


def test_atomic_files_into_an_existing_folder_keep_the_others_and_replace_their_names(tmp_path):
  path = tmp_path / "out"
  path.mkdir()
  _write(path / "a.txt", "old a")
  _write(path / "keep.txt", "keep")
  with storage.atomic_files_into(str(path)) as tmp:
    _write(os.path.join(tmp, "a.txt"), "new a")
    _write(os.path.join(tmp, "c.txt"), "c")
    assert sorted(os.listdir(path)) == ["a.txt", "keep.txt"]
  assert [_read(path / n) for n in ("a.txt", "c.txt", "keep.txt")] == ["new a", "c", "keep"]
  assert os.listdir(tmp_path) == ["out"]


@pytest.mark.parametrize("existing", [False, True])
def test_a_failed_atomic_files_into_leaves_the_folder_as_it_was(tmp_path, existing):
  path = tmp_path / "out"
  if existing:
    path.mkdir()
    _write(path / "a.txt", "old")
  with pytest.raises(OSError, match="No space"):
    with storage.atomic_files_into(str(path)) as tmp:
      _write(os.path.join(tmp, "a.txt"), "new")
      raise OSError(28, "No space left on device")
  assert os.listdir(tmp_path) == (["out"] if existing else [])
  if existing:
    assert os.listdir(path) == ["a.txt"] and _read(path / "a.txt") == "old"


def test_atomic_files_into_refuse_a_name_taken_by_a_special_file_before_moving_any(tmp_path):
  path = tmp_path / "out"
  path.mkdir()
  os.mkfifo(path / "b.txt")
  with pytest.raises(storage.StorageError, match="FIFO"):
    with storage.atomic_files_into(str(path)) as tmp:
      _write(os.path.join(tmp, "a.txt"), "a")
      _write(os.path.join(tmp, "b.txt"), "b")
  assert os.listdir(path) == ["b.txt"] and stat.S_ISFIFO(os.stat(path / "b.txt").st_mode)
  assert os.listdir(tmp_path) == ["out"]
