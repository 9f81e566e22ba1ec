"""Small Flax CNN classifier: class-consistency checks and a feature extractor for metrics.

Images are float NHWC in [-1, 1], any size >= 8 px (used at 32, 64, 128). `predict` returns
(logits, features); the features (global-average-pooled last conv layer) plug into
`flowergan.metrics` (Fréchet distance, KID). `flowergan.classifier_cache` trains and caches
the one of a run's real images with the evaluation's settings; `flowergan.probe` is the bar it
must pass.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax

from flowergan import batching, errors, storage

__all__ = [
    "Classifier",
    "train_classifier",
    "predict",
    "save_classifier",
    "load_classifier",
    "to_model_range",
    "split_indices",
    "per_class_accuracy",
]

DEFAULT_WIDTHS: tuple[int, ...] = (32, 64, 128)


class Classifier(nn.Module):
  """Conv(3x3, s1) stem, then per width a stride-2 3x3 conv + GroupNorm + ReLU,
  global average pool -> features (widths[-1]-d) -> Dense(num_classes)."""

  num_classes: int
  widths: Sequence[int] = DEFAULT_WIDTHS
  groups: int = 8

  @nn.compact
  def __call__(self, x, *, return_features: bool = False):
    x = x.astype(jnp.float32)
    x = nn.Conv(self.widths[0], (3, 3), name="stem")(x)
    x = nn.relu(nn.GroupNorm(num_groups=min(self.groups, self.widths[0]), name="stem_norm")(x))
    for i, w in enumerate(self.widths):
      x = nn.Conv(w, (3, 3), strides=(2, 2), name=f"conv_{i}")(x)
      x = nn.GroupNorm(num_groups=min(self.groups, w), name=f"norm_{i}")(x)
      x = nn.relu(x)
    feats = jnp.mean(x, axis=(1, 2))
    logits = nn.Dense(self.num_classes, name="head")(feats)
    if return_features:
      return logits, feats
    return logits


def _config_from_params(params) -> tuple[int, tuple[int, ...]]:
  """(num_classes, widths) of the `Classifier` these parameters belong to."""
  p = _unwrap(params)
  num_classes = int(p["head"]["kernel"].shape[-1])
  n = sum(1 for k in p if k.startswith("conv_"))
  widths = tuple(int(p[f"conv_{i}"]["kernel"].shape[-1]) for i in range(n))
  return num_classes, widths


def _unwrap(params):
  """The parameter tree itself, from `{'params': tree}` or `tree`."""
  return params["params"] if "params" in params else params


@functools.cache
def _jitted_apply(num_classes: int, widths: tuple[int, ...]):
  model = Classifier(num_classes=num_classes, widths=widths)

  @jax.jit
  def apply(params, x):
    return model.apply({"params": params}, x, return_features=True)

  return apply


def predict(params, images, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
  """Batched, jitted inference. Returns (logits (N, K), features (N, F)) as numpy float32.

  The batches have one shape (`batching.map_padded_batches`), so only one shape is compiled.
  """
  images = np.asarray(images, dtype=np.float32)
  apply = _jitted_apply(*_config_from_params(params))
  return batching.map_padded_batches(
      functools.partial(apply, _unwrap(params)), (images,), batch_size
  )


AUGMENTATIONS = ("flip", "translate")


def _translate(images, key):
  """Each image shifted by up to 1/8 of its size in x and y, the border pixels repeated."""
  n, h, w, _ = images.shape
  pad_y, pad_x = max(1, h // 8), max(1, w // 8)
  padded = jnp.pad(images, ((0, 0), (pad_y, pad_y), (pad_x, pad_x), (0, 0)), mode="edge")
  ky, kx = jax.random.split(key)
  dy = jax.random.randint(ky, (n,), 0, 2 * pad_y + 1)
  dx = jax.random.randint(kx, (n,), 0, 2 * pad_x + 1)
  crop = lambda img, y, x: jax.lax.dynamic_slice(img, (y, x, 0), (h, w, img.shape[-1]))
  return jax.vmap(crop)(padded, dy, dx)


def _augment(xb, key, augment: tuple[str, ...]):
  k_flip, k_shift = jax.random.split(key)
  if "flip" in augment:
    flip = jax.random.bernoulli(k_flip, 0.5, (xb.shape[0], 1, 1, 1))
    xb = jnp.where(flip, xb[:, :, ::-1, :], xb)
  if "translate" in augment:
    xb = _translate(xb, k_shift)
  return xb


def parse_augment(augment: str | Sequence[str] | bool) -> tuple[str, ...]:
  """'flip,translate' (or a sequence; True = flip only, False/'' = none) → sorted names."""
  if isinstance(augment, bool):
    return ("flip",) if augment else ()
  names = augment.split(",") if isinstance(augment, str) else list(augment)
  names = tuple(sorted({n.strip() for n in names if n.strip()}))
  unknown = [n for n in names if n not in AUGMENTATIONS]
  if unknown:
    raise errors.FlowerganError(
        f"unknown classifier augmentation(s) {', '.join(unknown)} in eval.classifier_augment; "
        f"use a comma-separated subset of {', '.join(AUGMENTATIONS)} (or '' for none)."
    )
  return names


@functools.cache
def _make_step(
    num_classes: int, widths: tuple[int, ...], learning_rate: float, augment: tuple[str, ...]
):
  """(model, optimizer, jitted init, jitted train step), cached: trainings don't recompile."""
  model = Classifier(num_classes=num_classes, widths=widths)
  tx = optax.adam(learning_rate)

  @jax.jit
  def step(params, opt_state, xb, yb, k):
    xb = _augment(xb, k, augment)

    def loss_fn(p):
      logits = model.apply({"params": p}, xb)
      return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  return model, tx, jax.jit(model.init), step


def split_indices(labels, holdout_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """(train, holdout) indices of `train_classifier(..., holdout_fraction, seed)`: the same split."""
  labels = np.asarray(labels).astype(np.int32).reshape(-1)
  return _split(labels, holdout_fraction, np.random.default_rng(seed))


def _split(labels: np.ndarray, holdout_fraction: float, rng: np.random.Generator):
  """Stratified split: per class, round(fraction * count) examples go to the holdout set."""
  train_idx, hold_idx = [], []
  for c in np.unique(labels):
    idx = rng.permutation(np.flatnonzero(labels == c))
    k = int(round(holdout_fraction * idx.size))
    k = min(k, idx.size - 1) if idx.size > 1 else 0
    hold_idx.append(idx[:k])
    train_idx.append(idx[k:])
  return np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(hold_idx))


def _accuracy(params, images, labels, batch_size) -> float:
  if len(labels) == 0:
    return float("nan")
  logits, _ = predict(params, images, batch_size)
  return float(np.mean(np.argmax(logits, axis=-1) == labels))


def per_class_accuracy(predicted, labels, num_classes: int) -> tuple[np.ndarray, float]:
  """Per class, the share of its examples predicted as it (nan without any); and overall."""
  predicted, labels = np.asarray(predicted), np.asarray(labels)
  per_class = np.array(
      [
          np.mean(predicted[labels == c] == c) if np.any(labels == c) else np.nan
          for c in range(num_classes)
      ]
  )
  overall = float(np.mean(predicted == labels)) if len(labels) else float("nan")
  return per_class, overall


def train_classifier(
    images,
    labels,
    num_classes: int,
    *,
    steps: int,
    batch_size: int = 64,
    seed: int = 0,
    learning_rate: float = 1e-3,
    holdout_fraction: float = 0.2,
    augment: str | Sequence[str] | bool = True,
    widths: Sequence[int] = DEFAULT_WIDTHS,
) -> tuple[dict[str, Any], dict[str, Any]]:
  """Trains a `Classifier` on real images (NHWC in [-1, 1]) with Adam.

  A stratified `holdout_fraction` of each class is held out (seeded). Augmentation (per image,
  inside the jitted step; see `parse_augment`): 'flip' (random horizontal flips; True means
  this one), 'translate' (random shifts by up to 1/8 of the size). `steps` has no default: the
  evaluation's come from its config (`classifier_cache.train_like_evaluation`). Deterministic
  per `seed` on a given backend. Returns `(params, info)` with `params = {'params': ...}` and info keys:
  `train_accuracy`, `holdout_accuracy` (nan if no holdout), `final_loss`, `num_train`,
  `num_holdout`, `steps`, `widths`, `num_classes`.
  """
  images = np.asarray(images, dtype=np.float32)
  labels = np.asarray(labels).astype(np.int32).reshape(-1)
  if images.ndim != 4 or images.shape[0] != labels.shape[0]:
    raise ValueError(f"images must be NHWC matching labels, got {images.shape}, {labels.shape}")
  if labels.min() < 0 or labels.max() >= num_classes:
    raise ValueError(f"labels must lie in [0, {num_classes}), got [{labels.min()}, {labels.max()}]")
  rng = np.random.default_rng(seed)
  tr, ho = _split(labels, holdout_fraction, rng)
  x_tr, y_tr = images[tr], labels[tr]
  widths = tuple(int(w) for w in widths)
  model, tx, init, step = _make_step(
      int(num_classes), widths, float(learning_rate), parse_augment(augment)
  )
  key = jax.random.PRNGKey(seed)
  key, init_key = jax.random.split(key)
  params = init(init_key, jnp.zeros((1,) + images.shape[1:], jnp.float32))["params"]
  opt_state = tx.init(params)
  bs = int(min(batch_size, len(tr)))

  loss = jnp.nan
  # The batch order has its own stream: the same training images and seed give the same
  # classifier whatever was held out (GAN-train compares classifiers trained so).
  rng = np.random.default_rng([seed, 1])
  order = rng.permutation(len(tr))
  pos = 0
  for _ in range(steps):
    if pos + bs > len(order):
      order, pos = rng.permutation(len(tr)), 0
    idx = order[pos : pos + bs]
    pos += bs
    key, k = jax.random.split(key)
    params, opt_state, loss = step(params, opt_state, x_tr[idx], y_tr[idx], k)

  out = {"params": params}
  info = {
      "train_accuracy": _accuracy(out, x_tr, y_tr, 256),
      "holdout_accuracy": _accuracy(out, images[ho], labels[ho], 256),
      "final_loss": float(loss),
      "num_train": int(len(tr)),
      "num_holdout": int(len(ho)),
      "steps": int(steps),
      "widths": list(widths),
      "num_classes": int(num_classes),
  }
  return out, info


def save_classifier(path: str | os.PathLike, params, meta: dict[str, Any] | None = None) -> None:
  """Writes params + metadata to `path` (flax msgpack), atomically.

  `meta` should hold plain values (str/int/float/bool/lists), e.g.
  `{'num_classes': 2, 'image_size': 64, 'fingerprint': fingerprint}`;
  `num_classes` and `widths` are filled in from the params if missing.
  """
  p = jax.tree_util.tree_map(np.asarray, _unwrap(params))
  num_classes, widths = _config_from_params(p)
  meta = dict(meta or {})
  meta.setdefault("num_classes", num_classes)
  meta.setdefault("widths", list(widths))
  data = flax.serialization.msgpack_serialize({"params": p, "meta": meta})
  storage.write_bytes(path, data)


def load_classifier(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
  """Inverse of `save_classifier`: returns `({'params': ...}, meta)`."""
  data = flax.serialization.msgpack_restore(storage.read_bytes(path))
  params = jax.tree_util.tree_map(jnp.asarray, data["params"])
  return {"params": params}, dict(data.get("meta", {}))


def to_model_range(images) -> np.ndarray:
  """uint8 [0, 255] → float32 [-1, 1]; floats are taken as already in [-1, 1]."""
  x = np.asarray(images)
  if x.dtype == np.uint8:
    return x.astype(np.float32) / 127.5 - 1.0
  return x.astype(np.float32)
