"""FID of two image folders equal to pytorch-fid 0.3.0's; KID, precision and recall on features."""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from flowergan import fid, inception, metrics
from tests import fid_reference as ref

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
  return ref.weights_file(tmp_path_factory)


def _run_command(*args):
  env = {**os.environ, "PYTHONPATH": ROOT}
  return subprocess.run(
      [sys.executable, "-m", "flowergan.fid", *map(str, args)],
      capture_output=True,
      text=True,
      env=env,
      cwd=ROOT,
  )


def test_command_prints_the_fid_of_pytorch_fid(weights, tmp_path):
  """`python -m flowergan.fid A B --inception=FILE` prints the protocol, then `FID: <number>`
  within 1e-3 of `pytorch_fid.fid_score.calculate_fid_given_paths` on the same folders (here
  of 32 and 128 px images: two different resizes to 299; 299 px below)."""
  rng = np.random.default_rng(6)
  a, b = tmp_path / "a", tmp_path / "b"
  ref.write_folder(a, ref.smooth_images(rng, 6, 32, (0, 0, 0)))
  ref.write_folder(b, ref.smooth_images(rng, 6, 128, (40, 0, -40)))
  run = _run_command(a, b, f"--inception={weights}", f"--cache_dir={tmp_path / 'cache'}")
  assert run.returncode == 0, run.stderr
  lines = run.stdout.splitlines()
  assert lines[0].startswith(f"protocol: {inception.PROTOCOL}")
  assert lines[1].startswith("FID: ")
  want = ref.reference_fid(weights, a, b)
  assert want > 1.0
  assert float(lines[1].removeprefix("FID: ")) == pytest.approx(want, rel=1e-3)
  # The console at the default verbosity: the one warning about these random test weights,
  # none of JAX's INFO lines ("Unable to initialize backend 'tpu'") or scipy's LinAlgWarning.
  others = [line for line in run.stderr.splitlines() if "is not the published" not in line]
  assert others == [], run.stderr[-3000:]


def test_fid_of_299_px_folders_is_pytorch_fids(weights, tmp_path):
  """At the network's own size (no resize) too, `fid_of_paths` of two folders is pytorch-fid's
  `calculate_fid_given_paths` within 1e-3, here with one folder given as pytorch-fid's saved
  statistics (`--save-stats`)."""
  rng = np.random.default_rng(7)
  a, b = tmp_path / "a", tmp_path / "b"
  ref.write_folder(a, ref.smooth_images(rng, 5, 299, (0, 20, 0)))
  ref.write_folder(b, ref.smooth_images(rng, 5, 299, (30, -30, 0)))
  stats_b = tmp_path / "b.npz"
  ref.reference_save_stats(weights, b, stats_b)
  got = fid.fid_of_paths(str(a), str(stats_b), weights, cache_dir=str(tmp_path / "cache"))
  want = ref.reference_fid(weights, a, stats_b)
  assert want > 1.0
  assert got == pytest.approx(want, rel=1e-3)


def test_command_without_weights_says_where_to_get_them(tmp_path):
  for folder in ("a", "b"):
    ref.write_folder(tmp_path / folder, np.zeros((2, 8, 8, 3), np.uint8))
  run = _run_command(tmp_path / "a", tmp_path / "b", f"--cache_dir={tmp_path / 'cache'}")
  assert run.returncode == 1
  assert run.stderr.startswith("error: ") and len(run.stderr.strip().splitlines()) == 1
  for text in (inception.WEIGHTS_FILE, inception.WEIGHTS_URL, "--inception="):
    assert text in run.stderr


def test_folder_of_mixed_sizes_is_refused_before_reading_weights(tmp_path):
  folder = tmp_path / "mixed"
  ref.write_folder(folder, np.zeros((2, 8, 8, 3), np.uint8))
  Image.new("RGB", (16, 8)).save(folder / "wide.png")
  with pytest.raises(fid.FidError, match="must share one size") as e:
    fid.fid_of_paths(str(folder), str(folder), None, cache_dir=str(tmp_path / "cache"))
  assert "wide.png" in str(e.value) and "\n" not in str(e.value)


def test_frechet_distance_sqrtm_is_pytorch_fids_formula():
  """Same statistics, same number as pytorch-fid's calculate_frechet_distance (float64)."""
  _, _, fid_score = ref.import_reference()
  rng = np.random.default_rng(3)
  a = rng.normal(size=(40, 16))
  b = rng.normal(size=(30, 16)) * 1.5 + 0.3
  stats = (*metrics.feature_stats(a), *metrics.feature_stats(b))
  want = fid_score.calculate_frechet_distance(*stats)
  assert metrics.frechet_distance_sqrtm(*stats) == pytest.approx(want, rel=1e-12)


def test_folders_read_as_pytorch_fid_reads_them(tmp_path):
  """Lower-case image extensions only, no subfolders' files; too few images: one line."""
  folder = tmp_path / "imgs"
  folder.mkdir()
  for name in ("b.png", "a.jpg", "c.PNG", "d.txt", "e.webp"):
    Image.new("RGB", (8, 8)).save(folder / name, format="PNG")
  (folder / "sub").mkdir()
  Image.new("RGB", (8, 8)).save(folder / "sub" / "f.png")
  assert [os.path.basename(p) for p in fid.image_files(str(folder))] == [
      "a.jpg",
      "b.png",
      "e.webp",
  ]
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(fid.FidError, match="at least 2"):
    fid.image_files(str(empty))


def test_precision_recall_measure_overlap_of_the_manifolds():
  """Identical sets: precision = recall = 1; far apart: 0; fakes on a part of the real set:
  full precision, partial recall."""
  rng = np.random.default_rng(4)
  real = rng.normal(size=(200, 8))
  assert fid.precision_recall(real, real) == (1.0, 1.0)
  assert fid.precision_recall(real, real + 100.0) == (0.0, 0.0)
  collapsed = real[real[:, 0] > 0.5]
  precision, recall = fid.precision_recall(real, collapsed)
  assert precision == 1.0
  assert 0.1 < recall < 0.7


def test_inception_metrics_per_class_and_overall():
  """FID, KID, precision and recall over all images and for each class; the class whose fakes
  match its reals scores better than the one whose fakes are shifted."""
  rng = np.random.default_rng(5)
  real = rng.normal(size=(60, 16))
  real_labels = np.repeat([0, 1], 30)
  fake = np.concatenate([real[:30] + rng.normal(scale=0.05, size=(30, 16)), real[30:] + 3.0])
  out = fid.inception_metrics(real, real_labels, fake, real_labels, ("dandelion", "marigold"))
  for name in ("fid", "kid", "kid_std", "precision", "recall"):
    assert {name, f"{name}/dandelion", f"{name}/marigold"} <= set(out)
  assert out["fid/dandelion"] < out["fid/marigold"]
  assert out["kid/dandelion"] < out["kid/marigold"]
  assert out["precision/dandelion"] > out["precision/marigold"]


def _stats_file(path, mu=None, sigma=None):
  d = inception.FEATURE_DIM
  mu = np.zeros(d) if mu is None else mu
  np.savez(path, mu=mu, sigma=np.eye(d) if sigma is None else sigma)
  return path


@pytest.mark.parametrize("damage", ["empty", "garbage", "half", "no_sigma", "nan_mu", "inf_sigma"])
def test_damaged_statistics_are_refused_in_one_line(tmp_path, damage):
  """A truncated, empty or foreign .npz, or one with NaN/inf, is refused in one line that says
  to write it again (it used to be a BadZipFile/EOFError traceback, or `FID: nan`)."""
  path = _stats_file(tmp_path / "stats.npz")
  data = path.read_bytes()
  d = inception.FEATURE_DIM
  if damage == "empty":
    path.write_bytes(b"")
  elif damage == "garbage":
    path.write_bytes(b"not statistics" * 10)
  elif damage == "half":
    path.write_bytes(data[: len(data) // 2])
  elif damage == "no_sigma":
    np.savez(path, mu=np.zeros(d))
  elif damage == "nan_mu":
    _stats_file(path, mu=np.full(d, np.nan))
  else:
    _stats_file(path, sigma=np.where(np.eye(d) > 0, np.inf, 0.0))
  with pytest.raises(fid.FidError, match="write it again with --save-stats") as e:
    fid.load_statistics(str(path))
  assert "\n" not in str(e.value) and "pickle" not in str(e.value)


def test_non_finite_statistics_are_refused_before_sqrtm():
  mu, sigma = np.zeros(4), np.eye(4)
  with pytest.raises(fid.FidError, match="not finite"):
    fid.fid_from_stats(mu, sigma, np.full(4, np.nan), sigma)


def test_command_refuses_a_truncated_statistics_file(tmp_path):
  good = _stats_file(tmp_path / "good.npz")
  cut = tmp_path / "cut.npz"
  cut.write_bytes(good.read_bytes()[:1000])
  run = _run_command(good, cut)
  assert run.returncode == 1 and "Traceback" not in run.stderr
  assert run.stderr.startswith("error: ") and len(run.stderr.strip().splitlines()) == 1
  assert "write it again with --save-stats" in run.stderr


def test_non_finite_features_are_refused_before_their_statistics(tmp_path, monkeypatch):
  """Features with NaN (weights that overflow) stop the command in one line before any sqrtm,
  which on NaN statistics ran past 5 minutes."""
  ref.write_folder(tmp_path / "a", np.zeros((2, 8, 8, 3), np.uint8))
  monkeypatch.setattr(
      inception, "extract_features", lambda v, x, **k: np.full((len(x), 4), np.nan, np.float32)
  )
  with pytest.raises(fid.FidError, match="features of .* are not finite") as e:
    fid.folder_features(str(tmp_path / "a"), {})
  assert "\n" not in str(e.value)
