"""The defaults of `config.eval` (what `flowergan.evaluate` measures), importable without JAX so
that config files can use them (`configs/cwgan128.py`)."""

import ml_collections


def default_eval_config() -> ml_collections.ConfigDict:
  """Every field of `config.eval`, with its default."""
  ev = ml_collections.ConfigDict()
  ev.num_per_class = 1000  # generated images per class (500: ~5x the KID seed-to-seed spread)
  ev.batch_size = 100  # generator and classifier inference batch
  ev.seed = 0  # noise seed of the generated images (same seed, same images)
  # The small CNN whose accuracy and features the metrics use, trained on the run's real images
  # (cached in workdir/eval/ with the data fingerprint).
  ev.classifier_steps = 1000
  ev.classifier_batch_size = 64
  ev.classifier_learning_rate = 1e-3
  ev.classifier_holdout = 0.2  # share of each class's real images held out for its accuracy
  ev.classifier_seed = 0
  ev.kid_subsets = 100
  ev.kid_subset_size = 1000
  ev.swd_nhoods_per_image = 128
  return ev
