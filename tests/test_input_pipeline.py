"""Tests for flowergan.input_pipeline (CPU, no network, small images)."""

import io
import logging
import os

import ml_collections
import numpy as np
import pytest
from PIL import Image, ImageFile

from flowergan import input_pipeline as ip
from flowergan import synthetic

S = 16


def make_config(**overrides):
  cfg = dict(
      source="synthetic",
      classes=(),
      image_size=S,
      max_rotation_deg=0.0,
      random_hflip=False,
      random_vflip=False,
      balanced=True,
      synthetic_num_per_class=3,
      synthetic_seed=0,
      cache_dir="/nonexistent-should-not-be-used",
      tfds_data_dir=None,
      tfds_splits="all",
      tfds_label_names={"dandelion": "common dandelion", "marigold": "english marigold"},
  )
  cfg.update(overrides)
  return ml_collections.ConfigDict(cfg)


def assert_one_line_error(exc_info, *needles):
  msg = str(exc_info.value)
  assert isinstance(exc_info.value, ValueError)
  assert "\n" not in msg and msg.strip() == msg and msg
  for needle in needles:
    assert needle in msg, (needle, msg)


# ----------------------------------------------------------------------------- folder source
def _noise(rng, h, w, c=3):
  return rng.integers(0, 256, (h, w, c) if c > 1 else (h, w), dtype=np.uint8)


@pytest.fixture()
def mixed_folder(tmp_path):
  """dandelion/: odd formats and modes + 3 bad files; marigold/: plain RGB files."""
  rng = np.random.default_rng(0)
  d = tmp_path / "dandelion"
  m = tmp_path / "marigold"
  d.mkdir()
  m.mkdir()
  Image.new("CMYK", (20, 24), (255, 0, 0, 0)).save(d / "a_cmyk.JPG", quality=95)  # pure cyan
  Image.fromarray(_noise(rng, 24, 20, 1), "L").save(d / "b_gray.png")
  rgba = np.zeros((20, 20, 4), np.uint8)
  rgba[..., 0] = 255  # red, but fully transparent on the left half
  rgba[:, 10:, 3] = 255
  Image.fromarray(rgba, "RGBA").save(d / "c_rgba.png")
  Image.fromarray(_noise(rng, 20, 30)).convert("P", palette=Image.Palette.ADAPTIVE).save(
      d / "d_palette.gif"
  )
  Image.new("RGB", (10, 7), (10, 200, 30)).save(d / "e_tiny.png")
  buf = io.BytesIO()
  Image.fromarray(_noise(rng, 40, 40)).save(buf, "JPEG", quality=90)
  (d / "f_truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) * 6 // 10])
  (d / "g_fake.png").write_bytes(b"this is not a png")
  (d / "notes.txt").write_text("not an image")
  (d / ".DS_Store").write_bytes(b"\0\0")  # hidden: ignored
  Image.fromarray(_noise(rng, 30, 20)).save(m / "a.png")
  Image.fromarray(_noise(rng, 20, 30)).save(m / "b.WEBP", lossless=True)
  Image.fromarray(_noise(rng, 25, 25)).save(m / "c.bmp")
  Image.fromarray(_noise(rng, 40, 30)).save(m / "d.jpeg")
  return tmp_path


def test_folder_mixed_formats(mixed_folder, caplog):
  assert not ImageFile.LOAD_TRUNCATED_IMAGES
  cfg = make_config(source=f"folder:{mixed_folder}")
  with caplog.at_level(logging.WARNING):
    images, labels, names = ip.load_images(cfg)
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
  out = ip.decode_and_resize(buf.getvalue(), 20)
  assert out.shape == (20, 20, 3)
  np.testing.assert_array_equal(out[:, 4:-4], np.broadcast_to([0, 255, 0], (20, 12, 3)))
  assert out[..., 0].max() < 30 and out[..., 2].max() < 30  # red / blue thirds cropped away


def test_folder_classes_order_and_process_shards(mixed_folder):
  cfg = make_config(source=f"folder:{mixed_folder}", classes=("marigold", "dandelion"))
  images, labels, names = ip.load_images(cfg)
  assert names == ["marigold", "dandelion"]
  np.testing.assert_array_equal(labels, [0] * 4 + [1] * 5)
  shards = [ip.load_images(cfg, process_index=i, process_count=2) for i in range(2)]
  assert [len(s[0]) for s in shards] == [5, 4]
  for k in (0, 1):  # the two shards of each class are disjoint and cover the class
    together = np.concatenate([s[0][s[1] == k] for s in shards])
    assert together.shape == images[labels == k].shape
    a = sorted(x.tobytes() for x in together)
    b = sorted(x.tobytes() for x in images[labels == k])
    assert a == b


# ----------------------------------------------------------------------------- bad inputs
def test_missing_path(tmp_path):
  with pytest.raises(ip.DataError) as e:
    ip.load_images(make_config(source=f"folder:{tmp_path / 'nope'}"))
  assert_one_line_error(e, "does not exist", "synthetic")


def test_empty_folder(tmp_path):
  with pytest.raises(ValueError) as e:
    ip.load_images(make_config(source=f"folder:{tmp_path}"))
  assert_one_line_error(e, "no class subfolders", "<class_name>")
  (tmp_path / "a").mkdir()
  (tmp_path / "b").mkdir()
  with pytest.raises(ValueError) as e:
    ip.load_images(make_config(source=f"folder:{tmp_path}"))
  assert_one_line_error(e, "No image files", "add images")


def test_class_without_readable_images(tmp_path):
  (tmp_path / "good").mkdir()
  (tmp_path / "bad").mkdir()
  Image.new("RGB", (8, 8)).save(tmp_path / "good" / "x.png")
  (tmp_path / "bad" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
  with pytest.raises(ValueError) as e:
    ip.load_images(make_config(source=f"folder:{tmp_path}"))
  assert_one_line_error(e, "'bad'", "no readable images")


def test_unknown_class_name(mixed_folder):
  with pytest.raises(ValueError) as e:
    ip.load_images(make_config(source=f"folder:{mixed_folder}", classes=("dandelions",)))
  assert_one_line_error(e, "'dandelions'", "close: dandelion", "data.classes")


def test_unknown_source():
  with pytest.raises(ValueError) as e:
    ip.load_images(make_config(source="hdf5:/x"))
  assert_one_line_error(e, "hdf5:/x", "'folder:PATH'", "'synthetic'", "'tfds:NAME'")


def test_batch_not_divisible_by_processes(mixed_folder):
  with pytest.raises(ValueError) as e:
    ip.create_train_iterator(
        make_config(source=f"folder:{mixed_folder}"),
        global_batch_size=6,
        n_critic=1,
        seed=0,
        process_index=0,
        process_count=4,
    )
  assert_one_line_error(e, "not divisible", "multiple of 4")


# ----------------------------------------------------------------------------- tfds source
TFDS_CFG = dict(classes=("dandelion", "marigold", "pink primrose", "canterbury bells"))


def test_tfds_filter_and_remap():
  import tensorflow_datasets as tfds

  with tfds.testing.mock_data(num_examples=300):
    builder = tfds.builder("oxford_flowers102")
    names = builder.info.features["label"].names
    raw = list(builder.as_dataset(split="all", shuffle_files=False).as_numpy_iterator())
    cfg = make_config(source="tfds:oxford_flowers102", **TFDS_CFG)
    images, labels, classes = ip.load_images(cfg)
    shards = [ip.load_images(cfg, process_index=i, process_count=2) for i in range(2)]
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
  cfg = make_config(
      source="tfds:oxford_flowers102",
      classes=("dandelion",),
      tfds_label_names={"dandelion": "dandelon"},
  )
  with pytest.raises(ValueError) as e:
    ip.load_images(cfg)
  assert_one_line_error(e, "'dandelon'", "'common dandelion'", "tfds_label_names")


def test_tfds_not_downloaded(tmp_path):
  cfg = make_config(
      source="tfds:oxford_flowers102",
      classes=("dandelion", "marigold"),
      tfds_data_dir=str(tmp_path),
  )
  with pytest.raises(ValueError) as e:
    ip.load_images(cfg)
  assert_one_line_error(e, "not downloaded", "no network", "folder:", "synthetic")


def test_tfds_unknown_dataset():
  with pytest.raises(ValueError) as e:
    ip.load_images(make_config(source="tfds:no_such_dataset_xyz", classes=("a",)))
  assert_one_line_error(e, "no_such_dataset_xyz", "folder:", "synthetic")


# ----------------------------------------------------------------------------- synthetic source
def test_synthetic_source_writes_cache_once(tmp_path, monkeypatch):
  cfg = make_config(
      source="synthetic", cache_dir=str(tmp_path), synthetic_num_per_class=3, synthetic_seed=7
  )
  images, labels, names = ip.load_images(cfg)
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
  again, _, _ = ip.load_images(cfg)
  np.testing.assert_array_equal(again, images)


def test_synthetic_crash_leaves_no_cache(tmp_path, monkeypatch):
  def crash(directory, *args, **kwargs):
    os.makedirs(os.path.join(directory, "dandelion"))
    Image.new("RGB", (S, S)).save(os.path.join(directory, "dandelion", "000000.png"))
    raise KeyboardInterrupt

  monkeypatch.setattr(synthetic, "write_dataset", crash)
  cfg = make_config(source="synthetic", cache_dir=str(tmp_path))
  with pytest.raises(KeyboardInterrupt):
    ip.load_images(cfg)
  assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------- augmentation
def _distinct_images(n, size=S, seed=0):
  rng = np.random.default_rng(seed)
  return rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _dataset(images, labels, num_classes=2, **kw):
  args = dict(local_batch_size=8, n_critic=3, seed=0)
  args.update(kw)
  return ip.make_train_dataset(images, labels, num_classes, **args)


def test_rotate_90_equals_rot90():
  x = np.random.default_rng(1).uniform(-1, 1, (3, 12, 12, 3)).astype(np.float32)
  out = ip.apply_augmentation(x, angles_deg=np.array([90.0, -90.0, 180.0], np.float32)).numpy()
  np.testing.assert_allclose(out[0], np.rot90(x[0], 1), atol=1e-4)
  np.testing.assert_allclose(out[1], np.rot90(x[1], -1), atol=1e-4)
  np.testing.assert_allclose(out[2], np.rot90(x[2], 2), atol=1e-4)


def test_flips_equal_np_flip():
  x = np.random.default_rng(2).uniform(-1, 1, (2, 6, 6, 3)).astype(np.float32)
  mask = np.array([True, False])
  h = ip.apply_augmentation(x, hflip=mask).numpy()
  v = ip.apply_augmentation(x, vflip=mask).numpy()
  np.testing.assert_array_equal(h[0], np.flip(x[0], axis=1))
  np.testing.assert_array_equal(v[0], np.flip(x[0], axis=0))
  np.testing.assert_array_equal(h[1], x[1])
  np.testing.assert_array_equal(v[1], x[1])


def test_rotation_combined_with_flips():
  x = np.random.default_rng(3).uniform(-1, 1, (4, 10, 10, 3)).astype(np.float32)
  out = ip.apply_augmentation(
      x,
      angles_deg=np.array([0.0, 90.0, 90.0, 0.0], np.float32),
      hflip=np.array([True, True, False, False]),
      vflip=np.array([False, False, True, True]),
  ).numpy()
  np.testing.assert_allclose(out[0], np.flip(x[0], 1), atol=1e-5)
  np.testing.assert_allclose(out[1], np.flip(np.rot90(x[1]), 1), atol=1e-4)
  np.testing.assert_allclose(out[2], np.flip(np.rot90(x[2]), 0), atol=1e-4)
  np.testing.assert_allclose(out[3], np.flip(x[3], 0), atol=1e-5)


def test_rotation_reflect_padding_has_no_black_corners():
  images = np.full((2, S, S, 3), 200, np.uint8)
  item = next(iter(_dataset(images, np.array([0, 1]), max_rotation_deg=45.0)))
  np.testing.assert_allclose(item["image"].numpy(), 200 / 127.5 - 1, atol=1e-5)


def test_no_augmentation_returns_scaled_inputs():
  images = _distinct_images(6)
  labels = np.array([0, 0, 0, 1, 1, 1], np.int32)
  scaled = images.astype(np.float32) / 127.5 - 1
  for item in _dataset(images, labels).take(2).as_numpy_iterator():
    assert item["image"].shape == (3, 8, S, S, 3) and item["image"].dtype == np.float32
    assert item["label"].shape == (3, 8) and item["label"].dtype == np.int32
    for img, lab in zip(item["image"].reshape(-1, S, S, 3), item["label"].reshape(-1)):
      err = np.abs(scaled - img).max(axis=(1, 2, 3))
      assert err.min() < 1e-6
      assert labels[err.argmin()] == lab
    # Each of the n_critic sub-batches is a fresh draw.
    assert not np.array_equal(item["image"][0], item["image"][1])


def test_random_flips_and_range():
  images = _distinct_images(4)
  labels = np.array([0, 0, 1, 1], np.int32)
  scaled = images.astype(np.float32) / 127.5 - 1
  cands = {
      "id": scaled,
      "h": np.flip(scaled, 2),
      "v": np.flip(scaled, 1),
      "hv": np.flip(scaled, (1, 2)),
  }
  seen = set()
  ds = _dataset(images, labels, random_hflip=True, random_vflip=True, local_batch_size=16)
  for item in ds.take(2).as_numpy_iterator():
    assert item["image"].min() >= -1 and item["image"].max() <= 1
    for img in item["image"].reshape(-1, S, S, 3):
      kinds = [k for k, c in cands.items() if np.abs(c - img).max(axis=(1, 2, 3)).min() < 1e-6]
      assert len(kinds) == 1
      seen.add(kinds[0])
  assert seen == set(cands)


def test_rotation_changes_images_within_range():
  images = _distinct_images(4)
  ds = _dataset(images, np.array([0, 0, 1, 1]), max_rotation_deg=30.0)
  x = next(ds.as_numpy_iterator())["image"]
  assert x.min() >= -1 - 1e-5 and x.max() <= 1 + 1e-5
  scaled = images.astype(np.float32) / 127.5 - 1
  closest = np.abs(x.reshape(-1, 1, S, S, 3) - scaled[None]).max(axis=(2, 3, 4)).min(axis=1)
  assert (closest > 1e-3).mean() > 0.9  # (almost) every image was rotated


def test_determinism_seed_and_resume(mixed_folder):
  cfg = make_config(source=f"folder:{mixed_folder}", max_rotation_deg=20.0, random_hflip=True)

  def take(seed, start, n, process_index=0, process_count=1, batch=8):
    it, names = ip.create_train_iterator(
        cfg,
        global_batch_size=batch,
        n_critic=2,
        seed=seed,
        start_step=start,
        process_index=process_index,
        process_count=process_count,
    )
    assert names == ["dandelion", "marigold"]
    return [next(it) for _ in range(n)]

  run = take(seed=3, start=0, n=4)
  again = take(seed=3, start=0, n=4)
  other = take(seed=4, start=0, n=1)
  resumed = take(seed=3, start=2, n=2)
  for a, b in zip(run, again):
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["label"], b["label"])
  assert not np.array_equal(run[0]["image"], other[0]["image"])
  for a, b in zip(run[2:], resumed):
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["label"], b["label"])
  assert not np.array_equal(run[0]["image"], run[1]["image"])
  p0 = take(seed=3, start=0, n=1, process_index=0, process_count=2)[0]
  p1 = take(seed=3, start=0, n=1, process_index=1, process_count=2)[0]
  assert p0["image"].shape == (2, 4, S, S, 3)
  assert not np.array_equal(p0["image"], p1["image"])


def test_balanced_sampling():
  images = _distinct_images(10, size=4)
  labels = np.array([0] + [1] * 9, np.int32)

  def frac0(balanced):
    ds = _dataset(images, labels, balanced=balanced, local_batch_size=64, n_critic=4)
    lab = np.concatenate([b["label"].ravel() for b in ds.take(4).as_numpy_iterator()])
    return (lab == 0).mean()  # 1024 draws

  assert abs(frac0(True) - 0.5) < 0.07
  assert abs(frac0(False) - 0.1) < 0.05
