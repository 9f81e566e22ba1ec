"""flowergan.ada: the augmentations, the shift-invariant heuristic, p's adaptation, and p in the
train state (checkpoint, exact resume, progress line, metrics.jsonl)."""

import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from flowergan import ada, checkpointing, config_checks
from flowergan import mesh as mesh_lib
from flowergan import train as train_lib
from flowergan import train_step as ts
from tests import tiny_config


def _images(n=8, size=16, seed=0):
  return jax.random.uniform(jax.random.key(seed), (n, size, size, 3), minval=-1.0, maxval=1.0)


def test_augment_is_the_identity_at_p_zero_and_the_warp_exact_on_pixels():
  x = _images()
  np.testing.assert_array_equal(jax.jit(ada.augment)(x, jax.random.key(1), jnp.float32(0)), x)
  # The warp itself (what p > 0 runs) leaves pixels as they are under the identity matrix and
  # moves them exactly under an x-flip (no blur from the resampling).
  eye = jnp.broadcast_to(jnp.eye(3), (8, 3, 3))
  warp = jax.jit(ada.warp)
  np.testing.assert_array_equal(warp(x, eye), x)
  flip = eye * jnp.array([-1.0, 1.0, 1.0])[:, None]
  np.testing.assert_array_equal(warp(x, flip), x[:, :, ::-1])
  colour = ada.colour_matrix(jax.random.key(2), 8, 0.0, hue=True)
  np.testing.assert_array_equal(colour, jnp.broadcast_to(jnp.eye(4), (8, 4, 4)))


def test_augment_at_p_one_changes_every_image_and_is_differentiable():
  x = _images()
  key = jax.random.key(3)
  y = jax.jit(ada.augment)(x, key, 1.0)
  assert y.shape == x.shape
  assert np.all(np.max(np.abs(np.asarray(y - x)), axis=(1, 2, 3)) > 0.1)
  weights = _images(seed=4)
  f = jax.jit(lambda im: jnp.sum(ada.augment(im, key, 1.0) * weights))
  grad = jax.jit(jax.grad(f))(x)
  assert np.all(np.isfinite(grad)) and float(jnp.sum(jnp.abs(grad))) > 1.0
  # The transformation is affine in the images, so the gradient is exact along any direction.
  v = _images(seed=5)
  chex.assert_trees_all_close(f(x + v) - f(x), jnp.sum(grad * v), rtol=1e-3, atol=1e-2)


def test_hue_rotation_is_off_by_default_and_available():
  x = _images()
  key = jax.random.key(6)
  grey = jnp.mean(x, axis=-1, keepdims=True)
  # Without hue, a grey image stays grey (only its brightness and contrast change).
  y = ada.apply_colour(jnp.broadcast_to(grey, x.shape), ada.colour_matrix(key, 8, 1.0))
  np.testing.assert_allclose(y[..., 0], y[..., 1], atol=1e-5)
  m_hue = ada.colour_matrix(key, 8, 1.0, hue=True)
  assert not np.allclose(m_hue, ada.colour_matrix(key, 8, 1.0))


def test_augment_is_the_same_on_one_and_on_eight_devices():
  assert jax.device_count() == 8
  x = _images(n=16)
  key = jax.random.key(7)
  mesh = mesh_lib.make_mesh()
  sharded = jax.jit(
      lambda im, k: ada.augment(im, k, jnp.float32(0.7)),
      in_shardings=(mesh_lib.batch_sharding(mesh), mesh_lib.replicated(mesh)),
      out_shardings=mesh_lib.batch_sharding(mesh),
  )(x, key)
  one = jax.devices()[0]
  single = jax.jit(lambda im, k: ada.augment(im, k, jnp.float32(0.7)))(
      jax.device_put(x, one), jax.device_put(key, one)
  )
  assert len(single.devices()) == 1 and len(sharded.devices()) == 8
  np.testing.assert_allclose(sharded, single, rtol=1e-6, atol=1e-6)


def test_real_above_fake_ignores_a_shift_of_the_scores_where_the_sign_does_not():
  real = jnp.array([0.3, 0.9, -0.2, 0.5])
  fake = jnp.array([0.1, -0.4, 0.6, 0.0])
  r = float(ada.real_above_fake(real, fake))
  assert r == pytest.approx(11 / 16)
  assert float(ada.real_above_fake(real + 100.0, fake + 100.0)) == pytest.approx(r)
  # ADA's E[sign(D(real))] moves from 0.5 to 1 under the same shift: no fixed zero.
  assert float(jnp.mean(jnp.sign(real))) != float(jnp.mean(jnp.sign(real + 100.0)))


def _p_after_critic_training(real_set_size: int, steps: int = 120) -> float:
  """A linear critic D(x) = w·x/|w| trained by the Wasserstein loss on real images drawn from a
  set of `real_set_size` against fresh "generated" images of the same distribution (a perfect
  generator): only memorising the real set separates them. p adapts as in training."""
  dim, batch = 64, 16
  data = jax.random.normal(jax.random.key(0), (real_set_size, dim))
  tx = optax.adam(0.05)

  def critic(w, x):
    return x @ w / jnp.linalg.norm(w)

  def step(carry, key):
    w, opt, state = carry
    k_real, k_fake = jax.random.split(key)
    real = data[jax.random.randint(k_real, (batch,), 0, real_set_size)]
    fake = jax.random.normal(k_fake, (batch, dim))
    loss = lambda w: jnp.mean(critic(w, fake)) - jnp.mean(critic(w, real))
    updates, opt = tx.update(jax.grad(loss)(w), opt)
    w = optax.apply_updates(w, updates)
    stat = ada.real_above_fake(critic(w, real), critic(w, fake))
    state = ada.update(state, stat, images_per_step=batch, target=0.6, interval=4, kimg=0.5)
    return (w, opt, state), stat

  w = jax.random.normal(jax.random.key(1), (dim,))
  keys = jax.random.split(jax.random.key(2), steps)
  (_, _, state), _ = jax.lax.scan(step, (w, tx.init(w), ada.init_state()), keys)
  return float(state.p)


def test_p_rises_when_the_critic_overfits_a_tiny_real_set_and_stays_low_when_it_cannot():
  overfit = _p_after_critic_training(real_set_size=4)
  cannot = _p_after_critic_training(real_set_size=100_000)
  assert overfit > 0.5, overfit
  assert cannot < 0.1, cannot


def _ada_config(interval: int = 3):
  config = tiny_config.get_config()
  # p moves by interval·8·2 images / (kimg·1000) = 0.5 for interval 3, each `interval`
  # iterations; target 0.01: it rises. Interval 3: a checkpoint at step 2 holds a partly
  # summed heuristic, which the resumed run must continue from.
  config.train.ada.update(enabled=True, interval=interval, kimg=interval * 16 / 500, target=0.01)
  return config


def _batch(step: int) -> dict:
  rng = np.random.default_rng(step)
  return {
      "image": jnp.asarray(rng.uniform(-1, 1, (2, 8, 16, 16, 3)), jnp.float32),
      "label": jnp.asarray(rng.integers(0, 2, (2, 8)), jnp.int32),
  }


def test_p_is_in_the_checkpoint_and_a_resume_is_exact(tmp_path):
  config = _ada_config()
  gan = ts.wgangp_from_config(config, num_classes=2)
  mesh = mesh_lib.make_mesh(jax.devices()[:1])  # devices: test_augment_is_the_same_on_...
  step_fn = ts.make_train_step(gan, mesh)
  key = jax.random.key(1)

  def train(state, steps):
    for s in steps:
      state, metrics = step_fn(state, mesh_lib.shard_batch(_batch(s), mesh), key)
    return state, metrics

  straight, metrics = train(ts.init_state(gan, jax.random.key(0), mesh), range(4))
  assert float(metrics["ada_p"]) == pytest.approx(0.5)  # what TensorBoard and the line show
  assert float(straight.ada.p) == pytest.approx(0.5) and int(straight.ada.stat_count) == 1

  half, _ = train(ts.init_state(gan, jax.random.key(0), mesh), range(2))
  manager = checkpointing.make_manager(str(tmp_path))
  checkpointing.save(
      manager, 2, ts.checkpoint_items(half), checkpointing.make_metadata(config, ["a", "b"])
  )
  manager.wait_until_finished()
  restored = checkpointing.read_state(manager, 2, ts.abstract_state(gan, mesh))
  manager.close()
  assert int(restored.ada.stat_count) == 2 and float(restored.ada.stat_sum) > 0
  resumed, _ = train(restored, range(2, 4))
  chex.assert_trees_all_equal(jax.device_get(straight), jax.device_get(resumed))


def test_without_ada_the_state_has_no_ada_leaves():
  """Off (the default): the state, hence every checkpoint, is what it was before ADA existed."""
  gan = ts.wgangp_from_config(tiny_config.get_config(), num_classes=2)
  assert gan.ada is None
  state = ts.abstract_state(gan, mesh_lib.make_mesh())
  assert state.ada is None
  paths = [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_leaves_with_path(state)]
  assert paths and not any("ada" in path for path in paths)


def test_the_progress_line_shows_p_only_with_ada():
  metrics = dict(critic_loss=1.0, wasserstein=2.0, gradient_penalty=0.1, generator_loss=-1.0)
  assert "ADA" not in train_lib._format_progress(3, 4, 1.0, 16, metrics)
  line = train_lib._format_progress(3, 4, 1.0, 16, {**metrics, "ada_p": 0.25})
  assert line.endswith("| ADA p 0.250"), line


def test_ada_p_is_written_to_metrics_jsonl_beside_the_evaluation(tmp_path, monkeypatch):
  """train's evaluation adds p to its metrics.jsonl line (the evaluation itself faked)."""
  from flowergan import evaluate, report

  monkeypatch.setattr(evaluate, "evaluate", lambda *a, **k: {"step": 4, "kid": 0.5})
  monkeypatch.setattr(report, "scalars", lambda results: {})
  monkeypatch.setattr(report, "format_table", lambda results, names: "")
  written = []

  class Writer:

    def write_scalars(self, step, scalars):
      written.append(scalars)

  gan = ts.wgangp_from_config(_ada_config(), num_classes=2)
  state = ts.TrainState(*([None] * 7), ada=ada.init_state(0.375))
  run = train_lib._Run(
      config=_ada_config(),
      workdir=tmp_path,
      gan=gan,
      class_names=("a", "b"),
      manager=None,
      metadata={},
      writer=Writer(),
      is_main=True,
      sample_seed=0,
      real_images=lambda: (None, None),
  )
  results = train_lib._evaluate(run, state, 4)
  record = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
  assert record["ada_p"] == results["ada_p"] == 0.375 and record["kid"] == 0.5


@pytest.mark.parametrize(
    "field, value, needle",
    [
        ("target", 1.0, "config.train.ada.target must be a finite number in (0, 1)"),
        ("interval", 0, "config.train.ada.interval must be an integer >= 1"),
        ("kimg", 0.0, "config.train.ada.kimg must be a finite number > 0"),
    ],
)
def test_a_bad_ada_setting_is_one_line(field, value, needle):
  config = tiny_config.get_config()
  config.train.ada[field] = value
  with pytest.raises(config_checks.ConfigError) as e:
    config_checks.validate(config)
  assert needle in str(e.value) and "\n" not in str(e.value)
