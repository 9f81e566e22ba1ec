r"""CWGAN-GP_128 (the paper's model) and its two shrunken variants, `get_config(arg)`.

The part of `--config` after a colon picks the variant; the workdir defaults to
`runs/<variant>` (`runs/cwgan128` without one), and a rerun resumes from its latest checkpoint.

* none: the paper's model, 128×128 dandelions and marigolds (GPU/TPU; on the default data,
  TFDS oxford_flowers102's two matching classes):

      python train.py --config=configs/cwgan128.py
      python sample.py --label=marigold

  On your own photos, one subfolder per class:

      python train.py --config=configs/cwgan128.py --config.data.source=folder:/path/to/photos \
          --config.data.classes="('dandelion','marigold')"

* `demo` (train.py's default): the built-in synthetic flowers at 32×32 with half the widths,
  500 steps, small enough for 2 CPU cores (measured time: see the README). Everything else is
  the paper's model and WGAN-GP recipe:

      python train.py --config=configs/cwgan128.py:demo    # → runs/demo/samples/*.png
      python sample.py --workdir=runs/demo --label=marigold

* `tiny`: `demo` shrunk further so the tests run the real code in seconds on a CPU (16×16,
  widths 8, 4 steps, a light evaluation):

      python train.py --config=configs/cwgan128.py:tiny    # → runs/tiny

Any field can be overridden on the command line, e.g. `--config.train.batch_size=32`; a
misspelt field is an error (`lock_config`). Measured speeds are in the README's performance
table.
"""

import ml_collections

from flowergan import eval_config

VARIANTS = ("demo", "tiny")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The paper's model, or with `arg` one of `VARIANTS` (`config_flags` passes `file.py:arg`)."""
  if arg not in (None, *VARIANTS):
    raise ValueError(f"unknown config variant {arg!r}; valid: none, {', '.join(VARIANTS)}")
  config = _paper_config()
  if arg in ("demo", "tiny"):
    _shrink_to_demo(config)
  if arg == "tiny":
    _shrink_to_tiny(config)
  return config


def _paper_config() -> ml_collections.ConfigDict:
  """CWGAN-GP_128 as in the paper."""
  config = ml_collections.ConfigDict()
  config.seed = 0  # same config + seed → same samples

  config.data = data = ml_collections.ConfigDict()
  # 'tfds:NAME' | 'folder:PATH' (one subfolder per class) | 'synthetic' (built-in, offline).
  data.source = "tfds:oxford_flowers102"
  data.classes = ("dandelion", "marigold")  # label order; the original demo: 0 = dandelion
  # Our class name → the TFDS dataset's own label name.
  data.tfds_label_names = ml_collections.ConfigDict(
      {"dandelion": "common dandelion", "marigold": "english marigold"}
  )
  data.tfds_data_dir = ml_collections.FieldReference(None, field_type=str)
  data.tfds_splits = "all"  # the flower sets are tiny: train on every split
  data.image_size = 128
  # Augmentation as in the paper ("rotations and inversions"): reflect-padded rotation, flips.
  data.max_rotation_deg = 15.0
  data.random_hflip = True
  data.random_vflip = False
  # Class-balanced sampling (on): oxford_flowers102 has 67 marigolds but 92 dandelions, and
  # user folders are rarely balanced; without it the rarer class trains worse.
  data.balanced = True
  data.synthetic_num_per_class = 450  # used by source='synthetic' (450 + 450 like the paper)
  data.synthetic_seed = 0
  data.cache_dir = "~/.cache/flowergan"
  # Images with more pixels are skipped and counted as "too large" (PIL's decompression-bomb
  # limit, about 9459²); raise it for huge photos, 0 = no limit.
  data.max_image_pixels = 89_478_485
  # Input shards (0: one per process): each draws its batch share from its own part of the files
  # with its own key. Fix it (a multiple of the process count) to get the same global batches on
  # any number of hosts.
  data.input_shards = 0

  config.model = model = ml_collections.ConfigDict()
  model.z_dim = 64
  model.width = 64  # the original generator's hidden_dim: 1,123,011 parameters at 128×128
  model.upsample = "bilinear"  # 'bilinear' (paper) | 'transpose' (checkerboard comparison)
  model.critic_width = 64  # critic channels 64 → 128 → 256 → 256 → 512 at 128×128
  # 'projection' (Miyato & Koyama 2018) | 'concat' (one-hot channels on the input image).
  # Projection is the default, by measurement: the demo variant for 300 steps, seed 0, each mode
  # (2-core CPU): both give the requested class (synthetic.classify_by_hue agrees on 99.8% vs
  # 100% of 256 samples/class), but projection's samples are closer to the data (SWD mean 82.4
  # and 81.6 vs 89.6 and 88.6 over two SWD seeds, 200 samples/class) and look cleaner.
  model.conditioning = "projection"
  model.critic_normalization = "none"  # 'none' | 'layernorm' (never BatchNorm under GP)
  # How convolutions are computed (same parameters, same function): 'auto' picks the
  # formulations written for XLA:CPU on the CPU backend ('dots' for the generator, 'im2col' for
  # the critic, see flowergan/ops) and XLA's own convolutions ('lax') on GPU/TPU.
  model.generator_conv = "auto"  # 'auto' | 'dots' | 'lax'
  model.critic_conv = "auto"  # 'auto' | 'im2col' | 'lax'

  config.train = train = ml_collections.ConfigDict()
  train.batch_size = 64  # global, over all devices
  # Generator steps. WGAN-GP trained 100k–200k generator iterations (Gulrajani et al.); for a
  # ~900-image set, 20k iterations (100k critic steps) is where samples stop improving
  # visibly (an estimate: the original's schedule is not public).
  train.num_steps = 20_000
  train.n_critic = 5
  train.gp_weight = 10.0
  train.generator_lr = 1e-4
  train.critic_lr = 1e-4
  train.adam_b1 = 0.0
  train.adam_b2 = 0.9
  train.dtype = "float32"  # 'float32' | 'bfloat16' (activations; params and GP stay float32)
  train.ema_decay = 0.999  # generator EMA used for sampling
  train.ema_warmup = True
  train.diffaugment = ""  # e.g. 'color,translation,cutout' for small data
  # A workdir of `python -m flowergan.import_torch` has the authors' generator but a random
  # critic (theirs was never published); training it must be asked for explicitly.
  train.fresh_critic = False

  config.log_every = 50
  config.sample_every = 1000
  config.checkpoint_every = 1000
  config.keep_checkpoints = 3
  # Evaluation (flowergan/evaluate.py) every eval_every steps and at the end; 0 = only at the
  # end, < 0 = never. Also: python -m flowergan.evaluate --workdir=runs/NAME
  config.eval_every = 0
  # Besides the latest `keep_checkpoints`, keep the `keep` best evaluated checkpoints by this key
  # of the evaluation's results (metrics.jsonl): the class-averaged KID, lower is better.
  # `python sample.py --step=best` samples the best one; metric '' keeps only the latest.
  config.best_checkpoint = ml_collections.ConfigDict({"metric": "kid", "mode": "min", "keep": 1})

  # What the evaluation measures and with how many samples: see flowergan/eval_config.py,
  # override as --config.eval.num_per_class=500.
  config.eval = eval_config.default_eval_config()
  return config


def _shrink_to_demo(config: ml_collections.ConfigDict) -> None:
  """The `demo` variant: built-in synthetic data, 32×32, half the widths, 500 steps."""
  config.data.source = "synthetic"
  config.data.image_size = 32
  config.data.synthetic_num_per_class = 200
  config.model.width = 32
  config.model.critic_width = 32
  config.train.batch_size = 32
  config.train.num_steps = 500
  config.log_every = 20
  config.sample_every = 100
  config.checkpoint_every = 200
  # The evaluation that ends the run, lighter than the paper's so the demo stays within minutes.
  config.eval.num_per_class = 200
  config.eval.classifier_steps = 300
  config.eval.kid_subset_size = 100  # < num_per_class, so the subsets differ and KID has a spread


def _shrink_to_tiny(config: ml_collections.ConfigDict) -> None:
  """The `tiny` variant (on top of `demo`): what the tests train, in seconds on a CPU."""
  config.data.image_size = 16
  config.data.synthetic_num_per_class = 16
  config.model.z_dim = 8
  config.model.width = 8
  config.model.critic_width = 8
  config.train.batch_size = 8
  config.train.n_critic = 2
  config.train.num_steps = 4
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
