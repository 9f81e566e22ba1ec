"""Tests for flowergan.decoding: resizing and cropping, the pixel limit and PIL's own."""

import io
import warnings

import numpy as np
from PIL import Image

from flowergan import data_sources, decoding
from tests import tiny_config


def test_decode_resize_centre_crop():
  # 90 x 30 (w x h): left/right thirds red/blue, middle third green -> centre crop is green.
  arr = np.zeros((30, 90, 3), np.uint8)
  arr[:, :30] = (255, 0, 0)
  arr[:, 30:60] = (0, 255, 0)
  arr[:, 60:] = (0, 0, 255)
  buf = io.BytesIO()
  Image.fromarray(arr).save(buf, "PNG")
  out = decoding.decode_and_resize(buf.getvalue(), 20)
  assert out.shape == (20, 20, 3)
  np.testing.assert_array_equal(out[:, 4:-4], np.broadcast_to([0, 255, 0], (20, 12, 3)))
  assert out[..., 0].max() < 30 and out[..., 2].max() < 30  # red / blue thirds cropped away


def _folder_with_a_big_image(tmp_path):
  for name in ("dandelion", "marigold"):
    (tmp_path / name).mkdir()
    Image.new("RGB", (20, 20), (200, 200, 0)).save(tmp_path / name / "small.png")
  Image.new("RGB", (60, 60), (0, 0, 200)).save(tmp_path / "dandelion" / "big.png")
  config = tiny_config.get_config()
  config.data.source = f"folder:{tmp_path}"
  return config


def test_images_over_the_pixel_limit_are_counted_as_too_large(tmp_path, caplog, monkeypatch):
  config = _folder_with_a_big_image(tmp_path)
  config.data.max_image_pixels = 1000  # 60² = 3600 > 1000 >= 20²
  with warnings.catch_warnings():
    warnings.simplefilter("error")  # PIL's DecompressionBombWarning must not leak
    images, _, _ = data_sources.load_images(config.data)
  assert len(images) == 2
  [message] = [r.getMessage() for r in caplog.records if "Skipped" in r.getMessage()]
  assert "0 unreadable" in message and "too large: 1" in message and "big.png" in message
  assert "data.max_image_pixels=1000" in message
  # PIL's own limit (here 1000, as if the image were a decompression bomb) is not applied:
  # the configured one is, and raising it lets the image in.
  monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
  config.data.max_image_pixels = 4000
  caplog.clear()
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    images, _, _ = data_sources.load_images(config.data)
  assert len(images) == 3 and not [r for r in caplog.records if "Skipped" in r.getMessage()]
  assert Image.MAX_IMAGE_PIXELS == 1000  # PIL's global is restored
