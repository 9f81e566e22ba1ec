"""flowergan.default_config: every field with its default, the config file built on it, and
stored configs merged over it."""

import json
import pathlib

import pytest

from flowergan import best_checkpoint, checkpointing, config_checks, default_config
from tests import tiny_config

# `get_config(variant).to_json()` of configs/cwgan128.py for each variant, written by the code
# from before the defaults moved into the package (commit 8c9eeb7): the move changes no value.
SNAPSHOT = pathlib.Path(__file__).parent / "data" / "cwgan128_config_values.json"
VARIANTS = {"paper": None, "demo": "demo", "tiny": "tiny"}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_config_file_values_are_unchanged(name):
  config = tiny_config.load_config_file(tiny_config.CONFIG_FILE, VARIANTS[name])
  expected = json.loads(SNAPSHOT.read_text())[name]
  actual = json.loads(config.to_json())
  # One change since: data.classes is empty (a folder source's sorted subfolders), and the
  # synthetic and TFDS sources of the shipped configs resolve it to the same classes as before.
  assert actual["data"].pop("classes") == []
  assert list(default_config.classes_of(config.data)) == expected["data"].pop("classes")
  # New fields since, off by default: the Inception metrics are measured only with the weights.
  assert actual["eval"].pop("inception_weights") == ""
  assert actual["eval"].pop("inception_batch_size") == 64
  # The evaluation classifier's augmentation, as it was before the field existed: flips.
  assert actual["eval"].pop("classifier_augment") == "flip"
  # The generator's padding: the original's zeros, reflection in the demo (and tiny) variant.
  assert actual["model"].pop("generator_padding") == ("zeros" if name == "paper" else "reflect")
  # Adaptive augmentation (flowergan/ada.py): off in every shipped variant.
  assert actual["train"].pop("ada")["enabled"] is False
  # Compared as JSON text: an int that became a float (or back) differs too.
  assert json.dumps(actual, sort_keys=True) == json.dumps(expected, sort_keys=True)


def test_snapshot_holds_the_variants_documented_values():
  """The snapshot itself says what configs/cwgan128.py documents for each variant."""
  snap = json.loads(SNAPSHOT.read_text())
  sizes = {n: (c["data"]["image_size"], c["model"]["width"]) for n, c in snap.items()}
  assert sizes == {"paper": (128, 64), "demo": (32, 32), "tiny": (16, 8)}
  assert snap["paper"]["data"]["source"] == "tfds:oxford_flowers102"
  assert snap["demo"]["data"]["source"] == snap["tiny"]["data"]["source"] == "synthetic"
  assert [snap[n]["train"]["num_steps"] for n in ("paper", "demo", "tiny")] == [20_000, 300, 4]
  assert snap["paper"]["eval"]["num_per_class"] == 1000 and snap["tiny"]["eval"]["kid_subsets"] == 5


def test_the_paper_config_is_the_default_config():
  paper = tiny_config.load_config_file(tiny_config.CONFIG_FILE)
  assert paper.to_dict() == default_config.get_config().to_dict()
  config_checks.validate(default_config.get_config())


def test_one_default_cache_dir():
  assert default_config.get_config().data.cache_dir == default_config.CACHE_DIR
  assert default_config.CACHE_DIR == "~/.cache/flowergan"


def test_a_stored_config_keeps_its_values_and_gets_missing_fields_from_the_defaults():
  stored = tiny_config.get_config().to_dict()
  stored["data"]["classes"] = ["a", "b"]  # JSON has lists, not tuples
  stored["data"]["tfds_label_names"] = {"a": "A"}  # a mapping is replaced, not merged
  del stored["model"]["critic_conv"], stored["data"]["input_shards"], stored["eval"]
  stored["removed_since"] = 7  # a field this version does not know
  config = default_config.from_stored(stored)
  assert config.model.width == 8 and config.data.image_size == 16  # stored values win
  assert config.model.critic_conv == "auto" and config.data.input_shards == 0
  assert config.eval.to_dict() == default_config.get_config().eval.to_dict()
  assert dict(config.data.tfds_label_names) == {"a": "A"}
  assert config.removed_since == 7
  assert config.best_checkpoint.metric == "kid"  # stored


def test_a_stored_config_lacking_a_field_gets_the_one_default_of_default_config():
  """No reader has a default of its own (a `.get(name, default)` could contradict this one)."""
  from flowergan import models

  stored = tiny_config.get_config().to_dict()
  del stored["data"]["source"], stored["model"]["generator_conv"]
  del stored["model"]["generator_padding"]  # the tiny variant's is 'reflect'
  config = default_config.from_stored(stored)
  defaults = default_config.get_config()
  assert config.data.source == defaults.data.source == "tfds:oxford_flowers102"
  assert config.model.generator_conv == defaults.model.generator_conv == "auto"
  # Checkpoints from before the field trained with zeros: they sample the same pixels.
  assert config.model.generator_padding == defaults.model.generator_padding == "zeros"
  config_checks.validate(config)
  generator = models.build_generator(config.model, image_size=16, num_classes=2)
  assert generator.conv == models.conv_module("auto", role="generator")
  assert generator.padding == "zeros"


def test_a_stored_config_from_before_best_checkpoint_is_not_ranked():
  """Checkpoints of such runs carry no metrics: ranking them by the default would find none."""
  stored = tiny_config.get_config().to_dict()
  del stored["best_checkpoint"]
  config = default_config.from_stored(stored)
  assert best_checkpoint.best_checkpoint_of(config) is None


@pytest.mark.parametrize("stored", [[1, 2], {"data": {}, "model": {}}, {"data": 1, "model": {}}])
def test_a_stored_config_without_its_sections_is_refused(stored):
  with pytest.raises(ValueError, match="stored config"):
    default_config.from_stored(stored)


def test_checkpoint_metadata_is_read_through_from_stored():
  stored = tiny_config.get_config().to_dict()
  del stored["train"]["fresh_critic"]
  config = checkpointing.config_from_metadata({"config": stored})
  assert config.train.fresh_critic is False and config.train.n_critic == 2


@pytest.mark.parametrize("variant", [None, "demo", "tiny"])
def test_the_shipped_configs_train_the_papers_classes_on_synthetic_and_tfds_data(variant):
  """data.classes is empty (a folder's sorted subfolders); the built-in sources have theirs."""
  from flowergan import synthetic

  data = tiny_config.load_config_file(tiny_config.CONFIG_FILE, variant).data
  assert tuple(data.classes) == ()
  assert default_config.classes_of(data) == default_config.DEFAULT_CLASSES
  assert default_config.DEFAULT_CLASSES == synthetic.CLASS_NAMES == ("dandelion", "marigold")
  for source in ("synthetic", "tfds:oxford_flowers102"):
    data.source = source
    assert default_config.classes_of(data) == ("dandelion", "marigold")
  data.source = "folder:/photos"
  assert default_config.classes_of(data) == ()  # known once the folder is listed
  data.classes = ("marigold", "dandelion")
  assert default_config.classes_of(data) == ("marigold", "dandelion")
