"""What `benchmarks.bench` and `benchmarks.accelerator_check` both measure with.

Interleaved timing and its summaries, XLA's FLOP and memory counts, matmul FLOP/s, the machine,
and the training iteration of flowergan and of its PyTorch reference on the same weights and
the same random batch.

Nothing here imports TensorFlow or ml_collections, which the accelerator machines lack: a
config is read by attribute only (an `ml_collections.ConfigDict` or the accelerator check's
plain sections). torch is optional: only `torch_setup` and `TorchRunner` import it.
"""

from __future__ import annotations

import functools
import importlib.metadata
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from flowergan import mesh as mesh_lib
from flowergan import train_step as ts

# --- timing ----------------------------------------------------------------------------------


class Timings(NamedTuple):
  """`time_interleaved`'s result, by name: wall seconds, process CPU seconds (all threads) and
  the error of each function that raised (it was dropped from later rounds)."""

  wall: dict[str, list[float]]
  cpu: dict[str, list[float]]
  errors: dict[str, str]


def error_text(e: BaseException) -> str:
  """One line: the exception's type and the first line of its message (OOMs are long)."""
  first = str(e).strip().splitlines()[0] if str(e).strip() else ""
  return f"{type(e).__name__}: {first[:400]}"


def time_interleaved(
    fns: dict[str, Callable[[], Any]],
    *,
    min_repeats: int,
    max_repeats: int | None = None,
    seconds: float = 0.0,
    hard_seconds: float = math.inf,
    warmup: int = 0,
    keep_going: bool = False,
    log: Callable[[str], None] | None = None,
) -> Timings:
  """Times each of `fns` (each blocks until done), called in turn, so that all see the same load.

  After `warmup` untimed rounds, rounds go on until `max_repeats` (default `min_repeats`), or
  until `seconds` have passed and `min_repeats` are done, or (whatever else) until
  `hard_seconds`; one round always runs. With `keep_going`, a function that raises is dropped
  from later rounds and its error recorded; without, the exception propagates. `log` gets one
  line per round.
  """
  for _ in range(warmup):
    for fn in fns.values():
      fn()
  timings = Timings({name: [] for name in fns}, {name: [] for name in fns}, {})
  start = time.perf_counter()
  for r in range(max_repeats or min_repeats):
    elapsed = time.perf_counter() - start
    if r and (elapsed > hard_seconds or (r >= min_repeats and elapsed > seconds)):
      break
    for name, fn in fns.items():
      if name not in timings.errors:
        _time_one(name, fn, timings, keep_going, log)
    if log is not None:
      times = ", ".join(f"{n} {v[-1]:.4f} s" for n, v in timings.wall.items() if v)
      log(f"  round {r + 1}: {times}")
  return timings


def _time_one(
    name: str,
    fn: Callable[[], Any],
    timings: Timings,
    keep_going: bool,
    log: Callable[[str], None] | None,
) -> None:
  t, c = time.perf_counter(), time.process_time()
  try:
    fn()
  except Exception as e:  # with keep_going: recorded, and the others go on
    if not keep_going:
      raise
    timings.errors[name] = error_text(e)
    if log is not None:
      log(f"  {name} failed: {timings.errors[name]}")
    return
  timings.wall[name].append(time.perf_counter() - t)
  timings.cpu[name].append(time.process_time() - c)


def best_seconds(
    fn: Callable[[], Any], rounds: int = 3, go_on: Callable[[], bool] | None = None
) -> tuple[float, Any]:
  """The fastest of `rounds` calls of `fn` (which blocks until done), after the first only while
  `go_on()`; and what the last call returned."""
  best, out = math.inf, None
  for r in range(rounds):
    if r and go_on is not None and not go_on():
      break
    t = time.perf_counter()
    out = fn()
    best = min(best, time.perf_counter() - t)
  return best, out


def summarise(times: list[float]) -> dict[str, Any]:
  return {
      "median": statistics.median(times),
      "min": min(times),
      "max": max(times),
      "n": len(times),
      "all": list(times),
  }


def ratios(name: str, times: list[float], reference: list[float]) -> dict[str, float]:
  """`name`: the ratio of the median times, and `name`_pairwise_median: the median of the
  pairwise ratios (each pair ran back to back); < 1: `times` is faster. {} without both."""
  n = min(len(times), len(reference))
  if not n:
    return {}
  return {
      name: statistics.median(times) / statistics.median(reference),
      f"{name}_pairwise_median": statistics.median(t / r for t, r in zip(times[:n], reference[:n])),
  }


def floor_fields(flops: float | None, median_s: float, peak: float | None) -> dict[str, Any]:
  """Achieved FLOP/s, the fraction of `peak`, the FLOP floor (seconds at `peak`) and time ÷
  floor; None where the FLOPs or the peak are unknown."""
  if not flops or not peak:
    return dict.fromkeys(("achieved_flops_per_s", "fraction_of_peak", "floor_s", "time_over_floor"))
  floor_s = flops / peak
  return {
      "achieved_flops_per_s": flops / median_s,
      "fraction_of_peak": floor_s / median_s,
      "floor_s": floor_s,
      "time_over_floor": median_s / floor_s,
  }


# --- what XLA and the device report ----------------------------------------------------------


def compiled_flops(stage) -> float | None:
  """FLOPs from XLA's cost analysis of a Lowered or Compiled stage; None where there is none."""
  try:
    analysis = stage.cost_analysis()
  except Exception:  # not every backend or jax version implements it for every stage
    return None
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else None
  if not analysis or not analysis.get("flops"):
    return None
  return float(analysis["flops"])


def memory_analysis(compiled) -> dict[str, int] | None:
  """XLA's memory analysis of a compiled computation (bytes), where the backend gives one."""
  try:
    m = compiled.memory_analysis()
  except Exception:  # not every backend implements it
    return None
  if m is None:
    return None
  fields = ("temp", "argument", "output", "alias", "generated_code")
  out = {f: int(getattr(m, f"{f}_size_in_bytes", 0) or 0) for f in fields}
  out["total"] = out["temp"] + out["argument"] + out["output"] - out["alias"]
  return out


def device_memory() -> dict[str, int] | None:
  """The device's `peak_bytes_in_use` (over the whole process so far) and `bytes_in_use`; None
  where the backend keeps no statistics (CPU)."""
  try:
    stats = jax.devices()[0].memory_stats()
  except Exception:  # backends without statistics raise different errors
    return None
  if not stats:
    return None
  return {k: stats[k] for k in ("peak_bytes_in_use", "bytes_in_use") if k in stats}


def matmul_flops_per_s(
    dtype: str,
    size: int,
    precision=None,
    *,
    accumulate: str | None = None,
    calls: int = 1,
    rounds: int = 3,
) -> float:
  """FLOP/s of a size² matmul of `dtype` inputs (output in `accumulate`, default `dtype`): the
  best of `rounds` rounds of `calls` back-to-back products."""
  a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32).astype(dtype)
  b = jax.random.normal(jax.random.key(1), (size, size), jnp.float32).astype(dtype)
  matmul = jax.jit(
      functools.partial(jnp.matmul, precision=precision, preferred_element_type=accumulate)
  )
  matmul(a, b).block_until_ready()
  best, _ = best_seconds(
      lambda: jax.block_until_ready([matmul(a, b) for _ in range(calls)]), rounds
  )
  return 2.0 * size**3 * calls / best


# --- the machine -----------------------------------------------------------------------------

VERSIONED = (
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "numpy",
    "torch",
    "jax-cuda13-plugin",
    "jax-cuda12-plugin",
)


def package_versions(names) -> dict[str, str | None]:
  out = {}
  for name in names:
    try:
      out[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      out[name] = None
  return out


def jax_option(name: str) -> str:
  """A jax config option as text ('unknown' where this jax version has no such option)."""
  return str(getattr(jax.config, name, "unknown"))


def cpu_cores() -> int:
  """The CPU cores this process may use (its affinity), as XLA:CPU's intra-op pool does."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # not Linux
    return os.cpu_count() or 1


def machine_info() -> dict[str, Any]:
  """The device, the CPUs and their load, the software versions and jax's environment report."""
  device = jax.devices()[0]
  info = {
      "platform": device.platform,
      "device_kind": device.device_kind,
      "device_count": jax.device_count(),
      "process_count": jax.process_count(),
      "platform_version": getattr(getattr(device, "client", None), "platform_version", None),
      "python": platform.python_version(),
      "machine": platform.machine(),
      "processor": platform.processor(),
      "cpu_count": os.cpu_count(),
      "versions": package_versions(VERSIONED),
      "jax_default_matmul_precision": jax_option("jax_default_matmul_precision"),
      # Whether compile times may be cache hits.
      "jax_compilation_cache_dir": jax_option("jax_compilation_cache_dir"),
      "env": {
          name: os.environ.get(name)
          for name in ("XLA_FLAGS", "XLA_PYTHON_CLIENT_PREALLOCATE", "JAX_PLATFORMS")
      },
  }
  info["cpu_cores_available"] = cpu_cores()
  try:
    info["load_average"] = os.getloadavg()  # others' work on a shared machine skews timings
  except OSError:
    pass
  try:
    info["jax_environment"] = jax.print_environment_info(return_string=True)
  except Exception as e:  # it runs nvidia-smi, which may be missing
    info["jax_environment"] = error_text(e)
  return info


# --- flowergan's iteration -------------------------------------------------------------------


def random_batch(
    n_critic: int, batch_size: int, image_size: int, num_classes: int, seed: int = 0
) -> dict[str, np.ndarray]:
  """One iteration's host batch: uniform images in [-1, 1] and random labels."""
  rng = np.random.default_rng(seed)
  shape = (n_critic, batch_size, image_size, image_size, 3)
  return {
      "image": rng.uniform(-1, 1, shape).astype(np.float32),
      "label": rng.integers(0, num_classes, (n_critic, batch_size)).astype(np.int32),
  }


def initial_state(config, num_classes: int, seed: int = 0) -> ts.TrainState:
  """The initial training state on the host. One serves every `train.dtype`: it sets the
  computation's dtype only, parameters and optimiser state are float32 in all."""
  gan = ts.wgangp_from_config(config, num_classes=num_classes)
  return jax.device_get(jax.jit(gan.init)(jax.random.key(seed)))


class JaxRunner:
  """flowergan's jitted training step with its own copy of `state` (host arrays, e.g.
  `initial_state`) and an in-memory random batch; compiled (and timed doing so) on creation."""

  def __init__(self, config, num_classes: int, batch_size: int, state: ts.TrainState):
    self.config, self.num_classes = config, num_classes
    self.gan = ts.wgangp_from_config(config, num_classes=num_classes)
    self.mesh = mesh_lib.make_mesh()
    mesh_lib.check_batch_size(batch_size, self.mesh)
    self.initial_state = state  # also the torch reference's weights
    self.state = jax.device_put(state, mesh_lib.replicated(self.mesh))
    self.host_batch = random_batch(
        config.train.n_critic, batch_size, config.data.image_size, num_classes
    )
    self.batch = mesh_lib.shard_batch(self.host_batch, self.mesh)
    self.key = jax.random.key(1)
    step = ts.make_train_step(self.gan, self.mesh)
    t = time.perf_counter()
    lowered = step.lower(self.state, self.batch, self.key)
    self.lower_s = time.perf_counter() - t
    t = time.perf_counter()
    self.compiled = lowered.compile()
    self.compile_s = time.perf_counter() - t
    self.flops_compiled = compiled_flops(self.compiled)
    self.flops_lowered = compiled_flops(lowered)
    self.memory = memory_analysis(self.compiled)

  def iteration(self) -> None:
    self.state, metrics = self.compiled(self.state, self.batch, self.key)
    jax.block_until_ready((self.state, metrics))
    if not bool(metrics["finite"]):
      raise FloatingPointError("non-finite training metrics")

  def flops(self) -> tuple[float | None, str]:
    """FLOPs per iteration and where they come from: XLA's cost analysis of the step as JAX
    lowers it (the same program on every backend), else of the compiled step. The compiled
    count can miss work that the backend moved into library calls: on XLA:CPU it is 7× lower
    than the lowered one for the tiny step, within 1% of it for the 128×128 one."""
    if self.flops_lowered:
      return self.flops_lowered, "xla_cost_analysis_lowered"
    if self.flops_compiled:
      return self.flops_compiled, "xla_cost_analysis_compiled"
    return None, "none"


# --- the PyTorch reference -------------------------------------------------------------------


def torch_setup(device: str = "auto", num_threads: int | None = None) -> dict[str, Any]:
  """Imports torch (ImportError where it is not installed) and sets it up for `device` ('auto':
  'cuda' where available): on the CPU `num_threads` threads (None: torch's default), on CUDA
  cuDNN autotuning (XLA autotunes its convolutions too), TF32 as torch defaults. Returns the
  device and the settings that change its speed."""
  import torch  # optional dependency

  if device == "auto":
    device = "cuda" if torch.cuda.is_available() else "cpu"
  if device == "cpu" and num_threads:
    torch.set_num_threads(num_threads)
  info = {"device": device, "version": torch.__version__, "num_threads": torch.get_num_threads()}
  if device == "cuda":
    torch.backends.cudnn.benchmark = True
    info.update(
        cuda=torch.version.cuda,
        cudnn=torch.backends.cudnn.version(),
        device_name=torch.cuda.get_device_name(),
        cudnn_benchmark=True,
        matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32,
        cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
    )
  return info


class TorchRunner:
  """The PyTorch reference of `runner`'s iteration on its initial weights and batch (NCHW).

  compile: None (eager), 'full' (critic and generator under torch.compile with `backend`; the
  penalty's double backward then runs through compiled code) or 'generator' (the generator
  alone). channels_last: NHWC memory format instead of PyTorch's default NCHW.
  """

  def __init__(
      self,
      runner: JaxRunner,
      device: str,
      *,
      compile: str | None = None,
      backend: str = "inductor",
      channels_last: bool = False,
  ):
    import torch  # optional dependency

    from benchmarks import torch_reference

    self.torch, self.device = torch, torch.device(device)
    bf16 = runner.config.train.dtype == "bfloat16"
    self.gan = torch_reference.from_flax(
        runner.gan,
        runner.config.train,
        runner.initial_state,
        device=device,
        autocast_dtype=torch.bfloat16 if bf16 else None,
        channels_last=channels_last,
    )
    if compile:
      self.gan.g_forward = torch.compile(self.gan.generator, backend=backend)
    if compile == "full":
      self.gan.critic = torch.compile(self.gan.critic, backend=backend)
    images = torch.from_numpy(runner.host_batch["image"]).permute(0, 1, 4, 2, 3)
    self.images = images.contiguous().to(self.device)
    self.labels = torch.from_numpy(runner.host_batch["label"].astype(np.int64)).to(self.device)

  def sync(self) -> None:
    if self.device.type == "cuda":
      self.torch.cuda.synchronize()

  def iteration(self) -> None:
    metrics = self.gan.iteration(self.images, self.labels)
    self.sync()
    if not bool(self.torch.isfinite(self.torch.stack(list(metrics.values()))).all()):
      raise FloatingPointError("non-finite torch metrics")


def reset_torch_peak_memory() -> None:
  torch = sys.modules.get("torch")
  if torch is not None and torch.cuda.is_available():
    torch.cuda.reset_peak_memory_stats()


def torch_peak_memory_bytes() -> int | None:
  """torch's peak allocated CUDA memory since `reset_torch_peak_memory` (None off CUDA)."""
  torch = sys.modules.get("torch")
  if torch is None or not torch.cuda.is_available():
    return None
  return int(torch.cuda.max_memory_allocated())
