"""flowergan.storage: a finished write or none at all, with the user's permissions."""

import contextlib
import os
import pathlib
import re
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


# ------------------------------------------------------------ the one writer (issue 26)


def _outside(tmp_path):
  """A folder with a file that no write may reach, and the file's text."""
  outside = tmp_path / "outside"
  outside.mkdir()
  _write(outside / "victim.txt", "precious")
  return outside


def test_no_write_follows_a_link_out_of_its_folder(tmp_path):
  outside = _outside(tmp_path)
  run = tmp_path / "run"
  run.mkdir()
  (run / "metrics.jsonl").symlink_to(outside / "victim.txt")
  (run / "out.png").symlink_to(outside / "victim.txt")
  with pytest.raises(storage.StorageError, match="leads out of .* through a symbolic link"):
    storage.append_line(str(run / "metrics.jsonl"), "{}")
  for writer in (storage.write_bytes, lambda p, d: storage.copy_file(str(run / "x"), p)):
    with pytest.raises(storage.StorageError, match="symbolic link") as e:
      writer(str(run / "out.png"), b"data")
    assert "\n" not in str(e.value)
  assert _read(outside / "victim.txt") == "precious" and os.listdir(outside) == ["victim.txt"]
  assert sorted(os.listdir(run)) == ["metrics.jsonl", "out.png"]  # no temporary file left


def test_a_folder_linked_out_of_the_workdir_is_refused_for_every_writer(tmp_path):
  outside = _outside(tmp_path)
  run = tmp_path / "run"
  run.mkdir()
  (run / "samples").symlink_to(outside)
  root = str(run)
  with pytest.raises(storage.StorageError, match="symbolic link"):
    storage.write_bytes(str(run / "samples" / "a.png"), b"x", root=root)
  for writer in (storage.atomic_files_into, storage.atomic_directory):
    with pytest.raises(storage.StorageError, match="symbolic link"):
      with writer(str(run / "samples"), root=root):
        pytest.fail("the block must not run")
  problem = storage.destination_problem(str(run / "samples"), folder=True, root=root)
  assert problem and "symbolic link" in problem
  assert os.listdir(outside) == ["victim.txt"]


def test_links_that_stay_inside_are_followed(tmp_path):
  (tmp_path / "real").mkdir()
  (tmp_path / "samples").symlink_to("real")
  (tmp_path / "real" / "m.jsonl").touch()
  (tmp_path / "metrics.jsonl").symlink_to("real/m.jsonl")
  storage.write_bytes(str(tmp_path / "samples" / "a.png"), b"x", root=str(tmp_path))
  storage.append_line(str(tmp_path / "real" / "m.jsonl"), "1")
  storage.append_line(str(tmp_path / "metrics.jsonl"), "2")  # into a folder inside: followed
  assert (tmp_path / "real" / "a.png").read_bytes() == b"x"
  assert _read(tmp_path / "real" / "m.jsonl") == "1\n2\n"
  assert (tmp_path / "metrics.jsonl").is_symlink()
  assert (tmp_path / "samples").is_symlink()


def test_the_temporary_name_is_unpredictable_and_never_a_planted_link(tmp_path):
  outside = _outside(tmp_path)
  path = tmp_path / "site" / "model.onnx"
  path.parent.mkdir()
  # What export used to write through: `<out>.tmp<pid>` planted as a link.
  (path.parent / f"model.onnx.tmp{os.getpid()}").symlink_to(outside / "victim.txt")
  names = set()
  for _ in range(2):
    with storage.atomic_file(str(path)) as tmp:
      assert os.path.dirname(tmp) == str(path.parent) and not os.path.islink(tmp)
      assert str(os.getpid()) not in os.path.basename(tmp)
      names.add(tmp)
      _write(tmp, "model")
  assert len(names) == 2 and _read(path) == "model" and not path.is_symlink()
  assert _read(outside / "victim.txt") == "precious"


def test_new_folder_refuses_a_non_empty_folder_and_appears_whole(tmp_path):
  full = tmp_path / "site"
  full.mkdir()
  _write(full / "index.html", "mine")
  with pytest.raises(storage.StorageError, match="--out=.* not empty") as e:
    with storage.new_folder(str(full), what="--out"):
      pytest.fail("the block must not run")
  assert "\n" not in str(e.value) and _read(full / "index.html") == "mine"
  empty = tmp_path / "empty"
  empty.mkdir()
  with storage.new_folder(str(empty), what="--out") as tmp:
    _write(os.path.join(tmp, "a.txt"), "a")
    assert os.listdir(empty) == []
  assert os.listdir(empty) == ["a.txt"]
  with pytest.raises(KeyboardInterrupt):  # Ctrl-C: nothing left, the rerun is not refused
    with storage.new_folder(str(tmp_path / "new"), what="--dataset") as tmp:
      _write(os.path.join(tmp, "a.txt"), "a")
      raise KeyboardInterrupt
  assert sorted(os.listdir(tmp_path)) == ["empty", "site"]


def test_new_folder_keeps_one_filled_meanwhile(tmp_path):
  path = tmp_path / "site"
  with pytest.raises(storage.StorageError, match="appeared while"):
    with storage.new_folder(str(path), what="--out") as tmp:
      _write(os.path.join(tmp, "ours.txt"), "ours")
      path.mkdir()
      _write(path / "theirs.txt", "theirs")
  assert os.listdir(path) == ["theirs.txt"] and os.listdir(tmp_path) == ["site"]


def test_check_destinations_names_the_first_bad_one_before_any_write(tmp_path):
  (tmp_path / "out.json").mkdir()
  os.mkfifo(tmp_path / "fifo")
  ok = str(tmp_path / "out")
  with pytest.raises(storage.StorageError, match=r"out.json \(the metadata\): it is a directory"):
    storage.check_destinations([("--out", ok, False), ("the metadata", ok + ".json", False)])
  with pytest.raises(storage.StorageError, match="not a regular file"):
    storage.check_destinations([("--out", str(tmp_path / "fifo"), False)])
  with pytest.raises(storage.StorageError, match="name the same file"):
    storage.check_destinations([("--out", ok, False), ("--save_z", ok, False)])
  assert sorted(os.listdir(tmp_path)) == ["fifo", "out.json"]


def test_save_npy_and_npz_write_atomically(tmp_path):
  np = pytest.importorskip("numpy")
  storage.save_npy(str(tmp_path / "z.npy"), np.arange(3, dtype=np.float32))
  storage.save_npz(str(tmp_path / "a.npz"), {"x": np.ones(2)})
  assert np.load(tmp_path / "z.npy").tolist() == [0, 1, 2]
  with np.load(tmp_path / "a.npz") as npz:
    assert npz["x"].tolist() == [1, 1]
  assert sorted(os.listdir(tmp_path)) == ["a.npz", "z.npy"]


# Calls that write a file or folder. Outside flowergan/storage.py each is one of the exceptions
# below (file, text of the line, why); a new one fails here: write through `storage` instead.
_WRITE_CALL = re.compile(
    r"open\([^)]*['\"][wax]b?\+?['\"]|os\.replace\(|os\.rename\(|\.rename\(|shutil\.(copy|move)"
    r"|np\.save|(?<!storage)\.write_text\(|(?<!storage)\.write_bytes\(|\.save\(|os\.open\("
    r"|\.touch\(|os\.mkfifo\(|os\.symlink\(|os\.link\("
)
_WRITES_ELSEWHERE = {
    ("flowergan/checkpointing.py", "return manager.save("): "Orbax writes the checkpoints",
    ("flowergan/train.py", "checkpointing.save("): "Orbax, through checkpointing",
    ("flowergan/import_torch.py", "checkpointing.save("): "Orbax, through checkpointing",
    ("flowergan/checkpoint_recovery.py", "source.rename(target)"): (
        "moves a damaged checkpoint to damaged_checkpoints/ inside the workdir (checked by "
        "workdir_guard.check_run_outputs), local or gs://"
    ),
    ("flowergan/workdir_guard.py", "return os.open(path, os.O_RDWR"): (
        "the lock file: O_NOFOLLOW, never truncated before the lock is held"
    ),
    ("flowergan/imaging.py", "Image.fromarray(array).save(buffer"): "into memory",
    ("flowergan/imaging.py", "frames[0].save("): "into memory (buffer)",
    ("flowergan/synthetic.py", ".save(buffer, format="): "into memory",
}


def test_every_write_goes_through_the_one_writer():
  """No module but storage writes a file itself (grep of the package), except Orbax's
  checkpoints, clu's TensorBoard files (written by clu, no call here) and in-memory buffers."""
  package = pathlib.Path(storage.__file__).parent
  found = []
  for path in sorted(package.rglob("*.py")):
    name = path.relative_to(package.parent).as_posix()
    if name == "flowergan/storage.py":
      continue
    for number, line in enumerate(path.read_text().splitlines(), 1):
      if _WRITE_CALL.search(line) and not any(
          name == file and text in line for file, text in _WRITES_ELSEWHERE
      ):
        found.append(f"{name}:{number}: {line.strip()}")
  assert not found, "write through flowergan.storage instead:\n" + "\n".join(found)
  assert _WRITE_CALL.search('with open(tmp, "wb") as f:')  # the pattern finds what it must
  assert _WRITE_CALL.search("shutil.copyfile(a, b)") and _WRITE_CALL.search("np.save(f, z)")
  assert not _WRITE_CALL.search("storage.write_bytes(path, data)")


def test_write_new_file_creates_only_and_never_through_a_link(tmp_path):
  outside = _outside(tmp_path)
  folder = tmp_path / "building"
  folder.mkdir()
  storage.write_new_file(str(folder / "a.png"), b"a")
  (folder / "b.png").symlink_to(outside / "victim.txt")
  for name in ("a.png", "b.png"):
    with pytest.raises(FileExistsError):
      storage.write_new_file(str(folder / name), b"new")
  assert (folder / "a.png").read_bytes() == b"a" and _read(outside / "victim.txt") == "precious"
