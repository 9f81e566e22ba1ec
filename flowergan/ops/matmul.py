"""A low-precision matmul that accumulates in float32, with a backward pass that does too."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

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
  matmuls faster than bf16×bf16→bf16, and runs the default rule's mixed f32×bf16 backward
  products at float32 speed.
  """
  return _matmul_acc(a, b, "nn")
