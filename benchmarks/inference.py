"""What the accelerator check times besides training: sampling as sample.py samples, and the
Inception feature extractor of the evaluation (on random weights: no file, no network)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import toolkit
from flowergan import sampling


def sampling_images_per_s(
    runner: toolkit.JaxRunner,
    batches: Sequence[int],
    images: int,
    go_on: Callable[[], bool],
) -> dict[str, Any]:
  """Images/s of `sampling.generate_from_z` (sample.py's path: padded batches, images back on
  the host) with `runner`'s EMA generator, for about `images` images at each of `batches`: the
  best of 3 calls after the first, the later ones only while `go_on()`."""
  gan, state = runner.gan, runner.state
  variables = {"params": state.ema_params, "batch_stats": state.g_batch_stats}
  out: dict[str, Any] = {"images": images}
  for batch in batches:
    n = max(batch, images // batch * batch)
    rng = np.random.default_rng(batch)
    z = rng.standard_normal((n, gan.z_dim)).astype(np.float32)
    labels = (np.arange(n) % gan.num_classes).astype(np.int32)

    def generate(count=n, batch=batch, z=z, labels=labels):
      return sampling.generate_from_z(
          gan.generator, variables, z[:count], labels[:count], batch_size=batch
      )

    first_s, _ = toolkit.best_seconds(lambda: generate(batch), rounds=1)  # compiles the shape
    best, samples = toolkit.best_seconds(generate, go_on=go_on)
    if not np.all(np.isfinite(samples)):
      raise FloatingPointError("non-finite samples")
    out[str(batch)] = {"images_per_s": n / best, "first_call_s": first_s}
  return out


# The Inception feature extractor, `flowergan.inception`. It is timed with random weights
# through the first of:
#   * `random_feature_extractor(seed=0)`: a callable mapping images (N, H, W, 3) float32 in
#     [0, 1] to features (N, D);
#   * `FIDInceptionV3` (a Flax module, input `INPUT_SIZE`²) and `extract_features(variables,
#     images, batch_size=..., mesh=...)`, the module's own entry point.
# Without either (or without the module), the result is "not available".
INCEPTION_MODULE = "flowergan.inception"


def inception_extractor(
    module, batch: int
) -> tuple[str, Callable[[], Callable[[np.ndarray], Any]]] | None:
  """(what `module` provides, a function that builds `images → features` with random weights
  from it, in batches of `batch`), or None."""
  factory = getattr(module, "random_feature_extractor", None)
  if factory is not None:
    return "random_feature_extractor", lambda: factory(seed=0)
  network = getattr(module, "FIDInceptionV3", None)
  extract = getattr(module, "extract_features", None)
  if network is None or extract is None:
    return None

  def build():
    size = getattr(module, "INPUT_SIZE", 299)
    variables = network().init(jax.random.key(0), jnp.zeros((1, size, size, 3)))
    return lambda images: extract(variables, images, batch_size=batch)

  return "FIDInceptionV3 + extract_features", build


def inception_images_per_s(
    batch: int, image_size: int, *, timed: bool, go_on: Callable[[], bool]
) -> dict[str, Any]:
  """Images/s of the Inception feature extractor on random weights at `batch` images of
  `image_size`² (the best of 3 calls after the first, the later ones only while `go_on()`), or
  why there is none; `timed=False` (--tiny) only looks for the extractor."""
  try:
    module = importlib.import_module(INCEPTION_MODULE)
  except ImportError as e:
    error = toolkit.error_text(e)
    return {"status": f"not available ({INCEPTION_MODULE} does not import: {error})"}
  found = inception_extractor(module, batch)
  if found is None:
    return {
        "status": f"not available ({INCEPTION_MODULE} has neither random_feature_extractor "
        "nor FIDInceptionV3 and extract_features)"
    }
  api, build = found
  if not timed:
    return {"status": f"not timed (--tiny: a 299² network is minutes on a CPU); found {api}"}
  extract = build()
  images = np.random.default_rng(0).uniform(0, 1, (batch, image_size, image_size, 3))
  images = images.astype(np.float32)
  features = lambda: np.asarray(extract(images))
  first_s, shape = toolkit.best_seconds(lambda: features().shape, rounds=1)
  best, _ = toolkit.best_seconds(features, go_on=go_on)
  return {
      "status": "measured",
      "api": api,
      "batch": batch,
      "image_size": image_size,
      "feature_shape": list(shape),
      "first_call_s": first_s,
      "images_per_s": batch / best,
  }
