"""Latent walks, class morphs and saved noise: flowergan.latents and sample.py's flags."""

import io

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from flowergan import imaging, latents, models, sampling, trained
from tests import tiny_run


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  return tiny_run.trained_workdir(tmp_path_factory)


@pytest.fixture(scope="module")
def model(workdir):
  return trained.load_trained(str(workdir))


def _sample(model, seed, label, num=1, truncation=None):
  variables = model.sampling_variables()
  labels = sampling.resolve_labels(label, model.class_names, num, seed)
  return sampling.generate(
      model.generator, variables, labels, z_dim=model.z_dim, seed=seed, truncation=truncation
  )


def test_slerp_stays_on_the_sphere_and_hits_the_ends():
  rng = np.random.default_rng(0)
  a, b = rng.normal(size=64).astype(np.float32), rng.normal(size=64).astype(np.float32)
  b *= np.linalg.norm(a) / np.linalg.norm(b)  # same norm: every frame keeps it
  z = latents.walk(a, b, 9)
  np.testing.assert_allclose(np.linalg.norm(z, axis=1), np.linalg.norm(a), rtol=1e-5)
  np.testing.assert_array_equal(z[0], a)
  np.testing.assert_array_equal(z[-1], b)
  np.testing.assert_allclose(latents.slerp(a, b, 1.0), b, rtol=1e-5, atol=1e-6)
  # Equal angular steps: neighbours are equally far apart.
  steps = np.linalg.norm(np.diff(z, axis=0), axis=1)
  np.testing.assert_allclose(steps, steps[0], rtol=1e-4)
  # Parallel vectors: the straight line, no division by sin(0).
  np.testing.assert_allclose(latents.slerp(a, 2 * a, 0.5), 1.5 * a, rtol=1e-6)
  with pytest.raises(latents.LatentError, match="at least 2 frames"):
    latents.walk(a, b, 1)


def test_walks_are_limited_to_max_frames():
  a, b = np.ones(4, np.float32), -np.ones(4, np.float32)
  assert len(latents.walk(a, b, latents.MAX_FRAMES)) == latents.MAX_FRAMES
  with pytest.raises(latents.LatentError, match=f"at most {latents.MAX_FRAMES}"):
    latents.walk(a, b, latents.MAX_FRAMES + 1)


def test_blend_labels_goes_from_one_hot_to_one_hot():
  w = latents.blend_labels(0, 1, 5, 2)
  np.testing.assert_array_equal(w[0], [1, 0])
  np.testing.assert_array_equal(w[-1], [0, 1])
  np.testing.assert_allclose(w[2], [0.5, 0.5])
  np.testing.assert_allclose(w.sum(1), 1.0)


def test_one_hot_class_weights_give_the_integer_labels_images():
  g = models.Generator(image_size=8, num_classes=3, width=4)
  z = jax.random.normal(jax.random.key(0), (3, 8))
  labels = jnp.array([0, 2, 1])
  v = g.init(jax.random.key(1), z, labels, train=False)
  by_int = g.apply(v, z, labels, train=False)
  by_weights = g.apply(v, z, jax.nn.one_hot(labels, 3), train=False)
  np.testing.assert_array_equal(by_int, by_weights)
  half = g.apply(v, z, jnp.full((3, 3), 1 / 3), train=False)
  assert not np.allclose(half, by_int, atol=1e-3)
  with pytest.raises(ValueError, match=r"class weights must be \(N, 3\)"):
    g.apply(v, z, jnp.ones((3, 2)), train=False)


def test_an_image_does_not_depend_on_the_request_size(model):
  """The padded batch shape: the first 3 images of a request of 3 and of 40 are identical."""
  few = _sample(model, seed=4, label="marigold", num=3, truncation=1.5)
  many = _sample(model, seed=4, label="marigold", num=40, truncation=1.5)
  np.testing.assert_array_equal(few, many[:3])


def test_walk_ends_are_the_single_samples_of_the_two_seeds(model, workdir, tmp_path):
  out = tmp_path / "walk.png"
  result = tiny_run.run(
      "sample.py",
      f"--workdir={workdir}",
      "--label=dandelion,marigold",
      "--interpolate=3,11",
      "--frames=5",
      "--truncation=1.2",
      f"--out={out}",
      f"--save_z={tmp_path / 'walk.npy'}",
  )
  assert result.returncode == 0, result.stderr[-2000:]
  strip = np.asarray(Image.open(out))
  assert strip.shape == (2 + 18, 2 + 5 * 18, 3)  # five 16-px frames in a row
  frames = [strip[2:18, 2 + 18 * i : 18 + 18 * i] for i in range(5)]
  first = imaging.to_uint8(_sample(model, seed=3, label="dandelion", truncation=1.2))[0]
  last = imaging.to_uint8(_sample(model, seed=11, label="marigold", truncation=1.2))[0]
  np.testing.assert_array_equal(frames[0], first)
  np.testing.assert_array_equal(frames[-1], last)
  assert not np.array_equal(frames[2], first) and not np.array_equal(frames[2], last)
  gif = Image.open(tmp_path / "walk.gif")
  assert gif.n_frames == 2 * 5 - 2 and gif.size == (256, 256)  # forth and back, enlarged
  z = latents.load_z(str(tmp_path / "walk.npy"), model.z_dim)
  assert z.shape == (5, model.z_dim)
  np.testing.assert_array_equal(z[0], sampling.seed_noise(3, model.z_dim, 1.2))


def test_walk_endpoints_in_float(model):
  """The same, before PNG rounding: frame 0 and frame N-1 equal the single samples exactly."""
  variables = model.sampling_variables()
  z_dim = model.z_dim
  z = latents.walk(sampling.seed_noise(5, z_dim, None), sampling.seed_noise(8, z_dim, None), 7)
  walk = sampling.generate_from_z(model.generator, variables, z, latents.blend_labels(1, 0, 7, 2))
  np.testing.assert_array_equal(walk[0], _sample(model, seed=5, label="marigold")[0])
  np.testing.assert_array_equal(walk[-1], _sample(model, seed=8, label="dandelion")[0])


def test_saved_noise_gives_the_same_images_bit_for_bit(workdir, tmp_path):
  z_path = tmp_path / "z.npy"
  first = tiny_run.run(
      "sample.py",
      f"--workdir={workdir}",
      "--label=all",
      "--num=3",
      "--seed=9",
      "--truncation=0.7",
      f"--out={tmp_path / 'a.png'}",
      f"--save_z={z_path}",
  )
  assert first.returncode == 0, first.stderr[-2000:]
  assert np.load(z_path).shape == (6, 8)
  again = tiny_run.run(
      "sample.py",
      f"--workdir={workdir}",
      "--label=all",
      f"--z_file={z_path}",
      f"--out={tmp_path / 'b.png'}",
  )
  assert again.returncode == 0, again.stderr[-2000:]
  assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


def test_load_z_validates_the_file(tmp_path):
  good = tmp_path / "good.npy"
  latents.save_z(str(good), np.zeros((2, 8), np.float32))
  assert latents.load_z(str(good), 8).shape == (2, 8)
  cases = {
      "missing.npy": (None, "no noise file"),
      "wrong_dim.npy": (np.zeros((2, 9), np.float32), r"float32 \(2, 9\); this model needs"),
      "wrong_dtype.npy": (np.zeros((2, 8), np.float64), "float64"),
      "one_d.npy": (np.zeros(8, np.float32), r"float32 \(8,\)"),
      "nan.npy": (np.full((1, 8), np.nan, np.float32), "NaN"),
      "objects.npy": (np.array([{"a": 1}], dtype=object), r"object \(1,\); this model needs"),
  }
  for name, (array, message) in cases.items():
    path = tmp_path / name
    if array is not None:
      np.save(path, array, allow_pickle=True)
    with pytest.raises(latents.LatentError, match=message):
      latents.load_z(str(path), 8)
  (tmp_path / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n")
  with pytest.raises(latents.LatentError, match="not a .npy file"):
    latents.load_z(str(tmp_path / "image.png"), 8)
  with pytest.raises(latents.LatentError, match="not a regular file"):
    latents.load_z("/dev/zero", 8)


def _npy_header(shape, dtype="<f4") -> bytes:
  """A .npy header (format 1.0) claiming `shape`, without the data."""
  buffer = io.BytesIO()
  header = {"descr": dtype, "fortran_order": False, "shape": shape}
  np.lib.format.write_array_header_1_0(buffer, header)
  return buffer.getvalue()


def test_load_z_compares_the_header_with_the_file_and_the_row_limit(tmp_path):
  """A header claiming 1e11 rows made numpy allocate 2.9 TiB; nothing is allocated now."""
  huge = tmp_path / "huge.npy"
  huge.write_bytes(_npy_header((10**11, 8)))
  with pytest.raises(latents.LatentError, match=f"at most {latents.MAX_NOISE_ROWS}"):
    latents.load_z(str(huge), 8)
  many = tmp_path / "many.npy"
  many.write_bytes(_npy_header((20_000_000, 8)))
  with pytest.raises(latents.LatentError, match="20000000 noise vectors"):
    latents.load_z(str(many), 8)
  short = tmp_path / "short.npy"
  short.write_bytes(_npy_header((10, 8)) + np.zeros((2, 8), np.float32).tobytes())
  with pytest.raises(latents.LatentError, match="truncated or damaged"):
    latents.load_z(str(short), 8)
  long = tmp_path / "long.npy"
  long.write_bytes(_npy_header((2, 8)) + np.zeros((3, 8), np.float32).tobytes())
  with pytest.raises(latents.LatentError, match="truncated or damaged"):
    latents.load_z(str(long), 8)
  at_limit = tmp_path / "at_limit.npy"
  latents.save_z(str(at_limit), np.ones((latents.MAX_NOISE_ROWS, 8), np.float32))
  assert latents.load_z(str(at_limit), 8).shape == (latents.MAX_NOISE_ROWS, 8)


@pytest.mark.parametrize(
    "args,message",
    [
        (["--interpolate=3"], "--interpolate takes two seeds as A,B"),
        (["--interpolate=3,x"], "--interpolate takes two seeds"),
        (["--interpolate=3,4", "--label=all"], "--interpolate needs --label=CLASS or --label=A,B"),
        (["--interpolate=3,4", "--label=rose,marigold"], "classes from dandelion, marigold"),
        (["--interpolate=3,4", "--label=marigold", "--frames=1"], "at least 2 frames"),
        (
            ["--interpolate=3,4", "--label=marigold", "--frames=100000"],
            f"at most {latents.MAX_FRAMES} frames",
        ),
        (["--interpolate=3,4", "--label=marigold", "--out=walk.gif"], "is the .png strip"),
        (["--label=dandelion,marigold"], "needs --interpolate"),
        (["--z_file=z.npy", "--interpolate=1,2"], "exclude each other"),
        (["--z_file=z.npy", "--truncation=1"], "exclude each other"),
        (["--z_file=/nonexistent/z.npy"], "no noise file /nonexistent/z.npy"),
        (
            ["--label=marigold", "--save_z=/proc/forbidden/z.npy"],
            "cannot write to /proc/forbidden/z.npy (--save_z)",
        ),
    ],
)
def test_walk_and_noise_flag_errors_are_one_line(workdir, args, message):
  result = tiny_run.run("sample.py", f"--workdir={workdir}", *args)
  assert result.returncode != 0
  assert "Traceback" not in result.stderr
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith("error: ") and message in last, last


def test_z_file_row_count_must_match_the_request(workdir, tmp_path):
  path = tmp_path / "z.npy"
  latents.save_z(str(path), np.zeros((3, 8), np.float32))
  result = tiny_run.run(
      "sample.py", f"--workdir={workdir}", "--label=all", "--num=2", f"--z_file={path}"
  )
  assert result.returncode != 0 and "Traceback" not in result.stderr
  assert "has 3 noise vectors but --label=all --num=2 asks for 4 images" in result.stderr
