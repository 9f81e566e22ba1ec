"""The evaluation classifier of a run's real images, trained with `eval.classifier_*` and cached.

`get_classifier` reuses the classifier of a cache file (`classifier.save_classifier`) while it was
trained on the same data (`data_fingerprint`) with the same settings, and trains and caches a new
one otherwise. `train_like_evaluation` trains one with the evaluation's settings on any images
(GAN-train trains it on generated ones).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import jax
import numpy as np
from absl import logging

from flowergan import classifier, storage


def data_fingerprint(images, labels) -> str:
  """Short hex hash (sha256, 16 chars) of the images' and labels' shapes, dtypes and bytes."""
  h = hashlib.sha256()
  for a in (
      np.ascontiguousarray(images),
      np.ascontiguousarray(np.asarray(labels).astype(np.int64)),
  ):
    h.update(repr((a.shape, a.dtype.str)).encode())
    h.update(a.tobytes())
  return h.hexdigest()[:16]


def _classifier_settings(eval_config, num_classes: int, image_size: int) -> dict:
  """What the cached classifier was trained with: a different value means another one."""
  return {
      "steps": int(eval_config.classifier_steps),
      "batch_size": int(eval_config.classifier_batch_size),
      "learning_rate": float(eval_config.classifier_learning_rate),
      "holdout": float(eval_config.classifier_holdout),
      "seed": int(eval_config.classifier_seed),
      "augment": list(classifier.parse_augment(eval_config.classifier_augment)),
      "widths": list(classifier.DEFAULT_WIDTHS),
      "num_classes": int(num_classes),
      "image_size": int(image_size),
  }


def _cached_classifier(cache_path: str | None, fingerprint: str, settings: str):
  """(params, meta) from `cache_path` if it was trained on these data with these settings."""
  if not cache_path or not storage.exists(cache_path):
    return None
  try:
    params, meta = classifier.load_classifier(cache_path)
    leaves = jax.tree_util.tree_leaves(params)
    if not all(np.isfinite(np.asarray(leaf)).all() for leaf in leaves):
      raise ValueError("non-finite weights (NaN or infinity)")
  except Exception as e:  # pylint: disable=broad-except  # a damaged cache is retrained
    reason = " ".join(f"{type(e).__name__}: {e}".split())[:200]
    logging.warning("damaged classifier cache %s (%s): training a new one.", cache_path, reason)
    return None
  if meta.get("fingerprint") != fingerprint or meta.get("settings") != settings:
    return None
  return params, meta


def train_like_evaluation(
    images, labels, num_classes: int, eval_config, *, holdout_fraction: float | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
  """`classifier.train_classifier` with the evaluation's settings (`eval.classifier_*`).

  `holdout_fraction` defaults to `eval.classifier_holdout`; 0 trains on every image (GAN-train
  trains on generated images and tests on real ones).
  """
  if holdout_fraction is None:
    holdout_fraction = eval_config.classifier_holdout
  return classifier.train_classifier(
      images,
      labels,
      num_classes,
      steps=eval_config.classifier_steps,
      batch_size=eval_config.classifier_batch_size,
      seed=eval_config.classifier_seed,
      learning_rate=eval_config.classifier_learning_rate,
      holdout_fraction=holdout_fraction,
      augment=eval_config.classifier_augment,
  )


def get_classifier(
    real_images, real_labels, num_classes: int, eval_config, cache_path: str | None = None
) -> tuple[dict, dict]:
  """The classifier of these real images, and its info.

  It comes from `cache_path` when that one was trained on the same data (fingerprint) with the
  same settings, else it is trained now (and cached there). The info has `holdout_accuracy`,
  `train_accuracy`, `fingerprint` and `cached` (reused or not).
  """
  real_images = np.asarray(real_images)
  labels = np.asarray(real_labels, np.int32)
  fingerprint = data_fingerprint(real_images, labels)
  settings = json.dumps(
      _classifier_settings(eval_config, num_classes, real_images.shape[1]), sort_keys=True
  )
  cached = _cached_classifier(cache_path, fingerprint, settings)
  if cached is not None:
    params, meta = cached
    return params, {**meta, "cached": True}
  params, info = train_like_evaluation(
      classifier.to_model_range(real_images), labels, num_classes, eval_config
  )
  meta = {
      "fingerprint": fingerprint,
      "settings": settings,
      "holdout_accuracy": float(info["holdout_accuracy"]),
      "train_accuracy": float(info["train_accuracy"]),
      "num_train": int(info["num_train"]),
      "num_holdout": int(info["num_holdout"]),
      "image_size": int(real_images.shape[1]),
  }
  if cache_path:
    classifier.save_classifier(cache_path, params, meta)
  return params, {**meta, "cached": False}
