"""Pixels, grids, walk strips and image bytes of flowergan.imaging."""

import io
import os
import re
import stat

import numpy as np
import pytest
from PIL import Image

from flowergan import imaging


def test_save_png_writes_atomically_with_the_users_permissions(tmp_path):
  path = tmp_path / "grid.png"
  image = np.zeros((4, 6, 3), np.uint8)
  image[1, 2] = (255, 128, 0)
  old = os.umask(0o022)
  try:
    imaging.save_png(image, str(path))
  finally:
    os.umask(old)
  np.testing.assert_array_equal(np.asarray(Image.open(path)), image)
  assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
  with pytest.raises(TypeError):  # PIL cannot write float64 RGB: the old PNG stays
    imaging.save_png(np.zeros((4, 6, 3)), str(path))
  np.testing.assert_array_equal(np.asarray(Image.open(path)), image)
  assert os.listdir(tmp_path) == ["grid.png"]


def test_png_bytes_are_the_bytes_save_png_writes(tmp_path):
  """The demo's download (`png_bytes`) is the very file `sample.py` writes (`save_png`)."""
  image = np.random.default_rng(0).integers(0, 256, (10, 14, 3), dtype=np.uint8)
  imaging.save_png(image, str(tmp_path / "a.png"))
  assert imaging.png_bytes(image) == (tmp_path / "a.png").read_bytes()
  fast = imaging.png_bytes(image, compress_level=1)
  np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(fast))), image)


def test_strip_and_enlarge_keep_the_pixels():
  frames = np.random.default_rng(1).random((3, 4, 4, 3))
  strip = imaging.strip(frames)
  assert strip.shape == (2 + 4 + 2, 2 + 3 * (4 + 2), 3)  # one row, 2-px white borders
  for i, frame in enumerate(imaging.to_uint8(frames)):
    np.testing.assert_array_equal(strip[2:6, 2 + 6 * i : 6 + 6 * i], frame)
  big = imaging.enlarge(frame, 3)
  assert big.shape == (12, 12, 3)
  np.testing.assert_array_equal(big[::3, ::3], frame)
  np.testing.assert_array_equal(big[2::3, 1::3], frame)


def test_gif_plays_forth_and_back():
  frames = np.random.default_rng(2).random((4, 8, 8, 3))
  gif = Image.open(io.BytesIO(imaging.gif_bytes(frames, scale=2)))
  assert gif.n_frames == 2 * 4 - 2 and gif.size == (16, 16)


def test_grid_format_and_bad_extensions():
  assert imaging.grid_format("a/grid.PNG") == "PNG"
  assert imaging.grid_format("a/grid.jpeg") == "JPEG"
  assert imaging.grid_format("a/folder") is None
  with pytest.raises(imaging.ImageError, match="'.jpeg2' is not an image format"):
    imaging.grid_format("grid.jpeg2")


def _fails_at(n, monkeypatch):
  """`imaging.save_png` that fails like a full disk at its n-th call."""
  real, calls = imaging.save_png, []

  def save_png(array, path):
    calls.append(path)
    if len(calls) == n:
      raise OSError(28, "No space left on device")
    real(array, path)

  monkeypatch.setattr(imaging, "save_png", save_png)


@pytest.mark.parametrize("existing", [False, True])
def test_a_folder_of_single_pngs_is_written_whole_or_not_at_all(tmp_path, monkeypatch, existing):
  out = tmp_path / "samples"
  if existing:
    out.mkdir()
    (out / "mine.txt").write_text("kept")
  images = np.linspace(0, 1, 5 * 4 * 4 * 3).reshape(5, 4, 4, 3)
  _fails_at(3, monkeypatch)
  with pytest.raises(imaging.ImageError, match="No space left on device"):
    imaging.write_images(images, str(out), labels=[0, 0, 1, 1, 1], class_names=["a", "b"])
  assert os.listdir(tmp_path) == (["samples"] if existing else [])  # no temporary folder left
  if existing:
    assert os.listdir(out) == ["mine.txt"]
  monkeypatch.undo()
  paths = imaging.write_images(images, str(out), labels=[0, 0, 1, 1, 1], class_names=["a", "b"])
  assert [os.path.basename(p) for p in paths] == [
      "a_0000.png",
      "a_0001.png",
      "b_0002.png",
      "b_0003.png",
      "b_0004.png",
  ]
  for path, image in zip(paths, imaging.to_uint8(images)):
    np.testing.assert_array_equal(np.asarray(Image.open(path)), image)
  assert sorted(os.listdir(out)) == sorted(os.path.basename(p) for p in paths) + (
      ["mine.txt"] if existing else []
  )
  assert os.listdir(tmp_path) == ["samples"]


def test_writing_a_grid_over_a_fifo_is_refused_and_the_fifo_stays(tmp_path):
  fifo = tmp_path / "grid.png"
  os.mkfifo(fifo)
  with pytest.raises(imaging.errors.FlowerganError, match="FIFO, not a regular file"):
    imaging.write_images(np.zeros((2, 4, 4, 3)), str(fifo))
  assert stat.S_ISFIFO(os.stat(fifo).st_mode) and os.listdir(tmp_path) == ["grid.png"]


def test_output_problem_names_what_cannot_be_written(tmp_path):
  (tmp_path / "a_file").write_text("")
  (tmp_path / "folder").mkdir()
  assert imaging.output_problem(str(tmp_path / "new" / "deeper" / "grid.png")) is None
  assert imaging.output_problem(str(tmp_path / "a_file")) is None  # replaced atomically
  assert imaging.output_problem(str(tmp_path / "folder"), folder=True) is None
  assert imaging.output_problem(str(tmp_path / "folder")) == "it is a directory"
  assert (
      imaging.output_problem(str(tmp_path / "a_file"), folder=True) == "it is a file, not a folder"
  )
  assert imaging.output_problem("/dev/full") == "it exists and is not a regular file"
  problem = imaging.output_problem(str(tmp_path / "a_file" / "z.npy"))
  assert problem == f"{tmp_path / 'a_file'} is a file, not a folder"
  assert "/proc is not writable" in imaging.output_problem("/proc/flowergan/grid.png")
  assert imaging.output_problem("gs://bucket/run/grid.png") is None  # left to the write
  assert sorted(os.listdir(tmp_path)) == ["a_file", "folder"]  # the checks created nothing


def test_check_outputs_refuses_a_bad_one_or_the_same_file_twice(tmp_path):
  grid = str(tmp_path / "grid.png")
  imaging.check_outputs([("--out", grid, False), ("--save_z", str(tmp_path / "z.npy"), False)])
  with pytest.raises(
      imaging.ImageError,
      match=re.escape(f"cannot write to {tmp_path} (--save_z): it is a directory"),
  ):
    imaging.check_outputs([("--out", grid, False), ("--save_z", str(tmp_path), False)])
  same = str(tmp_path / "." / "grid.png")
  with pytest.raises(imaging.ImageError, match="--out and --save_z name the same file"):
    imaging.check_outputs([("--out", grid, False), ("--save_z", same, False)])
  assert os.listdir(tmp_path) == []


def test_write_images_formats_directories_and_capped_columns(tmp_path):
  rng = np.random.default_rng(0)
  images = rng.random((2 * 40, 8, 8, 3), np.float32)
  labels = np.repeat([0, 1], 40)
  for name, fmt in [("g.png", "PNG"), ("g.jpeg", "JPEG"), ("g.webp", "WEBP")]:
    [path] = imaging.write_images(images, str(tmp_path / name), ncols=40, group_size=40)
    grid = Image.open(path)
    assert grid.format == fmt
    # 16 columns; each class on its own 3 rows (40 = 16 + 16 + 8).
    assert grid.size == (2 + 16 * 10, 2 + 6 * 10)
  paths = imaging.write_images(
      images[:4], str(tmp_path / "singles"), labels=labels[:4], class_names=["a/b", "c"]
  )
  assert all(os.path.dirname(p) == str(tmp_path / "singles") for p in paths)
  with pytest.raises(imaging.ImageError, match="'.txt'"):
    imaging.write_images(images, str(tmp_path / "x.txt"))
  with pytest.raises(imaging.ImageError, match="larger than WEBP allows"):
    imaging.write_images(np.zeros((1700, 8, 8, 3)), str(tmp_path / "big.webp"), ncols=1)
