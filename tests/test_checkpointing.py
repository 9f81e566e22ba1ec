"""Orbax I/O of flowergan.checkpointing over abstract targets: items restored alone, subtrees
of an item, and a newer format refused."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowergan import checkpointing
from flowergan import mesh as mesh_lib
from tests import tiny_config

ITEMS = {
    "state": {"a": jnp.arange(6.0).reshape(2, 3), "b": {"c": jnp.ones(4, jnp.int32)}},
    "generator": {"w": jnp.full((3,), 2.5)},
}


@pytest.fixture
def manager(tmp_path):
  manager = checkpointing.make_manager(str(tmp_path / "run"))
  metadata = checkpointing.make_metadata(tiny_config.get_config(), ["dandelion", "marigold"])
  assert checkpointing.save(manager, 7, ITEMS, metadata)
  assert not checkpointing.save(manager, 7, ITEMS, metadata)  # a saved step is kept as it is
  manager.wait_until_finished()
  yield manager
  manager.close()


def _target(tree):
  return checkpointing.on_mesh(jax.eval_shape(lambda: tree), mesh_lib.make_mesh())


def test_each_item_restores_alone(manager):
  assert checkpointing.has_item(manager, 7, "generator")
  assert not checkpointing.has_item(manager, 7, "critic")
  generator = checkpointing.restore_item(manager, 7, "generator", _target(ITEMS["generator"]))
  np.testing.assert_array_equal(generator["w"], ITEMS["generator"]["w"])
  state = checkpointing.read_state(manager, 7, _target(ITEMS["state"]))
  np.testing.assert_array_equal(state["b"]["c"], ITEMS["state"]["b"]["c"])


def test_subtrees_of_an_item_restore_without_the_rest(manager):
  part = checkpointing.restore_subtrees(manager, 7, "state", _target({"a": ITEMS["state"]["a"]}))
  assert set(part) == {"a"}
  np.testing.assert_array_equal(part["a"], ITEMS["state"]["a"])


def test_metadata_of_a_newer_format_is_refused(manager, tmp_path):
  metadata = checkpointing.read_metadata(manager, 7)
  assert metadata["format_version"] == checkpointing.FORMAT_VERSION
  newer = checkpointing.make_manager(str(tmp_path / "newer"))
  metadata["format_version"] = checkpointing.FORMAT_VERSION + 1
  checkpointing.save(newer, 1, ITEMS, metadata)
  newer.wait_until_finished()
  with pytest.raises(checkpointing.CheckpointError, match="newer than this flowergan reads"):
    checkpointing.read_metadata(newer, 1)
  newer.close()
