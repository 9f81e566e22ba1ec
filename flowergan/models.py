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
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any

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


class ConvBlock(nn.Module):
  """Conv → BatchNorm → ReLU, the original generator's block (3×3 convs, or the 4×4 seed conv,
  or a stride-2 transposed 4×4 conv for upsample='transpose')."""

  features: int
  kernel_size: int = 3
  padding: int | str = 1
  transpose: bool = False
  dtype: Dtype = jnp.float32
  conv_general_dilated: Any = None

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
    else:
      conv = nn.Conv(
          self.features,
          k,
          padding=self.padding,
          kernel_init=torch_default_init,
          dtype=self.dtype,
          name="conv",
          conv_general_dilated=self.conv_general_dilated,
      )
    x = conv(x)
    x = nn.BatchNorm(
        use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=self.dtype, name="bn"
    )(x)
    return nn.relu(x)


def resolve_conv_impl(conv_impl: str, choices: Sequence[str], *, on_cpu: str) -> str:
  """`conv_impl` checked; 'auto' → `on_cpu` on the CPU backend (the formulations exist for
  XLA:CPU's slow convolution derivatives), 'lax' on GPU/TPU."""
  if conv_impl == "auto":
    return on_cpu if jax.default_backend() == "cpu" else "lax"
  if conv_impl not in choices:
    raise ValueError(f"conv_impl must be one of {('auto', *choices)}, got {conv_impl!r}.")
  return conv_impl


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
    conv_impl: how the convolutions are computed (same parameters, same function): 'dots'
      (`dots_conv_general_dilated`: large layers' kernel gradients and the thin output layer
      as dots; faster on XLA:CPU), 'lax' (XLA's own convolutions), or 'auto' (the first on
      CPU, the second on GPU/TPU).
  """

  image_size: int = 128
  num_classes: int = 2
  width: int = 64
  upsample: str = "bilinear"
  dtype: Dtype = jnp.float32
  conv_impl: str = "auto"

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
    conv_impl = resolve_conv_impl(self.conv_impl, ("lax", "dots"), on_cpu="dots")
    conv_fn = dots_conv_general_dilated if conv_impl == "dots" else None
    x = jnp.concatenate([z, self.class_weights(labels, z.dtype)], axis=-1)[:, None, None, :]
    # 1×1 → 4×4: PyTorch Conv2d(k=4, padding=3) on a 1×1 input.
    x = ConvBlock(4 * self.width, kernel_size=4, padding=3, dtype=self.dtype, name="block_0")(
        x, train
    )
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
            name=f"block_{index}",
            conv_general_dilated=conv_fn,
        )(x, train)
        index += 1
    x = nn.Conv(
        3,
        (3, 3),
        padding=1,
        kernel_init=torch_default_init,
        dtype=self.dtype,
        name="to_rgb",
        conv_general_dilated=conv_fn,
    )(x)
    return jnp.tanh(x.astype(jnp.float32))


def im2col_conv_general_dilated(
    lhs,
    rhs,
    window_strides,
    padding,
    lhs_dilation=None,
    rhs_dilation=None,
    dimension_numbers=None,
    feature_group_count=1,
    batch_group_count=1,
    precision=None,
    preferred_element_type=None,
):
  """`lax.conv_general_dilated` for NHWC inputs and HWIO kernels as im2col + one matmul.

  The same sum as the convolution: the kh·kw strided windows of the padded input are
  concatenated along channels in (row, column, channel) order, which is the order of the
  kernel's reshape to (kh·kw·C_in, C_out), and multiplied by it. Only the order of the
  additions differs (float rounding, ~1e-7 relative).

  Why: XLA:CPU runs the derivatives of the critic's stride-2 convolutions badly. The gradient
  penalty differentiates the critic twice, and its second derivative contains transposed
  (input-dilated, `lhs_dilate=2x2`) convolutions and kernel-gradient convolutions with a
  stride-dilated, reversed window over the whole image and non-NHWC dimension labels
  (`rhs_dilate=2x2 rhs_reversal=1x1, dim_labels=01fb_o01i->f01b`); the latter fall back to
  XLA's generic loop emitter. Written as slices + a dot, every derivative of every order is
  again slices/pads (cheap, fused) and dots, which XLA:CPU runs as tuned matmuls.

  Anything else than NHWC/HWIO, one group, no dilation goes to `lax.conv_general_dilated`.
  """
  if not _is_plain_nhwc_conv(
      lhs,
      rhs,
      lhs_dilation,
      rhs_dilation,
      dimension_numbers,
      feature_group_count,
      batch_group_count,
  ):
    return jax.lax.conv_general_dilated(
        lhs,
        rhs,
        window_strides,
        padding,
        lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation,
        dimension_numbers=dimension_numbers,
        feature_group_count=feature_group_count,
        batch_group_count=batch_group_count,
        precision=precision,
        preferred_element_type=preferred_element_type,
    )
  n, h, w, c = lhs.shape
  kh, kw, _, features = rhs.shape
  sh, sw = window_strides
  if isinstance(padding, str):
    padding = jax.lax.padtype_to_pads((h, w), (kh, kw), window_strides, padding)
  (pt, pb), (pl, pr) = padding
  low_precision = (
      preferred_element_type is None
      and lhs.dtype == rhs.dtype
      and lhs.dtype in (jnp.bfloat16, jnp.float16)
  )
  # bf16/f16: the window copies (and, in the backward pass, their sum) in float32 (exact:
  # copies, and sums of cotangents JAX would also form in float32); XLA:CPU's bf16 fusions of
  # these are several times slower than its float32 ones.
  x = lhs.astype(jnp.float32) if low_precision else lhs
  x = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
  oh = (h + pt + pb - kh) // sh + 1
  ow = (w + pl + pr - kw) // sw + 1
  windows = [
      jax.lax.slice(
          x, (0, i, j, 0), (n, i + (oh - 1) * sh + 1, j + (ow - 1) * sw + 1, c), (1, sh, sw, 1)
      )
      for i in range(kh)
      for j in range(kw)
  ]
  patches = windows[0] if len(windows) == 1 else jnp.concatenate(windows, axis=-1)
  kernel = rhs.reshape(kh * kw * c, features)
  if low_precision:
    patches = patches.astype(lhs.dtype).reshape(n * oh * ow, kh * kw * c)
    return matmul_f32_accumulate(patches, kernel).reshape(n, oh, ow, features)
  return jax.lax.dot_general(
      patches,
      kernel,
      (((3,), (0,)), ((), ())),
      precision=precision,
      preferred_element_type=preferred_element_type,
  )


def _is_plain_nhwc_conv(
    lhs, rhs, lhs_dilation, rhs_dilation, dimension_numbers, feature_group_count, batch_group_count
) -> bool:
  """NHWC input, HWIO kernel, NHWC output, one group, no dilation."""
  nd = lhs.ndim - 2
  return (
      lhs.ndim == 4
      and feature_group_count == 1
      and batch_group_count == 1
      and all(d == 1 for d in (lhs_dilation or (1,) * nd))
      and all(d == 1 for d in (rhs_dilation or (1,) * nd))
      and jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
      == jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, ("NHWC", "HWIO", "NHWC"))
  )


def _nhwc_conv(x, kernel, padding, precision, preferred_element_type):
  return jax.lax.conv_general_dilated(
      x,
      kernel,
      (1, 1),
      padding,
      dimension_numbers=("NHWC", "HWIO", "NHWC"),
      precision=precision,
      preferred_element_type=preferred_element_type,
  )


def conv_kernel_grad_by_matmul(x, g, kernel_shape, padding):
  """The kernel cotangent of a stride-1 NHWC/HWIO convolution with explicit `padding`, as a dot.

  d kernel[i, j] = Σ_{n,h,w} x_pad[n, h+i, w+j, :] ⊗ g[n, h, w, :]. With r = h + i running
  over x_pad's rows: Σ_{n,r,w} x_pad[n, r, w+j, :] ⊗ g[n, r-i, w, :]. So the kw column-shifted
  copies of x_pad (concatenated on channels) times the kh row-shifted copies of g (zero
  outside) give every (i, j) block in one dot of (kw·C_in)×(kh·C_out), with no wasted
  products; batched over n and summed (a single contraction over n·r·w ran ~3× slower on
  XLA:CPU). Accumulates in float32.
  """
  kh, kw, c, d = kernel_shape
  n, oh, ow, _ = g.shape
  (pt, pb), (pl, pr) = padding
  xp = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
  hp = xp.shape[1]  # = oh + kh - 1 at stride 1
  x_cols = jnp.concatenate([xp[:, :, j : j + ow, :] for j in range(kw)], axis=-1)
  g_rows = jnp.concatenate(
      [jnp.pad(g, ((0, 0), (i, hp - oh - i), (0, 0), (0, 0))) for i in range(kh)], axis=-1
  )
  out = jnp.einsum(
      "nkc,nkd->ncd",
      x_cols.reshape(n, hp * ow, kw * c),
      g_rows.reshape(n, hp * ow, kh * d),
      preferred_element_type=jnp.float32,
  )
  # (j, c) × (i, d) → (i, j, c, d)
  return out.sum(0).reshape(kw, c, kh, d).transpose(2, 0, 1, 3)


# Where conv_kernel_grad_by_matmul beats XLA:CPU's kernel-gradient convolution (batch 16, 2
# cores; `python -m benchmarks.bench --conv_layers`): 128×128 64→64 0.44 s vs 0.87 s; at 64×64
# about even; at 32×32 and below, or with a 3-channel output, XLA's own was 2-7× faster when
# measured alone.
MATMUL_KERNEL_GRAD_MIN_PIXELS = 128 * 128
MATMUL_KERNEL_GRAD_MIN_FEATURES = 16


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv_matmul_kernel_grad(x, kernel, padding, precision, preferred_element_type):
  return _nhwc_conv(x, kernel, padding, precision, preferred_element_type)


def _conv_matmul_kernel_grad_fwd(x, kernel, padding, precision, preferred_element_type):
  return _nhwc_conv(x, kernel, padding, precision, preferred_element_type), (x, kernel)


def _conv_matmul_kernel_grad_bwd(padding, precision, preferred_element_type, res, g):
  x, kernel = res
  _, input_vjp = jax.vjp(
      lambda x: _nhwc_conv(x, kernel, padding, precision, preferred_element_type), x
  )
  (dx,) = input_vjp(g)
  return dx, conv_kernel_grad_by_matmul(x, g, kernel.shape, padding).astype(kernel.dtype)


_conv_matmul_kernel_grad.defvjp(_conv_matmul_kernel_grad_fwd, _conv_matmul_kernel_grad_bwd)


def thin_conv_by_taps(x, kernel, padding, precision=None, preferred_element_type=None):
  """A stride-1 NHWC/HWIO convolution with few outputs (kh·kw·C_out small, e.g. to_rgb) as one
  dot and a shifted sum: z = x @ [W_00 … W_ij …] gives every tap's contribution at once, and
  y[h, w] = Σ_ij z_ij[h + i - pt, w + j - pl]. Differentiated by JAX (dots, pads, slices).
  XLA:CPU, 128×128 64→3 batch 16 (`python -m benchmarks.bench --conv_layers`): forward 0.033 s
  vs 0.069 s, kernel gradient 0.057 s vs 0.087 s, input gradient 0.039 s vs 0.054 s."""
  kh, kw, c, d = kernel.shape
  n, h, w, _ = x.shape
  (pt, pb), (pl, pr) = padding
  taps = kernel.transpose(2, 0, 1, 3).reshape(c, kh * kw * d)  # columns in (i, j, d) order
  z = jnp.einsum(
      "nhwc,ct->nhwt", x, taps, precision=precision, preferred_element_type=preferred_element_type
  )
  z = jnp.pad(z, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
  oh, ow = h + pt + pb - kh + 1, w + pl + pr - kw + 1
  out = None
  for i in range(kh):
    for j in range(kw):
      t = (i * kw + j) * d
      tap = z[:, i : i + oh, j : j + ow, t : t + d]
      out = tap if out is None else out + tap
  return out


# Outputs per input pixel (kh·kw·C_out) up to which thin_conv_by_taps is used.
THIN_CONV_MAX_TAPS = 32


def dots_conv_general_dilated(
    lhs,
    rhs,
    window_strides,
    padding,
    lhs_dilation=None,
    rhs_dilation=None,
    dimension_numbers=None,
    feature_group_count=1,
    batch_group_count=1,
    precision=None,
    preferred_element_type=None,
    *,
    min_pixels=MATMUL_KERNEL_GRAD_MIN_PIXELS,
    min_features=MATMUL_KERNEL_GRAD_MIN_FEATURES,
    max_thin_taps=THIN_CONV_MAX_TAPS,
):
  """`lax.conv_general_dilated` with the parts XLA:CPU runs slowly done as dots; the same sums.

  * Thin convolutions (kh·kw·C_out ≤ `max_thin_taps`, e.g. the 3-channel output layer):
    `thin_conv_by_taps`.
  * Otherwise the forward pass and the input gradient are XLA's own convolutions, and the
    kernel cotangent of layers with at least `min_pixels` output pixels and `min_features`
    output channels is one dot (`conv_kernel_grad_by_matmul`): XLA:CPU computes it as a
    convolution whose window is the whole image, about 2× slower at 128×128.
  Used for the generator, whose convolutions are differentiated once. Anything but a stride-1
  NHWC/HWIO convolution goes to `lax.conv_general_dilated`.
  """
  if any(s != 1 for s in window_strides) or not _is_plain_nhwc_conv(
      lhs,
      rhs,
      lhs_dilation,
      rhs_dilation,
      dimension_numbers,
      feature_group_count,
      batch_group_count,
  ):
    return jax.lax.conv_general_dilated(
        lhs,
        rhs,
        window_strides,
        padding,
        lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation,
        dimension_numbers=dimension_numbers,
        feature_group_count=feature_group_count,
        batch_group_count=batch_group_count,
        precision=precision,
        preferred_element_type=preferred_element_type,
    )
  if isinstance(padding, str):
    padding = jax.lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], window_strides, padding)
  padding = tuple(tuple(int(p) for p in pad) for pad in padding)
  kh, kw, _, features = rhs.shape
  if kh * kw * features <= max_thin_taps:
    return thin_conv_by_taps(lhs, rhs, padding, precision, preferred_element_type)
  (pt, pb), (pl, pr) = padding
  out_pixels = (lhs.shape[1] + pt + pb - kh + 1) * (lhs.shape[2] + pl + pr - kw + 1)
  if out_pixels >= min_pixels and features >= min_features:
    return _conv_matmul_kernel_grad(lhs, rhs, padding, precision, preferred_element_type)
  # Small layers: XLA's own kernel gradient is faster.
  return _nhwc_conv(lhs, rhs, padding, precision, preferred_element_type)


# Contracting dimensions of a 2-D product: "nn" = a @ b, "nt" = a @ b.T, "tn" = a.T @ b.
_FORMS = {"nn": ((1,), (0,)), "nt": ((1,), (1,)), "tn": ((0,), (0,))}


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _matmul_acc(a, b, form):
  return jax.lax.dot_general(
      a, b, (_FORMS[form], ((), ())), preferred_element_type=jnp.float32
  ).astype(a.dtype)


def _matmul_acc_fwd(a, b, form):
  return _matmul_acc(a, b, form), (a, b)


def _matmul_acc_bwd(form, res, g):
  a, b = res
  g = g.astype(a.dtype)  # exact: the primal output, hence its cotangent, is in a.dtype
  if form == "nn":  # y = a b
    return _matmul_acc(g, b, "nt"), _matmul_acc(a, g, "tn")
  if form == "nt":  # y = a bᵀ
    return _matmul_acc(g, b, "nn"), _matmul_acc(g, a, "tn")
  return _matmul_acc(b, g, "nt"), _matmul_acc(a, g, "nn")  # "tn": y = aᵀ b


_matmul_acc.defvjp(_matmul_acc_fwd, _matmul_acc_bwd)


def matmul_f32_accumulate(a: jax.Array, b: jax.Array) -> jax.Array:
  """a @ b for 2-D bfloat16/float16 operands, accumulated in float32 and rounded once to the
  operands' dtype, in the forward pass and in the backward products of every order.

  The same values as a plain low-precision dot (XLA accumulates those in float32 too), and
  the backward products see the same operands as JAX's default rule, whose float32 cotangent
  only ever holds values of the output dtype. Why: XLA:CPU (YNNPACK) runs bf16×bf16→f32
  matmuls about 3× faster than bf16×bf16→bf16, and the default rule's mixed f32×bf16
  backward products at float32 speed (measured on this AVX512-BF16 CPU: 201, 62 and 105
  GFLOP/s).
  """
  return _matmul_acc(a, b, "nn")


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
    conv_impl: how the convolutions are computed, the same parameters and the same function
      either way: 'im2col' (strided slices + one matmul, `im2col_conv_general_dilated`; the
      fast one under the gradient penalty's double backward on XLA:CPU) or 'lax' (plain
      `lax.conv_general_dilated`), or 'auto' (im2col on CPU, lax on GPU/TPU, where the
      double backward of plain convolutions runs on cuDNN / the TPU's convolution units).
  """

  image_size: int = 128
  num_classes: int = 2
  width: int = 64
  conditioning: str = "projection"
  normalization: str = "none"
  conv_impl: str = "auto"
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, images, labels):
    if self.conditioning not in ("projection", "concat"):
      raise ValueError(f"conditioning must be 'projection' or 'concat', got {self.conditioning!r}.")
    if self.normalization not in ("none", "layernorm"):
      raise ValueError(f"normalization must be 'none' or 'layernorm', got {self.normalization!r}.")
    conv_impl = resolve_conv_impl(self.conv_impl, ("lax", "im2col"), on_cpu="im2col")
    conv_fn = im2col_conv_general_dilated if conv_impl == "im2col" else None
    x = images.astype(self.dtype)
    if self.conditioning == "concat":
      onehot = jax.nn.one_hot(labels, self.num_classes, dtype=x.dtype)
      x = jnp.concatenate(
          [x, jnp.broadcast_to(onehot[:, None, None, :], x.shape[:3] + (self.num_classes,))],
          axis=-1,
      )
    for i, features in enumerate(critic_channels(self.image_size, self.width)):
      x = nn.Conv(
          features,
          (4, 4),
          strides=(2, 2),
          padding=1,
          kernel_init=torch_default_init,
          dtype=self.dtype,
          conv_general_dilated=conv_fn,
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


def build_models(
    model_config, *, image_size: int, num_classes: int, dtype: Dtype = jnp.float32
) -> tuple[Generator, Critic]:
  """The generator and critic described by `config.model`."""
  return (
      Generator(
          image_size=image_size,
          num_classes=num_classes,
          width=model_config.width,
          upsample=model_config.upsample,
          dtype=dtype,
      ),
      Critic(
          image_size=image_size,
          num_classes=num_classes,
          width=model_config.critic_width,
          conditioning=model_config.conditioning,
          normalization=model_config.critic_normalization,
          dtype=dtype,
      ),
  )
