"""The hostile matrix (issue 26): every command against hostile destinations and damaged inputs.

Rows come from `tests/hostile_cases.py`: each output of each command × each destination kind
(a FIFO, a link out of its folder, a directory where a file goes or a non-empty folder where a
folder goes, a read-only folder), and each file each command reads × each damage (empty,
truncated, garbage, NaN). Every row asserts: exit status 1, one `error:` line and no traceback,
nothing outside the row's folder and no pre-existing file changed (hashes, links, FIFOs). A
damaged cache is rebuilt instead, with a one-line warning. Then the reader policy
(`flowergan.untrusted`) on its own.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil

import flax
import numpy as np
import pytest
from PIL import Image

from flowergan import classifier_cache, inception, inception_cache, storage, untrusted
from tests import hostile_cases as cases


def _read_only(folder: pathlib.Path) -> bool:
  """Whether writing into `folder` really fails (root writes through chmod)."""
  probe = folder / ".hostile_probe"
  try:
    probe.touch()
  except OSError:
    return True
  probe.unlink()
  return False


@pytest.fixture(scope="module", autouse=True)
def _process_restored():
  """The commands run in this process; the next test file of this worker finds it as it was."""
  saved = cases.process_state()
  yield
  cases.restore_process(saved)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
  """What the rows read, made once: a tiny run (the format-1 fixture of test_trained, which
  every reader still loads: no training or initialisation to pay for), the authors' generator file, an Inception weights file of the
  right layout (zeros) and its cache, FID statistics, images, a noise file."""
  root = tmp_path_factory.mktemp("hostile_base")
  shutil.copytree(cases.REPO / "tests" / "fixtures" / "v1_run", root / "run")
  files = {"metadata": cases.metadata_file(root / "run")}
  z_dim = json.loads(files["metadata"].read_text())["config"]["model"]["z_dim"]
  files["z.npy"] = root / "z.npy"
  np.save(files["z.npy"], np.zeros((1, z_dim), np.float32))
  files["stats.npz"] = root / "stats.npz"
  np.savez(files["stats.npz"], mu=np.zeros(2048), sigma=np.eye(2048))
  (root / "images").mkdir()
  for i in range(2):
    Image.new("RGB", (16, 16), (i, 0, 0)).save(root / "images" / f"{i}.png")
  files["image.png"] = root / "images" / "0.png"
  torch = pytest.importorskip("torch")
  from tests import test_import_torch  # pylint: disable=g-import-not-at-top

  files["authors.pt"] = root / "authors.pt"
  generator = test_import_torch.authors_generator(64)
  torch.save({"model_state_dict": generator.state_dict()}, files["authors.pt"])
  files["w.pth"] = root / "w.pth"
  torch.save(
      {k: torch.zeros(shape) for k, (_, shape) in inception.expected_layout().items()},
      files["w.pth"],
  )
  inception.load_weights(str(files["w.pth"]), cache_dir=str(root / "cache"))
  sha256 = storage.file_sha256(str(files["w.pth"]))
  files["cache.npz"] = pathlib.Path(inception.cache_path(sha256, str(root / "cache")))
  return root, files


def _place(base, tmp_path) -> cases.Place:
  root_base, files = base
  root = tmp_path / "row"
  root.mkdir()
  outside = tmp_path / "outside"
  outside.mkdir()
  (outside / "precious.txt").write_text("outside the row's folder\n")
  workdir = shutil.copytree(root_base / "run", root / "run", symlinks=True)
  return cases.Place(root=root, workdir=workdir, outside=outside, files=dict(files))


def _assert_refused(result, before, after, place, where, names):
  problems = cases.console_problems(result)
  assert result.status == 1 and not problems, (
      where,
      result.status,
      problems,
      result.stderr[-3000:],
  )
  (line,) = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
  assert line.endswith((".", ".)")), (where, "a sentence cut short", line)
  assert any(name in line for name in names), (where, "the error does not name", names, line)
  changed = {k: v for k, v in before.items() if after.get(k) != v}
  assert not changed, (where, "changed or removed", changed, result.stderr[-1500:])


@pytest.mark.parametrize(
    "output,kind", cases.output_rows(), ids=[f"{o.id}-{k}" for o, k in cases.output_rows()]
)
def test_hostile_destination(base, tmp_path, capfd, output, kind):
  """The command refuses the destination in one line and changes nothing already there."""
  place = _place(base, tmp_path)
  try:
    cases.make_destination(place, output, kind)
    if kind == "read_only" and not _read_only(output.target(place).parent):
      pytest.skip(
          "running as root without the mount privilege: chmod does not stop root's writes and "
          "a read-only bind mount was refused, so no read-only folder can be made here"
      )
    before = cases.snapshot(tmp_path)
    result = cases.run_command(output.command, output.args(place), capfd)
  finally:
    cases.undo_read_only(output.target(place).parent)
  after = cases.snapshot(tmp_path)
  target = output.target(place)
  names = (target.name, str(target.parent)) if kind == "read_only" else (target.name,)
  _assert_refused(result, before, after, place, f"{output.id} at a {kind}", names)
  new_outside = set(cases.snapshot(place.outside)) - {
      os.path.relpath(p, place.outside) for p in map(str, place.outside.iterdir())
  }
  assert not new_outside, new_outside


def _damaged_copy(place, row, damage) -> str:
  valid = place.files[row.valid]
  if row.valid == "cache.npz":  # the cache where the command looks for it
    copy = pathlib.Path(
        inception.cache_path(storage.file_sha256(str(place.files["w.pth"])), place.cache)
    )
  elif row.valid == "metadata":
    copy = cases.metadata_file(place.workdir)
  else:
    folder = place.root / "in"
    folder.mkdir(exist_ok=True)
    copy = folder / ("1" + valid.suffix)
    if row.valid == "image.png":  # a folder of one good image and the damaged one
      shutil.copy(valid, folder / "0.png")
  copy.parent.mkdir(parents=True, exist_ok=True)
  shutil.copy(valid, copy)
  cases.damage(copy, damage, row.nan)
  return copy


@pytest.mark.parametrize(
    "row,damage", cases.input_rows(), ids=[f"{r.id}-{d}" for r, d in cases.input_rows()]
)
def test_damaged_input(base, tmp_path, capfd, row, damage):
  """One line, status 1, nothing changed; a damaged cache is rebuilt with one warning."""
  place = _place(base, tmp_path)
  if row.rebuilt:
    (place.root / "bad_stats.npz").write_bytes(b"")
    shutil.copytree(place.files["image.png"].parent, place.root / "images")
  elif row.id.startswith("fid_weights"):
    shutil.copytree(place.files["image.png"].parent, place.root / "images")
  copy = _damaged_copy(place, row, damage)
  before = cases.snapshot(tmp_path)
  if row.rebuilt:
    del before[os.path.relpath(copy, tmp_path)]
  result = cases.run_command(row.command, row.args(place, copy), capfd)
  after = cases.snapshot(tmp_path)
  names = ("checkpoint",) if row.valid == "metadata" else (copy.name,)
  if row.rebuilt:
    names = ("bad_stats.npz",)  # the error that ends the row, after the rebuild
  _assert_refused(result, before, after, place, f"{row.id} {damage}", names)
  if row.rebuilt:
    warnings = [line for line in result.stderr.splitlines() if "rebuilding it from" in line]
    assert len(warnings) == 1, result.stderr[-2000:]
    assert untrusted.npz_keys(str(copy))  # the cache is whole again


# ------------------------------------------------------------------------------- the policy


def _npz_bytes(**arrays) -> bytes:
  import io  # pylint: disable=g-import-not-at-top

  buffer = io.BytesIO()
  np.savez(buffer, **arrays)
  return buffer.getvalue()


def test_read_npz_checks_shapes_before_reading_and_values_after(tmp_path):
  good = _npz_bytes(a=np.zeros((2, 3), np.float32))
  assert untrusted.read_npz(good, {"a": (2, None)})["a"].shape == (2, 3)
  for data, expected, needle in [
      (b"", {"a": None}, "is empty"),
      (good[: len(good) // 2], {"a": None}, "damaged or not an .npz (BadZipFile)"),
      (good, {"b": None}, "lacks 'b'"),
      (good, {"a": (3, 3)}, "of shape (2, 3), expected (3, 3)"),
      (_npz_bytes(a=np.array([np.nan])), {"a": None}, "non-finite"),
      (_npz_bytes(a=np.array(["x"])), {"a": None}, "not numbers"),
  ]:
    with pytest.raises(untrusted.UntrustedFileError, match=re.escape(needle)) as e:
      untrusted.read_npz(data, expected, where="f.npz", advice="write it again")
    assert "\n" not in str(e.value) and str(e.value).endswith("write it again.")
  huge = _npz_bytes(a=np.zeros(1000, np.uint8))
  with pytest.raises(untrusted.UntrustedFileError, match="more than the 100 values"):
    untrusted.read_npz(huge, {"a": None}, max_elements=100)
  fifo = tmp_path / "fifo.npz"
  os.mkfifo(fifo)
  with pytest.raises(untrusted.UntrustedFileError, match="not a regular file"):
    untrusted.read_npz(str(fifo), {"a": None})  # never opened: it would block


def test_read_json_and_jsonl_say_what_is_wrong_in_one_line(tmp_path):
  path = tmp_path / "x.json"
  for data, needle in [
      (b"\xff{}", "not UTF-8"),
      (b"{broken", "not valid JSON"),
      (b'{"a": NaN}', "not valid JSON"),
  ]:
    path.write_bytes(data)
    with pytest.raises(untrusted.UntrustedFileError, match=needle) as e:
      untrusted.read_json(str(path))
    assert "\n" not in str(e.value)
  path.write_bytes(b"x" * 101)
  with pytest.raises(untrusted.UntrustedFileError, match="101 bytes, more than the 100"):
    untrusted.read_json(str(path), max_bytes=100)
  path.write_bytes(b'{"step": 1}\n\xff\n\n{"step": 2}\n{nope\n')
  assert untrusted.read_jsonl(str(path)) == ([{"step": 1}, {"step": 2}], [2, 5])


@pytest.mark.parametrize("damage", ["garbage", "nan", "shape"])
def test_a_damaged_feature_cache_is_recomputed_with_one_warning(tmp_path, caplog, damage):
  path = tmp_path / "inception_real.npz"
  features = {
      "garbage": None,
      "nan": np.full((3, inception.FEATURE_DIM), np.nan, np.float32),
      "shape": np.zeros((2, inception.FEATURE_DIM), np.float32),
  }[damage]
  if features is None:
    path.write_bytes(b"PK\x03\x04 garbage")
  else:
    np.savez(path, features=features)
  caplog.set_level("WARNING")
  assert inception_cache._read_real_features(str(path), 3) is None  # pylint: disable=protected-access
  warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
  assert len(warnings) == 1 and "computing the features again" in warnings[0], warnings


@pytest.mark.parametrize("damage", ["garbage", "nan"])
def test_a_damaged_classifier_cache_is_retrained_with_one_warning(tmp_path, caplog, damage):
  path = str(tmp_path / "classifier.msgpack")
  if damage == "garbage":
    (tmp_path / "classifier.msgpack").write_bytes(b"\xc1 not msgpack\n" * 3)
  else:
    data = {
        "params": {"dense": {"kernel": np.array([[np.nan]], np.float32)}},
        "meta": {"fingerprint": "f", "settings": "s"},
    }
    (tmp_path / "classifier.msgpack").write_bytes(flax.serialization.msgpack_serialize(data))
  caplog.set_level("WARNING")
  assert classifier_cache._cached_classifier(path, "f", "s") is None  # pylint: disable=protected-access
  warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
  assert len(warnings) == 1 and "training a new one" in warnings[0] and "\n" not in warnings[0]
