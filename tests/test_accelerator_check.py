"""The accelerator check runs end to end on the tiny model through its shell entry point, with
the packages the accelerator machines lack made unimportable (torch too, once: it is optional),
and its config matches the config file's."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import json
import math
import os
import pathlib
import re
import subprocess
import sys
import time

import ml_collections
import pytest

from benchmarks import accelerator_check as ac
from benchmarks import report, toolkit
from flowergan import default_config
from tests import tiny_config

REPO = pathlib.Path(__file__).resolve().parents[1]

# Not installed on the accelerator machines, and not to be carried there (too large, or not
# needed by anything that should run there): importing any of them makes the run fail here.
BLOCKED = ("tensorflow", "tensorflow_datasets", "clu", "ml_collections")

# The Python distributions of the accelerator machines' image (/work/.library/device/KINDS.md,
# "Python packages already there", read on 2026-11-17). A module the check imports from any
# other distribution would be missing there: carry its wheel in .whl/, or stop importing it.
ACCELERATOR_DISTRIBUTIONS = frozenset("""
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch
build certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage
cuda-bindings cuda-core cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn
einops equinox etils execnet filelock flatbuffers flax fonttools formulaic frozenlist fsspec
gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna imageio
iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib
kiwisolver lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown
markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict
multipledispatch mypy-extensions nanobind narwhals networkx ninja numba numba-cuda numpy numpyro
nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13
nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13
nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir
onnxruntime onnxscript opencv-python-headless optax opt-einsum opt-einsum-fx optimistix
orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy portalocker
prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyre-extensions
pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist python-dateutil
pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core
scikit-image scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools
shellingham simplejson six sortedcontainers statsmodels sympy tabulate tensorboard
tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm tokenizers toolz torch
torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers treescope
triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt
xarray xxhash yarl zipp
""".split())

# Imported here only because it is installed here: torch's pytree utilities use optree when its
# distribution is installed and run without it otherwise (as on the accelerator machines).
OPTIONAL_HERE = frozenset({"optree"})

# XLA:CPU compiles the tiny step several times faster without its expensive optimisations; the
# test checks what is measured and written, not how fast it runs.
FAST_COMPILE_FLAGS = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"


@pytest.fixture(scope="module")
def compilation_cache(tmp_path_factory) -> pathlib.Path:
  """A JAX compilation cache shared by this module's runs of the check: the second run's
  compiles of the same tiny steps are cache hits."""
  return tmp_path_factory.mktemp("jax_cache")


def blocking_path(tmp_path: pathlib.Path, blocked=BLOCKED) -> pathlib.Path:
  """A folder of stub packages that raise ModuleNotFoundError, as a missing package does, to put
  first on PYTHONPATH."""
  stubs = tmp_path / "blocked"
  for name in blocked:
    (stubs / name).mkdir(parents=True)
    (stubs / name / "__init__.py").write_text(
        f"raise ModuleNotFoundError('{name} is not on the accelerator machines', name='{name}')\n"
    )
  return stubs


def run_check(
    tmp_path: pathlib.Path, *args: str, blocked=BLOCKED, cache: pathlib.Path | None = None
) -> tuple[subprocess.CompletedProcess, pathlib.Path]:
  out = tmp_path / "out"
  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join(
      [str(blocking_path(tmp_path, blocked))]
      + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
  )
  env["PYTHON"] = sys.executable
  env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {FAST_COMPILE_FLAGS}".strip()
  env.pop("OUT", None)
  if cache is not None:
    env.update(JAX_COMPILATION_CACHE_DIR=str(cache), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
  proc = subprocess.run(
      ["bash", str(REPO / "benchmarks" / "accelerator_check.sh"), f"--out={out}", *args],
      env=env,
      capture_output=True,
      text=True,
      timeout=900,
  )
  return proc, out


def positive(x) -> bool:
  return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def distributions_of(modules: list[str]) -> dict[str, set[str]]:
  """Each imported top-level module's distributions (normalised names); local ones left out."""
  owners = importlib.metadata.packages_distributions()
  out = {}
  for module in modules:
    if module in ("flowergan", "benchmarks") or module in OPTIONAL_HERE or module.startswith("_"):
      continue
    if module not in owners:
      continue  # compiled helpers of an imported package (e.g. cython_runtime)
    out[module] = {re.sub(r"[-_.]+", "-", d).lower() for d in owners[module]}
  return out


def check_iteration(entry: dict, expect_torch: bool) -> None:
  fg = entry["flowergan"]
  assert "error" not in fg, fg
  for field in ("images_per_s", "compile_s", "flops_per_iteration", "floor_s", "time_over_floor"):
    assert positive(fg[field]), (field, fg[field])
  s = fg["iteration_s"]
  assert s["n"] >= 2 and 0 < s["min"]  # min_repeats <= s["median"] <= s["max"]
  assert fg["images_per_s"] == pytest.approx(2 * entry["batch_size"] / s["median"])  # n_critic 2
  assert fg["flops_source"] == "xla_cost_analysis_lowered"
  assert positive(fg["compiled_memory_bytes"]["total"])
  if expect_torch:
    eager = entry["torch_eager"]
    assert positive(eager["images_per_s"]) and eager["iteration_s"]["n"] == s["n"]
    assert positive(entry["flowergan_over_torch_eager"])


def test_runs_end_to_end_on_the_tiny_model_without_the_packages_accelerators_lack(
    tmp_path, compilation_cache
):
  expect_torch = importlib.util.find_spec("torch") is not None
  start = time.perf_counter()
  proc, out = run_check(tmp_path, "--tiny", "--budget_s=600", cache=compilation_cache)
  took = time.perf_counter() - start
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
  result = json.loads((out / ac.JSON_NAME).read_text())
  assert result["core_ok"] is True and result["elapsed_s"] <= took

  machine = result["machine"]
  assert machine["platform"] == "cpu" and machine["versions"]["jax"]
  conv = result["checks"]["conv_auto"]
  assert conv["ok"] and (conv["generator"], conv["critic"]) == ("dots", "im2col")
  precision = result["checks"]["matmul_precision"]
  assert positive(precision["rel_error_default"]) and positive(precision["rel_error_highest"])
  assert precision["rel_error_highest"] < 1e-5
  for name in ("float32", "float32_highest", "bfloat16"):
    assert positive(result["peaks"][name]), name

  assert [(e["dtype"], e["batch_size"]) for e in result["iterations"]] == [
      ("float32", 8),
      ("bfloat16", 8),
  ]
  for entry in result["iterations"]:
    check_iteration(entry, expect_torch)
  if expect_torch:
    full = result["torch_compile_full_iteration"]
    assert full["status"] in ("ran", "failed") and full["backend"] == "aot_eager"
    compiled = result["iterations"][0]["torch_compile"]
    assert compiled["mode"] in ("full", "generator") and positive(compiled["images_per_s"])
  for dtype in ("float32", "bfloat16"):
    assert positive(result["sampling"][dtype]["49"]["images_per_s"]), dtype
  inception = result["inception"]
  assert inception["status"].startswith(("not available", "not timed (--tiny"))

  imported = result["imported_modules"]
  assert not set(BLOCKED) & set(imported)
  missing = {
      module: dists
      for module, dists in distributions_of(imported).items()
      if not dists & ACCELERATOR_DISTRIBUTIONS
  }
  assert not missing, f"imported, but not installed on the accelerator machines: {missing}"

  table = (out / ac.TABLE_NAME).read_text()
  assert table == proc.stdout
  assert "| dtype | batch | flowergan s/iter" in table
  assert re.search(r"^\| float32 \| 8 \| \d", table, re.M)
  assert re.search(r"^\| bfloat16 \| 8 \| \d", table, re.M)
  assert "**Errors:**" in table and "flowergan measurements: ok" in table


def test_without_torch_the_comparison_is_skipped_in_one_line(tmp_path, compilation_cache):
  """torch is optional (the README's `pip install -e ".[test]"` lacks it): hidden as a missing
  package, the check says so in one line, records it as skipped, and measures the rest."""
  proc, out = run_check(
      tmp_path, "--tiny", "--budget_s=600", blocked=BLOCKED + ("torch",), cache=compilation_cache
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
  assert proc.stderr.count("torch not installed: the PyTorch comparison is skipped") == 1
  result = json.loads((out / ac.JSON_NAME).read_text())
  assert result["torch"] == {"status": "skipped: torch not installed"}
  assert result["core_ok"] is True and "torch" not in result["imported_modules"]
  for entry in result["iterations"]:
    check_iteration(entry, expect_torch=False)
    assert not {"torch_eager", "torch_compile", "flowergan_over_torch_eager"} & set(entry)
  assert report.collect_errors(result) == []
  table = (out / ac.TABLE_NAME).read_text()
  assert "PyTorch comparison: skipped: torch not installed." in table
  assert "**Errors:** none." in table


def test_a_blocked_import_fails_the_run(tmp_path):
  """The stubs do block: the config file itself needs ml_collections."""
  stubs = blocking_path(tmp_path)
  env = dict(os.environ, PYTHONPATH=str(stubs))
  proc = subprocess.run(
      [sys.executable, "-c", "import runpy; runpy.run_path('configs/cwgan128.py')"],
      cwd=REPO,
      env=env,
      capture_output=True,
      text=True,
  )
  assert proc.returncode != 0 and "ml_collections is not on the accelerator" in proc.stderr


@pytest.mark.parametrize("variant", [None, "tiny"])
def test_config_matches_the_config_file(variant):
  expected = tiny_config.load_config_file(tiny_config.CONFIG_FILE, variant)
  # The check spells out the classes that an empty `data.classes` resolves to.
  expected.data.classes = default_config.classes_of(expected.data)
  config = ac.accelerator_config(tiny=variant == "tiny", dtype="float32")
  for section in ("data", "model", "train"):
    fields = vars(getattr(config, section))
    for name, value in fields.items():
      if isinstance(value, ac.ConfigSection):  # a nested section (train.ada)
        value = ml_collections.ConfigDict(vars(value))
      assert value == expected[section][name], (section, name)
    if section != "data":  # the whole section, as the step may read any of it
      assert set(fields) == set(expected[section]), section


def test_interleaved_timing_stops_on_time_and_drops_a_failing_part():
  calls = {"slow": 0, "flaky": 0}

  def slow():
    calls["slow"] += 1
    time.sleep(0.05)

  def flaky():
    calls["flaky"] += 1
    if calls["flaky"] == 2:
      raise RuntimeError("out of memory\nmore detail")

  times, _, errors = toolkit.time_interleaved(
      {"slow": slow, "flaky": flaky},
      min_repeats=2,
      max_repeats=1000,
      seconds=0.2,
      hard_seconds=9,
      keep_going=True,
  )
  assert 2 <= len(times["slow"]) <= 8  # cut by time, far below max_repeats
  assert len(times["flaky"]) == 1 and calls["flaky"] == 2
  assert errors == {"flaky": "RuntimeError: out of memory"}


def test_interleaved_timing_gives_up_min_repeats_past_the_hard_limit():
  times, _, _ = toolkit.time_interleaved(
      {"slow": lambda: time.sleep(0.1)},
      min_repeats=5,
      max_repeats=10,
      seconds=0.01,
      hard_seconds=0.15,
  )
  assert len(times["slow"]) == 2


def test_table_of_a_partial_result_names_what_is_missing():
  """The outputs are rewritten after every part: a run killed early leaves a readable table."""
  plan = ac.plan_for(tiny=True)
  result = {
      "plan": dataclasses.asdict(plan),
      "model": ac.model_summary(plan),
      "checks": {"conv_auto": {"error": "ValueError: boom"}},
      "iterations": [
          {"dtype": "float32", "batch_size": 8, "flowergan": {"error": "XlaRuntimeError: OOM"}},
          {"dtype": "bfloat16", "batch_size": 8, "skipped": "not enough of --budget_s left"},
      ],
  }
  table = report.accelerator_markdown(result)
  assert "NOT ok" in table
  assert "- iterations[0].flowergan: XlaRuntimeError: OOM" in table
  assert "| bfloat16 | 8 | skipped: not enough of --budget_s left |" in table
  assert not ac.core_ok(result, plan)
