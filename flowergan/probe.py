"""The pixel probe: a logistic regression on raw pixels, the bar an evaluation classifier must pass.

It is trained on the split `classifier.train_classifier` makes (`classifier.split_indices`) and
tested on the same holdout: a classifier below it sees less in the images than their pixels show,
and the metrics of its features understate the generator.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from flowergan import classifier

PROBE_SIZE = 32  # images larger than this are downscaled (area-averaged) before the probe


def _probe_inputs(images, size: int) -> np.ndarray:
  """Images (N, S, S, C) → raw pixels (N, F) at most `size` px a side, antialiased."""
  x = jnp.asarray(images, jnp.float32)
  if x.shape[1] > size:
    x = jax.image.resize(x, (x.shape[0], size, size, x.shape[3]), "linear", antialias=True)
  return np.asarray(x).reshape(x.shape[0], -1)


@functools.partial(jax.jit, static_argnames=("num_classes", "steps"))
def _fit_probe(x, y, num_classes: int, steps: int, l2: float, learning_rate: float):
  """Multinomial logistic regression (W, b) on `x`, full-batch Adam, L2 on W."""
  tx = optax.adam(learning_rate)
  params = (jnp.zeros((x.shape[1], num_classes)), jnp.zeros((num_classes,)))

  def loss_fn(p):
    logits = x @ p[0] + p[1]
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return ce + 0.5 * l2 * jnp.sum(p[0] ** 2)

  def body(_, carry):
    p, state = carry
    updates, state = tx.update(jax.grad(loss_fn)(p), state, p)
    return optax.apply_updates(p, updates), state

  params, _ = jax.lax.fori_loop(0, steps, body, (params, tx.init(params)))
  return params


def train_probe(
    images,
    labels,
    num_classes: int,
    *,
    holdout_fraction: float = 0.2,
    seed: int = 0,
    size: int = PROBE_SIZE,
    steps: int = 500,
    l2: float = 1e-3,
    learning_rate: float = 1e-2,
) -> dict[str, float]:
  """The probe: a logistic regression on raw pixels, on the split `train_classifier` makes.

  What an evaluation classifier must at least reach on the held-out real images: one that
  does worse sees less in the images than their pixels show, and its metrics understate the
  generator. Pixels are standardised with the training split's mean and std. Returns
  `train_accuracy` and `holdout_accuracy` (nan without a holdout).
  """
  labels = np.asarray(labels).astype(np.int32).reshape(-1)
  tr, ho = classifier.split_indices(labels, holdout_fraction, seed)
  x = _probe_inputs(images, size)
  mean, std = x[tr].mean(axis=0), x[tr].std(axis=0) + 1e-3
  x = (x - mean) / std
  w, b = _fit_probe(x[tr], labels[tr], int(num_classes), int(steps), float(l2), learning_rate)
  predicted = np.argmax(np.asarray(x @ w + b), axis=-1)
  accuracy = lambda idx: float(np.mean(predicted[idx] == labels[idx])) if len(idx) else np.nan
  return {"train_accuracy": accuracy(tr), "holdout_accuracy": accuracy(ho)}
