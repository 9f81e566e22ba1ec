"""What goes wrong in real runs (issue 11): damaged checkpoints, unwritable and shared workdirs,
preemption, hostile class names, bad config values, huge images. Every bad input is one line and
a non-zero exit, nothing saved is lost, nothing is written outside where it was asked to go."""

import json
import os
import shutil
import stat
import time
import warnings

import numpy as np
import pytest
from PIL import Image

from flowergan import checkpointing, config_checks, imaging, workdir_guard
from flowergan import imagesets
from flowergan import trained as trained_lib
from flowergan import train as train_lib
from tests import cli_run, tiny_config

REPO = tiny_config.REPO
TINY_FLAGS = cli_run.TINY_FLAGS
_env = cli_run.make_env
_run = cli_run.run
_assert_one_line_error = cli_run.assert_one_line_error


def _files(root) -> set[str]:
  """Every file and folder under `root`, relative to it."""
  out = set()
  for base, dirs, files in os.walk(root):
    for name in dirs + files:
      out.add(os.path.relpath(os.path.join(base, name), root))
  return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """One 4-step run through the real train.py (umask 022): checkpoints at steps 2 and 4."""
  root = tmp_path_factory.mktemp("faults")
  workdir = root / "run"
  result = _run(
      "train.py",
      *TINY_FLAGS,
      f"--config.data.cache_dir={root / 'cache'}",
      f"--workdir={workdir}",
  )
  assert result.returncode == 0, result.stderr[-3000:]
  return workdir, root


def _copy(workdir, target):
  shutil.copytree(workdir, target)
  return target


def _config(root, **train):
  config = tiny_config.get_config(cache_dir=root / "cache")
  config.eval_every = -1
  config.train.update(train)
  return config


# ------------------------------------------------------------------ 1. damaged checkpoints


def _damage(workdir, step, how):
  """Damages `step` as `how` says; array damage hits both array items, `state` (what training
  resumes from) and `generator` (what sampling reads)."""
  if how == "broken metadata JSON":
    (workdir / "checkpoints" / str(step) / "metadata" / "metadata").write_text("{broken")
    return
  for item in ("state", "generator"):
    arrays = workdir / "checkpoints" / str(step) / item
    if how == "truncated data file":
      data = max((p for p in (arrays / "ocdbt.process_0" / "d").iterdir()), key=os.path.getsize)
      os.truncate(data, 100)
    elif how == "no _METADATA":
      os.remove(arrays / "_METADATA")
    elif how == "no manifest.ocdbt":
      os.remove(arrays / "manifest.ocdbt")


DAMAGES = ["truncated data file", "no _METADATA", "no manifest.ocdbt", "broken metadata JSON"]


@pytest.mark.parametrize("how", DAMAGES)
def test_damaged_latest_checkpoint_loading_falls_back_or_names_it(trained, tmp_path, how, caplog):
  workdir = _copy(trained[0], tmp_path / "run")
  _damage(workdir, 4, how)
  model = trained_lib.load_trained(str(workdir))
  assert model.step == 2
  assert any(
      "checkpoint step 4" in r.getMessage() and "damaged" in r.getMessage() for r in caplog.records
  )
  with pytest.raises(checkpointing.CheckpointError) as e:
    trained_lib.load_trained(str(workdir), step=4)
  message = str(e.value)
  assert "\n" not in message and len(message) < 600
  assert "step 4" in message and "damaged" in message
  assert "available steps: [2, 4]" in message and "--step" in message


@pytest.mark.parametrize("how", ["truncated data file", "broken metadata JSON"])
def test_training_resumes_from_the_newest_checkpoint_that_restores(trained, tmp_path, how):
  workdir = _copy(trained[0], tmp_path / "run")
  _damage(workdir, 4, how)
  config = _config(trained[1], num_steps=6)
  config.keep_checkpoints = 2
  state = train_lib.train_and_evaluate(config, str(workdir))
  assert int(state.step) == 6
  # Steps 4 and 6 were trained again and saved; the damaged 4 is kept, out of Orbax's sight,
  # and garbage collection (keep 2) removed the oldest good one, not the new ones.
  assert sorted(os.listdir(workdir / "checkpoints")) == ["4", "6"]
  assert os.listdir(workdir / checkpointing.DAMAGED_DIR) == ["4"]
  assert trained_lib.load_trained(str(workdir)).step == 6
  assert trained_lib.load_trained(str(workdir), step=4).step == 4


def test_when_no_checkpoint_restores_training_refuses_and_moves_nothing(trained, tmp_path):
  workdir = _copy(trained[0], tmp_path / "run")
  for step in (2, 4):
    _damage(workdir, step, "broken metadata JSON")
  before = _files(workdir)
  with pytest.raises(checkpointing.CheckpointError, match=r"no checkpoint .* restores.*\[2, 4\]"):
    train_lib.train_and_evaluate(_config(trained[1], num_steps=6), str(workdir))
  assert _files(workdir) == before


def test_sample_cli_names_a_damaged_step(trained, tmp_path):
  workdir = _copy(trained[0], tmp_path / "run")
  _damage(workdir, 4, "no manifest.ocdbt")
  result = _run("sample.py", f"--workdir={workdir}", f"--out={tmp_path / 'a.png'}", devices=1)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "Traceback" not in result.stderr and "step 2" in result.stdout
  assert "checkpoint step 4" in result.stderr
  result = _run("sample.py", f"--workdir={workdir}", "--step=4", devices=1)
  _assert_one_line_error(result, "step 4", "damaged", "available steps: [2, 4]", "--step")


# ---------------------------------------------------------- 2. workdirs that cannot be written


def test_unwritable_workdir_is_refused_before_the_first_step(trained, tmp_path):
  (tmp_path / "a_file").write_text("")
  config = _config(trained[1], num_steps=2)
  for workdir, needle in [
      (tmp_path / "a_file", "is a file"),
      ("/proc/flowergan/run", "cannot write to the workdir"),
  ]:
    with pytest.raises(workdir_guard.WorkdirError, match=needle):
      train_lib.train_and_evaluate(config, str(workdir))
  (tmp_path / "run").mkdir()
  (tmp_path / "run" / "checkpoints").write_text("")
  with pytest.raises(workdir_guard.WorkdirError, match="checkpoint folder .* is a file"):
    train_lib.train_and_evaluate(config, str(tmp_path / "run"))
  result = _run("train.py", *TINY_FLAGS, "--workdir=/proc/flowergan/run", devices=1)
  _assert_one_line_error(result, "cannot write to the workdir /proc/flowergan/run")


def test_a_failing_save_stops_training_at_once_and_keeps_the_saved_ones(
    trained, tmp_path, monkeypatch
):
  workdir = tmp_path / "run"
  config = _config(trained[1], num_steps=2)
  train_lib.train_and_evaluate(config, str(workdir))
  checkpoints = workdir / "checkpoints"
  write_samples = train_lib._write_samples

  def samples_then_lose_the_folder(*args):
    write_samples(*args)  # step 4: just before its save, the checkpoint folder goes away
    checkpoints.rename(workdir / "aside")
    checkpoints.write_text("")

  monkeypatch.setattr(train_lib, "_write_samples", samples_then_lose_the_folder)
  start = time.monotonic()
  with pytest.raises(train_lib.TrainingError) as e:
    train_lib.train_and_evaluate(_config(trained[1], num_steps=6), str(workdir))
  assert time.monotonic() - start < 120  # Orbax's async saves waited 300 s here
  message = str(e.value)
  assert "\n" not in message
  assert "cannot save step 4" in message and "stopped at step 4" in message
  assert "last good checkpoint (step 2)" in message
  checkpoints.unlink()
  (workdir / "aside").rename(checkpoints)
  assert trained_lib.load_trained(str(workdir)).step == 2


# ---------------- 5. non-finite (4., the exit status after SIGTERM: test_end_to_end.py)


def test_non_finite_first_step_says_no_checkpoint_was_saved(trained, tmp_path, monkeypatch):
  monkeypatch.setattr(config_checks, "validate", lambda config, **kwargs: None)  # let NaN through
  with pytest.raises(train_lib.TrainingError) as e:
    train_lib.train_and_evaluate(
        _config(trained[1], num_steps=2, gp_weight=float("nan")), str(tmp_path / "nan")
    )
  assert "at step 1" in str(e.value) and "no checkpoint had been saved yet" in str(e.value)
  assert "step 0" not in str(e.value)


# -------------------------------------------------------- 6. names and paths from data/checkpoints


def test_hostile_class_names_are_refused_from_folders_and_tfds(tmp_path):
  (tmp_path / "good").mkdir()
  (tmp_path / "bad\nname").mkdir()
  for folder in ("good", "bad\nname"):
    Image.new("RGB", (8, 8)).save(tmp_path / folder / "x.png")
  config = tiny_config.get_config()
  config.data.source = f"folder:{tmp_path}"
  config.data.classes = ()  # every subfolder
  with pytest.raises(config_checks.ClassNameError, match="control character"):
    imagesets.load_images(config.data)
  config.data.source = "tfds:oxford_flowers102"
  config.data.classes = ("../../x",)
  with pytest.raises(config_checks.ClassNameError, match="path separator"):
    imagesets.load_images(config.data)  # refused before TFDS is opened


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


def test_class_names_from_a_checkpoint_cannot_escape(trained, tmp_path):
  root = tmp_path / "root"
  workdir = _copy(trained[0], root / "a" / "b" / "run")
  _hostile_checkpoint(workdir, class_names=["../../../escaped", "marigold"])
  before = _files(root)
  with pytest.raises(config_checks.ClassNameError, match="metadata of checkpoint step 4"):
    trained_lib.load_trained(str(workdir))
  for out in ("out", "grid.png"):
    result = _run(
        "sample.py", f"--workdir={workdir}", f"--out={root / 'a' / 'b' / out}", cwd=root, devices=1
    )
    _assert_one_line_error(result, "'../../../escaped'", "path separator")
  with pytest.raises(config_checks.ClassNameError):
    train_lib.train_and_evaluate(_config(trained[1], num_steps=6), str(workdir))
  assert _files(root) - before <= {"a/b/run/train.lock"}


def test_a_checkpoints_cache_dir_does_not_choose_where_evaluation_writes(trained, tmp_path):
  root = tmp_path / "root"
  workdir = _copy(trained[0], root / "run")
  _hostile_checkpoint(workdir, **{"data.cache_dir": str(root / "elsewhere")})
  before = _files(root)
  result = _run(
      "evaluate.py",
      f"--workdir={workdir}",
      env=_env(1, HOME=str(root / "home")),
      cwd=root,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  created = _files(root) - before
  assert not (root / "elsewhere").exists()
  assert all(p.startswith(("run/", "home")) for p in created), created  # $HOME: the user's own
  assert "run/metrics.jsonl" in created


# ------------------------------------------------------------------- 7. the user's umask


def test_written_files_follow_the_umask(trained, tmp_path):
  workdir, _ = trained  # trained under umask 022
  for name in os.listdir(workdir / "samples"):
    assert stat.S_IMODE(os.stat(workdir / "samples" / name).st_mode) == 0o644, name
  out = tmp_path / "grid.png"
  result = _run("sample.py", f"--workdir={workdir}", f"--out={out}", devices=1)
  assert result.returncode == 0, result.stderr[-3000:]
  assert stat.S_IMODE(os.stat(out).st_mode) == 0o644


# -------------------------------------------------------------------------- 8. sample --out


def test_sample_out_extension_picks_the_format(trained, tmp_path):
  workdir, _ = trained
  result = _run("sample.py", f"--workdir={workdir}", f"--out={tmp_path / 'grid.jpg'}", devices=1)
  assert result.returncode == 0, result.stderr[-3000:]
  assert os.path.isfile(tmp_path / "grid.jpg")
  assert Image.open(tmp_path / "grid.jpg").format == "JPEG"
  result = _run("sample.py", f"--workdir={workdir}", f"--out={tmp_path / 'grid.gif'}", devices=1)
  _assert_one_line_error(result, "'.gif' is not an image format here", ".webp")
  assert not (tmp_path / "grid.gif").exists()


def test_write_images_formats_directories_and_capped_columns(tmp_path):
  rng = np.random.default_rng(0)
  images = rng.random((2 * 40, 8, 8, 3), np.float32)
  labels = np.repeat([0, 1], 40)
  for name, fmt in [("g.png", "PNG"), ("g.jpeg", "JPEG"), ("g.webp", "WEBP")]:
    [path] = imaging.write_images(images, str(tmp_path / name), ncols=40, group_size=40)
    grid = Image.open(path)
    assert grid.format == fmt
    # 16 columns; each class on its own 3 rows (40 = 16 + 16 + 8).
    assert grid.size == (2 + 16 * 10, 2 + 6 * 10)
  paths = imaging.write_images(
      images[:4], str(tmp_path / "singles"), labels=labels[:4], class_names=["a/b", "c"]
  )
  assert all(os.path.dirname(p) == str(tmp_path / "singles") for p in paths)
  with pytest.raises(imaging.ImageError, match="'.txt'"):
    imaging.write_images(images, str(tmp_path / "x.txt"))
  with pytest.raises(imaging.ImageError, match="larger than WEBP allows"):
    imaging.write_images(np.zeros((1700, 8, 8, 3)), str(tmp_path / "big.webp"), ncols=1)


# ---------------------------------------------------------------------- 9. bad config values


def test_a_checkpoints_bad_config_is_refused_by_sampling(trained, tmp_path):
  workdir = _copy(trained[0], tmp_path / "run")
  _hostile_checkpoint(workdir, **{"model.upsample": "nearest"})
  with pytest.raises(config_checks.ConfigError, match="checkpoint step 4.*upsample"):
    trained_lib.load_trained(str(workdir))


# --------------------------------------------------------------------------- 10. huge images


def _folder_with_a_big_image(tmp_path):
  for name in ("dandelion", "marigold"):
    (tmp_path / name).mkdir()
    Image.new("RGB", (20, 20), (200, 200, 0)).save(tmp_path / name / "small.png")
  Image.new("RGB", (60, 60), (0, 0, 200)).save(tmp_path / "dandelion" / "big.png")
  config = tiny_config.get_config()
  config.data.source = f"folder:{tmp_path}"
  return config


def test_images_over_the_pixel_limit_are_counted_as_too_large(tmp_path, caplog, monkeypatch):
  config = _folder_with_a_big_image(tmp_path)
  config.data.max_image_pixels = 1000  # 60² = 3600 > 1000 >= 20²
  with warnings.catch_warnings():
    warnings.simplefilter("error")  # PIL's DecompressionBombWarning must not leak
    images, _, _ = imagesets.load_images(config.data)
  assert len(images) == 2
  [message] = [r.getMessage() for r in caplog.records if "Skipped" in r.getMessage()]
  assert "0 unreadable" in message and "too large: 1" in message and "big.png" in message
  assert "data.max_image_pixels=1000" in message
  # PIL's own limit (here 1000, as if the image were a decompression bomb) is not applied:
  # the configured one is, and raising it lets the image in.
  monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
  config.data.max_image_pixels = 4000
  caplog.clear()
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    images, _, _ = imagesets.load_images(config.data)
  assert len(images) == 3 and not [r for r in caplog.records if "Skipped" in r.getMessage()]
  assert Image.MAX_IMAGE_PIXELS == 1000  # PIL's global is restored


def test_empty_class_folder_does_not_point_at_a_warning_that_was_not_printed(tmp_path):
  (tmp_path / "good").mkdir()
  (tmp_path / "empty").mkdir()
  Image.new("RGB", (8, 8)).save(tmp_path / "good" / "x.png")
  config = tiny_config.get_config()
  config.data.source = f"folder:{tmp_path}"
  config.data.classes = ()
  with pytest.raises(imagesets.DataError) as e:
    imagesets.load_images(config.data)
  assert "'empty'" in str(e.value) and "no image files" in str(e.value)
  assert "warning above" not in str(e.value)
