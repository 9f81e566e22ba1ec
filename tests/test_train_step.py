import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowergan import models
from flowergan import mesh as mesh_lib
from flowergan import train_step as ts
from tests import tiny_config


def _setup(devices=None, **train_overrides):
  config = tiny_config.get_config()
  config.train.update(train_overrides)
  gan = ts.wgangp_from_config(config, num_classes=2)
  mesh = mesh_lib.make_mesh(devices)
  state = ts.init_state(gan, jax.random.key(config.seed), mesh)
  return config, gan, mesh, state


def _batch(config, seed):
  rng = np.random.default_rng(seed)
  n, b, s = config.train.n_critic, config.train.batch_size, config.data.image_size
  return {
      "image": rng.uniform(-1, 1, (n, b, s, s, 3)).astype(np.float32),
      "label": rng.integers(0, 2, (n, b)).astype(np.int32),
  }


def test_iteration_metrics_finite_and_state_advances():
  config, gan, mesh, state = _setup()
  step = ts.make_train_step(gan, mesh)
  before = jax.device_get(state)
  state, metrics = step(state, mesh_lib.shard_batch(_batch(config, 0), mesh), jax.random.key(1))
  metrics = jax.device_get(metrics)
  assert set(metrics) >= {
      "critic_loss",
      "wasserstein",
      "gradient_penalty",
      "generator_loss",
      "finite",
  }
  assert bool(metrics["finite"])
  assert all(np.isfinite(v) for v in metrics.values())
  assert int(state.step) == 1
  changed = jax.tree.map(
      lambda a, b: not np.array_equal(a, b), before.d_params, jax.device_get(state.d_params)
  )
  # The critic's output bias cancels in E[D(fake)] − E[D(real)]: its gradient is exactly zero.
  assert not changed["Dense_0"].pop("bias")
  assert all(jax.tree_util.tree_leaves(changed))
  g_changed = jax.tree.map(
      lambda a, b: not np.array_equal(a, b), before.g_params, jax.device_get(state.g_params)
  )
  frozen = models.pre_batchnorm_bias_mask(before.g_params)
  assert jax.tree.leaves(g_changed) == [not f for f in jax.tree.leaves(frozen)]


def test_critic_loss_on_fixed_batch_goes_down():
  config, gan, mesh, state = _setup(critic_lr=1e-3, generator_lr=1e-4)
  step = ts.make_train_step(gan, mesh)
  batch = mesh_lib.shard_batch(_batch(config, 0), mesh)
  losses = []
  for _ in range(8):
    state, metrics = step(state, batch, jax.random.key(1))
    losses.append(float(metrics["critic_loss"]))
  assert np.mean(losses[-3:]) < losses[0] - 0.5, losses


def test_eight_devices_match_one_device():
  assert jax.device_count() == 8, "tests/conftest.py should give 8 fake CPU devices"
  results = []
  for devices in (jax.devices()[:1], jax.devices()):
    config, gan, mesh, state = _setup(devices)
    step = ts.make_train_step(gan, mesh)
    for i in range(2):
      state, metrics = step(state, mesh_lib.shard_batch(_batch(config, i), mesh), jax.random.key(3))
    results.append((jax.device_get(state), jax.device_get(metrics)))
  chex.assert_trees_all_close(results[0], results[1], rtol=2e-4, atol=2e-5)


def test_step_compiles_once():
  traces = []
  config, gan, mesh, state = _setup()

  def counting_iteration(state, batch, key):
    traces.append(1)
    return gan.iteration(state, batch, key)

  step = jax.jit(
      counting_iteration,
      in_shardings=(
          mesh_lib.replicated(mesh),
          mesh_lib.batch_sharding(mesh),
          mesh_lib.replicated(mesh),
      ),
      donate_argnums=(0,),
  )
  for i in range(3):
    state, _ = step(state, mesh_lib.shard_batch(_batch(config, i), mesh), jax.random.key(0))
  assert len(traces) == 1
  # The production step too: its cache holds one executable after several calls.
  prod = ts.make_train_step(gan, mesh)
  for i in range(2):
    state, _ = prod(state, mesh_lib.shard_batch(_batch(config, i), mesh), jax.random.key(0))
  assert prod._cache_size() == 1


def test_non_finite_input_is_flagged_and_state_kept():
  config, gan, mesh, state = _setup()
  step = ts.make_train_step(gan, mesh)
  before = jax.device_get(state)
  batch = _batch(config, 0)
  batch["image"][0, 0, 0, 0, 0] = np.nan
  state, metrics = step(state, mesh_lib.shard_batch(batch, mesh), jax.random.key(0))
  assert not bool(metrics["finite"])
  chex.assert_trees_all_equal(before, jax.device_get(state))


def test_ema_closed_form():
  params = {"w": jnp.array([2.0, -1.0])}
  ema = {"w": jnp.zeros(2)}
  decay, k = 0.9, 7
  for t in range(k):
    ema = ts.ema_update(ema, params, t, decay, warmup=False)
  # e_k = p + d^k (e_0 - p) for constant p.
  np.testing.assert_allclose(ema["w"], params["w"] * (1 - decay**k), rtol=1e-6)
  # Warm-up: the first update moves most of the way.
  warm = ts.ema_update({"w": jnp.zeros(2)}, params, 0, 0.999, warmup=True)
  np.testing.assert_allclose(warm["w"], params["w"] * 0.9, rtol=1e-6)


def test_batch_size_must_divide_devices():
  mesh = mesh_lib.make_mesh()
  with pytest.raises(ValueError, match="multiple of 8"):
    mesh_lib.check_batch_size(12, mesh)


def test_bad_dtype_is_a_clear_error():
  config = tiny_config.get_config()
  config.train.dtype = "float16"
  with pytest.raises(ValueError, match="float32' or 'bfloat16"):
    ts.wgangp_from_config(config, num_classes=2)
