"""Tests for flowergan.input_pipeline: sampling, augmentation, resuming, sharding (CPU)."""

import numpy as np
import pytest

from flowergan import data_errors
from flowergan import input_pipeline as ip
from tests import tiny_config
from tests.image_folders import S, assert_one_line_error, data_config, write_mixed_folder


@pytest.fixture()
def mixed_folder(tmp_path):
  return write_mixed_folder(tmp_path)


def test_batch_not_divisible_by_processes(mixed_folder):
  with pytest.raises(ValueError) as e:
    ip.create_train_iterator(
        data_config(source=f"folder:{mixed_folder}"),
        global_batch_size=6,
        n_critic=1,
        seed=0,
        process_index=0,
        process_count=4,
    )
  assert_one_line_error(e, "not divisible", "multiple of 4")


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
  cfg = data_config(source=f"folder:{mixed_folder}", max_rotation_deg=20.0, random_hflip=True)

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


def _first_items(data, n, **kwargs):
  batches, _ = ip.create_train_iterator(data, global_batch_size=8, n_critic=2, seed=3, **kwargs)
  return [next(batches) for _ in range(n)]


def test_two_shards_in_one_process_equal_two_processes(tmp_path):
  config = tiny_config.get_config(cache_dir=tmp_path / "cache")
  config.data.input_shards = 2
  one = _first_items(config.data, 2, process_index=0, process_count=1)
  two = [_first_items(config.data, 2, process_index=p, process_count=2) for p in range(2)]
  for step in range(2):
    for key in ("image", "label"):
      joined = np.concatenate([two[0][step][key], two[1][step][key]], axis=1)
      np.testing.assert_array_equal(one[step][key], joined)
  assert one[0]["image"].shape == (2, 8, 16, 16, 3)


def test_shards_must_fit_processes_and_batch(tmp_path):
  config = tiny_config.get_config(cache_dir=tmp_path / "cache")
  config.data.input_shards = 3
  with pytest.raises(data_errors.DataError, match="input_shards"):
    _first_items(config.data, 1, process_index=0, process_count=2)
