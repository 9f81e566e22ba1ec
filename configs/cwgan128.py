r"""CWGAN-GP_128 (the paper's model) and its two shrunken variants, `get_config(arg)`.

The part of `--config` after a colon picks the variant; the workdir defaults to
`runs/<variant>` (`runs/cwgan128` without one), and a rerun resumes from its latest checkpoint.

* none: the paper's model, 128×128 dandelions and marigolds (GPU/TPU; on the default data,
  TFDS oxford_flowers102's two matching classes):

      python train.py --config=configs/cwgan128.py
      python sample.py --label=marigold

  On your own photos, one subfolder per class (the class order is the sorted subfolder names;
  `--config.data.classes="('marigold','dandelion')"` chooses and orders them):

      python train.py --config=configs/cwgan128.py --config.data.source=folder:/path/to/photos

* `demo` (train.py's default): the built-in synthetic flowers at 32×32 with half the widths,
  300 steps, training and evaluation within 5 minutes on 2 idle CPU cores (measured:
  docs/demo_quality.md). Everything else is the paper's model and WGAN-GP recipe, except that
  the generator's convs pad by reflection (docs/demo_quality.md: zeros leave a dark frame):

      python train.py --config=configs/cwgan128.py:demo    # → runs/demo/samples/*.png
      python sample.py --workdir=runs/demo --label=marigold

* `tiny`: `demo` shrunk further so the tests run the real code in seconds on a CPU (16×16,
  widths 8, 4 steps, a light evaluation):

      python train.py --config=configs/cwgan128.py:tiny    # → runs/tiny

Any field can be overridden on the command line, e.g. `--config.train.batch_size=32`; a
misspelt field is an error (`lock_config`). Measured speeds are in
docs/performance.md.
"""

import ml_collections

from flowergan import default_config, hyperparameters

VARIANTS = ("demo", "tiny")

# The candidate small-data recipe: adaptive augmentation of the critic's inputs (flowergan/ada.py)
# with DiffAugment's colour-free policies; on any variant: --config.train.ada.enabled=True
# --config.train.diffaugment=translation,cutout. Measured on 30 to ~140 real digits per class
# (docs/small_data.md): in 300- and 1,000-step runs it did worse than the paper's recipe, so it is
# not the default anywhere and not a recommendation.
SMALL_DATA_OVERRIDES = {"train.ada.enabled": True, "train.diffaugment": "translation,cutout"}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The paper's model, or with `arg` one of `VARIANTS` (`config_flags` passes `file.py:arg`).

  The paper's model is flowergan's default config (`flowergan/default_config.py`: every field,
  its default and why); the variants change only what they list below.
  """
  if arg not in (None, *VARIANTS):
    raise ValueError(f"unknown config variant {arg!r}; valid: none, {', '.join(VARIANTS)}")
  config = default_config.get_config()
  if arg in ("demo", "tiny"):
    _shrink_to_demo(config)
  if arg == "tiny":
    _shrink_to_tiny(config)
  return config


def _shrink_to_demo(config: ml_collections.ConfigDict) -> None:
  """The `demo` variant: built-in synthetic data, 32×32, half the widths, 300 steps."""
  config.data.source = "synthetic"
  config.data.image_size = 32
  config.data.synthetic_num_per_class = 200
  config.model.width = 32
  config.model.critic_width = 32
  # Reflect-padded generator convs: with the original's zeros, the demo's steps leave a dark
  # frame around every flower that the data does not have (measured: docs/demo_quality.md).
  config.model.generator_padding = "reflect"
  config.train.batch_size = 32
  # 300, not 500: the README's command (training, its evaluation, sampling) stays within 5
  # minutes on 2 idle cores, and FD/KID/class consistency are no worse (docs/demo_quality.md).
  config.train.num_steps = 300
  config.log_every = 20
  config.sample_every = 100
  config.checkpoint_every = 200
  # The evaluation that ends the run, lighter than the paper's so the demo stays within minutes.
  config.eval.num_per_class = 200
  config.eval.classifier_steps = 300
  config.eval.kid_subset_size = 100  # < num_per_class, so the subsets differ and KID has a spread


def _shrink_to_tiny(config: ml_collections.ConfigDict) -> None:
  """The `tiny` variant (on top of `demo`): what the tests train, in seconds on a CPU."""
  for section, fields in hyperparameters.TINY.items():  # the network and its training
    config[section].update(fields)
  config.data.synthetic_num_per_class = 16
  config.log_every = 1
  config.sample_every = 2
  config.checkpoint_every = 2
  # The evaluation that ends every run: each metric computed, none of them stable.
  config.eval.update(
      num_per_class=16,
      batch_size=32,
      classifier_steps=30,
      classifier_batch_size=16,
      kid_subsets=5,
      kid_subset_size=16,
      swd_nhoods_per_image=16,
  )
