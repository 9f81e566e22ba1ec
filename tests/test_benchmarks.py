"""The benchmark runs end to end and the PyTorch reference computes what flowergan computes (no
timing assertions)."""

import importlib.util
import json

import jax
import pytest

from benchmarks import bench, report
from flowergan import train_step as ts
from tests import tiny_config

HAVE_TORCH = importlib.util.find_spec("torch") is not None

# What `torch_reference.compare_with_flax` must compare, among others.
COMPARED = {
    "images_train",
    "images_eval",
    "critic_loss",
    "gradient_penalty",
    "generator_loss",
    "critic_grad/Conv_0/kernel",
    "generator_grad/to_rgb/kernel",
}


def check_comparison(check: dict) -> None:
  """The PyTorch reference computes what flowergan computes (`compare_with_flax`'s result)."""
  errors = check["errors"]
  assert COMPARED <= set(errors)
  assert check["max_error"] < 1e-4, sorted(errors.items(), key=lambda kv: -kv[1])[:5]
  assert check["values"]["gradient_penalty"] > 0


def test_benchmark_end_to_end_on_tiny_config(tmp_path):
  config = tiny_config.get_config(image_size=16, cache_dir=tmp_path / "cache")
  options = bench.Options(
      batch_sizes=[8],
      repeats=2,
      warmup=1,
      with_torch=HAVE_TORCH,
      components=True,
      sample_batch=8,
      peak_size=256,
      input_pipeline=False,
      also_dtype="bfloat16",
      conv_layers=True,
  )
  result = bench.run_benchmark(config, options, log=lambda _: None)
  text = json.dumps(result, default=str)  # JSON-able
  assert json.loads(text)["results"][0]["batch_size"] == 8
  assert result["peak_flops_per_s"] > 0
  assert result["machine"]["device_count"] == jax.device_count()
  entry = result["results"][0]
  fg = entry["flowergan"]
  for field in (
      "compile_s",
      "iteration_s",
      "images_per_s",
      "flops_per_iteration",
      "achieved_flops_per_s",
      "fraction_of_peak",
      "floor_s",
      "time_over_floor",
      "peak_memory_bytes",
      "sampling_images_per_s",
      "components",
  ):
    assert field in fg, field
  assert len(fg["iteration_s"]["all"]) == 2
  assert fg["iteration_s"]["min"] <= fg["iteration_s"]["median"] <= fg["iteration_s"]["max"]
  assert fg["flops_per_iteration"] > 0 and fg["compile_s"] > 0
  assert fg["images_per_s"] == pytest.approx(
      config.train.n_critic * 8 / fg["iteration_s"]["median"]
  )
  assert set(fg["components"]) == {"critic_step", "generator_step"}
  bf16 = entry["flowergan_bfloat16"]  # --also_dtype: timed in the same loop
  assert len(bf16["iteration_s"]["all"]) == 2 and bf16["compile_s"] > 0
  assert entry["bfloat16_over_float32"] == pytest.approx(
      bf16["iteration_s"]["median"] / fg["iteration_s"]["median"]
  )
  assert result["also_dtype_peak_flops_per_s"] > 0
  layers = result["conv_layers"]  # --conv_layers: every distinct 3×3 generator conv
  assert [(r["size"], r["c_in"], r["c_out"]) for r in layers] == bench.generator_conv_shapes(config)
  assert layers[-1]["c_out"] == 3 and layers[-1]["size"] == 16
  for r in layers:
    for impl in ("lax", "dots") + (("torch",) if HAVE_TORCH else ()):
      for part in ("forward", "kernel_grad", "input_grad"):
        assert r[f"{impl}_{part}_s"] > 0
  if HAVE_TORCH:
    assert entry["torch_check"]["max_error"] < 1e-3
    # --check: `compare_with_flax` on the tiny config at 16², the initial weights of key 0 and
    # batch 4, as test_torch_reference_matches_flowergan checks it at 32².
    check_comparison(entry["torch_check"])
    assert entry["flowergan_over_torch"] > 0
    assert len(entry["torch"]["iteration_s"]["all"]) == 2
  assert result["input_pipeline_images_per_s"].startswith("n/a")
  table = report.benchmark_table(result)
  assert "flowergan s/iter" in table and "compile s" in table
  assert "bfloat16/float32 time" in table and "conv layers alone" in table


def test_input_pipeline_rate_or_na(tmp_path):
  config = tiny_config.get_config(image_size=16, cache_dir=tmp_path / "cache")
  rate = bench.input_pipeline_images_per_s(config, 8, seconds=0.2, min_items=2)
  if importlib.util.find_spec("tensorflow") is None:
    assert rate.startswith("n/a")
  else:
    assert rate > 0


def test_torch_reference_matches_flowergan():
  """At 32² (one generator and critic stage more than the 16² of the end-to-end test's check)."""
  pytest.importorskip("torch", reason="the PyTorch reference needs torch (optional)")
  from benchmarks import torch_reference

  config = tiny_config.get_config(image_size=32)
  gan = ts.wgangp_from_config(config, num_classes=2)
  state = gan.init(jax.random.key(0))
  check_comparison(torch_reference.compare_with_flax(gan, state, batch_size=4))


def test_torch_iteration_runs_and_trains():
  pytest.importorskip("torch", reason="the PyTorch reference needs torch (optional)")
  import torch

  from benchmarks import torch_reference

  config = tiny_config.get_config(image_size=16)
  gan = ts.wgangp_from_config(config, num_classes=2)
  state = gan.init(jax.random.key(0))
  ref = torch_reference.from_flax(gan, config.train, state)
  frozen = [p.detach().clone() for p in ref.generator.pre_batchnorm_biases()]
  before = ref.critic.convs[0].weight.detach().clone()
  images = torch.rand(config.train.n_critic, 8, 3, 16, 16) * 2 - 1
  labels = torch.randint(0, 2, (config.train.n_critic, 8))
  metrics = ref.iteration(images, labels)
  assert all(bool(torch.isfinite(v)) for v in metrics.values())
  assert not torch.equal(before, ref.critic.convs[0].weight)
  for a, b in zip(frozen, ref.generator.pre_batchnorm_biases()):
    assert torch.equal(a, b)  # frozen like the Flax optimiser's mask


def test_generator_conv_shapes_of_the_original():
  config = tiny_config.get_config(image_size=128)
  with config.unlocked():
    config.model.width = 64
  assert bench.generator_conv_shapes(config) == [
      (8, 256, 128),
      (16, 128, 128),
      (32, 128, 64),
      (32, 64, 64),
      (64, 64, 64),
      (128, 64, 64),
      (128, 64, 3),
  ]
