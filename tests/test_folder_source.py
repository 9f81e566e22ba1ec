"""Tests for flowergan.folder_source: class folders, shards, skipped and special files, link loops
(read through `data_sources.load_images`)."""

import concurrent.futures
import logging
import os

import numpy as np
import pytest
from PIL import Image, ImageFile

from flowergan import data_errors, data_sources
from tests import tiny_config
from tests.image_folders import S, assert_one_line_error, data_config, write_mixed_folder


@pytest.fixture()
def mixed_folder(tmp_path):
  return write_mixed_folder(tmp_path)


def test_folder_mixed_formats(mixed_folder, caplog):
  assert not ImageFile.LOAD_TRUNCATED_IMAGES
  cfg = data_config(source=f"folder:{mixed_folder}")
  with caplog.at_level(logging.WARNING):
    images, labels, names = data_sources.load_images(cfg)
  assert names == ["dandelion", "marigold"]
  assert images.shape == (9, S, S, 3) and images.dtype == np.uint8
  np.testing.assert_array_equal(labels, [0] * 5 + [1] * 4)
  assert labels.dtype == np.int32
  assert images.std() > 10  # real content, not all one value
  cmyk, gray, rgba, _, tiny = images[:5].astype(int)
  assert np.abs(cmyk.mean(axis=(0, 1)) - [0, 255, 255]).max() < 40  # CMYK cyan -> RGB cyan
  assert np.array_equal(gray[..., 0], gray[..., 1]) and np.array_equal(gray[..., 1], gray[..., 2])
  # RGBA is composited on white: transparent left half -> white, opaque right half -> red.
  np.testing.assert_array_equal(rgba[:, :4], 255)
  np.testing.assert_array_equal(rgba[:, -4:], np.broadcast_to([255, 0, 0], (S, 4, 3)))
  assert np.abs(tiny - [10, 200, 30]).max() <= 2  # 10x7 image upsampled to S x S
  warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
  assert len(warnings) == 1, [r.getMessage() for r in warnings]
  msg = warnings[0].getMessage()
  assert "Skipped 3 files" in msg
  for name in ("f_truncated.jpg", "g_fake.png", "notes.txt"):
    assert name in msg


def test_folder_classes_order_and_process_shards(mixed_folder):
  cfg = data_config(source=f"folder:{mixed_folder}", classes=("marigold", "dandelion"))
  images, labels, names = data_sources.load_images(cfg)
  assert names == ["marigold", "dandelion"]
  np.testing.assert_array_equal(labels, [0] * 4 + [1] * 5)
  shards = [data_sources.load_images(cfg, process_index=i, process_count=2) for i in range(2)]
  assert [len(s[0]) for s in shards] == [5, 4]
  for k in (0, 1):  # the two shards of each class are disjoint and cover the class
    together = np.concatenate([s[0][s[1] == k] for s in shards])
    assert together.shape == images[labels == k].shape
    a = sorted(x.tobytes() for x in together)
    b = sorted(x.tobytes() for x in images[labels == k])
    assert a == b


def test_missing_path(tmp_path):
  with pytest.raises(data_errors.DataError) as e:
    data_sources.load_images(data_config(source=f"folder:{tmp_path / 'nope'}"))
  assert_one_line_error(e, "does not exist", "synthetic")


def test_empty_folder(tmp_path):
  with pytest.raises(ValueError) as e:
    data_sources.load_images(data_config(source=f"folder:{tmp_path}"))
  assert_one_line_error(e, "no class subfolders", "<class_name>")
  (tmp_path / "a").mkdir()
  (tmp_path / "b").mkdir()
  with pytest.raises(ValueError) as e:
    data_sources.load_images(data_config(source=f"folder:{tmp_path}"))
  assert_one_line_error(e, "No image files", "add images")


def test_class_without_readable_images(tmp_path):
  (tmp_path / "good").mkdir()
  (tmp_path / "bad").mkdir()
  Image.new("RGB", (8, 8)).save(tmp_path / "good" / "x.png")
  (tmp_path / "bad" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
  with pytest.raises(ValueError) as e:
    data_sources.load_images(data_config(source=f"folder:{tmp_path}"))
  assert_one_line_error(e, "'bad'", "no readable images")


def test_unknown_class_name(mixed_folder):
  with pytest.raises(ValueError) as e:
    data_sources.load_images(data_config(source=f"folder:{mixed_folder}", classes=("dandelions",)))
  assert_one_line_error(e, "'dandelions'", "did you mean 'dandelion'?", "data.classes")


def test_a_folder_source_with_the_default_config_reads_the_sorted_subfolders(tmp_path):
  for name in ("tulip", "rose", "iris"):
    (tmp_path / name).mkdir()
    Image.new("RGB", (20, 20), (len(name), 0, 0)).save(tmp_path / name / "x.png")
  data = tiny_config.load_config_file(tiny_config.CONFIG_FILE).data  # as shipped
  data.source = f"folder:{tmp_path}"
  data.image_size = S
  images, labels, names = data_sources.load_images(data)
  assert names == ["iris", "rose", "tulip"]
  np.testing.assert_array_equal(labels, [0, 1, 2])
  np.testing.assert_array_equal(images[:, 0, 0, 0], [4, 4, 5])


def test_empty_class_folder_does_not_point_at_a_warning_that_was_not_printed(tmp_path):
  (tmp_path / "good").mkdir()
  (tmp_path / "empty").mkdir()
  Image.new("RGB", (8, 8)).save(tmp_path / "good" / "x.png")
  config = tiny_config.get_config()
  config.data.source = f"folder:{tmp_path}"
  config.data.classes = ()
  with pytest.raises(data_errors.DataError) as e:
    data_sources.load_images(config.data)
  assert "'empty'" in str(e.value) and "no image files" in str(e.value)
  assert "warning above" not in str(e.value)


def _load_within(cfg, seconds, release):
  """`load_images(cfg)`, failing the test if it has not returned within `seconds`; `release()`
  then unblocks the reader (so that the test run goes on)."""
  pool = concurrent.futures.ThreadPoolExecutor(1)
  future = pool.submit(data_sources.load_images, cfg)
  try:
    return future.result(timeout=seconds)
  except concurrent.futures.TimeoutError:
    release()
    pytest.fail(f"load_images did not return within {seconds} s")
  finally:
    pool.shutdown(wait=True)


def _open_for_writing(fifos):
  """A release for readers blocked on `fifos`: each writer end is opened once and closed."""

  def release():
    for fifo in fifos:
      os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # the reader sees the end

  return release


def _unlinker(links):
  """A release for a listing that follows `links` forever: they go."""
  return lambda: [os.unlink(link) for link in links]


def _one_warning(caplog):
  warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
  assert len(warnings) == 1, warnings
  return warnings[0]


def test_fifos_and_other_special_files_are_skipped_and_counted_never_opened(mixed_folder, caplog):
  marigold = mixed_folder / "marigold"
  fifos = [marigold / "e_fifo.png", marigold / "f_fifo"]
  for fifo in fifos:
    os.mkfifo(fifo)
  (marigold / "g_broken.png").symlink_to(mixed_folder / "nowhere.png")
  (marigold / "h_link.png").symlink_to(marigold / "a.png")  # a link to a file: read
  with caplog.at_level(logging.WARNING):
    images, labels, _ = _load_within(
        data_config(source=f"folder:{mixed_folder}"), 30, _open_for_writing(fifos)
    )
  np.testing.assert_array_equal(labels, [0] * 5 + [1] * 5)
  np.testing.assert_array_equal(images[-1], images[-5])  # h_link.png is a.png
  msg = _one_warning(caplog)
  assert "Skipped 6 files" in msg and "3 not regular files" in msg, msg
  for name in ("f_truncated.jpg", "g_fake.png", "notes.txt", "e_fifo.png", "f_fifo"):
    assert name in msg, (name, msg)


def test_a_link_loop_in_a_class_folder_is_listed_once_and_reported(mixed_folder, caplog):
  marigold = mixed_folder / "marigold"
  (marigold / "loop").symlink_to("..")  # the data folder: marigold/loop/marigold/loop/...
  (marigold / "sub").mkdir()
  Image.new("RGB", (20, 20), (1, 2, 3)).save(marigold / "sub" / "z.png")
  (marigold / "sub" / "up").symlink_to("..")  # marigold itself
  (marigold / "again").symlink_to("sub")  # the same real folder under another name
  links = [marigold / "loop", marigold / "sub" / "up"]
  with caplog.at_level(logging.WARNING):
    images, labels, names = _load_within(
        data_config(source=f"folder:{mixed_folder}"), 20, _unlinker(links)
    )
  assert names == ["dandelion", "marigold"]
  np.testing.assert_array_equal(labels, [0] * 5 + [1] * 5)  # 4 + z.png once, no dandelions
  msg = _one_warning(caplog)
  assert "3 links lead to a folder already read" in msg, msg
  for name in ("marigold/loop", "marigold/again", "marigold/sub/up"):
    assert name in msg, (name, msg)


def test_a_folder_with_only_a_loop_says_so_in_its_own_warning(tmp_path, caplog):
  for c in ("a", "b"):
    (tmp_path / c).mkdir()
    Image.new("RGB", (20, 20)).save(tmp_path / c / "x.png")
  (tmp_path / "a" / "loop").symlink_to("..")
  with caplog.at_level(logging.WARNING):
    _, labels, _ = _load_within(
        data_config(source=f"folder:{tmp_path}"), 20, _unlinker([tmp_path / "a" / "loop"])
    )
  np.testing.assert_array_equal(labels, [0, 1])
  msg = _one_warning(caplog)
  assert (
      "1 links lead to a folder already read" in msg and "a/loop" in msg and "Skipped" not in msg
  ), msg


def test_a_hidden_class_folder_is_refused_unless_the_classes_are_named(tmp_path):
  """`.hidden/` beside `tulip/` used to be skipped silently and a 1-class model trained; a class
  name cannot start with '.', so the folder is refused in one line saying what to do. Naming
  the classes in data.classes reads them and leaves the hidden folder alone."""
  for name in ("tulip", ".hidden"):
    (tmp_path / name).mkdir()
    Image.new("RGB", (20, 20), (9, 0, 0)).save(tmp_path / name / "x.png")
  with pytest.raises(data_errors.DataError) as e:
    data_sources.load_images(data_config(source=f"folder:{tmp_path}"))
  assert_one_line_error(e, "'.hidden'", "cannot start with '.'", "data.classes")
  _, _, names = data_sources.load_images(
      data_config(source=f"folder:{tmp_path}", classes=("tulip",))
  )
  assert names == ["tulip"]
