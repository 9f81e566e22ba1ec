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
  * the Inception feature extractor's images/s: see `inference.inception_images_per_s`.

Each part that fails (out of memory, ...) records its error in the JSON and the run goes on;
without torch, one line says that the PyTorch comparison is skipped, and the JSON's 'torch'
records it. Nothing here imports TensorFlow, clu, tensorflow_datasets or ml_collections: the
config is `accelerator_config`, built from `flowergan.hyperparameters` as configs/cwgan128.py
is. The JSON and the Markdown table are rewritten after every part, so a run killed at its
time limit still leaves what it measured.

Exit status: 0 when every flowergan (JAX) iteration measurement succeeded, 1 otherwise.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import gc
import json
import os
import statistics
import sys
import time
import traceback
import types
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from benchmarks import inference, report, toolkit
from flowergan import hyperparameters, ops, sampling, synthetic
from flowergan import train_step as ts

JSON_NAME = "accelerator_check.json"
TABLE_NAME = "accelerator_check.md"
DTYPES = ("float32", "bfloat16")


class ConfigSection(types.SimpleNamespace):
  """Attribute access and `get`: what the library reads of an `ml_collections.ConfigDict`."""

  def get(self, name: str, default: Any = None) -> Any:
    return getattr(self, name, default)


def accelerator_config(*, tiny: bool, dtype: str) -> ConfigSection:
  """configs/cwgan128.py's model and training (or its `tiny` variant's) with `train.dtype=dtype`,
  from `flowergan.hyperparameters`, which the config file reads too; the paper's two classes."""
  sections = {
      "data": {"image_size": hyperparameters.IMAGE_SIZE, "classes": synthetic.CLASS_NAMES},
      "model": dict(hyperparameters.MODEL),
      "train": dict(hyperparameters.TRAIN, dtype=dtype, ada=ConfigSection(**hyperparameters.ADA)),
  }
  if tiny:
    for name, fields in hyperparameters.TINY.items():
      sections[name].update(fields)
  return ConfigSection(**{name: ConfigSection(**fields) for name, fields in sections.items()})


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


def guarded(name: str, fn: Callable[[], Any]) -> Any:
  """`fn()`, or {'error': one line} when it raises (the traceback goes to stderr)."""
  try:
    return fn()
  except Exception as e:  # each part's failure is a result, not the end of the run
    log(f"{name} failed: {toolkit.error_text(e)}")
    traceback.print_exc(file=sys.stderr)
    free_memory()
    return {"error": toolkit.error_text(e)}


def free_memory() -> None:
  """Drops garbage and torch's cached blocks, so that a failed part leaves memory to the next."""
  gc.collect()
  torch = sys.modules.get("torch")
  if torch is not None and torch.cuda.is_available():
    torch.cuda.empty_cache()


# --- the machine and the checks --------------------------------------------------------------


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
  config = accelerator_config(tiny=False, dtype="float32")
  generator, critic = ts.build_models(
      config.model, image_size=config.data.image_size, num_classes=len(config.data.classes)
  )
  out["models_use_xla_conv"] = {
      "generator": generator.conv is nn.Conv,
      "critic": critic.conv is nn.Conv,
  }
  if backend != "cpu":
    ok &= all(out["models_use_xla_conv"].values())
  out["ok"] = bool(ok)
  return out


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
      "jax_default_matmul_precision": toolkit.jax_option("jax_default_matmul_precision"),
      "size": size,
      "rel_error_default": default,
      "rel_error_highest": highest,
      "default_is_reduced_precision": bool(default > 10 * highest),
  }


def measure_peaks(size: int) -> dict[str, Any]:
  """Matmul FLOP/s: float32 at the default precision (what the model's float32 step uses) and
  at HIGHEST, and bfloat16: each the best of 3 rounds of 10 back-to-back products."""
  flops_per_s = functools.partial(toolkit.matmul_flops_per_s, size=size, calls=10)
  return {
      "size": size,
      "float32": flops_per_s("float32"),
      "float32_highest": flops_per_s("float32", precision=jax.lax.Precision.HIGHEST),
      "bfloat16": flops_per_s("bfloat16"),
  }


# --- one (dtype, batch) ----------------------------------------------------------------------


@dataclasses.dataclass
class Context:
  """What every part reads: the plan, the budget, the peaks, torch, and shared findings."""

  plan: Plan
  budget: Budget
  peaks: dict[str, Any]
  torch_info: dict[str, Any]  # `setup_torch`'s: the device, or 'status' (skipped) or 'error'
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
    jax_runner: toolkit.JaxRunner, ctx: Context, remaining_configs: int
) -> tuple[dict[str, toolkit.TorchRunner], dict[str, Any]]:
  """The torch runners to time beside flowergan ('torch_eager', 'torch_compile') and what
  happened to each that could not be built or warmed up."""
  if "error" in ctx.torch_info:  # its setup failed
    return {}, {"torch_eager": {"error": "torch not available"}}
  if "status" in ctx.torch_info:  # skipped: not installed, or --notorch
    return {}, {}
  device = ctx.torch_info["device"]
  runners: dict[str, toolkit.TorchRunner] = {}
  notes: dict[str, Any] = {}
  eager = guarded("torch eager", lambda: toolkit.TorchRunner(jax_runner, device))
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
    jax_runner: toolkit.JaxRunner, ctx: Context, device: str, backend: str
) -> tuple[toolkit.TorchRunner | None, dict[str, Any]]:
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
    jax_runner: toolkit.JaxRunner, ctx: Context, device: str, mode: str, backend: str
) -> tuple[toolkit.TorchRunner | None, float | None, str | None]:
  log(f"  torch.compile ({mode}, {backend}): first iteration (compiles)...")
  t = time.perf_counter()
  try:
    runner = toolkit.TorchRunner(jax_runner, device, compile=mode, backend=backend)
    runner.iteration()
  except Exception as e:  # e.g. the double backward refused: that is the result
    error = toolkit.error_text(e)
    log(f"  torch.compile ({mode}) failed: {error}")
    runner = None
  else:
    error = None
  elapsed = time.perf_counter() - t
  ctx.torch_compile_s.append(elapsed)
  return runner, elapsed, error


def measure_iteration(
    dtype: str, batch_size: int, ctx: Context, remaining_configs: int
) -> tuple[dict[str, Any], toolkit.JaxRunner | None]:
  """flowergan's iteration at (dtype, batch) timed interleaved with torch's: one entry of the
  JSON's 'iterations', and the runner (None when flowergan's step failed)."""
  entry: dict[str, Any] = {"dtype": dtype, "batch_size": batch_size}
  config = accelerator_config(tiny=ctx.plan.tiny, dtype=dtype)
  log(f"{dtype}, batch {batch_size}: compiling flowergan's step...")
  runner = guarded(
      "flowergan compile",
      lambda: toolkit.JaxRunner(config, len(config.data.classes), batch_size, ctx.state),
  )
  if isinstance(runner, dict):
    entry["flowergan"] = runner
    return entry, None
  ctx.jax_compile_s.append(runner.lower_s + runner.compile_s)
  fns = {"flowergan": runner.iteration}
  toolkit.reset_torch_peak_memory()
  torch_runners, notes = build_torch_runners(runner, ctx, remaining_configs)
  fns.update({name: r.iteration for name, r in torch_runners.items()})
  warm = {name: guarded(f"{name} warm-up", fn) for name, fn in fns.items()}
  fns = {name: fn for name, fn in fns.items() if not isinstance(warm[name], dict)}
  # Seconds this row may take beyond what later rows need: past `seconds`, only until
  # min_repeats are done; past `spare`, not at all (one round always runs).
  spare = max(0.0, ctx.budget.left() - reserve_s(ctx, remaining_configs))
  seconds = min(ctx.plan.iteration_seconds, spare)
  times, _, errors = toolkit.time_interleaved(
      fns,
      min_repeats=ctx.plan.min_repeats,
      max_repeats=ctx.plan.max_repeats,
      seconds=seconds,
      hard_seconds=spare,
      keep_going=True,
      log=log,
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
  for name in ("torch_eager", "torch_compile"):
    entry.update(toolkit.ratios(f"flowergan_over_{name}", times["flowergan"], times.get(name, [])))
  if torch_runners:
    entry["torch_peak_memory_bytes"] = toolkit.torch_peak_memory_bytes()  # both torch runners
  return entry, runner


def summarise_flowergan(
    runner: toolkit.JaxRunner, times: list[float], images: int, ctx: Context, errors: dict[str, str]
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
      "device_memory_bytes": toolkit.device_memory(),
  }
  if "flowergan" in errors or not times:
    out["error"] = errors.get("flowergan", "no timed iteration")
    return out
  median = statistics.median(times)
  peak = ctx.peaks.get(runner.config.train.dtype) if "error" not in ctx.peaks else None
  out.update(
      iteration_s=toolkit.summarise(times),
      images_per_s=images / median,
      peak_flops_per_s=peak,
      **toolkit.floor_fields(flops, median, peak),
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
    out.update(iteration_s=toolkit.summarise(times), images_per_s=images / statistics.median(times))
  return out


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
  result["machine"] = guarded("machine", toolkit.machine_info)
  result["checks"] = {
      "conv_auto": guarded("conv check", conv_auto_check),
      "matmul_precision": guarded(
          "precision check", lambda: matmul_precision_check(plan.precision_size)
      ),
  }
  log(f"matmul peaks ({plan.peak_size}²)...")
  result["peaks"] = guarded("peaks", lambda: measure_peaks(plan.peak_size))
  result["torch"] = guarded("torch", lambda: setup_torch(plan))
  save()
  ctx = Context(plan=plan, budget=budget, peaks=result["peaks"], torch_info=result["torch"])
  result["iterations"], result["sampling"] = [], {}
  measure_iterations(ctx, result, save)
  result["torch_compile_full_iteration"] = ctx.full_compile_result or {"status": "not attempted"}
  if budget.left() > (5.0 if plan.tiny else 45.0):
    log("Inception features...")
    image_size = accelerator_config(tiny=plan.tiny, dtype="float32").data.image_size
    result["inception"] = guarded(
        "inception",
        lambda: inference.inception_images_per_s(
            plan.inception_batch,
            image_size,
            timed=plan.time_inception,
            go_on=lambda: budget.left() >= 10.0,
        ),
    )
  else:
    result["inception"] = {"status": "skipped: not enough of --budget_s left"}
  result["core_ok"] = core_ok(result, plan)
  result["imported_modules"] = imported_top_level_modules()
  save()
  return result


def setup_torch(plan: Plan) -> dict[str, Any]:
  """`toolkit.torch_setup` (one CPU thread for the tiny model: torch's threads otherwise spin
  against XLA's on a small CPU), or {'status': why torch is left out}."""
  if not plan.torch:
    return {"status": "skipped (--notorch)"}
  try:
    return toolkit.torch_setup("auto", 1 if plan.tiny else None)
  except ModuleNotFoundError as e:
    if e.name != "torch":
      raise  # torch is there, but broken: an error of this part
    log("torch not installed: the PyTorch comparison is skipped")
    return {"status": "skipped: torch not installed"}


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
  config = accelerator_config(tiny=ctx.plan.tiny, dtype="float32")
  ctx.state = guarded(
      "flowergan init", lambda: toolkit.initial_state(config, len(config.data.classes))
  )
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


def measure_sampling(
    runner: toolkit.JaxRunner, ctx: Context, remaining_configs: int
) -> dict[str, Any]:
  """`inference.sampling_images_per_s` when the budget leaves time for it, else why not."""
  if ctx.budget.left() < reserve_s(ctx, remaining_configs):
    return {"status": "skipped: not enough of --budget_s left"}
  log(f"{runner.config.train.dtype}: sampling...")
  plan, budget = ctx.plan, ctx.budget
  return guarded(
      "sampling",
      lambda: inference.sampling_images_per_s(
          runner, plan.sample_batches, plan.sample_images, go_on=lambda: budget.left() >= 20.0
      ),
  )


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
      TABLE_NAME: report.accelerator_markdown(result) + "\n",
  }
  for name, text in texts.items():
    path = os.path.join(out_dir, name)
    with open(path + ".tmp", "w") as f:
      f.write(text)
    os.replace(path + ".tmp", path)


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
  print(report.accelerator_markdown(result))
  log(f"wrote {os.path.join(out_dir, JSON_NAME)} and {TABLE_NAME} in {result['elapsed_s']:.0f} s")
  return 0 if result["core_ok"] else 1


if __name__ == "__main__":
  define_flags()
  app.run(main)
