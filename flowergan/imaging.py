"""Images in [0, 1] → pixels, grids, walk strips and the bytes of image files.

Every picture flowergan shows or writes is encoded here, once: `sample.py`, the web demo and
training's sample grids call the same functions, so the demo's download is the very file
`sample.py` writes (PNG with PIL's default settings). (`flowergan.dataset_writer` writes a
labelled synthetic dataset; `flowergan.data_sources` reads image sets.)
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence

import numpy as np
from PIL import Image

from flowergan import config_checks, errors, storage

# `--out` extensions that mean one grid image, and their PIL formats; no extension: a directory.
GRID_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
_MAX_SIDE = {"JPEG": 65_535, "WEBP": 16_383}  # what the formats can store; PNG has no limit
MAX_GRID_COLUMNS = 16  # wider grids wrap: `--label=all --num=5000` stays viewable


class ImageError(errors.FlowerganError):
  """An image that cannot be written as asked; the message is one line that says what to do."""


def to_uint8(images: np.ndarray) -> np.ndarray:
  """[0, 1] floats → uint8, rounding to nearest."""
  return np.clip(np.rint(np.asarray(images) * 255.0), 0, 255).astype(np.uint8)


def make_grid(
    images: np.ndarray,
    ncols: int | None = None,
    pad: int = 2,
    *,
    group_size: int | None = None,
    max_columns: int = MAX_GRID_COLUMNS,
) -> np.ndarray:
  """(N, H, W, 3) in [0, 1] → one uint8 image of `ncols` columns with a white border.

  At most `max_columns` columns: longer rows wrap. With `group_size`, each group of that
  many consecutive images (one class of `--label=all`) starts on a new row.
  """
  n, h, w, c = images.shape
  ncols = max(1, min(ncols or int(np.ceil(np.sqrt(n))), max_columns))
  group = group_size or n
  rows_per_group = int(np.ceil(group / ncols))
  cells = [divmod(i, group) for i in range(n)]  # (group, index within it)
  rows = [g * rows_per_group + j // ncols for g, j in cells]
  nrows = max(rows, default=0) + 1
  grid = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad, c), 255, np.uint8)
  for image, r, (_, j) in zip(to_uint8(images), rows, cells):
    y, x = pad + r * (h + pad), pad + (j % ncols) * (w + pad)
    grid[y : y + h, x : x + w] = image
  return grid


def strip(images: np.ndarray) -> np.ndarray:
  """The frames (N, S, S, 3) in [0, 1] side by side, as one uint8 image with white borders."""
  return make_grid(images, ncols=len(images), max_columns=len(images))  # one row


def enlarge(image: np.ndarray, factor: int) -> np.ndarray:
  """Nearest-neighbour enlargement of an (H, W, C) image: every pixel becomes a factor² block."""
  return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def image_bytes(array: np.ndarray, image_format: str, **options) -> bytes:
  """A uint8 (H, W, 3) array encoded as `image_format` ('PNG', 'JPEG', 'WEBP')."""
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format=image_format, **options)
  return buffer.getvalue()


def png_bytes(array: np.ndarray, compress_level: int | None = None) -> bytes:
  """A uint8 (H, W, 3) array as PNG bytes; by default exactly what `save_png` writes for the
  same array (PIL's default settings)."""
  options = {} if compress_level is None else {"compress_level": compress_level}
  return image_bytes(array, "PNG", **options)


def gif_bytes(images: np.ndarray, frame_ms: int = 120, scale: int = 1) -> bytes:
  """An animated GIF that plays the walk forth and back (loops without a jump), each frame
  enlarged `scale`× with nearest-neighbour."""
  frames = [Image.fromarray(enlarge(x, scale)) for x in to_uint8(images)]
  frames += frames[-2:0:-1]
  buffer = io.BytesIO()
  frames[0].save(
      buffer, format="GIF", save_all=True, append_images=frames[1:], duration=frame_ms, loop=0
  )
  return buffer.getvalue()


def save_png(array: np.ndarray, path: str | os.PathLike) -> None:
  """Writes `array` as a PNG atomically (local) or as one object (`gs://`), never half."""
  save_image(array, path, "PNG")


def save_image(array: np.ndarray, path: str | os.PathLike, image_format: str) -> None:
  """Writes `array` as `image_format` ('PNG', 'JPEG' or 'WEBP'), atomically if local."""
  limit = _MAX_SIDE.get(image_format)
  if limit and max(array.shape[:2]) > limit:
    raise ImageError(
        f"a grid of {array.shape[1]}×{array.shape[0]} pixels is larger than {image_format} "
        f"allows ({limit} per side): ask for fewer images, or write a .png or a directory."
    )
  options = {"quality": 95} if image_format in ("JPEG", "WEBP") else {}
  storage.write_bytes(path, image_bytes(array, image_format, **options))


def grid_format(out: str) -> str | None:
  """The image format of `--out` (one grid), or None for a directory of single PNGs.

  An existing directory or a path without an extension is a directory; an extension other
  than .png/.jpg/.jpeg/.webp is refused, so that `grid.jpeg2` does not become a directory.
  """
  extension = os.path.splitext(out.rstrip(os.sep))[1].lower()
  if extension in GRID_FORMATS:
    return GRID_FORMATS[extension]
  if not extension or os.path.isdir(out):
    return None
  raise ImageError(
      f"--out={out}: {extension!r} is not an image format here; use .png, .jpg, .jpeg or "
      ".webp for one grid, or a path without an extension for a folder of PNGs."
  )


# ------------------------------------------------------------- outputs, checked up front


def output_problem(path: str, *, folder: bool = False, append: bool = False) -> str | None:
  """Why `path` cannot be written as a file (`folder`: as a folder of files), or None: see
  `storage.destination_problem` (flowergan's one writer checks every destination)."""
  return storage.destination_problem(path, folder=folder, append=append)


def check_outputs(outputs: Sequence[tuple[str, str, bool]], *, root: str | None = None) -> None:
  """Refuses outputs `(name, path, is_folder)` that cannot all be written, or two that are the
  same file, before any is written (`storage.check_destinations`; `root`: the folder they must
  stay in, links followed); `name` says which flag gave the path."""
  try:
    storage.check_destinations(outputs, root=root)
  except storage.StorageError as e:
    raise ImageError(str(e)) from None


def write_images(
    images: np.ndarray,
    out: str,
    *,
    labels=None,
    class_names=None,
    ncols: int | None = None,
    group_size: int | None = None,
) -> list[str]:
  """`out` with an image extension: one grid (see `grid_format`, `make_grid`); otherwise a
  directory of single PNGs named after their class, written whole or not at all (a full disk
  leaves no part of it). Returns the paths written."""
  image_format = grid_format(out)
  try:
    if image_format:
      save_image(make_grid(images, ncols, group_size=group_size), out, image_format)
      return [out]
    names = []
    with storage.atomic_files_into(out) as tmp:
      for i, image in enumerate(to_uint8(images)):
        name = f"{i:04d}.png"
        if labels is not None:
          name = f"{config_checks.file_stem(class_names[labels[i]])}_{name}"
        save_png(image, os.path.join(tmp, name))
        names.append(name)
    return [os.path.join(out, name) for name in names]
  except OSError as e:
    raise ImageError(f"cannot write to {out} ({e.strerror}): choose a writable --out.") from None


def write_walk(images: np.ndarray, png_path: str, gif_path: str) -> None:
  """The strip as a PNG (the generator's pixels) and the animation as a GIF (enlarged to at
  least 256 px, nearest-neighbour), each written atomically."""
  try:
    save_png(strip(images), png_path)
    storage.write_bytes(gif_path, gif_bytes(images, scale=max(1, 256 // images.shape[1])))
  except OSError as e:
    raise ImageError(
        f"cannot write the walk to {png_path} ({e.strerror}): choose a writable --out."
    ) from None
