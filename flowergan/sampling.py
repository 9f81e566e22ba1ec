"""Sampling from a trained run: needs only the workdir (the checkpoint carries its config)."""

from __future__ import annotations

import functools
import io
import os
from collections.abc import Sequence

import jax
import numpy as np
from PIL import Image

from flowergan import batching, errors, storage
from flowergan import train_step as ts


class SamplingError(errors.FlowerganError):
  """A bad sampling request; the message is one line that says what to do."""


def truncated_normal_z(key, shape: Sequence[int], truncation: float | None) -> jax.Array:
  """Latent noise: standard normal, or truncated to ±`truncation` as in the original demo."""
  if truncation is None:
    return jax.random.normal(key, shape)
  if truncation <= 0:
    raise SamplingError(f"truncation must be > 0 (the demo used 0.01–3.0), got {truncation}.")
  return jax.random.truncated_normal(key, -truncation, truncation, shape)


def resolve_labels(label: str, class_names, num: int) -> np.ndarray:
  """`num` labels of class `label`, or `num` of every class in order for label='all'."""
  if num < 1:
    raise SamplingError(f"--num must be at least 1, got {num}.")
  if label == "all":
    return np.repeat(np.arange(len(class_names), dtype=np.int32), num)
  if label not in class_names:
    raise SamplingError(
        f"unknown label {label!r}; valid labels: {', '.join(class_names)} (or 'all')."
    )
  return np.full((num,), class_names.index(label), np.int32)


@functools.partial(jax.jit, static_argnames=("gan",))
def _generate(gan: ts.WGANGP, params, batch_stats, z, labels):
  return gan.generate(params, batch_stats, z, labels)


def generate(
    gan: ts.WGANGP,
    params,
    batch_stats,
    labels: np.ndarray,
    *,
    seed: int = 0,
    truncation: float | None = None,
    batch_size: int = 64,
) -> np.ndarray:
  """Images in [0, 1], float32 (N, S, S, 3).

  The noise depends only on (`seed`, N, `truncation`), so the same request gives the same
  images; the batches have one shape (`batching.map_padded_batches`), so one shape compiles.
  """
  labels = np.asarray(labels, np.int32)
  z = truncated_normal_z(jax.random.key(seed), (len(labels), gan.z_dim), truncation)
  images = batching.map_padded_batches(
      functools.partial(_generate, gan, params, batch_stats), (z, labels), batch_size
  )
  return (images + 1.0) / 2.0


def to_uint8(images: np.ndarray) -> np.ndarray:
  """[0, 1] floats → uint8, rounding to nearest."""
  return np.clip(np.rint(np.asarray(images) * 255.0), 0, 255).astype(np.uint8)


def make_grid(images: np.ndarray, ncols: int | None = None, pad: int = 2) -> np.ndarray:
  """(N, H, W, 3) in [0, 1] → one uint8 image of `ncols` columns with a white border."""
  n, h, w, c = images.shape
  ncols = ncols or int(np.ceil(np.sqrt(n)))
  nrows = int(np.ceil(n / ncols))
  grid = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad, c), 255, np.uint8)
  for i, image in enumerate(to_uint8(images)):
    r, col = divmod(i, ncols)
    y, x = pad + r * (h + pad), pad + col * (w + pad)
    grid[y : y + h, x : x + w] = image
  return grid


def save_png(array: np.ndarray, path: str | os.PathLike) -> None:
  """Writes `array` as a PNG atomically (local) or as one object (`gs://`), never half."""
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format="PNG")
  storage.write_bytes(path, buffer.getvalue())


def write_images(
    images: np.ndarray, out: str, *, labels=None, class_names=None, ncols: int | None = None
) -> list[str]:
  """`out` ending in .png: one grid; otherwise a directory of single PNGs. Returns the paths."""
  try:
    if out.lower().endswith(".png"):
      save_png(make_grid(images, ncols), out)
      return [out]
    os.makedirs(out, exist_ok=True)
    paths = []
    for i, image in enumerate(to_uint8(images)):
      name = f"{i:04d}.png" if labels is None else f"{class_names[labels[i]]}_{i:04d}.png"
      path = os.path.join(out, name)
      save_png(image, path)
      paths.append(path)
    return paths
  except OSError as e:
    raise SamplingError(f"cannot write to {out} ({e.strerror}): choose a writable --out.")
