"""Image sets: a folder, a prepared TFDS data set or the synthetic flowers, decoded to arrays.

`load_images(data_config)` decodes every image of this process's shard ONCE with PIL (thread
pool), converts it to RGB, resizes the shorter side to `image_size` (LANCZOS, antialiased) and
centre-crops. Result: uint8 (N, S, S, 3), int32 labels, class names. Sources:

* `folder:PATH`: `PATH/<class>/**/*.{jpg,jpeg,png,bmp,gif,webp}` (any case); the classes are
  the sorted subfolder names, or `data.classes` (a choice and order of them). Mode conversion:
  grayscale / 16-bit / palette / CMYK / YCbCr → RGB; anything with transparency (RGBA, LA,
  palette with transparency) is alpha-composited ON WHITE. EXIF orientation is applied. Files
  that cannot be decoded (truncated, corrupt, not an image, unknown extension) are skipped and
  reported in ONE warning with their count and a few names; images of more than
  `max_image_pixels` pixels (PIL's decompression-bomb limit by default) are skipped and counted
  there as "too large". Only regular files are opened (links followed): FIFOs, sockets,
  devices and broken links are counted in that warning too; every real folder is listed once,
  and links that loop back (`a/loop -> ..`) are named there and not followed. Hidden files
  (`.*`) are ignored. Class names become file names:
  unusable ones (`config_checks.check_class_names`) are refused, whatever the source.
* `tfds:NAME`: an already prepared TFDS data set (never downloaded here). Examples are read
  with the image left encoded, filtered to the wanted labels (`features['label'].names` +
  `tfds_label_names`), relabelled 0..K-1, then decoded by the same PIL code as folders.
  Without `data.classes`, the wanted classes are the sorted keys of `tfds_label_names`.
* `synthetic`: `flowergan.synthetic` renders the set once into
  `cache_dir/synthetic-<seed>-<n>-<size>/<class>/*.png` (atomically, through
  `storage.atomic_directory`) and it is then read as a folder.

Multi-host: the sorted file list of every class is sharded `files[process_index::process_count]`,
so every process holds a disjoint part of every class.

PIL and numpy only: TensorFlow (and tensorflow_datasets) is imported by the TFDS source alone,
when it reads a data set, so evaluating or sampling from folder / synthetic data never loads it.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import difflib
import io
import math
import os
import stat
import time
from collections.abc import Sequence

import numpy as np
from absl import logging
from PIL import Image, ImageOps

from flowergan import cli, config_checks, default_config, errors, storage, synthetic

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
_MAX_NAMED = 5  # how many skipped files a warning names
# PIL's decompression-bomb limit (about 9459² pixels), `data.max_image_pixels` of the configs.
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485


class ImageTooLarge(OSError):
  """An image with more pixels than `data.max_image_pixels` (skipped, counted apart)."""


class DataError(errors.FlowerganError):
  """A data problem the user must fix; the message is one line saying how."""


def data_error(msg: str) -> DataError:
  """`DataError` with `msg` collapsed to one line."""
  return DataError(cli.one_line(msg))


def host_tensorflow():
  """TensorFlow, imported on first call, with GPUs/TPUs hidden from it.

  It only feeds the host (the input pipeline and the TFDS source): it must not grab accelerator
  memory.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  for kind in ("GPU", "TPU"):
    try:
      tf.config.set_visible_devices([], kind)
    except Exception:  # pylint: disable=broad-except  # no such device type / already initialised
      pass
  return tf


def load_images(data_config, *, process_index: int = 0, process_count: int = 1):
  """Decoded, resized (shorter side to `image_size`, centre crop), un-augmented images.

  Returns (uint8 (N, S, S, 3), int32 labels (N,), class_names). With several processes, each
  gets a disjoint shard of every class.
  """
  if process_count < 1 or not 0 <= process_index < process_count:
    raise data_error(f"Invalid process_index={process_index} / process_count={process_count}.")
  source = str(data_config.source)
  size = int(data_config.image_size)
  if size < 1:
    raise data_error(f"data.image_size must be a positive integer, got {size}.")
  classes = tuple(data_config.classes or ())
  # Before anything is read: `../x` in data.classes would also be read outside the folder.
  config_checks.check_class_names(classes, "data.classes")
  images, labels, class_names = _load_source(
      source, data_config, classes, size, process_index, process_count
  )
  config_checks.check_class_names(class_names, f"the class names of {source}")
  return images, labels, class_names


def _load_source(source: str, data_config, classes, size, process_index, process_count):
  """The images of `data.source`: this process's shard of each class, decoded."""
  max_pixels = int(data_config.max_image_pixels)
  if source == "synthetic":
    folder = ensure_synthetic(data_config)
    return _load_folder(
        folder,
        classes or default_config.classes_of(data_config),
        size,
        process_index,
        process_count,
        what="data.cache_dir",
        max_pixels=max_pixels,
    )
  if source.startswith("folder:"):
    path = source[len("folder:") :]
    if not path:
      raise data_error("data.source='folder:' needs a path, e.g. 'folder:/data/flowers'.")
    return _load_folder(path, classes, size, process_index, process_count, max_pixels=max_pixels)
  if source.startswith("tfds:"):
    name = source[len("tfds:") :]
    if not name:
      raise data_error("data.source='tfds:' needs a dataset name, e.g. 'tfds:oxford_flowers102'.")
    return _load_tfds(name, data_config, size, process_index, process_count)
  raise data_error(
      f"Unknown data.source '{source}': use 'synthetic', 'folder:PATH' or 'tfds:NAME'."
  )


class _Listing:
  """The files of one class folder: images, other regular files, what is not a regular file
  (FIFOs, sockets, devices, broken links: never opened, a FIFO would block forever) and the
  links to a folder already listed: loops and duplicates, not followed."""

  def __init__(self):
    self.images, self.others, self.special, self.loops = [], [], [], []


def _directory_key(path: str) -> tuple[int, int] | None:
  try:
    st = os.stat(path)
  except OSError:
    return None
  return st.st_dev, st.st_ino


def _list_class_files(class_dir: str) -> _Listing:
  """Every file below `class_dir`, links followed, each real directory visited once.

  The class folder's ancestors count as visited: a link to one of them (`a/loop -> ..`) is a
  loop, as is a link to a folder already listed; neither is entered.
  """
  listing = _Listing()
  real = os.path.realpath(class_dir)
  ancestors = [real]
  while os.path.dirname(ancestors[-1]) != ancestors[-1]:
    ancestors.append(os.path.dirname(ancestors[-1]))
  visited = {key for key in map(_directory_key, ancestors) if key}
  for root, dirs, files in os.walk(class_dir, followlinks=True):
    keep = []
    # Real folders before links to them: a link, not the folder, is what gets reported.
    names = sorted(d for d in dirs if not d.startswith("."))
    for d in sorted(names, key=lambda d: os.path.islink(os.path.join(root, d))):
      key = _directory_key(os.path.join(root, d))
      if key in visited:
        listing.loops.append(os.path.join(root, d))
      elif key:
        visited.add(key)
        keep.append(d)
    dirs[:] = keep
    for f in sorted(files):
      if f.startswith("."):
        continue
      path = os.path.join(root, f)
      try:
        regular = stat.S_ISREG(os.stat(path).st_mode)  # links followed
      except OSError:
        regular = False  # a broken link
      if not regular:
        listing.special.append(path)
      elif f.lower().endswith(IMAGE_EXTENSIONS):
        listing.images.append(path)
      else:
        listing.others.append(path)
  return listing


def _load_folder(
    root: str,
    classes: Sequence[str],
    size: int,
    process_index: int,
    process_count: int,
    *,
    what: str = "data.source='folder:PATH'",
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
):
  root = os.path.abspath(os.path.expanduser(root))
  if not os.path.isdir(root):
    raise data_error(
        f"Data folder {root} does not exist (or is not a folder): fix {what} to point "
        "at a folder with one subfolder of images per class, or use "
        "data.source='synthetic'."
    )
  subdirs = sorted(
      d for d in os.listdir(root) if not d.startswith(".") and os.path.isdir(os.path.join(root, d))
  )
  if not subdirs:
    raise data_error(
        f"Data folder {root} has no class subfolders: put the images in "
        f"{root}/<class_name>/ (one subfolder per class), or use data.source='synthetic'."
    )
  if classes:
    classes = [str(c) for c in classes]
    for c in classes:
      if c not in subdirs:
        close = difflib.get_close_matches(c, subdirs, n=3, cutoff=0.4)
        hint = f" (close: {', '.join(close)})" if close else ""
        raise data_error(
            f"Class '{c}' has no subfolder in {root}{hint}; subfolders are: "
            f"{', '.join(subdirs[:20])}. Fix data.classes (empty = all subfolders)."
        )
  else:
    classes = subdirs

  listed = [_list_class_files(os.path.join(root, c)) for c in classes]
  if not any(listing.images for listing in listed):
    raise data_error(
        f"No image files (.jpg/.jpeg/.png/.bmp/.gif/.webp) found in the class "
        f"subfolders of {root}: add images to {root}/<class_name>/, or use "
        "data.source='synthetic'."
    )
  per_class, skipped = [], _Skipped()
  for c, listing in zip(classes, listed):
    files = listing.images
    shard = files[process_index::process_count]
    _log_shard(c, shard, len(files), root, process_index, process_count)
    for kept, found in (
        (skipped.not_images, listing.others),
        (skipped.not_regular, listing.special),
        (skipped.loops, listing.loops),
    ):
      kept.extend(os.path.relpath(f, root) for f in found[process_index::process_count])
    names = [os.path.relpath(f, root) for f in shard]
    results = _decode_many(shard, size, names, max_pixels, skipped)
    per_class.append([r for r in results if r is not None])
  _warn_skipped(root, skipped, max_pixels)
  for c, arrays, listing in zip(classes, per_class, listed):
    files = listing.images
    if not arrays:
      if process_count > 1 and len(files) < process_count:
        raise data_error(
            f"Class '{c}' in {root} has {len(files)} image files, fewer than the "
            f"{process_count} processes: add images or run on fewer hosts."
        )
      # The warning above exists only if some file of this class was skipped.
      why = "see the warning above" if files else "the folder has no image files"
      raise data_error(
          f"Class '{c}' has no readable images in {os.path.join(root, c)} ({why}): add valid "
          "jpg/png/... files there or remove the class from data.classes."
      )
  images, labels = _stack(per_class, size)
  return images, labels, list(classes)


def _log_shard(name, shard, total, root, process_index, process_count) -> None:
  """Which files of class `name` this process reads (the names at --verbosity=1)."""
  logging.info(
      "process %d of %d reads %d of the %d files of class %r in %s",
      process_index,
      process_count,
      len(shard),
      total,
      name,
      root,
  )
  logging.vlog(
      1,
      "shard of process %d, class %r: %s",
      process_index,
      name,
      " ".join(os.path.relpath(f, root) for f in shard),
  )


_TFDS_ALTERNATIVES = "or use data.source='folder:PATH' (one subfolder per class) or 'synthetic'"


def _load_tfds(name: str, data_config, size: int, process_index: int, process_count: int):
  """`tfds:NAME`: the wanted classes of a prepared TFDS data set, decoded like a folder's."""
  classes = [str(c) for c in default_config.classes_of(data_config)]
  if not classes:
    raise data_error(
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
  per_class, skipped, max_pixels = [], _Skipped(), int(data_config.max_image_pixels)
  for c, blobs in zip(classes, encoded):
    shard = blobs[process_index::process_count]
    names = [f"{c}#{i}" for i in range(len(shard))]
    results = _decode_many(shard, size, names, max_pixels, skipped)
    per_class.append([r for r in results if r is not None])
  _warn_skipped(f"tfds:{name}", skipped, max_pixels)
  for c, arrays, blobs in zip(classes, per_class, encoded):
    if not arrays:
      raise data_error(
          f"Class '{c}' has no readable images in TFDS dataset '{name}' split '{split}'"
          f" ({len(blobs)} examples, {process_count} processes): choose another "
          "class / split (data.tfds_splits='all')."
      )
  images, labels = _stack(per_class, size)
  return images, labels, classes


def _tfds_builder(name: str, data_dir: str | None):
  """`tfds.builder(name)`, or a one-line error naming the alternatives."""
  host_tensorflow()  # GPUs/TPUs hidden before tfds imports TensorFlow
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  try:
    return tfds.builder(name, data_dir=data_dir)
  except Exception as e:  # pylint: disable=broad-except  # DatasetNotFoundError and friends
    raise data_error(
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
    raise data_error(
        f"TFDS dataset '{name}' has no ClassLabel feature 'label'; {_TFDS_ALTERNATIVES}."
    )
  image_key = (
      "image"
      if "image" in features
      else next((k for k, f in features.items() if isinstance(f, tfds.features.Image)), None)
  )
  if image_key is None:
    raise data_error(f"TFDS dataset '{name}' has no image feature; {_TFDS_ALTERNATIVES}.")
  return image_key, list(label_feature.names)


def _tfds_label_lut(name: str, classes: Sequence[str], label_map, label_names) -> np.ndarray:
  """TFDS label → our label (0..K-1 in `classes` order), -1 for the labels we do not want."""
  lut = np.full((len(label_names),), -1, np.int32)
  for ours, c in enumerate(classes):
    theirs = str(label_map.get(c, c)) if hasattr(label_map, "get") else c
    if theirs not in label_names:
      close = difflib.get_close_matches(theirs, label_names, n=5, cutoff=0.5)
      hint = f"close matches: {', '.join(repr(x) for x in close)}" if close else "no close match"
      raise data_error(
          f"Class '{c}' maps to label '{theirs}', which TFDS dataset '{name}' does not "
          f"have ({hint}); fix data.classes or data.tfds_label_names."
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
    raise data_error(
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


def synthetic_dir(data_config) -> str:
  """Where the synthetic set for this config lives (rendered on first use)."""
  cache_dir = os.path.abspath(os.path.expanduser(str(data_config.cache_dir)))
  n = int(data_config.synthetic_num_per_class)
  seed = int(data_config.synthetic_seed)
  size = int(data_config.image_size)
  return os.path.join(cache_dir, f"synthetic-{seed}-{n}-{size}")


def ensure_synthetic(data_config) -> str:
  """Renders the synthetic set once (atomically, see `storage.atomic_directory`); its folder."""
  final = synthetic_dir(data_config)
  if os.path.isdir(final):
    return final
  n = int(data_config.synthetic_num_per_class)
  if n < 1:
    raise data_error(f"data.synthetic_num_per_class must be >= 1, got {n}.")
  seed = int(data_config.synthetic_seed)
  size = int(data_config.image_size)
  start = time.time()
  try:
    with storage.atomic_directory(final) as tmp:
      synthetic.write_dataset(tmp, n, seed, size)
  except (OSError, storage.StorageError) as e:
    why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
    raise data_error(
        f"cannot render the synthetic data set into {final} ({why}): set data.cache_dir "
        "(evaluate.py: --cache_dir) to a folder that can be created and written."
    ) from None
  logging.info(
      "Rendered synthetic data set (%d images) to %s in %.1fs", 2 * n, final, time.time() - start
  )
  return final


def _to_rgb(im: Image.Image) -> Image.Image:
  """Any PIL mode → RGB; transparency is composited on white."""
  mode = im.mode
  if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
    arr = np.asarray(im, dtype=np.float64)
    if mode.startswith("I;16") or (mode == "I" and arr.max(initial=0) > 255):
      arr = arr / 257.0
    elif mode == "F" and arr.max(initial=0) <= 1.0:
      arr = arr * 255.0
    im = Image.fromarray(np.clip(np.round(arr), 0, 255).astype(np.uint8), "L")
    mode = "L"
  has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
      mode == "P" and "transparency" in im.info
  )
  if has_alpha:
    rgba = im.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")
  if mode != "RGB":
    return im.convert("RGB")
  return im


def decode_and_resize(source, size: int, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray:
  """Decodes a file path or encoded bytes to uint8 (size, size, 3).

  Shorter side resized to `size` (LANCZOS) and centre crop, done in one resampling step through
  PIL's `box`. Raises on unreadable or truncated data (`ImageFile.LOAD_TRUNCATED_IMAGES` is left
  False), and `ImageTooLarge` for more than `max_pixels` pixels (0: no limit), read from the
  header before anything is decoded.
  """
  if isinstance(source, (bytes, bytearray, memoryview)):
    source = io.BytesIO(bytes(source))
  try:
    im = Image.open(source)
  except Image.DecompressionBombError as e:  # PIL's own limit, outside `_decode_many`
    raise ImageTooLarge(str(e)) from None
  with im:
    w, h = im.size
    if max_pixels and w * h > max_pixels:
      raise ImageTooLarge(f"{w}×{h} pixels")
    if im.format == "JPEG" and min(w, h) > 2 * size:
      # DCT-domain downscale while decoding; keep >= 2x the target for quality.
      scale = 2 * size / min(w, h)
      im.draft(im.mode, (math.ceil(w * scale), math.ceil(h * scale)))
    im.load()  # raises OSError for truncated / corrupt data
    try:
      im = ImageOps.exif_transpose(im)
    except Exception:  # pylint: disable=broad-except  # broken EXIF: keep pixels as stored
      pass
    im = _to_rgb(im)
    w, h = im.size
    side = min(w, h)
    left, top = (w - side) / 2.0, (h - side) / 2.0
    out = im.resize(
        (size, size), Image.Resampling.LANCZOS, box=(left, top, left + side, top + side)
    )
    arr = np.asarray(out, dtype=np.uint8)
  if arr.shape != (size, size, 3):
    raise OSError(f"unexpected decoded shape {arr.shape}")
  return arr


@contextlib.contextmanager
def _without_pils_pixel_limit():
  """PIL's global decompression-bomb check off while `_decode_many` applies its own limit.

  PIL's check warns through `warnings` (leaking to the console) above its limit and raises
  above twice that, which counted a huge photo as corrupt; `decode_and_resize` checks the
  header against `max_pixels` instead. Restored afterwards: PIL is shared with other code.
  """
  previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
  try:
    yield
  finally:
    Image.MAX_IMAGE_PIXELS = previous


class _Skipped:
  """Names of the files that were skipped, by reason (for `_warn_skipped`)."""

  def __init__(self):
    self.unreadable, self.too_large, self.not_images = [], [], []
    self.not_regular = []  # FIFOs, sockets, devices, broken links: never opened
    self.loops = []  # links back to a folder already listed: not followed

  def files(self) -> list[str]:
    return self.unreadable + self.too_large + self.not_images + self.not_regular

  def total(self) -> int:
    return len(self.files())


def _decode_many(sources: Sequence, size: int, names: Sequence[str], max_pixels: int, skipped):
  """Decodes in a thread pool; a list of arrays or None. Failures are added to `skipped`."""

  def one(src):
    try:
      return decode_and_resize(src, size, max_pixels)
    except ImageTooLarge:
      return ImageTooLarge
    except Exception:  # pylint: disable=broad-except  # any undecodable input is skipped
      return None

  workers = min(16, 2 * (os.cpu_count() or 1))
  with _without_pils_pixel_limit():
    if len(sources) <= 1:
      results = [one(s) for s in sources]
    else:
      with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(one, sources))
  skipped.unreadable.extend(n for n, r in zip(names, results) if r is None)
  skipped.too_large.extend(n for n, r in zip(names, results) if r is ImageTooLarge)
  return [None if r is ImageTooLarge else r for r in results]


def _warn_skipped(where: str, skipped: _Skipped, max_pixels: int) -> None:
  """One warning: how many files were skipped and why, a few names, and the link loops."""
  total = skipped.total()
  if total:
    named = skipped.files()[:_MAX_NAMED]
    more = f", ... ({total - len(named)} more)" if total > len(named) else ""
    logging.warning(
        "Skipped %d files in %s (%d unreadable/truncated/corrupt images; too large: %d, more "
        "than data.max_image_pixels=%d pixels, raise it to use them; %d without an image "
        "extension %s; %d not regular files: FIFOs, sockets, devices or broken links): %s%s%s",
        total,
        where,
        len(skipped.unreadable),
        len(skipped.too_large),
        max_pixels,
        len(skipped.not_images),
        "/".join(e[1:] for e in IMAGE_EXTENSIONS),
        len(skipped.not_regular),
        ", ".join(named),
        more,
        _loops_text(skipped.loops, "; "),
    )
  elif skipped.loops:
    logging.warning("In %s: %s", where, _loops_text(skipped.loops, ""))


def _loops_text(loops: Sequence[str], prefix: str) -> str:
  """`N links lead to a folder already read ...: a/loop, ...` (empty without loops)."""
  if not loops:
    return ""
  named = ", ".join(loops[:_MAX_NAMED]) + (", ..." if len(loops) > _MAX_NAMED else "")
  return (
      f"{prefix}{len(loops)} links lead to a folder already read (a loop or a duplicate) and "
      f"were not followed: {named}"
  )


def _stack(per_class_arrays, size):
  images, labels = [], []
  for label, arrays in enumerate(per_class_arrays):
    images.extend(arrays)
    labels.extend([label] * len(arrays))
  if not images:
    return np.zeros((0, size, size, 3), np.uint8), np.zeros((0,), np.int32)
  return np.stack(images).astype(np.uint8), np.asarray(labels, np.int32)
