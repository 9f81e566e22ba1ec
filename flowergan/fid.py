r"""FID between two image folders as pytorch-fid 0.3.0 computes it, and metrics on its features.

  python -m flowergan.fid DIR_A DIR_B --inception=pt_inception-2015-12-05-6726825d.pth
  protocol: pytorch-fid 0.3.0 (Inception pool3 2048-d, bilinear resize to 299, sqrtm)
  FID: 12.345678

Each of DIR_A, DIR_B is a folder of images or an .npz of statistics (`mu`, `sigma`, as
`pytorch-fid --save-stats` writes). A folder is read as pytorch-fid reads it: its files (not its
subfolders) whose name ends in .bmp .jpg .jpeg .pgm .png .ppm .tif .tiff .webp (lower case),
sorted, each opened with PIL and converted to RGB, all of one size (pytorch-fid batches them).
Statistics and the Fréchet distance are float64, the distance with `scipy.linalg.sqrtm` of
σ1·σ2 (`metrics.frechet_distance_sqrtm`, pytorch-fid's formula): the same features give the same
number as `pytorch_fid.fid_score.calculate_fid_given_paths`.

Features in, numbers out, for the evaluation of a run: `fid`, `kid` (`metrics`' KID),
`precision_recall` (Kynkäänniemi et al. 2019, k = 3) and `inception_metrics` (all of them, over
all images and per class).
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from collections.abc import Sequence

import numpy as np
import scipy.linalg
from absl import app, flags, logging
from PIL import Image

from flowergan import cli, errors, inception, metrics, untrusted

IMAGE_EXTENSIONS = ("bmp", "jpg", "jpeg", "pgm", "png", "ppm", "tif", "tiff", "webp")
# Images decoded at once: a folder of any length is read and fed to the network in chunks.
READ_CHUNK = 1024


class FidError(errors.FlowerganError):
  """A folder, image or statistics file that FID cannot use (one line)."""


# ------------------------------------------------------------------------------- folders


def image_files(folder: str) -> list[str]:
  """The image files of `folder` that pytorch-fid reads, in its order."""
  if not os.path.isdir(folder):
    raise FidError(f"{folder} is not a folder of images (nor an .npz of statistics).")
  names = sorted(
      name
      for name in os.listdir(folder)
      if name.rpartition(".")[0] and name.rpartition(".")[2] in IMAGE_EXTENSIONS
  )
  files = [os.path.join(folder, name) for name in names]
  for path in files:
    if not os.path.isfile(path):
      raise FidError(f"{path} is not a file; move it out of {folder}.")
  if len(files) < 2:
    raise FidError(
        f"{folder} has {len(files)} image(s) ({', '.join('.' + e for e in IMAGE_EXTENSIONS)});"
        " FID needs at least 2."
    )
  return files


def _open(path: str) -> Image.Image:
  try:
    return Image.open(path)
  except Exception as e:  # PIL raises many types (and DecompressionBombError) for bad files
    raise FidError(f"{path} is not an image PIL can read ({type(e).__name__}).") from None


def check_one_size(files: Sequence[str]) -> tuple[int, int]:
  """(height, width) shared by all `files` (read from their headers), or one line naming two
  files of different sizes: pytorch-fid stacks a folder's images into batches."""
  first = None
  for path in files:
    with _open(path) as im:
      size = (im.height, im.width)
    if first is None:
      first = (path, size)
    elif size != first[1]:
      raise FidError(
          f"{first[0]} is {first[1][1]}x{first[1][0]} but {path} is {size[1]}x{size[0]}: the "
          "images of a folder must share one size (as pytorch-fid needs); resize them first."
      )
  return first[1]


def read_images(files: Sequence[str]) -> np.ndarray:
  """NHWC uint8 RGB, each file as `Image.open(path).convert('RGB')`."""
  images = []
  for path in files:
    try:
      with _open(path) as im:
        images.append(np.asarray(im.convert("RGB")))
    except FidError:
      raise
    except Exception as e:  # a truncated or corrupt file fails only when decoded
      raise FidError(f"{path} cannot be decoded ({type(e).__name__}: {e}).") from None
  if len({im.shape for im in images}) > 1:
    raise FidError(f"the images of {os.path.dirname(files[0])} must share one size.")
  return np.stack(images)


def folder_features(
    folder: str, variables: dict, *, batch_size: int = inception.DEFAULT_BATCH_SIZE, mesh=None
) -> np.ndarray:
  """Pool3 features (N, 2048) of the images of `folder`, read in chunks."""
  files = image_files(folder)
  height, width = check_one_size(files)
  start = time.perf_counter()
  chunks = []
  for i in range(0, len(files), READ_CHUNK):
    images = read_images(files[i : i + READ_CHUNK])
    features = inception.extract_features(variables, images, batch_size=batch_size, mesh=mesh)
    if not np.isfinite(features).all():  # sqrtm of NaN statistics would run for minutes
      raise FidError(
          f"the Inception features of {folder} are not finite (NaN or infinite): check the "
          "Inception weights file."
      )
    chunks.append(features)
  seconds = time.perf_counter() - start
  logging.info(
      "%s: %d images of %dx%d, %.1f s (%.2f images/s)",
      folder,
      len(files),
      width,
      height,
      seconds,
      len(files) / seconds,
  )
  return np.concatenate(chunks)


# ------------------------------------------------------------------------------- statistics


def statistics(features) -> tuple[np.ndarray, np.ndarray]:
  """Mean and covariance (float64) of features (N, D), as pytorch-fid's."""
  return metrics.feature_stats(features)


def load_statistics(path: str) -> tuple[np.ndarray, np.ndarray]:
  """(mu, sigma) of an .npz as `pytorch-fid --save-stats` writes it (no pickles); a damaged
  file, one without pool3 `mu` and `sigma`, or one with non-finite values is refused
  (`flowergan.untrusted`: shapes checked before any array is read)."""
  d = inception.FEATURE_DIM
  try:
    arrays = untrusted.read_npz(
        path,
        {"mu": (d,), "sigma": (d, d)},
        where=f"{path} (FID statistics)",
        advice="write it again with --save-stats",
        dtype_kinds="f",
    )
  except untrusted.UntrustedFileError as e:
    raise FidError(str(e)) from None
  return np.asarray(arrays["mu"], np.float64), np.asarray(arrays["sigma"], np.float64)


def is_statistics_file(path: str) -> bool:
  return path.endswith(".npz") and os.path.isfile(path)


# ------------------------------------------------------------------------------- metrics


def fid_from_stats(mu1, sigma1, mu2, sigma2) -> float:
  """pytorch-fid's Fréchet distance of two (mu, sigma); non-finite ones are refused (sqrtm
  would return NaN, printed as an FID)."""
  if not all(np.isfinite(x).all() for x in (mu1, sigma1, mu2, sigma2)):
    raise FidError(
        "the features' statistics are not finite (NaN or infinite): check the images and the "
        "Inception weights."
    )
  try:
    with warnings.catch_warnings(record=True) as caught:
      # scipy's LinAlgWarning ("Matrix is singular ...") holds for every FID of fewer than 2048
      # images and pytorch-fid prints none: a detail for --verbosity=1, not the console.
      warnings.simplefilter("always", scipy.linalg.LinAlgWarning)
      value = metrics.frechet_distance_sqrtm(mu1, sigma1, mu2, sigma2)
    for warning in caught:
      if issubclass(warning.category, scipy.linalg.LinAlgWarning):
        logging.info("sqrtm: %s", cli.one_line(warning.message))
      else:
        warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
    return value
  except ValueError as e:  # sqrtm left an imaginary part: the product is far from PSD
    raise FidError(f"the Fréchet distance failed ({e}); use more images.") from None


def fid(features_a, features_b) -> float:
  """FID of two feature sets (N, 2048), as pytorch-fid computes it from its activations."""
  return fid_from_stats(*statistics(features_a), *statistics(features_b))


def kid(features_a, features_b, *, subset_size: int = 1000, num_subsets: int = 100, seed=0):
  """(mean, std) KID over random subsets (torch-fidelity's defaults), unscaled."""
  return metrics.kernel_inception_distance(
      features_a, features_b, num_subsets=num_subsets, subset_size=subset_size, seed=seed
  )


def _kth_neighbour_radii(features: np.ndarray, k: int) -> np.ndarray:
  """Distance of each row to its k-th nearest other row."""
  return np.array([np.sort(row)[k] for row in _distances(features, features)])


def _distances(a: np.ndarray, b: np.ndarray, block: int = 1024):
  """Rows of the Euclidean distance matrix (float64), one block of rows at a time."""
  b_sq = np.sum(b * b, axis=1)
  for i in range(0, a.shape[0], block):
    x = a[i : i + block]
    d2 = np.sum(x * x, axis=1)[:, None] + b_sq[None, :] - 2.0 * (x @ b.T)
    yield from np.sqrt(np.maximum(d2, 0.0))


def _coverage(reference: np.ndarray, radii: np.ndarray, queries: np.ndarray) -> float:
  """Share of `queries` inside at least one ball (reference row, its radius)."""
  inside = [np.any(row <= radii) for row in _distances(queries, reference)]
  return float(np.mean(inside))


def precision_recall(real_features, fake_features, *, k: int = 3) -> tuple[float, float]:
  """Improved precision and recall (Kynkäänniemi et al. 2019) with k-NN balls, k = 3.

  Precision: the share of fake samples inside the real manifold (the union of balls around each
  real sample reaching its k-th nearest real neighbour); recall: the share of real samples inside
  the fake manifold. Distances in float64, `<=` as StyleGAN2-ADA's code.
  """
  real = np.asarray(real_features, np.float64)
  fake = np.asarray(fake_features, np.float64)
  if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
    raise ValueError(f"features must be (N, D) with equal D, got {real.shape}, {fake.shape}")
  if min(real.shape[0], fake.shape[0]) <= k:
    raise ValueError(f"precision/recall with k={k} needs more than {k} samples per set")
  precision = _coverage(real, _kth_neighbour_radii(real, k), fake)
  recall = _coverage(fake, _kth_neighbour_radii(fake, k), real)
  return precision, recall


def inception_metrics(
    real_features,
    real_labels,
    fake_features,
    fake_labels,
    class_names: Sequence[str],
    *,
    k: int = 3,
    kid_subset_size: int = 1000,
) -> dict[str, float]:
  """FID, KID (mean, std), precision and recall over all images and per class (`name/<class>`).

  Labels index `class_names`. A class with fewer than 2 images of either set gets no FID/KID,
  one with k or fewer no precision/recall.
  """
  real = np.asarray(real_features)
  fake = np.asarray(fake_features)
  real_labels = np.asarray(real_labels)
  fake_labels = np.asarray(fake_labels)
  out = _set_metrics(real, fake, "", k, kid_subset_size)
  for label, name in enumerate(class_names):
    r, f = real[real_labels == label], fake[fake_labels == label]
    out.update(_set_metrics(r, f, f"/{name}", k, kid_subset_size))
  return out


def _set_metrics(real, fake, suffix: str, k: int, kid_subset_size: int) -> dict[str, float]:
  out = {}
  n = min(real.shape[0], fake.shape[0])
  if n >= 2:
    out[f"fid{suffix}"] = fid(fake, real)
    out[f"kid{suffix}"], out[f"kid_std{suffix}"] = kid(fake, real, subset_size=kid_subset_size)
  if n > k:
    out[f"precision{suffix}"], out[f"recall{suffix}"] = precision_recall(real, fake, k=k)
  return out


# ------------------------------------------------------------------------------- the command


def fid_of_paths(
    path_a: str,
    path_b: str,
    weights: str | None,
    *,
    cache_dir: str = inception.DEFAULT_CACHE_DIR,
    batch_size: int = inception.DEFAULT_BATCH_SIZE,
    mesh=None,
) -> float:
  """FID of two folders (or .npz statistics), as `pytorch_fid.fid_score`'s command.

  Both inputs are checked (files, one size per folder) before the weights are read.
  """
  for path in (path_a, path_b):
    if not os.path.exists(path):
      raise FidError(f"no folder (or .npz of statistics) {path}.")
  folders = [p for p in (path_a, path_b) if not is_statistics_file(p)]
  for folder in folders:
    check_one_size(image_files(folder))
  variables = inception.load_weights(weights, cache_dir) if folders else None
  stats = []
  for path in (path_a, path_b):
    if is_statistics_file(path):
      stats.append(load_statistics(path))
    else:
      stats.append(statistics(folder_features(path, variables, batch_size=batch_size, mesh=mesh)))
  return fid_from_stats(*stats[0], *stats[1])


def _define_flags():
  return (
      flags.DEFINE_string(
          "inception", None, f"The FID Inception weights file ({inception.WEIGHTS_FILE})."
      ),
      flags.DEFINE_integer(
          "batch_size",
          inception.DEFAULT_BATCH_SIZE,
          "Images per network call (rounded up to a multiple of the device count).",
      ),
      flags.DEFINE_string(
          "cache_dir",
          inception.DEFAULT_CACHE_DIR,
          "Where the weights are cached as .npz after the first read.",
      ),
  )


def main(argv, inception_flag, batch_size_flag, cache_dir_flag):
  if len(argv) != 3:
    raise app.UsageError(
        f"usage: python -m flowergan.fid DIR_A DIR_B --inception={inception.WEIGHTS_FILE}"
    )
  if batch_size_flag.value < 1:
    sys.exit("error: --batch_size must be at least 1.")
  try:
    value = fid_of_paths(
        argv[1],
        argv[2],
        inception_flag.value,
        cache_dir=cache_dir_flag.value,
        batch_size=batch_size_flag.value,
    )
  except errors.FlowerganError as e:
    sys.exit(f"error: {cli.one_line(e)}")
  print(f"protocol: {inception.PROTOCOL} (Inception pool3 2048-d, bilinear resize to 299, sqrtm)")
  print(f"FID: {value}")


def make_main(defined):
  """`main(argv)` of the command with the flags `_define_flags` returned."""

  def main_with_flags(argv):
    cli.quiet_logs()  # JAX's "Unable to initialize backend" and similar INFO lines
    main(argv, *defined)

  return main_with_flags


def run() -> None:
  """The command: its flags, one-line errors and stops (`cli.run`), the quiet console."""
  cli.run(make_main(_define_flags()), positional=("DIR_A", "DIR_B"))


if __name__ == "__main__":
  run()
