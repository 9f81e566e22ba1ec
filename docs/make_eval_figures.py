r"""Builds the figures of docs/evaluation.md from trained runs (that page names the runs).

  python docs/make_eval_figures.py ablation --runs=/tmp/abl_noda,/tmp/abl_da,/tmp/abl_da_nocolor \
      --names="no DiffAugment","DiffAugment color+translation+cutout","DiffAugment translation+cutout" \
      --num=3 --out=docs/eval_ablation.png
  python docs/make_eval_figures.py upsampling --runs=/tmp/demo_eval,/tmp/abl_transpose \
      --names="bilinear (demo)","transpose" --out=docs/eval_upsampling.png

(--names is a comma-separated list: no commas inside a name.)

ablation: one row of panels per run, the EMA and the raw generator side by side (same noise:
seed 0); in each panel the first row is class 0 (dandelion), the second class 1 (marigold);
enlarged ×2. upsampling: the first images of each run, enlarged ×4 without interpolation, with the
checkerboard score of 1000 generated images per class in the label.
"""

import os
import sys

import numpy as np
from absl import app, flags, logging
from PIL import Image, ImageDraw

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from flowergan import imaging, metrics, sampling, trained  # noqa: E402

_RUNS = flags.DEFINE_list("runs", None, "Workdirs.", required=True)
_NAMES = flags.DEFINE_list("names", None, "A title per run.", required=True)
_OUT = flags.DEFINE_string("out", None, "PNG path.", required=True)
_NUM = flags.DEFINE_integer("num", 5, "Images per class and panel.")


def _titled(image: np.ndarray, title: str) -> np.ndarray:
  h, w, _ = image.shape
  canvas = Image.new("RGB", (max(w, 6 * len(title) + 4), h + 14), "white")
  canvas.paste(Image.fromarray(image), (0, 14))
  ImageDraw.Draw(canvas).text((2, 1), title, fill="black")
  return np.asarray(canvas)


def _hstack(images, gap=8) -> np.ndarray:
  h = max(i.shape[0] for i in images)
  padded = [np.pad(i, ((0, h - i.shape[0]), (0, gap), (0, 0)), constant_values=255) for i in images]
  return np.concatenate(padded, axis=1)[:, :-gap]


def _samples(model, use_ema, num, seed=0):
  return sampling.sample_grid(model, "all", num, seed, use_ema=use_ema).images


def _vstack(images, gap=8) -> np.ndarray:
  w = max(i.shape[1] for i in images)
  padded = [np.pad(i, ((0, gap), (0, w - i.shape[1]), (0, 0)), constant_values=255) for i in images]
  return np.concatenate(padded, axis=0)[:-gap]


def _enlarge(images, scale):
  return np.repeat(np.repeat(images, scale, axis=1), scale, axis=2)


def ablation(scale=2):
  rows = []
  for run, name in zip(_RUNS.value, _NAMES.value):
    model = trained.load_trained(run)
    panels = []
    for use_ema in (True, False):
      images = _enlarge(_samples(model, use_ema, _NUM.value), scale)
      grid = imaging.make_grid(images, ncols=_NUM.value)
      panels.append(_titled(grid, "EMA generator" if use_ema else "raw generator"))
    rows.append(_titled(_hstack(panels, gap=16), name))
  return _vstack(rows)


def upsampling(scale=4, num=3):
  panels = []
  for run, name in zip(_RUNS.value, _NAMES.value):
    model = trained.load_trained(run)
    images = _samples(model, True, 1000)
    score = metrics.checkerboard_score(images * 2 - 1)
    k = len(model.class_names)
    pick = np.concatenate([images[i * 1000 : i * 1000 + num] for i in range(k)])
    grid = imaging.make_grid(_enlarge(pick, scale), ncols=num)
    panels.append(_titled(grid, f"{name}: checkerboard {score:.4f}"))
  return _hstack(panels, gap=16)


def main(argv):
  what = argv[1] if len(argv) > 1 else "ablation"
  image = {"ablation": ablation, "upsampling": upsampling}[what]()
  Image.fromarray(image).save(_OUT.value, optimize=True)
  logging.info("wrote %s (%d KB)", _OUT.value, os.path.getsize(_OUT.value) // 1024)


if __name__ == "__main__":
  app.run(main)
