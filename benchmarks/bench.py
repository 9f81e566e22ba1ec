r"""Benchmark of the training iteration, side by side with a PyTorch reference and the FLOP floor.

  python -m benchmarks.bench --config=configs/cwgan128.py --batch_sizes=16 --components \
      --also_dtype=bfloat16 --json=bench_cpu.json      # float32 and bfloat16 side by side

On a GPU (the same code; torch eager, then the generator under torch.compile; the config's
`model.critic_conv` / `model.generator_conv` = 'auto' use XLA's own convolutions there,
--critic_conv=im2col --generator_conv=dots times the CPU formulations instead):

  python -m benchmarks.bench --config=configs/cwgan128.py --batch_sizes=64 \
      --also_dtype=bfloat16 --json=bench_gpu.json
  python -m benchmarks.bench --config=configs/cwgan128.py --batch_sizes=64 \
      --config.train.dtype=bfloat16 --torch_compile --json=bench_gpu_compile.json

Everything runs on in-memory random arrays (no TensorFlow; the input pipeline is measured only
when `flowergan.input_pipeline` imports). For each batch size it reports:

  * the jitted training iteration (n_critic critic steps + 1 generator step): seconds per
    iteration (median, min, max over --repeats after a warm-up) and images/s (real images the
    critic consumes: n_critic·B / time); its compile time separately;
  * FLOPs per iteration from XLA's cost analysis, the device's peak FLOP/s measured in the same
    run (a large matmul in the same dtype), the floor (FLOPs ÷ peak) and the fraction of peak;
  * peak device memory where the backend reports it (None on CPU);
  * sampling: images/s of `WGANGP.generate` (inference mode) at --sample_batch;
  * PyTorch (--torch, default on when torch imports): the same networks and iteration
    (`benchmarks.torch_reference`), first checked to compute the same losses, penalty, images
    and gradients on the same weights; timed interleaved with flowergan (one flowergan
    iteration, one torch iteration, ...) so that both see the same machine load; ratio =
    flowergan time / torch time;
  * --components: the critic step and the generator step timed separately (both frameworks);
  * --conv_layers: each distinct 3×3 conv of the generator alone (forward, kernel gradient,
    input gradient) with XLA's convolution, flowergan's 'dots' formulation and torch;
  * --also_dtype=bfloat16: flowergan's step in that dtype too, timed in the same interleaved
    loop, with its compile time, FLOPs, the matmul peak in that dtype and the speed-up.

Results are printed as a table and written as JSON (--json).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from flowergan import default_config
from flowergan import mesh as mesh_lib
from flowergan import models, ops
from flowergan import train_step as ts
from flowergan.ops import conv as conv_ops

_CONFIG = config_flags.DEFINE_config_file(
    "config",
    "configs/cwgan128.py",
    "Config file; override fields as --config.train.dtype=bfloat16.",
    lock_config=True,
)
_BATCH_SIZES = flags.DEFINE_list("batch_sizes", ["16"], "Global batch sizes to benchmark.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed iterations per batch size (after warm-up).")
_WARMUP = flags.DEFINE_integer("warmup", 1, "Untimed iterations after compiling.")
_JSON = flags.DEFINE_string("json", None, "Write the results here as JSON.")
_TORCH = flags.DEFINE_boolean("torch", True, "Also time the PyTorch reference (if installed).")
_TORCH_COMPILE = flags.DEFINE_boolean(
    "torch_compile",
    False,
    "Run the torch generator under torch.compile (the critic stays "
    "eager: torch.compile cannot double-backward for the gradient penalty).",
)
_TORCH_CHANNELS_LAST = flags.DEFINE_boolean(
    "torch_channels_last",
    False,
    "Run the torch reference in channels_last (NHWC) memory "
    "format instead of PyTorch's default NCHW.",
)
_TORCH_DEVICE = flags.DEFINE_string("torch_device", "auto", "'auto' (cuda if available), 'cpu'.")
_CHECK = flags.DEFINE_boolean("check", True, "Check torch == flowergan numerically first.")
_COMPONENTS = flags.DEFINE_boolean(
    "components", False, "Also time one critic step and one generator step."
)
_SAMPLE_BATCH = flags.DEFINE_integer(
    "sample_batch", 0, "Sampling batch (0: 64 on CPU, 1024 on accelerators)."
)
_PEAK_SIZE = flags.DEFINE_integer(
    "peak_size", 0, "Matmul size for the peak (0: 4096 on CPU, 8192 otherwise)."
)
_CRITIC_CONV = flags.DEFINE_enum(
    "critic_conv",
    None,
    list(ops.CONV_CHOICES["critic"]),
    "Sets config.model.critic_conv, the critic's convolutions (same math): default the "
    "config's ('auto': im2col on CPU, lax elsewhere); 'lax' = plain lax.conv_general_dilated, "
    "for comparison.",
)
_GENERATOR_CONV = flags.DEFINE_enum(
    "generator_conv",
    None,
    list(ops.CONV_CHOICES["generator"]),
    "Sets config.model.generator_conv, the generator's convolutions (same math): default the "
    "config's ('auto': dots on CPU, lax elsewhere).",
)
_ALSO_DTYPE = flags.DEFINE_enum(
    "also_dtype",
    None,
    ["float32", "bfloat16"],
    "Also time flowergan's step with this train.dtype, interleaved with the config's dtype "
    "in the same run, and report the speed-up (e.g. --also_dtype=bfloat16).",
)
_CONV_LAYERS = flags.DEFINE_boolean(
    "conv_layers",
    False,
    "Also time each distinct 3×3 generator conv layer alone: forward, "
    "kernel gradient and input gradient for XLA's conv, the 'dots' formulation and torch.",
)
_INPUT_PIPELINE = flags.DEFINE_boolean(
    "input_pipeline", True, "Measure the input pipeline (synthetic source) if it imports."
)

Timings = dict[str, list[float]]


@dataclasses.dataclass(frozen=True)
class Options:
  """What `run_benchmark` measures: the flags of the same names (`with_torch` is --torch).
  Zeros and 'auto' are defaults that `resolve_options` fills in for the machine."""

  batch_sizes: Sequence[int] = (16,)
  repeats: int = 5
  warmup: int = 1
  with_torch: bool = True
  torch_device: str | None = "auto"  # None: no torch
  torch_compile: bool = False
  torch_channels_last: bool = False
  check: bool = True
  components: bool = False
  sample_batch: int = 0
  peak_size: int = 0
  input_pipeline: bool = True
  critic_conv: str | None = None  # None: the config's
  generator_conv: str | None = None
  also_dtype: str | None = None
  conv_layers: bool = False


# --- timing helpers --------------------------------------------------------------------------


def summarise(times: list[float]) -> dict[str, Any]:
  return {
      "median": statistics.median(times),
      "min": min(times),
      "max": max(times),
      "all": list(times),
  }


def time_interleaved(
    fns: dict[str, Callable[[], Any]],
    *,
    warmup: int,
    repeats: int,
    log: Callable[[str], None] | None = None,
) -> tuple[Timings, Timings]:
  """Wall and process CPU seconds of each of `fns` (which must block until done), called in
  turn `repeats` times after `warmup` untimed rounds: interleaved, so that all see the same
  load on a shared machine. `log` gets one line per round."""
  for _ in range(warmup):
    for fn in fns.values():
      fn()
  wall: Timings = {name: [] for name in fns}
  cpu: Timings = {name: [] for name in fns}
  for r in range(repeats):
    for name, fn in fns.items():
      t, c = time.perf_counter(), time.process_time()
      fn()
      wall[name].append(time.perf_counter() - t)
      cpu[name].append(time.process_time() - c)
    if log is not None:
      times = ", ".join(f"{name} {wall[name][-1]:.3f} s" for name in fns)
      log(f"  repeat {r + 1}/{repeats}: {times}")
  return wall, cpu


def measure_peak_flops(
    dtype: str = "float32", size: int = 4096, repeats: int = 5
) -> dict[str, float]:
  """Best FLOP/s of a size×size matmul with `dtype` inputs on the default device (2·n³ FLOPs):
  with `dtype` output and, for bfloat16, also with float32 accumulation/output (the faster
  one on some CPUs). Returns {'peak': the best, variant: FLOP/s, ...}."""
  a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32).astype(dtype)
  b = jax.random.normal(jax.random.key(1), (size, size), jnp.float32).astype(dtype)
  variants = {f"{dtype}_matmul": jax.jit(jnp.matmul)}
  if dtype != "float32":
    variants[f"{dtype}_matmul_f32_accumulate"] = jax.jit(
        lambda a, b: jnp.matmul(a, b, preferred_element_type=jnp.float32)
    )
  out = {}
  for name, matmul in variants.items():
    matmul(a, b).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
      t = time.perf_counter()
      matmul(a, b).block_until_ready()
      best = min(best, time.perf_counter() - t)
    out[name] = 2.0 * size**3 / best
  out["peak"] = max(out.values())
  return out


def floor_fields(flops: float, median_s: float, peak: float) -> dict[str, float]:
  """Achieved FLOP/s, fraction of `peak`, the FLOP floor (seconds at `peak`) and time ÷ floor."""
  floor_s = flops / peak
  return {
      "achieved_flops_per_s": flops / median_s,
      "fraction_of_peak": flops / median_s / peak,
      "floor_s": floor_s,
      "time_over_floor": median_s / floor_s,
  }


def peak_memory_bytes(device) -> int | None:
  """Peak bytes in use on `device`, or None where the backend keeps no statistics (CPU)."""
  try:
    stats = device.memory_stats()
  except Exception:  # backends without statistics raise different errors
    return None
  if not stats:
    return None
  return stats.get("peak_bytes_in_use")


def compiled_flops(compiled) -> float | None:
  """FLOPs of a compiled computation from XLA's cost analysis, None where there is none."""
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else None
  if not analysis or "flops" not in analysis:
    return None
  return float(analysis["flops"])


# --- flowergan -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Component:
  """One compiled training component: `run()` runs it to completion; `flops` from XLA."""

  run: Callable[[], Any]
  flops: float | None


def random_batch(
    n_critic: int, batch_size: int, image_size: int, num_classes: int, seed: int
) -> dict[str, np.ndarray]:
  """One iteration's host batch of uniform images in [-1, 1] and random labels."""
  rng = np.random.default_rng(seed)
  shape = (n_critic, batch_size, image_size, image_size, 3)
  return {
      "image": rng.uniform(-1, 1, shape).astype(np.float32),
      "label": rng.integers(0, num_classes, (n_critic, batch_size)).astype(np.int32),
  }


@dataclasses.dataclass
class FlaxRunner:
  """A compiled training step with its own state and an in-memory random batch."""

  config: ml_collections.ConfigDict
  batch_size: int
  seed: int = 0

  def __post_init__(self):
    self.num_classes = len(default_config.classes_of(self.config.data))
    self.gan = ts.wgangp_from_config(self.config, num_classes=self.num_classes)
    self.mesh = mesh_lib.make_mesh()
    mesh_lib.check_batch_size(self.batch_size, self.mesh)
    self.state = ts.init_state(self.gan, jax.random.key(self.seed), self.mesh)
    self.initial_state = jax.device_get(self.state)  # for the torch reference's weights
    self.host_batch = random_batch(
        self.gan.n_critic,
        self.batch_size,
        self.config.data.image_size,
        self.num_classes,
        self.seed,
    )
    self.batch = mesh_lib.shard_batch(self.host_batch, self.mesh)
    self.key = jax.random.key(self.seed + 1)
    self.compile_step()

  def compile_step(self) -> None:
    """Traces, lowers and compiles the training step, timing both and reading its FLOPs."""
    step = ts.make_train_step(self.gan, self.mesh)
    t = time.perf_counter()
    lowered = step.lower(self.state, self.batch, self.key)
    self.trace_s = time.perf_counter() - t
    t = time.perf_counter()
    self.compiled = lowered.compile()
    self.compile_s = time.perf_counter() - t
    self.flops = compiled_flops(self.compiled)

  def iteration(self) -> None:
    self.state, metrics = self.compiled(self.state, self.batch, self.key)
    jax.block_until_ready((self.state, metrics))
    if not bool(metrics["finite"]):
      raise RuntimeError("non-finite training metrics in the benchmark")

  def components(self) -> dict[str, Component]:
    """One critic step and one generator step, compiled separately (the step's own code)."""
    gan, state = self.gan, self.state
    images, labels = self.batch["image"][0], self.batch["label"][0]
    key = jax.random.key(3)

    def critic_step(state, images, labels, key):
      carry = (state.d_params, state.d_opt_state, state.g_batch_stats)
      return gan.critic_update(state.g_params, carry, (images, labels, key))

    def generator_step(state, labels, key):
      return gan.generator_update(
          state.g_params, state.g_opt_state, state.g_batch_stats, state.d_params, labels, key
      )

    steps = {
        "critic_step": (critic_step, (state, images, labels, key)),
        "generator_step": (generator_step, (state, labels, key)),
    }
    out = {}
    for name, (fn, args) in steps.items():
      compiled = jax.jit(fn).lower(*args).compile()
      out[name] = Component(
          run=lambda compiled=compiled, args=args: jax.block_until_ready(compiled(*args)),
          flops=compiled_flops(compiled),
      )
    return out

  def sampling_images_per_s(self, batch: int, repeats: int = 3) -> float:
    generate = jax.jit(self.gan.generate)
    z = jax.random.normal(jax.random.key(5), (batch, self.gan.z_dim))
    labels = jnp.arange(batch, dtype=jnp.int32) % self.num_classes
    args = (self.state.ema_params, self.state.g_batch_stats, z, labels)
    generate(*args).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
      t = time.perf_counter()
      generate(*args).block_until_ready()
      best = min(best, time.perf_counter() - t)
    return batch / best


# --- each generator conv layer alone ---------------------------------------------------------

_CONV_PARTS = ("forward", "kernel_grad", "input_grad")


def generator_conv_shapes(config) -> list[tuple[int, int, int]]:
  """(resolution, C_in, C_out) of each distinct 3×3 conv of the generator, output layer last."""
  width, shapes, channels, size = config.model.width, [], 4 * config.model.width, 4
  for stage in models.generator_stage_channels(config.data.image_size, width):
    size *= 2
    for features in stage:
      if (size, channels, features) not in shapes:
        shapes.append((size, channels, features))
      channels = features
  return shapes + [(size, channels, 3)]


def jax_conv_fns(conv, x, k, g) -> dict[str, Callable[[], Any]]:
  """Jitted forward, kernel gradient and input gradient of a 3×3 'same' NHWC conv, each
  blocking until done."""
  pad, dn = ((1, 1), (1, 1)), ("NHWC", "HWIO", "NHWC")
  forward = lambda x, k: conv(x, k, (1, 1), pad, dimension_numbers=dn)
  fns = {
      "forward": jax.jit(forward),
      "kernel_grad": jax.jit(lambda x, k, g: jax.vjp(lambda k: forward(x, k), k)[1](g)[0]),
      "input_grad": jax.jit(lambda x, k, g: jax.vjp(lambda x: forward(x, k), x)[1](g)[0]),
  }
  args = {"forward": (x, k), "kernel_grad": (x, k, g), "input_grad": (x, k, g)}
  return {
      part: lambda fn=fn, args=args[part]: jax.block_until_ready(fn(*args))
      for part, fn in fns.items()
  }


def torch_conv_fns(x, k, g, device: str) -> dict[str, Callable[[], Any]]:
  """`jax_conv_fns` in torch (NCHW); its gradients include the forward pass autograd needs."""
  import torch  # optional dependency

  tx = torch.from_numpy(np.array(x)).permute(0, 3, 1, 2).contiguous().to(device)
  tk = torch.from_numpy(np.array(k)).permute(3, 2, 0, 1).contiguous().to(device)
  tg = torch.from_numpy(np.array(g)).permute(0, 3, 1, 2).contiguous().to(device)
  sync = torch.cuda.synchronize if tx.is_cuda else (lambda: None)

  def grad(wrt):
    inputs = tx.detach().requires_grad_(wrt == "x")
    kernel = tk.detach().requires_grad_(wrt == "k")
    out = torch.nn.functional.conv2d(inputs, kernel, padding=1)
    torch.autograd.grad(out, inputs if wrt == "x" else kernel, tg)
    sync()

  def forward():
    with torch.no_grad():
      torch.nn.functional.conv2d(tx, tk, padding=1)
    sync()

  return {
      "forward": forward,
      "kernel_grad": lambda: grad("k"),
      "input_grad": lambda: grad("x"),
  }


def conv_layer_timings(
    config, batch_size: int, *, repeats: int = 5, with_torch: bool = True, torch_device: str = "cpu"
) -> list[dict[str, Any]]:
  """Median seconds of one 3×3 'same' conv layer (forward, kernel gradient, input gradient),
  per distinct generator layer: XLA's convolution ('lax'), flowergan's generator formulation
  ('dots') and torch's (NCHW, interleaved with the others; its gradient times include the
  forward pass that autograd needs, JAX's are the backward alone)."""
  convs = {"lax": jax.lax.conv_general_dilated, "dots": conv_ops.dots_conv_general_dilated}
  rows = []
  for size, c_in, c_out in generator_conv_shapes(config):
    x = jax.random.normal(jax.random.key(0), (batch_size, size, size, c_in))
    k = jax.random.normal(jax.random.key(1), (3, 3, c_in, c_out)) * 0.05
    g = jax.random.normal(jax.random.key(2), (batch_size, size, size, c_out))
    fns = {name: jax_conv_fns(conv, x, k, g) for name, conv in convs.items()}
    if with_torch:
      fns["torch"] = torch_conv_fns(x, k, g, torch_device)
    row = {"size": size, "c_in": c_in, "c_out": c_out}
    for part in _CONV_PARTS:
      wall, _ = time_interleaved(
          {name: impl[part] for name, impl in fns.items()}, warmup=1, repeats=repeats
      )
      row.update({f"{name}_{part}_s": statistics.median(wall[name]) for name in fns})
    rows.append(row)
  return rows


# --- PyTorch ---------------------------------------------------------------------------------


def torch_available() -> bool:
  return importlib.util.find_spec("torch") is not None


class TorchRunner:
  """The PyTorch reference on the same initial weights and the same (NCHW) batch."""

  def __init__(
      self,
      flax_runner: FlaxRunner,
      *,
      device: str,
      compile_generator: bool,
      channels_last: bool = False,
  ):
    import torch  # optional dependency

    from benchmarks import torch_reference

    self.torch = torch
    self.device = torch.device(device)
    autocast = torch.bfloat16 if flax_runner.config.train.dtype == "bfloat16" else None
    self.gan = torch_reference.from_flax(
        flax_runner.gan,
        flax_runner.config.train,
        flax_runner.initial_state,
        device=device,
        compile_generator=compile_generator,
        autocast_dtype=autocast,
        channels_last=channels_last,
    )
    self.images = (
        torch.from_numpy(flax_runner.host_batch["image"])
        .permute(0, 1, 4, 2, 3)
        .contiguous()
        .to(self.device)
    )
    self.labels = torch.from_numpy(flax_runner.host_batch["label"].astype("int64")).to(self.device)

  def sync(self) -> None:
    if self.device.type == "cuda":
      self.torch.cuda.synchronize()

  def iteration(self) -> None:
    metrics = self.gan.iteration(self.images, self.labels)
    self.sync()
    if not all(bool(self.torch.isfinite(v)) for v in metrics.values()):
      raise RuntimeError("non-finite torch metrics in the benchmark")

  def components(self) -> dict[str, Callable[[], None]]:
    """One critic step and one generator step, as `FlaxRunner.components`."""
    gan = self.gan
    real = self.images[0].contiguous(memory_format=gan.memory_format)
    labels = self.labels[0]

    def critic_step():
      with gan.autocast():
        gan.set_critic_grad(True)
        gan.critic_step(real, labels)
      self.sync()

    def generator_step():
      with gan.autocast():
        gan.set_critic_grad(False)
        gan.generator_step(labels)
      self.sync()

    return {"critic_step": critic_step, "generator_step": generator_step}


def prepare_torch(device: str) -> str:
  """The torch device for `device` ('auto': cuda if available); on CPU, torch's thread count
  set to XLA:CPU's."""
  import torch  # optional dependency

  from benchmarks import torch_reference

  if device == "auto":
    device = "cuda" if torch.cuda.is_available() else "cpu"
  if device == "cpu":
    torch.set_num_threads(torch_reference.default_num_threads())
  return device


def check_torch(flax_runner: FlaxRunner, batch_size: int, log: Callable[[str], None]) -> dict:
  """`torch_reference.compare_with_flax` on the runner's initial weights."""
  from benchmarks import torch_reference  # imports torch, an optional dependency

  log("checking the PyTorch reference against flowergan (float32, same weights)...")
  check = torch_reference.compare_with_flax(
      flax_runner.gan, flax_runner.initial_state, batch_size=min(batch_size, 4)
  )
  log(
      f"  max relative error {check['max_error']:.2e} (torch native "
      f"kernels), {check['max_error_default_kernels']:.2e} (oneDNN)"
  )
  return check


# --- input pipeline --------------------------------------------------------------------------


def input_pipeline_images_per_s(
    config, batch_size: int, *, seconds: float = 5.0, min_items: int = 3
) -> float | str:
  """Real images/s the input pipeline delivers (synthetic source), or 'n/a' (no TensorFlow,
  or the module is not there)."""
  try:
    from flowergan import input_pipeline  # needs TensorFlow, which the benchmark does not
  except ImportError as e:
    return f"n/a ({e})"
  data_config = config.data.copy_and_resolve_references()
  with data_config.unlocked():
    data_config.source = "synthetic"
  iterator, _ = input_pipeline.create_train_iterator(
      data_config, global_batch_size=batch_size, n_critic=config.train.n_critic, seed=config.seed
  )
  next(iterator)  # builds the in-memory set and the tf.data graph
  items, t = 0, time.perf_counter()
  while items < min_items or time.perf_counter() - t < seconds:
    next(iterator)
    items += 1
  return items * config.train.n_critic * batch_size / (time.perf_counter() - t)


# --- the benchmark ---------------------------------------------------------------------------


def machine_info(with_torch: bool) -> dict[str, Any]:
  device = jax.devices()[0]
  info = {
      "platform": device.platform,
      "device_kind": device.device_kind,
      "device_count": jax.device_count(),
      "jax": jax.__version__,
      "python": platform.python_version(),
      "machine": platform.machine(),
      "processor": platform.processor(),
      "flax": flax.__version__,
  }
  info["jax_compilation_cache_dir"] = jax.config.jax_compilation_cache_dir  # compile_s: hit?
  try:
    info["load_average"] = os.getloadavg()  # others' work on a shared machine skews timings
  except OSError:
    pass
  try:
    info["cpu_cores_available"] = len(os.sched_getaffinity(0))
  except AttributeError:
    info["cpu_cores_available"] = os.cpu_count()
  if with_torch:
    import torch  # optional dependency

    info["torch"] = torch.__version__
    info["torch_num_threads"] = torch.get_num_threads()
  return info


def resolve_options(options: Options, dtype: str) -> Options:
  """`options` with the machine's defaults filled in: torch only where it imports (its device
  and CPU threads set by `prepare_torch`), the peak's matmul size and the sampling batch; no
  --also_dtype equal to `dtype`."""
  on_cpu = jax.devices()[0].platform == "cpu"
  with_torch = options.with_torch and torch_available()
  return dataclasses.replace(
      options,
      with_torch=with_torch,
      torch_device=prepare_torch(options.torch_device) if with_torch else None,
      peak_size=options.peak_size or (4096 if on_cpu else 8192),
      sample_batch=options.sample_batch or (64 if on_cpu else 1024),
      also_dtype=None if options.also_dtype == dtype else options.also_dtype,
  )


def with_overrides(config, fields: dict[str, Any]) -> ml_collections.ConfigDict:
  """A copy of `config` with `fields` ('section.name': value) set; None values are skipped."""
  config = config.copy_and_resolve_references()
  with config.unlocked():
    for path, value in fields.items():
      if value is not None:
        section, name = path.split(".")
        config[section][name] = value
  return config


def run_header(config, options: Options, log: Callable[[str], None]) -> dict[str, Any]:
  """The run's description and the matmul peaks (in the config's dtype and in --also_dtype)."""
  dtype, also, size = config.train.dtype, options.also_dtype, options.peak_size
  log(f"measuring the {dtype} matmul peak ({size}²)...")
  peaks = measure_peak_flops(dtype, size)
  other_peak = None
  if also:
    log(f"measuring the {also} matmul peak ({size}²)...")
    other_peak = measure_peak_flops(also, size)["peak"]
  with_torch = options.with_torch
  return {
      "machine": machine_info(with_torch),
      "dtype": dtype,
      "image_size": config.data.image_size,
      "n_critic": config.train.n_critic,
      "critic_conv": config.model.critic_conv,
      "generator_conv": config.model.generator_conv,
      "repeats": options.repeats,
      "peak_flops_per_s": peaks["peak"],
      "peak_matmul_flops_per_s": peaks,
      "peak_matmul_size": size,
      "torch_device": options.torch_device,
      "torch_compile": options.torch_compile if with_torch else None,
      "torch_channels_last": options.torch_channels_last if with_torch else None,
      "also_dtype": also,
      "also_dtype_peak_flops_per_s": other_peak,
      "results": [],
  }


def summarise_flowergan(
    runner: FlaxRunner, wall: list[float], cpu: list[float], images: int, peak: float
) -> dict[str, Any]:
  """The iteration's times, images/s (`images` per iteration), FLOP floor and memory."""
  out = {
      "compile_s": runner.compile_s,
      "trace_lower_s": runner.trace_s,
      "flops_per_iteration": runner.flops,
      "iteration_s": summarise(wall),
      # CPU seconds of the process (all threads) per iteration: less sensitive than wall time
      # to other jobs on a shared machine, but includes the thread pools' spin-waiting.
      "iteration_cpu_s": summarise(cpu),
      "images_per_s": images / statistics.median(wall),
  }
  if runner.flops:
    out.update(floor_fields(runner.flops, statistics.median(wall), peak))
  out["peak_memory_bytes"] = peak_memory_bytes(jax.devices()[0])
  return out


def summarise_other_dtype(
    runner: FlaxRunner, wall: list[float], images: int, peak: float
) -> dict[str, Any]:
  """The --also_dtype step's times, images/s and fraction of that dtype's matmul `peak`."""
  out = {
      "compile_s": runner.compile_s,
      "flops_per_iteration": runner.flops,
      "iteration_s": summarise(wall),
      "images_per_s": images / statistics.median(wall),
  }
  if runner.flops:
    out["fraction_of_peak"] = runner.flops / statistics.median(wall) / peak
  return out


def ratios(name: str, times: list[float], reference: list[float]) -> dict[str, float]:
  """`name`: the ratio of the median times, and the median of the pairwise ratios (each pair
  ran back to back); < 1: `times` is faster."""
  return {
      name: statistics.median(times) / statistics.median(reference),
      f"{name}_pairwise_median": statistics.median(t / r for t, r in zip(times, reference)),
  }


def time_components(
    flax_runner: FlaxRunner, torch_runner: TorchRunner | None, repeats: int
) -> tuple[dict[str, Any], dict[str, Any] | None]:
  """The critic step and the generator step alone, flowergan's interleaved with torch's:
  flowergan's {name: {'s', 'flops'}} and torch's {name: {'s'}} (None without torch)."""
  flax_steps = flax_runner.components()
  torch_steps = torch_runner.components() if torch_runner is not None else {}
  flax_out, torch_out = {}, {}
  for name, step in flax_steps.items():
    fns = {"flowergan": step.run}
    if name in torch_steps:
      fns["torch"] = torch_steps[name]
    wall, _ = time_interleaved(fns, warmup=1, repeats=max(repeats, 3))
    flax_out[name] = {"s": summarise(wall["flowergan"]), "flops": step.flops}
    if "torch" in wall:
      torch_out[name] = {"s": summarise(wall["torch"])}
  return flax_out, (torch_out if torch_runner is not None else None)


def make_runners(
    batch_size: int,
    config,
    other_config,
    options: Options,
    log: Callable[[str], None],
) -> tuple[dict[str, FlaxRunner | TorchRunner], dict | None]:
  """The compiled steps to time, by name: 'flowergan', 'flowergan <also_dtype>' and 'torch' (on
  flowergan's initial weights, checked against it first with --check); and that check."""
  log(f"batch {batch_size}: compiling the flowergan step...")
  runners = {"flowergan": FlaxRunner(config, batch_size)}
  if options.also_dtype:
    log(f"batch {batch_size}: compiling the flowergan step in {options.also_dtype}...")
    runners[f"flowergan {options.also_dtype}"] = FlaxRunner(other_config, batch_size)
  torch_check = None
  if options.with_torch:
    if options.check:
      torch_check = check_torch(runners["flowergan"], batch_size, log)
    runners["torch"] = TorchRunner(
        runners["flowergan"],
        device=options.torch_device,
        compile_generator=options.torch_compile,
        channels_last=options.torch_channels_last,
    )
  return runners, torch_check


def summarise_iterations(
    runners: dict[str, FlaxRunner | TorchRunner],
    wall: Timings,
    cpu: Timings,
    images: int,
    options: Options,
    peaks: tuple[float, float | None],
) -> dict[str, Any]:
  """The timed iterations of every runner (`images` real images each) and their ratios."""
  out = {
      "flowergan": summarise_flowergan(
          runners["flowergan"], wall["flowergan"], cpu["flowergan"], images, peaks[0]
      )
  }
  also, dtype = options.also_dtype, runners["flowergan"].config.train.dtype
  if also:
    name = f"flowergan {also}"
    out[f"flowergan_{also}"] = summarise_other_dtype(runners[name], wall[name], images, peaks[1])
    out.update(ratios(f"{also}_over_{dtype}", wall[name], wall["flowergan"]))
  if "torch" in runners:
    out["torch"] = {
        "iteration_s": summarise(wall["torch"]),
        "iteration_cpu_s": summarise(cpu["torch"]),
        "images_per_s": images / statistics.median(wall["torch"]),
    }
    out.update(ratios("flowergan_over_torch", wall["flowergan"], wall["torch"]))
  return out


def benchmark_batch_size(
    batch_size: int,
    config,
    other_config,
    options: Options,
    peaks: tuple[float, float | None],
    log: Callable[[str], None],
) -> dict[str, Any]:
  """Everything measured at one batch size: one entry of `run_benchmark`'s 'results'."""
  runners, torch_check = make_runners(batch_size, config, other_config, options, log)
  wall, cpu = time_interleaved(
      {name: runner.iteration for name, runner in runners.items()},
      warmup=options.warmup,
      repeats=options.repeats,
      log=log,
  )
  images = config.train.n_critic * batch_size
  entry = {"batch_size": batch_size}
  entry.update(summarise_iterations(runners, wall, cpu, images, options, peaks))
  if torch_check is not None:
    entry["torch_check"] = torch_check
  fg = entry["flowergan"]
  if options.components:
    log("  components...")
    fg["components"], torch_components = time_components(
        runners["flowergan"], runners.get("torch"), options.repeats
    )
    if torch_components is not None:
      entry["torch"]["components"] = torch_components
  log(f"  sampling at batch {options.sample_batch}...")
  fg["sampling_batch"] = options.sample_batch
  fg["sampling_images_per_s"] = runners["flowergan"].sampling_images_per_s(options.sample_batch)
  return entry


def remeasure_peak(result: dict[str, Any], peak_size: int) -> None:
  """The peak again at the end (a shared machine may have been busier at the start): keeps the
  better one and recomputes the floors from it."""
  peaks_end = measure_peak_flops(result["dtype"], peak_size)
  result["peak_matmul_flops_per_s_end"] = peaks_end
  if peaks_end["peak"] <= result["peak_flops_per_s"]:
    return
  result["peak_flops_per_s"] = peak = peaks_end["peak"]
  for entry in result["results"]:
    fg = entry["flowergan"]
    if fg.get("flops_per_iteration"):
      fg.update(floor_fields(fg["flops_per_iteration"], fg["iteration_s"]["median"], peak))


def run_benchmark(
    config, options: Options, *, log: Callable[[str], None] = print
) -> dict[str, Any]:
  """Runs everything described in the module docstring; returns the JSON-able results."""
  options = resolve_options(options, config.train.dtype)
  conv_choices = {
      "model.critic_conv": options.critic_conv,
      "model.generator_conv": options.generator_conv,
  }
  config = with_overrides(config, conv_choices)
  other_config = None
  if options.also_dtype:
    other_config = with_overrides(config, {"train.dtype": options.also_dtype})
  result = run_header(config, options, log)
  peaks = (result["peak_flops_per_s"], result["also_dtype_peak_flops_per_s"])
  for batch_size in options.batch_sizes:
    entry = benchmark_batch_size(batch_size, config, other_config, options, peaks, log)
    result["results"].append(entry)
  remeasure_peak(result, options.peak_size)
  try:
    result["load_average_end"] = os.getloadavg()
  except OSError:
    pass
  if options.conv_layers:
    log("generator conv layers alone...")
    result["conv_layers"] = conv_layer_timings(
        config,
        options.batch_sizes[0],
        repeats=max(options.repeats, 3),
        with_torch=options.with_torch,
        torch_device=options.torch_device or "cpu",
    )
  if options.input_pipeline:
    log("input pipeline (synthetic source)...")
    result["input_pipeline_images_per_s"] = input_pipeline_images_per_s(
        config, options.batch_sizes[0]
    )
  else:
    result["input_pipeline_images_per_s"] = "n/a (--noinput_pipeline)"
  return result


# --- the table -------------------------------------------------------------------------------


def _fmt(x, unit="", digits=3) -> str:
  if x is None:
    return "n/a"
  if isinstance(x, str):
    return x
  return f"{x:.{digits}g}{unit}"


def it_fmt(s: dict) -> str:
  return f"{s['median']:.3f} ({s['min']:.3f}-{s['max']:.3f})"


def format_header(result: dict) -> list[str]:
  m = result["machine"]
  torch_info = ""
  if "torch" in m:
    torch_info = (
        f", torch {m['torch']} ({m['torch_num_threads']} threads, "
        f"{'channels_last' if result.get('torch_channels_last') else 'NCHW'}"
        f"{', generator under torch.compile' if result.get('torch_compile') else ''})"
    )
  return [
      f"device: {m['device_kind']} ({m['platform']}) x{m['device_count']}, "
      f"{m.get('cpu_cores_available')} CPU cores; jax {m['jax']}" + torch_info,
      f"dtype {result['dtype']}, {result['image_size']}², n_critic {result['n_critic']}, "
      f"critic convs {result['critic_conv']}, generator convs {result['generator_conv']}; "
      f"measured {result['dtype']} matmul peak "
      f"{_fmt(result['peak_flops_per_s'] / 1e9)} GFLOP/s",
  ]


_COLUMNS = (
    f"{'batch':>5} | {'flowergan s/iter (min-max)':>27} | {'img/s':>6} | "
    f"{'torch s/iter (min-max)':>24} | {'fg/torch':>8} | {'TFLOP/it':>8} | "
    f"{'floor s':>7} | {'x floor':>7} | {'% peak':>6} | {'compile s':>9} | "
    f"{'sample img/s':>12} | {'peak mem':>8}"
)


def format_entry(e: dict, result: dict) -> list[str]:
  """The row of one batch size and the lines under it."""
  fg, t = e["flowergan"], e.get("torch")
  mem = fg.get("peak_memory_bytes")
  lines = [
      f"{e['batch_size']:>5} | {it_fmt(fg['iteration_s']):>27} | {fg['images_per_s']:6.2f} | "
      f"{it_fmt(t['iteration_s']) if t else 'n/a':>24} | "
      f"{_fmt(e.get('flowergan_over_torch')):>8} | "
      f"{_fmt((fg['flops_per_iteration'] or 0) / 1e12):>8} | {_fmt(fg.get('floor_s')):>7} | "
      f"{_fmt(fg.get('time_over_floor')):>7} | "
      f"{_fmt(100 * fg['fraction_of_peak'] if 'fraction_of_peak' in fg else None):>6} | "
      f"{fg['compile_s']:9.1f} | {fg['sampling_images_per_s']:12.1f} | "
      f"{_fmt(mem / 2**30 if mem else None, ' GiB'):>8}",
      f"      process CPU s/iter (median): flowergan {fg['iteration_cpu_s']['median']:.3f}"
      + (f", torch {t['iteration_cpu_s']['median']:.3f}" if t else ""),
  ]
  also, dtype = result.get("also_dtype"), result["dtype"]
  if also and f"flowergan_{also}" in e:
    o = e[f"flowergan_{also}"]
    lines.append(
        f"      flowergan {also}: {it_fmt(o['iteration_s'])} s/iter, "
        f"{also}/{dtype} time {e[f'{also}_over_{dtype}']:.3f} "
        f"(pairwise median {e[f'{also}_over_{dtype}_pairwise_median']:.3f}), "
        f"compile {o['compile_s']:.1f} s"
        + (
            f", {100 * o['fraction_of_peak']:.3g}% of the {also} matmul peak"
            if "fraction_of_peak" in o
            else ""
        )
    )
  if "torch_check" in e:
    lines.append(
        f"      torch vs flowergan on the same weights (losses, penalty, images, "
        f"gradients): max relative error {e['torch_check']['max_error']:.1e}, "
        f"{e['torch_check']['max_error_default_kernels']:.1e} with torch's oneDNN"
    )
  for name, c in fg.get("components", {}).items():
    tc = (t or {}).get("components", {}).get(name)
    lines.append(
        f"      {name}: flowergan {c['s']['median']:.3f} s "
        f"({_fmt((c['flops'] or 0) / 1e9)} GFLOP)"
        + (f", torch {tc['s']['median']:.3f} s" if tc else "")
    )
  return lines


def format_conv_layers(result: dict) -> list[str]:
  lines = [
      f"generator 3×3 conv layers alone, batch {result['results'][0]['batch_size']}, "
      "median s (XLA conv / flowergan 'dots' / torch; torch's gradients include "
      "its forward pass, autograd needs it):"
  ]
  for r in result["conv_layers"]:
    cells = []
    for part in _CONV_PARTS:
      times = [
          f"{r[f'{name}_{part}_s']:.4f}"
          for name in ("lax", "dots", "torch")
          if f"{name}_{part}_s" in r
      ]
      cells.append(f"{part} " + " / ".join(times))
    lines.append(f"  {r['size']:>4}² {r['c_in']:>3}→{r['c_out']:<3} " + "; ".join(cells))
  return lines


def format_table(result: dict) -> str:
  """A plain-text summary of `run_benchmark`'s results."""
  lines = format_header(result) + [_COLUMNS, "-" * len(_COLUMNS)]
  for e in result["results"]:
    lines += format_entry(e, result)
  if result.get("conv_layers"):
    lines += format_conv_layers(result)
  ip = result.get("input_pipeline_images_per_s")
  lines.append(f"input pipeline: {_fmt(ip, ' img/s')}")
  return "\n".join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  options = Options(
      batch_sizes=[int(b) for b in _BATCH_SIZES.value],
      repeats=_REPEATS.value,
      warmup=_WARMUP.value,
      with_torch=_TORCH.value,
      torch_device=_TORCH_DEVICE.value,
      torch_compile=_TORCH_COMPILE.value,
      torch_channels_last=_TORCH_CHANNELS_LAST.value,
      check=_CHECK.value,
      components=_COMPONENTS.value,
      sample_batch=_SAMPLE_BATCH.value,
      peak_size=_PEAK_SIZE.value,
      input_pipeline=_INPUT_PIPELINE.value,
      critic_conv=_CRITIC_CONV.value,
      generator_conv=_GENERATOR_CONV.value,
      also_dtype=_ALSO_DTYPE.value,
      conv_layers=_CONV_LAYERS.value,
  )
  result = run_benchmark(
      _CONFIG.value, options, log=lambda msg: print(msg, file=sys.stderr, flush=True)
  )
  result["command"] = " ".join(sys.argv)
  print(format_table(result))
  if _JSON.value:
    with open(_JSON.value, "w") as f:
      json.dump(result, f, indent=1, default=str)


if __name__ == "__main__":
  app.run(main)
