r"""Benchmark of the training iteration, side by side with a PyTorch reference and the FLOP floor.

  python -m benchmarks.bench --config=configs/cwgan128.py --batch_sizes=16 --components \
      --also_dtype=bfloat16 --json=bench_cpu.json      # float32 and bfloat16 side by side

On a GPU (the same code; torch eager, then the generator under torch.compile; the models'
conv_impl='auto' uses XLA's own convolutions there, --critic_conv=im2col --generator_conv=dots
times the CPU formulations instead):

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
import functools
import json
import os
import platform
import statistics
import sys
import time
from typing import Any
from collections.abc import Callable

from absl import app, flags
from ml_collections import config_flags

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
    ["auto", "im2col", "lax"],
    "The critic's convolutions (same math): default the model's ('auto': im2col on CPU, lax "
    "elsewhere); 'lax' = plain lax.conv_general_dilated, for comparison.",
)
_GENERATOR_CONV = flags.DEFINE_enum(
    "generator_conv",
    None,
    ["auto", "dots", "lax"],
    "The generator's kernel gradients (same math): default the model's ('auto': "
    "dots on CPU, lax elsewhere).",
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


# --- timing helpers --------------------------------------------------------------------------


def _summary(times: list[float]) -> dict[str, float]:
  return {
      "median": statistics.median(times),
      "min": min(times),
      "max": max(times),
      "all": list(times),
  }


def measure_peak_flops(
    dtype: str = "float32", size: int = 4096, repeats: int = 5
) -> dict[str, float]:
  """Best FLOP/s of a size×size matmul with `dtype` inputs on the default device (2·n³ FLOPs):
  with `dtype` output and, for bfloat16, also with float32 accumulation/output (the faster
  one on some CPUs). Returns {'peak': the best, variant: FLOP/s, ...}."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

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


def peak_memory_bytes(device) -> int | None:
  """Peak bytes in use on `device`, or None where the backend keeps no statistics (CPU)."""
  try:
    stats = device.memory_stats()
  except Exception:  # pylint: disable=broad-except
    return None
  if not stats:
    return None
  return stats.get("peak_bytes_in_use")


def _flops(compiled) -> float | None:
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else None
  if not analysis or "flops" not in analysis:
    return None
  return float(analysis["flops"])


# --- flowergan -------------------------------------------------------------------------------


@dataclasses.dataclass
class FlaxRunner:
  """A compiled training step with its own state and an in-memory random batch."""

  config: Any
  batch_size: int
  seed: int = 0
  critic_conv_impl: str | None = None  # None: the model's default
  generator_conv_impl: str | None = None

  def __post_init__(self):
    import jax  # pylint: disable=g-import-not-at-top
    import numpy as np  # pylint: disable=g-import-not-at-top
    from flowergan import train_step as ts  # pylint: disable=g-import-not-at-top
    from flowergan import mesh as mesh_lib  # pylint: disable=g-import-not-at-top

    self.num_classes = len(self.config.data.classes)
    self.gan = ts.wgangp_from_config(self.config, num_classes=self.num_classes)
    if self.critic_conv_impl is not None:
      self.gan = dataclasses.replace(
          self.gan, critic=self.gan.critic.clone(conv_impl=self.critic_conv_impl)
      )
    if self.generator_conv_impl is not None:
      self.gan = dataclasses.replace(
          self.gan, generator=self.gan.generator.clone(conv_impl=self.generator_conv_impl)
      )
    self.mesh = mesh_lib.make_mesh()
    mesh_lib.check_batch_size(self.batch_size, self.mesh)
    self.state = ts.init_state(self.gan, jax.random.key(self.seed), self.mesh)
    self.initial_state = jax.device_get(self.state)  # for the torch reference's weights
    n, s = self.gan.n_critic, self.config.data.image_size
    rng = np.random.default_rng(self.seed)
    self.host_batch = {
        "image": rng.uniform(-1, 1, (n, self.batch_size, s, s, 3)).astype(np.float32),
        "label": rng.integers(0, self.num_classes, (n, self.batch_size)).astype(np.int32),
    }
    self.batch = mesh_lib.shard_batch(self.host_batch, self.mesh)
    self.key = jax.random.key(self.seed + 1)
    step = ts.make_train_step(self.gan, self.mesh)
    t = time.perf_counter()
    lowered = step.lower(self.state, self.batch, self.key)
    self.trace_s = time.perf_counter() - t
    t = time.perf_counter()
    self.compiled = lowered.compile()
    self.compile_s = time.perf_counter() - t
    self.flops = _flops(self.compiled)

  def iteration(self) -> None:
    import jax  # pylint: disable=g-import-not-at-top

    self.state, metrics = self.compiled(self.state, self.batch, self.key)
    jax.block_until_ready((self.state, metrics))
    if not bool(metrics["finite"]):
      raise RuntimeError("non-finite training metrics in the benchmark")

  def component_fns(self) -> dict[str, Callable[[], None]]:
    """One critic step and one generator step, jitted separately (same code as the step)."""
    import jax  # pylint: disable=g-import-not-at-top

    gan, state = self.gan, self.state
    images, labels = self.batch["image"][0], self.batch["label"][0]

    @jax.jit
    def critic_step(state, images, labels, key):
      carry = (state.d_params, state.d_opt_state, state.g_batch_stats)
      return gan.critic_update(state.g_params, carry, (images, labels, key))

    @jax.jit
    def generator_step(state, labels, key):
      return gan.generator_update(
          state.g_params, state.g_opt_state, state.g_batch_stats, state.d_params, labels, key
      )

    key = jax.random.key(3)
    return {
        "critic_step": lambda: jax.block_until_ready(critic_step(self.state, images, labels, key)),
        "generator_step": lambda: jax.block_until_ready(generator_step(self.state, labels, key)),
        "_flops": {
            "critic_step": _flops(critic_step.lower(state, images, labels, key).compile()),
            "generator_step": _flops(generator_step.lower(state, labels, key).compile()),
        },
    }

  def sampling_images_per_s(self, batch: int, repeats: int = 3) -> float:
    import jax  # pylint: disable=g-import-not-at-top
    import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

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


def generator_conv_shapes(config) -> list[tuple[int, int, int]]:
  """(resolution, C_in, C_out) of each distinct 3×3 conv of the generator, output layer last."""
  from flowergan import models  # pylint: disable=g-import-not-at-top

  width, shapes, channels, size = config.model.width, [], 4 * config.model.width, 4
  for stage in models.generator_stage_channels(config.data.image_size, width):
    size *= 2
    for features in stage:
      if (size, channels, features) not in shapes:
        shapes.append((size, channels, features))
      channels = features
  return shapes + [(size, channels, 3)]


def conv_layer_timings(
    config, batch_size: int, *, repeats: int = 5, with_torch: bool = True, torch_device: str = "cpu"
) -> list[dict[str, Any]]:
  """Median seconds of one 3×3 'same' conv layer (forward, kernel gradient, input gradient),
  per distinct generator layer: XLA's convolution ('lax'), flowergan's generator formulation
  ('dots') and torch's (NCHW, interleaved with the others; its gradient times include the
  forward pass that autograd needs, JAX's are the backward alone)."""
  import jax  # pylint: disable=g-import-not-at-top
  from flowergan import models  # pylint: disable=g-import-not-at-top

  dn, pad = ("NHWC", "HWIO", "NHWC"), ((1, 1), (1, 1))
  convs = {
      "lax": lambda x, k: jax.lax.conv_general_dilated(x, k, (1, 1), pad, dimension_numbers=dn),
      "dots": lambda x, k: models.dots_conv_general_dilated(
          x, k, (1, 1), pad, dimension_numbers=dn
      ),
  }
  rows = []
  for size, c_in, c_out in generator_conv_shapes(config):
    x = jax.random.normal(jax.random.key(0), (batch_size, size, size, c_in))
    k = jax.random.normal(jax.random.key(1), (3, 3, c_in, c_out)) * 0.05
    g = jax.random.normal(jax.random.key(2), (batch_size, size, size, c_out))
    fns = {}
    for name, conv in convs.items():
      fns[name] = {
          "forward": functools.partial(jax.jit(conv), x, k),
          "kernel_grad": functools.partial(
              jax.jit(lambda x, k, g, conv=conv: jax.vjp(lambda k: conv(x, k), k)[1](g)[0]), x, k, g
          ),
          "input_grad": functools.partial(
              jax.jit(lambda x, k, g, conv=conv: jax.vjp(lambda x: conv(x, k), x)[1](g)[0]), x, k, g
          ),
      }
    if with_torch:
      import numpy as np  # pylint: disable=g-import-not-at-top
      import torch  # pylint: disable=g-import-not-at-top

      tx = torch.from_numpy(np.array(x)).permute(0, 3, 1, 2).contiguous().to(torch_device)
      tk = torch.from_numpy(np.array(k)).permute(3, 2, 0, 1).contiguous().to(torch_device)
      tg = torch.from_numpy(np.array(g)).permute(0, 3, 1, 2).contiguous().to(torch_device)
      sync = torch.cuda.synchronize if tx.is_cuda else (lambda: None)

      def torch_grad(wrt, tx=tx, tk=tk, tg=tg, sync=sync):
        tx, tk = tx.detach().requires_grad_(wrt == "x"), tk.detach().requires_grad_(wrt == "k")
        out = torch.nn.functional.conv2d(tx, tk, padding=1)
        torch.autograd.grad(out, tx if wrt == "x" else tk, tg)
        sync()

      def torch_forward(tx=tx, tk=tk, sync=sync):
        with torch.no_grad():
          torch.nn.functional.conv2d(tx, tk, padding=1)
        sync()

      fns["torch"] = {
          "forward": torch_forward,
          "kernel_grad": functools.partial(torch_grad, "k"),
          "input_grad": functools.partial(torch_grad, "x"),
      }
    row = {"size": size, "c_in": c_in, "c_out": c_out}
    for part in ("forward", "kernel_grad", "input_grad"):
      times = {name: [] for name in fns}
      for name in fns:
        jax.block_until_ready(fns[name][part]())
      for _ in range(repeats):
        for name in fns:
          t = time.perf_counter()
          jax.block_until_ready(fns[name][part]())
          times[name].append(time.perf_counter() - t)
      for name in fns:
        row[f"{name}_{part}_s"] = statistics.median(times[name])
    rows.append(row)
  return rows


# --- PyTorch ---------------------------------------------------------------------------------


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
    import torch  # pylint: disable=g-import-not-at-top
    from benchmarks import torch_reference  # pylint: disable=g-import-not-at-top

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

  def _sync(self):
    if self.device.type == "cuda":
      self.torch.cuda.synchronize()

  def iteration(self) -> None:
    metrics = self.gan.iteration(self.images, self.labels)
    self._sync()
    if not all(bool(self.torch.isfinite(v)) for v in metrics.values()):
      raise RuntimeError("non-finite torch metrics in the benchmark")

  def component_fns(self) -> dict[str, Callable[[], None]]:
    from benchmarks import torch_reference  # pylint: disable=g-import-not-at-top

    torch, gan = self.torch, self.gan
    real, labels = self.images[0].contiguous(memory_format=gan.memory_format), self.labels[0]
    b = real.shape[0]

    def critic_step():
      with gan._autocast():
        gan._set_critic_grad(True)
        with torch.no_grad():
          fake = gan.g_forward(torch.randn(b, gan.z_dim, device=self.device), labels)
        eps = torch.rand(b, 1, 1, 1, device=self.device)
        loss, _, _ = torch_reference.critic_losses(
            gan.critic, real, fake, labels, eps, gan.gp_weight
        )
        gan.d_opt.zero_grad(set_to_none=True)
        loss.backward()
        gan.d_opt.step()
      self._sync()

    def generator_step():
      with gan._autocast():
        gan._set_critic_grad(False)
        fake = gan.g_forward(torch.randn(b, gan.z_dim, device=self.device), labels)
        loss = -gan.critic(fake, labels).mean()
        gan.g_opt.zero_grad(set_to_none=True)
        loss.backward()
        gan.g_opt.step()
      self._sync()

    return {"critic_step": critic_step, "generator_step": generator_step}


def _torch_available() -> bool:
  return importlib.util.find_spec("torch") is not None


# --- input pipeline --------------------------------------------------------------------------


def input_pipeline_images_per_s(
    config, batch_size: int, *, seconds: float = 5.0, min_items: int = 3
) -> float | str:
  """Real images/s the input pipeline delivers (synthetic source), or 'n/a' (no TensorFlow,
  or the module is not there)."""
  try:
    from flowergan import input_pipeline  # pylint: disable=g-import-not-at-top
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
  import jax  # pylint: disable=g-import-not-at-top

  device = jax.devices()[0]
  info = {
      "platform": device.platform,
      "device_kind": device.device_kind,
      "device_count": jax.device_count(),
      "jax": jax.__version__,
      "python": platform.python_version(),
      "machine": platform.machine(),
      "processor": platform.processor(),
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
  try:
    import flax  # pylint: disable=g-import-not-at-top

    info["flax"] = flax.__version__
  except ImportError:
    pass
  if with_torch:
    import torch  # pylint: disable=g-import-not-at-top

    info["torch"] = torch.__version__
    info["torch_num_threads"] = torch.get_num_threads()
  return info


def run_benchmark(
    config,
    *,
    batch_sizes,
    repeats: int = 5,
    warmup: int = 1,
    with_torch: bool = True,
    torch_device: str = "auto",
    torch_compile: bool = False,
    check: bool = True,
    components: bool = False,
    sample_batch: int = 0,
    peak_size: int = 0,
    input_pipeline: bool = True,
    critic_conv_impl: str | None = None,
    generator_conv_impl: str | None = None,
    torch_channels_last: bool = False,
    also_dtype: str | None = None,
    conv_layers: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
  """Runs everything described in the module docstring; returns the JSON-able results."""
  import jax  # pylint: disable=g-import-not-at-top

  on_cpu = jax.devices()[0].platform == "cpu"
  with_torch = with_torch and _torch_available()
  if with_torch:
    import torch  # pylint: disable=g-import-not-at-top
    from benchmarks import torch_reference  # pylint: disable=g-import-not-at-top

    if torch_device == "auto":
      torch_device = "cuda" if torch.cuda.is_available() else "cpu"
    if torch_device == "cpu":
      torch.set_num_threads(torch_reference.default_num_threads())  # as XLA:CPU's pool
  dtype = config.train.dtype
  peak_size = peak_size or (4096 if on_cpu else 8192)
  log(f"measuring the {dtype} matmul peak ({peak_size}²)...")
  peaks = measure_peak_flops(dtype, peak_size)
  peak = peaks["peak"]
  if also_dtype == dtype:
    also_dtype = None
  other_config = None
  if also_dtype:
    other_config = config.copy_and_resolve_references()
    with other_config.unlocked():
      other_config.train.dtype = also_dtype
    log(f"measuring the {also_dtype} matmul peak ({peak_size}²)...")
    other_peak = measure_peak_flops(also_dtype, peak_size)["peak"]
  result = {
      "machine": machine_info(with_torch),
      "dtype": dtype,
      "image_size": config.data.image_size,
      "n_critic": config.train.n_critic,
      "critic_conv_impl": critic_conv_impl,
      "generator_conv_impl": generator_conv_impl,
      "repeats": repeats,
      "peak_flops_per_s": peak,
      "peak_matmul_flops_per_s": peaks,
      "peak_matmul_size": peak_size,
      "torch_device": torch_device if with_torch else None,
      "torch_compile": torch_compile if with_torch else None,
      "torch_channels_last": torch_channels_last if with_torch else None,
      "also_dtype": also_dtype,
      "also_dtype_peak_flops_per_s": other_peak if also_dtype else None,
      "results": [],
  }

  for batch_size in batch_sizes:
    log(f"batch {batch_size}: compiling the flowergan step...")
    flax_runner = FlaxRunner(
        config,
        batch_size,
        critic_conv_impl=critic_conv_impl,
        generator_conv_impl=generator_conv_impl,
    )
    entry = {
        "batch_size": batch_size,
        "flowergan": {
            "compile_s": flax_runner.compile_s,
            "trace_lower_s": flax_runner.trace_s,
            "flops_per_iteration": flax_runner.flops,
        },
    }
    other_runner = None
    if also_dtype:
      log(f"batch {batch_size}: compiling the flowergan step in {also_dtype}...")
      other_runner = FlaxRunner(
          other_config,
          batch_size,
          critic_conv_impl=critic_conv_impl,
          generator_conv_impl=generator_conv_impl,
      )
      entry[f"flowergan_{also_dtype}"] = {
          "compile_s": other_runner.compile_s,
          "flops_per_iteration": other_runner.flops,
      }
    torch_runner = None
    if with_torch:
      if check:
        log("checking the PyTorch reference against flowergan (float32, same weights)...")
        entry["torch_check"] = torch_reference.compare_with_flax(
            flax_runner.gan, flax_runner.initial_state, batch_size=min(batch_size, 4)
        )
        log(
            f"  max relative error {entry['torch_check']['max_error']:.2e} (torch native "
            f"kernels), {entry['torch_check']['max_error_default_kernels']:.2e} (oneDNN)"
        )
      torch_runner = TorchRunner(
          flax_runner,
          device=torch_device,
          compile_generator=torch_compile,
          channels_last=torch_channels_last,
      )
    for _ in range(warmup):
      flax_runner.iteration()
      if other_runner is not None:
        other_runner.iteration()
      if torch_runner is not None:
        torch_runner.iteration()
    flax_times, torch_times, flax_cpu, torch_cpu, other_times = [], [], [], [], []
    for r in range(repeats):  # interleaved: both see the same load on a shared machine
      t, c = time.perf_counter(), time.process_time()
      flax_runner.iteration()
      flax_times.append(time.perf_counter() - t)
      flax_cpu.append(time.process_time() - c)
      msg = f"  repeat {r + 1}/{repeats}: flowergan {flax_times[-1]:.3f} s"
      if other_runner is not None:
        t = time.perf_counter()
        other_runner.iteration()
        other_times.append(time.perf_counter() - t)
        msg += f", flowergan {also_dtype} {other_times[-1]:.3f} s"
      if torch_runner is not None:
        t, c = time.perf_counter(), time.process_time()
        torch_runner.iteration()
        torch_times.append(time.perf_counter() - t)
        torch_cpu.append(time.process_time() - c)
        msg += f", torch {torch_times[-1]:.3f} s"
      log(msg)
    images_per_iteration = config.train.n_critic * batch_size
    fg = entry["flowergan"]
    fg["iteration_s"] = _summary(flax_times)
    # CPU seconds of the process (all threads) per iteration: less sensitive than wall time
    # to other jobs on a shared machine, but includes the thread pools' spin-waiting.
    fg["iteration_cpu_s"] = _summary(flax_cpu)
    fg["images_per_s"] = images_per_iteration / fg["iteration_s"]["median"]
    if flax_runner.flops:
      fg["achieved_flops_per_s"] = flax_runner.flops / fg["iteration_s"]["median"]
      fg["fraction_of_peak"] = fg["achieved_flops_per_s"] / peak
      fg["floor_s"] = flax_runner.flops / peak
      fg["time_over_floor"] = fg["iteration_s"]["median"] / fg["floor_s"]
    fg["peak_memory_bytes"] = peak_memory_bytes(jax.devices()[0])
    if other_runner is not None:
      other = entry[f"flowergan_{also_dtype}"]
      other["iteration_s"] = _summary(other_times)
      other["images_per_s"] = images_per_iteration / other["iteration_s"]["median"]
      if other_runner.flops:
        other["fraction_of_peak"] = (
            other_runner.flops / other["iteration_s"]["median"] / (other_peak)
        )
      # < 1: the other dtype is faster. Pairwise: each pair ran back to back.
      entry[f"{also_dtype}_over_{dtype}"] = other["iteration_s"]["median"] / (
          fg["iteration_s"]["median"]
      )
      entry[f"{also_dtype}_over_{dtype}_pairwise_median"] = statistics.median(
          o / f for o, f in zip(other_times, flax_times)
      )
    if torch_runner is not None:
      entry["torch"] = {
          "iteration_s": _summary(torch_times),
          "iteration_cpu_s": _summary(torch_cpu),
          "images_per_s": images_per_iteration / statistics.median(torch_times),
      }
      entry["flowergan_over_torch"] = (
          fg["iteration_s"]["median"] / entry["torch"]["iteration_s"]["median"]
      )
      entry["flowergan_over_torch_pairwise_median"] = statistics.median(
          f / t for f, t in zip(flax_times, torch_times)
      )
    if components:
      log("  components...")
      fns = flax_runner.component_fns()
      fg["components"] = {}
      tfns = torch_runner.component_fns() if torch_runner is not None else {}
      if tfns:
        entry["torch"]["components"] = {}
      for name in ("critic_step", "generator_step"):
        fns[name]()
        if name in tfns:
          tfns[name]()
        ft, tt = [], []
        for _ in range(max(repeats, 3)):
          t = time.perf_counter()
          fns[name]()
          ft.append(time.perf_counter() - t)
          if name in tfns:
            t = time.perf_counter()
            tfns[name]()
            tt.append(time.perf_counter() - t)
        fg["components"][name] = {"s": _summary(ft), "flops": fns["_flops"][name]}
        if tt:
          entry["torch"]["components"][name] = {"s": _summary(tt)}
    sb = sample_batch or (64 if on_cpu else 1024)
    log(f"  sampling at batch {sb}...")
    fg["sampling_batch"] = sb
    fg["sampling_images_per_s"] = flax_runner.sampling_images_per_s(sb)
    result["results"].append(entry)
    del flax_runner, torch_runner, other_runner

  # The peak again at the end (a shared machine may have been busier at the start); the best.
  peaks_end = measure_peak_flops(dtype, peak_size)
  result["peak_matmul_flops_per_s_end"] = peaks_end
  if peaks_end["peak"] > peak:
    result["peak_flops_per_s"] = peak = peaks_end["peak"]
    for e in result["results"]:
      fg = e["flowergan"]
      if fg.get("flops_per_iteration"):
        fg["fraction_of_peak"] = fg["achieved_flops_per_s"] / peak
        fg["floor_s"] = fg["flops_per_iteration"] / peak
        fg["time_over_floor"] = fg["iteration_s"]["median"] / fg["floor_s"]
  try:
    result["load_average_end"] = os.getloadavg()
  except OSError:
    pass
  if conv_layers:
    log("generator conv layers alone...")
    result["conv_layers"] = conv_layer_timings(
        config,
        batch_sizes[0],
        repeats=max(repeats, 3),
        with_torch=with_torch,
        torch_device=torch_device if with_torch else "cpu",
    )
  if input_pipeline:
    log("input pipeline (synthetic source)...")
    result["input_pipeline_images_per_s"] = input_pipeline_images_per_s(config, batch_sizes[0])
  else:
    result["input_pipeline_images_per_s"] = "n/a (--noinput_pipeline)"
  return result


def _fmt(x, unit="", digits=3) -> str:
  if x is None:
    return "n/a"
  if isinstance(x, str):
    return x
  return f"{x:.{digits}g}{unit}"


def format_table(result: dict) -> str:
  """A plain-text summary of `run_benchmark`'s results."""
  m = result["machine"]
  lines = [
      f"device: {m['device_kind']} ({m['platform']}) x{m['device_count']}, "
      f"{m.get('cpu_cores_available')} CPU cores; jax {m['jax']}"
      + (
          f", torch {m['torch']} ({m['torch_num_threads']} threads, "
          f"{'channels_last' if result.get('torch_channels_last') else 'NCHW'}"
          f"{', generator under torch.compile' if result.get('torch_compile') else ''})"
          if "torch" in m
          else ""
      ),
      f"dtype {result['dtype']}, {result['image_size']}², n_critic {result['n_critic']}, "
      f"critic convs {result['critic_conv_impl'] or 'default'}, generator convs "
      f"{result.get('generator_conv_impl') or 'default'}; "
      f"measured {result['dtype']} matmul peak "
      f"{_fmt(result['peak_flops_per_s'] / 1e9)} GFLOP/s",
  ]
  header = (
      f"{'batch':>5} | {'flowergan s/iter (min-max)':>27} | {'img/s':>6} | "
      f"{'torch s/iter (min-max)':>24} | {'fg/torch':>8} | {'TFLOP/it':>8} | "
      f"{'floor s':>7} | {'x floor':>7} | {'% peak':>6} | {'compile s':>9} | "
      f"{'sample img/s':>12} | {'peak mem':>8}"
  )
  lines += [header, "-" * len(header)]
  for e in result["results"]:
    fg = e["flowergan"]
    it = fg["iteration_s"]
    t = e.get("torch")
    torch_cell = f"{it_fmt(t['iteration_s'])}" if t else "n/a"
    mem = fg.get("peak_memory_bytes")
    lines.append(
        f"{e['batch_size']:>5} | {it_fmt(it):>27} | {fg['images_per_s']:6.2f} | "
        f"{torch_cell:>24} | {_fmt(e.get('flowergan_over_torch')):>8} | "
        f"{_fmt((fg['flops_per_iteration'] or 0) / 1e12):>8} | {_fmt(fg.get('floor_s')):>7} | "
        f"{_fmt(fg.get('time_over_floor')):>7} | "
        f"{_fmt(100 * fg['fraction_of_peak'] if 'fraction_of_peak' in fg else None):>6} | "
        f"{fg['compile_s']:9.1f} | {fg['sampling_images_per_s']:12.1f} | "
        f"{_fmt(mem / 2**30 if mem else None, ' GiB'):>8}"
    )
    lines.append(
        f"      process CPU s/iter (median): flowergan "
        f"{fg['iteration_cpu_s']['median']:.3f}"
        + (f", torch {t['iteration_cpu_s']['median']:.3f}" if t else "")
    )
    also = result.get("also_dtype")
    if also and f"flowergan_{also}" in e:
      o = e[f"flowergan_{also}"]
      lines.append(
          f"      flowergan {also}: {it_fmt(o['iteration_s'])} s/iter, "
          f"{also}/{result['dtype']} time {e[f'{also}_over_' + result['dtype']]:.3f} "
          f"(pairwise median {e[f'{also}_over_' + result['dtype'] + '_pairwise_median']:.3f}), "
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
  if result.get("conv_layers"):
    lines.append(
        f"generator 3×3 conv layers alone, batch {result['results'][0]['batch_size']}, "
        "median s (XLA conv / flowergan 'dots' / torch; torch's gradients include "
        "its forward pass, autograd needs it):"
    )
    for r in result["conv_layers"]:
      cells = []
      for part in ("forward", "kernel_grad", "input_grad"):
        cells.append(
            f"{part} "
            + " / ".join(
                f"{r[f'{name}_{part}_s']:.4f}"
                for name in ("lax", "dots", "torch")
                if f"{name}_{part}_s" in r
            )
        )
      lines.append(f"  {r['size']:>4}² {r['c_in']:>3}→{r['c_out']:<3} " + "; ".join(cells))
  ip = result.get("input_pipeline_images_per_s")
  lines.append(f"input pipeline: {_fmt(ip, ' img/s') if not isinstance(ip, str) else ip}")
  return "\n".join(lines)


def it_fmt(s: dict) -> str:
  return f"{s['median']:.3f} ({s['min']:.3f}-{s['max']:.3f})"


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  result = run_benchmark(
      _CONFIG.value,
      batch_sizes=[int(b) for b in _BATCH_SIZES.value],
      repeats=_REPEATS.value,
      warmup=_WARMUP.value,
      with_torch=_TORCH.value,
      torch_device=_TORCH_DEVICE.value,
      torch_compile=_TORCH_COMPILE.value,
      check=_CHECK.value,
      components=_COMPONENTS.value,
      sample_batch=_SAMPLE_BATCH.value,
      peak_size=_PEAK_SIZE.value,
      input_pipeline=_INPUT_PIPELINE.value,
      critic_conv_impl=_CRITIC_CONV.value,
      generator_conv_impl=_GENERATOR_CONV.value,
      conv_layers=_CONV_LAYERS.value,
      torch_channels_last=_TORCH_CHANNELS_LAST.value,
      also_dtype=_ALSO_DTYPE.value,
      log=lambda msg: print(msg, file=sys.stderr, flush=True),
  )
  result["command"] = " ".join(sys.argv)
  print(format_table(result))
  if _JSON.value:
    with open(_JSON.value, "w") as f:
      json.dump(result, f, indent=1, default=str)


if __name__ == "__main__":
  app.run(main)
