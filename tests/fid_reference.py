"""pytorch-fid 0.3.0's own FID Inception network, built offline with random weights.

`pytorch_fid.inception.fid_inception_v3` assembles the network (torchvision's InceptionV3 with
its FIDInceptionA/C/E_1/E_2 blocks) and then downloads the weights; here the download is replaced
by a state dict of random weights, then a few passes in training mode give the BatchNorm layers
running statistics of the test images (so the features span a range, as trained ones do). The
result is saved as the published file is saved (`torch.save(state_dict, path)`), and every
reference computation loads that file through pytorch-fid's own code.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np
import pytest
from PIL import Image

from flowergan import inception

REASON = (
    "the FID parity tests need torch==2.14.1 torchvision==0.29.1 pytorch-fid==0.3.0 "
    '(pip install -e ".[fid]")'
)
_FILES = {}  # the session's weights file (`weights_file`)


def import_reference():
  """(torch, pytorch_fid.inception, pytorch_fid.fid_score); skip or, in CI, fail without them."""
  try:
    import torch
    from pytorch_fid import fid_score
    from pytorch_fid import inception as fid_inception
  except ImportError:
    if os.environ.get("FLOWERGAN_REQUIRE_PYTORCH_FID") == "1":
      pytest.fail(REASON)
    pytest.skip(REASON)
  return torch, fid_inception, fid_score


@contextlib.contextmanager
def offline_weights(state_dict_fn):
  """pytorch-fid's `load_state_dict_from_url` returns `state_dict_fn()` instead of downloading."""
  _, fid_inception, _ = import_reference()
  original = fid_inception.load_state_dict_from_url

  def load(url, *args, **kwargs):
    assert url == fid_inception.FID_WEIGHTS_URL, url
    return state_dict_fn()

  fid_inception.load_state_dict_from_url = load
  try:
    yield
  finally:
    fid_inception.load_state_dict_from_url = original


def smooth_images(rng: np.random.Generator, n: int, size: int, tint) -> np.ndarray:
  """`n` uint8 images of low-frequency colour patterns plus noise, shifted by `tint` (RGB)."""
  coarse = rng.uniform(0, 255, (n, 4, 4, 3))
  images = []
  for c in coarse:
    im = Image.fromarray(c.astype(np.uint8)).resize((size, size), Image.BICUBIC)
    images.append(np.asarray(im, np.float64))
  x = np.stack(images) + rng.normal(0, 20, (n, size, size, 3)) + np.asarray(tint, np.float64)
  return np.clip(x, 0, 255).astype(np.uint8)


def write_folder(folder, images: np.ndarray) -> list[str]:
  os.makedirs(folder, exist_ok=True)
  paths = []
  for i, im in enumerate(images):
    path = os.path.join(folder, f"{i:03d}.png")
    Image.fromarray(im).save(path)
    paths.append(path)
  return paths


def save_random_network(path: str, calibration_images: np.ndarray, seed: int = 0) -> None:
  """Saves pytorch-fid's FID Inception network with random weights as the published file is.

  BatchNorm: random affine parameters, running statistics from passes in training mode over
  `calibration_images` (uint8 NHWC), fed as pytorch-fid feeds images (resize to 299, 2x − 1).
  """
  torch, fid_inception, _ = import_reference()
  torch.manual_seed(seed)
  base = fid_inception._inception_v3(num_classes=1008, aux_logits=False, weights=None)
  for module in base.modules():
    if isinstance(module, torch.nn.BatchNorm2d):
      torch.nn.init.uniform_(module.weight, 0.5, 1.5)
      torch.nn.init.normal_(module.bias, 0.0, 0.2)
  random_state = base.state_dict()
  with offline_weights(lambda: random_state):
    network = fid_inception.fid_inception_v3()  # pytorch-fid's assembly of the FID blocks
  for module in network.modules():
    if isinstance(module, torch.nn.BatchNorm2d):
      module.momentum = None  # running statistics: the plain average over the passes
      module.reset_running_stats()
  x = torch.from_numpy(calibration_images).permute(0, 3, 1, 2).float() / 255.0
  x = 2 * torch.nn.functional.interpolate(x, size=(299, 299), mode="bilinear") - 1
  network.train()
  with torch.no_grad():
    for batch in torch.split(x, 4):
      network(batch)
  torch.save(network.state_dict(), path)


def weights_file(tmp_path_factory) -> str:
  """The test weights file of pytorch-fid's network, built at the first call of the session.

  Random weights, BatchNorm statistics of 8 smooth 48 px images; test_fid.py and
  test_inception.py read the same file (building it runs the 299² network in torch).
  """
  if "weights" not in _FILES:
    import_reference()
    path = str(tmp_path_factory.mktemp("inception") / inception.WEIGHTS_FILE)
    save_random_network(path, smooth_images(np.random.default_rng(0), 8, 48, (0, 0, 0)))
    _FILES["weights"] = path
  return _FILES["weights"]


def reference_model(path: str):
  """pytorch-fid's `InceptionV3([3])` (pool3) with the weights of `path`, in eval mode."""
  torch, fid_inception, _ = import_reference()
  with offline_weights(lambda: torch.load(path, map_location="cpu", weights_only=True)):
    model = fid_inception.InceptionV3([fid_inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]])
  return model.eval()


def reference_features(path: str, files: list[str], batch_size: int = 50) -> np.ndarray:
  """pytorch-fid's `get_activations` (its file reading and network) on `files`."""
  _, _, fid_score = import_reference()
  model = reference_model(path)
  return fid_score.get_activations(
      files, model, batch_size=batch_size, dims=2048, device="cpu", num_workers=0
  )


def reference_fid(path: str, folder_a: str, folder_b: str) -> float:
  """`pytorch_fid.fid_score.calculate_fid_given_paths` with the weights of `path`."""
  torch, _, fid_score = import_reference()
  with offline_weights(lambda: torch.load(path, map_location="cpu", weights_only=True)):
    return float(
        fid_score.calculate_fid_given_paths(
            [str(folder_a), str(folder_b)], batch_size=50, device="cpu", dims=2048, num_workers=0
        )
    )


def reference_save_stats(path: str, folder: str, out: str) -> None:
  """`pytorch_fid.fid_score.save_fid_stats` (its `--save-stats`) with the weights of `path`."""
  torch, _, fid_score = import_reference()
  with offline_weights(lambda: torch.load(path, map_location="cpu", weights_only=True)):
    fid_score.save_fid_stats([str(folder), str(out)], 50, "cpu", 2048, num_workers=0)
