"""A trained run as sampling loads it (flowergan.trained): old checkpoints, the `generator` item
alone, and nothing of training imported."""

import json
import shutil
import subprocess
import sys

import chex
import jax
import numpy as np
import pytest

from flowergan import checkpointing, sampling, trained
from flowergan import mesh as mesh_lib
from flowergan import train_step as ts
from tests import tiny_config, tiny_run

FIXTURES = tiny_config.REPO / "tests" / "fixtures"


@pytest.fixture
def v1_run(tmp_path):
  """The format-1 workdir written by an earlier flowergan (see tests/fixtures/README.md)."""
  workdir = tmp_path / "v1_run"
  shutil.copytree(FIXTURES / "v1_run", workdir)
  return workdir


def test_a_version_1_checkpoint_samples_the_same_pixels(v1_run):
  model = trained.load_trained(str(v1_run))
  assert (model.step, model.class_names) == (1, ["dandelion", "marigold"])
  assert not checkpointing.has_item(_manager(v1_run), 1, checkpointing.GENERATOR)
  ema = sampling.sample_grid(model, "all", 2, seed=0)
  raw = sampling.sample_grid(model, "all", 2, seed=0, use_ema=False)
  np.testing.assert_array_equal(ema.images, np.load(FIXTURES / "images_all_num2_seed0.npy"))
  np.testing.assert_array_equal(raw.images, np.load(FIXTURES / "images_all_num2_seed0_no_ema.npy"))


def test_sample_py_writes_the_same_file_from_a_version_1_checkpoint(v1_run, tmp_path):
  out = tmp_path / "grid.png"
  args = ["--label=all", "--num=2", "--seed=0", f"--out={out}"]
  result = tiny_run.run("sample.py", f"--workdir={v1_run}", *args)
  assert result.returncode == 0, result.stderr[-3000:]
  assert out.read_bytes() == (FIXTURES / "grid_all_num2_seed0.png").read_bytes()


@pytest.mark.parametrize(
    "module", ["flowergan.sampling", "flowergan.trained", "flowergan.demo_app"]
)
def test_serving_imports_nothing_of_training(module):
  code = (
      f"import sys, {module}\n"
      "print(sorted(m for m in ('flowergan.train_step', 'optax') if m in sys.modules))"
  )
  result = subprocess.run(
      [sys.executable, "-c", code], env=tiny_run.env(), capture_output=True, text=True, timeout=300
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.strip().splitlines()[-1] == "[]"


@pytest.fixture
def v2_run(tmp_path):
  """A format-2 checkpoint (step 3) of a freshly initialised tiny state, and that state."""
  config = tiny_config.get_config()
  gan = ts.wgangp_from_config(config, num_classes=2)
  state = ts.init_state(gan, jax.random.key(0), mesh_lib.make_mesh())
  state = state.replace(ema_params=jax.tree.map(lambda x: x + 0.5, state.ema_params))
  manager = checkpointing.make_manager(str(tmp_path / "run"))
  metadata = checkpointing.make_metadata(config, ["dandelion", "marigold"])
  checkpointing.save(manager, 3, ts.checkpoint_items(state), metadata)
  manager.wait_until_finished()
  manager.close()
  return tmp_path / "run", state


def test_sampling_reads_only_the_generator_item(v2_run):
  workdir, state = v2_run
  step_dir = workdir / "checkpoints" / "3"
  assert sorted(p.name for p in step_dir.iterdir() if p.is_dir()) == [
      "generator",
      "metadata",
      "state",
  ]
  shutil.rmtree(step_dir / "state")  # sampling must not need the optimisers or the critic
  model = trained.load_trained(str(workdir))
  assert model.step == 3
  chex.assert_trees_all_equal(
      jax.device_get(model.variables), jax.device_get(ts.generator_variables(state))
  )
  images = sampling.sample_grid(model, "marigold", 2, seed=1).images
  variables = {"params": state.ema_params, "batch_stats": state.g_batch_stats}
  expected = sampling.generate(
      model.generator, variables, np.ones(2, np.int32), z_dim=model.z_dim, seed=1
  )
  np.testing.assert_array_equal(images, expected)


def test_a_checkpoint_of_a_newer_format_is_refused_in_one_line(v2_run):
  workdir, _ = v2_run
  path = workdir / "checkpoints" / "3" / "metadata" / "metadata"
  metadata = json.loads(path.read_text())
  metadata["format_version"] = checkpointing.FORMAT_VERSION + 1
  path.write_text(json.dumps(metadata))
  with pytest.raises(checkpointing.CheckpointError, match="format version 3, newer") as e:
    trained.load_trained(str(workdir))
  assert "\n" not in str(e.value) and "update flowergan" in str(e.value)


def _manager(workdir):
  return checkpointing.make_manager(str(workdir), create=False)
