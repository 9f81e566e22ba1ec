"""Image files or encoded bytes → uint8 arrays, and the one warning about skipped files.

`decode_and_resize` decodes one image with PIL, converts it to RGB, resizes the shorter side to
`size` (LANCZOS, antialiased) and centre-crops. Mode conversion: grayscale / 16-bit / palette /
CMYK / YCbCr → RGB; anything with transparency (RGBA, LA, palette with transparency) is
alpha-composited ON WHITE. EXIF orientation is applied. `decode_many` decodes a class in a
thread pool; what cannot be decoded (truncated, corrupt, not an image) or has more than
`max_image_pixels` pixels (PIL's decompression-bomb limit by default) is skipped, collected in
`Skipped` and reported by `warn_skipped` in ONE warning with the counts and a few names. The
folder and TFDS sources (`flowergan.folder_source`, `flowergan.tfds_source`) both decode here.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import io
import math
import os
from collections.abc import Sequence

import numpy as np
from absl import logging
from PIL import Image, ImageOps

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
_MAX_NAMED = 5  # how many skipped files a warning names
# PIL's decompression-bomb limit (about 9459² pixels), `data.max_image_pixels` of the configs.
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485


class ImageTooLarge(OSError):
  """An image with more pixels than `data.max_image_pixels` (skipped, counted apart)."""


def _to_rgb(im: Image.Image) -> Image.Image:
  """Any PIL mode → RGB; transparency is composited on white."""
  mode = im.mode
  if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
    arr = np.asarray(im, dtype=np.float64)
    if mode.startswith("I;16") or (mode == "I" and arr.max(initial=0) > 255):
      arr = arr / 257.0
    elif mode == "F" and arr.max(initial=0) <= 1.0:
      arr = arr * 255.0
    im = Image.fromarray(np.clip(np.round(arr), 0, 255).astype(np.uint8), "L")
    mode = "L"
  has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
      mode == "P" and "transparency" in im.info
  )
  if has_alpha:
    rgba = im.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")
  if mode != "RGB":
    return im.convert("RGB")
  return im


def decode_and_resize(source, size: int, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray:
  """Decodes a file path or encoded bytes to uint8 (size, size, 3).

  Shorter side resized to `size` (LANCZOS) and centre crop, done in one resampling step through
  PIL's `box`. Raises on unreadable or truncated data (`ImageFile.LOAD_TRUNCATED_IMAGES` is left
  False), and `ImageTooLarge` for more than `max_pixels` pixels (0: no limit), read from the
  header before anything is decoded.
  """
  if isinstance(source, (bytes, bytearray, memoryview)):
    source = io.BytesIO(bytes(source))
  try:
    im = Image.open(source)
  except Image.DecompressionBombError as e:  # PIL's own limit, outside `decode_many`
    raise ImageTooLarge(str(e)) from None
  with im:
    w, h = im.size
    if max_pixels and w * h > max_pixels:
      raise ImageTooLarge(f"{w}×{h} pixels")
    if im.format == "JPEG" and min(w, h) > 2 * size:
      # DCT-domain downscale while decoding; keep >= 2x the target for quality.
      scale = 2 * size / min(w, h)
      im.draft(im.mode, (math.ceil(w * scale), math.ceil(h * scale)))
    im.load()  # raises OSError for truncated / corrupt data
    try:
      im = ImageOps.exif_transpose(im)
    except Exception:  # pylint: disable=broad-except  # broken EXIF: keep pixels as stored
      pass
    im = _to_rgb(im)
    w, h = im.size
    side = min(w, h)
    left, top = (w - side) / 2.0, (h - side) / 2.0
    out = im.resize(
        (size, size), Image.Resampling.LANCZOS, box=(left, top, left + side, top + side)
    )
    arr = np.asarray(out, dtype=np.uint8)
  if arr.shape != (size, size, 3):
    raise OSError(f"unexpected decoded shape {arr.shape}")
  return arr


@contextlib.contextmanager
def _without_pils_pixel_limit():
  """PIL's global decompression-bomb check off while `decode_many` applies its own limit.

  PIL's check warns through `warnings` (leaking to the console) above its limit and raises
  above twice that, which counted a huge photo as corrupt; `decode_and_resize` checks the
  header against `max_pixels` instead. Restored afterwards: PIL is shared with other code.
  """
  previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
  try:
    yield
  finally:
    Image.MAX_IMAGE_PIXELS = previous


class Skipped:
  """Names of the files that were skipped, by reason (for `warn_skipped`)."""

  def __init__(self):
    self.unreadable, self.too_large, self.not_images = [], [], []
    self.not_regular = []  # FIFOs, sockets, devices, broken links: never opened
    self.loops = []  # links back to a folder already listed: not followed

  def files(self) -> list[str]:
    return self.unreadable + self.too_large + self.not_images + self.not_regular

  def total(self) -> int:
    return len(self.files())


def decode_many(sources: Sequence, size: int, names: Sequence[str], max_pixels: int, skipped):
  """Decodes in a thread pool; a list of arrays or None. Failures are added to `skipped`."""

  def one(src):
    try:
      return decode_and_resize(src, size, max_pixels)
    except ImageTooLarge:
      return ImageTooLarge
    except Exception:  # pylint: disable=broad-except  # any undecodable input is skipped
      return None

  workers = min(16, 2 * (os.cpu_count() or 1))
  with _without_pils_pixel_limit():
    if len(sources) <= 1:
      results = [one(s) for s in sources]
    else:
      with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(one, sources))
  skipped.unreadable.extend(n for n, r in zip(names, results) if r is None)
  skipped.too_large.extend(n for n, r in zip(names, results) if r is ImageTooLarge)
  return [None if r is ImageTooLarge else r for r in results]


def warn_skipped(where: str, skipped: Skipped, max_pixels: int) -> None:
  """One warning: how many files were skipped and why, a few names, and the link loops."""
  total = skipped.total()
  if total:
    named = skipped.files()[:_MAX_NAMED]
    more = f", ... ({total - len(named)} more)" if total > len(named) else ""
    logging.warning(
        "Skipped %d files in %s (%d unreadable/truncated/corrupt images; too large: %d, more "
        "than data.max_image_pixels=%d pixels, raise it to use them; %d without an image "
        "extension %s; %d not regular files: FIFOs, sockets, devices or broken links): %s%s%s",
        total,
        where,
        len(skipped.unreadable),
        len(skipped.too_large),
        max_pixels,
        len(skipped.not_images),
        "/".join(e[1:] for e in IMAGE_EXTENSIONS),
        len(skipped.not_regular),
        ", ".join(named),
        more,
        _loops_text(skipped.loops, "; "),
    )
  elif skipped.loops:
    logging.warning("In %s: %s", where, _loops_text(skipped.loops, ""))


def _loops_text(loops: Sequence[str], prefix: str) -> str:
  """`N links lead to a folder already read ...: a/loop, ...` (empty without loops)."""
  if not loops:
    return ""
  named = ", ".join(loops[:_MAX_NAMED]) + (", ..." if len(loops) > _MAX_NAMED else "")
  return (
      f"{prefix}{len(loops)} links lead to a folder already read (a loop or a duplicate) and "
      f"were not followed: {named}"
  )


def stack_classes(per_class_arrays, size: int) -> tuple[np.ndarray, np.ndarray]:
  """The images of every class, in class order, and their labels (0..K-1), (N, S, S, 3) uint8."""
  images, labels = [], []
  for label, arrays in enumerate(per_class_arrays):
    images.extend(arrays)
    labels.extend([label] * len(arrays))
  if not images:
    return np.zeros((0, size, size, 3), np.uint8), np.zeros((0,), np.int32)
  return np.stack(images).astype(np.uint8), np.asarray(labels, np.int32)
