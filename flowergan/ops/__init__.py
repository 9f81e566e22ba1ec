"""Convolution and matmul formulations for XLA:CPU, and the choice between them and XLA's own.

The kernels live in `flowergan.ops.conv` and `flowergan.ops.matmul`. They compute the same
function as XLA's convolutions with the same parameters; only speed (on XLA:CPU) and float
rounding differ. Models receive a choice as a `conv_general_dilated` function (see
`resolve_conv`), never as a name.
"""

from __future__ import annotations

from collections.abc import Callable

import jax

from flowergan.ops import conv

ConvGeneralDilated = Callable[..., jax.Array]

# Per network, the accepted names of its convolution formulation. 'lax' is XLA's own
# convolution; 'auto' is resolved by `resolve_conv`.
CONV_CHOICES = {
    "generator": ("auto", "dots", "lax"),
    "critic": ("auto", "im2col", "lax"),
}

# 'auto' on the CPU backend. The formulations exist for XLA:CPU's slow convolution
# derivatives; on GPU/TPU, cuDNN and the TPU's convolution units run XLA's own ones well.
_ON_CPU = {"generator": "dots", "critic": "im2col"}

_FUNCTIONS = {
    "dots": conv.dots_conv_general_dilated,
    "im2col": conv.im2col_conv_general_dilated,
    "lax": None,
}


def resolve_conv(impl: str, *, role: str) -> ConvGeneralDilated | None:
  """The `conv_general_dilated` function for `impl`, or None for XLA's own ('lax').

  Args:
    impl: a name in `CONV_CHOICES[role]`; 'auto' means the CPU formulation on the CPU backend
      ('dots' for the generator, 'im2col' for the critic) and 'lax' elsewhere, decided from
      `jax.default_backend()` at this call (`models.build_models` makes it once per model).
    role: 'generator' or 'critic'.

  Raises:
    ValueError: for an unknown `role` or a name that `role` does not accept.
  """
  if role not in CONV_CHOICES:
    raise ValueError(f"role must be one of {tuple(CONV_CHOICES)}, got {role!r}.")
  if impl not in CONV_CHOICES[role]:
    raise ValueError(f"conv_impl must be one of {CONV_CHOICES[role]} for the {role}, got {impl!r}.")
  if impl == "auto":
    impl = _ON_CPU[role] if jax.default_backend() == "cpu" else "lax"
  return _FUNCTIONS[impl]
