"""The evaluation of a run adds Inception FID/KID/precision/recall when the weights are configured.

The weights here are random (no download, no torch): a stand-in weights file whose sha256 names
a ready cache of Flax-layout arrays, the cache `inception.load_weights` reads. The numbers of the
network itself are checked against pytorch-fid in test_inception.py / test_fid.py; here it is the
wiring: which images go in, which keys come out, the real-feature cache, the flag, the config.
"""

import json
import os

import ml_collections
import numpy as np
import pytest

from flowergan import best_checkpoint, checkpointing, config_checks, data_sources, evaluate
from flowergan import inception, metrics, report, run_evaluation, storage
from flowergan import train as train_lib
from tests import tiny_config, tiny_run

INCEPTION_KEYS = ("fid", "kid", "kid_std", "precision", "recall")


def _random_inception_cache(weights_path, cache_dir) -> None:
  """Random Flax-layout arrays cached for the file `weights_path` (as `load_weights` caches)."""
  rng = np.random.default_rng(0)
  arrays = {}
  for names, shape in inception.expected_layout().values():
    leaf = names[-1]
    if leaf == "kernel":
      o, i, h, w = shape
      value = rng.normal(0.0, np.sqrt(2.0 / (i * h * w)), (h, w, i, o))
    elif leaf in ("mean", "bias"):
      value = rng.normal(0.0, 0.1, shape)
    else:  # BatchNorm scale and running variance
      value = rng.uniform(0.5, 1.5, shape)
    arrays["/".join(names)] = value.astype(np.float32)
  path = inception.cache_path(storage.file_sha256(str(weights_path)), str(cache_dir))
  np.savez(_mkparents(path), **arrays)


def _mkparents(path: str) -> str:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  return path


def _fast_frechet(monkeypatch) -> None:
  """Fréchet distances by symmetric eigendecompositions instead of scipy's sqrtm.

  The same quantity (`metrics.frechet_distance_from_stats`); sqrtm of a 2048² product costs
  minutes on a loaded 2-core CPU, and its parity with pytorch-fid is tested in test_fid.py.
  """
  monkeypatch.setattr(metrics, "frechet_distance_sqrtm", metrics.frechet_distance_from_stats)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """A 2-step tiny run whose end-of-training evaluation has the Inception weights, ranked by FID."""
  root = tmp_path_factory.mktemp("inception_eval")
  weights = root / "pt_inception-test.pth"
  weights.write_bytes(b"stand-in for the Inception weights file")
  _random_inception_cache(weights, root / "cache")
  config = tiny_config.get_config(cache_dir=root / "cache")
  config.train.num_steps = 2
  config.data.synthetic_num_per_class = 6  # 299² Inception on the CPU: few images
  config.eval.num_per_class = 4  # > k = 3 for precision/recall
  config.eval.inception_weights = str(weights)
  # Batches of 8 on the 8 test devices for the 12 real and the 8 generated images alike: one
  # compiled 299² network (the shape test_inception and test_fid compile too), not two.
  config.eval.inception_batch_size = 4
  config.best_checkpoint.metric = "fid"
  workdir = root / "run"
  with pytest.MonkeyPatch.context() as mp:
    _fast_frechet(mp)
    train_lib.train_and_evaluate(config, str(workdir))
  images, labels, names = data_sources.load_images(config.data)
  return workdir, config, weights, (images, labels, names)


def _lines(workdir):
  with open(workdir / evaluate.METRICS_FILE) as f:
    return [json.loads(line) for line in f]


def _inception_items(results: dict) -> dict:
  return {k: v for k, v in results.items() if k.startswith("inception/")}


def test_training_evaluation_adds_finite_inception_metrics_per_class(run):
  workdir, _, _, (_, _, names) = run
  (line,) = _lines(workdir)
  assert line["inception_protocol"] == "pytorch-fid 0.3.0"
  assert not line["inception_real_cached"]
  expected = {f"inception/{k}" for k in INCEPTION_KEYS}
  expected |= {f"inception/{k}/{n}" for k in INCEPTION_KEYS for n in names}
  assert set(_inception_items(line)) == expected
  assert all(np.isfinite(v) for v in _inception_items(line).values()), line
  assert line["inception/fid"] > 0 and 0 <= line["inception/precision"] <= 1
  # The cache of the real images' features, keyed by data, protocol and weights.
  assert len(list((workdir / "eval").glob("inception_real_*.npz"))) == 1


def test_fid_ranks_the_checkpoints(run):
  workdir, _, _, _ = run
  manager = checkpointing.make_manager(str(workdir), create=False)
  try:
    assert best_checkpoint.best_step(str(workdir), manager) == 2  # the evaluated last step
  finally:
    manager.close()
  best = best_checkpoint.BestCheckpoint("fid")
  assert best.result_key == "inception/fid"
  assert train_lib._checkpoint_metrics({"inception/fid": 12.5}, best) == {"fid": 12.5}


def test_evaluation_reuses_the_cached_real_features(run, monkeypatch):
  workdir, _, weights, (images, labels, names) = run
  _fast_frechet(monkeypatch)
  calls = []
  extract = inception.extract_features

  def counted(variables, images, **kwargs):
    calls.append(len(images))
    return extract(variables, images, **kwargs)

  monkeypatch.setattr(inception, "extract_features", counted)
  out = evaluate.evaluate(
      str(workdir), images, labels, names, cache_dir=str(weights.parent / "cache")
  )
  assert out["inception_real_cached"]
  assert calls == [4 * len(names)]  # only the generated images went through the network
  trained = _lines(workdir)[0]
  for key, value in _inception_items(trained).items():
    assert out[key] == pytest.approx(value, rel=1e-6), key
  assert _lines(workdir)[-1]["inception/fid"] == out["inception/fid"]
  table = report.format_table(out, names)
  assert "FID (pytorch-fid)" in table and "recall (Inception, k=3)" in table
  scalars = report.scalars(out)
  assert "eval/inception/fid" in scalars and f"eval/inception/kid/{names[0]}" in scalars


def test_without_weights_nothing_inception_is_measured(run):
  workdir, config, _, (images, labels, names) = run
  eval_config = ml_collections.ConfigDict(config.eval.to_dict())
  eval_config.inception_weights = ""
  out = evaluate.evaluate(str(workdir), images, labels, names, eval_config=eval_config, write=False)
  assert not [k for k in out if k.startswith("inception")]
  assert "FID (pytorch-fid)" not in report.format_table(out, names)


def test_a_missing_weights_file_is_one_line(run):
  workdir, _, _, _ = run
  result = tiny_run.run("evaluate.py", f"--workdir={workdir}", "--inception=/missing/inc.pth")
  assert result.returncode == 1
  lines = result.stderr.strip().splitlines()
  assert lines[-1].startswith("error: no file /missing/inc.pth.") and "--inception" in lines[-1]
  assert "Traceback" not in result.stderr and "step" not in result.stdout


def test_best_checkpoint_fid_needs_the_inception_weights():
  config = tiny_config.get_config()
  config.best_checkpoint.metric = "fid"
  with pytest.raises(config_checks.ConfigError, match="needs the Inception weights"):
    config_checks.validate(config)
  config.eval.inception_weights = "pt_inception-2015-12-05-6726825d.pth"
  config_checks.validate(config)
  config.best_checkpoint.mode = "max"
  with pytest.raises(config_checks.ConfigError, match="mode must be 'min'"):
    config_checks.validate(config)


def test_stored_weights_path_missing_here_leaves_inception_out_with_a_warning(run, caplog):
  """A run shared from another machine names its own weights path: evaluating it here without
  `--inception` measures everything else and says how to add the Inception metrics."""
  workdir, _, weights, _ = run
  moved = weights.with_name("elsewhere.pth")
  weights.rename(moved)
  try:
    with caplog.at_level("WARNING"):
      out, _ = run_evaluation.evaluate_run(
          str(workdir), write=False, cache_dir=str(weights.parent / "cache")
      )
  finally:
    moved.rename(weights)
  assert not [k for k in out if k.startswith("inception")]
  assert np.isfinite(out["gan_train"]) and np.isfinite(out["class_consistency_mean"])
  warning = [r.getMessage() for r in caplog.records if "Inception weights" in r.getMessage()]
  assert len(warning) == 1 and str(weights) in warning[0] and "--inception=FILE" in warning[0]
