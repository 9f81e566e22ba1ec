"""Latent noise, request limits and sample.py's flags and outputs (flowergan.sampling)."""

import math
import os
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
