r"""Imports the authors' published PyTorch generator into a flowergan workdir.

  python import_torch.py GANFLOWER-28_03500_c2wgan_128_generator.pt --workdir=runs/authors128
  python sample.py --workdir=runs/authors128 --label=marigold --truncation=1.5

The files are the release assets of yisaienkov/this_flower_does_not_exist_demo (v0.3.0 128×128,
v0.2.0 64×64; `{"model_state_dict": state_dict}` of their `GeneratorWGAN`, whose single
attribute `gen` is an `nn.Sequential`). The image size is inferred from the keys. The result is
an ordinary checkpoint of the matching config (configs/cwgan128.py, `data.image_size` 64 for the
earlier file) that `sample.py`, the web demo and the latent walks read unchanged: the weights go
to the generator and its EMA slot, the BatchNorm running statistics to `batch_stats`, the class
names are ('dandelion', 'marigold') in the authors' label order (leontodon = 0, marigold = 1).

The authors never published their critic: the checkpoint holds a randomly initialised one, its
metadata says so (`imported_generator`), and `train.py` refuses to resume such a workdir unless
`--config.train.fresh_critic=True` asks for training against that fresh critic explicitly.

torch is imported here only (`pip install -e ".[torch]"`), and the file is read with
`torch.load(weights_only=True)`: a file that needs more than tensors is refused, never
unpickled.
"""

from __future__ import annotations

import os
import re

import jax
import jax.numpy as jnp
import numpy as np

from flowergan import checkpointing, errors, models, storage, untrusted
from flowergan import mesh as mesh_lib
from flowergan import train_step as ts

AUTHORS_CLASSES = ("dandelion", "marigold")
AUTHORS_REPOSITORY = "yisaienkov/this_flower_does_not_exist_demo"
KNOWN_SIZES = (128, 64)  # the published files: v0.3.0 and v0.2.0
# Step recorded for the imported checkpoint: 0 would read as "nothing to resume" to train.py.
IMPORTED_STEP = 1


class TorchImportError(errors.FlowerganError):
  """The file is not one of the authors' generators (one-line message)."""


def authors_layout(image_size: int, width: int = 64) -> list[tuple[str, str]]:
  """(torch prefix, flowergan module) pairs of the authors' `gen` Sequential: block 0, then per
  ×2 stage one parameter-free Upsample index and its Conv-BN-ReLU blocks, then the final conv."""
  layout = [("gen.0", "block_0")]
  index, block = 1, 1
  for stage in models.generator_stage_channels(image_size, width):
    index += 1  # the stage's nn.Upsample holds no weights
    for _ in stage:
      layout.append((f"gen.{index}", f"block_{block}"))
      index, block = index + 1, block + 1
  layout.append((f"gen.{index}", "to_rgb"))
  return layout


def expected_keys(gan: ts.WGANGP) -> dict[str, tuple[tuple[str, ...], tuple[int, ...]]]:
  """Torch key → (flowergan variable path, torch shape) for `gan`'s generator, in file order.

  Paths start with 'params' or 'batch_stats'; `num_batches_tracked` maps to () (unused at
  inference, but part of the layout). Conv kernels are OIHW in torch, HWIO here.
  """
  g = gan.generator
  shapes = jax.eval_shape(
      lambda: g.init(jax.random.key(0), jnp.zeros((1, gan.z_dim)), jnp.zeros((1,), jnp.int32))
  )
  out = {}
  for prefix, name in authors_layout(g.image_size, g.width):
    conv = ("params", name) if name == "to_rgb" else ("params", name, "conv")
    kernel = _leaf(shapes, (*conv, "kernel")).shape
    out[f"{prefix}.0.weight"] = ((*conv, "kernel"), (kernel[3], kernel[2], kernel[0], kernel[1]))
    out[f"{prefix}.0.bias"] = ((*conv, "bias"), (kernel[3],))
    if name == "to_rgb":
      continue
    channels = (kernel[3],)
    out[f"{prefix}.1.weight"] = (("params", name, "bn", "scale"), channels)
    out[f"{prefix}.1.bias"] = (("params", name, "bn", "bias"), channels)
    out[f"{prefix}.1.running_mean"] = (("batch_stats", name, "bn", "mean"), channels)
    out[f"{prefix}.1.running_var"] = (("batch_stats", name, "bn", "var"), channels)
    out[f"{prefix}.1.num_batches_tracked"] = ((), ())
  return out


def _leaf(tree, path):
  for key in path:
    tree = tree[key]
  return tree


def import_config(config, image_size: int):
  """The config of the imported checkpoint: `config` at the file's image size and classes."""
  config = config.copy_and_resolve_references()
  if config.model.upsample != "bilinear":
    raise TorchImportError(
        f"the authors' generator upsamples bilinearly; the config says "
        f"model.upsample={config.model.upsample!r}."
    )
  config.data.image_size = image_size
  config.data.classes = AUTHORS_CLASSES
  return config


def read_state_dict(path: str) -> dict[str, np.ndarray]:
  """The generator state dict of an authors' file as NumPy arrays (weights only, no code)."""
  if not os.path.isfile(path):
    raise TorchImportError(f"no file {path}: pass the authors' generator .pt file.")
  try:  # bounded before torch reads it (the authors' files are 4.5 MiB)
    untrusted.check_size(path, untrusted.MAX_TORCH_BYTES, "pass the authors' generator .pt file")
  except untrusted.UntrustedFileError as e:
    raise TorchImportError(str(e)) from None
  try:
    import torch
  except ImportError:
    raise TorchImportError(
        'reading a PyTorch file needs torch: pip install -e ".[torch]" (a CPU build is enough).'
    ) from None
  try:
    obj = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # torch.load raises many types for foreign files; report any in a line
    text = str(e)
    needs = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if needs:
      raise TorchImportError(
          f"{path} needs {needs.group(1)} to load, which torch.load(weights_only=True) refuses: "
          f"flowergan reads tensors only and does not unpickle arbitrary code."
      ) from None
    raise TorchImportError(
        f"{path} is not a PyTorch file ({untrusted.torch_load_reason(e)}): pass the authors' "
        "generator .pt file."
    ) from None
  state_dict = obj.get("model_state_dict", obj) if isinstance(obj, dict) else None
  if not isinstance(state_dict, dict):
    raise TorchImportError(
        f"{path} holds a {type(obj).__name__}, not the authors' "
        f'{{"model_state_dict": state_dict}}.'
    )
  arrays = {}
  for key, value in state_dict.items():
    if not isinstance(value, torch.Tensor):
      raise TorchImportError(f"{path}: {key} is a {type(value).__name__}, not a tensor.")
    arrays[str(key)] = value.detach().cpu().numpy()
  return arrays


def infer_image_size(state_dict: dict, config, path: str) -> int:
  """The known layout (128 or 64) that shares the most keys with the file."""
  overlap = {}
  for size in KNOWN_SIZES:
    gan = ts.wgangp_from_config(import_config(config, size), len(AUTHORS_CLASSES))
    overlap[size] = len(set(expected_keys(gan)) & set(state_dict))
  size = max(KNOWN_SIZES, key=lambda s: overlap[s])
  if overlap[size] == 0:
    first = next(iter(state_dict), None)
    raise TorchImportError(
        f"{path} is not the authors' generator: none of its {len(state_dict)} keys (first: "
        f"{first}) is in their layout, which starts with gen.0.0.weight."
    )
  return size


def check_layout(state_dict: dict, expected: dict, path: str, size: int) -> None:
  """One line about the first missing key, extra key or wrong shape."""
  layout = f"the authors' {size}×{size} layout"
  for key, (_, shape) in expected.items():
    if key not in state_dict:
      raise TorchImportError(f"{path}: missing key {key} (expected shape {shape} in {layout}).")
    if tuple(state_dict[key].shape) != shape:
      raise TorchImportError(
          f"{path}: {key} has shape {tuple(state_dict[key].shape)}, {layout} expects {shape}."
      )
  for key in state_dict:
    if key not in expected:
      raise TorchImportError(f"{path}: unexpected key {key} ({layout} has no such key).")


def check_finite(state_dict: dict, path: str) -> None:
  """`untrusted.check_finite` of the tensors (a NaN weight would sample black images)."""
  try:
    untrusted.check_finite(
        state_dict, path, "the file is damaged or not a trained generator; nothing was imported"
    )
  except untrusted.UntrustedFileError as e:
    raise TorchImportError(str(e)) from None


def imported_variables(state_dict: dict, expected: dict) -> dict:
  """{'params': …, 'batch_stats': …} of the generator, float32, kernels OIHW → HWIO (a
  transpose, no flip: both frameworks compute cross-correlation)."""
  variables = {}
  for key, (path, _) in expected.items():
    if not path:
      continue
    value = np.asarray(state_dict[key], np.float32)
    if value.ndim == 4:
      value = value.transpose(2, 3, 1, 0)
    node = variables
    for name in path[:-1]:
      node = node.setdefault(name, {})
    node[path[-1]] = value
  return variables


def import_file(path: str, workdir: str, config) -> tuple[int, str]:
  """Writes the checkpoint; returns (image size, checkpoint directory)."""
  try:  # a new run directory: nothing of the user's is mixed into it (before the file is read)
    storage.check_new_folder(os.fspath(workdir), what="--workdir")
  except storage.StorageError as e:
    raise TorchImportError(str(e)) from None
  state_dict = read_state_dict(path)
  size = infer_image_size(state_dict, config, path)
  config = import_config(config, size)
  gan = ts.wgangp_from_config(config, len(AUTHORS_CLASSES))
  expected = expected_keys(gan)
  check_layout(state_dict, expected, path, size)
  check_finite(state_dict, path)
  variables = imported_variables(state_dict, expected)

  try:
    manager = checkpointing.make_manager(workdir)
  except OSError as e:
    raise TorchImportError(
        f"cannot create {workdir} ({e.strerror}): choose a writable --workdir."
    ) from None
  try:
    if manager.all_steps():
      raise TorchImportError(
          f"{workdir} already has checkpoints (steps {sorted(manager.all_steps())}): choose a "
          f"new --workdir; nothing was overwritten."
      )
    mesh = mesh_lib.make_mesh()
    state = ts.init_state(gan, jax.random.key(config.seed), mesh)  # the critic stays random
    params = jax.device_put(variables["params"], mesh_lib.replicated(mesh))
    state = state.replace(
        step=jnp.asarray(IMPORTED_STEP, jnp.int32),
        g_params=params,
        ema_params=params,
        g_batch_stats=jax.device_put(variables["batch_stats"], mesh_lib.replicated(mesh)),
        g_opt_state=gan.g_tx.init(params),
    )
    metadata = checkpointing.make_metadata(config, AUTHORS_CLASSES)
    metadata["imported_generator"] = {
        "file": os.path.basename(path),
        "sha256": storage.file_sha256(path),
        "source": AUTHORS_REPOSITORY,
        "critic": "not published by the authors: randomly initialised, never trained",
    }
    # The `generator` item is what sampling reads; `state` (with the random critic) is what a
    # `--config.train.fresh_critic=True` run resumes from.
    checkpointing.save(manager, IMPORTED_STEP, ts.checkpoint_items(state), metadata, force=True)
    manager.wait_until_finished()
  finally:
    manager.close()
  return size, checkpointing.checkpoint_dir(workdir)
