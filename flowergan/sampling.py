"""From a request to images: noise, labels, the generator, and the two kinds of request.

A *grid request* (label, number, seed, truncation, or saved noise) is `sample_grid`; a *walk
request* (two seeds, two labels, frames, truncation) is `sample_walk`. `sample.py` and the web
demo both call them, so the same request gives the same images, bit for bit; the images are
encoded by `flowergan.imaging`. Sampling needs a `flowergan.models.Generator` and its variables
only (`flowergan.trained.TrainedModel`): nothing of training is imported.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import jax
import numpy as np

from flowergan import batching, errors, latents, models

if TYPE_CHECKING:
  from flowergan.trained import TrainedModel


# The images of one request are held in memory (float32, then the grid): 4096 of 128×128 are
# 0.8 GB of floats. One noise row per image, so the limit is the noise files' row limit.
MAX_IMAGES = latents.MAX_NOISE_ROWS


class SamplingError(errors.FlowerganError):
  """A bad sampling request; the message is one line that says what to do."""


def truncated_normal_z(key, shape: Sequence[int], truncation: float | None) -> jax.Array:
  """Latent noise: standard normal, or truncated to ±`truncation` as in the original demo."""
  check_truncation(truncation)
  if truncation is None:
    return jax.random.normal(key, shape)
  return jax.random.truncated_normal(key, -truncation, truncation, shape)


def check_truncation(truncation: float | None) -> None:
  """Refuses a truncation that is not a finite number > 0: NaN gives NaN noise (black images),
  and ±inf would be plain normal noise, which is what leaving it unset draws."""
  if truncation is not None and not (math.isfinite(truncation) and truncation > 0):
    raise SamplingError(
        f"truncation must be a finite number > 0 (the original demo used 0.01–3.0), got "
        f"{truncation}: leave it unset for plain normal noise (what ±inf would mean)."
    )


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
  total = num * len(class_names) if label == "all" else num
  if total > MAX_IMAGES:
    raise SamplingError(
        f"--label={label} --num={num} asks for {total} images; a request makes at most "
        f"{MAX_IMAGES} images (all held in memory): ask for fewer, several times with "
        "other seeds."
    )
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


@functools.partial(jax.jit, static_argnames=("generator",))
def _generate(generator: models.Generator, variables, z, weights):
  """Images in [-1, 1] with BatchNorm's running statistics (inference mode)."""
  return generator.apply(variables, z, weights, train=False)


def generate(
    generator: models.Generator,
    variables: dict[str, Any],
    labels: np.ndarray,
    *,
    z_dim: int,
    seed: int = 0,
    truncation: float | None = None,
    batch_size: int = BATCH_SIZE,
) -> np.ndarray:
  """Images in [0, 1], float32 (N, S, S, 3) of integer `labels` (N,) or class weights (N, C).

  `variables`: `{'params', 'batch_stats'}` of `generator`. The noise is `noise(seed, N, ...)`,
  whose first rows do not depend on N: image i is the same in any request that asks for at
  least i + 1.
  """
  z = noise(seed, len(labels), z_dim, truncation)
  return generate_from_z(generator, variables, z, labels, batch_size=batch_size)


def noise(seed: int, num: int, z_dim: int, truncation: float | None) -> np.ndarray:
  """The noise of a request of `num` images from `seed`, float32 (num, z_dim)."""
  return np.asarray(truncated_normal_z(jax.random.key(seed), (num, z_dim), truncation), np.float32)


def seed_noise(seed: int, z_dim: int, truncation: float | None) -> np.ndarray:
  """The noise of the single sample of `seed` (`sample.py --seed=SEED --num=1`), (z_dim,)."""
  return noise(seed, 1, z_dim, truncation)[0]


def generate_from_z(
    generator: models.Generator,
    variables: dict[str, Any],
    z,
    labels,
    *,
    batch_size: int = BATCH_SIZE,
) -> np.ndarray:
  """Images in [0, 1] of the noise `z` (N, z_dim) and integer labels (N,) or class weights
  (N, C), in batches zero-padded to `batch_size` (one compiled shape, see BATCH_SIZE)."""
  z = np.asarray(z, np.float32)
  weights = class_weights(labels, generator.num_classes)
  if len(z) != len(weights):
    raise SamplingError(f"{len(z)} noise vectors but {len(weights)} labels.")
  images = batching.map_padded_batches(
      functools.partial(_generate, generator, variables), (z, weights), batch_size, full=True
  )
  return (images + 1.0) / 2.0


@dataclasses.dataclass(frozen=True)
class Samples:
  """The answer to a request: images in [0, 1] (N, S, S, 3), the labels they were generated
  with (integers (N,), or class weights (N, C) for a class morph) and the noise (N, z_dim)."""

  images: np.ndarray
  labels: np.ndarray
  z: np.ndarray


def sample_grid(
    model: TrainedModel,
    label: str,
    num: int,
    seed: int = 0,
    truncation: float | None = None,
    *,
    z: np.ndarray | None = None,
    use_ema: bool = True,
) -> Samples:
  """A grid request: `num` images of class `label` ('all': `num` of each class in order;
  'random': classes drawn from `seed`), the noise drawn from `seed` at `truncation` or given
  as `z` (one row per image)."""
  labels = resolve_labels(label, model.class_names, num, seed)
  if z is None:
    z = noise(seed, len(labels), model.z_dim, truncation)
  images = generate_from_z(model.generator, model.sampling_variables(use_ema), z, labels)
  return Samples(images, labels, np.asarray(z, np.float32))


def sample_walk(
    model: TrainedModel,
    seeds: tuple[int, int],
    labels: tuple[str, str],
    frames: int,
    truncation: float | None = None,
    *,
    use_ema: bool = True,
) -> Samples:
  """A walk request: `frames` images from the single sample of `seeds[0]` and `labels[0]` to
  that of `seeds[1]` and `labels[1]` (a class morph when the labels differ); its ends are
  exactly `sample_grid(model, label, 1, seed, truncation)`."""
  names = list(model.class_names)
  for name in labels:
    if name not in names:
      raise SamplingError(f"unknown label {name!r}; valid labels: {', '.join(names)}.")
  z = latents.walk(
      seed_noise(seeds[0], model.z_dim, truncation),
      seed_noise(seeds[1], model.z_dim, truncation),
      frames,
  )
  weights = latents.blend_labels(names.index(labels[0]), names.index(labels[1]), len(z), len(names))
  images = generate_from_z(model.generator, model.sampling_variables(use_ema), z, weights)
  return Samples(images, weights, z)
