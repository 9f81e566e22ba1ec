"""Latent noise, request limits and sample.py's flags and outputs (flowergan.sampling)."""

import dataclasses
import math
import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from flowergan import latents, sampling
from tests import cli_run, tiny_run

# No checkpoint there: a flag refused with this workdir was refused before loading one.
_NO_RUN = "--workdir=/nonexistent/flowergan-run"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  return tiny_run.trained_workdir(tmp_path_factory)


def test_truncated_noise_respects_threshold():
  z = sampling.truncated_normal_z(jax.random.key(0), (1000, 8), 0.5)
  assert float(jnp.abs(z).max()) <= 0.5
  with pytest.raises(ValueError):
    sampling.truncated_normal_z(jax.random.key(0), (2, 2), 0.0)


@pytest.mark.parametrize("truncation", [math.nan, math.inf, -math.inf, -1.0, 0.0])
def test_truncation_must_be_a_finite_positive_number(truncation):
  """NaN gave NaN noise (black images); ±inf is refused with what to pass instead."""
  with pytest.raises(sampling.SamplingError, match="finite number > 0") as e:
    sampling.noise(0, 2, 8, truncation)
  assert "leave it unset for plain normal noise" in str(e.value)
  assert np.all(np.isfinite(sampling.noise(0, 2, 8, 3.0)))


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_sample_cli_refuses_non_finite_truncation_before_loading(value):
  result = cli_run.run("sample.py", _NO_RUN, f"--truncation={value}", devices=1)
  cli_run.assert_one_line_error(result, "truncation must be a finite number > 0", value)


def test_requests_are_limited_to_max_images():
  names = ["dandelion", "marigold"]
  assert len(sampling.resolve_labels("marigold", names, sampling.MAX_IMAGES)) == sampling.MAX_IMAGES
  for label, num in [("marigold", sampling.MAX_IMAGES + 1), ("all", sampling.MAX_IMAGES // 2 + 1)]:
    with pytest.raises(sampling.SamplingError, match=f"at most {sampling.MAX_IMAGES} images"):
      sampling.resolve_labels(label, names, num)


@pytest.mark.parametrize(
    "args,needles",
    [
        (["--num=1000000"], ["--num", f"at most {sampling.MAX_IMAGES}"]),
        (["--num=0"], ["--num must be at least 1"]),
        (
            ["--interpolate=1,2", "--label=marigold", "--frames=100000"],
            ["at most", str(latents.MAX_FRAMES)],
        ),
    ],
)
def test_sample_cli_refuses_sizes_above_the_limits_before_loading(args, needles):
  result = cli_run.run("sample.py", _NO_RUN, *args, devices=1)
  cli_run.assert_one_line_error(result, *needles)


def test_every_output_is_checked_before_any_is_written(workdir, tmp_path):
  """A bad --save_z used to fail after the grid was written; now nothing is written."""
  grid, taken = tmp_path / "grid.png", tmp_path / "taken"
  taken.mkdir()
  a_file = tmp_path / "a_file"
  a_file.write_text("")
  cases = [
      (
          [f"--out={grid}", f"--save_z={taken}"],
          [f"cannot write to {taken} (--save_z): it is a directory"],
      ),
      ([f"--out={grid}", f"--save_z={a_file}/z.npy"], ["--save_z", "is a file, not a folder"]),
      ([f"--out={a_file}"], [f"cannot write to {a_file} (--out): it is a file, not a folder"]),
      ([f"--out={grid}", f"--save_z={grid}"], ["--out and --save_z", "the same file"]),
      (
          [
              "--interpolate=1,2",
              "--label=marigold",
              f"--out={grid}",
              f"--save_z={tmp_path}/grid.gif",
          ],
          ["the same file"],
      ),
      (
          [f"--out={grid}", "--save_z=/proc/flowergan/z.npy"],
          ["cannot write to /proc/flowergan/z.npy (--save_z)", "/proc is not writable"],
      ),
  ]
  for args, needles in cases:
    result = cli_run.run("sample.py", f"--workdir={workdir}", *args, devices=1)
    cli_run.assert_one_line_error(result, *needles)
    assert sorted(os.listdir(tmp_path)) == ["a_file", "taken"], args
  assert os.listdir(taken) == []


def test_sample_cli_ctrl_c_is_one_line():
  """Ctrl-C while the model loads or the images are computed: one line, exit 1, no traceback."""
  script = (
      "import runpy, sys\n"
      "from flowergan import trained\n"
      "def interrupted(*args, **kwargs):\n"
      "  raise KeyboardInterrupt\n"
      "trained.load_trained = interrupted\n"
      "sys.argv = ['sample.py'] + sys.argv[1:]\n"
      f"runpy.run_path({str(cli_run.REPO / 'sample.py')!r}, run_name='__main__')\n"
  )
  result = subprocess.run(
      [sys.executable, "-c", script, _NO_RUN],
      env=cli_run.make_env(1),
      capture_output=True,
      text=True,
      timeout=300,
  )
  cli_run.assert_one_line_error(result, "interrupted")


def test_flag_help_states_the_limits_the_code_enforces():
  """sample.py's help names the limits without importing JAX; they must stay the real ones."""
  text = (cli_run.REPO / "sample.py").read_text()
  assert f"at most {sampling.MAX_IMAGES} (sampling.MAX_IMAGES)" in text
  assert f"2 to {latents.MAX_FRAMES} (latents.MAX_FRAMES)" in text
  assert f"at most {latents.MAX_NOISE_ROWS}, latents.MAX_NOISE_ROWS" in text


def test_flag_defaults_are_the_requests_defaults():
  """sample.py states its defaults without importing JAX; they must be `SampleRequest`'s."""
  text = (cli_run.REPO / "sample.py").read_text()
  defaults = dict(re.findall(r'flags\.DEFINE_integer\(\s*"(\w+)",\s*(\d+)', text))
  request = sampling.SampleRequest()
  assert int(defaults["num"]) == request.grid_num == sampling.DEFAULT_NUM
  assert int(defaults["frames"]) == request.frames == sampling.DEFAULT_FRAMES
  assert int(defaults["num_per_class"]) == request.num_per_class
  assert int(defaults["seed"]) == request.seed


@pytest.mark.parametrize(
    "options,needle",
    [
        (dict(z_file="z.npy", interpolate="1,2"), "--z_file and --interpolate exclude each other"),
        (dict(z_file="z.npy", truncation=1.0), "--z_file and --truncation exclude each other"),
        (dict(interpolate="1,2", num=4), "--interpolate and --num exclude each other"),
        (dict(dataset="d", out="x.png"), "--dataset and --out exclude each other"),
        (dict(dataset="d", save_z="z.npy"), "--dataset and --save_z exclude each other"),
        (dict(label="a,b"), "needs --interpolate=SEED_A,SEED_B"),
        (dict(num=0), "--num must be at least 1"),
        (dict(interpolate="1,2", frames=1), str(latents.MAX_FRAMES)),
    ],
)
def test_a_request_is_checked_without_a_model(options, needle):
  """`check_request` refuses what sample.py refuses before a checkpoint is read."""
  with pytest.raises(ValueError, match=re.escape(needle)):
    sampling.check_request(sampling.SampleRequest(**options))
  sampling.check_request(sampling.SampleRequest(dataset="d", seed=3, truncation=1.0))


def test_walk_labels_are_a_class_or_a_pair_of_classes():
  names = ["dandelion", "marigold"]
  assert sampling.walk_labels("marigold", names) == ("marigold", "marigold")
  assert sampling.walk_labels("dandelion,marigold", names) == ("dandelion", "marigold")
  for label in ("tulip", "dandelion,tulip", "a,b,c", "all"):
    with pytest.raises(latents.LatentError, match="--label=CLASS or --label=A,B"):
      sampling.walk_labels(label, names)


def test_num_for_noise_uses_every_row_or_refuses_a_mismatch():
  names = ["dandelion", "marigold"]
  request = sampling.SampleRequest(label="all", z_file="z.npy")
  assert sampling.num_for_noise(request, 6, names) == 3  # 3 of each class
  assert sampling.num_for_noise(sampling.SampleRequest(label="marigold"), 5, names) == 5
  assert sampling.num_for_noise(sampling.SampleRequest(label="all", num=2), 4, names) == 2
  with pytest.raises(latents.LatentError, match="z.npy has 5 noise vectors but --label=all"):
    sampling.num_for_noise(request, 5, names)  # 5 rows cannot be 2 classes × 2
  with pytest.raises(latents.LatentError, match="--num=16 asks for 32 images"):
    sampling.num_for_noise(dataclasses.replace(request, num=16), 4, names)


def test_sample_out_extension_picks_the_format(tmp_path_factory, tmp_path):
  workdir = tiny_run.trained_workdir(tmp_path_factory)
  result = cli_run.run(
      "sample.py", f"--workdir={workdir}", f"--out={tmp_path / 'grid.jpg'}", devices=1
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert os.path.isfile(tmp_path / "grid.jpg")
  assert Image.open(tmp_path / "grid.jpg").format == "JPEG"
  result = cli_run.run(
      "sample.py", f"--workdir={workdir}", f"--out={tmp_path / 'grid.gif'}", devices=1
  )
  cli_run.assert_one_line_error(result, "'.gif' is not an image format here", ".webp")
  assert not (tmp_path / "grid.gif").exists()


def test_default_outputs_are_not_written_through_a_link_out_of_the_workdir(tmp_path):
  """`workdir/samples` linked to a folder outside: sample.py's default grid and walk are
  refused before the checkpoint is read (the workdir holds none here); a --out is the user's."""
  from flowergan import imaging, sample_files

  outside = tmp_path / "outside"
  outside.mkdir()
  workdir = tmp_path / "run"
  workdir.mkdir()
  (workdir / "samples").symlink_to(outside)
  for request in (
      sampling.SampleRequest(label="all"),
      sampling.SampleRequest(label="a", interpolate="1,2"),
  ):
    with pytest.raises(imaging.ImageError, match="leads out of .*run through a symbolic link"):
      sample_files.check_request(str(workdir), request)
  sample_files.check_request(str(workdir), sampling.SampleRequest(out=str(tmp_path / "g.png")))
  assert os.listdir(outside) == [] and sorted(os.listdir(tmp_path)) == ["outside", "run"]
