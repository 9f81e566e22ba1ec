"""Tests for flowergan.tfds_source: filtering and relabelling a prepared TFDS data set (mock data,
no network), and the one-line errors."""

import numpy as np
import pytest
from PIL import Image

from flowergan import data_sources
from tests.image_folders import S, assert_one_line_error, data_config

TFDS_CFG = dict(classes=("dandelion", "marigold", "pink primrose", "canterbury bells"))


def test_tfds_filter_and_remap():
  import tensorflow_datasets as tfds

  with tfds.testing.mock_data(num_examples=300):
    builder = tfds.builder("oxford_flowers102")
    names = builder.info.features["label"].names
    raw = list(builder.as_dataset(split="all", shuffle_files=False).as_numpy_iterator())
    cfg = data_config(source="tfds:oxford_flowers102", **TFDS_CFG)
    images, labels, classes = data_sources.load_images(cfg)
    shards = [data_sources.load_images(cfg, process_index=i, process_count=2) for i in range(2)]
    # Without data.classes: the classes that data.tfds_label_names maps, sorted.
    paper = data_config(source="tfds:oxford_flowers102", classes=())
    paper_images, paper_labels, paper_classes = data_sources.load_images(paper)
  assert paper_classes == ["dandelion", "marigold"]
  np.testing.assert_array_equal(paper_labels, labels[labels < 2])
  np.testing.assert_array_equal(paper_images, images[labels < 2])
  assert classes == list(TFDS_CFG["classes"])
  theirs = ["common dandelion", "english marigold", "pink primrose", "canterbury bells"]
  expected_images, expected_labels = [], []
  for ours, their_name in enumerate(theirs):
    for ex in raw:
      if names[ex["label"]] == their_name:
        expected_labels.append(ours)
        h, w = ex["image"].shape[:2]
        side = min(h, w)
        box = ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)
        expected_images.append(
            np.asarray(
                Image.fromarray(ex["image"]).resize((S, S), Image.Resampling.LANCZOS, box=box)
            )
        )
  assert len(set(expected_labels)) == 4  # every class occurs in the mock data
  assert len(expected_labels) < len(raw)  # and the filter removed something
  np.testing.assert_array_equal(labels, expected_labels)
  np.testing.assert_array_equal(images, np.stack(expected_images))
  assert sum(len(s[1]) for s in shards) == len(labels)
  for k in range(4):
    assert sum(int((s[1] == k).sum()) for s in shards) == int((labels == k).sum())


def test_tfds_unknown_label_name():
  cfg = data_config(
      source="tfds:oxford_flowers102",
      classes=("dandelion",),
      tfds_label_names={"dandelion": "dandelon"},
  )
  with pytest.raises(ValueError) as e:
    data_sources.load_images(cfg)
  assert_one_line_error(e, "'dandelon'", "did you mean 'common dandelion'?", "tfds_label_names")


def test_tfds_not_downloaded(tmp_path):
  cfg = data_config(
      source="tfds:oxford_flowers102",
      classes=("dandelion", "marigold"),
      tfds_data_dir=str(tmp_path),
  )
  with pytest.raises(ValueError) as e:
    data_sources.load_images(cfg)
  assert_one_line_error(e, "not downloaded", "no network", "folder:", "synthetic")


def test_tfds_unknown_dataset():
  with pytest.raises(ValueError) as e:
    data_sources.load_images(data_config(source="tfds:no_such_dataset_xyz", classes=("a",)))
  assert_one_line_error(e, "no_such_dataset_xyz", "folder:", "synthetic")
