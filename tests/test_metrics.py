import numpy as np
import pytest
import scipy.linalg

from flowergan import metrics


def _fid_sqrtm(f1, f2):
  """Reference: the pytorch-fid style computation with scipy.linalg.sqrtm."""
  mu1, mu2 = f1.mean(0), f2.mean(0)
  s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
  covmean = scipy.linalg.sqrtm(s1 @ s2)
  covmean = np.real(covmean)
  d = mu1 - mu2
  return d @ d + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)


def test_frechet_closed_form_diagonal_gaussians():
  rng = np.random.default_rng(0)
  d = 4
  mu1, mu2 = np.zeros(d), np.array([1.0, -0.5, 0.0, 2.0])
  v1, v2 = np.array([1.0, 2.0, 0.5, 1.0]), np.array([0.25, 2.0, 2.0, 4.0])
  n = 200_000
  a = mu1 + rng.standard_normal((n, d)) * np.sqrt(v1)
  b = mu2 + rng.standard_normal((n, d)) * np.sqrt(v2)
  expected = np.sum((mu1 - mu2) ** 2) + np.sum(v1 + v2 - 2 * np.sqrt(v1 * v2))
  got = metrics.frechet_distance(a, b)
  assert got == pytest.approx(expected, rel=0.02)
  # exact from stats
  exact = metrics.frechet_distance_from_stats(mu1, np.diag(v1), mu2, np.diag(v2))
  assert exact == pytest.approx(expected, rel=1e-10, abs=1e-10)


def test_frechet_matches_sqrtm_on_random_features():
  rng = np.random.default_rng(1)
  a = rng.standard_normal((500, 16)) @ rng.standard_normal((16, 16))
  b = rng.standard_normal((400, 16)) @ rng.standard_normal((16, 16)) + 0.3
  assert metrics.frechet_distance(a, b) == pytest.approx(_fid_sqrtm(a, b), rel=1e-6)


def test_frechet_zero_for_identical_and_rank_deficient():
  rng = np.random.default_rng(2)
  a = rng.standard_normal((50, 8))
  mu, s = metrics.feature_stats(a)
  assert metrics.frechet_distance_from_stats(mu, s, mu, s) == pytest.approx(0.0, abs=1e-8)
  assert metrics.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
  # fewer samples than dims -> singular covariance; still finite and ~0 for identical sets
  c = rng.standard_normal((10, 32))
  v = metrics.frechet_distance(c, c)
  assert np.isfinite(v) and v == pytest.approx(0.0, abs=1e-6)
  assert metrics.frechet_distance(c, c + 1.0) == pytest.approx(32.0, rel=1e-6)


def test_kid_unbiased_same_distribution_and_positive_when_shifted():
  rng = np.random.default_rng(3)
  d = 16
  a = rng.standard_normal((2000, d))
  b = rng.standard_normal((2000, d))
  mean, std = metrics.kernel_inception_distance(a, b, num_subsets=50, subset_size=200, seed=0)
  assert std > 0
  assert abs(mean) < 3 * std
  # sharper: many small subsets (m=20), where a biased V-statistic would be off by ~2/m * E[k(x,x)]
  a2, b2 = rng.standard_normal((4000, 8)), rng.standard_normal((4000, 8))
  m2, s2 = metrics.kernel_inception_distance(a2, b2, num_subsets=400, subset_size=20, seed=1)
  assert abs(m2) < 4 * s2 / np.sqrt(400)
  mean_s, std_s = metrics.kernel_inception_distance(
      a, b + 0.5, num_subsets=50, subset_size=200, seed=0
  )
  assert mean_s > 0 and mean_s > 10 * std
  # determinism
  assert metrics.kernel_inception_distance(
      a, b, num_subsets=5, subset_size=100, seed=7
  ) == metrics.kernel_inception_distance(a, b, num_subsets=5, subset_size=100, seed=7)


def test_kid_matches_bruteforce_unbiased_formula():
  rng = np.random.default_rng(4)
  x = rng.standard_normal((30, 5))
  y = rng.standard_normal((30, 5)) + 0.2
  # subset_size = N and one subset -> the whole sets (permuted), so compare with a loop
  mean, _ = metrics.kernel_inception_distance(x, y, num_subsets=1, subset_size=30)
  k = lambda u, v: (u @ v / 5 + 1) ** 3
  m = 30
  sxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
  syy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
  sxy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
  assert mean == pytest.approx(sxx + syy - 2 * sxy, rel=1e-9)


def _smooth_images(rng, n, size=32):
  yy, xx = np.mgrid[0:size, 0:size] / size
  out = []
  for _ in range(n):
    f = rng.uniform(0.5, 2.0, size=(3, 2))
    ph = rng.uniform(0, 2 * np.pi, size=3)
    img = np.stack(
        [np.sin(2 * np.pi * (f[c, 0] * yy + f[c, 1] * xx) + ph[c]) for c in range(3)], -1
    )
    out.append(0.8 * img)
  return np.asarray(out, np.float32)


def test_swd_zero_for_identical_and_monotone_in_noise():
  rng = np.random.default_rng(5)
  imgs = _smooth_images(rng, 16)
  kw = dict(nhoods_per_image=16, dir_repeats=2, dirs_per_repeat=32, seed=0)
  same = metrics.sliced_wasserstein_distance(imgs, imgs.copy(), **kw)
  assert set(same) == {"swd_32", "swd_16", "swd_mean"}
  assert same["swd_mean"] == pytest.approx(0.0, abs=1e-9)
  vals = []
  for sigma in (0.05, 0.2, 0.8):
    noisy = imgs + sigma * rng.standard_normal(imgs.shape).astype(np.float32)
    vals.append(metrics.sliced_wasserstein_distance(imgs, noisy, **kw)["swd_mean"])
  assert vals[0] > 1.0  # x1e3 scale
  assert vals[0] < vals[1] < vals[2]
  # deterministic per seed
  noisy = imgs + 0.1 * rng.standard_normal(imgs.shape)
  r1 = metrics.sliced_wasserstein_distance(imgs, noisy, **kw)
  assert r1 == metrics.sliced_wasserstein_distance(imgs, noisy, **kw)


def test_swd_independent_sets_small_vs_different_distribution():
  rng = np.random.default_rng(6)
  a, b = _smooth_images(rng, 48), _smooth_images(rng, 48)
  noise = np.clip(rng.standard_normal((48, 32, 32, 3)), -1, 1)
  for joint in (False, True):
    kw = dict(
        nhoods_per_image=32, dir_repeats=2, dirs_per_repeat=32, seed=1, joint_normalization=joint
    )
    d_same = metrics.sliced_wasserstein_distance(a, b, **kw)["swd_mean"]
    d_diff = metrics.sliced_wasserstein_distance(a, noise, **kw)["swd_mean"]
    assert d_diff > 2 * d_same, (joint, d_same, d_diff)


def test_laplacian_pyramid_reconstructs():
  rng = np.random.default_rng(7)
  x = rng.standard_normal((2, 32, 32, 3))
  pyr = metrics.laplacian_pyramid(x, 3)
  assert [p.shape[1] for p in pyr] == [32, 16, 8]
  rec = pyr[-1]
  for lvl in reversed(pyr[:-1]):
    rec = metrics._pyr_up(rec) + lvl
  np.testing.assert_allclose(rec, x, atol=1e-10)


def test_checkerboard_high_for_checkerboard_low_for_smooth():
  n = 32
  yy, xx = np.mgrid[0:n, 0:n]
  cb = np.where((yy + xx) % 2 == 0, 1.0, -1.0)[None, :, :, None].repeat(3, -1)
  assert metrics.checkerboard_score(cb) == pytest.approx(1.0, abs=1e-9)
  grad = np.broadcast_to((xx / (n - 1) * 2 - 1)[None, :, :, None], (1, n, n, 3))
  sinus = np.sin(2 * np.pi * 2 * yy / n)[None, :, :, None]
  assert metrics.checkerboard_score(grad) < 0.05
  assert metrics.checkerboard_score(sinus) < 0.05
  # white noise: about (2n - 1) / n^2 of the energy
  noise = np.random.default_rng(0).standard_normal((8, n, n, 3))
  assert metrics.checkerboard_score(noise) == pytest.approx((2 * n - 1) / n**2, rel=0.3)
  # monotone in the amplitude of an added checkerboard
  s = [metrics.checkerboard_score(sinus + a * cb[..., :1]) for a in (0.0, 0.05, 0.2)]
  assert s[0] < s[1] < s[2]
  # constant image: defined as 0, no NaN
  assert metrics.checkerboard_score(np.ones((1, n, n, 3))) == 0.0


def test_checkerboard_transposed_conv_vs_bilinear_upsampling():
  rng = np.random.default_rng(1)
  small = 0.5 + 0.1 * rng.standard_normal((4, 16, 16, 3))
  # stride-2 transposed conv with a 3-tap box kernel (uneven overlap): zero-insert then [1,1,1]
  z = np.zeros((4, 32, 32, 3))
  z[:, ::2, ::2] = small
  k = np.array([1.0, 1.0, 1.0])
  tconv = sum(np.roll(z, s, axis=1) * k[s + 1] for s in (-1, 0, 1))
  tconv = sum(np.roll(tconv, s, axis=2) * k[s + 1] for s in (-1, 0, 1))
  # bilinear: same zero-insertion with the [0.5, 1, 0.5] tent kernel (zero response at Nyquist)
  kb = np.array([0.5, 1.0, 0.5])
  bil = sum(np.roll(z, s, axis=1) * kb[s + 1] for s in (-1, 0, 1))
  bil = sum(np.roll(bil, s, axis=2) * kb[s + 1] for s in (-1, 0, 1))
  s_t, s_b = metrics.checkerboard_score(tconv), metrics.checkerboard_score(bil)
  assert s_t > 0.5
  assert s_b < 0.05


def _flowers(num_per_class, size=16):
  from flowergan import synthetic

  images, labels, names = synthetic.render_images(num_per_class, seed=0, size=size)
  return images.astype(np.float32) / 127.5 - 1.0, labels, names


def _eval_config(**overrides):
  from flowergan import default_config

  ev = default_config.get_config().eval
  ev.update(classifier_steps=40, classifier_batch_size=16, batch_size=32, **overrides)
  return ev


def test_gan_train_of_real_copies_equals_the_real_baseline_and_collapse_lowers_it():
  """Generated images that are the real training images give GAN-train = its real baseline;
  a generator that repeats one image per class (full mode collapse) scores lower."""
  from flowergan import classifier, classifier_cache, evaluate

  real, labels, names = _flowers(24)
  ev = _eval_config()
  train, holdout = classifier.split_indices(labels, ev.classifier_holdout, ev.classifier_seed)
  params, info = classifier_cache.train_like_evaluation(real, labels, 2, ev)
  copies = evaluate._gan_train(params, real[train], labels[train], real, labels, names, ev)
  assert copies["gan_train_num_images"] == len(train)
  assert copies["gan_train"] == copies["gan_train_real"]
  assert copies["gan_train_real"] == pytest.approx(info["holdout_accuracy"])
  for name in names:
    assert copies[f"gan_train/{name}"] == copies[f"gan_train_real/{name}"]
  # One image per class, repeated: a classifier trained on it misses the other styles.
  one = np.array([train[labels[train] == c][0] for c in range(2)])
  collapsed = np.repeat(real[one], len(train), axis=0)
  collapsed_labels = np.repeat(np.arange(2, dtype=np.int32), len(train))
  dropped = evaluate._gan_train(params, collapsed, collapsed_labels, real, labels, names, ev)
  assert dropped["gan_train"] < copies["gan_train_real"], (dropped, copies)


def test_gan_train_trains_a_real_baseline_on_as_many_real_images_when_fewer_are_generated():
  """With fewer generated images than real training images, the real baseline is retrained on
  as many real images per class, not the evaluation classifier trained on all of them."""
  from flowergan import classifier, evaluate

  real, labels, names = _flowers(24)
  ev = _eval_config()
  train, _ = classifier.split_indices(labels, ev.classifier_holdout, ev.classifier_seed)
  generated = np.concatenate([real[train][labels[train] == c][:5] for c in range(2)])
  gen_labels = np.repeat(np.arange(2, dtype=np.int32), 5)
  sentinel = {"params": None}  # would fail if used: the baseline must be trained anew
  out = evaluate._gan_train(sentinel, generated, gen_labels, real, labels, names, ev)
  assert out["gan_train_num_images"] == 10
  # Trained on the same 5 real images per class, in the same order: the same classifier.
  assert out["gan_train"] == out["gan_train_real"]


def test_probe_is_a_logistic_regression_on_the_classifiers_split():
  """The probe learns a linear rule of the pixels and holds out what the classifier
  holds out; on labels unrelated to the pixels it stays near chance on the holdout."""
  from flowergan import classifier, probe

  rng = np.random.default_rng(0)
  x = rng.uniform(-1, 1, (400, 4, 4, 3)).astype(np.float32)
  y = (x[:, 2, 3, 0] + x[:, 1, 1, 2] > 0).astype(np.int32)
  out = probe.train_probe(x, y, 2, holdout_fraction=0.25, seed=1)
  assert out["train_accuracy"] >= 0.95 and out["holdout_accuracy"] >= 0.8, out
  shuffled = probe.train_probe(x, rng.permutation(y), 2, holdout_fraction=0.25, seed=1)
  assert shuffled["holdout_accuracy"] < 0.7, shuffled
  train, holdout = classifier.split_indices(y, 0.25, 1)
  _, info = classifier.train_classifier(x, y, 2, steps=1, holdout_fraction=0.25, seed=1)
  assert info["num_holdout"] == len(holdout) == 100 and len(train) == 300
  # Larger images are downscaled to PROBE_SIZE before the regression.
  assert probe._probe_inputs(np.zeros((2, 64, 64, 3)), 32).shape == (2, 32 * 32 * 3)
