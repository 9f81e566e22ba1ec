r"""The embedded default: built-in synthetic flowers, small enough to train on 2 CPU cores.

  python train.py --config=configs/demo.py      # → runs/demo/samples/*.png
  python sample.py --workdir=runs/demo --label=marigold

Everything but the data, the resolution and the widths is the paper's model and WGAN-GP
recipe (configs/cwgan128.py). Measured time: see the README.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cwgan128  # noqa: E402  (config files are loaded by path, not as a package)


def get_config():
  config = cwgan128.get_config()
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
  # The evaluation that ends the run, lighter than cwgan128's so the demo stays within minutes.
  config.eval.num_per_class = 200
  config.eval.classifier_steps = 300
  config.eval.kid_subset_size = 100  # < num_per_class, so the subsets differ and KID has a spread
  return config
