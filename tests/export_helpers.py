"""Generators with outputs that use tanh's range, for the export tests (no training needed)."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowergan import demo_app, export, models

CLASS_NAMES = ["dandelion", "marigold"]
Z_DIM = 64


# Page settings unlike `flowergan.demo_app`'s, to show that the pages take theirs from it.
OTHER_PAGE_SETTINGS = {
    "TRUNCATION_RANGE": (0.5, 2.0),
    "TRUNCATION_STEP": 0.1,
    "DEFAULT_TRUNCATION": 0.7,
    "GRID_RANGE": (2, 3),
    "DEFAULT_GRID": 3,
    "MAX_SEED": 1000,
}


def use_other_page_settings(monkeypatch) -> None:
  """`OTHER_PAGE_SETTINGS` in `flowergan.demo_app` for the rest of the test."""
  for name, value in OTHER_PAGE_SETTINGS.items():
    monkeypatch.setattr(demo_app, name, value)


def require_export_packages():
  """jax2onnx, onnx and onnxruntime (the `export` extra); .ci/run installs them, and with
  FLOWERGAN_REQUIRE_EXPORT=1 (set there) their absence fails instead of skipping."""
  for name in ("jax2onnx", "onnx", "onnxruntime"):
    try:
      __import__(name)
    except ImportError:
      reason = f'{name} is not installed (pip install -e ".[export]", see setup.cfg)'
      if os.environ.get("FLOWERGAN_REQUIRE_EXPORT") == "1":
        pytest.fail(reason)
      pytest.skip(reason)


def random_generator(image_size: int, seed: int = 0):
  """flowergan's generator (its default convolutions) with random weights and BatchNorm
  statistics of a random batch: its images spread over [-1, 1] as a trained one's do (at
  initialisation the statistics are 0 and 1 and the outputs stay near 0)."""
  generator = models.Generator(
      image_size=image_size,
      num_classes=len(CLASS_NAMES),
      conv=models.conv_module("auto", role="generator"),
  )
  k_init, k_z = jax.random.split(jax.random.key(seed))
  z = jax.random.normal(k_z, (16, Z_DIM))
  labels = jnp.arange(16) % len(CLASS_NAMES)
  variables = generator.init(k_init, z, labels, train=False)
  params = jax.tree_util.tree_map(
      lambda x: x * 3.0 if x.ndim == 4 and x.shape[-1] == 3 else x, variables["params"]
  )  # the last conv (3 output channels) ×3: outputs reach tanh's tails
  _, updated = generator.apply(
      {"params": params, "batch_stats": variables["batch_stats"]},
      z,
      labels,
      train=True,
      mutable=["batch_stats"],
  )
  # One update from (mean 0, var 1) with momentum 0.9 → the batch's own statistics.
  batch_stats = jax.tree_util.tree_map_with_path(
      lambda path, x: (x - 0.9) / 0.1 if path[-1].key == "var" else x / 0.1,
      updated["batch_stats"],
  )
  return generator, {"params": params, "batch_stats": batch_stats}


def random_exportable(image_size: int, seed: int = 0):
  """(flowergan's generator, its variables, the Exportable of the same weights)."""
  generator, variables = random_generator(image_size, seed)
  exportable = export.Exportable(
      generator=generator.clone(conv=models.nn.Conv),
      variables=variables,
      class_names=list(CLASS_NAMES),
      step=123,
      info={"z_dim": Z_DIM},
  )
  return generator, variables, exportable


def inputs(num: int, seed: int = 0, truncation: float = 1.5):
  """Truncated-normal noise and class weights: one-hot rows, and one blend (a class morph)."""
  rng = np.random.default_rng(seed)
  z = np.clip(rng.standard_normal((num, Z_DIM)), -truncation, truncation).astype(np.float32)
  weights = np.eye(len(CLASS_NAMES), dtype=np.float32)[np.arange(num) % len(CLASS_NAMES)]
  if num > 2:
    weights[2] = [0.3, 0.7]
  return z, weights
