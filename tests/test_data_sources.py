"""Tests for flowergan.data_sources: the source dispatch, the synthetic source and its cache, class
names, the close-match hint, and no TensorFlow for folders (no network)."""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from flowergan import config_checks, data_errors, data_sources, synthetic
from tests import cli_run, tiny_config
from tests.image_folders import S, assert_one_line_error, data_config, write_mixed_folder


def test_unknown_source():
  with pytest.raises(ValueError) as e:
    data_sources.load_images(data_config(source="hdf5:/x"))
  assert_one_line_error(e, "hdf5:/x", "'folder:PATH'", "'synthetic'", "'tfds:NAME'")


def test_synthetic_source_writes_cache_once(tmp_path, monkeypatch):
  cfg = data_config(
      source="synthetic", cache_dir=str(tmp_path), synthetic_num_per_class=3, synthetic_seed=7
  )
  images, labels, names = data_sources.load_images(cfg)
  final = tmp_path / f"synthetic-7-3-{S}"
  assert sorted(os.listdir(tmp_path)) == [final.name]  # no temp leftovers
  assert sorted(os.listdir(final / "marigold")) == ["000000.png", "000001.png", "000002.png"]
  assert names == ["dandelion", "marigold"]
  np.testing.assert_array_equal(labels, [0, 0, 0, 1, 1, 1])
  expected, _, _ = synthetic.render_images(3, seed=7, size=S)
  np.testing.assert_array_equal(images, expected)

  def boom(*args, **kwargs):
    raise AssertionError("must not re-render an existing cache")

  monkeypatch.setattr(synthetic, "write_dataset", boom)
  again, _, _ = data_sources.load_images(cfg)
  np.testing.assert_array_equal(again, images)


def test_synthetic_crash_leaves_no_cache(tmp_path, monkeypatch):
  def crash(directory, *args, **kwargs):
    os.makedirs(os.path.join(directory, "dandelion"))
    Image.new("RGB", (S, S)).save(os.path.join(directory, "dandelion", "000000.png"))
    raise KeyboardInterrupt

  monkeypatch.setattr(synthetic, "write_dataset", crash)
  cfg = data_config(source="synthetic", cache_dir=str(tmp_path))
  with pytest.raises(KeyboardInterrupt):
    data_sources.load_images(cfg)
  assert os.listdir(tmp_path) == []


def test_evaluate_train_and_folder_or_synthetic_sets_do_not_import_tensorflow(tmp_path):
  """TensorFlow is for the sampler, TFDS and TensorBoard only: evaluating a folder / synthetic
  run skips it, and importing the training loop does not load it (seconds)."""
  mixed_folder = write_mixed_folder(tmp_path)
  cache = tmp_path / "cache"
  code = (
      "import sys\n"
      "import flowergan.evaluate\n"
      "import flowergan.train\n"
      "from flowergan import data_sources\n"
      "from tests.image_folders import data_config\n"
      f"images, _, _ = data_sources.load_images(data_config(source='folder:{mixed_folder}'))\n"
      "assert len(images) == 9, images.shape\n"
      f"images, _, _ = data_sources.load_images(data_config(cache_dir={str(cache)!r}))\n"
      "assert len(images) == 6, images.shape\n"
      "bad = [m for m in ('tensorflow', 'tensorflow_datasets') if m in sys.modules]\n"
      "assert not bad, bad\n"
  )
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
  subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)


def _unusable_caches(tmp_path):
  """Cache folders where nothing can be created: below a file, below a FIFO, read-only."""
  (tmp_path / "file").write_text("x")
  os.mkfifo(tmp_path / "fifo")
  read_only = tmp_path / "read_only"
  read_only.mkdir()
  read_only.chmod(0o500)
  return {
      "below a file": tmp_path / "file" / "cache",
      "a FIFO": tmp_path / "fifo",
      "read-only": read_only / "cache",
  }


@pytest.mark.parametrize("kind", ["below a file", "a FIFO", "read-only"])
def test_an_unusable_synthetic_cache_is_one_line_naming_the_setting(tmp_path, kind):
  cache = _unusable_caches(tmp_path)[kind]
  if kind == "read-only" and os.access(cache.parent, os.W_OK):
    # root writes anywhere: a folder with the same name as the cache's set stands in
    cache.mkdir()
    (cache / f"synthetic-0-3-{S}").write_text("not a folder")
  with pytest.raises(data_errors.DataError) as e:
    data_sources.load_images(data_config(cache_dir=str(cache)))
  assert_one_line_error(e, "data.cache_dir", "--cache_dir", str(cache))
  assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo", "file", "read_only"]


def test_train_with_an_unusable_synthetic_cache_stops_in_one_line(tmp_path):
  (tmp_path / "file").write_text("x")
  result = cli_run.run(
      "train.py",
      *cli_run.TINY_FLAGS,
      f"--config.data.cache_dir={tmp_path / 'file' / 'cache'}",
      f"--workdir={tmp_path / 'run'}",
      devices=1,
  )
  cli_run.assert_one_line_error(result, "data.cache_dir", str(tmp_path / "file" / "cache"))


def test_hostile_class_names_are_refused_from_folders_and_tfds(tmp_path):
  (tmp_path / "good").mkdir()
  (tmp_path / "bad\nname").mkdir()
  for folder in ("good", "bad\nname"):
    Image.new("RGB", (8, 8)).save(tmp_path / folder / "x.png")
  config = tiny_config.get_config()
  config.data.source = f"folder:{tmp_path}"
  config.data.classes = ()  # every subfolder
  with pytest.raises(config_checks.ClassNameError, match="control character"):
    data_sources.load_images(config.data)
  config.data.source = "tfds:oxford_flowers102"
  config.data.classes = ("../../x",)
  with pytest.raises(config_checks.ClassNameError, match="path separator"):
    data_sources.load_images(config.data)  # refused before TFDS is opened


def test_the_close_match_hint_names_the_close_names_only():
  """One hint for every "class not found" message: the folder's and the TFDS source's."""
  names = ["dandelion", "marigold", "common dandelion"]
  assert data_errors.did_you_mean("dandelions", names) == (
      " (did you mean 'dandelion' or 'common dandelion'?)"
  )
  assert data_errors.did_you_mean("tulip", names) == ""
  assert data_errors.did_you_mean("x", []) == ""
