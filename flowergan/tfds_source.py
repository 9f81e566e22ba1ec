"""The TFDS source, `data.source='tfds:NAME'`: an already prepared TFDS data set.

Never downloaded here. Examples are read with the image left encoded, filtered to the wanted
labels (`features['label'].names` + `data.tfds_label_names`), relabelled 0..K-1, then decoded
by `flowergan.decoding`, as folders are. Without `data.classes`, the wanted classes are the
sorted keys of `data.tfds_label_names`. Multi-host: the examples of every class are sharded
`[process_index::process_count]`.

TensorFlow and tensorflow_datasets are imported when a data set is read, not with this module,
so that reading folder / synthetic data never loads them. `host_tensorflow` is TensorFlow as
the host uses it (this source and `flowergan.input_pipeline`), with the accelerators hidden.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from flowergan import cli, data_errors, decoding, default_config


def host_tensorflow():
  """TensorFlow, imported on first call, with GPUs/TPUs hidden from it.

  It only feeds the host (the input pipeline and the TFDS source): it must not grab accelerator
  memory.
  """
  tf = cli.import_tensorflow()
  for kind in ("GPU", "TPU"):
    try:
      tf.config.set_visible_devices([], kind)
    except Exception:  # pylint: disable=broad-except  # no such device type / already initialised
      pass
  return tf


_TFDS_ALTERNATIVES = "or use data.source='folder:PATH' (one subfolder per class) or 'synthetic'"


def load_tfds(name: str, data_config, size: int, process_index: int, process_count: int):
  """`tfds:NAME`: the wanted classes of a prepared TFDS data set, decoded like a folder's."""
  classes = [str(c) for c in default_config.classes_of(data_config)]
  if not classes:
    raise data_errors.data_error(
        f"data.classes (or the keys of data.tfds_label_names) must list the wanted classes "
        f"for data.source='tfds:{name}' (e.g. ('dandelion', 'marigold'))."
    )
  split = data_config.tfds_splits or "all"
  data_dir = data_config.tfds_data_dir
  if data_dir:
    data_dir = os.path.expanduser(str(data_dir))
  builder = _tfds_builder(name, data_dir)
  image_key, label_names = _tfds_features(name, builder)
  label_map = data_config.tfds_label_names or {}
  lut = _tfds_label_lut(name, classes, label_map, label_names)
  encoded = _read_tfds_encoded(name, builder, split, data_dir, image_key, lut, len(classes))
  per_class, skipped, max_pixels = [], decoding.Skipped(), int(data_config.max_image_pixels)
  for c, blobs in zip(classes, encoded):
    shard = blobs[process_index::process_count]
    names = [f"{c}#{i}" for i in range(len(shard))]
    results = decoding.decode_many(shard, size, names, max_pixels, skipped)
    per_class.append([r for r in results if r is not None])
  decoding.warn_skipped(f"tfds:{name}", skipped, max_pixels)
  for c, arrays, blobs in zip(classes, per_class, encoded):
    if not arrays:
      raise data_errors.data_error(
          f"Class '{c}' has no readable images in TFDS dataset '{name}' split '{split}'"
          f" ({len(blobs)} examples, {process_count} processes): choose another "
          "class / split (data.tfds_splits='all')."
      )
  images, labels = decoding.stack_classes(per_class, size)
  return images, labels, classes


def _tfds_builder(name: str, data_dir: str | None):
  """`tfds.builder(name)`, or a one-line error naming the alternatives."""
  host_tensorflow()  # GPUs/TPUs hidden before tfds imports TensorFlow
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  try:
    return tfds.builder(name, data_dir=data_dir)
  except Exception as e:  # pylint: disable=broad-except  # DatasetNotFoundError and friends
    raise data_errors.data_error(
        f"Cannot open TFDS dataset '{name}' ({type(e).__name__}: "
        f"{str(e).splitlines()[0] if str(e) else ''}): check the name, "
        f"{_TFDS_ALTERNATIVES}."
    ) from e


def _tfds_features(name: str, builder) -> tuple[str, list[str]]:
  """The image feature's key and the names of the ClassLabel feature `label`."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  features = builder.info.features
  label_feature = features["label"] if "label" in features else None
  if label_feature is None or not hasattr(label_feature, "names"):
    raise data_errors.data_error(
        f"TFDS dataset '{name}' has no ClassLabel feature 'label'; {_TFDS_ALTERNATIVES}."
    )
  image_key = (
      "image"
      if "image" in features
      else next((k for k, f in features.items() if isinstance(f, tfds.features.Image)), None)
  )
  if image_key is None:
    raise data_errors.data_error(
        f"TFDS dataset '{name}' has no image feature; {_TFDS_ALTERNATIVES}."
    )
  return image_key, list(label_feature.names)


def _tfds_label_lut(name: str, classes: Sequence[str], label_map, label_names) -> np.ndarray:
  """TFDS label → our label (0..K-1 in `classes` order), -1 for the labels we do not want."""
  lut = np.full((len(label_names),), -1, np.int32)
  for ours, c in enumerate(classes):
    theirs = str(label_map.get(c, c)) if hasattr(label_map, "get") else c
    if theirs not in label_names:
      hint = data_errors.did_you_mean(theirs, label_names)
      raise data_errors.data_error(
          f"Class '{c}' maps to label '{theirs}', which TFDS dataset '{name}' does not "
          f"have{hint}; fix data.classes or data.tfds_label_names."
      )
    lut[label_names.index(theirs)] = ours
  return lut


def _read_tfds_encoded(
    name: str, builder, split: str, data_dir: str | None, image_key: str, lut, num_classes: int
) -> list[list[bytes]]:
  """The still-encoded images of every wanted class, in the data set's order.

  tfds reads the records with tf.data, so the label filter runs there too.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  try:
    ds = builder.as_dataset(
        split=split, shuffle_files=False, decoders={image_key: tfds.decode.SkipDecoding()}
    )
  except Exception as e:  # pylint: disable=broad-except  # not prepared: AssertionError & co
    root = data_dir or getattr(builder, "data_dir_root", "~/tensorflow_datasets")
    raise data_errors.data_error(
        f"TFDS dataset '{name}' (split '{split}') is not downloaded/prepared in {root} "
        "(flowergan never downloads: there may be no network here): run "
        f"tfds.builder('{name}').download_and_prepare() where there is internet and "
        f"copy it into data.tfds_data_dir, {_TFDS_ALTERNATIVES}. "
        f"[{type(e).__name__}]"
    ) from e
  lut_t = tf.constant(lut)
  ds = ds.map(
      lambda ex: (ex[image_key], tf.gather(lut_t, tf.cast(ex["label"], tf.int32))),
      num_parallel_calls=tf.data.AUTOTUNE,
  )
  ds = ds.filter(lambda img, label: label >= 0)
  encoded = [[] for _ in range(num_classes)]
  for img, label in ds.as_numpy_iterator():
    encoded[int(label)].append(img)
  return encoded
