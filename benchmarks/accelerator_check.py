r"""One bounded measurement of flowergan on a GPU or TPU, sized for a short machine lease.

    bash benchmarks/accelerator_check.sh --out=DIR            # DIR/accelerator_check.{json,md}
    bash benchmarks/accelerator_check.sh --tiny --out=DIR     # the tiny model: CPU, CI, seconds

On a GPU or TPU machine with jax, flax, optax, etils, absl-py, numpy and pillow (torch
optional), nothing else to install: the default --budget_s=390 keeps the whole run inside 8
minutes with the compiles. A pure-Python package missing there travels as a wheel in .whl/
(ignored by git), installed by the shell script first; fill it on a machine with a network:

    pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl PACKAGE==VERSION

tests/test_accelerator_check.py runs the tiny check with TensorFlow, tensorflow_datasets, clu and
ml_collections unimportable and compares every module it imports with the packages of the
accelerator machines' image, so that a missing package shows in CI.

What it measures (all of it on in-memory arrays; the whole run stays inside --budget_s, which
cuts repetitions and optional parts short rather than overrun):

  * the machine: device, versions, jax's environment report;
  * checks: that the config's 'auto' convolutions resolve to XLA's own ('lax') off the CPU, as
    `flowergan.ops.resolve_conv` intends; jax's default matmul precision and the error of one
    float32 matmul at the default and at HIGHEST precision against float64 numpy (GPUs may run
    float32 matmuls in TF32 by default);
  * matmul peaks of a large matmul: float32 (default and HIGHEST precision) and bfloat16;
  * the training iteration (n_critic critic steps + 1 generator step) of the 128×128 model with
    `train.dtype` float32 and bfloat16, at global batch 64 and 256: seconds per iteration,
    images/s (real images the critic consumes, n_critic·B per iteration), compile time, FLOPs
    from XLA's cost analysis (of the compiled step; of the lowered one where the backend gives
    none), the FLOP floor at the peak of that dtype measured in this run, device memory; timed
    interleaved (one repetition of each in turn) with the PyTorch reference of the same networks
    and iteration (`benchmarks.torch_reference`): eager, and under torch.compile — the whole
    iteration first (the penalty needs a double backward, which torch.compile may refuse: the
    refusal is recorded as the result), else the generator alone;
  * sampling: images/s of `flowergan.sampling.generate_from_z` (sample.py's path) on in-memory
    variables, at sample.py's batch and at a large one;
  * the Inception feature extractor's images/s: see `inception_images_per_s`.

Each part that fails (torch missing, out of memory, ...) records its error in the JSON and the
run goes on. Nothing here imports TensorFlow, clu, tensorflow_datasets or ml_collections: the
config is `accelerator_config` (the fields of configs/cwgan128.py that the step reads, kept equal
to it by tests/test_accelerator_check.py). The JSON and the Markdown table are rewritten after
every part, so a run killed at its time limit still leaves what it measured.

Exit status: 0 when every flowergan (JAX) iteration measurement succeeded, 1 otherwise.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import gc
import importlib
import importlib.metadata
import json
import math
import os
import platform
import statistics
import sys
import time
import traceback
import types
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from flowergan import mesh as mesh_lib
from flowergan import ops, sampling
from flowergan import train_step as ts

JSON_NAME = "accelerator_check.json"
TABLE_NAME = "accelerator_check.md"
DTYPES = ("float32", "bfloat16")

# The fields of configs/cwgan128.py that the training step and the PyTorch reference read, for
# the paper's model and the tiny variant (tests/test_accelerator_check.py checks them against
# the config file, which needs ml_collections and so is not read here).
PAPER_FIELDS = {
    "data": {"image_size": 128, "classes": ("dandelion", "marigold")},
    "model": {
        "z_dim": 64,
        "width": 64,
        "upsample": "bilinear",
        "critic_width": 64,
        "conditioning": "projection",
        "critic_normalization": "none",
        "generator_conv": "auto",
        "critic_conv": "auto",
    },
    "train": {
        "n_critic": 5,
        "gp_weight": 10.0,
        "generator_lr": 1e-4,
        "critic_lr": 1e-4,
        "adam_b1": 0.0,
        "adam_b2": 0.9,
        "dtype": "float32",
        "ema_decay": 0.999,
        "ema_warmup": True,
    },
}
TINY_CHANGES = {
    "data": {"image_size": 16},
    "model": {"z_dim": 8, "width": 8, "critic_width": 8},
    "train": {"n_critic": 2},
}


class ConfigSection(types.SimpleNamespace):
  """Attribute access and `get`: what the library reads of an `ml_collections.ConfigDict`."""

  def get(self, name: str, default: Any = None) -> Any:
    return getattr(self, name, default)


def accelerator_config(*, tiny: bool, dtype: str) -> ConfigSection:
  """The paper's model (or the tiny variant) with `train.dtype=dtype`, as `ConfigSection`s."""
  sections = {}
  for name, fields in PAPER_FIELDS.items():
    fields = dict(fields, **(TINY_CHANGES.get(name, {}) if tiny else {}))
    sections[name] = ConfigSection(**fields)
  sections["train"].dtype = dtype
  return ConfigSection(**sections)


@dataclasses.dataclass(frozen=True)
class Plan:
  """What one run measures and how often; `plan_for` gives the accelerator's and the tiny one."""

  tiny: bool
  batch_sizes: tuple[int, ...]
  min_repeats: int  # timed iterations, at least (unless an error or the budget stops them)
  max_repeats: int
  iteration_seconds: float  # timed seconds per (dtype, batch), after min_repeats
  peak_size: int  # the peak's matmul is peak_size²
  precision_size: int  # the float64 comparison's matmul
  sample_batches: tuple[int, ...]
  sample_images: int
  inception_batch: int
  time_inception: bool
  torch: bool
  torch_compile_backend: str | None  # None: no torch.compile
  torch_compile_every_config: bool = True  # False: the first (dtype, batch) only


def plan_for(tiny: bool, *, torch: bool = True, torch_compile_backend: str | None = None) -> Plan:
  backend = torch_compile_backend or ("aot_eager" if tiny else "inductor")
  if tiny:
    return Plan(
        tiny=True,
        batch_sizes=(8,),
        min_repeats=2,
        max_repeats=3,
        iteration_seconds=1.0,
        peak_size=256,
        precision_size=128,
        sample_batches=(sampling.BATCH_SIZE,),
        sample_images=98,
        inception_batch=1,
        time_inception=False,
        torch=torch,
        torch_compile_backend=None if backend == "none" else backend,
        # Each recompile costs seconds of tracing on a CPU: the first config covers the path.
        torch_compile_every_config=False,
    )
  return Plan(
      tiny=False,
      batch_sizes=(64, 256),
      min_repeats=3,
      max_repeats=20,
      iteration_seconds=8.0,
      peak_size=8192,
      precision_size=2048,
      sample_batches=(sampling.BATCH_SIZE, 1024),
      sample_images=4096,
      inception_batch=200,
      time_inception=True,
      torch=torch,
      torch_compile_backend=None if backend == "none" else backend,
  )


class Budget:
  """The run's wall-clock deadline."""

  def __init__(self, seconds: float):
    self.start = time.perf_counter()
    self.deadline = self.start + seconds

  def left(self) -> float:
    return self.deadline - time.perf_counter()

  def elapsed(self) -> float:
    return time.perf_counter() - self.start


_START = time.perf_counter()


def log(message: str) -> None:
  """A progress line on stderr with the seconds since start."""
  elapsed = time.perf_counter() - _START
  print(f"[accelerator_check {elapsed:6.1f} s] {message}", file=sys.stderr, flush=True)


def error_text(e: BaseException) -> str:
  """One line: the exception's type and the first line of its message (OOMs are long)."""
  first = str(e).strip().splitlines()[0] if str(e).strip() else ""
  return f"{type(e).__name__}: {first[:400]}"


def guarded(name: str, fn: Callable[[], Any]) -> Any:
  """`fn()`, or {'error': one line} when it raises (the traceback goes to stderr)."""
  try:
    return fn()
  except Exception as e:  # each part's failure is a result, not the end of the run
    log(f"{name} failed: {error_text(e)}")
    traceback.print_exc(file=sys.stderr)
    free_memory()
    return {"error": error_text(e)}


def free_memory() -> None:
  """Drops garbage and torch's cached blocks, so that a failed part leaves memory to the next."""
  gc.collect()
  torch = sys.modules.get("torch")
  if torch is not None and torch.cuda.is_available():
    torch.cuda.empty_cache()


# --- the machine and the checks --------------------------------------------------------------


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


def machine_info() -> dict[str, Any]:
  """The device, the software versions and jax's own environment report."""
  device = jax.devices()[0]
  info = {
      "platform": device.platform,
      "device_kind": device.device_kind,
      "device_count": jax.device_count(),
      "process_count": jax.process_count(),
      "platform_version": getattr(getattr(device, "client", None), "platform_version", None),
      "python": platform.python_version(),
      "machine": platform.machine(),
      "cpu_count": os.cpu_count(),
      "versions": package_versions(
          (
              "jax",
              "jaxlib",
              "flax",
              "optax",
              "numpy",
              "torch",
              "jax-cuda13-plugin",
              "jax-cuda12-plugin",
          )
      ),
      "jax_default_matmul_precision": jax_option("jax_default_matmul_precision"),
      "jax_compilation_cache_dir": jax_option("jax_compilation_cache_dir"),
      "env": {
          name: os.environ.get(name)
          for name in ("XLA_FLAGS", "XLA_PYTHON_CLIENT_PREALLOCATE", "JAX_PLATFORMS")
      },
  }
  try:
    info["jax_environment"] = jax.print_environment_info(return_string=True)
  except Exception as e:  # it runs nvidia-smi, which may be missing
    info["jax_environment"] = error_text(e)
  return info


def conv_auto_check() -> dict[str, Any]:
  """What the config's 'auto' convolutions resolve to on this backend, against the intent:
  flowergan's CPU formulations on the CPU, XLA's own ('lax') on GPU/TPU."""
  backend = jax.default_backend()
  expected = {"generator": "dots", "critic": "im2col"} if backend == "cpu" else None
  out: dict[str, Any] = {"backend": backend}
  ok = True
  for role in ops.CONV_CHOICES:
    fn = ops.resolve_conv("auto", role=role)
    name = "lax" if fn is None else fn.__name__.split("_")[0]
    want = expected[role] if expected else "lax"
    out[role] = name
    ok &= name == want
  # The models the step builds: `nn.Conv` itself is XLA's convolution.
  generator, critic = ts.build_models(
      ConfigSection(**PAPER_FIELDS["model"]), image_size=128, num_classes=2
  )
  out["models_use_xla_conv"] = {
      "generator": _is_plain_conv(generator.conv),
      "critic": _is_plain_conv(critic.conv),
  }
  if backend != "cpu":
    ok &= all(out["models_use_xla_conv"].values())
  out["ok"] = bool(ok)
  return out


def _is_plain_conv(conv) -> bool:
  import flax.linen as nn

  return conv is nn.Conv


def matmul_precision_check(size: int) -> dict[str, Any]:
  """One float32 size² matmul at jax's default and at HIGHEST precision against float64 numpy:
  max |error| / max |exact|. A default error far above HIGHEST's means reduced-precision
  (e.g. TF32) float32 matmuls by default."""
  rng = np.random.default_rng(0)
  a = rng.standard_normal((size, size), dtype=np.float32)
  b = rng.standard_normal((size, size), dtype=np.float32)
  exact = a.astype(np.float64) @ b.astype(np.float64)
  scale = float(np.max(np.abs(exact)))

  def rel_error(precision) -> float:
    out = jax.jit(functools.partial(jnp.matmul, precision=precision))(a, b)
    return float(np.max(np.abs(np.asarray(out, np.float64) - exact)) / scale)

  default, highest = rel_error(None), rel_error(jax.lax.Precision.HIGHEST)
  return {
      "jax_default_matmul_precision": jax_option("jax_default_matmul_precision"),
      "size": size,
      "rel_error_default": default,
      "rel_error_highest": highest,
      "default_is_reduced_precision": bool(default > 10 * highest),
  }


def matmul_flops_per_s(dtype: str, size: int, precision=None, *, calls: int = 10) -> float:
  """FLOP/s of a size² matmul: the best of 3 rounds of `calls` back-to-back products."""
  a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32).astype(dtype)
  b = jax.random.normal(jax.random.key(1), (size, size), jnp.float32).astype(dtype)
  matmul = jax.jit(functools.partial(jnp.matmul, precision=precision))
  matmul(a, b).block_until_ready()
  best = math.inf
  for _ in range(3):
    t = time.perf_counter()
    outs = [matmul(a, b) for _ in range(calls)]
    jax.block_until_ready(outs)
    best = min(best, (time.perf_counter() - t) / calls)
  return 2.0 * size**3 / best


def measure_peaks(size: int) -> dict[str, Any]:
  """Matmul FLOP/s: float32 at the default precision (what the model's float32 step uses) and
  at HIGHEST, and bfloat16."""
  return {
      "size": size,
      "float32": matmul_flops_per_s("float32", size),
      "float32_highest": matmul_flops_per_s("float32", size, jax.lax.Precision.HIGHEST),
      "bfloat16": matmul_flops_per_s("bfloat16", size),
  }


# --- flowergan's iteration -------------------------------------------------------------------


def random_batch(config, batch_size: int, seed: int = 0) -> dict[str, np.ndarray]:
  """One iteration's host batch: uniform images in [-1, 1] and random labels."""
  rng = np.random.default_rng(seed)
  n, s = config.train.n_critic, config.data.image_size
  return {
      "image": rng.uniform(-1, 1, (n, batch_size, s, s, 3)).astype(np.float32),
      "label": rng.integers(0, len(config.data.classes), (n, batch_size)).astype(np.int32),
  }


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
  """XLA's memory analysis of the compiled step (bytes), where the backend gives one."""
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
  """The device's `peak_bytes_in_use` (over the whole process so far) and `bytes_in_use`."""
  try:
    stats = jax.devices()[0].memory_stats()
  except Exception:  # backends without statistics raise different errors
    return None
  if not stats:
    return None
  return {k: stats[k] for k in ("peak_bytes_in_use", "bytes_in_use") if k in stats}


def initial_state(tiny: bool) -> ts.TrainState:
  """The initial training state on the host. One for every dtype: `train.dtype` sets the
  computation's dtype only, parameters and optimiser state are float32 in both."""
  config = accelerator_config(tiny=tiny, dtype="float32")
  gan = ts.wgangp_from_config(config, num_classes=len(config.data.classes))
  return jax.device_get(jax.jit(gan.init)(jax.random.key(0)))


class JaxRunner:
  """flowergan's jitted training step with its own copy of `state` (host arrays, e.g.
  `initial_state`) and an in-memory random batch."""

  def __init__(self, config, batch_size: int, state: ts.TrainState):
    self.config = config
    self.gan = ts.wgangp_from_config(config, num_classes=len(config.data.classes))
    self.mesh = mesh_lib.make_mesh()
    mesh_lib.check_batch_size(batch_size, self.mesh)
    self.initial_state = state  # also the torch reference's weights
    self.state = jax.device_put(state, mesh_lib.replicated(self.mesh))
    self.host_batch = random_batch(config, batch_size)
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


def torch_setup(tiny: bool) -> dict[str, Any]:
  """Imports torch; the device ('cuda' where available) and the settings that change its
  speed: cuDNN autotuning on (XLA autotunes its convolutions too), TF32 as torch defaults; one
  CPU thread for the tiny model (its threads otherwise spin against XLA's on a small CPU)."""
  import torch  # optional dependency

  device = "cuda" if torch.cuda.is_available() else "cpu"
  if device == "cpu" and tiny:
    torch.set_num_threads(1)
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
  """The PyTorch reference of `jax_runner`'s iteration on its initial weights and batch.

  compile: None (eager), 'full' (critic and generator under torch.compile; the penalty's double
  backward then runs through compiled code) or 'generator' (the generator alone).
  """

  def __init__(self, jax_runner: JaxRunner, device: str, compile: str | None, backend: str):
    import torch  # optional dependency

    from benchmarks import torch_reference

    self.torch, self.device = torch, torch.device(device)
    bf16 = jax_runner.config.train.dtype == "bfloat16"
    self.gan = torch_reference.from_flax(
        jax_runner.gan,
        jax_runner.config.train,
        jax_runner.initial_state,
        device=device,
        autocast_dtype=torch.bfloat16 if bf16 else None,
    )
    if compile:
      self.gan.g_forward = torch.compile(self.gan.generator, backend=backend)
    if compile == "full":
      self.gan.critic = torch.compile(self.gan.critic, backend=backend)
    images = torch.from_numpy(jax_runner.host_batch["image"]).permute(0, 1, 4, 2, 3)
    self.images = images.contiguous().to(self.device)
    self.labels = torch.from_numpy(jax_runner.host_batch["label"].astype(np.int64)).to(self.device)

  def iteration(self) -> None:
    metrics = self.gan.iteration(self.images, self.labels)
    if self.device.type == "cuda":
      self.torch.cuda.synchronize()
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


# --- timing ----------------------------------------------------------------------------------


def summarise(times: list[float]) -> dict[str, Any]:
  return {
      "median": statistics.median(times),
      "min": min(times),
      "max": max(times),
      "n": len(times),
      "all": list(times),
  }


def time_interleaved(
    fns: dict[str, Callable[[], None]],
    *,
    min_repeats: int,
    max_repeats: int,
    seconds: float,
    hard_seconds: float,
) -> tuple[dict[str, list[float]], dict[str, str]]:
  """Wall seconds of each of `fns` (each blocks until done), called in turn: rounds go on until
  `max_repeats`, or until `seconds` have passed and `min_repeats` are done, or (whatever else)
  until `hard_seconds`. A function that raises is dropped from later rounds; returns the times
  and {name: error}."""
  times: dict[str, list[float]] = {name: [] for name in fns}
  errors: dict[str, str] = {}
  start = time.perf_counter()
  for r in range(max_repeats):
    elapsed = time.perf_counter() - start
    if r and (elapsed > hard_seconds or (r >= min_repeats and elapsed > seconds)):
      break
    for name, fn in fns.items():
      if name in errors:
        continue
      t = time.perf_counter()
      try:
        fn()
      except Exception as e:  # recorded, and the others go on
        errors[name] = error_text(e)
        log(f"  {name} failed: {errors[name]}")
        continue
      times[name].append(time.perf_counter() - t)
    log("  round " + ", ".join(f"{n} {v[-1]:.4f} s" for n, v in times.items() if v))
  return times, errors


def floor_fields(flops: float | None, median_s: float, peak: float | None) -> dict[str, Any]:
  """The FLOP floor (seconds at `peak`), time ÷ floor and the fraction of `peak` achieved."""
  if not flops or not peak:
    return {"floor_s": None, "time_over_floor": None, "fraction_of_peak": None}
  floor_s = flops / peak
  return {
      "floor_s": floor_s,
      "time_over_floor": median_s / floor_s,
      "fraction_of_peak": floor_s / median_s,
  }


# --- one (dtype, batch) ----------------------------------------------------------------------


@dataclasses.dataclass
class Context:
  """What every part reads: the plan, the budget, the peaks, torch, and shared findings."""

  plan: Plan
  budget: Budget
  peaks: dict[str, Any]
  torch_info: dict[str, Any] | None
  # Set by the first attempt of torch.compile on the whole iteration: 'full' when it ran,
  # 'generator' when it failed (then only the generator is compiled); 'failed' once the
  # generator alone failed too.
  torch_compile_mode: str | None = None
  full_compile_result: dict[str, Any] | None = None
  jax_compile_s: list[float] = dataclasses.field(default_factory=list)
  torch_compile_s: list[float] = dataclasses.field(default_factory=list)  # first iterations
  state: ts.TrainState | None = None  # `initial_state`, on the host


def reserve_s(ctx: Context, remaining_configs: int) -> float:
  """Seconds to keep for what comes later: the remaining JAX compiles (estimated by the
  slowest so far) and their timed repetitions, plus sampling and Inception."""
  compile_s = max(ctx.jax_compile_s, default=30.0 if not ctx.plan.tiny else 5.0)
  per_config = compile_s + ctx.plan.iteration_seconds
  tail = 5.0 if ctx.plan.tiny else 30.0
  return remaining_configs * per_config + tail


def build_torch_runners(
    jax_runner: JaxRunner, ctx: Context, remaining_configs: int
) -> tuple[dict[str, TorchRunner], dict[str, Any]]:
  """The torch runners to time beside flowergan ('torch_eager', 'torch_compile') and what
  happened to each that could not be built or warmed up."""
  if ctx.torch_info is None or "error" in ctx.torch_info:
    return {}, {"torch_eager": {"error": "torch not available"}}
  device = ctx.torch_info["device"]
  runners: dict[str, TorchRunner] = {}
  notes: dict[str, Any] = {}
  eager = guarded("torch eager", lambda: TorchRunner(jax_runner, device, None, ""))
  if isinstance(eager, dict):
    notes["torch_eager"] = eager
  else:
    runners["torch_eager"] = eager
  backend = ctx.plan.torch_compile_backend
  if backend is None:
    notes["torch_compile"] = {"status": "skipped (--torch_compile_backend=none)"}
    return runners, notes
  if ctx.torch_compile_mode and not ctx.plan.torch_compile_every_config:
    notes["torch_compile"] = {"status": "skipped (--tiny: the first row only)"}
    return runners, notes
  compile_s = max(ctx.torch_compile_s, default=0.0 if ctx.plan.tiny else 90.0)
  if ctx.budget.left() < reserve_s(ctx, remaining_configs) + compile_s:
    notes["torch_compile"] = {"status": "skipped: not enough of --budget_s left"}
    return runners, notes
  compiled, note = warm_torch_compile(jax_runner, ctx, device, backend)
  notes["torch_compile"] = note
  if compiled is not None:
    runners["torch_compile"] = compiled
  return runners, notes


def warm_torch_compile(
    jax_runner: JaxRunner, ctx: Context, device: str, backend: str
) -> tuple[TorchRunner | None, dict[str, Any]]:
  """A torch.compile runner after its first (compiling) iteration: the whole iteration if that
  was not refused before, else the generator alone. The first refusal is kept in `ctx`."""
  if ctx.torch_compile_mode is None:
    runner, first_s, error = _first_iteration(jax_runner, ctx, device, "full", backend)
    ctx.full_compile_result = {"backend": backend}
    if error is None:
      ctx.torch_compile_mode = "full"
      ctx.full_compile_result.update(status="ran", first_iteration_s=first_s)
      return runner, {"mode": "full", "backend": backend, "first_iteration_s": first_s}
    ctx.torch_compile_mode = "generator"
    ctx.full_compile_result.update(status="failed", error=error)
    free_memory()
  mode = ctx.torch_compile_mode
  if mode == "failed":
    return None, {"status": "skipped: torch.compile failed at an earlier row"}
  runner, first_s, error = _first_iteration(jax_runner, ctx, device, mode, backend)
  if error is not None:
    ctx.torch_compile_mode = "failed"  # not retried: each try costs its compile time
    free_memory()
    return None, {"mode": mode, "backend": backend, "error": error}
  return runner, {"mode": mode, "backend": backend, "first_iteration_s": first_s}


def _first_iteration(
    jax_runner: JaxRunner, ctx: Context, device: str, mode: str, backend: str
) -> tuple[TorchRunner | None, float | None, str | None]:
  log(f"  torch.compile ({mode}, {backend}): first iteration (compiles)...")
  t = time.perf_counter()
  try:
    runner = TorchRunner(jax_runner, device, mode, backend)
    runner.iteration()
  except Exception as e:  # e.g. the double backward refused: that is the result
    log(f"  torch.compile ({mode}) failed: {error_text(e)}")
    runner, error = None, error_text(e)
  else:
    error = None
  elapsed = time.perf_counter() - t
  ctx.torch_compile_s.append(elapsed)
  return runner, elapsed, error


def measure_iteration(
    dtype: str, batch_size: int, ctx: Context, remaining_configs: int
) -> tuple[dict[str, Any], JaxRunner | None]:
  """flowergan's iteration at (dtype, batch) timed interleaved with torch's: one entry of the
  JSON's 'iterations', and the runner (None when flowergan's step failed)."""
  entry: dict[str, Any] = {"dtype": dtype, "batch_size": batch_size}
  config = accelerator_config(tiny=ctx.plan.tiny, dtype=dtype)
  log(f"{dtype}, batch {batch_size}: compiling flowergan's step...")
  runner = guarded("flowergan compile", lambda: JaxRunner(config, batch_size, ctx.state))
  if isinstance(runner, dict):
    entry["flowergan"] = runner
    return entry, None
  ctx.jax_compile_s.append(runner.lower_s + runner.compile_s)
  fns = {"flowergan": runner.iteration}
  torch_runners, notes = {}, {}
  if ctx.plan.torch:
    reset_torch_peak_memory()
    torch_runners, notes = build_torch_runners(runner, ctx, remaining_configs)
    fns.update({name: r.iteration for name, r in torch_runners.items()})
  warm = {name: guarded(f"{name} warm-up", fn) for name, fn in fns.items()}
  fns = {name: fn for name, fn in fns.items() if not isinstance(warm[name], dict)}
  # Seconds this row may take beyond what later rows need: past `seconds`, only until
  # min_repeats are done; past `spare`, not at all (one round always runs).
  spare = max(0.0, ctx.budget.left() - reserve_s(ctx, remaining_configs))
  seconds = min(ctx.plan.iteration_seconds, spare)
  times, errors = time_interleaved(
      fns,
      min_repeats=ctx.plan.min_repeats,
      max_repeats=ctx.plan.max_repeats,
      seconds=seconds,
      hard_seconds=spare,
  )
  for name, result in warm.items():
    if isinstance(result, dict):
      errors.setdefault(name, result["error"])
  images = config.train.n_critic * batch_size
  entry["flowergan"] = summarise_flowergan(runner, times["flowergan"], images, ctx, errors)
  for name in ("torch_eager", "torch_compile"):
    if name in torch_runners or name in notes:
      entry[name] = summarise_torch(
          times.get(name, []),
          images,
          notes.get(name, {}),
          errors.get(name),
      )
  entry.update(ratios(times))
  if torch_runners:
    entry["torch_peak_memory_bytes"] = torch_peak_memory_bytes()  # both torch runners
  return entry, runner


def summarise_flowergan(
    runner: JaxRunner, times: list[float], images: int, ctx: Context, errors: dict[str, str]
) -> dict[str, Any]:
  flops, source = runner.flops()
  out: dict[str, Any] = {
      "lower_s": runner.lower_s,
      "compile_s": runner.compile_s,
      "flops_per_iteration": flops,
      "flops_source": source,
      "flops_compiled": runner.flops_compiled,
      "flops_lowered": runner.flops_lowered,
      "compiled_memory_bytes": runner.memory,
      "device_memory_bytes": device_memory(),
  }
  if "flowergan" in errors or not times:
    out["error"] = errors.get("flowergan", "no timed iteration")
    return out
  median = statistics.median(times)
  peak = ctx.peaks.get(runner.config.train.dtype) if "error" not in ctx.peaks else None
  out.update(
      iteration_s=summarise(times),
      images_per_s=images / median,
      peak_flops_per_s=peak,
      **floor_fields(flops, median, peak),
  )
  return out


def summarise_torch(
    times: list[float],
    images: int,
    note: dict[str, Any],
    error: str | None,
) -> dict[str, Any]:
  out = dict(note)
  if error is not None:
    out["error"] = error
  if times and error is None:
    out.update(iteration_s=summarise(times), images_per_s=images / statistics.median(times))
  return out


def ratios(times: dict[str, list[float]]) -> dict[str, float]:
  """flowergan's time over each torch variant's: of the medians, and the median of the
  pairwise ratios (each pair ran back to back); < 1: flowergan is faster."""
  out = {}
  fg = times.get("flowergan", [])
  for name in ("torch_eager", "torch_compile"):
    other = times.get(name, [])
    n = min(len(fg), len(other))
    if n:
      out[f"flowergan_over_{name}"] = statistics.median(fg) / statistics.median(other)
      out[f"flowergan_over_{name}_pairwise_median"] = statistics.median(
          f / o for f, o in zip(fg[:n], other[:n])
      )
  return out


# --- sampling and Inception ------------------------------------------------------------------


def sampling_images_per_s(runner: JaxRunner, plan: Plan, budget: Budget) -> dict[str, Any]:
  """Images/s of `sampling.generate_from_z` (sample.py's path: padded batches, images back on
  the host) with the EMA generator, per batch size of `plan.sample_batches`."""
  gan, state = runner.gan, runner.state
  out: dict[str, Any] = {"images": plan.sample_images}
  for batch in plan.sample_batches:
    n = max(batch, plan.sample_images // batch * batch)
    rng = np.random.default_rng(batch)
    z = rng.standard_normal((n, gan.z_dim)).astype(np.float32)
    labels = (np.arange(n) % gan.num_classes).astype(np.int32)

    def generate(z=z, labels=labels, batch=batch):
      return sampling.generate_from_z(
          gan.generator,
          {"params": state.ema_params, "batch_stats": state.g_batch_stats},
          z,
          labels,
          batch_size=batch,
      )

    t = time.perf_counter()
    generate(z[:batch], labels[:batch])  # compiles this batch shape
    compile_s = time.perf_counter() - t
    best = math.inf
    for r in range(3):
      if r and budget.left() < 20.0:
        break
      t = time.perf_counter()
      images = generate()
      best = min(best, time.perf_counter() - t)
    if not np.all(np.isfinite(images)):
      raise FloatingPointError("non-finite samples")
    out[str(batch)] = {"images_per_s": n / best, "first_call_s": compile_s}
  return out


# The hook for the Inception feature extractor, `flowergan.inception` (written on another
# branch). It is timed with random weights (no file, no network) through the first of:
#   * `random_feature_extractor(seed=0)`: a callable mapping images (N, H, W, 3) float32 in
#     [0, 1] to features (N, D);
#   * `FIDInceptionV3` (a Flax module, input `INPUT_SIZE`²) and `extract_features(variables,
#     images, batch_size=..., mesh=...)`, the module's own entry point.
# Without either (or without the module), the result is "not available".
INCEPTION_MODULE = "flowergan.inception"


def inception_extractor(
    module, plan: Plan
) -> tuple[str, Callable[[], Callable[[np.ndarray], Any]]] | None:
  """(what `module` provides, a function that builds `images → features` with random weights
  from it), or None."""
  factory = getattr(module, "random_feature_extractor", None)
  if factory is not None:
    return "random_feature_extractor", lambda: factory(seed=0)
  network = getattr(module, "FIDInceptionV3", None)
  extract = getattr(module, "extract_features", None)
  if network is None or extract is None:
    return None

  def build():
    size = getattr(module, "INPUT_SIZE", 299)
    variables = network().init(jax.random.key(0), jnp.zeros((1, size, size, 3)))
    return lambda images: extract(variables, images, batch_size=plan.inception_batch)

  return "FIDInceptionV3 + extract_features", build


def inception_images_per_s(plan: Plan, image_size: int, budget: Budget) -> dict[str, Any]:
  """Images/s of the Inception feature extractor on random weights, or why there is none."""
  try:
    module = importlib.import_module(INCEPTION_MODULE)
  except ImportError as e:
    return {"status": f"not available ({INCEPTION_MODULE} does not import: {error_text(e)})"}
  found = inception_extractor(module, plan)
  if found is None:
    return {
        "status": f"not available ({INCEPTION_MODULE} has neither random_feature_extractor "
        "nor FIDInceptionV3 and extract_features)"
    }
  api, build = found
  if not plan.time_inception:
    return {"status": f"not timed (--tiny: a 299² network is minutes on a CPU); found {api}"}
  extract = build()
  batch = plan.inception_batch
  images = np.random.default_rng(0).uniform(0, 1, (batch, image_size, image_size, 3))
  images = images.astype(np.float32)
  t = time.perf_counter()
  features = np.asarray(extract(images))
  first_s = time.perf_counter() - t
  best = math.inf
  for r in range(3):
    if r and budget.left() < 10.0:
      break
    t = time.perf_counter()
    np.asarray(extract(images))
    best = min(best, time.perf_counter() - t)
  return {
      "status": "measured",
      "api": api,
      "batch": batch,
      "image_size": image_size,
      "feature_shape": list(features.shape),
      "first_call_s": first_s,
      "images_per_s": batch / best,
  }


# --- the run ---------------------------------------------------------------------------------


def run_check(plan: Plan, budget: Budget, out_dir: str, command: str) -> dict[str, Any]:
  """Everything the module docstring lists, in order of importance; the outputs are rewritten
  after each part. Returns the results ('core_ok': every flowergan iteration measured)."""
  result: dict[str, Any] = {
      "command": command,
      "started_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "budget_s": budget.deadline - budget.start,
      "plan": dataclasses.asdict(plan),
      "model": model_summary(plan),
  }
  save = lambda: write_outputs(result, out_dir, budget)
  result["machine"] = guarded("machine", machine_info)
  result["checks"] = {
      "conv_auto": guarded("conv check", conv_auto_check),
      "matmul_precision": guarded(
          "precision check", lambda: matmul_precision_check(plan.precision_size)
      ),
  }
  log(f"matmul peaks ({plan.peak_size}²)...")
  result["peaks"] = guarded("peaks", lambda: measure_peaks(plan.peak_size))
  torch_info = guarded("torch", lambda: torch_setup(plan.tiny)) if plan.torch else None
  result["torch"] = torch_info or {"status": "skipped (--notorch)"}
  save()
  ctx = Context(plan=plan, budget=budget, peaks=result["peaks"], torch_info=torch_info)
  result["iterations"], result["sampling"] = [], {}
  measure_iterations(ctx, result, save)
  result["torch_compile_full_iteration"] = ctx.full_compile_result or {"status": "not attempted"}
  if budget.left() > (5.0 if plan.tiny else 45.0):
    log("Inception features...")
    image_size = accelerator_config(tiny=plan.tiny, dtype="float32").data.image_size
    result["inception"] = guarded(
        "inception", lambda: inception_images_per_s(plan, image_size, budget)
    )
  else:
    result["inception"] = {"status": "skipped: not enough of --budget_s left"}
  result["core_ok"] = core_ok(result, plan)
  result["imported_modules"] = imported_top_level_modules()
  save()
  return result


def model_summary(plan: Plan) -> dict[str, Any]:
  config = accelerator_config(tiny=plan.tiny, dtype="float32")
  return {
      "config": "configs/cwgan128.py" + (":tiny" if plan.tiny else ""),
      "image_size": config.data.image_size,
      "width": config.model.width,
      "critic_width": config.model.critic_width,
      "n_critic": config.train.n_critic,
  }


def measure_iterations(ctx: Context, result: dict[str, Any], save: Callable[[], None]) -> None:
  """Every (dtype, batch) of the plan, smallest batch first (float32 first within a batch);
  sampling with each dtype's first runner. Appends to result['iterations'] and ['sampling']."""
  configs = [(dtype, batch) for batch in ctx.plan.batch_sizes for dtype in DTYPES]
  log("initialising the training state...")
  ctx.state = guarded("flowergan init", lambda: initial_state(ctx.plan.tiny))
  if isinstance(ctx.state, dict):
    result["iterations"] = [
        {"dtype": d, "batch_size": b, "flowergan": ctx.state} for d, b in configs
    ]
    return
  for i, (dtype, batch) in enumerate(configs):
    remaining = len(configs) - i - 1
    if i and ctx.budget.left() < max(ctx.jax_compile_s, default=0.0):
      log(f"{dtype}, batch {batch}: skipped (budget)")
      result["iterations"].append(
          {"dtype": dtype, "batch_size": batch, "skipped": "not enough of --budget_s left"}
      )
      continue
    entry, runner = measure_iteration(dtype, batch, ctx, remaining)
    result["iterations"].append(entry)
    save()
    if runner is not None and dtype not in result["sampling"]:
      result["sampling"][dtype] = measure_sampling(runner, ctx, remaining)
      save()
    del runner
    free_memory()


def measure_sampling(runner: JaxRunner, ctx: Context, remaining_configs: int) -> dict[str, Any]:
  """`sampling_images_per_s` when the budget leaves time for it, else why not."""
  if ctx.budget.left() < reserve_s(ctx, remaining_configs):
    return {"status": "skipped: not enough of --budget_s left"}
  log(f"{runner.config.train.dtype}: sampling...")
  return guarded("sampling", lambda: sampling_images_per_s(runner, ctx.plan, ctx.budget))


def core_ok(result: dict[str, Any], plan: Plan) -> bool:
  """Every planned flowergan iteration was timed, without an error."""
  entries = result.get("iterations", [])
  return len(entries) == len(plan.batch_sizes) * len(DTYPES) and all(
      "iteration_s" in e.get("flowergan", {}) for e in entries
  )


def imported_top_level_modules() -> list[str]:
  """The top-level modules imported so far that are not Python's own: what the machine that
  runs this must have installed (tests compare them with the accelerator image's packages)."""
  names = {name.split(".")[0] for name in list(sys.modules)}
  return sorted(n for n in names if n not in sys.stdlib_module_names and n != "__main__")


def write_outputs(result: dict[str, Any], out_dir: str, budget: Budget) -> None:
  """JSON and the Markdown table, each replaced whole (a kill never leaves half a file)."""
  result["elapsed_s"] = budget.elapsed()
  texts = {
      JSON_NAME: json.dumps(result, indent=1, default=str),
      TABLE_NAME: format_table(result) + "\n",
  }
  for name, text in texts.items():
    path = os.path.join(out_dir, name)
    with open(path + ".tmp", "w") as f:
      f.write(text)
    os.replace(path + ".tmp", path)


# --- the Markdown table ----------------------------------------------------------------------


def _g(x: Any, scale: float = 1.0, digits: int = 3) -> str:
  """A number in `digits` significant digits after dividing by `scale`; '–' for none."""
  if x is None or isinstance(x, (str, dict)):
    return "–"
  return f"{x / scale:.{digits}g}"


def _s_per_iter(part: dict[str, Any] | None) -> str:
  if not part:
    return "–"
  if "iteration_s" in part:
    s = part["iteration_s"]
    return f"{s['median']:.4g} ({s['min']:.4g}–{s['max']:.4g}, n={s['n']})"
  return "error" if "error" in part else "–"


def format_header(result: dict[str, Any]) -> list[str]:
  m = result.get("machine", {})
  versions = m.get("versions", {})
  soft = ", ".join(f"{k} {v}" for k, v in versions.items() if v)
  status = "ok" if result.get("core_ok") else "NOT ok (see errors)"
  lines = [
      "# flowergan accelerator check",
      "",
      f"{m.get('device_kind', '?')} ({m.get('platform', '?')}) ×{m.get('device_count', '?')}; "
      f"{soft}; {result.get('started_utc')}; {result.get('elapsed_s', 0):.0f} s of a "
      f"{result.get('budget_s', 0):.0f} s budget; flowergan measurements: {status}.",
  ]
  torch_info = result.get("torch", {})
  if torch_info.get("device"):
    lines.append(
        f"torch {torch_info.get('version')} on {torch_info['device']}"
        + (
            f" (CUDA {torch_info.get('cuda')}, cuDNN {torch_info.get('cudnn')}, cudnn.benchmark, "
            f"matmul TF32 {torch_info.get('matmul_allow_tf32')}, "
            f"cuDNN TF32 {torch_info.get('cudnn_allow_tf32')})"
            if torch_info["device"] == "cuda"
            else f" (threads: {torch_info.get('num_threads')})"
        )
        + "."
    )
  return lines


def format_checks(result: dict[str, Any]) -> list[str]:
  checks = result.get("checks", {})
  conv, prec, peaks = checks.get("conv_auto", {}), checks.get("matmul_precision", {}), {}
  lines = []
  if "error" in conv or not conv:
    lines.append(f"**'auto' convolutions:** {conv.get('error', 'not measured')}")
  else:
    lines.append(
        f"**'auto' convolutions** on {conv['backend']}: generator {conv['generator']}, critic "
        f"{conv['critic']} (flowergan's CPU formulations on the CPU, XLA's own 'lax' elsewhere): "
        + ("ok." if conv["ok"] else "**NOT as intended**.")
    )
  if "error" in prec or not prec:
    lines.append(f"**float32 matmul precision:** {prec.get('error', 'not measured')}")
  else:
    lines.append(
        f"**float32 matmul precision** (jax_default_matmul_precision="
        f"{prec['jax_default_matmul_precision']}): max relative error against float64 of a "
        f"{prec['size']}² matmul {prec['rel_error_default']:.2e} at the default precision, "
        f"{prec['rel_error_highest']:.2e} at HIGHEST: "
        + (
            "the default is reduced precision (TF32-like)."
            if prec["default_is_reduced_precision"]
            else "the default is full float32."
        )
    )
  peaks = result.get("peaks", {})
  if "error" in peaks or not peaks:
    lines.append(f"**Matmul peaks:** {peaks.get('error', 'not measured')}")
  else:
    lines.append(
        f"**Matmul peaks** ({peaks['size']}², measured in this run): float32 "
        f"{_g(peaks['float32'], 1e12)} TFLOP/s at the default precision "
        f"({_g(peaks['float32_highest'], 1e12)} at HIGHEST), bfloat16 "
        f"{_g(peaks['bfloat16'], 1e12)} TFLOP/s."
    )
  return [part for line in lines for part in ("", line)]


_COLUMNS = (
    "dtype",
    "batch",
    "flowergan s/iter (min–max)",
    "images/s",
    "compile s",
    "TFLOP/iter",
    "floor s",
    "× floor",
    "XLA memory GiB",
    "torch eager s/iter",
    "torch.compile s/iter",
    "flowergan / eager",
    "flowergan / compile",
)


def format_row(e: dict[str, Any]) -> str:
  if "skipped" in e:
    cells = [e["dtype"], str(e["batch_size"]), f"skipped: {e['skipped']}"]
    return "| " + " | ".join(cells + ["–"] * (len(_COLUMNS) - 3)) + " |"
  fg = e.get("flowergan", {})
  memory = (fg.get("compiled_memory_bytes") or {}).get("total")
  compile_s = fg["lower_s"] + fg["compile_s"] if "compile_s" in fg else None
  cells = [
      e["dtype"],
      str(e["batch_size"]),
      _s_per_iter(fg),
      _g(fg.get("images_per_s"), digits=4),
      _g(compile_s),
      _g(fg.get("flops_per_iteration"), 1e12),
      _g(fg.get("floor_s")),
      _g(fg.get("time_over_floor")),
      _g(memory, 2**30),
      _s_per_iter(e.get("torch_eager")),
      _s_per_iter(e.get("torch_compile")),
      _g(e.get("flowergan_over_torch_eager")),
      _g(e.get("flowergan_over_torch_compile")),
  ]
  return "| " + " | ".join(cells) + " |"


def format_iterations(result: dict[str, Any]) -> list[str]:
  entries = result.get("iterations", [])
  lines = [
      "",
      "| " + " | ".join(_COLUMNS) + " |",
      "|" + "---|" * len(_COLUMNS),
  ]
  lines += [format_row(e) for e in entries]
  timed = [e for e in entries if "iteration_s" in e.get("flowergan", {})]
  if timed:
    first = timed[0]["flowergan"]
    lines += [
        "",
        f"{result['model']['config']}, {result['model']['image_size']}². One iteration = "
        f"{result['model']['n_critic']} critic steps + 1 generator "
        "step; images/s = real images the critic consumes. FLOPs: "
        f"{first['flops_source'].replace('_', ' ')}; floor = FLOPs ÷ the matmul peak of the "
        "step's dtype measured above. Compile s = trace, lower and compile. XLA memory = the "
        "compiled step's temp + arguments + outputs − aliased. Ratios: median time over median "
        "time (< 1: flowergan faster); torch timed interleaved with flowergan.",
    ]
  peak_memory = [
      (e["flowergan"].get("device_memory_bytes") or {}).get("peak_bytes_in_use") for e in timed
  ]
  if any(peak_memory):
    lines.append("")
    lines.append(
        "Device memory peak_bytes_in_use after each row (whole process, in table order): "
        + ", ".join(f"{_g(p, 2**30)} GiB" for p in peak_memory)
        + "."
    )
  torch_memory = [e.get("torch_peak_memory_bytes") for e in timed]
  if any(torch_memory):
    lines.append("")
    lines.append(
        "torch's peak CUDA memory per row (its runners of that row together): "
        + ", ".join(f"{_g(p, 2**30)} GiB" for p in torch_memory)
        + "."
    )
  lines += format_torch_notes(result, entries)
  return lines


def format_torch_notes(result: dict[str, Any], entries: list[dict[str, Any]]) -> list[str]:
  lines = [""]
  full = result.get("torch_compile_full_iteration")
  if full:
    if full.get("status") == "failed":
      lines.append(
          f"**torch.compile of the whole iteration** ({full.get('backend')}; the penalty's double "
          f"backward through compiled code): refused — `{full.get('error')}`. The torch.compile "
          "column times the generator under torch.compile, the critic eager."
      )
    elif full.get("status") == "ran":
      lines.append(
          f"**torch.compile of the whole iteration** ({full.get('backend')}, double backward "
          f"included) ran; first iteration {full.get('first_iteration_s', 0):.1f} s."
      )
    else:
      lines.append(f"**torch.compile of the whole iteration:** {full.get('status')}.")
  for e in entries:
    for name in ("torch_eager", "torch_compile"):
      part = e.get(name, {})
      if "error" in part or "status" in part:
        lines.append(
            f"- {name} at {e['dtype']}, batch {e['batch_size']}: "
            f"{part.get('error') or part.get('status')}"
        )
  return lines


def format_tail(result: dict[str, Any]) -> list[str]:
  lines = ["", "**Sampling** (`sampling.generate_from_z`, EMA generator, images back on the host):"]
  for dtype, s in result.get("sampling", {}).items():
    if "images" not in s:
      lines.append(f"- {dtype}: {s.get('error') or s.get('status')}")
      continue
    per_batch = [
        f"batch {b}: {_g(v['images_per_s'], digits=4)} images/s"
        for b, v in s.items()
        if isinstance(v, dict)
    ]
    lines.append(f"- {dtype}, {s['images']} images: " + "; ".join(per_batch))
  inception = result.get("inception", {})
  lines.append("")
  if inception.get("status") == "measured":
    lines.append(
        f"**Inception features** (random weights, batch {inception['batch']}): "
        f"{_g(inception['images_per_s'], digits=4)} images/s."
    )
  else:
    lines.append(
        f"**Inception features:** {inception.get('status') or inception.get('error', '–')}"
    )
  errors = collect_errors(result)
  lines += ["", "**Errors:** " + ("none." if not errors else "")]
  lines += [f"- {e}" for e in errors]
  return lines


def collect_errors(tree: Any, path: str = "") -> list[str]:
  """'path: error' of every part that recorded one."""
  if isinstance(tree, list):
    return [err for i, item in enumerate(tree) for err in collect_errors(item, f"{path}[{i}]")]
  if not isinstance(tree, dict):
    return []
  out = [f"{path or 'run'}: {tree['error']}"] if isinstance(tree.get("error"), str) else []
  for key, value in tree.items():
    if key != "error":
      out += collect_errors(value, f"{path}.{key}" if path else key)
  return out


def format_table(result: dict[str, Any]) -> str:
  """The Markdown report of `run_check`'s results (whatever part of them exists yet)."""
  return "\n".join(
      format_header(result)
      + format_checks(result)
      + format_iterations(result)
      + format_tail(result)
  )


def define_flags() -> None:
  """The command's flags, defined when it runs as a command only: tests import this module
  beside `benchmarks.bench`, whose flags share some names."""
  flags.DEFINE_string(
      "out",
      os.environ.get("OUT") or "runs/accelerator_check",
      "Folder for accelerator_check.json and accelerator_check.md (default $OUT if set).",
  )
  flags.DEFINE_float(
      "budget_s",
      390.0,
      "Wall-clock seconds for the whole run: repetitions and optional parts (torch.compile, "
      "sampling, Inception) are cut short to stay inside it. One compile cannot be cut.",
  )
  flags.DEFINE_boolean(
      "tiny",
      False,
      "The tiny model (configs/cwgan128.py:tiny, 16×16) with small batches, matrices and "
      "repetitions: the whole script in seconds on a CPU (what CI runs).",
  )
  flags.DEFINE_boolean("torch", True, "Time the PyTorch reference (if torch imports).")
  flags.DEFINE_string(
      "torch_compile_backend",
      None,
      "torch.compile backend: default 'inductor', 'aot_eager' with --tiny (the same graph capture "
      "and autograd handling, without compiling kernels); 'none' skips torch.compile.",
  )


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if flags.FLAGS.budget_s <= 0:
    print(f"error: --budget_s must be > 0, got {flags.FLAGS.budget_s}.", file=sys.stderr)
    return 2
  out_dir = flags.FLAGS.out
  try:
    os.makedirs(out_dir, exist_ok=True)
  except OSError as e:
    print(
        f"error: cannot create --out={out_dir} ({e.strerror}): choose a writable folder.",
        file=sys.stderr,
    )
    return 2
  plan = plan_for(
      flags.FLAGS.tiny,
      torch=flags.FLAGS.torch,
      torch_compile_backend=flags.FLAGS.torch_compile_backend,
  )
  result = run_check(plan, Budget(flags.FLAGS.budget_s), out_dir, " ".join(sys.argv))
  print(format_table(result))
  log(f"wrote {os.path.join(out_dir, JSON_NAME)} and {TABLE_NAME} in {result['elapsed_s']:.0f} s")
  return 0 if result["core_ok"] else 1


if __name__ == "__main__":
  define_flags()
  app.run(main)
