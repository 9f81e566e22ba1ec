"""Bad input to the image sets and image files: hostile class names, huge images, empty class
folders, output formats (the checkpoint cases are in test_checkpointing.py, test_trained.py,
test_train.py and test_workdir_guard.py)."""

import os
import warnings

import numpy as np
import pytest
from PIL import Image

from flowergan import config_checks, imagesets, imaging
from tests import cli_run, tiny_config, tiny_run

_run = cli_run.run
_assert_one_line_error = cli_run.assert_one_line_error


def test_hostile_class_names_are_refused_from_folders_and_tfds(tmp_path):
  (tmp_path / "good").mkdir()
  (tmp_path / "bad\nname").mkdir()
  for folder in ("good", "bad\nname"):
    Image.new("RGB", (8, 8)).save(tmp_path / folder / "x.png")
  config = tiny_config.get_config()
  config.data.source = f"folder:{tmp_path}"
  config.data.classes = ()  # every subfolder
  with pytest.raises(config_checks.ClassNameError, match="control character"):
    imagesets.load_images(config.data)
  config.data.source = "tfds:oxford_flowers102"
  config.data.classes = ("../../x",)
  with pytest.raises(config_checks.ClassNameError, match="path separator"):
    imagesets.load_images(config.data)  # refused before TFDS is opened


def test_sample_out_extension_picks_the_format(tmp_path_factory, tmp_path):
  workdir = tiny_run.trained_workdir(tmp_path_factory)
  result = _run("sample.py", f"--workdir={workdir}", f"--out={tmp_path / 'grid.jpg'}", devices=1)
  assert result.returncode == 0, result.stderr[-3000:]
  assert os.path.isfile(tmp_path / "grid.jpg")
  assert Image.open(tmp_path / "grid.jpg").format == "JPEG"
  result = _run("sample.py", f"--workdir={workdir}", f"--out={tmp_path / 'grid.gif'}", devices=1)
  _assert_one_line_error(result, "'.gif' is not an image format here", ".webp")
  assert not (tmp_path / "grid.gif").exists()


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


def _folder_with_a_big_image(tmp_path):
  for name in ("dandelion", "marigold"):
    (tmp_path / name).mkdir()
    Image.new("RGB", (20, 20), (200, 200, 0)).save(tmp_path / name / "small.png")
  Image.new("RGB", (60, 60), (0, 0, 200)).save(tmp_path / "dandelion" / "big.png")
  config = tiny_config.get_config()
  config.data.source = f"folder:{tmp_path}"
  return config


def test_images_over_the_pixel_limit_are_counted_as_too_large(tmp_path, caplog, monkeypatch):
  config = _folder_with_a_big_image(tmp_path)
  config.data.max_image_pixels = 1000  # 60² = 3600 > 1000 >= 20²
  with warnings.catch_warnings():
    warnings.simplefilter("error")  # PIL's DecompressionBombWarning must not leak
    images, _, _ = imagesets.load_images(config.data)
  assert len(images) == 2
  [message] = [r.getMessage() for r in caplog.records if "Skipped" in r.getMessage()]
  assert "0 unreadable" in message and "too large: 1" in message and "big.png" in message
  assert "data.max_image_pixels=1000" in message
  # PIL's own limit (here 1000, as if the image were a decompression bomb) is not applied:
  # the configured one is, and raising it lets the image in.
  monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
  config.data.max_image_pixels = 4000
  caplog.clear()
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    images, _, _ = imagesets.load_images(config.data)
  assert len(images) == 3 and not [r for r in caplog.records if "Skipped" in r.getMessage()]
  assert Image.MAX_IMAGE_PIXELS == 1000  # PIL's global is restored


def test_empty_class_folder_does_not_point_at_a_warning_that_was_not_printed(tmp_path):
  (tmp_path / "good").mkdir()
  (tmp_path / "empty").mkdir()
  Image.new("RGB", (8, 8)).save(tmp_path / "good" / "x.png")
  config = tiny_config.get_config()
  config.data.source = f"folder:{tmp_path}"
  config.data.classes = ()
  with pytest.raises(imagesets.DataError) as e:
    imagesets.load_images(config.data)
  assert "'empty'" in str(e.value) and "no image files" in str(e.value)
  assert "warning above" not in str(e.value)
