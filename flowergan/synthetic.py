"""Procedural two-class flower data set ("dandelion", "marigold"), numpy + PIL only.

No TensorFlow and no JAX here: metrics code imports this module on accelerator
machines where TensorFlow is absent.

* `render_images(num_per_class, seed, size)` draws a deterministic data set: image `i` of
  class `c` depends only on `(seed, c, i, size)`, so a larger set starts with the images of a
  smaller one.

  - dandelion: a flat bright-yellow disc made of many thin radial rays in several
    layers with a serrated fringe; about one in six is a white seed-head "puff"
    (fine white filaments with a small olive centre).
  - marigold: an orange pom-pom of 3-5 layers of rounded, ruffled petals with
    dark seams between petals, getting darker towards a small brown centre.

  Both sit on a varied green / earth background with a stem, at a random
  position near the centre, random scale, rotation and petal count. Rendering is
  vectorised numpy in polar coordinates, supersampled x2 and box-downsampled.

* `centre_hue_scores(images)` / `classify_by_hue(images)`: a fixed colour
  statistic (orange share of the vivid warm pixels, centre-weighted) that puts
  the synthetic images in the right class without any trained model; it accepts
  uint8 images or float images in [-1, 1], so it can also check class
  consistency of *generated* images.
"""

from __future__ import annotations

import io
import os

import numpy as np

CLASS_NAMES = ("dandelion", "marigold")
DANDELION, MARIGOLD = 0, 1
PUFF_PROBABILITY = 1.0 / 6.0
_SUPERSAMPLE = 2


# --------------------------------------------------------------------------- helpers
def _hsv_to_rgb(h, s, v):
  """h in degrees, s and v in [0, 1]; returns an array (..., 3) in [0, 1]."""
  h = np.asarray(h, np.float64) % 360.0
  s = np.asarray(s, np.float64)
  v = np.asarray(v, np.float64)
  c = v * s
  hp = h / 60.0
  x = c * (1 - np.abs(hp % 2 - 1))
  z = np.zeros_like(c)
  idx = np.floor(hp).astype(int) % 6
  r = np.choose(idx, [c, x, z, z, x, c])
  g = np.choose(idx, [x, c, c, x, z, z])
  b = np.choose(idx, [z, z, x, c, c, x])
  m = v - c
  return np.stack([r + m, g + m, b + m], axis=-1)


def _smooth_noise(rng, n, cells):
  """Smooth value noise on an n x n grid (bilinear interpolation of a random lattice)."""
  lattice = rng.random((cells + 1, cells + 1))
  t = np.linspace(0, cells, n, endpoint=False)
  i0 = np.floor(t).astype(int)
  f = t - i0
  f = f * f * (3 - 2 * f)
  a = lattice[i0][:, i0]
  b = lattice[i0][:, i0 + 1]
  c = lattice[i0 + 1][:, i0]
  d = lattice[i0 + 1][:, i0 + 1]
  fy, fx = f[:, None], f[None, :]
  return (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy


def _over(canvas, colour, alpha):
  """Alpha-composites `colour` (H,W,3 or 3) with coverage `alpha` (H,W) onto `canvas`."""
  a = np.clip(alpha, 0.0, 1.0)[..., None]
  canvas *= 1.0 - a
  canvas += a * colour
  return canvas


def _soft_step(x, width):
  """0 -> 1 smooth step around 0 with the given width (antialiased edges)."""
  return np.clip(0.5 + x / width, 0.0, 1.0)


# --------------------------------------------------------------------------- scene parts
def _background(rng, n, yy, xx):
  earthy = rng.random() < 0.35
  if earthy:
    base_h, base_s, base_v = (
        rng.uniform(22, 40),
        rng.uniform(0.35, 0.55),
        rng.uniform(0.22, 0.38),
    )
    alt_h, alt_s, alt_v = rng.uniform(70, 110), rng.uniform(0.4, 0.7), rng.uniform(0.25, 0.45)
  else:
    base_h, base_s, base_v = (
        rng.uniform(75, 125),
        rng.uniform(0.45, 0.8),
        rng.uniform(0.25, 0.55),
    )
    alt_h, alt_s, alt_v = rng.uniform(25, 60), rng.uniform(0.3, 0.55), rng.uniform(0.2, 0.4)
  mix = _smooth_noise(rng, n, int(rng.integers(2, 5)))
  mix = np.clip((mix - 0.5) * rng.uniform(1.0, 2.5) + 0.5 - (0.25 if not earthy else 0.0), 0, 1)
  c0 = _hsv_to_rgb(base_h, base_s, base_v)
  c1 = _hsv_to_rgb(alt_h, alt_s, alt_v)
  img = c0 * (1 - mix[..., None]) + c1 * mix[..., None]
  # Light variation and fine texture: vertical-ish grass blades (1-D noise across
  # x, swaying slowly along y), plus a little pixel noise below.
  light = 0.75 + 0.5 * _smooth_noise(rng, n, 2)
  sway = 0.15 * (_smooth_noise(rng, n, 3) - 0.5)
  cells = int(rng.integers(20, 45))
  lattice = rng.random(cells + 2)
  pos = np.clip((xx + sway * (yy + 1) + 1.0) * 0.5 * cells, 0, cells)
  i0 = np.floor(pos).astype(int)
  f = pos - i0
  blades = lattice[i0] * (1 - f) + lattice[i0 + 1] * f
  strength = rng.uniform(0.15, 0.45)
  img = img * light[..., None] * (1 - strength / 2 + strength * blades[..., None])
  # Out-of-focus leaves: a few soft dark/light green ellipses.
  for _ in range(int(rng.integers(2, 7))):
    cx, cy = rng.uniform(-1, 1, 2)
    a, b = rng.uniform(0.15, 0.45), rng.uniform(0.05, 0.15)
    t = rng.uniform(0, np.pi)
    du = (xx - cx) * np.cos(t) + (yy - cy) * np.sin(t)
    dv = -(xx - cx) * np.sin(t) + (yy - cy) * np.cos(t)
    d = np.sqrt((du / a) ** 2 + (dv / b) ** 2)
    col = _hsv_to_rgb(rng.uniform(80, 130), rng.uniform(0.5, 0.85), rng.uniform(0.2, 0.55))
    _over(img, col, _soft_step(1 - d, 0.4) * rng.uniform(0.5, 0.9))
  # Pixel noise from its own stream, so the scene itself does not depend on the size.
  img += np.random.default_rng(rng.integers(2**63)).normal(0, 0.02, img.shape)
  return img


def _stem(rng, img, xx, yy, cx, cy, radius, px):
  """A slightly curved green stem from the flower to the bottom edge."""
  bend = rng.uniform(-0.3, 0.3)
  width = radius * rng.uniform(0.07, 0.12) + px
  t = np.clip((yy - cy) / max(1.0 - cy, 1e-3), 0, 1)
  sx = cx + bend * t * t
  d = np.abs(xx - sx)
  mask = _soft_step(width - d, 2 * px) * (yy > cy)
  shade = 0.8 + 0.4 * np.clip((xx - sx) / width, -1, 1) * -0.5
  col = _hsv_to_rgb(rng.uniform(85, 115), 0.7, 0.45)
  _over(img, col * shade[..., None], mask)


def _dandelion(rng, img, r, th, radius, px):
  hue = rng.uniform(47, 57)
  n_layers = int(rng.integers(3, 5))
  base_rays = int(rng.integers(40, 72))
  for layer in range(n_layers):
    frac = 1.0 - layer / (n_layers + 0.5)
    rl = radius * frac
    n = base_rays + int(rng.integers(-6, 7)) - 4 * layer
    ph = rng.uniform(0, 2 * np.pi)
    ray = np.abs(np.cos(0.5 * n * (th + ph)))  # 1 at ray centre, 0 between rays
    # Serrated fringe: each ray ends in a narrow rounded tip.
    edge = rl * (0.82 + 0.18 * ray**0.6) * (1 + 0.03 * np.sin(th * rng.integers(3, 7) + ph))
    cover = _soft_step(edge - r, 1.5 * px)
    v = rng.uniform(0.9, 1.0) * (0.72 + 0.28 * ray**0.5) * (0.82 + 0.18 * layer / n_layers)
    s = np.full_like(r, rng.uniform(0.85, 0.97)) * (0.9 + 0.1 * (1 - ray))
    col = _hsv_to_rgb(hue + rng.uniform(-2, 2) - 3 * (1 - ray), s, v)
    _over(img, col, cover)
  # Slightly greener, darker, dense florets in the middle.
  core = _soft_step(radius * 0.16 - r, 2 * px)
  grain = 0.85 + 0.15 * np.cos(th * 90) * np.cos(r / radius * 80)
  col = _hsv_to_rgb(hue - 4, 0.95, 0.8 * grain)
  _over(img, col, core)


def _puff(rng, img, r, th, radius, px):
  radius = radius * rng.uniform(0.85, 1.0)
  n = int(rng.integers(50, 80))
  ph = rng.uniform(0, 2 * np.pi)
  rr = r / radius
  # Fuzzy rim: coverage fades over the outer ~12% of the radius, ragged by filament.
  filament = np.abs(np.cos(0.5 * n * (th + ph))) ** 4 * np.clip((rr - 0.3) / 0.4, 0, 1)
  body = np.clip((1.05 - rr) / 0.15, 0, 1) * (0.75 + 0.25 * filament)
  # Translucent white sphere, densest at the rim (seen edge-on), with fine bright filaments.
  alpha = body * np.clip(0.55 + 0.3 * rr**2 + 0.3 * filament, 0, 0.97)
  white = _hsv_to_rgb(rng.uniform(40, 60), rng.uniform(0.0, 0.05), rng.uniform(0.92, 1.0))
  shade = (0.88 + 0.12 * filament)[..., None]
  _over(img, white * shade, alpha)
  # Seeds: a pale-brown speckled disc around a small olive centre.
  seeds = _soft_step(radius * 0.2 - r, 3 * px) * (0.4 + 0.4 * np.cos(th * 23 + ph) ** 2)
  _over(img, _hsv_to_rgb(rng.uniform(35, 50), 0.3, 0.65), seeds)
  core = _soft_step(radius * 0.08 - r, 2 * px)
  _over(img, _hsv_to_rgb(rng.uniform(60, 80), 0.4, 0.5), core)


def _marigold(rng, img, r, th, radius, px):
  hue = rng.uniform(20, 33)
  n_layers = int(rng.integers(3, 6))
  for layer in range(n_layers):
    frac = 1.0 - 0.78 * layer / n_layers
    rl = radius * frac
    n = int(rng.integers(8, 14)) + layer
    ph = rng.uniform(0, 2 * np.pi)
    t = ((n * (th + ph) / (2 * np.pi)) % 1.0) * 2.0 - 1.0  # -1..1 across one petal
    petal = np.sqrt(np.clip(1.0 - t * t, 0, 1))  # round lobe: 1 mid-petal, 0 at the seam
    ruffle = 0.025 * np.sin(th * n * 2 + rng.uniform(0, 6.3)) * petal
    edge = rl * (0.8 + 0.2 * petal + ruffle)
    cover = _soft_step(edge - r, 1.5 * px)
    depth = layer / max(n_layers - 1, 1)  # 0 outer .. 1 inner
    # Petal shading: darker seams, darker towards the base, lighter ruffled edge.
    radial = np.clip(r / np.maximum(edge, 1e-6), 0, 1)
    v = (0.6 + 0.4 * petal**0.4) * (0.7 + 0.3 * radial) * rng.uniform(0.88, 1.0)
    v *= 1.0 - 0.18 * depth
    ruff_lines = 0.92 + 0.08 * np.cos(r / radius * rng.uniform(50, 80) + 2 * np.sin(th * n))
    h = hue - 5 * depth + 6 * radial * (1 - depth) + rng.uniform(-2, 2)
    col = _hsv_to_rgb(h, np.full_like(r, rng.uniform(0.88, 1.0)), np.clip(v * ruff_lines, 0, 1))
    _over(img, col, cover)
  core = _soft_step(radius * rng.uniform(0.1, 0.16) - r, 2 * px)
  grain = 0.8 + 0.2 * np.cos(th * 40) * np.cos(r / radius * 60)
  _over(img, _hsv_to_rgb(hue - 10, 0.9, 0.38 * grain), core)


def render_image(label: int, seed: int, index: int, size: int) -> np.ndarray:
  """One image (size, size, 3) uint8; depends only on (label, seed, index, size)."""
  if label not in (DANDELION, MARIGOLD):
    raise ValueError(f"synthetic label must be 0 (dandelion) or 1 (marigold), got {label}")
  rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(label), int(index)])
  n = int(size) * _SUPERSAMPLE
  px = 2.0 / n  # one (supersampled) pixel in [-1, 1] units
  coords = (np.arange(n) + 0.5) * px - 1.0
  yy, xx = np.meshgrid(coords, coords, indexing="ij")
  img = _background(rng, n, yy, xx)

  radius = rng.uniform(0.4, 0.8)
  cx, cy = rng.uniform(-0.18, 0.18, 2)
  tilt = rng.uniform(0.75, 1.0)  # viewed slightly from the side: squash along a random axis
  tilt_axis = rng.uniform(0, np.pi)
  rot = rng.uniform(0, 2 * np.pi)
  _stem(rng, img, xx, yy, cx, cy, radius, px)
  dx, dy = xx - cx, yy - cy
  u = dx * np.cos(tilt_axis) + dy * np.sin(tilt_axis)
  w = (-dx * np.sin(tilt_axis) + dy * np.cos(tilt_axis)) / tilt
  r = np.hypot(u, w)
  th = np.arctan2(w, u) + tilt_axis + rot
  # Soft drop shadow under the head.
  shadow = _soft_step(radius * 1.05 - np.hypot(dx - 0.04, dy - 0.05), 0.15)
  img *= 1.0 - 0.35 * shadow[..., None]
  if label == DANDELION:
    if rng.random() < PUFF_PROBABILITY:
      _puff(rng, img, r, th, radius, px)
    else:
      _dandelion(rng, img, r, th, radius, px)
  else:
    _marigold(rng, img, r, th, radius, px)
  img *= rng.uniform(0.85, 1.1)  # exposure
  img = img.reshape(size, _SUPERSAMPLE, size, _SUPERSAMPLE, 3).mean(axis=(1, 3))
  return np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)


def render_images(num_per_class: int, seed: int, size: int):
  """Returns (images uint8 (2n, size, size, 3), labels int32 (2n,), class_names).

  Order: all dandelions (index 0..n-1), then all marigolds.
  """
  images, labels = [], []
  for label in (DANDELION, MARIGOLD):
    for i in range(int(num_per_class)):
      images.append(render_image(label, seed, i, size))
      labels.append(label)
  if not images:
    return np.zeros((0, size, size, 3), np.uint8), np.zeros((0,), np.int32), list(CLASS_NAMES)
  return np.stack(images), np.asarray(labels, np.int32), list(CLASS_NAMES)


def write_dataset(
    directory: str, num_per_class: int, seed: int, size: int, num_threads: int | None = None
) -> None:
  """Writes `directory/<class>/<index>.png`, rendered in a thread pool.

  Not atomic: callers render into `storage.atomic_directory`. numpy and PNG encoding release the
  GIL for most of the work.
  """
  from concurrent.futures import ThreadPoolExecutor

  from PIL import Image  # local: keep `import flowergan.synthetic` cheap

  from flowergan import storage

  def one(job):
    label, i = job
    buffer = io.BytesIO()
    Image.fromarray(render_image(label, seed, i, size)).save(buffer, format="PNG")
    storage.write_new_file(
        os.path.join(directory, CLASS_NAMES[label], f"{i:06d}.png"), buffer.getvalue()
    )

  for name in CLASS_NAMES:
    os.makedirs(os.path.join(directory, name), exist_ok=True)
  jobs = [(label, i) for label in (DANDELION, MARIGOLD) for i in range(int(num_per_class))]
  workers = num_threads or min(8, os.cpu_count() or 1)
  with ThreadPoolExecutor(max_workers=workers) as pool:
    for _ in pool.map(one, jobs):
      pass


# --------------------------------------------------------------------------- hue statistic
def _to_unit_rgb(images) -> np.ndarray:
  x = np.asarray(images)
  if x.ndim == 3:
    x = x[None]
  if x.ndim != 4 or x.shape[-1] != 3:
    raise ValueError(f"expected images of shape (N, H, W, 3) or (H, W, 3), got {x.shape}")
  if x.dtype == np.uint8:
    return x.astype(np.float32) / 255.0
  x = x.astype(np.float32)
  return np.clip((x + 1.0) * 0.5, 0.0, 1.0)  # float images are in [-1, 1]


def centre_hue_scores(images) -> np.ndarray:
  """Marigold-ness score in [0, 1] per image (> 0.5: marigold, <= 0.5: dandelion).

  Among the vivid warm pixels (hue 5..75 deg, saturation and value > 0.5),
  weighted by a Gaussian centred on the image (sigma = 0.35 * size) and by
  saturation * value, the share that is orange (hue < 40 deg) rather than
  yellow. Images with (almost) no vivid warm pixels (e.g. white seed heads) score ~0.
  Accepts uint8 images or float images in [-1, 1], shape (N, H, W, 3) or (H, W, 3).
  """
  rgb = _to_unit_rgb(images)
  mx = rgb.max(-1)
  mn = rgb.min(-1)
  delta = mx - mn
  r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
  safe = np.where(delta > 1e-6, delta, 1.0)
  # Hue (degrees) restricted to where red is the maximum: warm colours.
  hue_red = 60.0 * ((g - b) / safe) % 360.0
  hue_green = 60.0 * ((b - r) / safe + 2.0)
  hue = np.where(mx == r, hue_red, np.where(mx == g, hue_green, 240.0))
  sat = np.where(mx > 1e-6, delta / np.maximum(mx, 1e-6), 0.0)
  vivid = (hue > 5) & (hue < 75) & (sat > 0.5) & (mx > 0.5)
  h, w = rgb.shape[1:3]
  yy, xx = np.meshgrid(
      (np.arange(h) + 0.5) / h - 0.5, (np.arange(w) + 0.5) / w - 0.5, indexing="ij"
  )
  centre = np.exp(-(xx**2 + yy**2) / (2 * 0.35**2))
  weight = vivid * sat * mx * centre
  # Soft orange membership: 1 below 36 deg, 0 above 44 deg.
  orange = np.clip((44.0 - hue) / 8.0, 0.0, 1.0)
  num = (weight * orange).sum(axis=(1, 2))
  den = weight.sum(axis=(1, 2))
  # A small prior mass (2% of the centre weight) pulls images with almost no vivid
  # warm pixels towards 0 instead of letting a few stray pixels decide.
  prior = 0.02 * centre.sum()
  return (num / (den + prior)).astype(np.float32)


def classify_by_hue(images) -> np.ndarray:
  """Labels int32 (N,): 1 (marigold) where centre_hue_scores > 0.5, else 0 (dandelion)."""
  return (centre_hue_scores(images) > 0.5).astype(np.int32)
