"""Adaptive discriminator augmentation (ADA, Karras et al. 2020) for a Wasserstein critic.

Every image the critic sees goes through `augment(images, key, p)`: each transformation is
applied to each image with probability `p`, all of them differentiable w.r.t. the images (a
warp with bilinear sampling and a colour matrix), so the generator's gradient passes through.
The pipeline follows StyleGAN2-ADA's 'bgc' (`training/augment.py`, same ranges):

* geometric, composed into one affine map and one resampling pass (bilinear, reflect padding):
  x-flip, 90° rotations, integer translation (up to 1/8 of the size), isotropic scaling
  (lognormal, σ = 0.2 octaves), arbitrary rotation (twice, each with probability
  1 − √(1 − p), as in ADA), anisotropic scaling (σ = 0.2), fractional translation (σ = 1/8);
* colour, one 4×4 matrix on (r, g, b, 1): brightness (+N(0, 0.2)), contrast (×2^N(0, 0.5)),
  saturation (×2^N(0, 1) around the grey axis) and, only with `hue=True`, hue rotation
  (uniform). ADA's luma flip is left out, like hue: it turns a yellow flower's bright centre
  dark, i.e. changes what a colour-defined class looks like.

Where it is applied (train_step.WGANGP, like DiffAugment): to the real and generated images of
every critic step, to the generated images of the generator step, and inside the gradient
penalty to the interpolates, with the penalty's gradient taken w.r.t. the un-augmented x̂. The
critic that is trained and that the generator follows is D∘A, so D∘A is the function whose
Lipschitz constant the penalty must hold at 1; penalising D alone would constrain a function
the losses never evaluate (StyleGAN2-ADA's R1 is likewise taken through its augmentation).

How p adapts: the overfitting heuristic is `real_above_fake`, the share of (real, generated)
pairs of a critic batch that the critic ranks real first (the AUC of its scores), averaged over
`interval` iterations; p moves by sign(r − target) · (images seen) / (kimg · 1000), clipped to
[0, 1]. ADA's r_t = E[sign(D(real))] needs a fixed zero of the critic's output, which a
Wasserstein critic lacks (its loss is unchanged by adding a constant to D; r_t can then be
anything from −1 to 1 at the same ranking); a ranking is invariant to any shift (and to any
increasing map) of the scores. Its measured values are in docs/small_data.md.

The randomness comes from the step's key (`fold_in(key, step)` in train_step), so every device
and process draws the same transformations for the same global batch.
"""

from __future__ import annotations

import math

import flax
import jax
import jax.numpy as jnp

__all__ = ["AdaState", "augment", "init_state", "real_above_fake", "update"]

# StyleGAN2-ADA's 'bgc' strengths (augment.py's defaults).
XINT_MAX = 0.125  # integer translation, share of the size
SCALE_STD = 0.2  # log2 of the isotropic scale
ROTATE_MAX = 1.0  # arbitrary rotation, share of a half turn
ANISO_STD = 0.2  # log2 of the anisotropic scale
XFRAC_STD = 0.125  # fractional translation, share of the size
BRIGHTNESS_STD = 0.2
CONTRAST_STD = 0.5  # log2
SATURATION_STD = 1.0  # log2
HUE_MAX = 1.0  # share of a half turn


@flax.struct.dataclass
class AdaState:
  """What ADA keeps in the train state (so checkpoints carry it and a resume is exact)."""

  p: jax.Array  # float32 (): the current augmentation probability
  stat_sum: jax.Array  # float32 (): `real_above_fake` summed since the last adjustment
  stat_count: jax.Array  # int32 (): iterations summed


def init_state(p: float = 0.0) -> AdaState:
  return AdaState(
      p=jnp.asarray(p, jnp.float32),
      stat_sum=jnp.zeros((), jnp.float32),
      stat_count=jnp.zeros((), jnp.int32),
  )


def real_above_fake(real_scores: jax.Array, fake_scores: jax.Array) -> jax.Array:
  """The share of (real, fake) pairs the critic scores real higher (ties count half).

  0.5: the critic cannot tell them apart; 1: it ranks every real image above every fake.
  Unchanged by adding a constant to (or rescaling) the scores.
  """
  r = real_scores.astype(jnp.float32).reshape(-1, 1)
  f = fake_scores.astype(jnp.float32).reshape(1, -1)
  return jnp.mean(jnp.where(r > f, 1.0, jnp.where(r == f, 0.5, 0.0)))


def update(
    state: AdaState,
    stat: jax.Array,
    *,
    images_per_step: int,
    target: float,
    interval: int,
    kimg: float,
) -> AdaState:
  """Adds this iteration's heuristic; every `interval` iterations moves p towards the target.

  p += sign(mean − target) · images_per_step · interval / (kimg · 1000), clipped to [0, 1],
  as StyleGAN2-ADA (p can cross [0, 1] in `kimg` thousand real images).
  """
  total = state.stat_sum + stat.astype(jnp.float32)
  count = state.stat_count + 1
  due = count >= interval
  mean = total / count.astype(jnp.float32)
  step = jnp.sign(mean - target) * (images_per_step * interval / (kimg * 1000.0))
  p = jnp.where(due, jnp.clip(state.p + step, 0.0, 1.0), state.p)
  return AdaState(
      p=p.astype(jnp.float32),
      stat_sum=jnp.where(due, 0.0, total).astype(jnp.float32),
      stat_count=jnp.where(due, 0, count).astype(jnp.int32),
  )


# ---------------------------------------------------------------- the augmentations


def _gate(key, n: int, p, values, identity):
  """`values` where a U[0, 1) draw per image is below p, else `identity`."""
  on = jax.random.uniform(key, (n,)) < p
  return jnp.where(on, values, identity)


def _affine(a, b, c, d, tx, ty):
  """Per-image 3×3 matrices [[a, b, tx], [c, d, ty], [0, 0, 1]] from (N,) arrays."""
  zero, one = jnp.zeros_like(a), jnp.ones_like(a)
  return jnp.stack(
      [jnp.stack([a, b, tx], -1), jnp.stack([c, d, ty], -1), jnp.stack([zero, zero, one], -1)],
      -2,
  )


def _scale(sx, sy):
  z = jnp.zeros_like(sx)
  return _affine(sx, z, z, sy, z, z)


def _rotate(theta):
  c, s = jnp.cos(theta), jnp.sin(theta)
  return _affine(c, -s, s, c, jnp.zeros_like(c), jnp.zeros_like(c))


def _translate(tx, ty):
  one, z = jnp.ones_like(tx), jnp.zeros_like(tx)
  return _affine(one, z, z, one, tx, ty)


def geometric_matrix(key, n: int, size: int, p) -> jax.Array:
  """(n, 3, 3): output pixel (x, y, 1), centred, → input pixel; the identity where all are off.

  As ADA, the matrix maps output to input coordinates, each factor multiplied on the right.
  """
  keys = iter(jax.random.split(key, 20))
  zero, one = jnp.zeros((n,)), jnp.ones((n,))
  g = jnp.broadcast_to(jnp.eye(3), (n, 3, 3))

  flip = jax.random.randint(next(keys), (n,), 0, 2).astype(jnp.float32)
  g = g @ _scale(_gate(next(keys), n, p, 1.0 - 2.0 * flip, one), one)
  quarter = jax.random.randint(next(keys), (n,), 0, 4).astype(jnp.float32)
  g = g @ _rotate(_gate(next(keys), n, p, quarter * (math.pi / 2), zero))
  shift = jax.random.uniform(next(keys), (2, n), minval=-1.0, maxval=1.0) * XINT_MAX
  shift = jnp.round(shift * size)
  g = g @ _translate(
      _gate(next(keys), n, p, shift[0], zero), _gate(next(keys), n, p, shift[1], zero)
  )
  s = jnp.exp2(jax.random.normal(next(keys), (n,)) * SCALE_STD)
  s = _gate(next(keys), n, p, s, one)
  g = g @ _scale(s, s)
  p_rot = 1.0 - jnp.sqrt(jnp.clip(1.0 - p, 0.0, 1.0))  # two rotations: p in all
  theta = jax.random.uniform(next(keys), (n,), minval=-1.0, maxval=1.0) * math.pi * ROTATE_MAX
  g = g @ _rotate(_gate(next(keys), n, p_rot, theta, zero))
  s = jnp.exp2(jax.random.normal(next(keys), (n,)) * ANISO_STD)
  s = _gate(next(keys), n, p, s, one)
  g = g @ _scale(s, 1.0 / s)
  theta = jax.random.uniform(next(keys), (n,), minval=-1.0, maxval=1.0) * math.pi * ROTATE_MAX
  g = g @ _rotate(_gate(next(keys), n, p_rot, theta, zero))
  t = jax.random.normal(next(keys), (2, n)) * XFRAC_STD * size
  g = g @ _translate(_gate(next(keys), n, p, t[0], zero), _gate(next(keys), n, p, t[1], zero))
  return g


def _reflect(u, n: int):
  """Coordinates reflected into [0, n − 1] about the outer pixel centres (numpy's 'reflect')."""
  if n == 1:
    return jnp.zeros_like(u)
  period = 2.0 * (n - 1)
  u = jnp.mod(u, period)
  return jnp.where(u > n - 1, period - u, u)


def warp(images, matrices):
  """Resamples NHWC `images` at `matrices` @ (x, y, 1) (centred pixel coordinates), bilinear
  with reflect padding. Exact (the same values) where a matrix maps pixels onto pixels."""
  n, h, w, _ = images.shape
  cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
  yy, xx = jnp.meshgrid(jnp.arange(h) - cy, jnp.arange(w) - cx, indexing="ij")
  grid = jnp.stack([xx, yy, jnp.ones_like(xx)], -1).reshape(-1, 3)  # (h·w, 3)
  src = jnp.einsum("nij,pj->npi", matrices.astype(jnp.float32), grid)
  sx = _reflect(src[..., 0] + cx, w)
  sy = _reflect(src[..., 1] + cy, h)
  x0, y0 = jnp.floor(sx), jnp.floor(sy)
  fx, fy = (sx - x0)[..., None], (sy - y0)[..., None]
  x0, y0 = x0.astype(jnp.int32), y0.astype(jnp.int32)
  x1, y1 = jnp.minimum(x0 + 1, w - 1), jnp.minimum(y0 + 1, h - 1)
  flat = images.reshape(n, h * w, -1)

  def at(yi, xi):
    return jnp.take_along_axis(flat, (yi * w + xi)[..., None], axis=1)

  top = at(y0, x0) * (1 - fx) + at(y0, x1) * fx
  bottom = at(y1, x0) * (1 - fx) + at(y1, x1) * fx
  out = top * (1 - fy) + bottom * fy
  return out.reshape(images.shape).astype(images.dtype)


def colour_matrix(key, n: int, p, hue: bool = False) -> jax.Array:
  """(n, 4, 4) acting on (r, g, b, 1); the identity where all are off."""
  keys = iter(jax.random.split(key, 8))
  zero, one = jnp.zeros((n,)), jnp.ones((n,))
  eye = jnp.eye(4)
  c = jnp.broadcast_to(eye, (n, 4, 4))
  b = _gate(next(keys), n, p, jax.random.normal(next(keys), (n,)) * BRIGHTNESS_STD, zero)
  c = (eye + jnp.zeros((n, 4, 4)).at[:, :3, 3].set(b[:, None])) @ c
  s = _gate(next(keys), n, p, jnp.exp2(jax.random.normal(next(keys), (n,)) * CONTRAST_STD), one)
  c = jnp.eye(4)[None] * jnp.stack([s, s, s, one], -1)[:, None, :] @ c
  v = jnp.array([1.0, 1.0, 1.0, 0.0]) / math.sqrt(3.0)  # the grey axis
  vv = jnp.outer(v, v)
  if hue:
    theta = jax.random.uniform(next(keys), (n,), minval=-1.0, maxval=1.0) * math.pi * HUE_MAX
    theta = _gate(next(keys), n, p, theta, zero)
    c = _rotate_about_grey(theta) @ c
  s = jnp.exp2(jax.random.normal(next(keys), (n,)) * SATURATION_STD)
  s = _gate(next(keys), n, p, s, one)
  c = (vv[None] + (eye - vv)[None] * s[:, None, None]) @ c
  return c


def _rotate_about_grey(theta):
  """(n, 4, 4): rotation by `theta` about the grey axis (Rodrigues' formula)."""
  a = 1.0 / math.sqrt(3.0)
  k = jnp.array([[0.0, -a, a], [a, 0.0, -a], [-a, a, 0.0]])
  c, s = jnp.cos(theta)[:, None, None], jnp.sin(theta)[:, None, None]
  r = jnp.eye(3)[None] + s * k[None] + (1 - c) * (k @ k)[None]
  return jnp.zeros((theta.shape[0], 4, 4)).at[:, :3, :3].set(r).at[:, 3, 3].set(1.0)


def apply_colour(images, matrices):
  m = matrices.astype(jnp.float32)
  x = images.astype(jnp.float32)
  out = jnp.einsum("nhwc,nkc->nhwk", x, m[:, :3, :3]) + m[:, None, None, :3, 3]
  return out.astype(images.dtype)


def augment(images, key, p, *, hue: bool = False):
  """ADA's geometric and colour groups on NHWC `images` in [-1, 1], each transformation on each
  image with probability `p` (a scalar, may be traced). p = 0 returns `images` unchanged."""
  n, size = images.shape[0], images.shape[1]
  k_geom, k_colour = jax.random.split(key)

  def on(x):
    x = warp(x, geometric_matrix(k_geom, n, size, p))
    return apply_colour(x, colour_matrix(k_colour, n, p, hue))

  # Skipped at p = 0 (the start of every run): no resampling cost, and exactly the identity.
  return jax.lax.cond(p > 0, on, lambda x: x, images)
