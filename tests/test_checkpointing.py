"""Orbax I/O of flowergan.checkpointing over abstract targets: items restored alone, subtrees
of an item, and a newer format refused."""

import asyncio
import gc

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from orbax.checkpoint._src import asyncio_utils

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


def _unretrieved_task_failure(coroutine_function):
  """A task of `coroutine_function` that fails, its exception never retrieved, then collected
  (asyncio reports it to its logger when the task is destroyed)."""

  async def fail():
    raise ValueError("a read of an aborted restore")

  loop = asyncio.new_event_loop()
  try:
    task = loop.create_task(coroutine_function(fail()))
    loop.run_until_complete(asyncio.sleep(0.01))
    assert task.done()
  finally:
    loop.close()
  del task
  gc.collect()


def _unretrieved_future_failure(error):
  """A bare future (as TensorStore's reads are awaited) failing with `error`, never retrieved."""
  loop = asyncio.new_event_loop()
  try:
    future = loop.create_future()
    future.set_exception(error)
  finally:
    loop.close()
  del future
  gc.collect()


async def _not_orbax(coroutine):
  return await coroutine


def test_orbax_tasks_left_by_an_aborted_read_report_nothing(tmp_path, caplog):
  """Orbax's own tasks and TensorStore's futures that fail unobserved are silent once a manager
  exists; others are not."""
  checkpointing.make_manager(str(tmp_path / "run"), create=False).close()
  caplog.clear()
  _unretrieved_task_failure(asyncio_utils.cancellable)  # a coroutine of Orbax's
  assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]
  _unretrieved_future_failure(ValueError('RESOURCE_EXHAUSTED: Error writing "x" in OCDBT'))
  assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]
  _unretrieved_task_failure(_not_orbax)
  assert len([r for r in caplog.records if "never retrieved" in r.getMessage()]) == 1
  _unretrieved_future_failure(ValueError("a failure of someone else's future"))
  assert len([r for r in caplog.records if "never retrieved" in r.getMessage()]) == 2
