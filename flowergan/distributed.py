"""Start-up of multi-process runs: JAX's own cluster detection, or an explicit coordinator.

`initialize()` must run before any other JAX call. It decides, in this order:

1. An explicit coordinator (`--coordinator_address`, or `JAX_COORDINATOR_ADDRESS`) with the
   process count and id (`--num_processes`/`--process_id`, or `JAX_NUM_PROCESSES`/
   `JAX_PROCESS_ID`): for setups JAX cannot detect (two processes on localhost, bare hosts).
   Missing pieces are left to JAX's detection.
2. JAX's own detection (`jax.distributed.initialize()` with no arguments: Open MPI, Slurm,
   Cloud TPU on GKE or GCE, Kubernetes; mpi4py only when asked for by name): used when it finds
   a cluster of more than one process.
3. Otherwise a single process: no coordinator, no delay.

Detection never touches the network on a plain machine: JAX asks the TPU metadata server only
when a TPU chip and libtpu are present (`running_in_cloud_tpu_vm`), and the Kubernetes API only
when `KUBERNETES_SERVICE_HOST` is set and the `kubernetes` package is installed.
"""

from __future__ import annotations

import dataclasses
import os


from flowergan import errors

# Set by every cluster launcher that names the processes explicitly (see `explicit_setup`).
ENV_COORDINATOR = "JAX_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "JAX_PROCESS_ID"
# How long a process waits for the others at start-up, and how soon a silent (dead) one is
# noticed; JAX's defaults are 300 s and 100 s.
ENV_INIT_TIMEOUT = "FLOWERGAN_INIT_TIMEOUT_S"
ENV_HEARTBEAT_TIMEOUT = "FLOWERGAN_HEARTBEAT_TIMEOUT_S"
DEFAULT_INIT_TIMEOUT_S = 300
DEFAULT_HEARTBEAT_TIMEOUT_S = 60

OFF = "off"
AUTO = "auto"


class DistributedError(errors.FlowerganError):
  """A multi-process setting that cannot work (one line)."""


@dataclasses.dataclass(frozen=True)
class Setup:
  """How this process starts: `coordinator_address is None` and `cluster is None` = alone."""

  coordinator_address: str | None = None
  num_processes: int | None = None
  process_id: int | None = None
  cluster: str | None = None  # JAX's detection method name (`slurm`, `gcetpu`, ...)

  @property
  def single_process(self) -> bool:
    return self.coordinator_address is None and self.cluster is None


def _int_or_none(value, name: str) -> int | None:
  if value is None or value == "":
    return None
  try:
    return int(value)
  except (TypeError, ValueError):
    raise DistributedError(f"{name} must be an integer, got {value!r}.") from None


def explicit_setup(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    env=None,
) -> Setup:
  """The coordinator, process count and id from the arguments, else from the environment."""
  env = os.environ if env is None else env
  address = coordinator_address or env.get(ENV_COORDINATOR) or None
  count = num_processes if num_processes is not None else env.get(ENV_NUM_PROCESSES)
  index = process_id if process_id is not None else env.get(ENV_PROCESS_ID)
  count = _int_or_none(count, f"--num_processes / {ENV_NUM_PROCESSES}")
  index = _int_or_none(index, f"--process_id / {ENV_PROCESS_ID}")
  if address is None and (count is not None or index is not None):
    raise DistributedError(
        f"--num_processes/--process_id need --coordinator_address (or {ENV_COORDINATOR}): "
        "host:port of process 0, reachable from every process."
    )
  if address is not None and (":" not in address or not address.rsplit(":", 1)[1].isdigit()):
    raise DistributedError(
        f"coordinator address {address!r} must be host:port (e.g. localhost:12345)."
    )
  if count is not None and count < 1:
    raise DistributedError(f"--num_processes must be >= 1, got {count}.")
  if index is not None and count is not None and not 0 <= index < count:
    raise DistributedError(f"--process_id must be in [0, {count}), got {index}.")
  return Setup(address, count, index)


def _cluster_types() -> list:
  """JAX's cluster environments in its own detection order (empty if this JAX has none)."""
  try:
    from jax._src import clusters  # pylint: disable=g-import-not-at-top
  except ImportError:  # a JAX without auto-detection: explicit setups only
    return []
  return list(getattr(clusters.ClusterEnv, "_cluster_types", []))


def detect_cluster(method: str = AUTO):
  """The cluster environment `jax.distributed.initialize()` would use, or None.

  `method`: `auto` (JAX's default order, opt-in methods such as mpi4py excluded), `off`, or a
  JAX method name (`slurm`, `ompi`, `gketpu`, `gcetpu`, `mpi4py`, ...).
  """
  if method == OFF:
    return None
  types = _cluster_types()
  if method == AUTO:
    candidates = [t for t in types if not getattr(t, "opt_in_only_method", False)]
  else:
    candidates = [t for t in types if getattr(t, "name", None) == method]
    if not candidates:
      names = ", ".join(sorted(filter(None, (getattr(t, "name", None) for t in types))))
      raise DistributedError(
          f"unknown --cluster_detection {method!r}; valid: {AUTO}, {OFF}, {names}."
      )
  return next((t for t in candidates if t.is_env_present()), None)


def resolve(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    cluster_detection: str = AUTO,
    env=None,
) -> Setup:
  """What `initialize` will do, without starting anything (see the module docstring)."""
  explicit = explicit_setup(coordinator_address, num_processes, process_id, env)
  complete = None not in (explicit.num_processes, explicit.process_id)
  if explicit.coordinator_address is not None and complete:
    return explicit if explicit.num_processes > 1 else Setup()
  cluster = detect_cluster(cluster_detection)
  if cluster is None:
    if explicit.coordinator_address is not None:
      raise DistributedError(
          f"coordinator {explicit.coordinator_address} given, but no process count and id, and "
          f"no cluster detected: pass --num_processes and --process_id (or {ENV_NUM_PROCESSES} "
          f"and {ENV_PROCESS_ID})."
      )
    return Setup()
  if explicit.num_processes is None and cluster.get_process_count() == 1:
    return Setup()  # e.g. a one-task Slurm job or a single-host TPU VM: no coordinator needed
  return dataclasses.replace(explicit, cluster=getattr(cluster, "name", None))


def _timeout(name: str, default: int) -> int:
  value = _int_or_none(os.environ.get(name), name)
  return default if value is None else value


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    cluster_detection: str = AUTO,
) -> Setup:
  """Starts `jax.distributed` when this is one process of several; returns what it did.

  Must run before any other JAX call. Raises `DistributedError` (one line) on inconsistent
  settings or when the other processes cannot be reached in time.
  """
  setup = resolve(coordinator_address, num_processes, process_id, cluster_detection)
  if setup.single_process:
    return setup
  import jax  # pylint: disable=g-import-not-at-top

  if not jax.config.jax_cpu_collectives_implementation:
    # CPU devices of different processes talk through gloo (TCP); older JAX has no default.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  try:
    jax.distributed.initialize(
        coordinator_address=setup.coordinator_address,
        num_processes=setup.num_processes,
        process_id=setup.process_id,
        cluster_detection_method=setup.cluster,
        initialization_timeout=_timeout(ENV_INIT_TIMEOUT, DEFAULT_INIT_TIMEOUT_S),
        heartbeat_timeout_seconds=_timeout(ENV_HEARTBEAT_TIMEOUT, DEFAULT_HEARTBEAT_TIMEOUT_S),
    )
  except Exception as e:  # pylint: disable=broad-except  # XlaRuntimeError, RuntimeError, ...
    where = setup.coordinator_address or f"the {setup.cluster} cluster's coordinator"
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise DistributedError(
        f"could not join the other processes through {where} ({first}): start every process "
        "with the same coordinator and process count, and process 0 first or together."
    ) from None
  return setup


def describe() -> str:
  """`process i of n: L local devices, G global devices (platform)`, for every process's log."""
  import jax  # pylint: disable=g-import-not-at-top

  return (
      f"process {jax.process_index()} of {jax.process_count()}: "
      f"{jax.local_device_count()} local devices, {jax.device_count()} global devices "
      f"({jax.default_backend()})"
  )
