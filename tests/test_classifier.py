import jax
import numpy as np
import pytest

from flowergan import classifier as C
from flowergan import classifier_cache
from flowergan import probe as P


def _discs(n=100, size=32, seed=0):
  """Yellow vs orange discs of random radius/position on a noisy green background, in [-1, 1]."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:size, 0:size]
  colours = np.array([[1.0, 0.9, 0.1], [1.0, 0.45, 0.0]])  # yellow, orange (RGB in [0,1])
  labels = np.arange(n) % 2
  rng.shuffle(labels)
  imgs = np.empty((n, size, size, 3), np.float32)
  for i, c in enumerate(labels):
    bg = np.array([0.1, 0.5, 0.15]) + 0.05 * rng.standard_normal((size, size, 3))
    r = rng.uniform(0.2, 0.35) * size
    cy, cx = rng.uniform(0.35, 0.65, size=2) * size
    disc = ((yy - cy) ** 2 + (xx - cx) ** 2) < r**2
    img = np.where(disc[..., None], colours[c] + 0.05 * rng.standard_normal(3), bg)
    imgs[i] = np.clip(img, 0, 1) * 2 - 1
  return imgs, labels


@pytest.fixture(scope="module")
def trained():
  x, y = _discs()
  params, info = C.train_classifier(x, y, 2, steps=40, batch_size=32, seed=0, learning_rate=3e-3)
  return x, y, params, info


def test_classifier_learns_separable_set(trained):
  x, y, params, info = trained
  assert info["num_holdout"] == 20 and info["num_train"] == 80
  assert info["holdout_accuracy"] >= 0.9
  assert info["train_accuracy"] >= 0.9


def test_predict_shapes_batching_and_sizes(trained):
  x, y, params, _ = trained
  lo, fe = C.predict(params, x, batch_size=32)  # 100 = 3*32 + 4: padded last batch
  assert lo.shape == (100, 2) and fe.shape == (100, 128)
  lo2, fe2 = C.predict(params, x, batch_size=100)
  np.testing.assert_allclose(lo, lo2, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(fe, fe2, rtol=1e-5, atol=1e-5)
  # the module works at other sizes (global pool)
  m = C.Classifier(num_classes=2)
  for s in (64, 128):  # shape-only evaluation, no compute
    x_s = jax.ShapeDtypeStruct((2, s, s, 3), np.float32)
    v = jax.eval_shape(m.init, jax.random.PRNGKey(0), x_s)
    lo, fe = jax.eval_shape(lambda v, x: m.apply(v, x, return_features=True), v, x_s)
    assert lo.shape == (2, 2) and fe.shape == (2, 128)


def test_save_load_roundtrip(trained, tmp_path):
  x, y, params, _ = trained
  fp = classifier_cache.data_fingerprint(x, y)
  path = tmp_path / "sub" / "classifier.msgpack"
  C.save_classifier(str(path), params, {"image_size": 32, "fingerprint": fp})
  p2, meta = C.load_classifier(str(path))
  assert meta["fingerprint"] == fp and meta["image_size"] == 32 and meta["num_classes"] == 2
  a, fa = C.predict(params, x[:16])
  b, fb = C.predict(p2, x[:16])
  np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(fa, fb)


def test_fingerprint_changes_with_data():
  x, y = _discs(n=10)
  fp = classifier_cache.data_fingerprint(x, y)
  assert fp == classifier_cache.data_fingerprint(x.copy(), y.copy())
  x2 = x.copy()
  x2[0, 0, 0, 0] += 0.01
  assert classifier_cache.data_fingerprint(x2, y) != fp
  assert classifier_cache.data_fingerprint(x, 1 - y) != fp


def test_training_is_deterministic_per_seed():
  x, y = _discs()  # same shapes/settings as the fixture -> compiled step is reused
  kw = dict(steps=2, batch_size=32, learning_rate=3e-3)
  p1, i1 = C.train_classifier(x, y, 2, seed=3, **kw)
  p2, i2 = C.train_classifier(x, y, 2, seed=3, **kw)
  p3, _ = C.train_classifier(x, y, 2, seed=4, **kw)
  l1 = jax.tree_util.tree_leaves(p1)
  for a, b in zip(l1, jax.tree_util.tree_leaves(p2)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert i1["final_loss"] == i2["final_loss"]
  assert any(
      not np.array_equal(np.asarray(a), np.asarray(b))
      for a, b in zip(l1, jax.tree_util.tree_leaves(p3))
  )


def test_translate_shifts_each_image_within_an_eighth_repeating_the_border():
  """The 'translate' augmentation moves each image by at most 1/8 of its size, filling the
  uncovered border with the edge pixels; different images get different shifts."""
  x = np.arange(16 * 16, dtype=np.float32).reshape(1, 16, 16, 1).repeat(8, axis=0)
  out = np.asarray(C._translate(x, jax.random.PRNGKey(0)))
  assert out.shape == x.shape
  shifts = set()
  for img in out[..., 0]:
    # The centre pixel's value tells the shift: value = 16 * row + col.
    dy, dx = divmod(int(img[8, 8]), 16)
    dy, dx = dy - 8, dx - 8
    assert abs(dy) <= 2 and abs(dx) <= 2
    np.testing.assert_array_equal(img[4:12, 4:12], x[0, 4 + dy : 12 + dy, 4 + dx : 12 + dx, 0])
    shifts.add((dy, dx))
  assert len(shifts) > 1


def test_parse_augment_names_and_refusals():
  """Augmentations are named by a comma list; True means flips (the old default); an unknown
  name is refused with the valid ones."""
  assert C.parse_augment("translate, flip") == ("flip", "translate")
  assert C.parse_augment(True) == ("flip",) and C.parse_augment("") == ()
  with pytest.raises(C.errors.FlowerganError, match="flip, translate"):
    C.parse_augment("flip,rotate")


def test_classifier_is_at_least_as_accurate_as_the_pixel_probe_on_the_synthetic_flowers():
  """On held-out synthetic flowers the evaluation classifier (its default augmentation) does at
  least as well as a logistic regression on their pixels, on the same split."""
  from flowergan import synthetic

  images, labels, _ = synthetic.render_images(40, seed=0, size=32)
  x = C.to_model_range(images)
  _, info = C.train_classifier(
      x, labels, 2, steps=60, batch_size=32, learning_rate=3e-3, augment="flip,translate"
  )
  probe = P.train_probe(x, labels, 2)
  assert info["num_holdout"] == 16
  assert info["holdout_accuracy"] >= probe["holdout_accuracy"], (info, probe)


def test_evaluation_classifier_beats_the_pixel_probe_on_real_handwritten_digits():
  """On a real labelled image set (scikit-learn's 1797 scanned digits, 10 classes, bundled with
  the package, upscaled to 16 px RGB), the classifier trained with the evaluation's default
  settings is more accurate on the held-out images than the logistic regression on their
  pixels, on the same split: what `evaluate` prints side by side."""
  from sklearn import datasets
  from PIL import Image

  from flowergan import default_config

  digits = datasets.load_digits()
  scans = (digits.images * (255 / 16)).round().astype(np.uint8)
  images = np.stack(
      [np.asarray(Image.fromarray(s).resize((16, 16), Image.BILINEAR)) for s in scans]
  )
  x = C.to_model_range(np.repeat(images[..., None], 3, axis=-1))
  eval_config = default_config.get_config().eval
  _, info = classifier_cache.train_like_evaluation(x, digits.target, 10, eval_config)
  probe = P.train_probe(
      x,
      digits.target,
      10,
      holdout_fraction=eval_config.classifier_holdout,
      seed=eval_config.classifier_seed,
  )
  assert info["num_holdout"] == 359
  assert probe["holdout_accuracy"] > 0.9  # the probe is a real bar here, not chance
  assert info["holdout_accuracy"] > probe["holdout_accuracy"], (info, probe)


def test_an_eval_block_from_before_classifier_augment_trains_with_flips():
  """A checkpoint's stored `eval` without `classifier_augment` gets the default, flips, in
  `default_config.from_stored`: the augmentation such runs' classifiers were trained with."""
  from flowergan import default_config

  stored = default_config.get_config().to_dict()
  del stored["eval"]["classifier_augment"]
  eval_config = default_config.from_stored(stored).eval
  assert classifier_cache._classifier_settings(eval_config, 2, 32)["augment"] == ["flip"]
