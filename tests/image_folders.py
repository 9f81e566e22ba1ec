"""Data configs and image folders shared by the image-set and input-pipeline tests."""

from __future__ import annotations

import io
import pathlib

import ml_collections
import numpy as np
from PIL import Image

from tests import tiny_config

S = 16  # image_size of `data_config`


def data_config(**overrides) -> ml_collections.ConfigDict:
  """The paper config's `data`, un-augmented, on 3 synthetic images per class at S×S."""
  data = tiny_config.load_config_file(tiny_config.CONFIG_FILE).data
  settings = dict(
      source="synthetic",
      classes=(),
      image_size=S,
      max_rotation_deg=0.0,
      random_hflip=False,
      random_vflip=False,
      balanced=True,
      synthetic_num_per_class=3,
      synthetic_seed=0,
      cache_dir="/nonexistent-should-not-be-used",
      tfds_data_dir=None,
      tfds_splits="all",
      tfds_label_names={"dandelion": "common dandelion", "marigold": "english marigold"},
  )
  settings.update(overrides)
  for name, value in settings.items():
    data[name] = value
  return data


def assert_one_line_error(exc_info, *needles) -> None:
  """The raised error is a ValueError whose message is one line containing every needle."""
  msg = str(exc_info.value)
  assert isinstance(exc_info.value, ValueError)
  assert "\n" not in msg and msg.strip() == msg and msg
  for needle in needles:
    assert needle in msg, (needle, msg)


def _noise(rng, h, w, c=3):
  return rng.integers(0, 256, (h, w, c) if c > 1 else (h, w), dtype=np.uint8)


def write_mixed_folder(root: pathlib.Path) -> pathlib.Path:
  """dandelion/: odd formats and modes + 3 bad files; marigold/: plain RGB files."""
  rng = np.random.default_rng(0)
  d = root / "dandelion"
  m = root / "marigold"
  d.mkdir()
  m.mkdir()
  Image.new("CMYK", (20, 24), (255, 0, 0, 0)).save(d / "a_cmyk.JPG", quality=95)  # pure cyan
  Image.fromarray(_noise(rng, 24, 20, 1), "L").save(d / "b_gray.png")
  rgba = np.zeros((20, 20, 4), np.uint8)
  rgba[..., 0] = 255  # red, but fully transparent on the left half
  rgba[:, 10:, 3] = 255
  Image.fromarray(rgba, "RGBA").save(d / "c_rgba.png")
  Image.fromarray(_noise(rng, 20, 30)).convert("P", palette=Image.Palette.ADAPTIVE).save(
      d / "d_palette.gif"
  )
  Image.new("RGB", (10, 7), (10, 200, 30)).save(d / "e_tiny.png")
  buf = io.BytesIO()
  Image.fromarray(_noise(rng, 40, 40)).save(buf, "JPEG", quality=90)
  (d / "f_truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) * 6 // 10])
  (d / "g_fake.png").write_bytes(b"this is not a png")
  (d / "notes.txt").write_text("not an image")
  (d / ".DS_Store").write_bytes(b"\0\0")  # hidden: ignored
  Image.fromarray(_noise(rng, 30, 20)).save(m / "a.png")
  Image.fromarray(_noise(rng, 20, 30)).save(m / "b.WEBP", lossless=True)
  Image.fromarray(_noise(rng, 25, 25)).save(m / "c.bmp")
  Image.fromarray(_noise(rng, 40, 30)).save(m / "d.jpeg")
  return root
