"""Latent noise of flowergan.sampling."""

import jax
import jax.numpy as jnp
import pytest

from flowergan import sampling


def test_truncated_noise_respects_threshold():
  z = sampling.truncated_normal_z(jax.random.key(0), (1000, 8), 0.5)
  assert float(jnp.abs(z).max()) <= 0.5
  with pytest.raises(ValueError):
    sampling.truncated_normal_z(jax.random.key(0), (2, 2), 0.0)
