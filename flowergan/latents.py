"""Latent walks and saved noise vectors.

A walk goes from the noise of one seed to the noise of another along the great circle
(spherical interpolation, "slerp": Gaussian noise of dimension d lies near a sphere of radius
√d, and a straight line between two points would pass through its less likely inside). With two
labels the class input is blended from one one-hot to the other along the way (a class morph).
A walk's first and last frames are exactly the single samples of its two seeds and labels.

The walk's ends are drawn by `flowergan.sampling.seed_noise`, its requests are served by
`flowergan.sampling.sample_walk` and its images encoded by `flowergan.imaging`. Saved noise
(`save_z` / `load_z`) is the exact float32 array the generator was fed, as a `.npy` file, so a
chosen flower can be regenerated bit for bit without its seed.
"""

from __future__ import annotations

import math
import os

import numpy as np

from flowergan import errors, storage

# A walk's frames are held in memory and written as one strip and one GIF: 256 frames are a
# 33,000-px strip at 128 px and a 61 s loop at 120 ms a frame.
MAX_FRAMES = 256
# Rows of a noise file (`load_z`), read whole into memory: one request's images
# (`sampling.MAX_IMAGES` is this number); 4096 rows of 128 floats are 2 MB.
MAX_NOISE_ROWS = 4096


class LatentError(errors.FlowerganError):
  """A bad walk request or noise file; the message is one line that says what to do."""


def slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
  """Spherical interpolation from `a` (t = 0) to `b` (t = 1), in float64, returned as float32.

  The norm is interpolated linearly, so a walk between vectors of different length stays
  between them; (nearly) parallel vectors fall back to the straight line.
  """
  a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
  na, nb = np.linalg.norm(a64), np.linalg.norm(b64)
  if na == 0 or nb == 0:
    return ((1 - t) * a64 + t * b64).astype(np.float32)
  cos = np.clip(np.dot(a64 / na, b64 / nb), -1.0, 1.0)
  omega = np.arccos(cos)
  if np.sin(omega) < 1e-6:
    return ((1 - t) * a64 + t * b64).astype(np.float32)
  direction = (np.sin((1 - t) * omega) * a64 / na + np.sin(t * omega) * b64 / nb) / np.sin(omega)
  return (direction * ((1 - t) * na + t * nb)).astype(np.float32)


def walk(z_a: np.ndarray, z_b: np.ndarray, frames: int) -> np.ndarray:
  """`frames` noise vectors (frames, z_dim) from `z_a` to `z_b`; the ends are the inputs
  themselves (set exactly, not recomputed, so they match the single samples bit for bit)."""
  check_frames(frames)
  z = np.stack([slerp(z_a, z_b, t) for t in np.linspace(0.0, 1.0, frames)])
  z[0], z[-1] = z_a, z_b
  return z


def check_frames(frames: int) -> None:
  """Refuses a walk of fewer than 2 or more than `MAX_FRAMES` frames."""
  if not 2 <= frames <= MAX_FRAMES:
    raise LatentError(
        f"a walk needs at least 2 frames and at most {MAX_FRAMES} frames, got {frames}."
    )


def blend_labels(label_a: int, label_b: int, frames: int, num_classes: int) -> np.ndarray:
  """Class weights (frames, num_classes) going linearly from one-hot `label_a` to `label_b`."""
  t = np.linspace(0.0, 1.0, frames)[:, None]
  eye = np.eye(num_classes)
  return ((1 - t) * eye[label_a] + t * eye[label_b]).astype(np.float32)


def parse_seed_pair(text: str) -> tuple[int, int]:
  """'A,B' → (A, B), two non-negative integer seeds."""
  parts = [p.strip() for p in text.split(",")]
  if len(parts) != 2 or not all(p.isdigit() for p in parts):
    raise LatentError(f"--interpolate takes two seeds as A,B (e.g. 3,7), got {text!r}.")
  return int(parts[0]), int(parts[1])


def save_z(path: str, z: np.ndarray) -> None:
  """Writes the noise `z` (N, z_dim) float32 to `path` (a .npy file, written atomically)."""
  try:
    storage.save_npy(path, np.asarray(z, np.float32))
  except storage.StorageError:
    raise
  except OSError as e:
    raise LatentError(f"cannot write the noise to {path} ({e.strerror}).") from None


def load_z(path: str, z_dim: int) -> np.ndarray:
  """The noise saved by `save_z`, checked: a .npy of float32 (N, z_dim), 1 ≤ N ≤
  `MAX_NOISE_ROWS`, all finite. The header is compared with the file's size and the row limit
  before any data is read, so a header claiming a huge shape allocates nothing."""
  try:
    if os.path.exists(path) and not os.path.isfile(path):
      raise LatentError(f"{path} is not a regular file: pass a .npy written by --save_z.")
    with open(path, "rb") as f:
      if f.read(6) != b"\x93NUMPY":  # the format's magic string
        raise LatentError(f"{path} is not a .npy file (as --save_z writes).")
      f.seek(0)
      shape, dtype = _npy_header(f)
      _check_noise_header(path, shape, dtype, z_dim)
      expected = f.tell() + math.prod(shape) * dtype.itemsize
      size = os.fstat(f.fileno()).st_size
      if size != expected:
        raise LatentError(
            f"{path} is truncated or damaged: its header says {shape} float32, {expected} "
            f"bytes, but the file has {size} bytes; write it again with --save_z."
        )
      f.seek(0)
      z = np.lib.format.read_array(f, allow_pickle=False)
  except LatentError:
    raise
  except FileNotFoundError:
    raise LatentError(f"no noise file {path}: write one with --save_z={path}.") from None
  except (OSError, ValueError, EOFError) as e:
    reason = (str(e).splitlines() or [type(e).__name__])[0]
    raise LatentError(f"cannot read the noise in {path} ({reason}).") from None
  if not np.all(np.isfinite(z)):
    raise LatentError(f"{path} contains NaN or infinite values.")
  return z


def _npy_header(f) -> tuple[tuple[int, ...], np.dtype]:
  """The shape and dtype in the header of the open .npy `f`, which is left at the data."""
  version = np.lib.format.read_magic(f)
  if version == (1, 0):
    shape, _, dtype = np.lib.format.read_array_header_1_0(f)
  elif version == (2, 0):
    shape, _, dtype = np.lib.format.read_array_header_2_0(f)
  else:
    raise ValueError(f".npy format version {version[0]}.{version[1]} is not read here")
  return shape, dtype


def _check_noise_header(path: str, shape, dtype: np.dtype, z_dim: int) -> None:
  if dtype != np.float32 or len(shape) != 2 or shape[1] != z_dim or shape[0] == 0:
    raise LatentError(
        f"{path} holds {dtype} {shape}; this model needs float32 (N, {z_dim}) with N >= 1."
    )
  if shape[0] > MAX_NOISE_ROWS:
    raise LatentError(
        f"{path} holds {shape[0]} noise vectors; at most {MAX_NOISE_ROWS} are read (one "
        f"request's images, held in memory): split it into files of {MAX_NOISE_ROWS} rows."
    )
