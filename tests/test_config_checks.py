"""flowergan.config_checks: one validation pass naming every bad value in one line; class names
that could choose where files go are refused; file names come from a sanitised form."""

import pytest

from flowergan import config_checks
from tests import tiny_config

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
]


@pytest.mark.parametrize("section, field, value, needle", BAD_VALUES)
def test_each_bad_config_value_is_one_line(section, field, value, needle):
  config = tiny_config.get_config()
  config[section][field] = value
  with pytest.raises(config_checks.ConfigError) as e:
    config_checks.validate(config)
  assert needle in str(e.value) and "\n" not in str(e.value)


def test_the_shipped_configs_are_valid_and_the_choices_match_the_code():
  from flowergan import diffaugment, ops

  for variant in (None, "demo", "tiny"):
    config_checks.validate(tiny_config.load_config_file(tiny_config.CONFIG_FILE, variant))
  assert config_checks.DIFFAUGMENT_POLICIES == diffaugment.VALID_POLICIES
  for role in ("generator", "critic"):
    assert config_checks.CHOICES[f"model.{role}_conv"] == ops.CONV_CHOICES[role]


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
