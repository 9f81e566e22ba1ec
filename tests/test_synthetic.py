"""Tests for flowergan.synthetic (numpy + PIL only)."""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from flowergan import synthetic


@pytest.fixture(scope="module")
def small_set():
  return synthetic.render_images(30, seed=3, size=32)


def test_deterministic_per_seed():
  a, la, _ = synthetic.render_images(3, seed=5, size=24)
  b, lb, _ = synthetic.render_images(3, seed=5, size=24)
  c, _, _ = synthetic.render_images(3, seed=6, size=24)
  np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(la, lb)
  assert not np.array_equal(a, c)
  # Image i of a class does not depend on how many are rendered (a larger set extends a smaller).
  d, ld, _ = synthetic.render_images(4, seed=5, size=24)
  np.testing.assert_array_equal(d[ld == 0][:3], a[la == 0])
  np.testing.assert_array_equal(d[ld == 1][:3], a[la == 1])


@pytest.mark.parametrize("size", [16, 40])
def test_requested_resolution_and_balance(size):
  images, labels, names = synthetic.render_images(4, seed=0, size=size)
  assert images.shape == (8, size, size, 3)
  assert images.dtype == np.uint8
  assert labels.dtype == np.int32
  assert names == ["dandelion", "marigold"]
  np.testing.assert_array_equal(np.bincount(labels), [4, 4])


def test_images_are_varied(small_set):
  images, labels, _ = small_set
  x = images.astype(np.float32)
  for k in (0, 1):
    xs = x[labels == k]
    diffs = [np.abs(xs[i] - xs[j]).mean() for i in range(len(xs)) for j in range(i + 1, len(xs))]
    assert min(diffs) > 5.0  # no two images of a class are (nearly) the same
    assert xs.std(axis=0).mean() > 20.0  # pixel-wise variation over the class


def test_hue_statistic_separates_classes(small_set):
  images, labels, _ = small_set
  pred = synthetic.classify_by_hue(images)
  assert (pred == labels).mean() >= 0.95
  # Same answer for float images in [-1, 1].
  as_float = images.astype(np.float32) / 127.5 - 1.0
  np.testing.assert_array_equal(synthetic.classify_by_hue(as_float), pred)
  scores = synthetic.centre_hue_scores(images)
  assert scores.shape == (len(images),) and np.all((scores >= 0) & (scores <= 1))
  # A single image (H, W, 3) works too.
  assert synthetic.classify_by_hue(images[0]).shape == (1,)


def test_hue_statistic_on_plain_colours():
  def plain(rgb):
    return np.broadcast_to(np.asarray(rgb, np.uint8), (1, 16, 16, 3))

  assert synthetic.classify_by_hue(plain((250, 120, 10)))[0] == 1  # orange -> marigold
  assert synthetic.classify_by_hue(plain((250, 220, 20)))[0] == 0  # yellow -> dandelion
  assert synthetic.classify_by_hue(plain((40, 140, 40)))[0] == 0  # green: no warm pixels
  assert synthetic.centre_hue_scores(plain((250, 120, 10)))[0] > 0.9


def test_write_dataset_roundtrip(tmp_path):
  synthetic.write_dataset(str(tmp_path), 2, seed=1, size=16)
  for label, name in enumerate(synthetic.CLASS_NAMES):
    files = sorted(os.listdir(tmp_path / name))
    assert files == ["000000.png", "000001.png"]
    for i, f in enumerate(files):
      got = np.asarray(Image.open(tmp_path / name / f))
      np.testing.assert_array_equal(got, synthetic.render_image(label, 1, i, 16))


def test_imports_neither_tensorflow_nor_jax():
  code = (
      "import sys, flowergan.synthetic as s; s.render_image(0, 0, 0, 8); "
      "bad = [m for m in ('tensorflow', 'jax') if m in sys.modules]; "
      "assert not bad, bad"
  )
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
  subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)
