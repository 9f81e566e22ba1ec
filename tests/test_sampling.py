"""Latent noise, labels, grids and image files of flowergan.sampling."""

import os
import stat

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from flowergan import sampling


def test_truncated_noise_respects_threshold():
  z = sampling.truncated_normal_z(jax.random.key(0), (1000, 8), 0.5)
  assert float(jnp.abs(z).max()) <= 0.5
  with pytest.raises(ValueError):
    sampling.truncated_normal_z(jax.random.key(0), (2, 2), 0.0)


def test_save_png_writes_atomically_with_the_users_permissions(tmp_path):
  path = tmp_path / "grid.png"
  image = np.zeros((4, 6, 3), np.uint8)
  image[1, 2] = (255, 128, 0)
  old = os.umask(0o022)
  try:
    sampling.save_png(image, str(path))
  finally:
    os.umask(old)
  np.testing.assert_array_equal(np.asarray(Image.open(path)), image)
  assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
  with pytest.raises(TypeError):  # PIL cannot write float64 RGB: the old PNG stays
    sampling.save_png(np.zeros((4, 6, 3)), str(path))
  np.testing.assert_array_equal(np.asarray(Image.open(path)), image)
  assert os.listdir(tmp_path) == ["grid.png"]
