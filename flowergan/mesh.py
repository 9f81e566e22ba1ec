"""Data parallelism: a 1-D device mesh named 'data' and the shardings used on it.

The training state is replicated; the per-step batch `(n_critic, B, ...)` is split along B. jit
inserts the cross-device reductions, so every mean (and BatchNorm's batch statistics) is over
the global batch and the math does not depend on the device or process count.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D mesh named 'data' over `devices` (default: every device of every process)."""
  devices = jax.devices() if devices is None else list(devices)
  # Auto axes: shardings are given to jit, not carried in the types.
  return jax.make_mesh((len(devices),), ("data",), (AxisType.Auto,), devices=devices)


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Shards the per-step batch (n_critic, B, ...) along B."""
  return NamedSharding(mesh, P(None, "data"))


def check_batch_size(global_batch_size: int, mesh: Mesh) -> None:
  if global_batch_size % mesh.size:
    raise ValueError(
        f"batch_size {global_batch_size} is not divisible by the {mesh.size} devices; set "
        f"--config.train.batch_size to a multiple of {mesh.size}."
    )


def shard_batch(batch: dict, mesh: Mesh) -> dict:
  """Assembles each process's local part of the batch into one global array."""
  sharding = batch_sharding(mesh)
  return {
      k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in batch.items()
  }
