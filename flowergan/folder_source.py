"""The folder source, `data.source='folder:PATH'`: `PATH/<class>/**/<image files>`.

The classes are the sorted subfolder names, or `data.classes` (a choice and order of them).
Image files end in .jpg/.jpeg/.png/.bmp/.gif/.webp (any case) and are decoded by
`flowergan.decoding`; the other files are skipped and counted in its one warning. Only regular
files are opened (links followed): FIFOs, sockets, devices and broken links are counted in that
warning too; every real folder is listed once, and links that loop back (`a/loop -> ..`) are
named there and not followed. Hidden files (`.*`) are ignored; a hidden subfolder of PATH is
refused unless `data.classes` names the classes (a class name cannot start with '.').

Multi-host: the sorted file list of every class is sharded `files[process_index::process_count]`,
so every process holds a disjoint part of every class.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence

from absl import logging

from flowergan import data_errors, decoding


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
      elif f.lower().endswith(decoding.IMAGE_EXTENSIONS):
        listing.images.append(path)
      else:
        listing.others.append(path)
  return listing


def load_folder(
    root: str,
    classes: Sequence[str],
    size: int,
    process_index: int,
    process_count: int,
    *,
    what: str = "data.source='folder:PATH'",
    max_pixels: int = decoding.DEFAULT_MAX_IMAGE_PIXELS,
):
  """The images of `classes` (all subfolders if empty) below `root`: this process's shard of
  each class, decoded; `what` names the setting that gave `root` in the errors."""
  root = os.path.abspath(os.path.expanduser(root))
  if not os.path.isdir(root):
    raise data_errors.data_error(
        f"Data folder {root} does not exist (or is not a folder): fix {what} to point "
        "at a folder with one subfolder of images per class, or use "
        "data.source='synthetic'."
    )
  subdirs = sorted(
      d for d in os.listdir(root) if not d.startswith(".") and os.path.isdir(os.path.join(root, d))
  )
  if not subdirs:
    raise data_errors.data_error(
        f"Data folder {root} has no class subfolders: put the images in "
        f"{root}/<class_name>/ (one subfolder per class), or use data.source='synthetic'."
    )
  hidden = sorted(
      d for d in os.listdir(root) if d.startswith(".") and os.path.isdir(os.path.join(root, d))
  )
  if hidden and not classes:
    # Every subfolder is a class, and a class name cannot start with '.' (it names files):
    # skipping it silently trained a model of the other classes only.
    raise data_errors.data_error(
        f"Data folder {root} has the hidden subfolder '{hidden[0]}': class names cannot start "
        "with '.'; rename it, move it out of the folder, or list the classes in data.classes."
    )
  if classes:
    classes = [str(c) for c in classes]
    for c in classes:
      if c not in subdirs:
        hint = data_errors.did_you_mean(c, subdirs)
        raise data_errors.data_error(
            f"Class '{c}' has no subfolder in {root}{hint}; subfolders are: "
            f"{', '.join(subdirs[:20])}. Fix data.classes (empty = all subfolders)."
        )
  else:
    classes = subdirs

  listed = [_list_class_files(os.path.join(root, c)) for c in classes]
  if not any(listing.images for listing in listed):
    raise data_errors.data_error(
        f"No image files (.jpg/.jpeg/.png/.bmp/.gif/.webp) found in the class "
        f"subfolders of {root}: add images to {root}/<class_name>/, or use "
        "data.source='synthetic'."
    )
  per_class, skipped = [], decoding.Skipped()
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
    results = decoding.decode_many(shard, size, names, max_pixels, skipped)
    per_class.append([r for r in results if r is not None])
  decoding.warn_skipped(root, skipped, max_pixels)
  for c, arrays, listing in zip(classes, per_class, listed):
    files = listing.images
    if not arrays:
      if process_count > 1 and len(files) < process_count:
        raise data_errors.data_error(
            f"Class '{c}' in {root} has {len(files)} image files, fewer than the "
            f"{process_count} processes: add images or run on fewer hosts."
        )
      # The warning above exists only if some file of this class was skipped.
      why = "see the warning above" if files else "the folder has no image files"
      raise data_errors.data_error(
          f"Class '{c}' has no readable images in {os.path.join(root, c)} ({why}): add valid "
          "jpg/png/... files there or remove the class from data.classes."
      )
  images, labels = decoding.stack_classes(per_class, size)
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
