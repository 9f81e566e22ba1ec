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

from flowergan import best_checkpoint, checkpointing, config_checks, demo_app, imaging, sampling
from flowergan import trained
from flowergan import train as train_lib
from flowergan import mesh as mesh_lib
from flowergan import train_step as ts
from tests import cli_run, damaged_checkpoints, tiny_config, tiny_run

FIXTURES = tiny_config.REPO / "tests" / "fixtures"


@pytest.fixture
def v1_run(tmp_path):
  """The format-1 workdir written by an earlier flowergan (see tests/fixtures/README.md)."""
  workdir = tmp_path / "v1_run"
  shutil.copytree(FIXTURES / "v1_run", workdir)
  return workdir


_ULPS_ALLOWED = 1e-6  # about 16 float32 ulps of a value near 1
_MARGIN = 2e-7  # least distance of a stored value from a uint8 rounding boundary: 3 ulps


def test_a_version_1_checkpoint_samples_the_same_pixels(v1_run):
  model = trained.load_trained(str(v1_run))
  assert (model.step, model.class_names) == (1, ["dandelion", "marigold"])
  assert not checkpointing.has_item(_manager(v1_run), 1, checkpointing.GENERATOR)
  for use_ema, name in (
      (True, "images_all_num2_seed0.npy"),
      (False, "images_all_num2_seed0_no_ema.npy"),
  ):
    images = sampling.sample_grid(model, "all", 2, seed=0, use_ema=use_ema).images
    stored = np.load(FIXTURES / name)
    # What is promised: the pixels sample.py writes, exactly. The stored floats sit at least
    # `_MARGIN` away from every rounding boundary, so CPUs that differ in the last bits of a
    # float32 (one ulp is 6e-8 here) round them alike.
    assert np.abs((stored.astype(np.float64) * 255.0) % 1.0 - 0.5).min() > _MARGIN * 255.0, name
    np.testing.assert_array_equal(imaging.to_uint8(images), imaging.to_uint8(stored), name)
    # The floats within a few ulps: the EMA and the raw weights give images about 3e-5 apart
    # (below one PNG level), so this still tells which weights were read.
    np.testing.assert_allclose(images, stored, rtol=0, atol=_ULPS_ALLOWED, err_msg=name)


def test_sample_py_writes_the_same_file_from_a_version_1_checkpoint(v1_run, tmp_path):
  out = tmp_path / "grid.png"
  args = ["--label=all", "--num=2", "--seed=0", f"--out={out}"]
  result = tiny_run.run("sample.py", f"--workdir={v1_run}", *args)
  assert result.returncode == 0, result.stderr[-3000:]
  # Exact bytes on every CPU: these are the pixels of the test above, which checks their margin.
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


# ------------------------------------------------------- damaged, rotated and newer checkpoints


@pytest.fixture(scope="module")
def ranked_run(tmp_path_factory):
  """Steps 2 and 4 of a tiny state, ranked as training saves evaluated ones (kid 0.5, 0.7)."""
  workdir = tmp_path_factory.mktemp("ranked") / "run"
  config = tiny_config.get_config()
  gan = ts.wgangp_from_config(config, num_classes=2)
  state = ts.init_state(gan, jax.random.key(0), mesh_lib.make_mesh())
  best = best_checkpoint.best_checkpoint_of(config)
  manager = checkpointing.make_manager(str(workdir), best=best)
  metadata = checkpointing.make_metadata(config, ["dandelion", "marigold"])
  for step, kid in [(2, 0.5), (4, 0.7)]:
    checkpointing.save(manager, step, ts.checkpoint_items(state), metadata, metrics={"kid": kid})
  manager.close()
  return workdir


def _warnings(caplog):
  return [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]


@pytest.mark.parametrize("how", damaged_checkpoints.METRICS_DAMAGES)
def test_a_step_with_damaged_metrics_is_skipped_by_every_way_of_loading(
    ranked_run, tmp_path, how, caplog
):
  """Latest, `best` and another `--step` load; the damaged step itself is named in one line."""
  workdir = tmp_path / "run"
  shutil.copytree(ranked_run, workdir)
  damaged_checkpoints.damage(workdir, 4, how)
  assert trained.load_trained(str(workdir)).step == 2
  assert any("checkpoint step 4" in m and "damaged" in m for m in _warnings(caplog))
  assert trained.load_trained(str(workdir), step=2).step == 2
  assert trained.load_trained(str(workdir), step="best").step == 2
  with pytest.raises(checkpointing.CheckpointError) as e:
    trained.load_trained(str(workdir), step=4)
  assert "\n" not in str(e.value)
  assert "step 4" in str(e.value) and "damaged" in str(e.value) and "--step" in str(e.value)


def test_sample_py_uses_another_step_beside_damaged_metrics(ranked_run, tmp_path):
  workdir = tmp_path / "run"
  shutil.copytree(ranked_run, workdir)
  damaged_checkpoints.damage(workdir, 4, "empty metrics")
  result = tiny_run.run("sample.py", f"--workdir={workdir}", "--step=2", "--num=1")
  assert result.returncode == 0, result.stderr[-3000:]
  assert "Traceback" not in result.stderr and "step 2" in result.stdout


def _rotate_while_reading(monkeypatch, workdir):
  """The first read of a generator's variables happens while a training run saves step 6 and
  deletes steps 2 and 4 (its `keep_checkpoints`)."""
  checkpoints = workdir / "checkpoints"
  read_variables = trained.read_variables
  rotated = []

  def rotating(manager, step, *args):
    if not rotated:
      shutil.copytree(checkpoints / "4", checkpoints / "6")
      shutil.rmtree(checkpoints / "4")
      shutil.rmtree(checkpoints / "2")
      rotated.append(step)
    return read_variables(manager, step, *args)

  monkeypatch.setattr(trained, "read_variables", rotating)
  return rotated


def test_steps_deleted_by_a_training_run_are_listed_again_not_called_damaged(
    ranked_run, tmp_path, monkeypatch, caplog
):
  workdir = tmp_path / "run"
  shutil.copytree(ranked_run, workdir)
  rotated = _rotate_while_reading(monkeypatch, workdir)
  assert trained.load_trained(str(workdir)).step == 6
  assert rotated == [4]
  assert not [m for m in _warnings(caplog) if "damaged" in m]


def test_a_given_step_deleted_while_read_is_named_as_deleted(ranked_run, tmp_path, monkeypatch):
  workdir = tmp_path / "run"
  shutil.copytree(ranked_run, workdir)
  _rotate_while_reading(monkeypatch, workdir)
  with pytest.raises(checkpointing.CheckpointError) as e:
    trained.load_trained(str(workdir), step=4)
  assert "\n" not in str(e.value) and "damaged" not in str(e.value)
  assert "step 4" in str(e.value) and "deleted while being read" in str(e.value)
  assert "steps now: [6]" in str(e.value)


def test_a_step_without_its_array_manifest_is_damaged_before_orbax_reads_it(
    ranked_run, tmp_path, caplog
):
  """Its missing file is named; Orbax's background reads (whose failures printed tracebacks
  depending on timing) never start."""
  workdir = tmp_path / "run"
  shutil.copytree(ranked_run, workdir)
  for item in ("state", "generator"):
    (workdir / "checkpoints" / "4" / item / "manifest.ocdbt").unlink()
  assert trained.load_trained(str(workdir)).step == 2
  [warning] = [m for m in _warnings(caplog) if "checkpoint step 4" in m]
  assert "generator/manifest.ocdbt is missing" in warning


@pytest.mark.parametrize("how", damaged_checkpoints.DAMAGES)
def test_damaged_latest_checkpoint_loading_falls_back_or_names_it(
    ranked_run, tmp_path, how, caplog
):
  workdir = damaged_checkpoints.copy_run(ranked_run, tmp_path / "run")
  damaged_checkpoints.damage(workdir, 4, how)
  model = trained.load_trained(str(workdir))
  assert model.step == 2
  assert any(
      "checkpoint step 4" in r.getMessage() and "damaged" in r.getMessage() for r in caplog.records
  )
  with pytest.raises(checkpointing.CheckpointError) as e:
    trained.load_trained(str(workdir), step=4)
  message = str(e.value)
  assert "\n" not in message and len(message) < 600
  assert "step 4" in message and "damaged" in message
  assert "available steps: [2, 4]" in message and "--step" in message


def test_sample_cli_names_a_damaged_step(ranked_run, tmp_path):
  workdir = damaged_checkpoints.copy_run(ranked_run, tmp_path / "run")
  damaged_checkpoints.damage(workdir, 4, "no manifest.ocdbt")
  result = cli_run.run(
      "sample.py", f"--workdir={workdir}", f"--out={tmp_path / 'a.png'}", devices=1
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert "Traceback" not in result.stderr and "step 2" in result.stdout
  assert "checkpoint step 4" in result.stderr
  result = cli_run.run("sample.py", f"--workdir={workdir}", "--step=4", devices=1)
  cli_run.assert_one_line_error(result, "step 4", "damaged", "available steps: [2, 4]", "--step")


def _hostile_checkpoint(workdir, **changes):
  for step in (2, 4):
    path = workdir / "checkpoints" / str(step) / "metadata" / "metadata"
    metadata = json.loads(path.read_text())
    for key, value in changes.items():
      if key == "class_names":
        metadata[key] = value
      else:
        section, field = key.split(".")
        metadata["config"][section][field] = value
    path.write_text(json.dumps(metadata))


def test_class_names_from_a_checkpoint_cannot_escape(ranked_run, tmp_path):
  root = tmp_path / "root"
  workdir = damaged_checkpoints.copy_run(ranked_run, root / "a" / "b" / "run")
  _hostile_checkpoint(workdir, class_names=["../../../escaped", "marigold"])
  before = damaged_checkpoints.files(root)
  with pytest.raises(config_checks.ClassNameError, match="metadata of checkpoint step 4"):
    trained.load_trained(str(workdir))
  for out in ("out", "grid.png"):
    result = cli_run.run(
        "sample.py", f"--workdir={workdir}", f"--out={root / 'a' / 'b' / out}", cwd=root, devices=1
    )
    cli_run.assert_one_line_error(result, "'../../../escaped'", "path separator")
  with pytest.raises(config_checks.ClassNameError):
    train_lib.train_and_evaluate(
        damaged_checkpoints.tiny_training_config(tmp_path, num_steps=6), str(workdir)
    )
  assert damaged_checkpoints.files(root) - before <= {"a/b/run/train.lock"}


def test_a_checkpoints_cache_dir_does_not_choose_where_evaluation_writes(ranked_run, tmp_path):
  root = tmp_path / "root"
  workdir = damaged_checkpoints.copy_run(ranked_run, root / "run")
  _hostile_checkpoint(workdir, **{"data.cache_dir": str(root / "elsewhere")})
  before = damaged_checkpoints.files(root)
  result = cli_run.run(
      "evaluate.py",
      f"--workdir={workdir}",
      env=cli_run.make_env(1, HOME=str(root / "home")),
      cwd=root,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  created = damaged_checkpoints.files(root) - before
  assert not (root / "elsewhere").exists()
  assert all(p.startswith(("run/", "home")) for p in created), created  # $HOME: the user's own
  assert "run/metrics.jsonl" in created


def test_a_checkpoints_bad_config_is_refused_by_sampling(ranked_run, tmp_path):
  workdir = damaged_checkpoints.copy_run(ranked_run, tmp_path / "run")
  _hostile_checkpoint(workdir, **{"model.upsample": "nearest"})
  with pytest.raises(config_checks.ConfigError, match="checkpoint step 4.*upsample"):
    trained.load_trained(str(workdir))


def test_every_reader_refuses_a_newer_format_in_one_line(ranked_run, tmp_path):
  """Sampling, evaluation, the web page's loader and a resumed training run."""
  workdir = damaged_checkpoints.copy_run(ranked_run, tmp_path / "run")
  for step in (2, 4):
    damaged_checkpoints.set_format_version(workdir, step, checkpointing.FORMAT_VERSION + 1)
  newer = f"format version {checkpointing.FORMAT_VERSION + 1}, newer than this flowergan reads"
  before = damaged_checkpoints.files(workdir)
  for script in ("sample.py", "evaluate.py"):
    result = cli_run.run(script, f"--workdir={workdir}", devices=1)
    cli_run.assert_one_line_error(result, "checkpoint step 4", newer, "update flowergan")
  with pytest.raises(checkpointing.CheckpointError, match=newer):
    demo_app.Demo.load(str(workdir))
  with pytest.raises(checkpointing.CheckpointError, match=newer):
    train_lib.train_and_evaluate(
        damaged_checkpoints.tiny_training_config(tmp_path, num_steps=6), str(workdir)
    )
  assert damaged_checkpoints.files(workdir) - before <= {"train.lock"}


@pytest.mark.parametrize("z_dim", [10**12, 2**40, 11])
def test_metadata_that_does_not_fit_its_weights_is_damage_found_before_reading(
    ranked_run, tmp_path, monkeypatch, z_dim
):
  """Metadata with `model.z_dim` 10¹², 2⁴⁰ (or just another size) is compared with the shapes
  Orbax stored before any array is read: no restore starts, so none of its pending reads can
  print "Exception ignored … Traceback" blocks at exit after the one `error:` line."""
  workdir = damaged_checkpoints.copy_run(ranked_run, tmp_path / "run")
  _hostile_checkpoint(workdir, **{"model.z_dim": z_dim})

  def no_restore(*args, **kwargs):
    raise AssertionError("a restore was started")

  monkeypatch.setattr(checkpointing, "restore_item", no_restore)
  with pytest.raises(checkpointing.CheckpointError) as e:
    trained.load_trained(str(workdir))
  message = str(e.value)
  assert "no checkpoint" in message and "restores" in message and "\n" not in message
  assert "but its metadata implies" in message and str(z_dim + 2) in message
