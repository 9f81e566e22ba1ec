"""flowergan.batching: batched inference in one batch shape, results as if unbatched."""

import numpy as np
import pytest

from flowergan import batching


def _recording(fn):
  """`fn`, and the list of the batch shapes it was called with."""
  shapes = []

  def wrapped(*batch):
    shapes.append(tuple(b.shape for b in batch))
    return fn(*batch)

  return wrapped, shapes


@pytest.mark.parametrize("n, batch_size, calls", [(10, 4, 3), (8, 4, 2), (3, 8, 1), (5, 5, 1)])
def test_every_batch_has_one_shape_and_the_rows_are_all_computed(n, batch_size, calls):
  x = np.arange(n * 2, dtype=np.float32).reshape(n, 2)
  labels = np.arange(n, dtype=np.int32)
  fn, shapes = _recording(lambda x, y: x.sum(axis=1) * 10 + y)
  out = batching.map_padded_batches(fn, (x, labels), batch_size)
  size = min(batch_size, n)
  assert shapes == [((size, 2), (size,))] * calls
  expected = x.sum(axis=1) * 10 + labels
  assert isinstance(out, np.ndarray) and out.dtype == expected.dtype
  np.testing.assert_array_equal(out, expected)


def test_padding_rows_are_zeros_and_their_outputs_are_dropped():
  seen = []
  fn = lambda x: seen.append(x.copy()) or x + 1
  out = batching.map_padded_batches(fn, (np.ones((5, 3)),), 4)
  np.testing.assert_array_equal(seen[1], [[1, 1, 1], [0, 0, 0], [0, 0, 0], [0, 0, 0]])
  np.testing.assert_array_equal(out, np.full((5, 3), 2.0))


def test_outputs_keep_their_structure():
  x = np.arange(7, dtype=np.float32)
  logits, feats = batching.map_padded_batches(lambda x: (x * 2, x[:, None] * [1, -1]), (x,), 3)
  np.testing.assert_array_equal(logits, x * 2)
  np.testing.assert_array_equal(feats, np.stack([x, -x], axis=1))
  out = batching.map_padded_batches(lambda x: {"a": x, "b": -x}, (x,), 3)
  assert set(out) == {"a", "b"}
  np.testing.assert_array_equal(out["b"], -x)


def test_bad_requests_are_refused():
  with pytest.raises(ValueError, match="same number of rows"):
    batching.map_padded_batches(lambda x, y: x, (np.zeros(3), np.zeros(4)), 2)
  with pytest.raises(ValueError, match="no rows"):
    batching.map_padded_batches(lambda x: x, (np.zeros((0, 2)),), 2)
  with pytest.raises(ValueError, match="batch_size"):
    batching.map_padded_batches(lambda x: x, (np.zeros(3),), 0)


def test_full_batches_have_one_shape_whatever_the_request_size():
  shapes = []

  def double(x):
    shapes.append(x.shape)
    return 2 * x

  for n in (1, 3, 7):
    x = np.arange(n * 2, dtype=np.float32).reshape(n, 2)
    np.testing.assert_array_equal(batching.map_padded_batches(double, [x], 5, full=True), 2 * x)
  assert set(shapes) == {(5, 2)}
