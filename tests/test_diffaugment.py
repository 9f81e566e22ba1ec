import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowergan.diffaugment import diff_augment, parse_policy

ALL = "color,translation,cutout"


def _images(n=4, size=16, seed=0):
  return jax.random.uniform(jax.random.PRNGKey(seed), (n, size, size, 3), minval=-1.0, maxval=1.0)


@pytest.mark.parametrize("policy", ["color", "translation", "cutout", ALL])
def test_shape_dtype_and_determinism(policy):
  x = _images()
  k = jax.random.PRNGKey(1)
  y1 = diff_augment(x, k, policy)
  y2 = diff_augment(x, k, policy)
  y3 = diff_augment(x, jax.random.PRNGKey(2), policy)
  assert y1.shape == x.shape and y1.dtype == x.dtype
  np.testing.assert_array_equal(np.asarray(y1), np.asarray(y2))
  assert not np.allclose(np.asarray(y1), np.asarray(y3))
  assert not np.allclose(np.asarray(y1), np.asarray(x))


def test_empty_policy_is_identity():
  x = _images()
  assert diff_augment(x, jax.random.PRNGKey(0), "") is x
  assert parse_policy(" color , cutout ") == ("color", "cutout")


def test_unknown_policy_raises():
  with pytest.raises(ValueError, match="valid: color, translation, cutout"):
    diff_augment(_images(), jax.random.PRNGKey(0), "color,rotate")


def test_gradients_flow():
  x = _images()
  k = jax.random.PRNGKey(3)
  w = jax.random.normal(jax.random.PRNGKey(4), x.shape)
  g = jax.grad(lambda im: jnp.sum(w * diff_augment(im, k, ALL)))(x)
  assert g.shape == x.shape
  assert np.all(np.isfinite(np.asarray(g)))
  assert np.abs(np.asarray(g)).sum() > 0
  # gradient-penalty style: grad of critic(augment(x)) wrt x, then grad of its norm
  critic = lambda im: jnp.sum(jnp.tanh(diff_augment(im, k, ALL)) * w, axis=(1, 2, 3))
  gp = lambda im: jnp.mean(
      (jnp.sqrt(jnp.sum(jax.grad(lambda z: critic(z).sum())(im) ** 2, axis=(1, 2, 3)) + 1e-12) - 1)
      ** 2
  )
  g2 = jax.jit(jax.grad(gp))(x)
  assert np.all(np.isfinite(np.asarray(g2))) and np.abs(np.asarray(g2)).sum() > 0


def test_jit_with_static_policy_matches_eager():
  x = _images()
  k = jax.random.PRNGKey(5)
  f = jax.jit(diff_augment, static_argnames="policy")
  np.testing.assert_allclose(
      np.asarray(f(x, k, policy=ALL)), np.asarray(diff_augment(x, k, ALL)), atol=1e-6
  )
  g = jax.jit(functools.partial(diff_augment, policy="translation"))
  np.testing.assert_allclose(
      np.asarray(g(x, k)), np.asarray(diff_augment(x, k, "translation")), atol=0
  )


def test_translation_moves_content_with_zero_padding():
  n, s = 64, 16
  x = jnp.zeros((n, s, s, 3)).at[:, s // 2, s // 2, :].set(1.0)  # one bright pixel per image
  y = np.asarray(diff_augment(x, jax.random.PRNGKey(6), "translation"))
  max_shift = int(s * 0.125 + 0.5)
  moved = 0
  for i in range(n):
    pos = np.argwhere(y[i, :, :, 0] == 1.0)
    assert len(pos) == 1 and y[i].sum() == 3.0  # pure shift, nothing else appears
    dy, dx = pos[0] - s // 2
    assert abs(dy) <= max_shift and abs(dx) <= max_shift
    moved += (dy, dx) != (0, 0)
  assert moved > n // 2
  # shifting a constant image brings in zeros at the border for a nonzero shift
  ones = jnp.ones((n, s, s, 3))
  yo = np.asarray(diff_augment(ones, jax.random.PRNGKey(6), "translation"))
  assert set(np.unique(yo)) <= {0.0, 1.0}
  assert (yo == 0).any()


def test_cutout_zeroes_half_size_square():
  n, s = 32, 16
  x = jnp.ones((n, s, s, 3))
  y = np.asarray(diff_augment(x, jax.random.PRNGKey(7), "cutout"))
  cut = s // 2
  for i in range(n):
    z = y[i, :, :, 0] == 0
    rows, cols = np.flatnonzero(z.any(1)), np.flatnonzero(z.any(0))
    assert 1 <= len(rows) <= cut and 1 <= len(cols) <= cut
    assert z.sum() == len(rows) * len(cols)  # a (clipped) rectangle
    assert np.all(y[i, :, :, 1] == y[i, :, :, 0])
  interior = [(y[i, :, :, 0] == 0).sum() for i in range(n)]
  assert max(interior) == cut * cut


def test_color_ranges():
  # brightness only affects the per-image mean by at most 0.5; contrast/saturation keep a
  # constant grey image constant
  x = jnp.zeros((64, 8, 8, 3))
  y = np.asarray(diff_augment(x, jax.random.PRNGKey(8), "color"))
  per_image = y.reshape(64, -1)
  assert np.allclose(per_image, per_image[:, :1], atol=1e-6)
  assert np.abs(per_image[:, 0]).max() <= 0.5
  assert per_image[:, 0].std() > 0.1
