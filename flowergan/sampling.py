"""From a request to images: noise, labels, the generator, and the two kinds of request.

A *grid request* (label, number, seed, truncation, or saved noise) is `sample_grid`; a *walk
request* (two seeds, two labels, frames, truncation) is `sample_walk`. `sample.py` and the web
demo both call them, so the same request gives the same images, bit for bit; the images are
encoded by `flowergan.imaging`. Sampling needs a `flowergan.models.Generator` and its variables
only (`flowergan.trained.TrainedModel`): nothing of training is imported.

`SampleRequest` is a request as `sample.py` states it (its flags): `check_request` refuses bad
values and options that exclude each other before any checkpoint is read, and `sample_request`
answers a grid or walk request (the label pair of a walk: `walk_labels`; `--num` matched to a
noise file's rows: `num_for_noise`). `flowergan.sample_files` writes the answer's files.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import jax
import numpy as np

from flowergan import batching, config_checks, errors, latents, models

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


# ------------------------------------------------------------ requests as sample.py states them

# Defaults of `SampleRequest` and of sample.py's flags (tests/test_sampling.py keeps them equal).
DEFAULT_NUM = 16
DEFAULT_FRAMES = 8
DEFAULT_NUM_PER_CLASS = 100


@dataclasses.dataclass(frozen=True)
class SampleRequest:
  """A request as `sample.py` states it, each field named after its flag.

  The optional fields are None when not given: some exclude each other (`check_request`), and a
  grid from a noise file without `num` takes as many images as the file has rows.
  """

  label: str = "all"  # a class, 'all', 'random', or 'A,B' (a class morph) for a walk
  num: int | None = None  # images per class of a grid; None: DEFAULT_NUM, or the file's rows
  seed: int = 0
  truncation: float | None = None
  interpolate: str | None = None  # 'SEED_A,SEED_B': a walk instead of a grid
  frames: int = DEFAULT_FRAMES
  z_file: str | None = None  # the noise of a grid, read from this .npy (`latents.load_z`)
  save_z: str | None = None  # also write the noise used to this .npy
  out: str | None = None  # None: a path in the run's `samples/` folder
  dataset: str | None = None  # a labelled dataset in this folder instead (`dataset_writer`)
  num_per_class: int = DEFAULT_NUM_PER_CLASS  # images of each class of `dataset`
  use_ema: bool = True

  @property
  def grid_num(self) -> int:
    """`num`, or its default."""
    return DEFAULT_NUM if self.num is None else self.num


# Options that exclude each other: (a, b, why), checked in this order.
_EXCLUSIVE = (
    ("z_file", "interpolate", "a walk draws its noise from its two seeds"),
    ("z_file", "truncation", "the noise is read from the file as it is"),
    ("interpolate", "num", "a walk has --frames images"),
    *(
        ("dataset", other, "--dataset draws --num_per_class images of every class from --seed")
        for other in ("interpolate", "z_file", "out", "num", "save_z")
    ),
)


def check_request(request: SampleRequest) -> None:
  """Refuses bad values and options that exclude each other, in one line, before a checkpoint
  is read: seeds, `num` and `frames` out of their limits, a truncation that is not a finite
  number > 0, two labels without `interpolate`. Outputs are `sample_files`' to check."""
  config_checks.check_seed(request.seed, "--seed")
  if request.interpolate is not None:
    for seed in latents.parse_seed_pair(request.interpolate):
      config_checks.check_seed(seed, "each seed of --interpolate")
  if not 1 <= request.grid_num <= MAX_IMAGES:
    raise SamplingError(
        f"--num must be at least 1 and at most {MAX_IMAGES} (the images of one "
        f"request are held in memory), got {request.grid_num}."
    )
  check_truncation(request.truncation)
  for a, b, why in _EXCLUSIVE:
    if getattr(request, a) is not None and getattr(request, b) is not None:
      raise SamplingError(f"--{a} and --{b} exclude each other: {why}.")
  if "," in request.label and request.interpolate is None:
    raise SamplingError(
        f"two labels ({request.label}) make a class morph, which needs "
        "--interpolate=SEED_A,SEED_B."
    )
  if request.interpolate is not None:
    latents.check_frames(request.frames)


def walk_labels(label: str, class_names: Sequence[str]) -> tuple[str, str]:
  """The classes of a walk's two ends: `A` walks within class A, `A,B` morphs A into B."""
  names = list(class_names)
  pair = label.split(",")
  if len(pair) == 1:
    pair *= 2
  if len(pair) != 2 or any(name not in names for name in pair):
    raise latents.LatentError(
        f"--interpolate needs --label=CLASS or --label=A,B with classes from "
        f"{', '.join(names)}; got --label={label}."
    )
  return pair[0], pair[1]


def num_for_noise(request: SampleRequest, rows: int, class_names: Sequence[str]) -> int:
  """`num` of a grid request whose noise file has `rows` vectors: as given, or the number that
  uses every row; refuses a request for another number of images than the file has."""
  num = request.num
  if num is None:
    num = max(1, rows // len(class_names)) if request.label == "all" else rows
  wanted = len(resolve_labels(request.label, class_names, num, request.seed))
  if wanted != rows:
    raise latents.LatentError(
        f"{request.z_file} has {rows} noise vectors but --label={request.label} "
        f"--num={request.grid_num} asks for {wanted} images."
    )
  return num


def sample_request(model: TrainedModel, request: SampleRequest) -> Samples:
  """The answer to a grid request (`sample_grid`, the noise from `seed` or `z_file`) or a walk
  request (`sample_walk`, with `interpolate`); a `dataset` request is `dataset_writer`'s."""
  if request.interpolate is not None:
    return sample_walk(
        model,
        latents.parse_seed_pair(request.interpolate),
        walk_labels(request.label, model.class_names),
        request.frames,
        request.truncation,
        use_ema=request.use_ema,
    )
  num, z = request.grid_num, None
  if request.z_file:
    z = latents.load_z(request.z_file, model.z_dim)
    num = num_for_noise(request, len(z), model.class_names)
  return sample_grid(
      model, request.label, num, request.seed, request.truncation, z=z, use_ema=request.use_ema
  )
