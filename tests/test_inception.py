"""The FID Inception network: pytorch-fid 0.3.0's features from the user's weights file."""

import builtins
import os
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowergan import inception, storage
from tests import fid_reference as ref


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
  """A weights file of pytorch-fid's network (random weights), shared with test_fid.py."""
  return ref.weights_file(tmp_path_factory)


def test_resize_matches_torch_bilinear_interpolate():
  """The 299 resize is torch's F.interpolate(bilinear, align_corners=False), up and down."""
  torch, _, _ = ref.import_reference()
  x = np.random.default_rng(1).uniform(0, 1, (2, 3, 40, 512)).astype(np.float32)
  want = torch.nn.functional.interpolate(
      torch.from_numpy(x), size=(299, 299), mode="bilinear", align_corners=False
  ).numpy()
  got = inception.to_network_input(jnp.asarray(x.transpose(0, 2, 3, 1)))
  np.testing.assert_allclose((np.asarray(got).transpose(0, 3, 1, 2) + 1) / 2, want, atol=1e-6)


def test_pool3_features_match_pytorch_fid(weights, tmp_path):
  """Same images, same weights file: pytorch-fid's get_activations and ours agree to 1e-4 of
  the features' scale, at 32, 128 and 299 px (the last batch padded on 8 devices), and the
  features differ between images (a network that maps every image alike would agree trivially).
  """
  rng = np.random.default_rng(2)
  variables = inception.load_weights(weights, cache_dir=str(tmp_path / "cache"))
  for size in (32, 128, 299):
    images = ref.smooth_images(rng, 5, size, (0, 0, 0))
    files = ref.write_folder(tmp_path / f"x{size}", images)
    want = ref.reference_features(weights, files)
    got = inception.extract_features(variables, images, batch_size=4)
    scale = np.abs(want).max()
    assert got.shape == want.shape == (5, inception.FEATURE_DIM)
    assert np.abs(got - want).max() <= 1e-4 * scale, (size, np.abs(got - want).max(), scale)
    spread = want.std(axis=0).mean() / np.abs(want).mean()
    assert spread > 0.05, (size, spread)


def test_weights_cached_and_read_without_torch(weights, tmp_path, monkeypatch):
  """The .pth is read once into `<cache_dir>/inception/<sha256>.npz`; later loads need no torch
  and give the same variables."""
  cache_dir = str(tmp_path / "cache")
  first = inception.load_weights(weights, cache_dir=cache_dir)
  cached = inception.cache_path(storage.file_sha256(weights), cache_dir)
  assert os.path.isfile(cached)
  real_import = builtins.__import__

  def no_torch(name, *args, **kwargs):
    if name == "torch" or name.startswith("torch."):
      raise ImportError("torch is not installed")
    return real_import(name, *args, **kwargs)

  monkeypatch.setattr(builtins, "__import__", no_torch)
  second = inception.load_weights(weights, cache_dir=cache_dir)
  jax.tree.map(np.testing.assert_array_equal, first, second)
  os.remove(cached)
  with pytest.raises(inception.InceptionError, match="needs torch"):
    inception.load_weights(weights, cache_dir=cache_dir)


def test_missing_weights_name_the_file_its_source_and_the_flag(tmp_path):
  for path in (None, str(tmp_path / "nothing.pth")):
    with pytest.raises(inception.InceptionError) as e:
      inception.load_weights(path, cache_dir=str(tmp_path), flag="--inception")
    message = str(e.value)
    assert "\n" not in message
    assert inception.WEIGHTS_FILE in message and inception.WEIGHTS_URL in message
    assert "--inception=" in message


def test_foreign_files_are_refused_in_one_line(tmp_path):
  """Random bytes, a pickle that would run code, and another network's state dict."""
  torch, _, _ = ref.import_reference()
  junk = tmp_path / "junk.pth"
  junk.write_bytes(os.urandom(1000))
  code = tmp_path / "code.pth"
  code.write_bytes(pickle.dumps(os.system))
  other = tmp_path / "other.pth"
  torch.save(torch.nn.Linear(3, 2).state_dict(), other)
  for path, expected in ((junk, "not a PyTorch"), (code, "not a PyTorch"), (other, "unexpected")):
    with pytest.raises(inception.InceptionError, match=expected) as e:
      inception.load_weights(str(path), cache_dir=str(tmp_path / "cache"))
    assert "\n" not in str(e.value)


def _damage(path, how: str) -> None:
  """Empty, half of it, bytes that are no zip, or a readable .npz of the layout with a NaN."""
  data = open(path, "rb").read()
  if how == "empty":
    data = b""
  elif how == "truncated":
    data = data[: len(data) // 2]
  elif how == "garbage":
    data = os.urandom(4096)
  with open(path, "wb") as f:
    f.write(data)
  if how == "nan":
    with np.load(path) as npz:
      arrays = dict(npz)
    first = sorted(arrays)[0]
    arrays[first] = np.full_like(arrays[first], np.nan)
    np.savez(path, **arrays)


@pytest.mark.parametrize("how", ["empty", "truncated", "garbage", "nan"])
def test_a_damaged_weights_cache_is_rebuilt_with_a_one_line_warning(weights, tmp_path, caplog, how):
  """A damaged `<sha256>.npz` cache used to be a BadZipFile/EOFError traceback in every later
  run (fid, evaluate.py --inception): now one warning line, the same variables from the weights
  file, and the cache written again whole."""
  cache_dir = str(tmp_path / "cache")
  first = inception.load_weights(weights, cache_dir=cache_dir)
  cached = inception.cache_path(storage.file_sha256(weights), cache_dir)
  _damage(cached, how)
  caplog.clear()
  second = inception.load_weights(weights, cache_dir=cache_dir)
  jax.tree.map(np.testing.assert_array_equal, first, second)
  warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
  warnings = [w for w in warnings if "not the published" not in w]  # random test weights
  assert len(warnings) == 1 and "\n" not in warnings[0], warnings
  assert cached in warnings[0] and f"rebuilding it from {weights}" in warnings[0]
  with np.load(cached) as npz:  # rebuilt: readable and finite again
    assert all(np.isfinite(npz[k]).all() for k in npz.files)


def test_weights_holding_nan_are_refused_before_any_feature(weights, tmp_path):
  """A valid weights file with one NaN: one line naming the tensor (it used to give NaN
  features, then a sqrtm that ran for minutes)."""
  torch, _, _ = ref.import_reference()
  state = torch.load(weights, map_location="cpu", weights_only=True)
  state["Conv2d_1a_3x3.conv.weight"][0, 0, 0, 0] = float("nan")
  bad = tmp_path / "nan.pth"
  torch.save(state, bad)
  with pytest.raises(inception.InceptionError, match="non-finite") as e:
    inception.load_weights(str(bad), cache_dir=str(tmp_path / "cache"))
  assert "Conv2d_1a_3x3.conv.weight" in str(e.value) and "\n" not in str(e.value)
