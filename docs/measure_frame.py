r"""How much darker (or lighter) the border of generated images is than the data's: the frame.

  python docs/measure_frame.py --workdir=runs/demo                 # latest checkpoint, EMA
  python docs/measure_frame.py --workdir=runs/demo --step=100 --no_ema
  python docs/measure_frame.py                                     # the real images only
  python docs/measure_frame.py --workdir=runs/demo --picture=docs/demo_samples.png

For the run's generated images (`--num_per_class` per class, noise seed 0) and for the real
images of the synthetic data set the run trained on (its size, its seed), prints the mean
colour and luma (Rec. 601) of the outer ring of `--ring` pixels, of the interior, and the luma
profile by distance from the nearest edge (0 = the outermost pixels), and the frame score:
how strongly the images hold straight lines along their sides (`border_lines`). Numbers of the
demo: docs/demo_quality.md. `--picture` also writes the README's picture: the training's sample
grids (EMA weights, the noise of the run's grids), 4×4 per class, enlarged ×3, labelled.
"""

import os
import sys

import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command's flags, defined only when it runs (tests import this file beside the entry
  points, whose flags share these names)."""
  flags.DEFINE_string("workdir", None, "Run to measure (none: only the real images).")
  flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
  flags.DEFINE_bool("no_ema", False, "Measure the raw generator weights, not the EMA.")
  flags.DEFINE_integer("num_per_class", 256, "Images per class, generated and real.")
  flags.DEFINE_integer("ring", 2, "Width in pixels of the outer ring.")
  flags.DEFINE_integer("size", 32, "Image size of the real images without --workdir.")
  flags.DEFINE_string("picture", None, "Also write the labelled sample grids (PNG).")


LUMA = np.array([0.299, 0.587, 0.114])  # Rec. 601 weights of R, G, B


def border_distance(size: int) -> np.ndarray:
  """(size, size) ints: each pixel's distance to the nearest edge (0 on the outermost ring)."""
  i = np.arange(size)
  d = np.minimum(i, size - 1 - i)
  return np.minimum(d[:, None], d[None, :])


def ring_stats(images: np.ndarray, ring: int = 2) -> dict:
  """Mean colour and luma of the outer `ring` pixels and of the rest, of images (N, S, S, 3)
  in [0, 1]: {'ring_rgb', 'interior_rgb', 'ring_luma', 'interior_luma', 'frame'}, where
  'frame' = ring luma − interior luma (negative: a darker border)."""
  images = np.asarray(images, np.float64)
  if images.ndim != 4 or images.shape[1] != images.shape[2] or images.shape[-1] != 3:
    raise ValueError(f"expected images (N, S, S, 3), got shape {images.shape}")
  if not 0 < ring < images.shape[1] // 2:
    raise ValueError(f"ring must be in 1..{images.shape[1] // 2 - 1}, got {ring}")
  outer = border_distance(images.shape[1]) < ring
  ring_rgb = images[:, outer].mean(axis=(0, 1))
  interior_rgb = images[:, ~outer].mean(axis=(0, 1))
  stats = {
      "ring_rgb": ring_rgb,
      "interior_rgb": interior_rgb,
      "ring_luma": float(ring_rgb @ LUMA),
      "interior_luma": float(interior_rgb @ LUMA),
  }
  stats["frame"] = stats["ring_luma"] - stats["interior_luma"]
  return stats


def luma_profile(images: np.ndarray) -> np.ndarray:
  """Mean luma of images (N, S, S, 3) in [0, 1] at each distance 0..S/2−1 from the edge."""
  luma = np.asarray(images, np.float64) @ LUMA
  distance = border_distance(luma.shape[1])
  return np.array([luma[:, distance == d].mean() for d in range(luma.shape[1] // 2)])


def side_profiles(images: np.ndarray, depth: int = 8, margin: int = 4) -> np.ndarray:
  """(N, 4, depth, 3): each image's mean colour of the row `d` pixels in from each side, for
  d = 0..depth−1, over that side's length less `margin` pixels at each corner."""
  images = np.asarray(images, np.float64)
  inner = slice(margin, images.shape[1] - margin)
  top, bottom = images[:, :depth, inner], images[:, ::-1][:, :depth, inner]
  left, right = images[:, inner, :depth], images[:, inner, ::-1][:, :, :depth]
  return np.stack([top.mean(2), bottom.mean(2), left.mean(1), right.mean(1)], axis=1)


def border_lines(images: np.ndarray, depth: int = 8) -> np.ndarray:
  """(depth − 2,): how strongly images (N, S, S, 3) in [0, 1] hold straight lines parallel
  to their sides, d = 1..depth−2 pixels in: the mean over images, sides and channels of
  |p[d−1] − 2·p[d] + p[d+1]|, p the side profile (`side_profiles`). Along a side the
  flower's and the background's own detail averages out; a frame (a line of one colour along
  the whole side) does not."""
  p = side_profiles(images, depth)
  return np.abs(p[:, :, :-2] - 2 * p[:, :, 1:-1] + p[:, :, 2:]).mean(axis=(0, 1, 3))


def frame_score(images: np.ndarray) -> float:
  """`border_lines` in the outer ring and just inside it (d = 1, 2, 3): the frame's number."""
  return float(border_lines(images, depth=5).mean())


def real_images(size: int, num_per_class: int, seed: int = 0) -> np.ndarray:
  """The synthetic data set's first `num_per_class` images per class, in [0, 1]."""
  from flowergan import synthetic

  images, _, _ = synthetic.render_images(num_per_class, seed, size)
  return images.astype(np.float64) / 255.0


def generated_images(workdir: str, step: int | None, use_ema: bool, num_per_class: int):
  """(images in [0, 1] with `num_per_class` per class, the model) of a trained run."""
  from flowergan import sampling, trained

  model = trained.load_trained(workdir, step)
  labels = np.repeat(np.arange(model.num_classes, dtype=np.int32), num_per_class)
  images = sampling.generate(
      model.generator, model.sampling_variables(use_ema), labels, z_dim=model.z_dim, seed=0
  )
  return images, model


def write_picture(model, path: str, scale: int = 3) -> None:
  """Each class's 4×4 grid of the training's sample noise (seed + 1), side by side, labelled."""
  from PIL import Image, ImageDraw

  from flowergan import imaging, sampling, train

  per_class = train.SAMPLES_PER_CLASS
  labels = np.repeat(np.arange(model.num_classes, dtype=np.int32), per_class)
  images = sampling.generate(
      model.generator,
      model.sampling_variables(True),
      labels,
      z_dim=model.z_dim,
      seed=int(model.config.seed) + 1,
  )
  grids = [
      imaging.enlarge(imaging.make_grid(images[labels == c], ncols=4), scale)
      for c in range(model.num_classes)
  ]
  top, gap = 24, 24
  width = sum(g.shape[1] for g in grids) + gap * (len(grids) - 1)
  canvas = Image.new("RGB", (width, top + grids[0].shape[0]), "white")
  draw = ImageDraw.Draw(canvas)
  x = 0
  for name, grid in zip(model.class_names, grids):
    canvas.paste(Image.fromarray(grid), (x, top))
    draw.text((x + 4, 4), name, fill="black")
    x += grid.shape[1] + gap
  canvas.save(path)
  print(f"picture: {path}")


def report(name: str, images: np.ndarray, ring: int) -> dict:
  stats = ring_stats(images, ring)
  fmt = lambda rgb: "(" + ", ".join(f"{v:.3f}" for v in rgb) + ")"
  profile = " ".join(f"{v:.3f}" for v in luma_profile(images)[:8])
  lines = " ".join(f"{v:.4f}" for v in border_lines(images))
  stats["lines"] = frame_score(images)
  print(
      f"{name}: ring({ring}px) luma {stats['ring_luma']:.3f} rgb {fmt(stats['ring_rgb'])} | "
      f"interior luma {stats['interior_luma']:.3f} rgb {fmt(stats['interior_rgb'])} | "
      f"ring − interior {stats['frame']:+.3f}\n  luma by distance from the edge 0..7: {profile}"
      f"\n  border lines d=1..6: {lines} | frame score (d=1..3) {stats['lines']:.4f}"
  )
  return stats


def main(argv):
  del argv
  size, data_size, data_seed = FLAGS.size, FLAGS.num_per_class, 0
  generated = None
  if FLAGS.workdir:
    images, model = generated_images(
        FLAGS.workdir, FLAGS.step, not FLAGS.no_ema, FLAGS.num_per_class
    )
    size, data_seed = model.image_size, int(model.config.data.synthetic_seed)
    if model.config.data.source != "synthetic":
      sys.exit(
          f"error: {FLAGS.workdir} did not train on the synthetic data; measure a run that did"
      )
    data_size = min(FLAGS.num_per_class, int(model.config.data.synthetic_num_per_class))
    weights = "raw" if FLAGS.no_ema else "EMA"
    generated = report(f"generated (step {model.step}, {weights})", images, FLAGS.ring)
    if FLAGS.picture:
      write_picture(model, FLAGS.picture)
  real = report(f"real ({data_size}/class)", real_images(size, data_size, data_seed), FLAGS.ring)
  if generated is not None:
    print(
        f"generated − real: ring luma {generated['ring_luma'] - real['ring_luma']:+.3f}, "
        f"frame score ×{generated['lines'] / real['lines']:.2f}"
    )


if __name__ == "__main__":
  define_flags()
  app.run(main)
