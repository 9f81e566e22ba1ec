"""The CWGAN-GP_128 generator and its Wasserstein critic, as pure Flax linen modules (NHWC).

Generator (the original, yisaienkov/this_flower_does_not_exist_demo, translated from NCHW):
z (z_dim) ++ one-hot label → a 1×1 image → Conv 4×4 (padding 3) → 4×4 with 4·width channels, then
×2 stages until `image_size`, each an upsample followed by Conv 3×3 → BatchNorm → ReLU blocks:

    stage 1 (8²):    4w → 2w                 (1 block)
    stage 2 (16²):   2w → 2w, 2w → 2w        (2 blocks)
    stage 3 (32²):   2w → w,  w → w          (2 blocks)
    stage 4+ (64²…): w → w,   w → w          (2 blocks each)

then Conv 3×3 → 3 channels and tanh. With image_size=128, z_dim=64, width=64 and two classes
this is exactly the original layer list, 1,123,011 parameters (weights, biases, BatchNorm scale
and shift). Smaller/larger images drop/add stages at the tail; `image_size` must be a power of
two ≥ 8.

Initialisation: PyTorch's default for Conv/Linear (what the original trained with): kernels
U(±1/√fan_in), i.e. variance_scaling(1/3, fan_in, uniform); biases zero (PyTorch draws them
from the same range; the difference is immaterial for training and zero keeps `init` simple);
BatchNorm scale 1, shift 0, momentum 0.1 and eps 1e-5 as in PyTorch.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from flowergan import ops

Dtype = Any
ModuleDef = Any

# PyTorch's default Conv/Linear weight init: kaiming_uniform(a=√5) == U(±1/√fan_in).
torch_default_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def num_upsample_stages(image_size: int) -> int:
  """Number of ×2 stages from the 4×4 seed to `image_size` (a power of two ≥ 8)."""
  if image_size < 8 or image_size & (image_size - 1):
    raise ValueError(
        f"image_size must be a power of two >= 8 (e.g. 32, 64, 128, 256), got {image_size}."
    )
  return int(math.log2(image_size)) - 2


def generator_stage_channels(image_size: int, width: int) -> list[list[int]]:
  """Output channels of each conv block, stage by stage (see the module docstring)."""
  stages = []
  for i in range(num_upsample_stages(image_size)):
    if i == 0:
      stages.append([2 * width])
    elif i == 1:
      stages.append([2 * width, 2 * width])
    else:
      stages.append([width, width])
  return stages


def upsample2x_bilinear(x: jax.Array) -> jax.Array:
  """×2 bilinear upsampling of NHWC images, identical to PyTorch's align_corners=False.

  With half-pixel centres each output pixel mixes its source pixel (3/4) with the neighbour on
  its side (1/4), clamped at the border; written with slices instead of jax.image.resize so that
  XLA sees two cheap fused stencils rather than dense resize matrices.
  """

  def along(x, axis):
    n = x.shape[axis]
    take = lambda start, stop: jax.lax.slice_in_dim(x, start, stop, axis=axis)
    prev = jnp.concatenate([take(0, 1), take(0, n - 1)], axis=axis)
    nxt = jnp.concatenate([take(1, n), take(n - 1, n)], axis=axis)
    even = 0.75 * x + 0.25 * prev
    odd = 0.75 * x + 0.25 * nxt
    out = jnp.stack([even, odd], axis=axis + 1)
    shape = list(x.shape)
    shape[axis] = 2 * n
    return out.reshape(shape)

  return along(along(x, 1), 2)


PADDINGS = ("zeros", "reflect")  # `Generator.padding`: how its 3×3 convolutions see the border


def reflect_pad1(x: jax.Array) -> jax.Array:
  """NHWC images padded by one pixel on each side with their reflection (PyTorch's
  padding_mode='reflect': the pad copies the row or column next to the edge), written with
  slices as `upsample2x_bilinear` is, so that every exporter handles it."""

  def along(x, axis):
    n = x.shape[axis]
    take = lambda start: jax.lax.slice_in_dim(x, start, start + 1, axis=axis)
    return jnp.concatenate([take(min(1, n - 1)), x, take(max(n - 2, 0))], axis=axis)

  return along(along(x, 1), 2)


def conv_padded(conv: nn.Module, x: jax.Array, mode: str) -> jax.Array:
  """`conv` (a 3×3 conv with padding 1) of `x`, padding the border by `mode`: 'zeros' is the
  conv itself (the original); 'reflect' reflect-pads `x` by one pixel and drops the outputs
  that saw the conv's zeros. That equals an unpadded conv of the reflect-padded input, but
  keeps the padded conv: XLA:CPU runs an unpadded one with its gradients 2–3× slower
  (docs/demo_quality.md)."""
  if mode not in PADDINGS:
    raise ValueError(f"padding must be one of {', '.join(PADDINGS)}, got {mode!r}.")
  if mode == "zeros":
    return conv(x)
  return conv(reflect_pad1(x))[:, 1:-1, 1:-1, :]


class ConvBlock(nn.Module):
  """Conv → BatchNorm → ReLU, the original generator's block (3×3 convs, or the 4×4 seed conv,
  or a stride-2 transposed 4×4 conv for upsample='transpose').

  Attributes:
    conv: the convolution module (`nn.Conv` or a partial of it, see `Generator`); unused with
      `transpose`, which is always XLA's own `nn.ConvTranspose`.
    padding_mode: 'zeros' (the original) or 'reflect' (3×3 convs only, see `Generator`).
  """

  features: int
  kernel_size: int = 3
  padding: int | str = 1
  transpose: bool = False
  dtype: Dtype = jnp.float32
  conv: ModuleDef = nn.Conv
  padding_mode: str = "zeros"

  @nn.compact
  def __call__(self, x, train: bool):
    k = (self.kernel_size, self.kernel_size)
    if self.transpose:
      conv = nn.ConvTranspose(
          self.features,
          k,
          strides=(2, 2),
          padding="SAME",
          kernel_init=torch_default_init,
          dtype=self.dtype,
          name="conv",
      )
      x = conv(x)
    else:
      conv = self.conv(
          self.features,
          k,
          padding=self.padding,
          kernel_init=torch_default_init,
          dtype=self.dtype,
          name="conv",
      )
      # The seed conv (1×1 → 4×4, padding 3) pads only zeros: nothing there to reflect.
      x = conv(x) if self.kernel_size != 3 else conv_padded(conv, x, self.padding_mode)
    x = nn.BatchNorm(
        use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=self.dtype, name="bn"
    )(x)
    return nn.relu(x)


def pre_batchnorm_bias_mask(params):
  """True for the conv biases that feed a BatchNorm (kept for the original's parameter count).

  BatchNorm subtracts the batch mean, so these biases have exactly zero gradient; in float
  arithmetic the gradient is rounding noise, which Adam would scale up to ±lr steps. The
  optimiser freezes them: the function computed is unchanged and training no longer depends on
  rounding (e.g. on the device count).
  """

  def is_pre_bn_bias(path, _):
    keys = [getattr(p, "key", None) for p in path]
    return len(keys) >= 3 and keys[-3].startswith("block_") and keys[-2:] == ["conv", "bias"]

  return jax.tree_util.tree_map_with_path(is_pre_bn_bias, params)


class Generator(nn.Module):
  """Conditional generator: (z, labels) → images in [-1, 1], shape (N, S, S, 3); labels are
  integer classes (N,) or class weights (N, num_classes) (see `class_weights`).

  Attributes:
    image_size: output resolution, a power of two ≥ 8.
    num_classes: number of classes (from the data).
    width: the original's hidden_dim (64).
    upsample: 'bilinear' (the paper's choice) or 'transpose' (stride-2 transposed 4×4 convs in
      place of upsample + first conv of a stage; the design the paper replaced because of
      checkerboard artefacts).
    dtype: computation dtype (parameters stay float32).
    conv: the convolution module of the (non-transposed) convolutions: `nn.Conv` (XLA's own),
      or `functools.partial(nn.Conv, conv_general_dilated=fn)` with a formulation from
      `flowergan.ops` (same parameters, same function; `build_models` picks it from the config).
    padding: how the 3×3 convolutions pad the border: 'zeros' (the original) or 'reflect'
      (the demo variant's: with zeros its few hundred steps leave a dark frame, docs/demo_quality.md).
      The same parameters either way; the 4×4 seed conv on the 1×1 input always pads zeros.
  """

  image_size: int = 128
  num_classes: int = 2
  width: int = 64
  upsample: str = "bilinear"
  dtype: Dtype = jnp.float32
  conv: ModuleDef = nn.Conv
  padding: str = "zeros"

  def class_weights(self, labels, dtype) -> jax.Array:
    """The class input: one-hot of integer `labels` (N,), or `labels` itself when it is already
    (N, num_classes) weights, e.g. a blend of two one-hots for a class morph. A one-hot row of
    weights is the same input as its integer label, so it gives the same image."""
    if labels.ndim == 2:
      if labels.shape[-1] != self.num_classes:
        raise ValueError(
            f"class weights must be (N, {self.num_classes}), got shape {labels.shape}."
        )
      return labels.astype(dtype)
    return jax.nn.one_hot(labels, self.num_classes, dtype=dtype)

  @nn.compact
  def __call__(self, z, labels, train: bool = True):
    if self.upsample not in ("bilinear", "transpose"):
      raise ValueError(f"upsample must be 'bilinear' or 'transpose', got {self.upsample!r}.")
    x = jnp.concatenate([z, self.class_weights(labels, z.dtype)], axis=-1)[:, None, None, :]
    # 1×1 → 4×4: PyTorch Conv2d(k=4, padding=3) on a 1×1 input.
    x = ConvBlock(
        4 * self.width,
        kernel_size=4,
        padding=3,
        dtype=self.dtype,
        conv=self.conv,
        name="block_0",
    )(x, train)
    index = 1
    for stage in generator_stage_channels(self.image_size, self.width):
      for j, features in enumerate(stage):
        transpose = j == 0 and self.upsample == "transpose"
        if j == 0 and not transpose:
          x = upsample2x_bilinear(x)
        x = ConvBlock(
            features,
            kernel_size=4 if transpose else 3,
            transpose=transpose,
            dtype=self.dtype,
            conv=self.conv,
            padding_mode=self.padding,
            name=f"block_{index}",
        )(x, train)
        index += 1
    to_rgb = self.conv(
        3, (3, 3), padding=1, kernel_init=torch_default_init, dtype=self.dtype, name="to_rgb"
    )
    x = conv_padded(to_rgb, x, self.padding)
    return jnp.tanh(x.astype(jnp.float32))


def critic_channels(image_size: int, width: int) -> list[int]:
  """Channels of the stride-2 blocks from `image_size` down to 4×4: w, 2w, 4w, 4w, 8w, 8w, …"""
  multipliers = [1, 2, 4, 4, 8]
  n = num_upsample_stages(image_size)
  return [width * multipliers[min(i, len(multipliers) - 1)] for i in range(n)]


class Critic(nn.Module):
  """Conditional Wasserstein critic: (images, integer labels) → one score per image, shape (N,).

  Conv 4×4 stride 2 + LeakyReLU(0.2) blocks down to 4×4, then a linear score of the flattened
  4×4 features (the same as a 4×4 valid conv). No BatchNorm: the gradient penalty is per sample.

  Attributes:
    conditioning: 'projection' (Miyato & Koyama 2018: score = ⟨w + embed(y), φ(x)⟩ + b) or
      'concat' (one-hot label channels appended to the input image).
    normalization: 'none' or 'layernorm' (per sample over H, W, C, after every conv but the first).
    conv: the convolution module: `nn.Conv` (XLA's own), or
      `functools.partial(nn.Conv, conv_general_dilated=fn)` with a formulation from
      `flowergan.ops` (same parameters, same function; `build_models` picks it from the config).
  """

  image_size: int = 128
  num_classes: int = 2
  width: int = 64
  conditioning: str = "projection"
  normalization: str = "none"
  conv: ModuleDef = nn.Conv
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, images, labels):
    if self.conditioning not in ("projection", "concat"):
      raise ValueError(f"conditioning must be 'projection' or 'concat', got {self.conditioning!r}.")
    if self.normalization not in ("none", "layernorm"):
      raise ValueError(f"normalization must be 'none' or 'layernorm', got {self.normalization!r}.")
    x = images.astype(self.dtype)
    if self.conditioning == "concat":
      onehot = jax.nn.one_hot(labels, self.num_classes, dtype=x.dtype)
      x = jnp.concatenate(
          [x, jnp.broadcast_to(onehot[:, None, None, :], x.shape[:3] + (self.num_classes,))],
          axis=-1,
      )
    for i, features in enumerate(critic_channels(self.image_size, self.width)):
      x = self.conv(
          features,
          (4, 4),
          strides=(2, 2),
          padding=1,
          kernel_init=torch_default_init,
          dtype=self.dtype,
      )(x)
      if i > 0 and self.normalization == "layernorm":
        x = nn.LayerNorm(
            reduction_axes=(-3, -2, -1), feature_axes=(-3, -2, -1), epsilon=1e-5, dtype=self.dtype
        )(x)
      x = nn.leaky_relu(x, 0.2)
    features = x.reshape((x.shape[0], -1))
    score = nn.Dense(1, kernel_init=torch_default_init, dtype=self.dtype)(features)[:, 0]
    if self.conditioning == "projection":
      embed = nn.Embed(
          self.num_classes,
          features.shape[-1],
          embedding_init=nn.initializers.normal(0.02),
          dtype=self.dtype,
      )(labels)
      score = score + jnp.sum(embed * features, axis=-1)
    return score.astype(jnp.float32)


def count_params(variables) -> int:
  """Number of scalars in `params` (and BatchNorm's scale/shift, which live there in Flax)."""
  return sum(x.size for x in jax.tree_util.tree_leaves(variables["params"]))


def conv_module(impl: str, *, role: str) -> ModuleDef:
  """`nn.Conv` computed by the formulation `impl` names (see `ops.resolve_conv`; 'auto' is
  resolved here, for the backend JAX runs on now)."""
  fn = ops.resolve_conv(impl, role=role)
  return nn.Conv if fn is None else _conv_computed_by(fn)


@functools.cache
def _conv_computed_by(conv_general_dilated) -> ModuleDef:
  # One partial per function, so that models built from equal configs compare equal and hash
  # alike (as modules do for jit's static arguments), as when the choice was a string field.
  return functools.partial(nn.Conv, conv_general_dilated=conv_general_dilated)


def compute_dtype(name: str) -> Dtype:
  """`config.train.dtype` ('float32' or 'bfloat16') as a dtype."""
  dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}.get(name)
  if dtype is None:
    raise ValueError(f"config.train.dtype must be 'float32' or 'bfloat16', got {name!r}.")
  return dtype


def build_generator(
    model_config, *, image_size: int, num_classes: int, dtype: Dtype = jnp.float32
) -> Generator:
  """The generator described by `config.model` (all that sampling needs)."""
  return Generator(
      image_size=image_size,
      num_classes=num_classes,
      width=model_config.width,
      upsample=model_config.upsample,
      dtype=dtype,
      conv=conv_module(model_config.generator_conv, role="generator"),
      padding=model_config.generator_padding,
  )


def build_models(
    model_config, *, image_size: int, num_classes: int, dtype: Dtype = jnp.float32
) -> tuple[Generator, Critic]:
  """The generator and critic described by `config.model`.

  Configs stored with older checkpoints lack `generator_conv` and `critic_conv`; they get the
  default 'auto' (`default_config.from_stored`): the choice changes only speed, not the
  function or the parameters.
  """
  return (
      build_generator(model_config, image_size=image_size, num_classes=num_classes, dtype=dtype),
      Critic(
          image_size=image_size,
          num_classes=num_classes,
          width=model_config.critic_width,
          conditioning=model_config.conditioning,
          normalization=model_config.critic_normalization,
          conv=conv_module(model_config.critic_conv, role="critic"),
          dtype=dtype,
      ),
  )
