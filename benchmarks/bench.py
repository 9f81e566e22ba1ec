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
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from benchmarks import report, toolkit
from flowergan import default_config, models, ops
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


# --- flowergan -------------------------------------------------------------------------------


def measure_peak_flops(dtype: str = "float32", size: int = 4096) -> dict[str, float]:
  """Best FLOP/s of a size×size matmul with `dtype` inputs on the default device (2·n³ FLOPs):
  with `dtype` output and, for bfloat16, also with float32 accumulation/output (the faster
  one on some CPUs). Returns {'peak': the best, variant: FLOP/s, ...}."""
  out = {f"{dtype}_matmul": toolkit.matmul_flops_per_s(dtype, size, rounds=5)}
  if dtype != "float32":
    out[f"{dtype}_matmul_f32_accumulate"] = toolkit.matmul_flops_per_s(
        dtype, size, accumulate="float32", rounds=5
    )
  out["peak"] = max(out.values())
  return out


@dataclasses.dataclass(frozen=True)
class Component:
  """One compiled training component: `run()` runs it to completion; `flops` from XLA."""

  run: Callable[[], Any]
  flops: float | None


def step_components(runner: toolkit.JaxRunner) -> dict[str, Component]:
  """One critic step and one generator step of `runner`, compiled separately (the step's own
  code)."""
  gan, state = runner.gan, runner.state
  images, labels = runner.batch["image"][0], runner.batch["label"][0]
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
        flops=toolkit.compiled_flops(compiled),
    )
  return out


def sampling_images_per_s(runner: toolkit.JaxRunner, batch: int, repeats: int = 3) -> float:
  """Images/s of `WGANGP.generate` (inference mode, EMA weights) at `batch`: the best of
  `repeats` after compiling."""
  gan = runner.gan
  generate = jax.jit(gan.generate)
  z = jax.random.normal(jax.random.key(5), (batch, gan.z_dim))
  labels = jnp.arange(batch, dtype=jnp.int32) % runner.num_classes
  args = (runner.state.ema_params, runner.state.g_batch_stats, z, labels)
  generate(*args).block_until_ready()
  best, _ = toolkit.best_seconds(lambda: generate(*args).block_until_ready(), repeats)
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
      wall = toolkit.time_interleaved(
          {name: impl[part] for name, impl in fns.items()}, min_repeats=repeats, warmup=1
      ).wall
      row.update({f"{name}_{part}_s": statistics.median(wall[name]) for name in fns})
    rows.append(row)
  return rows


# --- PyTorch ---------------------------------------------------------------------------------


def torch_available() -> bool:
  return importlib.util.find_spec("torch") is not None


def torch_components(runner: toolkit.TorchRunner) -> dict[str, Callable[[], None]]:
  """One critic step and one generator step of `runner`, as `step_components`."""
  gan = runner.gan
  real = runner.images[0].contiguous(memory_format=gan.memory_format)
  labels = runner.labels[0]

  def critic_step():
    with gan.autocast():
      gan.set_critic_grad(True)
      gan.critic_step(real, labels)
    runner.sync()

  def generator_step():
    with gan.autocast():
      gan.set_critic_grad(False)
      gan.generator_step(labels)
    runner.sync()

  return {"critic_step": critic_step, "generator_step": generator_step}


def check_torch(runner: toolkit.JaxRunner, batch_size: int, log: Callable[[str], None]) -> dict:
  """`torch_reference.compare_with_flax` on the runner's initial weights."""
  from benchmarks import torch_reference  # imports torch, an optional dependency

  log("checking the PyTorch reference against flowergan (float32, same weights)...")
  check = torch_reference.compare_with_flax(
      runner.gan, runner.initial_state, batch_size=min(batch_size, 4)
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


def resolve_options(options: Options, dtype: str) -> tuple[Options, dict[str, Any] | None]:
  """`options` with the machine's defaults filled in (torch only where it imports, on the
  device `toolkit.torch_setup` picks with as many CPU threads as XLA:CPU; the peak's matmul
  size and the sampling batch; no --also_dtype equal to `dtype`), and torch's settings."""
  on_cpu = jax.devices()[0].platform == "cpu"
  torch_info = None
  if options.with_torch and torch_available():
    torch_info = toolkit.torch_setup(options.torch_device, toolkit.cpu_cores())
  options = dataclasses.replace(
      options,
      with_torch=torch_info is not None,
      torch_device=torch_info["device"] if torch_info else None,
      peak_size=options.peak_size or (4096 if on_cpu else 8192),
      sample_batch=options.sample_batch or (64 if on_cpu else 1024),
      also_dtype=None if options.also_dtype == dtype else options.also_dtype,
  )
  return options, torch_info


def with_overrides(config, fields: dict[str, Any]) -> ml_collections.ConfigDict:
  """A copy of `config` with `fields` ('section.name': value) set; None values are skipped."""
  config = config.copy_and_resolve_references()
  with config.unlocked():
    for path, value in fields.items():
      if value is not None:
        section, name = path.split(".")
        config[section][name] = value
  return config


def num_classes(config) -> int:
  return len(default_config.classes_of(config.data))


def run_header(
    config, options: Options, torch_info: dict[str, Any] | None, log: Callable[[str], None]
) -> dict[str, Any]:
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
      "machine": toolkit.machine_info(),
      "torch": torch_info,
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
    runner: toolkit.JaxRunner, wall: list[float], cpu: list[float], images: int, peak: float
) -> dict[str, Any]:
  """The iteration's times, images/s (`images` per iteration), FLOP floor and memory."""
  flops, source = runner.flops()
  median = statistics.median(wall)
  return {
      "compile_s": runner.compile_s,
      "trace_lower_s": runner.lower_s,
      "flops_per_iteration": flops,
      "flops_source": source,
      "iteration_s": toolkit.summarise(wall),
      # CPU seconds of the process (all threads) per iteration: less sensitive than wall time
      # to other jobs on a shared machine, but includes the thread pools' spin-waiting.
      "iteration_cpu_s": toolkit.summarise(cpu),
      "images_per_s": images / median,
      **toolkit.floor_fields(flops, median, peak),
      "peak_memory_bytes": (toolkit.device_memory() or {}).get("peak_bytes_in_use"),
  }


def summarise_other_dtype(
    runner: toolkit.JaxRunner, wall: list[float], images: int, peak: float | None
) -> dict[str, Any]:
  """The --also_dtype step's times, images/s and fraction of that dtype's matmul `peak`."""
  flops, _ = runner.flops()
  median = statistics.median(wall)
  return {
      "compile_s": runner.compile_s,
      "flops_per_iteration": flops,
      "iteration_s": toolkit.summarise(wall),
      "images_per_s": images / median,
      "fraction_of_peak": toolkit.floor_fields(flops, median, peak)["fraction_of_peak"],
  }


def time_components(
    jax_runner: toolkit.JaxRunner, torch_runner: toolkit.TorchRunner | None, repeats: int
) -> tuple[dict[str, Any], dict[str, Any] | None]:
  """The critic step and the generator step alone, flowergan's interleaved with torch's:
  flowergan's {name: {'s', 'flops'}} and torch's {name: {'s'}} (None without torch)."""
  flax_steps = step_components(jax_runner)
  torch_steps = torch_components(torch_runner) if torch_runner is not None else {}
  flax_out, torch_out = {}, {}
  for name, step in flax_steps.items():
    fns = {"flowergan": step.run}
    if name in torch_steps:
      fns["torch"] = torch_steps[name]
    wall = toolkit.time_interleaved(fns, min_repeats=max(repeats, 3), warmup=1).wall
    flax_out[name] = {"s": toolkit.summarise(wall["flowergan"]), "flops": step.flops}
    if "torch" in wall:
      torch_out[name] = {"s": toolkit.summarise(wall["torch"])}
  return flax_out, (torch_out if torch_runner is not None else None)


def make_runners(
    batch_size: int,
    configs: dict[str, ml_collections.ConfigDict],
    state,
    options: Options,
    log: Callable[[str], None],
) -> tuple[dict[str, toolkit.JaxRunner | toolkit.TorchRunner], dict | None]:
  """The compiled steps to time, by name: those of `configs` ('flowergan' and, with
  --also_dtype, 'flowergan <also_dtype>') from `state`, and 'torch' (checked against
  flowergan first with --check); and that check."""
  runners = {}
  for name, config in configs.items():
    log(f"batch {batch_size}: compiling the {name} step ({config.train.dtype})...")
    runners[name] = toolkit.JaxRunner(config, num_classes(config), batch_size, state)
  torch_check = None
  if options.with_torch:
    if options.check:
      torch_check = check_torch(runners["flowergan"], batch_size, log)
    runners["torch"] = toolkit.TorchRunner(
        runners["flowergan"],
        options.torch_device,
        compile="generator" if options.torch_compile else None,
        channels_last=options.torch_channels_last,
    )
  return runners, torch_check


def summarise_iterations(
    runners: dict[str, toolkit.JaxRunner | toolkit.TorchRunner],
    timings: toolkit.Timings,
    images: int,
    options: Options,
    peaks: tuple[float, float | None],
) -> dict[str, Any]:
  """The timed iterations of every runner (`images` real images each) and their ratios."""
  wall, cpu = timings.wall, timings.cpu
  out = {
      "flowergan": summarise_flowergan(
          runners["flowergan"], wall["flowergan"], cpu["flowergan"], images, peaks[0]
      )
  }
  also, dtype = options.also_dtype, runners["flowergan"].config.train.dtype
  if also:
    name = f"flowergan {also}"
    out[f"flowergan_{also}"] = summarise_other_dtype(runners[name], wall[name], images, peaks[1])
    out.update(toolkit.ratios(f"{also}_over_{dtype}", wall[name], wall["flowergan"]))
  if "torch" in runners:
    out["torch"] = {
        "iteration_s": toolkit.summarise(wall["torch"]),
        "iteration_cpu_s": toolkit.summarise(cpu["torch"]),
        "images_per_s": images / statistics.median(wall["torch"]),
    }
    out.update(toolkit.ratios("flowergan_over_torch", wall["flowergan"], wall["torch"]))
  return out


def benchmark_batch_size(
    batch_size: int,
    configs: dict[str, ml_collections.ConfigDict],
    state,
    options: Options,
    peaks: tuple[float, float | None],
    log: Callable[[str], None],
) -> dict[str, Any]:
  """Everything measured at one batch size: one entry of `run_benchmark`'s 'results'."""
  runners, torch_check = make_runners(batch_size, configs, state, options, log)
  timings = toolkit.time_interleaved(
      {name: runner.iteration for name, runner in runners.items()},
      min_repeats=options.repeats,
      warmup=options.warmup,
      log=log,
  )
  images = configs["flowergan"].train.n_critic * batch_size
  entry = {"batch_size": batch_size}
  entry.update(summarise_iterations(runners, timings, images, options, peaks))
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
  fg["sampling_images_per_s"] = sampling_images_per_s(runners["flowergan"], options.sample_batch)
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
      fg.update(toolkit.floor_fields(fg["flops_per_iteration"], fg["iteration_s"]["median"], peak))


def run_benchmark(
    config, options: Options, *, log: Callable[[str], None] = print
) -> dict[str, Any]:
  """Runs everything described in the module docstring; returns the JSON-able results."""
  options, torch_info = resolve_options(options, config.train.dtype)
  conv_choices = {
      "model.critic_conv": options.critic_conv,
      "model.generator_conv": options.generator_conv,
  }
  configs = {"flowergan": with_overrides(config, conv_choices)}
  config = configs["flowergan"]
  if options.also_dtype:
    configs[f"flowergan {options.also_dtype}"] = with_overrides(
        config, {"train.dtype": options.also_dtype}
    )
  result = run_header(config, options, torch_info, log)
  peaks = (result["peak_flops_per_s"], result["also_dtype_peak_flops_per_s"])
  state = toolkit.initial_state(config, num_classes(config))
  for batch_size in options.batch_sizes:
    entry = benchmark_batch_size(batch_size, configs, state, options, peaks, log)
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
  print(report.benchmark_table(result))
  if _JSON.value:
    with open(_JSON.value, "w") as f:
      json.dump(result, f, indent=1, default=str)


if __name__ == "__main__":
  app.run(main)
