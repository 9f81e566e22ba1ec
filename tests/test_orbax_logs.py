"""The echoes of a failed Orbax operation are silent; other reports pass."""

import asyncio
import gc

from orbax.checkpoint._src import asyncio_utils

from flowergan import checkpointing


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
