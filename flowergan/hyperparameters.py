"""CWGAN-GP_128's network and training hyperparameters as plain Python, without ml_collections.

`flowergan.default_config` builds the config's `model` and `train` sections from `MODEL` and
`TRAIN` and sets `data.image_size` to `IMAGE_SIZE`; the `tiny` variant of configs/cwgan128.py
applies `TINY`. benchmarks/accelerator_check.py builds its config from here too: the accelerator
machines it runs on lack ml_collections.
"""

from __future__ import annotations

IMAGE_SIZE = 128  # data.image_size: the paper's 128×128 images

MODEL = {
    "z_dim": 64,
    "width": 64,  # the original generator's hidden_dim: 1,123,011 parameters at 128×128
    "upsample": "bilinear",  # 'bilinear' (paper) | 'transpose' (checkerboard comparison)
    "critic_width": 64,  # critic channels 64 → 128 → 256 → 256 → 512 at 128×128
    # 'projection' (Miyato & Koyama 2018) | 'concat' (one-hot channels on the input image).
    # Projection is the default, by measurement: the demo variant for 300 steps, seed 0, each
    # mode (2-core CPU): both give the requested class (synthetic.classify_by_hue agrees on 99.8%
    # vs 100% of 256 samples/class), but projection's samples are closer to the data (SWD mean
    # 82.4 and 81.6 vs 89.6 and 88.6 over two SWD seeds, 200 samples/class) and look cleaner.
    "conditioning": "projection",
    "critic_normalization": "none",  # 'none' | 'layernorm' (never BatchNorm under GP)
    # How convolutions are computed (same parameters, same function): 'auto' picks the
    # formulations written for XLA:CPU on the CPU backend ('dots' for the generator, 'im2col' for
    # the critic, see flowergan/ops) and XLA's own convolutions ('lax') on GPU/TPU.
    "generator_conv": "auto",  # 'auto' | 'dots' | 'lax'
    "critic_conv": "auto",  # 'auto' | 'im2col' | 'lax'
    # How the generator's 3×3 convs pad the border: 'zeros' (the original's, which its weights
    # and every checkpoint from before this field were trained with) | 'reflect' (the demo
    # variant's: with zeros its few hundred steps leave a dark frame around every image,
    # docs/demo_quality.md). Same parameters either way.
    "generator_padding": "zeros",
}

TRAIN = {
    "batch_size": 64,  # global, over all devices
    # Generator steps. WGAN-GP trained 100k–200k generator iterations (Gulrajani et al.); for a
    # ~900-image set, 20k iterations (100k critic steps) is where samples stop improving
    # visibly (an estimate: the original's schedule is not public).
    "num_steps": 20_000,
    "n_critic": 5,
    "gp_weight": 10.0,
    "generator_lr": 1e-4,
    "critic_lr": 1e-4,
    "adam_b1": 0.0,
    "adam_b2": 0.9,
    "dtype": "float32",  # 'float32' | 'bfloat16' (activations; params and GP stay float32)
    "ema_decay": 0.999,  # generator EMA used for sampling
    "ema_warmup": True,
    "diffaugment": "",  # e.g. 'color,translation,cutout' for small data
    # A workdir of `python import_torch.py` has the authors' generator but a random critic
    # (theirs was never published); training it must be asked for explicitly.
    "fresh_critic": False,
}

# `config.train.ada`: adaptive augmentation of the critic's inputs (`flowergan.ada`), off: the
# paper's recipe. p rises while more than `target` of the (real, generated) pairs of a critic
# batch are ranked real first (`real_above_fake`, shift-invariant), and falls below it.
ADA = {
    "enabled": False,  # on: the small-data candidate (docs/small_data.md)
    "target": 0.6,
    "interval": 4,  # iterations between adjustments of p (StyleGAN2-ADA: 4 minibatches)
    "kimg": 500.0,  # thousands of real images for p to cross [0, 1] (StyleGAN2-ADA's 500)
    "hue": False,  # hue rotation changes what a colour-defined class looks like: off
}

# The `tiny` variant's network and training, by section: what the tests (and the accelerator
# check's --tiny) run in seconds on a CPU. configs/cwgan128.py shrinks its data set, logging and
# evaluation.
TINY = {
    "data": {"image_size": 16},
    "model": {"z_dim": 8, "width": 8, "critic_width": 8, "generator_padding": "reflect"},
    "train": {"batch_size": 8, "n_critic": 2, "num_steps": 4},
}
