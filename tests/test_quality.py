"""Evaluation (flowergan/evaluate.py) on a tiny trained run, in-loop evaluation, the DiffAugment
hook in the gradient-penalty path, EMA across resume, the classifier on the synthetic set."""

import json
import os
import shutil
import subprocess
import sys

import chex
import jax
import numpy as np
import pytest

from flowergan import checkpointing, classifier, classifier_cache, data_sources, evaluate, report
from flowergan import synthetic
from flowergan import mesh as mesh_lib
from flowergan import train as train_lib
from flowergan import train_step as ts
from tests import tiny_config

EXPECTED_KEYS = {
    "step",
    "use_ema",
    "seed",
    "num_generated_per_class",
    "num_real",
    "classifier_holdout_accuracy",
    "classifier_train_accuracy",
    "probe_holdout_accuracy",
    "gan_train/dandelion",
    "gan_train/marigold",
    "gan_train",
    "gan_train_real/dandelion",
    "gan_train_real/marigold",
    "gan_train_real",
    "gan_train_num_images",
    "class_consistency/dandelion",
    "class_consistency/marigold",
    "class_consistency_mean",
    "fd/dandelion",
    "fd/marigold",
    "fd",
    "fd_real_halves",
    "kid/dandelion",
    "kid/marigold",
    "kid",
    "kid_std/dandelion",
    "kid_std/marigold",
    "kid_std",
    "swd_16",
    "swd_mean",
    "swd_real_halves_16",
    "swd_real_halves_mean",
    "checkerboard",
    "checkerboard_real",
    "eval_seconds",
    "classifier_cached",
}


def _config(root, num_steps=2):
  config = tiny_config.get_config(cache_dir=root / "cache")
  config.train.num_steps = num_steps  # and tiny_config's small evaluation settings
  return config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """2 training steps; config.eval_every = 0, so the loop evaluates once, at the end."""
  root = tmp_path_factory.mktemp("quality")
  config = _config(root)
  workdir = root / "run"
  state = train_lib.train_and_evaluate(config, str(workdir))
  images, labels, names = data_sources.load_images(config.data)
  return workdir, config, state, (images, labels, names)


def _lines(workdir):
  with open(workdir / evaluate.METRICS_FILE) as f:
    return [json.loads(line) for line in f]


def test_training_loop_evaluates_at_the_end(run):
  workdir, _, _, _ = run
  lines = _lines(workdir)
  assert len(lines) == 1 and lines[0]["step"] == 2 and lines[0]["use_ema"]
  assert EXPECTED_KEYS <= set(lines[0])
  assert (workdir / evaluate.CLASSIFIER_FILE).exists()
  assert not lines[0]["classifier_cached"]


def test_evaluate_gives_every_metric_finite_and_reuses_the_classifier(run):
  workdir, config, _, (images, labels, names) = run
  before = len(_lines(workdir))
  out = evaluate.evaluate(str(workdir), images, labels, names)
  assert EXPECTED_KEYS <= set(out)
  values = [v for k, v in out.items() if k not in ("use_ema", "classifier_cached")]
  assert all(np.isfinite(v) for v in values), out
  assert out["classifier_cached"]  # trained by the in-loop evaluation, same data and settings
  assert out["num_generated_per_class"] == config.eval.num_per_class
  assert out["num_real"] == len(images)
  for name in names:
    assert 0.0 <= out[f"class_consistency/{name}"] <= 1.0
  assert 0.0 <= out["checkerboard"] <= 1.0 and out["kid_std"] >= 0.0
  lines = _lines(workdir)
  assert len(lines) == before + 1 and lines[-1]["fd"] == out["fd"]
  for key in ("gan_train", "gan_train_real", "probe_holdout_accuracy"):
    assert 0.0 <= out[key] <= 1.0
  assert out["gan_train_num_images"] > 0
  assert set(report.scalars(out)) >= {
      "eval/fd",
      "eval/kid",
      "eval/swd_mean",
      "eval/gan_train",
      "eval/gan_train_real",
      *(f"eval/gan_train/{n}" for n in names),
      "eval/probe_holdout_accuracy",
  }
  table = report.format_table(out, names)
  assert "class consistency" in table and "KID" in table and "checkerboard" in table
  assert "GAN-train" in table and "GAN-test" in table and "probe" in table
  assert f"{out['gan_train']:.3f}" in table and f"{out['probe_holdout_accuracy']:.3f}" in table
  losing = dict(out, classifier_holdout_accuracy=0.5, probe_holdout_accuracy=0.9)
  winning = dict(out, classifier_holdout_accuracy=0.9, probe_holdout_accuracy=0.5)
  assert "WARNING: the classifier loses to the probe" in report.format_table(losing, names)
  assert "WARNING" not in report.format_table(winning, names)
  # Same checkpoint, same seed: the same numbers; the raw generator gives others.
  again = evaluate.evaluate(str(workdir), images, labels, names, write=False)
  assert again["fd"] == out["fd"] and again["swd_mean"] == out["swd_mean"]
  raw = evaluate.evaluate(str(workdir), images, labels, names, use_ema=False, write=False)
  assert not raw["use_ema"] and raw["fd"] != out["fd"]
  assert len(_lines(workdir)) == before + 1  # write=False


def test_classifier_is_retrained_when_the_data_changes(run):
  workdir, config, _, (images, labels, names) = run
  path = str(workdir / evaluate.CLASSIFIER_FILE)
  _, meta = classifier.load_classifier(path)
  changed = images.copy()
  changed[0, 0, 0] ^= 1
  out = evaluate.evaluate(str(workdir), changed, labels, names, write=False)
  assert not out["classifier_cached"]
  _, new_meta = classifier.load_classifier(path)
  assert new_meta["fingerprint"] == classifier_cache.data_fingerprint(changed, labels)
  assert new_meta["fingerprint"] != meta["fingerprint"]
  _, info = classifier_cache.get_classifier(
      changed, labels, 2, evaluate.eval_config_of(config), path
  )
  assert info["cached"]
  # Other classifier settings are another classifier too.
  other = evaluate.eval_config_of(config)
  other.classifier_steps = 31
  _, info = classifier_cache.get_classifier(changed, labels, 2, other, path)
  assert not info["cached"]


def test_evaluate_refuses_real_images_that_do_not_fit(run):
  workdir, _, _, (images, labels, names) = run
  with pytest.raises(evaluate.EvaluationError, match="classes"):
    evaluate.evaluate(str(workdir), images, labels, names[::-1], write=False)
  with pytest.raises(evaluate.EvaluationError, match="16×16"):
    evaluate.evaluate(str(workdir), images[:, :8, :8], labels, names, write=False)


def test_eval_config_of_is_a_copy_of_the_runs_eval_block(tmp_path):
  config = _config(tmp_path)
  eval_config = evaluate.eval_config_of(config)
  assert eval_config.to_dict() == config.eval.to_dict()
  eval_config.num_per_class += 1
  assert eval_config.num_per_class == config.eval.num_per_class + 1
  del config.eval  # a run trained before flowergan had evaluation: a one-line error
  with pytest.raises(evaluate.EvaluationError, match="no `eval` block") as e:
    evaluate.eval_config_of(config)
  assert "\n" not in str(e.value)


def test_cli_and_no_tensorflow_at_import(run):
  workdir, _, _, _ = run
  env = dict(os.environ, PYTHONPATH=str(tiny_config.REPO))
  before = len(_lines(workdir))
  # One process: the library module imports without TensorFlow (GPU hosts have none), then the
  # command (`python evaluate.py ...`) loads the run's real images with it.
  script = (
      "import runpy, sys, flowergan.evaluate; "
      "assert 'tensorflow' not in sys.modules, 'tensorflow imported by the module'; "
      "sys.argv = ['evaluate.py'] + sys.argv[1:]; "
      f"runpy.run_path({str(tiny_config.REPO / 'evaluate.py')!r}, run_name='__main__')"
  )
  result = subprocess.run(
      [sys.executable, "-c", script, f"--workdir={workdir}", "--num_per_class=8", "--no_ema"],
      env=env,
      capture_output=True,
      text=True,
      timeout=300,
      cwd=str(workdir),
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert "class consistency" in result.stdout and "raw generator" in result.stdout
  lines = _lines(workdir)
  assert len(lines) == before + 1
  assert lines[-1]["num_generated_per_class"] == 8 and not lines[-1]["use_ema"]


def _restore_state(workdir, config) -> ts.TrainState:
  """The training state of `workdir`'s latest checkpoint, as a resume restores it."""
  manager = checkpointing.make_manager(str(workdir), create=False)
  try:
    target = ts.abstract_state(ts.wgangp_from_config(config, num_classes=2), mesh_lib.make_mesh())
    return checkpointing.read_state(manager, manager.latest_step(), target)
  finally:
    manager.close()


def test_ema_is_kept_across_resume(run, tmp_path):
  original, config, state, _ = run
  workdir = tmp_path / "run"
  shutil.copytree(original, workdir)  # the other tests keep their 2-step run
  restored = _restore_state(workdir, config)
  chex.assert_trees_all_equal(jax.device_get(restored.ema_params), jax.device_get(state.ema_params))
  # The EMA is its own weights, not a copy of the generator's.
  assert not all(
      np.array_equal(a, b)
      for a, b in zip(
          jax.tree.leaves(jax.device_get(state.ema_params)),
          jax.tree.leaves(jax.device_get(state.g_params)),
      )
  )
  # One more step from the checkpoint continues the saved average (not a fresh one).
  config = _config(original.parent, num_steps=3)
  config.eval_every = -1  # never: this test is about the state only
  resumed = train_lib.train_and_evaluate(config, str(workdir))
  assert int(resumed.step) == 3
  expected = ts.ema_update(
      jax.device_get(restored.ema_params),
      jax.device_get(resumed.g_params),
      2,
      config.train.ema_decay,
      config.train.ema_warmup,
  )
  chex.assert_trees_all_close(jax.device_get(resumed.ema_params), expected, rtol=1e-6, atol=1e-7)


def _gradient_penalty(augment_fn, config):
  """The gradient penalty of one critic update on a fixed state and batch. It is computed before
  the update, on interpolates of the un-augmented real and fake images, so only an augmentation
  inside the GP path can change it."""
  gan = ts.wgangp_from_config(config, num_classes=2, augment_fn=augment_fn)
  state = gan.init(jax.random.key(0))
  rng = np.random.default_rng(0)
  b, s = config.train.batch_size, config.data.image_size
  real = rng.uniform(-1, 1, (b, s, s, 3)).astype(np.float32)
  labels = rng.integers(0, 2, (b,)).astype(np.int32)

  @jax.jit
  def penalty(state):
    carry = (state.d_params, state.d_opt_state, state.g_batch_stats)
    _, metrics = gan.critic_update(state.g_params, carry, (real, labels, jax.random.key(1)))
    return metrics["gradient_penalty"]

  return float(penalty(state))


def test_diffaugment_is_applied_in_the_gradient_penalty_path():
  config = tiny_config.get_config()
  calls = []

  def identity(x, key):
    calls.append(x.shape[0])
    return x

  plain = _gradient_penalty(identity, config)
  # A critic update augments the joint real+fake batch (2B) and the GP interpolates (B).
  b = config.train.batch_size
  assert sorted(calls) == [b, 2 * b]
  assert plain == pytest.approx(_gradient_penalty(None, config), rel=1e-6)
  config.train.diffaugment = "color,translation,cutout"
  augmented = _gradient_penalty(train_lib._augment_fn(config), config)
  assert np.isfinite(augmented) and augmented != pytest.approx(plain, rel=1e-3)


def test_classifier_separates_the_synthetic_classes_quickly():
  images, labels, _ = synthetic.render_images(40, seed=0, size=32)
  x = images.astype(np.float32) / 127.5 - 1.0
  _, info = classifier.train_classifier(
      x, labels, 2, steps=60, batch_size=32, seed=0, learning_rate=3e-3
  )
  assert info["num_holdout"] == 16
  assert info["holdout_accuracy"] >= 0.95, info
