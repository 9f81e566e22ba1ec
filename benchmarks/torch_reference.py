"""PyTorch versions of flowergan's generator, critic and WGAN-GP iteration, for benchmarks.

The same networks as `flowergan.models` (NCHW instead of NHWC) and the same iteration as
`flowergan.train_step.WGANGP.iteration`: `n_critic` critic updates, each on a fresh real batch,
fresh noise and a fresh generator forward (train mode, batch statistics), with the gradient
penalty from `torch.autograd.grad(create_graph=True)`; then one generator update; Adam with the
same hyper-parameters, the generator's pre-BatchNorm conv biases frozen, and the generator EMA.

`load_flax_params` copies flowergan's parameters into the torch modules (HWIO → OIHW kernels,
NHWC-ordered flatten kept by permuting back to NHWC before the critic's head), so
`compare_with_flax` can check that both compute the same losses, penalty, images and gradients
on the same weights and inputs before anything is timed.

Only this module (and the benchmarks, through it and `benchmarks.toolkit.torch_setup`) imports
torch; it is an optional dependency (`pip install torch`), imported lazily by the benchmarks.

Known deliberate differences (none affects the timed computation):
  * BatchNorm running variance: PyTorch updates it with the unbiased batch variance, Flax with
    the biased one; training-mode outputs (what the iteration computes) are identical, and
    `load_flax_params` copies the running statistics so inference-mode outputs agree too.
  * Random numbers: torch draws its own z / ε; the comparison feeds both the same arrays.
  * Rounding: PyTorch's default CPU kernels (oneDNN) are markedly less accurate in float32 on
    some generator layers than its native kernels or XLA (see `native_torch_kernels`), so the
    math check runs torch's native kernels and reports the oneDNN error separately.

Memory format: NCHW (PyTorch's default, as the original code) unless channels_last=True.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from flowergan import losses
from flowergan import models as flax_models


class TorchGenerator(nn.Module):
  """`flowergan.models.Generator` (upsample='bilinear') in NCHW; output (N, 3, S, S); `padding`
  is the 3×3 convolutions' border ('zeros' or 'reflect', torch's `padding_mode`)."""

  def __init__(self, image_size=128, num_classes=2, width=64, z_dim=64, padding="zeros"):
    super().__init__()
    self.padding = padding
    self.num_classes = num_classes
    self.z_dim = z_dim
    self.blocks = nn.ModuleList()
    self.upsample_before = []  # one flag per block: ×2 bilinear upsample before its conv
    cin = z_dim + num_classes
    self.blocks.append(self._block(cin, 4 * width, 4, 3))
    self.upsample_before.append(False)
    cin = 4 * width
    for stage in flax_models.generator_stage_channels(image_size, width):
      for j, features in enumerate(stage):
        self.blocks.append(self._block(cin, features, 3, 1))
        self.upsample_before.append(j == 0)
        cin = features
    self.to_rgb = nn.Conv2d(cin, 3, 3, padding=1, padding_mode=padding)

  def _block(self, cin, cout, k, pad):
    mode = self.padding if k == 3 else "zeros"  # the seed conv (1×1 → 4×4) pads zeros
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, padding=pad, padding_mode=mode),
        nn.BatchNorm2d(cout, eps=1e-5, momentum=0.1),
        nn.ReLU(),
    )

  def forward(self, z, labels):
    onehot = F.one_hot(labels, self.num_classes).to(z.dtype)
    x = torch.cat([z, onehot], dim=1)[:, :, None, None]
    for up, block in zip(self.upsample_before, self.blocks):
      if up:
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
      x = block(x)
    return torch.tanh(self.to_rgb(x).float())

  def pre_batchnorm_biases(self):
    return [block[0].bias for block in self.blocks]


class TorchCritic(nn.Module):
  """`flowergan.models.Critic` in NCHW: Conv 4×4 stride 2 (padding 1) + LeakyReLU(0.2) blocks,
  optional LayerNorm, a linear score of the 4×4 features (flattened in NHWC order, as Flax
  does) plus the projection ⟨embed(y), φ(x)⟩, or one-hot label channels ('concat')."""

  def __init__(
      self, image_size=128, num_classes=2, width=64, conditioning="projection", normalization="none"
  ):
    super().__init__()
    self.num_classes = num_classes
    self.conditioning = conditioning
    channels = flax_models.critic_channels(image_size, width)
    cin = 3 + (num_classes if conditioning == "concat" else 0)
    self.convs = nn.ModuleList()
    self.norms = nn.ModuleList()
    size = image_size
    for i, features in enumerate(channels):
      self.convs.append(nn.Conv2d(cin, features, 4, stride=2, padding=1))
      size //= 2
      self.norms.append(
          nn.LayerNorm([features, size, size], eps=1e-5)
          if i > 0 and normalization == "layernorm"
          else nn.Identity()
      )
      cin = features
    num_features = cin * size * size
    self.dense = nn.Linear(num_features, 1)
    self.embed = nn.Embedding(num_classes, num_features) if conditioning == "projection" else None

  def forward(self, images, labels):
    x = images
    if self.conditioning == "concat":
      onehot = F.one_hot(labels, self.num_classes).to(x.dtype)
      x = torch.cat([x, onehot[:, :, None, None].expand(-1, -1, *x.shape[2:])], dim=1)
    for conv, norm in zip(self.convs, self.norms):
      x = F.leaky_relu(norm(conv(x)), 0.2)
    features = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)  # NHWC order, like Flax
    score = self.dense(features)[:, 0]
    if self.embed is not None:
      score = score + torch.sum(self.embed(labels) * features, dim=1)
    return score.float()


# --- parameters ------------------------------------------------------------------------------


def _t(x) -> torch.Tensor:
  return torch.from_numpy(np.array(x, dtype=np.float32))


def _conv_from_flax(conv: nn.Conv2d, p) -> None:
  conv.weight.copy_(_t(p["kernel"]).permute(3, 2, 0, 1))  # HWIO → OIHW
  conv.bias.copy_(_t(p["bias"]))


@torch.no_grad()
def load_flax_params(
    generator: TorchGenerator | None,
    critic: TorchCritic | None,
    *,
    g_params=None,
    g_batch_stats=None,
    d_params=None,
) -> None:
  """Copies flowergan's Flax parameters (and BatchNorm running statistics) into the modules."""
  if generator is not None:
    for i, block in enumerate(generator.blocks):
      p = g_params[f"block_{i}"]
      _conv_from_flax(block[0], p["conv"])
      block[1].weight.copy_(_t(p["bn"]["scale"]))
      block[1].bias.copy_(_t(p["bn"]["bias"]))
      if g_batch_stats is not None:
        block[1].running_mean.copy_(_t(g_batch_stats[f"block_{i}"]["bn"]["mean"]))
        block[1].running_var.copy_(_t(g_batch_stats[f"block_{i}"]["bn"]["var"]))
    _conv_from_flax(generator.to_rgb, g_params["to_rgb"])
  if critic is not None:
    for i, conv in enumerate(critic.convs):
      _conv_from_flax(conv, d_params[f"Conv_{i}"])
    ln = 0
    for norm in critic.norms:
      if isinstance(norm, nn.LayerNorm):
        p = d_params[f"LayerNorm_{ln}"]
        norm.weight.copy_(_t(p["scale"]).permute(2, 0, 1))  # (H, W, C) → (C, H, W)
        norm.bias.copy_(_t(p["bias"]).permute(2, 0, 1))
        ln += 1
    critic.dense.weight.copy_(_t(d_params["Dense_0"]["kernel"]).T)
    critic.dense.bias.copy_(_t(d_params["Dense_0"]["bias"]))
    if critic.embed is not None:
      critic.embed.weight.copy_(_t(d_params["Embed_0"]["embedding"]))


def critic_grads_to_flax_layout(critic: TorchCritic) -> dict:
  """The critic's .grad tensors as numpy arrays keyed and shaped like Flax's params."""
  out = {}
  for i, conv in enumerate(critic.convs):
    out[f"Conv_{i}"] = {
        "kernel": conv.weight.grad.permute(2, 3, 1, 0).numpy(),
        "bias": conv.bias.grad.numpy(),
    }
  out["Dense_0"] = {
      "kernel": critic.dense.weight.grad.T.numpy(),
      "bias": critic.dense.bias.grad.numpy(),
  }
  if critic.embed is not None:
    out["Embed_0"] = {"embedding": critic.embed.weight.grad.numpy()}
  return out


def generator_grads_to_flax_layout(generator: TorchGenerator) -> dict:
  """The generator's .grad tensors keyed and shaped like Flax's params, without the frozen
  pre-BatchNorm conv biases."""
  out = {}
  for i, block in enumerate(generator.blocks):
    conv, bn = block[0], block[1]
    out[f"block_{i}"] = {
        "conv": {"kernel": conv.weight.grad.permute(2, 3, 1, 0).numpy()},
        "bn": {"scale": bn.weight.grad.numpy(), "bias": bn.bias.grad.numpy()},
    }
  out["to_rgb"] = {
      "kernel": generator.to_rgb.weight.grad.permute(2, 3, 1, 0).numpy(),
      "bias": generator.to_rgb.bias.grad.numpy(),
  }
  return out


# --- the WGAN-GP iteration -----------------------------------------------------------------


def gradient_penalty(critic: TorchCritic, real, fake, labels, eps) -> torch.Tensor:
  """mean((‖∇D(x̂)‖₂ − 1)²) at x̂ = ε·real + (1−ε)·fake, double-backward-able."""
  x_hat = (eps * real + (1.0 - eps) * fake).requires_grad_(True)
  scores = critic(x_hat, labels)
  (grads,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)
  norms = torch.sqrt(grads.float().flatten(1).square().sum(1) + losses.GRAD_NORM_EPS)
  return torch.mean((norms - 1.0) ** 2)


def critic_losses(critic, real, fake, labels, eps, gp_weight):
  """(loss, wasserstein estimate, penalty) of one critic step, as WGANGP.critic_update."""
  scores = critic(torch.cat([real, fake]), torch.cat([labels, labels]))
  real_scores, fake_scores = scores.chunk(2)
  gp = gradient_penalty(critic, real, fake, labels, eps)
  loss = fake_scores.mean() - real_scores.mean() + gp_weight * gp
  return loss, real_scores.mean() - fake_scores.mean(), gp


class TorchWGANGP:
  """The same iteration as `flowergan.train_step.WGANGP.iteration`, in eager PyTorch."""

  def __init__(
      self,
      generator: TorchGenerator,
      critic: TorchCritic,
      *,
      z_dim=64,
      n_critic=5,
      gp_weight=10.0,
      generator_lr=1e-4,
      critic_lr=1e-4,
      adam_b1=0.0,
      adam_b2=0.9,
      ema_decay=0.999,
      ema_warmup=True,
      device="cpu",
      autocast_dtype=None,
      channels_last=False,
  ):
    self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
    self.generator = generator.to(device, memory_format=self.memory_format)
    self.critic = critic.to(device, memory_format=self.memory_format)
    self.device = torch.device(device)
    self.z_dim, self.n_critic, self.gp_weight = z_dim, n_critic, gp_weight
    self.ema_decay, self.ema_warmup = ema_decay, ema_warmup
    frozen = {id(p) for p in generator.pre_batchnorm_biases()}
    g_trainable = [p for p in generator.parameters() if id(p) not in frozen]
    for p in generator.pre_batchnorm_biases():
      p.requires_grad_(False)  # as the Flax optimiser's mask: zero gradient under BatchNorm
    self.g_opt = torch.optim.Adam(g_trainable, lr=generator_lr, betas=(adam_b1, adam_b2))
    self.d_opt = torch.optim.Adam(critic.parameters(), lr=critic_lr, betas=(adam_b1, adam_b2))
    self.ema = [p.detach().clone() for p in generator.parameters()]
    self.step = 0
    # Mixed precision as flowergan's dtype='bfloat16': activations in bf16, parameters, the
    # optimiser and the penalty's norms in float32.
    self.autocast_dtype = autocast_dtype
    # The generator's forward pass: benchmarks.toolkit.TorchRunner swaps in a torch.compile'd one.
    self.g_forward = generator

  def set_critic_grad(self, on: bool) -> None:
    """Whether the critic's parameters collect gradients (off for the generator step)."""
    for p in self.critic.parameters():
      p.requires_grad_(on)

  def autocast(self) -> contextlib.AbstractContextManager:
    """torch.autocast in `autocast_dtype`, or nothing in float32."""
    if self.autocast_dtype is None:
      return contextlib.nullcontext()
    return torch.autocast(self.device.type, dtype=self.autocast_dtype)

  def critic_step(self, real, labels) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One critic update on `real` against fresh fakes (as `WGANGP.critic_update`); the
    critic must collect gradients (`set_critic_grad(True)`). Returns (loss, W, penalty)."""
    b = real.shape[0]
    with torch.no_grad():
      fake = self.g_forward(torch.randn(b, self.z_dim, device=self.device), labels)
    eps = torch.rand(b, 1, 1, 1, device=self.device)
    loss, w, gp = critic_losses(self.critic, real, fake, labels, eps, self.gp_weight)
    self.d_opt.zero_grad(set_to_none=True)
    loss.backward()
    self.d_opt.step()
    return loss.detach(), w.detach(), gp.detach()

  def generator_step(self, labels) -> torch.Tensor:
    """One generator update (as `WGANGP.generator_update`), the critic's gradients off
    (`set_critic_grad(False)`). Returns the loss."""
    fake = self.g_forward(torch.randn(labels.shape[0], self.z_dim, device=self.device), labels)
    loss = -self.critic(fake, labels).mean()
    self.g_opt.zero_grad(set_to_none=True)
    loss.backward()
    self.g_opt.step()
    return loss.detach()

  def update_ema(self) -> None:
    with torch.no_grad():
      d = self.ema_decay
      if self.ema_warmup:
        d = min(d, (1.0 + self.step) / (10.0 + self.step))
      torch._foreach_lerp_(self.ema, [p.detach() for p in self.generator.parameters()], 1 - d)

  def iteration(self, images, labels) -> dict[str, torch.Tensor]:
    """images: (n_critic, B, 3, S, S) float32 in [-1, 1]; labels: (n_critic, B) int64."""
    with self.autocast():
      self.generator.train()
      self.set_critic_grad(True)
      metrics = [
          self.critic_step(images[i].contiguous(memory_format=self.memory_format), labels[i])
          for i in range(self.n_critic)
      ]
      self.set_critic_grad(False)
      g_loss = self.generator_step(labels[-1])
      self.update_ema()
    self.step += 1
    loss, w, gp = (torch.stack(m).mean() for m in zip(*metrics))
    return {
        "critic_loss": loss,
        "wasserstein": w,
        "gradient_penalty": gp,
        "generator_loss": g_loss,
    }


def from_flax(
    gan,
    train_config,
    state=None,
    *,
    device="cpu",
    autocast_dtype=None,
    channels_last=False,
) -> TorchWGANGP:
  """A `TorchWGANGP` with the architecture of a flowergan `train_step.WGANGP`, the optimiser
  hyper-parameters of `train_config` (config.train) and, when `state` (a TrainState) is given,
  its weights."""
  g, d = gan.generator, gan.critic
  if g.upsample != "bilinear":
    raise NotImplementedError("The PyTorch reference implements upsample='bilinear' only.")
  generator = TorchGenerator(g.image_size, g.num_classes, g.width, gan.z_dim, g.padding)
  critic = TorchCritic(d.image_size, d.num_classes, d.width, d.conditioning, d.normalization)
  if state is not None:
    load_flax_params(
        generator,
        critic,
        g_params=state.g_params,
        g_batch_stats=state.g_batch_stats,
        d_params=state.d_params,
    )
  return TorchWGANGP(
      generator,
      critic,
      z_dim=gan.z_dim,
      n_critic=gan.n_critic,
      gp_weight=gan.gp_weight,
      generator_lr=train_config.generator_lr,
      critic_lr=train_config.critic_lr,
      adam_b1=train_config.adam_b1,
      adam_b2=train_config.adam_b2,
      ema_decay=gan.ema_decay,
      ema_warmup=gan.ema_warmup,
      device=device,
      autocast_dtype=autocast_dtype,
      channels_last=channels_last,
  )


# --- numerical agreement with flowergan -------------------------------------------------------

# The scalars `compare_with_flax` checks besides images and gradients.
LOSS_NAMES = ("critic_loss", "wasserstein", "gradient_penalty", "generator_loss")


@dataclasses.dataclass(frozen=True)
class ComparisonInputs:
  """What both frameworks are fed: real images (NHWC), labels, noise, and the PRNG key of the
  penalty's interpolation weights ε."""

  real: np.ndarray
  labels: np.ndarray
  z: np.ndarray
  key: jax.Array

  @property
  def eps(self) -> np.ndarray:
    """The (B, 1, 1, 1) weights ε that `losses.gradient_penalty` draws from `key`, read off
    `losses.interpolate` itself: ε·1 + (1−ε)·0."""
    ones = jnp.ones((self.real.shape[0], 1, 1, 1))
    return np.asarray(losses.interpolate(ones, jnp.zeros_like(ones), self.key))


def comparison_inputs(gan, batch_size: int, seed: int) -> ComparisonInputs:
  s, k = gan.generator.image_size, gan.num_classes
  rng = np.random.default_rng(seed)
  return ComparisonInputs(
      real=rng.uniform(-1, 1, (batch_size, s, s, 3)).astype(np.float32),
      labels=(np.arange(batch_size) % k).astype(np.int32),
      z=rng.standard_normal((batch_size, gan.z_dim)).astype(np.float32),
      key=jax.random.key(seed),
  )


def float32_gan(gan):
  """`gan` with both networks in float32 and no augmentation: the check is about the math,
  whatever the dtype and policy the benchmark times."""
  return dataclasses.replace(
      gan,
      augment_fn=None,
      generator=gan.generator.clone(dtype=jnp.float32),
      critic=gan.critic.clone(dtype=jnp.float32),
  )


def flowergan_outputs(gan, state, inputs: ComparisonInputs) -> dict:
  """Images, losses and gradients of flowergan's critic and generator objectives (no
  augmentation), with flowergan's losses; the critic step's fakes are 'images_train'."""
  g, labels = gan.generator, inputs.labels
  fake = jax.jit(functools.partial(generator_train_forward, g))(
      state.g_params, state.g_batch_stats, inputs.z, labels
  )

  keys = (inputs.key, inputs.key, inputs.key)  # no augmentation here: only the first is used
  critic_grad = jax.jit(jax.value_and_grad(gan.critic_objective, has_aux=True))
  (critic_loss, (wasserstein, gp)), d_grads = critic_grad(
      state.d_params, inputs.real, fake, labels, keys
  )
  generator_grad = jax.jit(jax.value_and_grad(gan.generator_objective, has_aux=True))
  (generator_loss, _), g_grads = generator_grad(
      state.g_params, state.g_batch_stats, state.d_params, inputs.z, labels, inputs.key
  )
  return {
      "images_train": fake,
      "images_eval": jax.jit(gan.generate)(state.g_params, state.g_batch_stats, inputs.z, labels),
      "critic_loss": critic_loss,
      "wasserstein": wasserstein,
      "gradient_penalty": gp,
      "generator_loss": generator_loss,
      "critic_grad": d_grads,
      "generator_grad": g_grads,
  }


def generator_train_forward(generator, params, batch_stats, z, labels) -> jax.Array:
  """Training-mode images (batch statistics), as the training step generates them."""
  images, _ = generator.apply(
      {"params": params, "batch_stats": batch_stats},
      z,
      labels,
      train=True,
      mutable=["batch_stats"],
  )
  return images


def torch_outputs(gan, state, inputs: ComparisonInputs, *, fake: np.ndarray) -> dict:
  """`flowergan_outputs`' quantities from fresh torch modules with the same weights (NHWC numpy,
  gradients keyed like Flax's params; the generator's pre-BatchNorm conv biases are left out:
  their gradient is zero in exact arithmetic, rounding noise on both sides, and frozen)."""
  g, d = gan.generator, gan.critic
  tg = TorchGenerator(g.image_size, g.num_classes, g.width, gan.z_dim, g.padding)
  tc = TorchCritic(d.image_size, d.num_classes, d.width, d.conditioning, d.normalization)
  load_flax_params(
      tg, tc, g_params=state.g_params, g_batch_stats=state.g_batch_stats, d_params=state.d_params
  )
  nchw = lambda x: torch.from_numpy(np.array(x, np.float32)).permute(0, 3, 1, 2).contiguous()
  nhwc = lambda x: x.detach().permute(0, 2, 3, 1).numpy()
  labels = torch.from_numpy(inputs.labels.astype(np.int64))
  z = torch.from_numpy(inputs.z.copy())
  tg.eval()  # first: a training-mode forward updates the running statistics
  with torch.no_grad():
    images_eval = tg(z, labels)
  tg.train()
  images_train = tg(z, labels)
  eps = torch.from_numpy(inputs.eps)
  critic_loss, wasserstein, gp = critic_losses(
      tc, nchw(inputs.real), nchw(fake), labels, eps, gan.gp_weight
  )
  critic_loss.backward()
  critic_grad = critic_grads_to_flax_layout(tc)
  tc.zero_grad(set_to_none=True)
  generator_loss = -tc(tg(z, labels), labels).mean()
  generator_loss.backward()
  return {
      "images_train": nhwc(images_train),
      "images_eval": nhwc(images_eval),
      "critic_loss": critic_loss.item(),
      "wasserstein": wasserstein.item(),
      "gradient_penalty": gp.item(),
      "generator_loss": generator_loss.item(),
      "critic_grad": critic_grad,
      "generator_grad": generator_grads_to_flax_layout(tg),
  }


def relative_error(a, b) -> float:
  """max |a − b| / max |b|."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-12))


def relative_errors(torch_tree: dict, flax_tree: dict, prefix: str = "") -> dict[str, float]:
  """`relative_error` of every leaf of `torch_tree` against the same path in `flax_tree`, keyed
  by the '/'-joined path."""
  errors = {}
  for name, sub in torch_tree.items():
    if isinstance(sub, dict):
      errors.update(relative_errors(sub, flax_tree[name], f"{prefix}{name}/"))
    else:
      errors[prefix + name] = relative_error(sub, flax_tree[name])
  return errors


@contextlib.contextmanager
def native_torch_kernels():
  """PyTorch's native CPU kernels instead of its default oneDNN (mkldnn) ones, which are less
  accurate in float32 on some layers (measured: up to 3% relative error on generator
  conv-kernel gradients at width 8, 4e-3 at the paper's width, against float64 of either
  framework, where flowergan's float32 stays within 2e-6)."""
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # "TF32 acceleration on top of oneDNN ... Intel GPUs"
    with torch.backends.mkldnn.flags(enabled=False):
      yield


def compare_with_flax(gan, state, *, batch_size: int = 4, seed: int = 0) -> dict:
  """Runs flowergan and the PyTorch reference on the same weights and inputs (float32).

  Compares: generated images in training mode (batch statistics) and inference mode (running
  statistics), the critic loss, Wasserstein estimate and gradient penalty of one critic step
  (as `WGANGP.critic_update`, same real/fake images, labels and interpolation weights ε), the
  generator loss, and the gradients of both losses w.r.t. every parameter. Returns relative
  errors (max |flax − torch| / max |flax|) with PyTorch's native kernels (`native_torch_kernels`);
  `max_error` is the largest of them, `max_error_default_kernels` the same with PyTorch's
  default (oneDNN) kernels, the configuration that is timed.
  """
  gan, state = float32_gan(gan), jax.device_get(state)
  inputs = comparison_inputs(gan, batch_size, seed)
  flax_out = flowergan_outputs(gan, state, inputs)
  fake = np.asarray(flax_out["images_train"])  # the critic step's fakes, both sides
  with native_torch_kernels():
    errors = relative_errors(torch_outputs(gan, state, inputs, fake=fake), flax_out)
  default_errors = relative_errors(torch_outputs(gan, state, inputs, fake=fake), flax_out)
  return {
      "errors": errors,
      "max_error": max(errors.values()),
      "max_error_default_kernels": max(default_errors.values()),
      "values": {name: float(flax_out[name]) for name in LOSS_NAMES},
  }
