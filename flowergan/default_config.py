r"""Every config field flowergan reads, with its default: CWGAN-GP_128 as in the paper.

Config files build on it (`configs/cwgan128.py` and its `demo` / `tiny` variants, as the Flax
examples' `configs/tpu.py` builds on `default.py`), and a config stored in a checkpoint is
merged over it in one place, `from_stored` (older checkpoints lack newer fields). Importable
without JAX or TensorFlow. The values are checked by `flowergan.config_checks.validate`. The
`model` and `train` sections' values are plain Python in `flowergan.hyperparameters`, which
the benchmarks read on machines without ml_collections.
"""

from __future__ import annotations

import ml_collections

from flowergan import hyperparameters, storage

CACHE_DIR = storage.CACHE_DIR  # where synthetic data is rendered (`data.cache_dir`)
DEFAULT_CLASSES = ("dandelion", "marigold")  # the paper's, the synthetic set's
SECTIONS = ("data", "model", "train")  # every stored config has them; without one it is damaged
MAPPINGS = ("tfds_label_names",)  # dict-valued fields: a stored one replaces the default whole


def get_config() -> ml_collections.ConfigDict:
  """CWGAN-GP_128 as in the paper: every field, with its default."""
  config = ml_collections.ConfigDict()
  config.seed = 0  # same config + seed → same samples
  config.data = _data()
  config.model = _model()
  config.train = _train()

  config.log_every = 50
  config.sample_every = 1000
  config.checkpoint_every = 1000
  config.keep_checkpoints = 3
  # Evaluation (flowergan/evaluate.py) every eval_every steps and at the end; 0 = only at the
  # end, < 0 = never. Also: python evaluate.py --workdir=runs/NAME
  config.eval_every = 0
  # Besides the latest `keep_checkpoints`, keep the `keep` best evaluated checkpoints by this key
  # of the evaluation's results (metrics.jsonl): the class-averaged KID, lower is better.
  # 'fid' ranks by the Inception FID (`inception/fid`; needs eval.inception_weights, mode 'min').
  # `python sample.py --step=best` samples the best one; metric '' keeps only the latest.
  config.best_checkpoint = ml_collections.ConfigDict({"metric": "kid", "mode": "min", "keep": 1})
  # What the evaluation measures and with how many samples; override as
  # --config.eval.num_per_class=500.
  config.eval = _eval()
  return config


def _data() -> ml_collections.ConfigDict:
  data = ml_collections.ConfigDict()
  # 'tfds:NAME' | 'folder:PATH' (one subfolder per class) | 'synthetic' (built-in, offline).
  data.source = "tfds:oxford_flowers102"
  # Label order; empty: the source's own classes (`classes_of`), i.e. the sorted subfolder
  # names of 'folder:PATH', and DEFAULT_CLASSES (the original demo: 0 = dandelion) for the
  # synthetic flowers and the default TFDS data set.
  data.classes = ()
  # Our class name → the TFDS dataset's own label name; with data.classes empty, its sorted keys
  # are the classes of a 'tfds:NAME' source.
  data.tfds_label_names = ml_collections.ConfigDict(
      {"dandelion": "common dandelion", "marigold": "english marigold"}
  )
  data.tfds_data_dir = ml_collections.FieldReference(None, field_type=str)
  data.tfds_splits = "all"  # the flower sets are tiny: train on every split
  data.image_size = hyperparameters.IMAGE_SIZE
  # Augmentation as in the paper ("rotations and inversions"): reflect-padded rotation, flips.
  data.max_rotation_deg = 15.0
  data.random_hflip = True
  data.random_vflip = False
  # Class-balanced sampling (on): oxford_flowers102 has 67 marigolds but 92 dandelions, and
  # user folders are rarely balanced; without it the rarer class trains worse.
  data.balanced = True
  data.synthetic_num_per_class = 450  # used by source='synthetic' (450 + 450 like the paper)
  data.synthetic_seed = 0
  data.cache_dir = CACHE_DIR
  # Images with more pixels are skipped and counted as "too large" (PIL's decompression-bomb
  # limit, about 9459²); raise it for huge photos, 0 = no limit.
  data.max_image_pixels = 89_478_485
  # Input shards (0: one per process): each draws its batch share from its own part of the files
  # with its own key. Fix it (a multiple of the process count) to get the same global batches on
  # any number of hosts.
  data.input_shards = 0
  return data


def _model() -> ml_collections.ConfigDict:
  """`config.model`: the networks (their fields and why, in `flowergan.hyperparameters`)."""
  return ml_collections.ConfigDict(dict(hyperparameters.MODEL))


def _train() -> ml_collections.ConfigDict:
  """`config.train`: the training recipe (its fields and why, in `flowergan.hyperparameters`)."""
  train = ml_collections.ConfigDict(dict(hyperparameters.TRAIN))
  train.ada = _ada()
  return train


def _ada() -> ml_collections.ConfigDict:
  """`config.train.ada`: adaptive augmentation of the critic's inputs (`flowergan.ada`); off."""
  return ml_collections.ConfigDict(dict(hyperparameters.ADA))


def _eval() -> ml_collections.ConfigDict:
  """`config.eval`: what `flowergan.evaluate` measures."""
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
  # Its training augmentation: 'flip' (random horizontal flips), 'translate' (random shifts by
  # up to 1/8 of the size), comma-separated. Shifts did not help on the one set measured
  # (600 drawn shapes, 300 steps: 0.250 vs 0.258 held out with flips alone), so flips only.
  ev.classifier_augment = "flip"
  ev.kid_subsets = 100
  ev.kid_subset_size = 1000
  ev.swd_nhoods_per_image = 128
  # Inception FID/KID/precision/recall (protocol pytorch-fid 0.3.0) need the user's weights file
  # pt_inception-2015-12-05-6726825d.pth (flowergan never downloads it); '' = not measured.
  # `python evaluate.py --inception=FILE` overrides it.
  ev.inception_weights = ""
  ev.inception_batch_size = 64  # images per Inception batch (at 299×299)
  return ev


def classes_of(data) -> tuple[str, ...]:
  """The class names of `data` (a config's `data`) known before any data is read.

  `data.classes` if set; else a synthetic source's classes (`DEFAULT_CLASSES`) or a TFDS
  source's, the sorted keys of `data.tfds_label_names`; else () (a folder source: its sorted
  subfolder names, known once it is listed).
  """
  if data.get("classes"):
    return tuple(data.classes)
  source = str(data.get("source", ""))
  if source == "synthetic":
    return DEFAULT_CLASSES
  if source.startswith("tfds:"):
    return tuple(sorted(data.get("tfds_label_names") or {}))
  return ()


def from_stored(stored: dict) -> ml_collections.ConfigDict:
  """A config stored as a dict (checkpoint metadata) merged over the defaults.

  Older checkpoints lack newer fields; each gets its default here, except `best_checkpoint`:
  a run from before it did not rank its checkpoints (none of them carries metrics), so its
  metric stays '' (not ranked). Stored fields the defaults do not know are kept as they are.

  Raises:
    ValueError: `stored` is not a dict, or lacks one of `SECTIONS` (the caller calls that
      damage).
  """
  if not isinstance(stored, dict):
    raise ValueError(f"the stored config is a {type(stored).__name__}, not a dict")
  missing = [s for s in SECTIONS if not isinstance(stored.get(s), dict)]
  if missing:
    raise ValueError(f"the stored config lacks {', '.join(missing)}")
  defaults = get_config().to_dict()
  if "best_checkpoint" not in stored:
    defaults["best_checkpoint"]["metric"] = ""
  return ml_collections.ConfigDict(_merged(defaults, stored))


def _merged(defaults: dict, stored: dict) -> dict:
  """`stored` over `defaults`, recursively into the sections both hold as dicts."""
  out = dict(defaults)
  for key, value in stored.items():
    if isinstance(value, dict) and isinstance(out.get(key), dict) and key not in MAPPINGS:
      out[key] = _merged(out[key], value)
    else:
      out[key] = value
  return out
