"""A shrunken copy of configs/cwgan128.py so tests run the real code in seconds on a CPU."""

import importlib.util
import pathlib

REPO = pathlib.Path(__file__).resolve().parents[1]


def load_config_file(path):
  """`get_config()` of a config file, as config_flags would load it."""
  spec = importlib.util.spec_from_file_location(pathlib.Path(path).stem, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def get_config(image_size=16, cache_dir=None):
  config = load_config_file(REPO / "configs" / "cwgan128.py")
  config.data.source = "synthetic"
  config.data.image_size = image_size
  config.data.synthetic_num_per_class = 16
  if cache_dir is not None:
    config.data.cache_dir = str(cache_dir)
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
  return config
