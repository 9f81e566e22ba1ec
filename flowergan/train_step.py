"""The WGAN-GP training iteration as one jitted, data-parallel function.

One iteration = `n_critic` critic updates (each on a fresh real batch and fresh noise, under
`lax.scan`) followed by one generator update. The global batch is sharded over a 1-D mesh axis
'data' and the state is replicated; jit inserts the cross-device reductions, so BatchNorm
statistics and every mean are over the global batch and the math does not depend on the device
count. All randomness comes from `fold_in(key, step)`: nothing random lives in the state.
"""

from __future__ import annotations

import dataclasses
from typing import Any
from collections.abc import Callable

import flax
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from flowergan import ada as ada_lib
from flowergan import losses
from flowergan.mesh import batch_sharding, replicated
from flowergan.models import (
    Critic,
    Generator,
    build_models,
    compute_dtype,
    pre_batchnorm_bias_mask,
)

PyTree = Any
AugmentFn = Callable[[jax.Array, jax.Array], jax.Array]  # (images, key) -> images


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training; a pytree of arrays (saved as is by Orbax)."""

  step: jax.Array  # completed iterations (= generator updates)
  g_params: PyTree
  g_batch_stats: PyTree
  g_opt_state: PyTree
  d_params: PyTree
  d_opt_state: PyTree
  ema_params: PyTree  # exponential moving average of g_params, used for sampling
  # ADA's p and heuristic (flowergan.ada); None without ADA, so that a run without it has the
  # same pytree (and checkpoints) as before ADA existed.
  ada: ada_lib.AdaState | None = None


def ema_decay_at(step, decay: float, warmup: bool):
  """Decay for the EMA update after `step` updates; with warm-up, min(decay, (1+t)/(10+t))
  (as tf.train.ExponentialMovingAverage with num_updates) so early averages follow the
  fast-changing generator instead of staying near its random init."""
  if not warmup:
    return jnp.asarray(decay, jnp.float32)
  t = jnp.asarray(step, jnp.float32)
  return jnp.minimum(decay, (1.0 + t) / (10.0 + t))


def ema_update(ema_params, params, step, decay: float, warmup: bool = True):
  d = ema_decay_at(step, decay, warmup)
  return jax.tree.map(lambda e, p: d * e + (1.0 - d) * p, ema_params, params)


def _all_finite(tree) -> jax.Array:
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)]))


@dataclasses.dataclass(frozen=True)
class WGANGP:
  """The model pair, their optimisers and the WGAN-GP hyper-parameters; pure functions only."""

  generator: Generator
  critic: Critic
  g_tx: optax.GradientTransformation
  d_tx: optax.GradientTransformation
  z_dim: int = 64
  n_critic: int = 5
  gp_weight: float = 10.0
  ema_decay: float = 0.999
  ema_warmup: bool = True
  augment_fn: AugmentFn | None = None  # DiffAugment on the critic's inputs, or None
  ada: AdaSettings | None = None  # adaptive augmentation of the critic's inputs, or None

  @property
  def num_classes(self) -> int:
    return self.generator.num_classes

  def init(self, key: jax.Array) -> TrainState:
    kg, kd = jax.random.split(key)
    size = self.generator.image_size
    labels = jnp.zeros((1,), jnp.int32)
    g_vars = self.generator.init(kg, jnp.zeros((1, self.z_dim)), labels, train=False)
    d_vars = self.critic.init(kd, jnp.zeros((1, size, size, 3)), labels)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        g_params=g_vars["params"],
        g_batch_stats=g_vars["batch_stats"],
        g_opt_state=self.g_tx.init(g_vars["params"]),
        d_params=d_vars["params"],
        d_opt_state=self.d_tx.init(d_vars["params"]),
        ema_params=g_vars["params"],
        ada=None if self.ada is None else ada_lib.init_state(),
    )

  def generate(self, params, batch_stats, z, labels) -> jax.Array:
    """Images in [-1, 1] with BatchNorm's running statistics (inference mode)."""
    return self.generator.apply(
        {"params": params, "batch_stats": batch_stats}, z, labels, train=False
    )

  def _augment(self, images, key, ada_p=None):
    """DiffAugment and/or ADA (with probability `ada_p`), each with its own key."""
    if self.augment_fn is not None:
      images = self.augment_fn(images, key)
    if self.ada is not None and ada_p is not None:
      images = ada_lib.augment(images, jax.random.fold_in(key, 1), ada_p, hue=self.ada.hue)
    return images

  def critic_objective(self, d_params, real, fake, labels, keys, ada_p=None):
    """The critic's WGAN-GP loss and `(Wasserstein estimate, penalty)`.

    `keys` = (penalty interpolation, augmentation, augmentation inside the penalty).
    """
    loss, (w_dist, gp, _) = self._critic_terms(d_params, real, fake, labels, keys, ada_p)
    return loss, (w_dist, gp)

  def _critic_terms(self, d_params, real, fake, labels, keys, ada_p=None):
    """`critic_objective` with ADA's heuristic too: loss, (W estimate, penalty, real_above_fake)."""
    k_gp, k_aug, k_aug_gp = keys
    # One critic call on real ++ fake: one large batch runs faster than two halves.
    scores = self.critic.apply(
        {"params": d_params},
        self._augment(jnp.concatenate([real, fake]), k_aug, ada_p),
        jnp.concatenate([labels, labels]),
    )
    real_scores, fake_scores = jnp.split(scores, 2)
    critic_fn = lambda x: self.critic.apply(
        {"params": d_params}, self._augment(x, k_aug_gp, ada_p), labels
    )
    gp = losses.gradient_penalty(critic_fn, real, fake, k_gp)
    loss = losses.critic_loss(real_scores, fake_scores) + self.gp_weight * gp
    ranked = jax.lax.stop_gradient(ada_lib.real_above_fake(real_scores, fake_scores))
    return loss, (losses.wasserstein_estimate(real_scores, fake_scores), gp, ranked)

  def generator_objective(self, g_params, g_batch_stats, d_params, z, labels, aug_key, ada_p=None):
    """The generator's loss against the critic `d_params`, and its new BatchNorm statistics."""
    fake, g_vars = self.generator.apply(
        {"params": g_params, "batch_stats": g_batch_stats},
        z,
        labels,
        train=True,
        mutable=["batch_stats"],
    )
    scores = self.critic.apply({"params": d_params}, self._augment(fake, aug_key, ada_p), labels)
    return losses.generator_loss(scores), g_vars["batch_stats"]

  def critic_update(self, g_params, carry, xs, ada_p=None):
    d_params, d_opt_state, g_batch_stats = carry
    real, labels, key = xs
    k_z, k_gp, k_aug, k_aug_gp = jax.random.split(key, 4)
    z = jax.random.normal(k_z, (real.shape[0], self.z_dim))
    fake, g_vars = self.generator.apply(
        {"params": g_params, "batch_stats": g_batch_stats},
        z,
        labels,
        train=True,
        mutable=["batch_stats"],
    )
    fake = jax.lax.stop_gradient(fake)

    (loss, (w_dist, gp, ranked)), grads = jax.value_and_grad(self._critic_terms, has_aux=True)(
        d_params, real, fake, labels, (k_gp, k_aug, k_aug_gp), ada_p
    )
    updates, d_opt_state = self.d_tx.update(grads, d_opt_state, d_params)
    d_params = optax.apply_updates(d_params, updates)
    metrics = dict(
        critic_loss=loss,
        wasserstein=w_dist,
        gradient_penalty=gp,
        critic_grad_norm=optax.tree.norm(grads),
        real_above_fake=ranked,  # ADA's overfitting heuristic, also a diagnostic without ADA
    )
    return (d_params, d_opt_state, g_vars["batch_stats"]), metrics

  def generator_update(
      self, g_params, g_opt_state, g_batch_stats, d_params, labels, key, ada_p=None
  ):
    """One generator step against the critic `d_params`: (params, opt state, batch stats,
    loss, gradients)."""
    k_z, k_aug = jax.random.split(key)
    z = jax.random.normal(k_z, (labels.shape[0], self.z_dim))

    (g_loss, g_batch_stats), g_grads = jax.value_and_grad(self.generator_objective, has_aux=True)(
        g_params, g_batch_stats, d_params, z, labels, k_aug, ada_p
    )
    updates, g_opt_state = self.g_tx.update(g_grads, g_opt_state, g_params)
    return (optax.apply_updates(g_params, updates), g_opt_state, g_batch_stats, g_loss, g_grads)

  def _adapted(self, ada_state, ranked, image_shape):
    """ADA's state after this iteration's heuristic `ranked` (None without ADA)."""
    if ada_state is None:
      return None
    return ada_lib.update(
        ada_state,
        ranked,
        images_per_step=image_shape[0] * image_shape[1],  # real images the critic saw
        target=self.ada.target,
        interval=self.ada.interval,
        kimg=self.ada.kimg,
    )

  def iteration(self, state: TrainState, batch: dict, key: jax.Array) -> tuple[TrainState, dict]:
    """One training iteration. `batch['image']`: (n_critic, B, S, S, 3) in [-1, 1],
    `batch['label']`: (n_critic, B) int32. Returns the new state and scalar metrics; when any
    loss or gradient is non-finite, metrics['finite'] is False and the state is returned
    unchanged, so the last good state is never overwritten."""
    images, labels = batch["image"], batch["label"]
    if images.shape[0] != self.n_critic:
      raise ValueError(
          f"batch has {images.shape[0]} critic sub-batches, expected n_critic="
          f"{self.n_critic}; build the input with the same n_critic."
      )
    key = jax.random.fold_in(key, state.step)
    k_critic, k_z = jax.random.split(key)
    critic_keys = jax.random.split(k_critic, self.n_critic)
    ada_p = None if state.ada is None else state.ada.p
    (d_params, d_opt_state, g_batch_stats), d_metrics = jax.lax.scan(
        lambda carry, xs: self.critic_update(state.g_params, carry, xs, ada_p),
        (state.d_params, state.d_opt_state, state.g_batch_stats),
        (images, labels, critic_keys),
        # Unrolled: XLA:CPU runs the while-loop form of this scan many times slower (docs/performance.md); n_critic is small, so unrolling costs only some compile time.
        unroll=True,
    )

    # The generator's labels follow the class distribution of the data the critic sees.
    g_params, g_opt_state, g_batch_stats, g_loss, g_grads = self.generator_update(
        state.g_params, state.g_opt_state, g_batch_stats, d_params, labels[-1], k_z, ada_p
    )

    new_state = TrainState(
        step=state.step + 1,
        g_params=g_params,
        g_batch_stats=g_batch_stats,
        g_opt_state=g_opt_state,
        d_params=d_params,
        d_opt_state=d_opt_state,
        ema_params=ema_update(
            state.ema_params, g_params, state.step, self.ema_decay, self.ema_warmup
        ),
        ada=self._adapted(state.ada, jnp.mean(d_metrics["real_above_fake"]), images.shape),
    )
    metrics = {name: jnp.mean(value) for name, value in d_metrics.items()}
    if new_state.ada is not None:
      metrics["ada_p"] = new_state.ada.p
    metrics.update(generator_loss=g_loss, generator_grad_norm=optax.tree.norm(g_grads))
    finite = _all_finite(metrics) & _all_finite(new_state)
    metrics["finite"] = finite
    new_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old), new_state, state)
    return new_state, metrics


@dataclasses.dataclass(frozen=True)
class AdaSettings:
  """`config.train.ada` as the step uses it (flowergan.ada: what each one means)."""

  target: float
  interval: int
  kimg: float
  hue: bool

  @classmethod
  def from_config(cls, ada_config) -> AdaSettings | None:
    """The settings of `config.train.ada`, or None when it is off (or absent)."""
    if ada_config is None or not ada_config.enabled:
      return None
    return cls(
        target=float(ada_config.target),
        interval=int(ada_config.interval),
        kimg=float(ada_config.kimg),
        hue=bool(ada_config.hue),
    )


def make_optimizers(
    train_config,
) -> tuple[optax.GradientTransformation, optax.GradientTransformation]:
  """Adam for both nets (WGAN-GP defaults: lr 1e-4, β1 = 0, β2 = 0.9); the generator's
  biases that feed a BatchNorm stay frozen (see models.pre_batchnorm_bias_mask)."""

  def adam(lr):
    return optax.adam(lr, b1=train_config.adam_b1, b2=train_config.adam_b2)

  # `freeze` is `masked(set_to_zero(), mask)`, so the optimiser state (what checkpoints hold) is
  # the same; it passes the mask on to `masked`, which also takes a function of the params.
  g_tx = optax.chain(
      adam(train_config.generator_lr), optax.transforms.freeze(pre_batchnorm_bias_mask)
  )
  return g_tx, adam(train_config.critic_lr)


def wgangp_from_config(config, num_classes: int, augment_fn: AugmentFn | None = None) -> WGANGP:
  dtype = compute_dtype(config.train.dtype)
  generator, critic = build_models(
      config.model, image_size=config.data.image_size, num_classes=num_classes, dtype=dtype
  )
  g_tx, d_tx = make_optimizers(config.train)
  return WGANGP(
      generator=generator,
      critic=critic,
      g_tx=g_tx,
      d_tx=d_tx,
      z_dim=config.model.z_dim,
      n_critic=config.train.n_critic,
      gp_weight=config.train.gp_weight,
      ema_decay=config.train.ema_decay,
      ema_warmup=config.train.ema_warmup,
      augment_fn=augment_fn,
      ada=AdaSettings.from_config(config.train.get("ada")),
  )


def make_train_step(gan: WGANGP, mesh: Mesh):
  """`step(state, batch, key) -> (state, metrics)`, jitted over `mesh`, state donated."""
  return jax.jit(
      gan.iteration,
      in_shardings=(replicated(mesh), batch_sharding(mesh), replicated(mesh)),
      out_shardings=(replicated(mesh), replicated(mesh)),
      donate_argnums=(0,),
  )


def init_state(gan: WGANGP, key: jax.Array, mesh: Mesh) -> TrainState:
  """Initial state, created directly replicated on the mesh."""
  return jax.jit(gan.init, out_shardings=replicated(mesh))(key)


def abstract_state(gan: WGANGP, mesh: Mesh) -> TrainState:
  """Shapes, dtypes and (replicated, current-mesh) shardings of the state, without computing it:
  the restore target of a checkpoint's `state` item."""
  shapes = jax.eval_shape(gan.init, jax.random.key(0))
  sharding = replicated(mesh)
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), shapes)


def generator_variables(state: TrainState) -> dict:
  """What sampling needs of `state` (a checkpoint's `generator` item, see `flowergan.trained`)."""
  return {
      "ema_params": state.ema_params,
      "g_params": state.g_params,
      "g_batch_stats": state.g_batch_stats,
  }


def checkpoint_items(state: TrainState) -> dict:
  """The array items of a checkpoint of `state`: `state` to resume, `generator` to sample."""
  return {"state": state, "generator": generator_variables(state)}
