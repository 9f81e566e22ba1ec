"""train.py → checkpoint → sample.py, resume, preemption and the one-line errors."""

import os
import signal
import subprocess
import sys

import chex
import jax
import numpy as np
import pytest
from PIL import Image

from flowergan import checkpointing, cli, config_checks, sampling
from flowergan import trained as trained_lib
from flowergan import mesh as mesh_lib
from flowergan import train as train_lib
from flowergan import train_step as ts
from tests import tiny_config

REPO = tiny_config.REPO
TINY_FLAGS = [
    f"--config={tiny_config.CONFIG_FILE}:tiny",
    "--config.eval_every=-1",  # evaluation has its own tests (test_quality.py)
]


def _env(devices=8):
  env = dict(os.environ)
  env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  env["PYTHONPATH"] = str(REPO)
  return env


def _run(script, *args, cwd=REPO, devices=8, timeout=600):
  return subprocess.run(
      [sys.executable, str(REPO / script), *args],
      cwd=cwd,
      env=_env(devices),
      capture_output=True,
      text=True,
      timeout=timeout,
  )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A 4-step run through the real train.py, on 8 (fake) devices."""
  root = tmp_path_factory.mktemp("e2e")
  workdir = root / "run"
  result = _run(
      "train.py",
      *TINY_FLAGS,
      "--config.train.num_steps=4",
      f"--config.data.cache_dir={root / 'cache'}",
      f"--workdir={workdir}",
  )
  assert result.returncode == 0, result.stderr[-3000:]
  return workdir, root


def test_train_writes_checkpoints_samples_and_progress(trained):
  workdir, _ = trained
  assert sorted(os.listdir(workdir / "checkpoints")) == ["2", "4"]
  samples = sorted(os.listdir(workdir / "samples"))
  assert samples == [
      "dandelion_step0000002.png",
      "dandelion_step0000004.png",
      "marigold_step0000002.png",
      "marigold_step0000004.png",
  ]
  assert any(name.startswith("events.out.tfevents") for name in os.listdir(workdir))


def test_sample_cli_grid_and_directory_without_config(trained, tmp_path):
  workdir, _ = trained
  # cwd without configs/: sampling needs only the checkpoint's own metadata. 1 device: the
  # checkpoint was saved from 8.
  out = tmp_path / "grid.png"
  result = _run(
      "sample.py",
      f"--workdir={workdir}",
      "--label=marigold",
      "--num=6",
      f"--out={out}",
      cwd=tmp_path,
      devices=1,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert str(out) in result.stdout
  grid = np.asarray(Image.open(out))
  assert grid.shape == (2 + 2 * 18, 2 + 3 * 18, 3)  # 6 images of 16 px in a 3×2 grid
  result = _run(
      "sample.py",
      f"--workdir={workdir}",
      "--label=all",
      "--num=3",
      f"--out={tmp_path / 'singles'}",
      cwd=tmp_path,
      devices=1,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  files = sorted(os.listdir(tmp_path / "singles"))
  assert len(files) == 6 and sum(f.startswith("marigold") for f in files) == 3
  assert Image.open(tmp_path / "singles" / files[0]).size == (16, 16)


@pytest.mark.parametrize(
    "args,message",
    [
        (["--label=rose"], "unknown label 'rose'; valid labels: dandelion, marigold"),
        (["--num=0"], "--num must be at least 1"),
        (["--out=/proc/forbidden/x.png"], "cannot write to /proc/forbidden/x.png"),
    ],
)
def test_sample_cli_errors(trained, args, message):
  workdir, _ = trained
  result = _run("sample.py", f"--workdir={workdir}", *args, devices=1)
  assert result.returncode != 0
  assert "Traceback" not in result.stderr
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith("error: ") and message in last


def test_sample_cli_without_checkpoint(tmp_path):
  result = _run("sample.py", f"--workdir={tmp_path / 'nothing'}", devices=1)
  assert result.returncode != 0 and "Traceback" not in result.stderr
  assert "no checkpoint in" in result.stderr and "python train.py" in result.stderr


def test_default_workdir_is_runs_slash_variant(trained, tmp_path):
  _, root = trained
  result = _run(
      "train.py",
      *TINY_FLAGS,
      "--config.train.num_steps=1",
      f"--config.data.cache_dir={root / 'cache'}",
      cwd=tmp_path,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert os.listdir(tmp_path / "runs") == ["tiny"]
  assert os.listdir(tmp_path / "runs" / "tiny" / "checkpoints") == ["1"]


def test_config_typo_is_an_error(tmp_path):
  result = _run("train.py", *TINY_FLAGS, "--config.train.batchsize=8", f"--workdir={tmp_path}")
  assert result.returncode != 0
  assert "batchsize" in result.stderr
  assert not (tmp_path / "checkpoints").exists()


def test_sampling_is_deterministic_and_labels_follow_request(trained):
  workdir, _ = trained
  model = trained_lib.load_trained(str(workdir))
  assert model.step == 4 and model.class_names == ["dandelion", "marigold"]
  variables = model.sampling_variables()
  labels = sampling.resolve_labels("all", model.class_names, 3)
  assert labels.tolist() == [0, 0, 0, 1, 1, 1]
  a = sampling.generate(
      model.generator, variables, labels, z_dim=model.z_dim, seed=5, truncation=1.5
  )
  b = sampling.generate(
      model.generator, variables, labels, z_dim=model.z_dim, seed=5, truncation=1.5
  )
  c = sampling.generate(
      model.generator, variables, labels, z_dim=model.z_dim, seed=6, truncation=1.5
  )
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  assert a.shape == (6, 16, 16, 3) and a.min() >= 0 and a.max() <= 1
  with pytest.raises(checkpointing.CheckpointError, match="available steps: \\[2, 4\\]"):
    trained_lib.load_trained(str(workdir), step=3)


def test_checkpoint_from_8_devices_restores_on_1(trained):
  workdir, _ = trained
  manager = checkpointing.make_manager(str(workdir), create=False)
  config = checkpointing.config_from_metadata(checkpointing.restore_metadata(manager, 4))
  gan = ts.wgangp_from_config(config, num_classes=2)
  on_8 = checkpointing.read_state(manager, 4, ts.abstract_state(gan, mesh_lib.make_mesh()))
  on_1 = checkpointing.read_state(
      manager, 4, ts.abstract_state(gan, mesh_lib.make_mesh(jax.devices()[:1]))
  )
  assert len(on_1.g_params["to_rgb"]["kernel"].sharding.device_set) == 1
  chex.assert_trees_all_equal(jax.device_get(on_8), jax.device_get(on_1))
  manager.close()


def _config(root, **train):
  config = tiny_config.get_config(cache_dir=root / "cache")
  config.train.update(train)
  return config


def test_resume_equals_uninterrupted_run(trained, tmp_path):
  _, root = trained
  straight = train_lib.train_and_evaluate(_config(root, num_steps=4), str(tmp_path / "a"))
  train_lib.train_and_evaluate(_config(root, num_steps=2), str(tmp_path / "b"))
  resumed = train_lib.train_and_evaluate(_config(root, num_steps=4), str(tmp_path / "b"))
  assert int(resumed.step) == 4
  chex.assert_trees_all_close(
      jax.device_get(straight), jax.device_get(resumed), rtol=1e-6, atol=1e-7
  )


def test_incompatible_checkpoint_is_refused_and_kept(trained):
  workdir, root = trained
  before = sorted(p.name for p in (workdir / "checkpoints").iterdir())
  config = _config(root, num_steps=6)
  config.data.image_size = 32
  with pytest.raises(checkpointing.CheckpointError, match="image_size 16 vs 32.*new --workdir"):
    train_lib.train_and_evaluate(config, str(workdir))
  assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == before


def test_non_finite_loss_stops_with_step_and_keeps_last_checkpoint(trained, tmp_path, monkeypatch):
  _, root = trained
  monkeypatch.setattr(
      config_checks, "validate", lambda config, **kwargs: None
  )  # a NaN gp_weight is refused
  workdir = str(tmp_path / "nan")
  train_lib.train_and_evaluate(_config(root, num_steps=2), workdir)
  with pytest.raises(train_lib.TrainingError, match="non-finite .* at step 3 .*step 2"):
    train_lib.train_and_evaluate(_config(root, num_steps=4, gp_weight=float("nan")), workdir)
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["2"]
  assert trained_lib.load_trained(workdir).step == 2


def test_sigterm_saves_a_loadable_checkpoint(trained, tmp_path):
  _, root = trained
  workdir = tmp_path / "preempted"
  process = subprocess.Popen(
      [
          sys.executable,
          str(REPO / "train.py"),
          *TINY_FLAGS,
          "--config.train.num_steps=1000",
          "--config.checkpoint_every=1000",
          "--config.sample_every=1000",
          f"--config.data.cache_dir={root / 'cache'}",
          f"--workdir={workdir}",
      ],
      cwd=REPO,
      env=_env(),
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
  )
  try:
    for line in process.stdout:
      if line.startswith("step 2/"):
        process.send_signal(signal.SIGTERM)
        break
    out, err = process.communicate(timeout=300)
  finally:
    process.kill()
  # Stopped early, resumable: its own exit status and no "done" line (README, "Reliability").
  assert process.returncode == cli.EXIT_STOPPED_EARLY == 3, err[-3000:]
  assert "SIGTERM: stopped at step" in out and "done" not in out
  steps = [int(s) for s in os.listdir(workdir / "checkpoints")]
  assert len(steps) == 1 and 2 <= steps[0] < 1000
  assert trained_lib.load_trained(str(workdir)).step == steps[0]
