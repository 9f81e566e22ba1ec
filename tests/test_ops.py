"""The CPU convolution and matmul formulations compute what XLA's own ops compute."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowergan import default_config, losses, models, ops
from flowergan.ops import conv, matmul
from tests import tiny_config

IM2COL = functools.partial(nn.Conv, conv_general_dilated=conv.im2col_conv_general_dilated)
DOTS = functools.partial(nn.Conv, conv_general_dilated=conv.dots_conv_general_dilated)


def _critic_pair(**kwargs):
  fast = models.Critic(image_size=32, width=8, conv=IM2COL, **kwargs)
  return fast, fast.clone(conv=nn.Conv)


@pytest.mark.parametrize(
    "conditioning,normalization", [("projection", "none"), ("concat", "layernorm")]
)
def test_im2col_critic_equals_plain_conv_critic(conditioning, normalization):
  fast, plain = _critic_pair(conditioning=conditioning, normalization=normalization)
  real = jax.random.uniform(jax.random.key(0), (4, 32, 32, 3), minval=-1, maxval=1)
  fake = jax.random.uniform(jax.random.key(1), (4, 32, 32, 3), minval=-1, maxval=1)
  labels = jnp.array([0, 1, 1, 0])
  variables = fast.init(jax.random.key(2), real, labels)
  # Same parameters, same names: either module takes the other's variables.
  assert jax.tree.structure(variables) == jax.tree.structure(
      plain.init(jax.random.key(2), real, labels)
  )
  np.testing.assert_allclose(
      fast.apply(variables, real, labels),
      plain.apply(variables, real, labels),
      rtol=1e-5,
      atol=1e-6,
  )
  fn = lambda critic, params: (lambda x: critic.apply(params, x, labels))
  np.testing.assert_allclose(
      losses.per_image_gradient_norm(fn(fast, variables), real),
      losses.per_image_gradient_norm(fn(plain, variables), real),
      rtol=1e-5,
  )

  def penalty(critic):
    return lambda params: losses.gradient_penalty(fn(critic, params), real, fake, jax.random.key(3))

  gp_fast, grads_fast = jax.value_and_grad(penalty(fast))(variables)
  gp_plain, grads_plain = jax.value_and_grad(penalty(plain))(variables)
  np.testing.assert_allclose(gp_fast, gp_plain, rtol=1e-5)
  for path, a, b in zip(
      jax.tree_util.tree_leaves_with_path(grads_fast),
      jax.tree.leaves(grads_fast),
      jax.tree.leaves(grads_plain),
  ):
    scale = float(jnp.max(jnp.abs(b))) + 1e-12
    assert float(jnp.max(jnp.abs(a - b))) / scale < 1e-4, path[0]


@pytest.mark.parametrize(
    "strides,padding,kernel",
    [
        ((2, 2), ((1, 1), (1, 1)), (4, 4)),
        ((1, 1), "SAME", (3, 3)),
        ((2, 1), ((0, 2), (1, 0)), (3, 2)),
    ],
)
def test_im2col_conv_equals_lax_conv(strides, padding, kernel):
  x = jax.random.normal(jax.random.key(0), (2, 9, 8, 5))
  k = jax.random.normal(jax.random.key(1), kernel + (5, 7))
  dn = ("NHWC", "HWIO", "NHWC")
  want = jax.lax.conv_general_dilated(x, k, strides, padding, dimension_numbers=dn)
  got = conv.im2col_conv_general_dilated(x, k, strides, padding, dimension_numbers=dn)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_bf16_critic_penalty_is_float32():
  """dtype='bfloat16': the critic's activations are bf16, its parameters, the input-gradient
  norms and the penalty float32, and the penalty agrees with the float32 one to bf16 accuracy."""
  f32 = models.Critic(image_size=16, width=8, conv=models.conv_module("auto", role="critic"))
  bf16 = f32.clone(dtype=jnp.bfloat16)
  real = jax.random.uniform(jax.random.key(0), (4, 16, 16, 3), minval=-1, maxval=1)
  fake = jax.random.uniform(jax.random.key(1), (4, 16, 16, 3), minval=-1, maxval=1)
  labels = jnp.array([0, 1, 0, 1])
  params = bf16.init(jax.random.key(2), real, labels)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
  jaxpr = str(jax.make_jaxpr(lambda x: bf16.apply(params, x, labels))(real))
  assert "bf16" in jaxpr  # the convolutions run in bfloat16
  norms = jax.jit(losses.per_image_gradient_norm, static_argnums=0)(
      lambda x: bf16.apply(params, x, labels), real
  )
  assert norms.dtype == jnp.float32
  # Compiled, as the train step runs it (op-by-op dispatch of the double backward is slower).
  gps = [
      jax.jit(
          lambda params, c=c: losses.gradient_penalty(
              lambda x: c.apply(params, x, labels), real, fake, jax.random.key(3)
          )
      )(params)
      for c in (bf16, f32)
  ]
  assert gps[0].dtype == jnp.float32
  np.testing.assert_allclose(gps[0], gps[1], rtol=3e-2)


def test_bf16_matmul_f32_accumulate_matches_default_rule():
  """The custom bf16 product gives what JAX's own rule gives for a f32-accumulated bf16 dot,
  in value, gradient and gradient of a gradient (the penalty's double backward)."""
  a = jax.random.normal(jax.random.key(0), (32, 24)).astype(jnp.bfloat16)
  b = jax.random.normal(jax.random.key(1), (24, 16)).astype(jnp.bfloat16)
  plain = lambda a, b: jax.lax.dot_general(
      a, b, (((1,), (0,)), ((), ())), preferred_element_type=jnp.float32
  ).astype(jnp.bfloat16)
  results = []
  for product in (plain, matmul.matmul_f32_accumulate):

    def penalty(b, a, product=product):
      g = jax.grad(lambda a: jnp.sum(jnp.sin(product(a, b).astype(jnp.float32))))(a)
      return jnp.sum(g.astype(jnp.float32) ** 2)

    value, grad = jax.value_and_grad(penalty)(b, a)
    assert product(a, b).dtype == jnp.bfloat16 and grad.dtype == jnp.bfloat16
    results.append((value, grad.astype(jnp.float32)))
  np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-6)
  np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-2, atol=1e-2)


def test_bf16_im2col_critic_penalty_gradient_close_to_plain_conv():
  fast, plain = _critic_pair()
  fast, plain = fast.clone(dtype=jnp.bfloat16), plain.clone(dtype=jnp.bfloat16)
  real = jax.random.uniform(jax.random.key(0), (4, 32, 32, 3), minval=-1, maxval=1)
  labels = jnp.array([0, 1, 1, 0])
  variables = fast.init(jax.random.key(2), real, labels)
  grads = [
      jax.jit(
          jax.grad(
              lambda p, c=c: losses.gradient_penalty(
                  lambda x: c.apply(p, x, labels), real, -real, jax.random.key(3)
              )
          )
      )(variables)
      for c in (fast, plain)
  ]
  for a, b in zip(jax.tree.leaves(grads[0]), jax.tree.leaves(grads[1])):
    scale = float(jnp.max(jnp.abs(b))) + 1e-12
    assert float(jnp.max(jnp.abs(a - b))) / scale < 5e-2  # bf16 rounding, different order


@pytest.mark.parametrize("path", ["kernel_grad_dot", "thin_taps"])
@pytest.mark.parametrize(
    "channels,kernel,padding",
    [
        ((8, 8), (3, 3), ((1, 1), (1, 1))),
        ((16, 2), (3, 3), ((1, 1), (1, 1))),  # few outputs, as the 3-channel to_rgb
        ((6, 5), (4, 4), ((3, 3), (3, 3))),  # the generator's 1×1 → 4×4 seed conv
        ((16, 1), (3, 2), ((0, 2), (1, 0))),
        ((4, 20), (2, 3), "SAME"),
    ],
)
def test_dots_conv_equals_lax_conv(channels, kernel, padding, path):
  c_in, c_out = channels
  size = 1 if kernel == (4, 4) else 9
  x = jax.random.normal(jax.random.key(0), (3, size, size, c_in))
  k = jax.random.normal(jax.random.key(1), kernel + (c_in, c_out))
  dn = ("NHWC", "HWIO", "NHWC")
  plain = lambda x, k: jax.lax.conv_general_dilated(x, k, (1, 1), padding, dimension_numbers=dn)
  thresholds = (
      dict(min_pixels=0, min_features=0, max_thin_taps=0)
      if path == "kernel_grad_dot"
      else dict(max_thin_taps=10**6)
  )
  fast = lambda x, k: conv.dots_conv_general_dilated(
      x, k, (1, 1), padding, dimension_numbers=dn, **thresholds
  )
  want = plain(x, k)
  cotangent = jax.random.normal(jax.random.key(2), want.shape)
  grads = [
      jax.grad(lambda x, k, f=f: jnp.sum(f(x, k) * cotangent), argnums=(0, 1))(x, k)
      for f in (fast, plain)
  ]
  if path == "kernel_grad_dot":  # forward and input gradient are XLA's own convolutions
    np.testing.assert_array_equal(fast(x, k), want)
    np.testing.assert_array_equal(grads[0][0], grads[1][0])
  else:
    np.testing.assert_allclose(fast(x, k), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grads[0][0], grads[1][0], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(grads[0][1], grads[1][1], rtol=1e-5, atol=1e-5)


def test_generator_conv_impls_agree():
  """The generator's conv changes how its kernel gradients are computed, not its function
  (128×128 with 16 channels: its last block takes the dot path)."""
  fast = models.Generator(image_size=128, num_classes=2, width=16, conv=DOTS)
  plain = fast.clone(conv=nn.Conv)
  z = jax.random.normal(jax.random.key(0), (4, 64))
  labels = jnp.array([0, 1, 1, 0])
  variables = fast.init(jax.random.key(1), z, labels, train=False)
  target = jax.random.normal(jax.random.key(2), (4, 128, 128, 3))

  def loss(generator):
    def fn(params):
      images, _ = generator.apply(
          {"params": params, "batch_stats": variables["batch_stats"]},
          z,
          labels,
          train=True,
          mutable=["batch_stats"],
      )
      return jnp.sum(images * target)

    # One compiled program per generator: op-by-op dispatch of the 128×128 backward is slower.
    return jax.jit(jax.value_and_grad(fn))(variables["params"])

  (value_fast, grads_fast), (value_plain, grads_plain) = loss(fast), loss(plain)
  np.testing.assert_allclose(value_fast, value_plain, rtol=1e-5)
  frozen = models.pre_batchnorm_bias_mask(grads_plain)  # true gradient 0: rounding noise only
  for is_frozen, a, b in zip(
      jax.tree.leaves(frozen), jax.tree.leaves(grads_fast), jax.tree.leaves(grads_plain)
  ):
    if not is_frozen:
      scale = float(jnp.max(jnp.abs(b))) + 1e-12
      assert float(jnp.max(jnp.abs(a - b))) / scale < 1e-4


def test_conv_impl_auto_and_typos():
  on_cpu = jax.default_backend() == "cpu"
  assert ops.resolve_conv("auto", role="critic") is (
      conv.im2col_conv_general_dilated if on_cpu else None
  )
  assert ops.resolve_conv("auto", role="generator") is (
      conv.dots_conv_general_dilated if on_cpu else None
  )
  assert ops.resolve_conv("lax", role="critic") is None
  assert ops.resolve_conv("im2col", role="critic") is conv.im2col_conv_general_dilated
  for field, typo in [("generator_conv", "im2col"), ("critic_conv", "matmul")]:
    model_config = tiny_config.get_config().model
    model_config[field] = typo
    with pytest.raises(ValueError, match="conv_impl must be one of"):
      models.build_models(model_config, image_size=8, num_classes=2)


def _conv_fn(module):
  """The `conv_general_dilated` a model's `conv` attribute computes with (None: XLA's own)."""
  return module.conv.keywords["conv_general_dilated"] if module.conv is not nn.Conv else None


def test_build_models_reads_conv_fields_and_defaults_to_auto():
  model_config = tiny_config.get_config().model
  model_config.generator_conv, model_config.critic_conv = "dots", "lax"
  generator, critic = models.build_models(model_config, image_size=16, num_classes=2)
  assert _conv_fn(generator) is conv.dots_conv_general_dilated
  assert _conv_fn(critic) is None
  # Equal configs, equal models (as module fields and jit's static arguments compare them).
  assert models.build_models(model_config, image_size=16, num_classes=2) == (generator, critic)
  # Configs stored with older checkpoints have neither field: 'auto', resolved at build time.
  stored = tiny_config.get_config().to_dict()
  del stored["model"]["generator_conv"], stored["model"]["critic_conv"]
  model_config = default_config.from_stored(stored).model
  generator, critic = models.build_models(model_config, image_size=16, num_classes=2)
  assert _conv_fn(generator) is ops.resolve_conv("auto", role="generator")
  assert _conv_fn(critic) is ops.resolve_conv("auto", role="critic")
