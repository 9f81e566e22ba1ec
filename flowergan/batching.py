"""Batched inference with one batch shape, so a jitted function compiles once."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np


def _pad_rows(array: np.ndarray, size: int) -> np.ndarray:
  """`array` with zero rows appended up to `size` rows."""
  missing = size - array.shape[0]
  if missing == 0:
    return array
  return np.pad(array, [(0, missing)] + [(0, 0)] * (array.ndim - 1))


def map_padded_batches(
    fn: Callable[..., Any], arrays: Sequence[Any], batch_size: int, *, full: bool = False
) -> Any:
  """`fn(*arrays)` computed in batches of `min(batch_size, N)` rows, N the rows of `arrays`
  (of `batch_size` rows whatever N with `full`: one shape for requests of any size).

  Every call of `fn` gets batches of that one shape: the last batch is zero-padded to it and the
  outputs of the padding rows are dropped. `fn` takes one batch of each array and returns an
  array or a pytree of arrays with the batch as leading axis; the result has the same structure,
  each leaf a numpy array of N rows.
  """
  arrays = [np.asarray(a) for a in arrays]
  n = arrays[0].shape[0]
  if any(a.shape[0] != n for a in arrays):
    raise ValueError(f"arrays must have the same number of rows, got {[len(a) for a in arrays]}")
  if n == 0:
    raise ValueError("no rows to compute")
  if batch_size < 1:
    raise ValueError(f"batch_size must be at least 1, got {batch_size}")
  size = batch_size if full else min(batch_size, n)
  results = []
  for start in range(0, n, size):
    rows = min(size, n - start)
    batch = [_pad_rows(a[start : start + size], size) for a in arrays]
    results.append(jax.tree.map(lambda leaf: np.asarray(leaf)[:rows], fn(*batch)))
  return jax.tree.map(lambda *leaves: np.concatenate(leaves), *results)
