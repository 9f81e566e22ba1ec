"""`data.input_shards`: one process with two shards sees exactly the batches two processes see."""

import numpy as np
import pytest

from flowergan import input_pipeline
from tests import tiny_config


def _first_items(data_config, n, **kwargs):
  batches, _ = input_pipeline.create_train_iterator(
      data_config, global_batch_size=8, n_critic=2, seed=3, **kwargs
  )
  return [next(batches) for _ in range(n)]


def test_two_shards_in_one_process_equal_two_processes(tmp_path):
  config = tiny_config.get_config(cache_dir=tmp_path / "cache")
  config.data.input_shards = 2
  one = _first_items(config.data, 2, process_index=0, process_count=1)
  two = [_first_items(config.data, 2, process_index=p, process_count=2) for p in range(2)]
  for step in range(2):
    for key in ("image", "label"):
      joined = np.concatenate([two[0][step][key], two[1][step][key]], axis=1)
      np.testing.assert_array_equal(one[step][key], joined)
  assert one[0]["image"].shape == (2, 8, 16, 16, 3)


def test_shards_must_fit_processes_and_batch(tmp_path):
  config = tiny_config.get_config(cache_dir=tmp_path / "cache")
  config.data.input_shards = 3
  with pytest.raises(input_pipeline.DataError, match="input_shards"):
    _first_items(config.data, 1, process_index=0, process_count=2)
