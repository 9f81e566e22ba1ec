"""WGAN-GP losses (Gulrajani et al. 2017): Wasserstein critic and generator losses and the
two-sided gradient penalty on random interpolates of real and fake images."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

# Inside the square root of the per-image gradient norm so that a zero gradient (a dead critic,
# or a constant one) gives a finite penalty and a finite gradient instead of NaN.
GRAD_NORM_EPS = 1e-12


def critic_loss(real_scores: jax.Array, fake_scores: jax.Array) -> jax.Array:
  """E[D(fake)] − E[D(real)]: the critic minimises the negated Wasserstein estimate."""
  return jnp.mean(fake_scores) - jnp.mean(real_scores)


def generator_loss(fake_scores: jax.Array) -> jax.Array:
  """−E[D(G(z))]."""
  return -jnp.mean(fake_scores)


def wasserstein_estimate(real_scores: jax.Array, fake_scores: jax.Array) -> jax.Array:
  """E[D(real)] − E[D(fake)], the critic's estimate of the Wasserstein-1 distance."""
  return jnp.mean(real_scores) - jnp.mean(fake_scores)


def per_image_gradient_norm(
    critic_fn: Callable[[jax.Array], jax.Array], images: jax.Array
) -> jax.Array:
  """‖∇ₓ D(x)‖₂ for every image, shape (N,). Images do not interact in the critic (no
  BatchNorm), so the gradient of the summed scores is the stack of per-image gradients."""
  grads = jax.grad(lambda x: jnp.sum(critic_fn(x)))(images)
  grads = grads.astype(jnp.float32).reshape((grads.shape[0], -1))
  return jnp.sqrt(jnp.sum(jnp.square(grads), axis=-1) + GRAD_NORM_EPS)


def interpolate(real: jax.Array, fake: jax.Array, key: jax.Array) -> jax.Array:
  """x̂ = ε·real + (1−ε)·fake with one ε ~ U[0, 1] per image."""
  eps = jax.random.uniform(key, (real.shape[0],) + (1,) * (real.ndim - 1), dtype=real.dtype)
  return eps * real + (1.0 - eps) * fake


def gradient_penalty(
    critic_fn: Callable[[jax.Array], jax.Array], real: jax.Array, fake: jax.Array, key: jax.Array
) -> jax.Array:
  """mean((‖∇D(x̂)‖₂ − 1)²) over random interpolates x̂ of `real` and `fake`.

  Args:
    critic_fn: maps a batch of images to per-image scores (labels already bound).
    real, fake: image batches of the same shape.
    key: PRNG key for the interpolation weights.
  """
  x_hat = interpolate(real, fake, key)
  norms = per_image_gradient_norm(critic_fn, x_hat)
  return jnp.mean(jnp.square(norms - 1.0))
