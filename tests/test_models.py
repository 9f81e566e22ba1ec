import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowergan import models
from tests import tiny_config


def _generator_vars(gen, z_dim=64, batch=2):
  return gen.init(
      jax.random.key(0), jnp.zeros((batch, z_dim)), jnp.zeros((batch,), jnp.int32), train=False
  )


def _expected_generator_params(image_size, z_dim=64, width=64, num_classes=2):
  """The original's layer list written out by hand: conv(k, cin, cout) + BN(cout) per block."""
  conv = lambda k, cin, cout: k * k * cin * cout + cout
  bn = lambda c: 2 * c
  w = width
  total = conv(4, z_dim + num_classes, 4 * w) + bn(4 * w)  # 1×1 → 4×4
  total += conv(3, 4 * w, 2 * w) + bn(2 * w)  # 8²
  total += 2 * (conv(3, 2 * w, 2 * w) + bn(2 * w))  # 16²
  total += conv(3, 2 * w, w) + bn(w) + conv(3, w, w) + bn(w)  # 32²
  stages = int(np.log2(image_size)) - 2
  total += (stages - 3) * 2 * (conv(3, w, w) + bn(w))  # 64², 128², ...
  return total + conv(3, w, 3)


def test_original_generator_has_1123011_parameters():
  variables = jax.eval_shape(lambda: _generator_vars(models.Generator(image_size=128)))
  assert models.count_params(variables) == 1_123_011


@pytest.mark.parametrize("image_size", [32, 64, 256])
def test_parameter_count_follows_layer_rule(image_size):
  variables = jax.eval_shape(lambda: _generator_vars(models.Generator(image_size=image_size)))
  assert models.count_params(variables) == _expected_generator_params(image_size)


@pytest.mark.parametrize("upsample", ["bilinear", "transpose"])
def test_generator_shapes_and_range(upsample):
  gen = models.Generator(image_size=32, width=8, upsample=upsample, num_classes=3)
  variables = _generator_vars(gen, z_dim=16, batch=4)
  z = 3.0 * jax.random.normal(jax.random.key(1), (4, 16))
  images, _ = gen.apply(variables, z, jnp.array([0, 1, 2, 0]), train=True, mutable=["batch_stats"])
  assert images.shape == (4, 32, 32, 3) and images.dtype == jnp.float32
  assert float(images.min()) >= -1.0 and float(images.max()) <= 1.0
  assert float(images.std()) > 0


def test_transpose_option_uses_transposed_convs():
  bilinear = _generator_vars(models.Generator(image_size=32, width=8), z_dim=64)
  transpose = _generator_vars(models.Generator(image_size=32, width=8, upsample="transpose"))
  assert transpose["params"]["block_1"]["conv"]["kernel"].shape[:2] == (4, 4)
  assert bilinear["params"]["block_1"]["conv"]["kernel"].shape[:2] == (3, 3)


def test_generator_labels_matter():
  gen = models.Generator(image_size=16, width=8)
  variables = _generator_vars(gen)
  z = jax.random.normal(jax.random.key(2), (4, 64))
  a = gen.apply(variables, z, jnp.zeros(4, jnp.int32), train=False)
  b = gen.apply(variables, z, jnp.ones(4, jnp.int32), train=False)
  assert float(jnp.abs(a - b).mean()) > 1e-4


@pytest.mark.parametrize("conditioning", ["projection", "concat"])
def test_critic_labels_matter(conditioning):
  critic = models.Critic(image_size=16, width=8, conditioning=conditioning)
  images = jax.random.normal(jax.random.key(3), (4, 16, 16, 3))
  variables = critic.init(jax.random.key(4), images, jnp.zeros(4, jnp.int32))
  s0 = critic.apply(variables, images, jnp.zeros(4, jnp.int32))
  s1 = critic.apply(variables, images, jnp.ones(4, jnp.int32))
  assert s0.shape == (4,)
  assert float(jnp.abs(s0 - s1).min()) > 1e-6


def test_critic_layernorm_and_channels():
  assert models.critic_channels(128, 64) == [64, 128, 256, 256, 512]
  critic = models.Critic(image_size=32, width=8, normalization="layernorm")
  images = jax.random.normal(jax.random.key(5), (2, 32, 32, 3))
  variables = critic.init(jax.random.key(6), images, jnp.zeros(2, jnp.int32))
  assert "LayerNorm_0" in variables["params"]
  # Per-sample: one image's score does not depend on the rest of the batch (needed for GP).
  alone = critic.apply(variables, images[:1], jnp.zeros(1, jnp.int32))
  together = critic.apply(variables, images, jnp.zeros(2, jnp.int32))
  np.testing.assert_allclose(alone, together[:1], rtol=1e-5, atol=1e-6)


def test_bilinear_upsample_matches_align_corners_false():
  # PyTorch F.interpolate([0, 1, 2, 3], scale_factor=2, mode='linear', align_corners=False).
  x = jnp.arange(4.0).reshape(1, 1, 4, 1)
  x = jnp.broadcast_to(x, (1, 4, 4, 1))
  row = models.upsample2x_bilinear(x)[0, 0, :, 0]
  np.testing.assert_allclose(row, [0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3], atol=1e-6)
  y = jax.random.normal(jax.random.key(7), (2, 5, 6, 3))
  np.testing.assert_allclose(
      models.upsample2x_bilinear(y), jax.image.resize(y, (2, 10, 12, 3), "bilinear"), atol=1e-5
  )


def test_reflect_pad1_matches_numpy_reflect():
  x = jax.random.normal(jax.random.key(8), (2, 5, 4, 3))
  expected = np.pad(np.asarray(x), ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
  np.testing.assert_array_equal(models.reflect_pad1(x), expected)


@pytest.mark.parametrize("generator_conv", ["lax", "dots"])
def test_a_reflect_padded_conv_is_the_unpadded_conv_of_the_reflected_input(generator_conv):
  x = jax.random.normal(jax.random.key(10), (2, 6, 6, 4))
  kernel = jax.random.normal(jax.random.key(11), (3, 3, 4, 5))
  conv = models.conv_module(generator_conv, role="generator")(5, (3, 3), padding=1)
  variables = {"params": {"kernel": kernel, "bias": jnp.arange(5.0)}}
  out = conv.apply(variables, x, method=lambda m, x: models.conv_padded(m, x, "reflect"))
  reflected = np.pad(np.asarray(x), ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
  expected = jax.lax.conv_general_dilated(
      reflected, kernel, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
  )
  np.testing.assert_allclose(out, expected + jnp.arange(5.0), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("generator_conv", ["lax", "dots"])
def test_reflect_padding_draws_no_border_where_zeros_do(generator_conv):
  """Averaging kernels (the same at every tap) map a uniform map to a uniform map, except where
  a conv pads zeros: there the border differs (the demo's frame). Reflect padding leaves none;
  the parameters are the same (`zeros` is the original, which checkpoints restore into)."""
  conv = models.conv_module(generator_conv, role="generator")
  uniform = lambda k: jnp.full(k.shape, 1.0 / (k.shape[0] * k.shape[1] * k.shape[2]))
  images = {}
  for padding in models.PADDINGS:
    gen = models.Generator(image_size=16, width=4, conv=conv, padding=padding)
    variables = _generator_vars(gen, z_dim=8)
    variables = {
        "params": {
            name: {**p, "conv": {**p["conv"], "kernel": uniform(p["conv"]["kernel"])}}
            if name.startswith("block_")
            else {**p, "kernel": uniform(p["kernel"])}
            for name, p in variables["params"].items()
        },
        "batch_stats": variables["batch_stats"],
    }
    z = jnp.abs(jax.random.normal(jax.random.key(9), (2, 8)))  # positive: no ReLU zeroes it
    images[padding] = gen.apply(variables, z, jnp.array([0, 1]), train=False)
    images[padding + "_params"] = jax.tree.map(jnp.shape, variables["params"])
  assert images["zeros_params"] == images["reflect_params"]
  spread = lambda x: float((x.max(axis=(1, 2)) - x.min(axis=(1, 2))).max())
  assert spread(images["reflect"]) < 1e-5
  assert spread(images["zeros"]) > 1e-2


@pytest.mark.parametrize("generator_conv,critic_conv", [("lax", "lax"), ("dots", "im2col")])
def test_parameter_names_do_not_depend_on_conv(generator_conv, critic_conv):
  """Checkpoints restore whichever convolution formulation the config picks."""
  model_config = tiny_config.get_config().model
  model_config.generator_conv, model_config.critic_conv = generator_conv, critic_conv
  model_config.conditioning = "projection"  # the critic's `Embed_0`
  generator, critic = models.build_models(model_config, image_size=16, num_classes=2)
  g_vars = jax.eval_shape(lambda: _generator_vars(generator, z_dim=model_config.z_dim))
  d_vars = jax.eval_shape(
      lambda: critic.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)), jnp.zeros(1, jnp.int32))
  )
  names = lambda tree: {
      "/".join(str(k.key) for k in path) for path, _ in jax.tree_util.tree_leaves_with_path(tree)
  }
  assert names(g_vars["params"]) == {
      *(
          f"block_{i}/{layer}/{p}"
          for i in range(4)
          for layer, p in [("conv", "kernel"), ("conv", "bias"), ("bn", "scale"), ("bn", "bias")]
      ),
      "to_rgb/kernel",
      "to_rgb/bias",
  }
  assert names(d_vars["params"]) == {
      "Conv_0/kernel",
      "Conv_0/bias",
      "Conv_1/kernel",
      "Conv_1/bias",
      "Dense_0/kernel",
      "Dense_0/bias",
      "Embed_0/embedding",
  }


@pytest.mark.parametrize("bad", [0, 12, 100])
def test_bad_image_size_is_a_clear_error(bad):
  with pytest.raises(ValueError, match="power of two"):
    models.num_upsample_stages(bad)
