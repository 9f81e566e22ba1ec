"""Tests for flowergan.imagesets: sources, decoding, skipped files, class names (no network)."""

import concurrent.futures
import io
import logging
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
from PIL import Image, ImageFile

from flowergan import config_checks, imagesets, synthetic
from tests import cli_run, tiny_config
from tests.image_folders import S, assert_one_line_error, data_config, write_mixed_folder


@pytest.fixture()
def mixed_folder(tmp_path):
  return write_mixed_folder(tmp_path)


def test_folder_mixed_formats(mixed_folder, caplog):
  assert not ImageFile.LOAD_TRUNCATED_IMAGES
  cfg = data_config(source=f"folder:{mixed_folder}")
  with caplog.at_level(logging.WARNING):
    images, labels, names = imagesets.load_images(cfg)
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


def test_decode_resize_centre_crop():
  # 90 x 30 (w x h): left/right thirds red/blue, middle third green -> centre crop is green.
  arr = np.zeros((30, 90, 3), np.uint8)
  arr[:, :30] = (255, 0, 0)
  arr[:, 30:60] = (0, 255, 0)
  arr[:, 60:] = (0, 0, 255)
  buf = io.BytesIO()
  Image.fromarray(arr).save(buf, "PNG")
  out = imagesets.decode_and_resize(buf.getvalue(), 20)
  assert out.shape == (20, 20, 3)
  np.testing.assert_array_equal(out[:, 4:-4], np.broadcast_to([0, 255, 0], (20, 12, 3)))
  assert out[..., 0].max() < 30 and out[..., 2].max() < 30  # red / blue thirds cropped away


def test_folder_classes_order_and_process_shards(mixed_folder):
  cfg = data_config(source=f"folder:{mixed_folder}", classes=("marigold", "dandelion"))
  images, labels, names = imagesets.load_images(cfg)
  assert names == ["marigold", "dandelion"]
  np.testing.assert_array_equal(labels, [0] * 4 + [1] * 5)
  shards = [imagesets.load_images(cfg, process_index=i, process_count=2) for i in range(2)]
  assert [len(s[0]) for s in shards] == [5, 4]
  for k in (0, 1):  # the two shards of each class are disjoint and cover the class
    together = np.concatenate([s[0][s[1] == k] for s in shards])
    assert together.shape == images[labels == k].shape
    a = sorted(x.tobytes() for x in together)
    b = sorted(x.tobytes() for x in images[labels == k])
    assert a == b


def test_missing_path(tmp_path):
  with pytest.raises(imagesets.DataError) as e:
    imagesets.load_images(data_config(source=f"folder:{tmp_path / 'nope'}"))
  assert_one_line_error(e, "does not exist", "synthetic")


def test_empty_folder(tmp_path):
  with pytest.raises(ValueError) as e:
    imagesets.load_images(data_config(source=f"folder:{tmp_path}"))
  assert_one_line_error(e, "no class subfolders", "<class_name>")
  (tmp_path / "a").mkdir()
  (tmp_path / "b").mkdir()
  with pytest.raises(ValueError) as e:
    imagesets.load_images(data_config(source=f"folder:{tmp_path}"))
  assert_one_line_error(e, "No image files", "add images")


def test_class_without_readable_images(tmp_path):
  (tmp_path / "good").mkdir()
  (tmp_path / "bad").mkdir()
  Image.new("RGB", (8, 8)).save(tmp_path / "good" / "x.png")
  (tmp_path / "bad" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
  with pytest.raises(ValueError) as e:
    imagesets.load_images(data_config(source=f"folder:{tmp_path}"))
  assert_one_line_error(e, "'bad'", "no readable images")


def test_unknown_class_name(mixed_folder):
  with pytest.raises(ValueError) as e:
    imagesets.load_images(data_config(source=f"folder:{mixed_folder}", classes=("dandelions",)))
  assert_one_line_error(e, "'dandelions'", "close: dandelion", "data.classes")


def test_unknown_source():
  with pytest.raises(ValueError) as e:
    imagesets.load_images(data_config(source="hdf5:/x"))
  assert_one_line_error(e, "hdf5:/x", "'folder:PATH'", "'synthetic'", "'tfds:NAME'")


TFDS_CFG = dict(classes=("dandelion", "marigold", "pink primrose", "canterbury bells"))


def test_tfds_filter_and_remap():
  import tensorflow_datasets as tfds

  with tfds.testing.mock_data(num_examples=300):
    builder = tfds.builder("oxford_flowers102")
    names = builder.info.features["label"].names
    raw = list(builder.as_dataset(split="all", shuffle_files=False).as_numpy_iterator())
    cfg = data_config(source="tfds:oxford_flowers102", **TFDS_CFG)
    images, labels, classes = imagesets.load_images(cfg)
    shards = [imagesets.load_images(cfg, process_index=i, process_count=2) for i in range(2)]
    # Without data.classes: the classes that data.tfds_label_names maps, sorted.
    paper = data_config(source="tfds:oxford_flowers102", classes=())
    paper_images, paper_labels, paper_classes = imagesets.load_images(paper)
  assert paper_classes == ["dandelion", "marigold"]
  np.testing.assert_array_equal(paper_labels, labels[labels < 2])
  np.testing.assert_array_equal(paper_images, images[labels < 2])
  assert classes == list(TFDS_CFG["classes"])
  theirs = ["common dandelion", "english marigold", "pink primrose", "canterbury bells"]
  expected_images, expected_labels = [], []
  for ours, their_name in enumerate(theirs):
    for ex in raw:
      if names[ex["label"]] == their_name:
        expected_labels.append(ours)
        h, w = ex["image"].shape[:2]
        side = min(h, w)
        box = ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)
        expected_images.append(
            np.asarray(
                Image.fromarray(ex["image"]).resize((S, S), Image.Resampling.LANCZOS, box=box)
            )
        )
  assert len(set(expected_labels)) == 4  # every class occurs in the mock data
  assert len(expected_labels) < len(raw)  # and the filter removed something
  np.testing.assert_array_equal(labels, expected_labels)
  np.testing.assert_array_equal(images, np.stack(expected_images))
  assert sum(len(s[1]) for s in shards) == len(labels)
  for k in range(4):
    assert sum(int((s[1] == k).sum()) for s in shards) == int((labels == k).sum())


def test_tfds_unknown_label_name():
  cfg = data_config(
      source="tfds:oxford_flowers102",
      classes=("dandelion",),
      tfds_label_names={"dandelion": "dandelon"},
  )
  with pytest.raises(ValueError) as e:
    imagesets.load_images(cfg)
  assert_one_line_error(e, "'dandelon'", "'common dandelion'", "tfds_label_names")


def test_tfds_not_downloaded(tmp_path):
  cfg = data_config(
      source="tfds:oxford_flowers102",
      classes=("dandelion", "marigold"),
      tfds_data_dir=str(tmp_path),
  )
  with pytest.raises(ValueError) as e:
    imagesets.load_images(cfg)
  assert_one_line_error(e, "not downloaded", "no network", "folder:", "synthetic")


def test_tfds_unknown_dataset():
  with pytest.raises(ValueError) as e:
    imagesets.load_images(data_config(source="tfds:no_such_dataset_xyz", classes=("a",)))
  assert_one_line_error(e, "no_such_dataset_xyz", "folder:", "synthetic")


def test_synthetic_source_writes_cache_once(tmp_path, monkeypatch):
  cfg = data_config(
      source="synthetic", cache_dir=str(tmp_path), synthetic_num_per_class=3, synthetic_seed=7
  )
  images, labels, names = imagesets.load_images(cfg)
  final = tmp_path / f"synthetic-7-3-{S}"
  assert sorted(os.listdir(tmp_path)) == [final.name]  # no temp leftovers
  assert sorted(os.listdir(final / "marigold")) == ["000000.png", "000001.png", "000002.png"]
  assert names == ["dandelion", "marigold"]
  np.testing.assert_array_equal(labels, [0, 0, 0, 1, 1, 1])
  expected, _, _ = synthetic.render_images(3, seed=7, size=S)
  np.testing.assert_array_equal(images, expected)

  def boom(*args, **kwargs):
    raise AssertionError("must not re-render an existing cache")

  monkeypatch.setattr(synthetic, "write_dataset", boom)
  again, _, _ = imagesets.load_images(cfg)
  np.testing.assert_array_equal(again, images)


def test_synthetic_crash_leaves_no_cache(tmp_path, monkeypatch):
  def crash(directory, *args, **kwargs):
    os.makedirs(os.path.join(directory, "dandelion"))
    Image.new("RGB", (S, S)).save(os.path.join(directory, "dandelion", "000000.png"))
    raise KeyboardInterrupt

  monkeypatch.setattr(synthetic, "write_dataset", crash)
  cfg = data_config(source="synthetic", cache_dir=str(tmp_path))
  with pytest.raises(KeyboardInterrupt):
    imagesets.load_images(cfg)
  assert os.listdir(tmp_path) == []


def test_evaluate_and_folder_or_synthetic_sets_do_not_import_tensorflow(mixed_folder, tmp_path):
  """TensorFlow is for the sampler and TFDS only: evaluating a folder / synthetic run skips it."""
  cache = tmp_path / "cache"
  code = (
      "import sys\n"
      "import flowergan.evaluate\n"
      "from flowergan import imagesets\n"
      "from tests.image_folders import data_config\n"
      f"images, _, _ = imagesets.load_images(data_config(source='folder:{mixed_folder}'))\n"
      "assert len(images) == 9, images.shape\n"
      f"images, _, _ = imagesets.load_images(data_config(cache_dir={str(cache)!r}))\n"
      "assert len(images) == 6, images.shape\n"
      "bad = [m for m in ('tensorflow', 'tensorflow_datasets') if m in sys.modules]\n"
      "assert not bad, bad\n"
  )
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
  subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)


def _load_within(cfg, seconds, release):
  """`load_images(cfg)`, failing the test if it has not returned within `seconds`; `release()`
  then unblocks the reader (so that the test run goes on)."""
  pool = concurrent.futures.ThreadPoolExecutor(1)
  future = pool.submit(imagesets.load_images, cfg)
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


def _unusable_caches(tmp_path):
  """Cache folders where nothing can be created: below a file, below a FIFO, read-only."""
  (tmp_path / "file").write_text("x")
  os.mkfifo(tmp_path / "fifo")
  read_only = tmp_path / "read_only"
  read_only.mkdir()
  read_only.chmod(0o500)
  return {
      "below a file": tmp_path / "file" / "cache",
      "a FIFO": tmp_path / "fifo",
      "read-only": read_only / "cache",
  }


@pytest.mark.parametrize("kind", ["below a file", "a FIFO", "read-only"])
def test_an_unusable_synthetic_cache_is_one_line_naming_the_setting(tmp_path, kind):
  cache = _unusable_caches(tmp_path)[kind]
  if kind == "read-only" and os.access(cache.parent, os.W_OK):
    # root writes anywhere: a folder with the same name as the cache's set stands in
    cache.mkdir()
    (cache / f"synthetic-0-3-{S}").write_text("not a folder")
  with pytest.raises(imagesets.DataError) as e:
    imagesets.load_images(data_config(cache_dir=str(cache)))
  assert_one_line_error(e, "data.cache_dir", "--cache_dir", str(cache))
  assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo", "file", "read_only"]


def test_train_with_an_unusable_synthetic_cache_stops_in_one_line(tmp_path):
  (tmp_path / "file").write_text("x")
  result = cli_run.run(
      "train.py",
      *cli_run.TINY_FLAGS,
      f"--config.data.cache_dir={tmp_path / 'file' / 'cache'}",
      f"--workdir={tmp_path / 'run'}",
      devices=1,
  )
  cli_run.assert_one_line_error(result, "data.cache_dir", str(tmp_path / "file" / "cache"))


def test_a_folder_source_with_the_default_config_reads_the_sorted_subfolders(tmp_path):
  for name in ("tulip", "rose", "iris"):
    (tmp_path / name).mkdir()
    Image.new("RGB", (20, 20), (len(name), 0, 0)).save(tmp_path / name / "x.png")
  data = tiny_config.load_config_file(tiny_config.CONFIG_FILE).data  # as shipped
  data.source = f"folder:{tmp_path}"
  data.image_size = S
  images, labels, names = imagesets.load_images(data)
  assert names == ["iris", "rose", "tulip"]
  np.testing.assert_array_equal(labels, [0, 1, 2])
  np.testing.assert_array_equal(images[:, 0, 0, 0], [4, 4, 5])


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
