"""Input pipeline: the step-indexed tf.data sampler over an image set, with augmentation.

The only module of flowergan that imports TensorFlow at import time (`flowergan.data_sources`
reads the images; it imports TensorFlow only for a TFDS source). TensorFlow is used on the host
CPU only: GPUs/TPUs are hidden from it at import.

`create_train_iterator` loads this process's images (`data_sources.load_images`) and builds a
tf.data pipeline over the in-memory arrays. `Dataset.range(start_step, ...)` maps step `s` to
one training item of `n_critic` sub-batches. All randomness is stateless and keyed by
`(seed, process_index, s)`, so item `s` does not depend on where the iterator started (exact
resume from a checkpoint).

Sampling is i.i.d. with replacement: with `balanced` a class is drawn uniformly and then an
image of that class uniformly; otherwise an image is drawn uniformly from all images. Each of
the n_critic sub-batches is a fresh draw. Augmentation (vectorised over the batch): rotation by
an angle uniform in [-max_rotation_deg, max_rotation_deg] (bilinear, REFLECT padding, so no
black corners), then random horizontal / vertical flips.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np

from flowergan import data_errors, data_sources, tfds_source

# Imported quietly (see `cli.import_tensorflow`), with the GPUs/TPUs hidden from it before
# anything uses it.
tf = tfds_source.host_tensorflow()


def rotation_transforms(
    angles_rad: tf.Tensor, height: int, width: int, hflip=None, vflip=None
) -> tf.Tensor:
  """(B,) angles → (B, 8) projective transforms: rotation about the image centre, then flips.

  The optional horizontal / vertical flips ((B,) bool) are folded into the same transform. A
  transform maps output pixel (x, y) to the input position it samples; a positive angle rotates
  the content counter-clockwise as displayed (90° == `np.rot90`). Output = flip(rotate(input)),
  so the output pixel (x, y) samples rotate⁻¹ at the flipped position (x_f, y_f).
  """
  cos, sin = tf.cos(angles_rad), tf.sin(angles_rad)
  w1, h1 = tf.cast(width - 1, tf.float32), tf.cast(height - 1, tf.float32)
  x_off = (w1 - (cos * w1 - sin * h1)) / 2.0
  y_off = (h1 - (sin * w1 + cos * h1)) / 2.0
  ones, zeros = tf.ones_like(cos), tf.zeros_like(cos)
  # x_f = sx * x + cx, y_f = sy * y + cy.
  sx, cx, sy, cy = ones, zeros, ones, zeros
  if hflip is not None:
    sx = tf.where(hflip, -ones, ones)
    cx = tf.where(hflip, w1 * ones, zeros)
  if vflip is not None:
    sy = tf.where(vflip, -ones, ones)
    cy = tf.where(vflip, h1 * ones, zeros)
  return tf.stack(
      [
          cos * sx,
          -sin * sy,
          cos * cx - sin * cy + x_off,
          sin * sx,
          cos * sy,
          sin * cx + cos * cy + y_off,
          zeros,
          zeros,
      ],
      axis=1,
  )


def apply_augmentation(images: tf.Tensor, angles_deg=None, hflip=None, vflip=None) -> tf.Tensor:
  """Deterministic part of the augmentation on float images (B, H, W, C).

  Rotation by `angles_deg` (B,) (bilinear, REFLECT fill), then horizontal flip where `hflip`
  (B,) is True, then vertical flip where `vflip` is True. `None` skips a step. With a rotation,
  the flips are folded into the same projective transform (one resampling pass); without, they
  are exact reversals.
  """
  images = tf.convert_to_tensor(images, tf.float32)
  height, width = images.shape[1], images.shape[2]
  if angles_deg is not None:
    angles = tf.cast(angles_deg, tf.float32) * (math.pi / 180.0)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=rotation_transforms(angles, height, width, hflip, vflip),
        output_shape=tf.constant([height, width], tf.int32),
        fill_value=tf.constant(0.0),
        interpolation="BILINEAR",
        fill_mode="REFLECT",
    )
  if hflip is not None:
    images = tf.where(tf.reshape(hflip, [-1, 1, 1, 1]), tf.reverse(images, axis=[2]), images)
  if vflip is not None:
    images = tf.where(tf.reshape(vflip, [-1, 1, 1, 1]), tf.reverse(images, axis=[1]), images)
  return images


def _seed_key(seed: int, process_index: int) -> tf.Tensor:
  seed = int(seed) % (2**63)
  key = tf.constant([seed >> 32, seed & 0xFFFFFFFF], tf.int64)
  return tf.random.experimental.stateless_fold_in(key, int(process_index))


def make_train_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    *,
    local_batch_size: int,
    n_critic: int,
    seed: int,
    start_step: int = 0,
    process_index: int = 0,
    max_rotation_deg: float = 0.0,
    random_hflip: bool = False,
    random_vflip: bool = False,
    balanced: bool = True,
) -> tf.data.Dataset:
  """tf.data.Dataset of dicts for steps `start_step`, `start_step + 1`, ... (infinite).

  `'image'`: float32 (n_critic, local_batch_size, S, S, 3) in [-1, 1]; `'label'`: int32
  (n_critic, local_batch_size). Item s depends only on (images, labels, seed, process_index, s).
  """
  images, labels = _checked_arrays(images, labels)
  total = n_critic * local_batch_size
  draw = _index_sampler(labels, num_classes, total, balanced)
  augment = _augmenter(total, float(max_rotation_deg), random_hflip, random_vflip)
  images_t = tf.constant(images)
  size = images.shape[1:]
  key0 = _seed_key(seed, process_index)

  def item(step):
    keys = tf.random.experimental.stateless_split(
        tf.random.experimental.stateless_fold_in(key0, step), num=5
    )
    idx, lab = draw(keys[0], keys[1])
    x = tf.cast(tf.gather(images_t, idx), tf.float32) * (1.0 / 127.5) - 1.0
    x = augment(x, keys[2], keys[3], keys[4])
    return {
        "image": tf.reshape(x, [n_critic, local_batch_size, *size]),
        "label": tf.reshape(lab, [n_critic, local_batch_size]),
    }

  return _steps_dataset(item, start_step)


def _checked_arrays(images, labels) -> tuple[np.ndarray, np.ndarray]:
  """uint8 images and int32 labels, or a one-line error if they do not fit together."""
  images = np.asarray(images, np.uint8)
  labels = np.asarray(labels, np.int32)
  if images.ndim != 4 or images.shape[0] == 0 or images.shape[0] != labels.shape[0]:
    raise data_errors.data_error(
        f"Need a non-empty (N, S, S, 3) image array with N labels, got "
        f"{images.shape} and {labels.shape}."
    )
  return images, labels


def _index_sampler(
    labels: np.ndarray, num_classes: int, total: int, balanced: bool
) -> Callable[[tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor]]:
  """`draw(class_key, image_key)` → (`total` image indices, their labels), i.i.d.

  Balanced: a class uniformly, then an image of that class uniformly; otherwise an image
  uniformly from all of them.
  """
  counts = np.bincount(labels, minlength=num_classes).astype(np.int64)
  if balanced and (counts == 0).any():
    missing = [int(k) for k in np.nonzero(counts == 0)[0]]
    raise data_errors.data_error(
        f"Classes {missing} have no images in this process's shard; balanced "
        "sampling needs every class: add images or set data.balanced=False."
    )
  order = np.argsort(labels, kind="stable").astype(np.int64)
  offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
  labels_t = tf.constant(labels)
  order_t, offsets_t, counts_t = tf.constant(order), tf.constant(offsets), tf.constant(counts)
  num_images = labels.shape[0]

  def uniform_int(key, n):  # uniform in [0, n) per element (n: int64 tensor or scalar)
    r = tf.random.stateless_uniform([total], key, minval=None, maxval=None, dtype=tf.int64)
    return tf.math.floormod(r, n)

  def draw(class_key, image_key):
    if balanced:
      cls = tf.cast(uniform_int(class_key, num_classes), tf.int32)
      within = uniform_int(image_key, tf.gather(counts_t, cls))
      return tf.gather(order_t, tf.gather(offsets_t, cls) + within), cls
    idx = uniform_int(image_key, num_images)
    return idx, tf.gather(labels_t, idx)

  return draw


def _augmenter(
    total: int, max_rotation_deg: float, random_hflip: bool, random_vflip: bool
) -> Callable[[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor], tf.Tensor]:
  """`augment(x, rotation_key, hflip_key, vflip_key)`: random rotation and flips of `total`."""

  def augment(x, rotation_key, hflip_key, vflip_key):
    angles = hf = vf = None
    if max_rotation_deg > 0:
      angles = tf.random.stateless_uniform(
          [total], rotation_key, -max_rotation_deg, max_rotation_deg
      )
    if random_hflip:
      hf = tf.random.stateless_uniform([total], hflip_key) < 0.5
    if random_vflip:
      vf = tf.random.stateless_uniform([total], vflip_key) < 0.5
    return apply_augmentation(x, angles, hf, vf)

  return augment


def _steps_dataset(item: Callable[[tf.Tensor], dict], start_step: int) -> tf.data.Dataset:
  """`item(s)` for s = start_step, start_step + 1, ..., in order, prefetched."""
  ds = tf.data.Dataset.range(int(start_step), 2**62)
  ds = ds.map(item, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.prefetch(tf.data.AUTOTUNE)
  options = tf.data.Options()
  options.deterministic = True
  return ds.with_options(options)


def _concatenated(datasets: list[tf.data.Dataset]) -> tf.data.Dataset:
  """Items of `datasets` side by side along the batch axis (axis 1 of `(n_critic, B, ...)`)."""
  return tf.data.Dataset.zip(tuple(datasets)).map(
      lambda *items: {k: tf.concat([item[k] for item in items], axis=1) for k in items[0]}
  )


def create_train_iterator(
    data_config,
    *,
    global_batch_size: int,
    n_critic: int,
    seed: int,
    start_step: int = 0,
    process_index: int | None = None,
    process_count: int | None = None,
) -> tuple[Iterator[dict], list[str]]:
  """Infinite iterator of numpy dicts, one per training iteration (see `make_train_dataset`).

  Batch for step s = f(data, seed, s, shard): starting at `start_step=k` yields exactly the k-th
  item of a run started at 0. The files are split into `data.input_shards` shards (default: one
  per process), each drawn with its own key; a process reads its consecutive share of them and
  puts their sub-batches side by side. So with the same `input_shards`, the global batch is the
  same whatever the number of processes (one process with `input_shards=2` sees exactly what two
  processes see).
  """
  if process_index is None or process_count is None:
    import jax  # pylint: disable=g-import-not-at-top

    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
  if global_batch_size < 1 or n_critic < 1:
    raise data_errors.data_error(
        f"global_batch_size ({global_batch_size}) and n_critic ({n_critic}) must be >= 1."
    )
  shards = int(data_config.input_shards) or process_count
  if global_batch_size % shards:
    raise data_errors.data_error(
        f"Global batch size {global_batch_size} is not divisible by the {shards} input shards "
        f"(data.input_shards, default one per process): choose a multiple of {shards}."
    )
  if shards % process_count:
    raise data_errors.data_error(
        f"data.input_shards ({shards}) must be a multiple of the {process_count} processes."
    )
  per_process = shards // process_count
  datasets, class_names = [], []
  for shard in range(process_index * per_process, (process_index + 1) * per_process):
    images, labels, class_names = data_sources.load_images(
        data_config, process_index=shard, process_count=shards
    )
    datasets.append(
        make_train_dataset(
            images,
            labels,
            len(class_names),
            local_batch_size=global_batch_size // shards,
            n_critic=n_critic,
            seed=seed,
            start_step=start_step,
            process_index=shard,
            max_rotation_deg=float(data_config.max_rotation_deg),
            random_hflip=bool(data_config.random_hflip),
            random_vflip=bool(data_config.random_vflip),
            balanced=bool(data_config.balanced),
        )
    )
  ds = datasets[0] if len(datasets) == 1 else _concatenated(datasets)
  return iter(ds.as_numpy_iterator()), class_names
