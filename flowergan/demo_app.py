"""The web demo's logic, without Streamlit: a request → images → PNG bytes, and the run's info.

The page (`flowergan/demo_page.py`, started by `streamlit run demo.py -- --workdir=runs/demo`)
only draws widgets; everything here is testable without a browser.

Same images as `sample.py`: a grid of n² flowers of class C with seed S and truncation T is
`sample.py --label=C --num=n² --seed=S --truncation=T`, bit for bit (the downloaded PNG is the
very file sample.py writes): both call `sampling.sample_grid` / `sampling.sample_walk` and
encode with `flowergan.imaging`. ALL draws each flower's class from the seed, which is
`sample.py --label=random`. Every request is computed in the one batch shape
`sampling.BATCH_SIZE` (49, the 7×7 grid), so the generator compiles once per process.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time

import numpy as np

from flowergan import errors, imaging, sampling, trained

ALL = "ALL"  # the original's radio option for "every class"
TRUNCATION_RANGE = (0.01, 3.0)
DEFAULT_TRUNCATION = 1.5
GRID_RANGE = (1, 7)
DEFAULT_GRID = 4
MAX_SEED = 2**31 - 1
DISPLAY_PIXELS = 512  # the original showed its 128×128 flowers ×4


class DemoError(errors.FlowerganError):
  """A bad request or an unusable workdir; the page shows the one-line message."""


@dataclasses.dataclass(frozen=True)
class Request:
  """What the page asks for: `choice` is ALL or a class name; grid² images."""

  choice: str
  truncation: float
  grid: int
  seed: int


@dataclasses.dataclass
class Grid:
  """A generated grid: images in [0, 1] (n², S, S, 3), their labels, and the seconds it took."""

  request: Request
  images: np.ndarray
  labels: np.ndarray
  seconds: float


class Demo:
  """A loaded run: the EMA generator, its class names, step and evaluation numbers."""

  def __init__(self, model: trained.TrainedModel, workdir: str):
    self.model = model
    self.workdir = workdir

  @classmethod
  def load(cls, workdir: str, step: int | None = None) -> Demo:
    """Loads and compiles (one padded batch); raises FlowerganError with a one-line message."""
    demo = cls(trained.load_trained(workdir, step), workdir)
    demo.warm_up()
    return demo

  @property
  def class_names(self) -> list[str]:
    return list(self.model.class_names)

  @property
  def choices(self) -> list[str]:
    return [ALL, *self.class_names]

  @property
  def image_size(self) -> int:
    return self.model.image_size

  def warm_up(self) -> None:
    """Compiles the generator for the one batch shape every request uses."""
    sampling.sample_grid(self.model, self.class_names[0], 1, z=np.zeros((1, self.model.z_dim)))

  def label(self, choice: str) -> str:
    """ALL: each class drawn from the seed (`sample.py --label=random`); else one class."""
    if choice != ALL and choice not in self.class_names:
      raise DemoError(f"unknown class {choice!r}; this run has {', '.join(self.class_names)}.")
    return "random" if choice == ALL else choice

  def labels(self, choice: str, num: int, seed: int) -> np.ndarray:
    """The labels of a grid of `num` flowers of `choice` with `seed` (as `grid` draws them)."""
    return sampling.resolve_labels(self.label(choice), self.class_names, num, seed)

  def grid(self, request: Request) -> Grid:
    check_request(request)
    start = time.perf_counter()
    label = self.label(request.choice)
    samples = sampling.sample_grid(
        self.model, label, request.grid**2, request.seed, request.truncation
    )
    return Grid(request, samples.images, samples.labels, time.perf_counter() - start)

  def walk(
      self, seed_a: int, seed_b: int, frames: int, class_a: str, class_b: str, truncation: float
  ) -> np.ndarray:
    """`sample.py --label=class_a,class_b --interpolate=seed_a,seed_b --frames=N` as images."""
    names = self.class_names
    for name in (class_a, class_b):
      if name not in names:
        raise DemoError(f"unknown class {name!r}; this run has {', '.join(names)}.")
    walk = sampling.sample_walk(
        self.model, (seed_a, seed_b), (class_a, class_b), frames, truncation
    )
    return walk.images

  def enlargement(self) -> int:
    """Nearest-neighbour factor: the original's ×4 at 128×128, as large for smaller models."""
    return max(1, math.ceil(DISPLAY_PIXELS / self.image_size))

  def caption(self) -> str:
    """What the run is: the step (or the imported file) and its evaluation numbers."""
    imported = (self.model.metadata or {}).get("imported_generator")
    if imported:
      what = f"the authors' generator ({imported.get('file')}), imported"
    else:
      what = f"step {self.model.step}"
    size = f"{self.image_size}×{self.image_size}"
    line = f"Model: {self.workdir}, {what}, {size} images, classes {', '.join(self.class_names)}."
    metrics = latest_metrics(self.workdir)
    if metrics:
      line += " " + format_metrics(metrics, self.class_names)
    return line


def check_request(request: Request) -> None:
  lo, hi = TRUNCATION_RANGE
  if not lo <= request.truncation <= hi:
    raise DemoError(f"truncation must be in [{lo}, {hi}], got {request.truncation}.")
  lo, hi = GRID_RANGE
  if not lo <= request.grid <= hi:
    raise DemoError(f"the grid size must be in [{lo}, {hi}], got {request.grid}.")
  if not 0 <= request.seed <= MAX_SEED:
    raise DemoError(f"the seed must be in [0, {MAX_SEED}], got {request.seed}.")


def sample_command(request: Request, workdir: str) -> str:
  """The `sample.py` command that writes the same grid."""
  label = "random" if request.choice == ALL else request.choice
  return (
      f"python sample.py --workdir={workdir} --label={label} --num={request.grid**2} "
      f"--seed={request.seed} --truncation={request.truncation!r}"
  )


def grid_png(grid: Grid) -> bytes:
  """The grid as `sample.py` writes it (same layout, same pixels, same PNG bytes)."""
  return imaging.png_bytes(imaging.make_grid(grid.images))


def display_pngs(grid: Grid, factor: int) -> list[bytes]:
  """Each image enlarged `factor`× with nearest-neighbour on the server (the browser would
  smooth it), as PNG; fast compression: these are rendered once and thrown away."""
  return [
      imaging.png_bytes(imaging.enlarge(image, factor), compress_level=1)
      for image in imaging.to_uint8(grid.images)
  ]


def latest_metrics(workdir: str) -> dict | None:
  """The last evaluation in `workdir/metrics.jsonl`, or None (no file, or unreadable lines)."""
  path = os.path.join(workdir, "metrics.jsonl")
  try:
    with open(path) as f:
      lines = [line for line in f if line.strip()]
  except OSError:
    return None
  for line in reversed(lines):
    try:
      record = json.loads(line)
    except json.JSONDecodeError:
      continue
    if isinstance(record, dict):
      return record
  return None


def format_metrics(m: dict, class_names) -> str:
  """One line of the evaluation numbers that `metrics.jsonl` has (missing ones are left out)."""
  parts = []
  consistency = [m.get(f"class_consistency/{n}") for n in class_names]
  if all(isinstance(c, (int, float)) for c in consistency):
    parts.append("class consistency " + " / ".join(f"{c:.3f}" for c in consistency))
  if isinstance(m.get("fd"), (int, float)):
    parts.append(f"FD {m['fd']:.3f}")
  if isinstance(m.get("kid"), (int, float)):
    spread = f" ± {m['kid_std'] * 1e3:.2f}" if isinstance(m.get("kid_std"), (int, float)) else ""
    parts.append(f"KID×10³ {m['kid'] * 1e3:.2f}{spread}")
  if isinstance(m.get("swd_mean"), (int, float)):
    parts.append(f"SWD×10³ {m['swd_mean']:.1f}")
  if not parts:
    return ""
  return f"Evaluation at step {m.get('step', '?')}: " + ", ".join(parts) + "."


def parse_args(argv: list[str]) -> tuple[str, int | None]:
  """`--workdir=PATH` (default runs/demo) and `--step=N` from the arguments after `--`."""
  workdir, step = "runs/demo", None
  args = list(argv)
  while args:
    arg = args.pop(0)
    name, _, value = arg.partition("=")
    if name in ("--workdir", "--step") and not value and args:
      value = args.pop(0)
    if name == "--workdir" and value:
      workdir = value
    elif name == "--step" and value.isdigit():
      step = int(value)
    else:
      raise DemoError(
          f"unexpected argument {arg!r}: streamlit run demo.py -- --workdir=PATH [--step=N]"
      )
  return workdir, step
