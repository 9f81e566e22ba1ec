"""`lax.conv_general_dilated` drop-ins that XLA:CPU runs faster: the same sums, written as dots.

The two `*_conv_general_dilated` functions take `lax.conv_general_dilated`'s arguments, so
either can be given to `nn.Conv(conv_general_dilated=...)`. Convolutions they were not written
for (layouts other
than NHWC/HWIO, groups, dilation; strides for `dots_conv_general_dilated`) go to
`lax.conv_general_dilated` unchanged.

* `im2col_conv_general_dilated` (the critic): strided slices + one matmul, so that every
  derivative of every order, including the gradient penalty's double backward, is slices and
  dots.
* `dots_conv_general_dilated` (the generator, differentiated once): XLA's own forward
  convolution and input gradient; the kernel gradient of large layers
  (`conv_kernel_grad_by_matmul`) and thin layers such as the 3-channel output
  (`thin_conv_by_taps`) as dots.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from flowergan.ops.matmul import matmul_f32_accumulate


def _lax_for_other_convolutions(*, strided: bool):
  """Gives a formulation `lax.conv_general_dilated`'s signature; it computes plain NHWC/HWIO
  convolutions (one group, no dilation; with `strided=False` stride 1 only), and every other
  call goes to `lax.conv_general_dilated` with the same arguments."""

  def decorate(formulation):
    def conv_general_dilated(
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
        **options,
    ):
      plain = _is_plain_nhwc_conv(
          lhs,
          rhs,
          lhs_dilation,
          rhs_dilation,
          dimension_numbers,
          feature_group_count,
          batch_group_count,
      )
      if plain and (strided or all(s == 1 for s in window_strides)):
        return formulation(
            lhs, rhs, window_strides, padding, precision, preferred_element_type, **options
        )
      return jax.lax.conv_general_dilated(
          lhs,
          rhs,
          window_strides,
          padding,
          lhs_dilation,
          rhs_dilation,
          dimension_numbers,
          feature_group_count,
          batch_group_count,
          precision,
          preferred_element_type,
      )

    conv_general_dilated.__name__ = formulation.__name__
    conv_general_dilated.__qualname__ = formulation.__qualname__
    conv_general_dilated.__doc__ = formulation.__doc__
    return conv_general_dilated

  return decorate


@_lax_for_other_convolutions(strided=True)
def im2col_conv_general_dilated(
    lhs, rhs, window_strides, padding, precision=None, preferred_element_type=None
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
  # these are slower than its float32 ones.
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
  products; batched over n and summed, because XLA:CPU runs a single contraction over n·r·w
  slower. Accumulates in float32.
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


# Where conv_kernel_grad_by_matmul beats XLA:CPU's kernel-gradient convolution: its
# whole-image window is costly on large images with many channels, while on small images (or
# few output channels) XLA's own is faster. `docs/performance.md` and `benchmarks/` have the timings.
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

  Why: XLA:CPU runs such a convolution and both its gradients slower than one dot over the
  channels followed by cheap shifted adds.
  """
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


@_lax_for_other_convolutions(strided=False)
def dots_conv_general_dilated(
    lhs,
    rhs,
    window_strides,
    padding,
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
    convolution whose window is the whole image, slow on large images.
  Used for the generator, whose convolutions are differentiated once. Anything but a stride-1
  NHWC/HWIO convolution goes to `lax.conv_general_dilated`.
  """
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
