"""The FID Inception network in Flax: 2048-d pool3 features exactly as pytorch-fid 0.3.0 computes.

The network is InceptionV3 as TensorFlow's `inception-2015-12-05` graph has it, the one every FID
tool uses, with the particulars pytorch-fid's `FIDInceptionA/C/E_1/E_2` give torchvision's
InceptionV3: convolutions without bias, BatchNorm with eps 0.001, the 3×3 average pools of the
A, C and first E blocks ignore the zero padding (`count_include_pad=False`), and the last E block
max-pools. Input: RGB images in [0, 1] (uint8 / 255, as torchvision's `ToTensor`), resized to
299×299 bilinearly with `align_corners=False` and without antialiasing (`F.interpolate`), then
mapped to [-1, 1] by `2x − 1`. Convolutions run in float32 with `Precision.HIGHEST`.

Weights: the user's `pt_inception-2015-12-05-6726825d.pth` (a PyTorch state dict; flowergan never
downloads it). It is read once with `torch.load(weights_only=True)` (torch imported only then)
and kept as an .npz in `<cache_dir>/inception/<sha256>.npz`; later runs read that cache and need
no torch.

  variables = inception.load_weights("pt_inception-2015-12-05-6726825d.pth")
  features = inception.extract_features(variables, images_uint8_nhwc)  # (N, 2048) float32
"""

from __future__ import annotations

import functools
import os
import re
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.sharding import NamedSharding, PartitionSpec as P

from flowergan import batching, errors, storage, untrusted
from flowergan import mesh as mesh_lib

WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = (
    f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{WEIGHTS_FILE}"
)
# The hash prefix in the published file's name (torch.hub's convention: sha256[:8]).
PUBLISHED_SHA256_PREFIX = "6726825d"
PROTOCOL = "pytorch-fid 0.3.0"
INPUT_SIZE = 299
FEATURE_DIM = 2048
DEFAULT_CACHE_DIR = storage.CACHE_DIR
DEFAULT_BATCH_SIZE = 64
_HIGHEST = jax.lax.Precision.HIGHEST
# Keys of the state dict that the pool3 features do not use: the 1008-way classifier and the
# BatchNorm step counters (absent from files saved by torch < 0.4.1).
_UNUSED_KEY = re.compile(r"^fc\.(weight|bias)$|\.num_batches_tracked$")


class InceptionError(errors.FlowerganError):
  """A missing or foreign weights file, or images the network cannot take (one line)."""


# ------------------------------------------------------------------------------- the network


class BasicConv2d(nn.Module):
  """Conv (no bias) → BatchNorm (eps 0.001, running statistics) → ReLU, as torchvision's."""

  features: int
  kernel: tuple[int, int]
  strides: int = 1
  padding: tuple[int, int] = (0, 0)

  @nn.compact
  def __call__(self, x):
    ph, pw = self.padding
    x = nn.Conv(
        self.features,
        self.kernel,
        strides=self.strides,
        padding=((ph, ph), (pw, pw)),
        use_bias=False,
        precision=_HIGHEST,
        name="conv",
    )(x)
    x = nn.BatchNorm(use_running_average=True, epsilon=1e-3, name="bn")(x)
    return nn.relu(x)


def _avg_pool_3x3(x):
  """3×3 stride-1 average pool that divides by the number of pixels inside the image (TF's)."""
  return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_3x3_s2(x):
  return nn.max_pool(x, (3, 3), strides=(2, 2), padding="VALID")


class InceptionA(nn.Module):
  pool_features: int

  @nn.compact
  def __call__(self, x):
    b1 = BasicConv2d(64, (1, 1), name="branch1x1")(x)
    b5 = BasicConv2d(48, (1, 1), name="branch5x5_1")(x)
    b5 = BasicConv2d(64, (5, 5), padding=(2, 2), name="branch5x5_2")(b5)
    b3 = BasicConv2d(64, (1, 1), name="branch3x3dbl_1")(x)
    b3 = BasicConv2d(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(b3)
    b3 = BasicConv2d(96, (3, 3), padding=(1, 1), name="branch3x3dbl_3")(b3)
    bp = BasicConv2d(self.pool_features, (1, 1), name="branch_pool")(_avg_pool_3x3(x))
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):

  @nn.compact
  def __call__(self, x):
    b3 = BasicConv2d(384, (3, 3), strides=2, name="branch3x3")(x)
    bd = BasicConv2d(64, (1, 1), name="branch3x3dbl_1")(x)
    bd = BasicConv2d(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
    bd = BasicConv2d(96, (3, 3), strides=2, name="branch3x3dbl_3")(bd)
    return jnp.concatenate([b3, bd, _max_pool_3x3_s2(x)], axis=-1)


class InceptionC(nn.Module):
  channels_7x7: int

  @nn.compact
  def __call__(self, x):
    c7 = self.channels_7x7
    b1 = BasicConv2d(192, (1, 1), name="branch1x1")(x)
    b7 = BasicConv2d(c7, (1, 1), name="branch7x7_1")(x)
    b7 = BasicConv2d(c7, (1, 7), padding=(0, 3), name="branch7x7_2")(b7)
    b7 = BasicConv2d(192, (7, 1), padding=(3, 0), name="branch7x7_3")(b7)
    bd = BasicConv2d(c7, (1, 1), name="branch7x7dbl_1")(x)
    bd = BasicConv2d(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_2")(bd)
    bd = BasicConv2d(c7, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(bd)
    bd = BasicConv2d(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_4")(bd)
    bd = BasicConv2d(192, (1, 7), padding=(0, 3), name="branch7x7dbl_5")(bd)
    bp = BasicConv2d(192, (1, 1), name="branch_pool")(_avg_pool_3x3(x))
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):

  @nn.compact
  def __call__(self, x):
    b3 = BasicConv2d(192, (1, 1), name="branch3x3_1")(x)
    b3 = BasicConv2d(320, (3, 3), strides=2, name="branch3x3_2")(b3)
    b7 = BasicConv2d(192, (1, 1), name="branch7x7x3_1")(x)
    b7 = BasicConv2d(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
    b7 = BasicConv2d(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
    b7 = BasicConv2d(192, (3, 3), strides=2, name="branch7x7x3_4")(b7)
    return jnp.concatenate([b3, b7, _max_pool_3x3_s2(x)], axis=-1)


class InceptionE(nn.Module):
  """`max_pool`: the FID network's last block max-pools where the paper's average-pools."""

  max_pool: bool = False

  @nn.compact
  def __call__(self, x):
    b1 = BasicConv2d(320, (1, 1), name="branch1x1")(x)
    b3 = BasicConv2d(384, (1, 1), name="branch3x3_1")(x)
    b3 = jnp.concatenate(
        [
            BasicConv2d(384, (1, 3), padding=(0, 1), name="branch3x3_2a")(b3),
            BasicConv2d(384, (3, 1), padding=(1, 0), name="branch3x3_2b")(b3),
        ],
        axis=-1,
    )
    bd = BasicConv2d(448, (1, 1), name="branch3x3dbl_1")(x)
    bd = BasicConv2d(384, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
    bd = jnp.concatenate(
        [
            BasicConv2d(384, (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(bd),
            BasicConv2d(384, (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(bd),
        ],
        axis=-1,
    )
    if self.max_pool:
      pooled = nn.max_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)))
    else:
      pooled = _avg_pool_3x3(x)
    bp = BasicConv2d(192, (1, 1), name="branch_pool")(pooled)
    return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class FIDInceptionV3(nn.Module):
  """NHWC images in [-1, 1] at 299×299 → pool3 features (N, 2048). Names follow torchvision's."""

  @nn.compact
  def __call__(self, x):
    x = BasicConv2d(32, (3, 3), strides=2, name="Conv2d_1a_3x3")(x)
    x = BasicConv2d(32, (3, 3), name="Conv2d_2a_3x3")(x)
    x = BasicConv2d(64, (3, 3), padding=(1, 1), name="Conv2d_2b_3x3")(x)
    x = _max_pool_3x3_s2(x)
    x = BasicConv2d(80, (1, 1), name="Conv2d_3b_1x1")(x)
    x = BasicConv2d(192, (3, 3), name="Conv2d_4a_3x3")(x)
    x = _max_pool_3x3_s2(x)
    x = InceptionA(32, name="Mixed_5b")(x)
    x = InceptionA(64, name="Mixed_5c")(x)
    x = InceptionA(64, name="Mixed_5d")(x)
    x = InceptionB(name="Mixed_6a")(x)
    x = InceptionC(128, name="Mixed_6b")(x)
    x = InceptionC(160, name="Mixed_6c")(x)
    x = InceptionC(160, name="Mixed_6d")(x)
    x = InceptionC(192, name="Mixed_6e")(x)
    x = InceptionD(name="Mixed_7a")(x)
    x = InceptionE(name="Mixed_7b")(x)
    x = InceptionE(max_pool=True, name="Mixed_7c")(x)
    return jnp.mean(x, axis=(1, 2))


# ------------------------------------------------------------------------------- the weights


@functools.cache
def expected_layout() -> dict[str, tuple[tuple[str, ...], tuple[int, ...]]]:
  """Torch key → (Flax variable path, torch shape) of every tensor the features use."""
  shapes = jax.eval_shape(
      lambda: FIDInceptionV3().init(jax.random.key(0), jnp.zeros((1, INPUT_SIZE, INPUT_SIZE, 3)))
  )
  layout = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(shapes)[0]:
    names = tuple(k.key for k in path)
    collection, *modules, leaf_name = names
    torch_name = {"kernel": "weight", "scale": "weight", "bias": "bias"}.get(leaf_name)
    if collection == "batch_stats":
      torch_name = {"mean": "running_mean", "var": "running_var"}[leaf_name]
    shape = tuple(leaf.shape)
    if leaf_name == "kernel":  # HWIO here, OIHW in torch
      shape = (shape[3], shape[2], shape[0], shape[1])
    layout[".".join([*modules, torch_name])] = (names, shape)
  return layout


def missing_weights_message(flag: str = "--inception") -> str:
  return (
      f"FID needs the Inception weights file {WEIGHTS_FILE} (the one pytorch-fid and "
      f"torch-fidelity use; flowergan never downloads it): get it from {WEIGHTS_URL} and pass "
      f"its path with {flag}=FILE."
  )


def cache_path(sha256: str, cache_dir: str = DEFAULT_CACHE_DIR) -> str:
  return os.path.join(os.path.expanduser(cache_dir), "inception", f"{sha256}.npz")


def load_weights(
    path: str | None, cache_dir: str = DEFAULT_CACHE_DIR, *, flag: str = "--inception"
) -> dict:
  """The network's variables `{'params': ..., 'batch_stats': ...}` (numpy float32) from the
  user's weights file, through the cache: the .pth is read (with torch) only on a cache miss.

  `flag` names the option that takes the file, for the error messages.
  """
  if not path:
    raise InceptionError(missing_weights_message(flag))
  path = os.path.expanduser(path)
  if not os.path.isfile(path):
    raise InceptionError(f"no file {path}. " + missing_weights_message(flag))
  sha256 = storage.file_sha256(path)
  if not sha256.startswith(PUBLISHED_SHA256_PREFIX):
    logging.warning(
        "%s (sha256 %s…) is not the published %s: its FIDs are not comparable with published "
        "ones.",
        path,
        sha256[:16],
        WEIGHTS_FILE,
    )
  cached = cache_path(sha256, cache_dir)
  arrays = _read_cache(cached, path)
  if arrays is None:
    arrays = _arrays_from_state_dict(read_state_dict(path, flag), path)
    try:
      storage.save_npz(cached, arrays)
      logging.info("Inception weights cached in %s", cached)
    except (OSError, storage.StorageError) as e:  # a read-only cache costs a torch.load later
      logging.warning(
          "could not cache the Inception weights in %s: %s", cached, " ".join(str(e).split())
      )
  return _variables(arrays)


def _read_cache(cached: str, weights: str) -> dict[str, np.ndarray] | None:
  """The cached arrays, or None when absent; a damaged one (truncated, foreign, another
  layout, not finite) is rebuilt from `weights` with a one-line warning (`flowergan.untrusted`)."""
  if not os.path.lexists(cached):
    return None
  expected = {}
  for names, shape in expected_layout().values():
    expected["/".join(names)] = (
        (shape[2], shape[3], shape[1], shape[0]) if len(shape) == 4 else shape
    )
  where = f"the Inception weights cache {cached}"
  try:
    arrays = untrusted.read_npz(cached, expected, where=where, dtype_kinds="f", extra_keys=False)
    wrong = [k for k, v in arrays.items() if v.dtype != np.float32]
    if wrong:
      raise untrusted.UntrustedFileError(f"{where} holds {wrong[0]} as {arrays[wrong[0]].dtype}")
    return arrays
  except untrusted.UntrustedFileError as e:
    logging.warning("%s; rebuilding it from %s.", str(e).rstrip("."), weights)
    return None


def read_state_dict(path: str, flag: str = "--inception") -> dict[str, np.ndarray]:
  """The file's state dict as numpy arrays, read with `torch.load(weights_only=True)`."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise InceptionError(
        f"reading {path} the first time needs torch (pip install torch; a CPU build is enough);"
        " later runs read flowergan's cache of it without torch."
    ) from None
  try:  # bounded before torch reads it (the published file is 91 MiB)
    untrusted.check_size(path, untrusted.MAX_TORCH_BYTES, f"{flag} takes {WEIGHTS_FILE}")
  except untrusted.UntrustedFileError as e:
    raise InceptionError(str(e)) from None
  try:
    obj = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # torch.load raises many types for foreign files; report any in a line
    raise InceptionError(
        f"{path} is not a PyTorch weights file ({untrusted.torch_load_reason(e)}); "
        f"{flag} takes {WEIGHTS_FILE}."
    ) from None
  if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
    raise InceptionError(
        f"{path} holds a {type(obj).__name__}, not a state dict of tensors; {flag} takes "
        f"{WEIGHTS_FILE}."
    )
  return {str(k): v.detach().cpu().float().numpy() for k, v in obj.items()}


def _arrays_from_state_dict(state_dict: dict[str, np.ndarray], path: str) -> dict[str, np.ndarray]:
  """Flax-layout arrays keyed by '/'-joined variable paths (kernels OIHW → HWIO)."""
  for key in state_dict:
    if key not in expected_layout() and not _UNUSED_KEY.search(key):
      raise InceptionError(
          f"{path}: unexpected key {key}; not the FID Inception network ({WEIGHTS_FILE})."
      )
  arrays = {}
  for key, (names, shape) in expected_layout().items():
    if key not in state_dict:
      raise InceptionError(
          f"{path}: missing key {key}; not the FID Inception network ({WEIGHTS_FILE})."
      )
    value = np.asarray(state_dict[key], np.float32)
    if value.shape != shape:
      raise InceptionError(f"{path}: {key} has shape {value.shape}, the network needs {shape}.")
    try:  # NaN weights: NaN features, and sqrtm of them endless
      untrusted.check_finite({key: value}, path, f"{WEIGHTS_FILE} holds none: get it again")
    except untrusted.UntrustedFileError as e:
      raise InceptionError(str(e)) from None
    if value.ndim == 4:
      value = value.transpose(2, 3, 1, 0)
    arrays["/".join(names)] = value
  return arrays


def _variables(arrays: dict[str, np.ndarray]) -> dict:
  variables: dict = {}
  for key, value in arrays.items():
    *parents, leaf = key.split("/")
    node = variables
    for name in parents:
      node = node.setdefault(name, {})
    node[leaf] = value
  return variables


# ------------------------------------------------------------------------------- features


def resize_matrix(in_size: int, out_size: int = INPUT_SIZE) -> np.ndarray:
  """(out, in) weights of torch's bilinear `F.interpolate(align_corners=False)` along one axis.

  Source coordinate of output pixel i: s·(i + 0.5) − 0.5 with s = in/out, clamped below at 0,
  rounded as torch's CPU kernel computes it: s in float32, then one fused multiply-add rounded
  to float32 (other roundings move the weights by up to 4e-6); it mixes the two neighbouring
  input pixels, without antialiasing.
  """
  f32 = np.float32
  out = np.arange(out_size)
  if in_size == out_size:
    return np.eye(out_size, dtype=f32)
  scale = f32(in_size) / f32(out_size)
  # The float64 product of a float32 and (i + 0.5) is exact: this is fma(s, i + 0.5, -0.5).
  src = (np.float64(scale) * (out + 0.5) - 0.5).astype(f32)
  src = np.maximum(src, f32(0))
  i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
  i1 = np.minimum(i0 + 1, in_size - 1)
  frac = np.clip(src - i0.astype(f32), f32(0), f32(1))
  m = np.zeros((out_size, in_size), f32)
  np.add.at(m, (out, i0), f32(1) - frac)
  np.add.at(m, (out, i1), frac)
  return m


def to_network_input(images) -> jax.Array:
  """NHWC uint8 (or float in [0, 1]) → float32 [-1, 1] at 299×299, as pytorch-fid feeds it."""
  x = images.astype(jnp.float32)
  if images.dtype == jnp.uint8:
    x = x / 255.0
  _, h, w, _ = images.shape
  if (h, w) != (INPUT_SIZE, INPUT_SIZE):
    x = jnp.einsum("oh,nhwc->nowc", resize_matrix(h), x, precision=_HIGHEST)
    x = jnp.einsum("pw,nowc->nopc", resize_matrix(w), x, precision=_HIGHEST)
  return 2.0 * x - 1.0


@functools.cache
def _jitted(mesh):
  data = NamedSharding(mesh, P("data"))
  network = FIDInceptionV3()
  prepare = jax.jit(to_network_input, in_shardings=data, out_shardings=data)
  apply = jax.jit(network.apply, in_shardings=(mesh_lib.replicated(mesh), data), out_shardings=data)
  return prepare, apply


def extract_features(
    variables: dict,
    images,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    mesh: jax.sharding.Mesh | None = None,
) -> np.ndarray:
  """Pool3 features (N, 2048) float32 of NHWC RGB images (uint8, or float in [0, 1]).

  Data-parallel over `mesh` (default: every device): batches of `batch_size` rounded up to a
  multiple of the device count, split along the batch; the last batch is zero-padded (the
  padding rows' features are dropped). Images of any size are resized to 299 as pytorch-fid does.
  """
  images = np.asarray(images)
  if images.ndim != 4 or images.shape[-1] != 3:
    raise InceptionError(f"images must be NHWC RGB, got shape {images.shape}.")
  if images.dtype != np.uint8:
    images = images.astype(np.float32)
  if min(images.shape[1:3]) < 1:
    raise InceptionError(f"images must have pixels, got shape {images.shape}.")
  mesh = mesh_lib.make_mesh() if mesh is None else mesh
  batch = -(-min(batch_size, images.shape[0]) // mesh.size) * mesh.size
  prepare, apply = _jitted(mesh)
  replicated = jax.device_put(variables, mesh_lib.replicated(mesh))
  data = NamedSharding(mesh, P("data"))

  def features(x):
    return apply(replicated, prepare(jax.device_put(x, data)))

  start = time.perf_counter()
  out = batching.map_padded_batches(features, [images], batch, full=True)
  seconds = time.perf_counter() - start
  logging.info(
      "Inception features of %d images (%dx%d) in %.1f s: %.2f images/s",
      images.shape[0],
      images.shape[1],
      images.shape[2],
      seconds,
      images.shape[0] / seconds,
  )
  return np.asarray(out, np.float32)
