"""Sampling from a trained run: needs only the workdir (the checkpoint carries its config)."""

from __future__ import annotations

import functools
import io
import os
from collections.abc import Sequence

import jax
import numpy as np
from PIL import Image

from flowergan import batching, config_checks, errors, storage
from flowergan import train_step as ts

# `--out` extensions that mean one grid image, and their PIL formats; no extension: a directory.
GRID_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
_MAX_SIDE = {"JPEG": 65_535, "WEBP": 16_383}  # what the formats can store; PNG has no limit
MAX_GRID_COLUMNS = 16  # wider grids wrap: `--label=all --num=5000` stays viewable


class SamplingError(errors.FlowerganError):
  """A bad sampling request; the message is one line that says what to do."""


def truncated_normal_z(key, shape: Sequence[int], truncation: float | None) -> jax.Array:
  """Latent noise: standard normal, or truncated to ±`truncation` as in the original demo."""
  if truncation is None:
    return jax.random.normal(key, shape)
  if truncation <= 0:
    raise SamplingError(f"truncation must be > 0 (the demo used 0.01–3.0), got {truncation}.")
  return jax.random.truncated_normal(key, -truncation, truncation, shape)


# Every request is computed in padded batches of this one shape, the largest grid of the web
# demo (7×7). Padding is not only about compiling once: XLA's results for the same row differ in
# the last bits between batch shapes, so one shape everywhere makes an image depend only on its
# own noise and label, and `sample.py`, the demo and the latent walks agree bit for bit.
BATCH_SIZE = 49

# `fold_in` tag of the stream that draws labels for label='random' (the noise uses the seed's
# own key): the same seed gives the same noise whether or not labels are drawn too.
_LABEL_STREAM = 1


def random_labels(seed: int, num: int, num_classes: int) -> np.ndarray:
  """`num` classes drawn uniformly from `seed` (the original demo's ALL drew them at random)."""
  key = jax.random.fold_in(jax.random.key(seed), _LABEL_STREAM)
  return np.asarray(jax.random.randint(key, (num,), 0, num_classes), np.int32)


def resolve_labels(label: str, class_names, num: int, seed: int = 0) -> np.ndarray:
  """`num` labels of class `label`; `num` of every class in order for label='all'; `num`
  classes drawn from `seed` for label='random' (the web demo's ALL)."""
  if num < 1:
    raise SamplingError(f"--num must be at least 1, got {num}.")
  if label == "all":
    return np.repeat(np.arange(len(class_names), dtype=np.int32), num)
  if label == "random":
    return random_labels(seed, num, len(class_names))
  if label not in class_names:
    raise SamplingError(
        f"unknown label {label!r}; valid labels: {', '.join(class_names)} (or 'all', 'random')."
    )
  return np.full((num,), class_names.index(label), np.int32)


def class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
  """Integer labels (N,) → one-hot float32 (N, C); (N, C) weights are returned as float32."""
  labels = np.asarray(labels)
  if labels.ndim == 2:
    return labels.astype(np.float32)
  return np.eye(num_classes, dtype=np.float32)[labels.astype(np.int64)]


@functools.partial(jax.jit, static_argnames=("gan",))
def _generate(gan: ts.WGANGP, params, batch_stats, z, weights):
  return gan.generate(params, batch_stats, z, weights)


def generate(
    gan: ts.WGANGP,
    params,
    batch_stats,
    labels: np.ndarray,
    *,
    seed: int = 0,
    truncation: float | None = None,
    batch_size: int = BATCH_SIZE,
) -> np.ndarray:
  """Images in [0, 1], float32 (N, S, S, 3) of integer `labels` (N,) or class weights (N, C).
  The noise is `noise(seed, N, ...)`, whose first rows do not depend on N: image i is the same
  in any request that asks for at least i + 1."""
  z = noise(seed, len(labels), gan.z_dim, truncation)
  return generate_from_z(gan, params, batch_stats, z, labels, batch_size=batch_size)


def noise(seed: int, num: int, z_dim: int, truncation: float | None) -> np.ndarray:
  """The noise of a request of `num` images from `seed`, float32 (num, z_dim)."""
  return np.asarray(truncated_normal_z(jax.random.key(seed), (num, z_dim), truncation), np.float32)


def generate_from_z(
    gan: ts.WGANGP, params, batch_stats, z, labels, *, batch_size: int = BATCH_SIZE
) -> np.ndarray:
  """Images in [0, 1] of the noise `z` (N, z_dim) and integer labels (N,) or class weights
  (N, C), in batches zero-padded to `batch_size` (one compiled shape, see BATCH_SIZE)."""
  z = np.asarray(z, np.float32)
  weights = class_weights(labels, gan.num_classes)
  if len(z) != len(weights):
    raise SamplingError(f"{len(z)} noise vectors but {len(weights)} labels.")
  images = batching.map_padded_batches(
      functools.partial(_generate, gan, params, batch_stats), (z, weights), batch_size, full=True
  )
  return (images + 1.0) / 2.0


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


def save_png(array: np.ndarray, path: str | os.PathLike) -> None:
  """Writes `array` as a PNG atomically (local) or as one object (`gs://`), never half."""
  save_image(array, path, "PNG")


def save_image(array: np.ndarray, path: str | os.PathLike, image_format: str) -> None:
  """Writes `array` as `image_format` ('PNG', 'JPEG' or 'WEBP'), atomically if local."""
  limit = _MAX_SIDE.get(image_format)
  if limit and max(array.shape[:2]) > limit:
    raise SamplingError(
        f"a grid of {array.shape[1]}×{array.shape[0]} pixels is larger than {image_format} "
        f"allows ({limit} per side): ask for fewer images, or write a .png or a directory."
    )
  buffer = io.BytesIO()
  options = {"quality": 95} if image_format in ("JPEG", "WEBP") else {}
  Image.fromarray(array).save(buffer, format=image_format, **options)
  storage.write_bytes(path, buffer.getvalue())


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
  raise SamplingError(
      f"--out={out}: {extension!r} is not an image format here; use .png, .jpg, .jpeg or "
      ".webp for one grid, or a path without an extension for a folder of PNGs."
  )


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
  directory of single PNGs named after their class. Returns the paths written."""
  image_format = grid_format(out)
  try:
    if image_format:
      save_image(make_grid(images, ncols, group_size=group_size), out, image_format)
      return [out]
    os.makedirs(out, exist_ok=True)
    paths = []
    for i, image in enumerate(to_uint8(images)):
      name = f"{i:04d}.png"
      if labels is not None:
        name = f"{config_checks.file_stem(class_names[labels[i]])}_{name}"
      path = os.path.join(out, name)
      save_png(image, path)
      paths.append(path)
    return paths
  except OSError as e:
    raise SamplingError(f"cannot write to {out} ({e.strerror}): choose a writable --out.")
