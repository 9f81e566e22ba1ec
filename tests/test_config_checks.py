"""flowergan.config_checks: one validation pass naming every bad value in one line; class names
that could choose where files go are refused; file names come from a sanitised form."""

import pytest

from flowergan import config_checks
from tests import cli_run, tiny_config

HOSTILE = ["../../x", "a/b", "..", ".hidden", "", "tab\there", "new\nline", "x" * 101]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_class_names_are_refused_in_the_config(name):
  config = tiny_config.get_config()
  config.data.classes = (name, "marigold")
  with pytest.raises(config_checks.ConfigError, match="class name"):
    config_checks.validate(config)


def test_sample_file_names_come_from_a_sanitised_form():
  assert config_checks.file_stem("../../x") == "_.._x"
  assert config_checks.file_stem("a\nb") == "a_b"
  assert config_checks.file_stem("common dandelion") == "common dandelion"


BAD_VALUES = [
    ("data", "image_size", 100, "power of two"),
    ("train", "dtype", "float16", "'float32', 'bfloat16'"),
    ("train", "diffaugment", "colour", "unknown policies ['colour']"),
    ("model", "upsample", "nearest", "'bilinear', 'transpose'"),
    ("model", "conditioning", "xx", "'projection', 'concat'"),
    ("model", "generator_conv", "fast", "'auto', 'dots', 'lax'"),
    ("train", "generator_lr", 0.0, "generator_lr must be a finite number > 0"),
    ("train", "critic_lr", -1e-4, "critic_lr must be a finite number > 0"),
    ("train", "gp_weight", -1.0, "gp_weight must be a finite number >= 0"),
    ("train", "gp_weight", float("nan"), "gp_weight"),
    ("train", "ema_decay", 1.0, "ema_decay must be a finite number in [0, 1)"),
    ("train", "ema_decay", -0.1, "ema_decay"),
    ("data", "max_rotation_deg", -5.0, "max_rotation_deg"),
    ("train", "batch_size", 0, "batch_size must be an integer >= 1"),
    ("data", "source", "hdf5:x", "'folder:PATH'"),
    ("model", "generator_padding", "circular", "must be one of 'zeros', 'reflect'"),
]


@pytest.mark.parametrize("section, field, value, needle", BAD_VALUES)
def test_each_bad_config_value_is_one_line(section, field, value, needle):
  config = tiny_config.get_config()
  config[section][field] = value
  with pytest.raises(config_checks.ConfigError) as e:
    config_checks.validate(config)
  assert needle in str(e.value) and "\n" not in str(e.value)


def test_the_shipped_configs_are_valid_and_the_choices_match_the_code():
  from flowergan import diffaugment, models, ops

  for variant in (None, "demo", "tiny"):
    config_checks.validate(tiny_config.load_config_file(tiny_config.CONFIG_FILE, variant))
  assert config_checks.DIFFAUGMENT_POLICIES == diffaugment.VALID_POLICIES
  for role in ("generator", "critic"):
    assert config_checks.CHOICES[f"model.{role}_conv"] == ops.CONV_CHOICES[role]
  assert config_checks.CHOICES["model.generator_padding"] == models.PADDINGS


@pytest.mark.parametrize("mode, keep", [("lowest", 1), ("min", 0), ("max", "2")])
def test_a_best_checkpoint_that_cannot_rank_is_refused_in_the_validation_pass(mode, keep):
  config = tiny_config.get_config()
  config.best_checkpoint = {"metric": "kid", "mode": mode, "keep": keep}
  config.data.image_size = 100  # reported in the same line
  with pytest.raises(config_checks.ConfigError) as e:
    config_checks.validate(config)
  message = str(e.value)
  assert "config.best_checkpoint: mode must be 'min' or 'max' and keep >= 1" in message
  assert "power of two" in message and "\n" not in message


def test_an_unranked_best_checkpoint_needs_no_mode():
  config = tiny_config.get_config()
  config.best_checkpoint.metric, config.best_checkpoint.mode = "", "whatever"
  config_checks.validate(config)


@pytest.mark.parametrize("key", list(config_checks.SEED_RANGES))
@pytest.mark.parametrize("value", [2**70, -(2**70), 2**63])
def test_seeds_that_do_not_fit_64_bits_are_refused_in_the_validation_pass(key, value):
  config = tiny_config.get_config()
  *section, name = key.split(".")
  (config[section[0]] if section else config)[name] = value
  with pytest.raises(config_checks.ConfigError) as e:
    config_checks.validate(config)
  assert f"config.{key} must be an integer in [" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("key", list(config_checks.SEED_RANGES))
def test_every_seed_the_validation_pass_accepts_makes_a_key(key):
  import jax

  low, high = config_checks.SEED_RANGES[key]
  for value in (low, high):
    config = tiny_config.get_config()
    *section, name = key.split(".")
    (config[section[0]] if section else config)[name] = value
    config_checks.validate(config)
    # The training run also draws from `seed + 1`.
    for seed in (value, value + 1) if key == "seed" else (value,):
      jax.random.key(seed)


def test_a_seed_flag_is_checked_where_it_is_read():
  import jax

  jax.random.key(config_checks.check_seed(config_checks.MAX_SEED, "--seed"))
  for value in (config_checks.MAX_SEED + 1, 2**70, -1):
    with pytest.raises(config_checks.ConfigError, match=r"--seed must be an integer in \[0, "):
      config_checks.check_seed(value, "--seed")


@pytest.mark.parametrize(
    "script, flag",
    [
        ("train.py", f"--config.seed={2**70}"),
        ("sample.py", f"--seed={2**70}"),
        ("sample.py", f"--interpolate=3,{2**70}"),
        ("evaluate.py", f"--seed={2**70}"),
    ],
)
def test_a_seed_beyond_64_bits_is_one_line_before_anything_is_read_or_written(
    tmp_path, script, flag
):
  more = {
      "train.py": [*cli_run.TINY_FLAGS, f"--config.data.cache_dir={tmp_path / 'cache'}"],
      "sample.py": ["--label=a"],
      "evaluate.py": [f"--cache_dir={tmp_path / 'cache'}"],
  }[script]
  result = cli_run.run(script, *more, flag, f"--workdir={tmp_path / 'run'}", devices=1)
  cli_run.assert_one_line_error(result, "seed", "must be an integer in [")
  assert list(tmp_path.iterdir()) == []  # no workdir, lock, checkpoint folder or cache
