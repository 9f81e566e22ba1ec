"""Evaluation metrics for generated images (pure numpy/scipy, no TensorFlow).

Distribution metrics take *feature arrays* of shape (N, D), so any feature extractor plugs in:
our small `flowergan.classifier` now (`predict(params, images)[1]`), Inception later.
A feature extractor is simply `Callable[[images NHWC in [-1, 1]], features (N, D)]`.

Image metrics (`sliced_wasserstein_distance`, `checkerboard_score`) take float images NHWC in
[-1, 1].
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.linalg
import scipy.ndimage

FeatureExtractor = Callable[[np.ndarray], np.ndarray]

__all__ = [
    "FeatureExtractor",
    "feature_stats",
    "frechet_distance",
    "frechet_distance_from_stats",
    "frechet_distance_sqrtm",
    "kernel_inception_distance",
    "sliced_wasserstein_distance",
    "laplacian_pyramid",
    "checkerboard_score",
]


# --------------------------------------------------------------------------------------------
# Fréchet distance
# --------------------------------------------------------------------------------------------


def feature_stats(feats) -> tuple[np.ndarray, np.ndarray]:
  """Mean (D,) and unbiased covariance (D, D) of features (N, D), in float64."""
  f = np.asarray(feats, dtype=np.float64)
  if f.ndim != 2 or f.shape[0] < 2:
    raise ValueError(f"features must have shape (N>=2, D), got {f.shape}")
  return f.mean(axis=0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
  """Symmetric square root of a symmetric PSD matrix (negative eigenvalues clipped to 0)."""
  w, v = np.linalg.eigh((s + s.T) * 0.5)
  return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance_from_stats(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
  """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2).

  d² = ‖mu1 − mu2‖² + Tr(S1) + Tr(S2) − 2 Tr((S1 S2)^{1/2}).

  Tr((S1 S2)^{1/2}) is computed stably as Σ sqrt(eig(A S2 A)) with A = S1^{1/2}
  (A S2 A is symmetric PSD and similar to S1 S2, so no complex round-off as with
  `scipy.linalg.sqrtm`). If the eigendecomposition fails or yields non-finite values,
  `eps * I` is added to both covariances (the usual fallback). Result clipped at 0.
  """
  mu1 = np.atleast_1d(np.asarray(mu1, dtype=np.float64))
  mu2 = np.atleast_1d(np.asarray(mu2, dtype=np.float64))
  s1 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64))
  s2 = np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
  if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
    raise ValueError(f"inconsistent shapes: {mu1.shape} {s1.shape} {mu2.shape} {s2.shape}")

  def tr_covmean(a, b):
    r = _psd_sqrt(a)
    w = np.linalg.eigvalsh((r @ b @ r + (r @ b @ r).T) * 0.5)
    return float(np.sqrt(np.clip(w, 0.0, None)).sum())

  try:
    tr = tr_covmean(s1, s2)
    if not np.isfinite(tr):
      raise np.linalg.LinAlgError("non-finite")
  except np.linalg.LinAlgError:
    off = np.eye(s1.shape[0]) * eps
    tr = tr_covmean(s1 + off, s2 + off)
  diff = mu1 - mu2
  d = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr)
  return max(d, 0.0)


def frechet_distance(feats_a, feats_b, eps: float = 1e-6) -> float:
  """Fréchet distance (FID for Inception pool3 features) between feature sets (N, D)."""
  mu1, s1 = feature_stats(feats_a)
  mu2, s2 = feature_stats(feats_b)
  return frechet_distance_from_stats(mu1, s1, mu2, s2, eps=eps)


def frechet_distance_sqrtm(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
  """Fréchet distance computed as pytorch-fid 0.3.0's `calculate_frechet_distance` does.

  Tr((S1 S2)^{1/2}) from `scipy.linalg.sqrtm(S1 @ S2)` (float64), retried with `eps * I` added to
  both covariances when the root is not finite, its imaginary round-off dropped (a ValueError
  when the diagonal's exceeds 1e-3). `frechet_distance_from_stats` computes the same quantity
  from symmetric eigendecompositions (faster, never complex) but differs in the last digits,
  and much more where S1 S2 is nearly singular; this one gives pytorch-fid's numbers.
  """
  mu1 = np.atleast_1d(np.asarray(mu1, dtype=np.float64))
  mu2 = np.atleast_1d(np.asarray(mu2, dtype=np.float64))
  s1 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64))
  s2 = np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
  if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
    raise ValueError(f"inconsistent shapes: {mu1.shape} {s1.shape} {mu2.shape} {s2.shape}")
  covmean = scipy.linalg.sqrtm(s1.dot(s2))
  if not np.isfinite(covmean).all():
    offset = np.eye(s1.shape[0]) * eps
    covmean = scipy.linalg.sqrtm((s1 + offset).dot(s2 + offset))
  if np.iscomplexobj(covmean):
    if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
      raise ValueError(f"imaginary component {np.max(np.abs(covmean.imag))} in sqrtm(S1 S2)")
    covmean = covmean.real
  diff = mu1 - mu2
  return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


# --------------------------------------------------------------------------------------------
# Kernel Inception Distance
# --------------------------------------------------------------------------------------------


def kernel_inception_distance(
    feats_a,
    feats_b,
    *,
    num_subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
  """KID: unbiased MMD² with the cubic polynomial kernel k(x, y) = (x·y / d + 1)³.

  For each of `num_subsets` random subsets of m = min(subset_size, N_a, N_b) rows drawn
  without replacement from each set (Bińkowski et al. 2018; same estimator as the
  StyleGAN2-ADA / torch-fidelity code):
      MMD²_u = 1/(m(m−1)) Σ_{i≠j} [k(x_i,x_j) + k(y_i,y_j)] − 2/m² Σ_{i,j} k(x_i,y_j).
  Returns (mean, std) over subsets. Not scaled (multiply by 1e3 for the usual reporting).
  """
  a = np.asarray(feats_a, dtype=np.float64)
  b = np.asarray(feats_b, dtype=np.float64)
  if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
    raise ValueError(f"features must be (N, D) with equal D, got {a.shape} and {b.shape}")
  d = a.shape[1]
  m = min(subset_size, a.shape[0], b.shape[0])
  if m < 2:
    raise ValueError("need at least 2 samples per set for KID")
  rng = np.random.default_rng(seed)
  vals = np.empty(num_subsets, dtype=np.float64)
  for t in range(num_subsets):
    x = a[rng.choice(a.shape[0], m, replace=False)]
    y = b[rng.choice(b.shape[0], m, replace=False)]
    kxx = (x @ x.T / d + 1.0) ** 3
    kyy = (y @ y.T / d + 1.0) ** 3
    kxy = (x @ y.T / d + 1.0) ** 3
    vals[t] = (
        (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
        + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        - 2.0 * kxy.mean()
    )
  return float(vals.mean()), float(vals.std())


# --------------------------------------------------------------------------------------------
# Sliced Wasserstein distance on Laplacian pyramid patches (Karras et al. 2018)
# --------------------------------------------------------------------------------------------

_GAUSS5 = np.float64([1, 4, 6, 4, 1])
_GAUSS5 = np.outer(_GAUSS5, _GAUSS5) / 256.0  # same as the ProGAN code / cv2.pyrDown


def _pyr_down(x: np.ndarray) -> np.ndarray:  # NHWC, matches cv2.pyrDown
  k = _GAUSS5[None, :, :, None]
  return scipy.ndimage.convolve(x, k, mode="mirror")[:, ::2, ::2, :]


def _pyr_up(x: np.ndarray) -> np.ndarray:  # NHWC, matches cv2.pyrUp
  n, h, w, c = x.shape
  res = np.zeros((n, h * 2, w * 2, c), x.dtype)
  res[:, ::2, ::2, :] = x
  return scipy.ndimage.convolve(res, _GAUSS5[None, :, :, None] * 4.0, mode="mirror")


def laplacian_pyramid(images, num_levels: int):
  """Laplacian pyramid (finest first, last level is the Gaussian residual), NHWC float64."""
  pyr = [np.asarray(images, dtype=np.float64)]
  for _ in range(1, num_levels):
    pyr.append(_pyr_down(pyr[-1]))
    pyr[-2] = pyr[-2] - _pyr_up(pyr[-1])
  return pyr


def _patches(level: np.ndarray, iy: np.ndarray, ix: np.ndarray, img: np.ndarray, half: int):
  """Extract (P, C, k, k) patches centred at (iy, ix) of images img from NHWC level."""
  off = np.arange(-half, half + 1)
  yy = iy[:, None, None] + off[None, :, None]
  xx = ix[:, None, None] + off[None, None, :]
  p = level[img[:, None, None], yy, xx, :]  # (P, k, k, C)
  return np.transpose(p, (0, 3, 1, 2))


def _normalise(desc_list):
  """Per-channel normalisation by mean/std pooled over all patches and positions."""
  cat = np.concatenate(desc_list, axis=0)
  mean = cat.mean(axis=(0, 2, 3), keepdims=True)
  std = cat.std(axis=(0, 2, 3), keepdims=True)
  std = np.where(std > 0, std, 1.0)
  return [((d - mean) / std).reshape(d.shape[0], -1) for d in desc_list]


def sliced_wasserstein_distance(
    images_a,
    images_b,
    *,
    nhood_size: int = 7,
    nhoods_per_image: int = 128,
    dir_repeats: int = 4,
    dirs_per_repeat: int = 128,
    min_resolution: int = 16,
    joint_normalization: bool = False,
    seed: int = 0,
) -> dict[str, float]:
  """SWD between two image sets (NHWC, same H, W, C) as in Progressive GAN's metric.

  Per Laplacian-pyramid level (resolutions H, H/2, ... >= `min_resolution`):
  `nhoods_per_image` random `nhood_size`² patches per image → descriptors, normalised per
  channel by the mean/std pooled over all descriptors of a set (as the original, which
  normalises reals and fakes separately; `joint_normalization=True` pools both sets
  instead, which keeps global colour/contrast shifts visible), projected onto
  `dir_repeats × dirs_per_repeat` random unit directions, sorted, mean |difference|.

  Results are ×1e3 like the original (`SWDx1e3_<res>`). Returns
  `{'swd_<res>': ..., 'swd_mean': ...}`. Deterministic for `seed`: patch centres are
  drawn once and used for both sets (same marginal distribution as independent draws,
  lower variance; identical sets give exactly 0). If the set sizes differ, a random subset
  of `min(N_a, N_b)` images is taken from the larger one. The input range does not matter
  (descriptors are normalised), so [-1, 1] gives the same value as [0, 255] up to the
  original's uint8 quantisation.
  """
  a = np.asarray(images_a, dtype=np.float64)
  b = np.asarray(images_b, dtype=np.float64)
  if a.ndim != 4 or a.shape[1:] != b.shape[1:]:
    raise ValueError(f"image sets must be NHWC with equal H, W, C; got {a.shape}, {b.shape}")
  rng = np.random.default_rng(seed)
  a, b = _equal_sizes(a, b, rng)
  resolutions = _swd_resolutions(a.shape[1], nhood_size, min_resolution)
  pyr_a = laplacian_pyramid(a, len(resolutions))
  pyr_b = laplacian_pyramid(b, len(resolutions))
  out: dict[str, float] = {}
  for res, level_a, level_b in zip(resolutions, pyr_a, pyr_b):
    da, db = _patch_descriptors(
        level_a, level_b, nhood_size, nhoods_per_image, joint_normalization, rng
    )
    out[f"swd_{res}"] = _sliced_distance(da, db, dir_repeats, dirs_per_repeat, rng) * 1e3
  out["swd_mean"] = float(np.mean([out[f"swd_{r}"] for r in resolutions]))
  return out


def _equal_sizes(a: np.ndarray, b: np.ndarray, rng: np.random.Generator):
  """`a` and `b`, the larger one cut to a random subset (in order) of the smaller one's size."""
  n = min(a.shape[0], b.shape[0])
  if a.shape[0] > n:
    a = a[np.sort(rng.choice(a.shape[0], n, replace=False))]
  if b.shape[0] > n:
    b = b[np.sort(rng.choice(b.shape[0], n, replace=False))]
  return a, b


def _swd_resolutions(size: int, nhood_size: int, min_resolution: int) -> list[int]:
  """The pyramid levels' sizes: `size`, `size` / 2, ... while >= `min_resolution`."""
  resolutions = []
  res = size
  while res >= min_resolution and res > nhood_size:
    resolutions.append(res)
    res //= 2
  if not resolutions:
    raise ValueError(f"image size {size} too small for min_resolution={min_resolution}")
  return resolutions


def _patch_descriptors(
    level_a: np.ndarray,
    level_b: np.ndarray,
    nhood_size: int,
    nhoods_per_image: int,
    joint_normalization: bool,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
  """Normalised (P, C·k·k) descriptors of random patches, at the same centres in both sets."""
  n, h, w, _ = level_a.shape
  half = nhood_size // 2
  p = n * nhoods_per_image
  img = np.repeat(np.arange(n), nhoods_per_image)
  iy = rng.integers(half, h - half, size=p)
  ix = rng.integers(half, w - half, size=p)
  da = _patches(level_a, iy, ix, img, half)
  db = _patches(level_b, iy, ix, img, half)
  if joint_normalization:
    return tuple(_normalise([da, db]))
  (da,), (db,) = _normalise([da]), _normalise([db])
  return da, db


def _sliced_distance(
    da: np.ndarray, db: np.ndarray, dir_repeats: int, dirs_per_repeat: int, rng
) -> float:
  """Mean |difference| of the sorted projections onto random unit directions."""
  dists = []
  for _ in range(dir_repeats):
    dirs = rng.standard_normal((da.shape[1], dirs_per_repeat))
    dirs /= np.sqrt(np.sum(dirs**2, axis=0, keepdims=True))
    pa = np.sort(da @ dirs, axis=0)
    pb = np.sort(db @ dirs, axis=0)
    dists.append(np.mean(np.abs(pa - pb)))
  return float(np.mean(dists))


# --------------------------------------------------------------------------------------------
# Checkerboard artefact score
# --------------------------------------------------------------------------------------------


def checkerboard_score(images) -> float:
  """Share of spectral energy on the Nyquist row/column of the 2-D DFT.

  Exact definition: for every image n and channel c (H, W even), let
  x = img[n, :, :, c] − mean(img[n, :, :, c]) and P = |DFT2(x)|². With the Nyquist set
  M = {(ky, kx): ky = H/2 or kx = W/2} (union of that row and column),
      s[n, c] = Σ_M P / Σ P          (defined as 0 when Σ P == 0, i.e. a constant channel).
  The score is the mean of s over all images and channels, in [0, 1].

  A ±1 pixel checkerboard scores 1 (all energy at (H/2, W/2)); stripes alternating per
  row or column also score 1; white noise ≈ (H + W − 1) / (H·W); smooth images ≈ 0.
  Stride-2 transposed-conv artefacts (uneven kernel overlap) put energy there.
  """
  x = np.asarray(images, dtype=np.float64)
  if x.ndim == 3:
    x = x[..., None]
  if x.ndim != 4:
    raise ValueError(f"expected NHWC images, got shape {x.shape}")
  _, h, w, _ = x.shape
  if h % 2 or w % 2:
    raise ValueError(f"checkerboard_score needs even H and W, got {h}x{w}")
  x = x - x.mean(axis=(1, 2), keepdims=True)
  p = np.abs(np.fft.fft2(x, axes=(1, 2))) ** 2  # (N, H, W, C)
  total = p.sum(axis=(1, 2))
  nyq = p[:, h // 2, :, :].sum(axis=1) + p[:, :, w // 2, :].sum(axis=1) - p[:, h // 2, w // 2, :]
  s = np.where(total > 1e-12 * h * w, nyq / np.where(total > 0, total, 1.0), 0.0)
  return float(s.mean())
