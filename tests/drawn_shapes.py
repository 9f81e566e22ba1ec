"""A labelled image set drawn with PIL for the classifier tests: not flowergan's synthetic flowers.

Five classes of outlined or filled shapes (circle, square, triangle, cross, star) drawn
anti-aliased (4× supersampling) at a random size, position, rotation, line width and fill,
in random colours on a random two-colour gradient with pixel noise and a few distracting
lines. Honest about what it is: drawings, not photographs, but their classes differ in shape
only (colour and position carry no label), as a real set's do.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

CLASS_NAMES = ("circle", "cross", "square", "star", "triangle")
_SUPERSAMPLE = 4


def _polygon(kind: str, cx: float, cy: float, r: float, angle: float) -> list[tuple]:
  if kind == "square":
    corners = [(math.pi / 4 + k * math.pi / 2, r) for k in range(4)]
  elif kind == "triangle":
    corners = [(-math.pi / 2 + k * 2 * math.pi / 3, r) for k in range(3)]
  elif kind == "star":
    corners = [(-math.pi / 2 + k * math.pi / 5, r if k % 2 == 0 else 0.45 * r) for k in range(10)]
  else:  # cross: a plus sign of arm width 0.5 r
    w = 0.28
    pts = [(w, 1), (w, w), (1, w), (1, -w), (w, -w), (w, -1)]
    pts += [(-x, -y) for x, y in pts]
    corners = [(math.atan2(y, x), r * math.hypot(x, y) / math.hypot(1, w)) for x, y in pts]
  return [(cx + d * math.cos(a + angle), cy + d * math.sin(a + angle)) for a, d in corners]


def _draw_one(rng: np.random.Generator, label: int, size: int) -> np.ndarray:
  big = size * _SUPERSAMPLE
  top, bottom = rng.uniform(0, 255, (2, 3))
  t = np.linspace(0.0, 1.0, big)[:, None, None]
  canvas = Image.fromarray(((1 - t) * top + t * bottom).repeat(big, axis=1).astype(np.uint8))
  draw = ImageDraw.Draw(canvas)
  for _ in range(rng.integers(0, 4)):  # distractors
    xy = [tuple(rng.uniform(0, big, 2)) for _ in range(2)]
    draw.line(xy, fill=tuple(rng.integers(0, 256, 3).tolist()), width=int(rng.integers(1, 6)))
  kind = CLASS_NAMES[label]
  r = rng.uniform(0.22, 0.42) * big
  cx, cy = rng.uniform(0.5 * big - 0.15 * big, 0.5 * big + 0.15 * big, 2)
  angle = rng.uniform(-0.35, 0.35)
  colour = tuple(rng.integers(0, 256, 3).tolist())
  filled = rng.random() < 0.5
  width = int(rng.uniform(0.06, 0.14) * big)
  if kind == "circle":
    box = [cx - r, cy - r, cx + r, cy + r]
    draw.ellipse(box, fill=colour if filled else None, outline=colour, width=width)
  else:
    pts = _polygon(kind, cx, cy, r, angle)
    if filled:
      draw.polygon(pts, fill=colour)
    else:
      draw.line(pts + pts[:1], fill=colour, width=width, joint="curve")
  small = np.asarray(canvas.resize((size, size), Image.Resampling.BOX), np.float32)
  small += rng.normal(0.0, 8.0, small.shape)
  return np.clip(small, 0, 255).astype(np.uint8)


def drawn_shapes(num_per_class: int, size: int = 32, seed: int = 0):
  """uint8 images (N, size, size, 3), int32 labels (N,) in class order, and the class names."""
  rng = np.random.default_rng(seed)
  labels = np.repeat(np.arange(len(CLASS_NAMES), dtype=np.int32), num_per_class)
  images = np.stack([_draw_one(rng, int(c), size) for c in labels])
  return images, labels, list(CLASS_NAMES)
