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
