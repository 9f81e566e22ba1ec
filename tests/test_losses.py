import jax
import jax.numpy as jnp
import numpy as np

from flowergan import losses, models


def test_wasserstein_losses():
  real, fake = jnp.array([1.0, 3.0]), jnp.array([0.0, -2.0])
  assert float(losses.critic_loss(real, fake)) == -3.0
  assert float(losses.wasserstein_estimate(real, fake)) == 3.0
  assert float(losses.generator_loss(fake)) == 1.0


def test_penalty_of_linear_critic_is_closed_form():
  w = jax.random.normal(jax.random.key(0), (4, 4, 3)) * 0.3
  critic_fn = lambda x: jnp.sum(x * w, axis=(1, 2, 3))
  real = jax.random.normal(jax.random.key(1), (5, 4, 4, 3))
  fake = jax.random.normal(jax.random.key(2), (5, 4, 4, 3))
  gp = losses.gradient_penalty(critic_fn, real, fake, jax.random.key(3))
  np.testing.assert_allclose(gp, (jnp.linalg.norm(w) - 1.0) ** 2, rtol=1e-5)


def test_penalty_of_half_squared_norm_uses_gradient_x_hat():
  critic_fn = lambda x: 0.5 * jnp.sum(x**2, axis=(1, 2, 3))
  x = jax.random.normal(jax.random.key(4), (6, 3, 3, 3))
  # real == fake pins x̂ = x whatever ε is; ∇f(x̂) = x̂.
  gp = losses.gradient_penalty(critic_fn, x, x, jax.random.key(5))
  norms = jnp.linalg.norm(x.reshape(6, -1), axis=1)
  np.testing.assert_allclose(gp, jnp.mean((norms - 1.0) ** 2), rtol=1e-5)
  # real != fake: the gradient norm is ‖x̂‖ with x̂ on the segment, one ε per image.
  y = jax.random.normal(jax.random.key(6), x.shape)
  key = jax.random.key(7)
  x_hat = losses.interpolate(x, y, key)
  eps = ((x_hat - y) / (x - y)).reshape(6, -1)
  np.testing.assert_allclose(eps, jnp.broadcast_to(eps[:, :1], eps.shape), rtol=1e-3, atol=1e-3)
  assert float(eps.min()) >= 0.0 and float(eps.max()) <= 1.0
  assert float(eps[:, 0].std()) > 0  # ε differs between images
  np.testing.assert_allclose(
      losses.gradient_penalty(critic_fn, x, y, key),
      jnp.mean((jnp.linalg.norm(x_hat.reshape(6, -1), axis=1) - 1.0) ** 2),
      rtol=1e-5,
  )


def test_zero_gradient_gives_finite_penalty_and_gradient():
  def penalty(scale):
    critic_fn = lambda x: scale * jnp.sum(x, axis=(1, 2, 3))
    x = jnp.ones((2, 2, 2, 3))
    return losses.gradient_penalty(critic_fn, x, -x, jax.random.key(0))

  value, grad = jax.value_and_grad(penalty)(0.0)
  assert np.isfinite(float(value)) and np.isfinite(float(grad))
  np.testing.assert_allclose(value, 1.0, rtol=1e-5)


def test_gradient_norm_matches_finite_differences_on_real_critic():
  critic = models.Critic(
      image_size=16,
      width=8,
      conditioning="concat",
      conv=models.conv_module("auto", role="critic"),  # as trained on this backend
  )
  images = jax.random.normal(jax.random.key(8), (3, 16, 16, 3))
  labels = jnp.array([0, 1, 0])
  variables = critic.init(jax.random.key(9), images, labels)
  critic_fn = lambda x: critic.apply(variables, x, labels)
  norms = losses.per_image_gradient_norm(critic_fn, images)
  grads = jax.grad(lambda x: jnp.sum(critic_fn(x)))(images)
  h = 1e-2
  for i in range(3):
    # Along the unit gradient direction, the directional derivative equals the gradient norm.
    # The critic is piecewise linear in x (convs + LeakyReLU), so a central difference is exact
    # away from kinks.
    direction = jnp.zeros_like(images).at[i].set(grads[i] / jnp.linalg.norm(grads[i]))
    fd = (critic_fn(images + h * direction)[i] - critic_fn(images - h * direction)[i]) / (2 * h)
    np.testing.assert_allclose(fd, norms[i], rtol=2e-2)
