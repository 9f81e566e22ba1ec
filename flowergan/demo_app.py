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
import math
import os
import time
from collections.abc import Mapping

import numpy as np
from absl import logging

from flowergan import errors, imaging, sampling, trained, untrusted

ALL = "ALL"  # the original's radio option for "every class"
# The controls of both pages: this one, and the static one (`python -m flowergan.export
# --format=web`), whose script reads them from the `model.json` that `page_settings` fills.
TRUNCATION_RANGE = (0.01, 3.0)  # the original's slider
TRUNCATION_STEP = 0.01
DEFAULT_TRUNCATION = 1.5
GRID_RANGE = (1, 7)
DEFAULT_GRID = 4
MAX_SEED = 2**31 - 1  # the static page's noise generator takes 32-bit seeds
DISPLAY_PIXELS = 512  # the original showed its 128×128 flowers ×4
QUERY_KEYS = ("class", "truncation", "grid", "seed")  # the request's URL parameters, in order
# Longer link values are ignored unread (int() of 5000 digits raises), and notes show at most
# `SHOWN_LINK_CHARS` characters of any value.
MAX_LINK_VALUE_CHARS = 100
SHOWN_LINK_CHARS = 40
SHOWN_GAP = 16  # px between the flowers of the shown-size download (the page's column gap)


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

  def __init__(self, model: trained.TrainedModel, workdir: str, skipped: tuple[int, ...] = ()):
    self.model = model
    self.workdir = workdir
    self.skipped = skipped  # newer steps that did not restore (the newest one was asked for)

  @classmethod
  def load(cls, workdir: str, step: int | None = None) -> Demo:
    """Loads and compiles (one padded batch); raises FlowerganError with a one-line message."""
    model = trained.load_trained(workdir, step)
    skipped = () if step is not None else tuple(s for s in stored_steps(workdir) if s > model.step)
    demo = cls(model, workdir, skipped)
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
    for seed in (seed_a, seed_b):
      check_seed(seed)
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
    metrics = step_metrics(self.workdir, self.model.step)
    if metrics:
      line += " " + format_metrics(metrics, self.class_names)
    elif not imported:
      line += f" No evaluation of step {self.model.step} in metrics.jsonl."
    return line

  def fallback_notice(self) -> str | None:
    """One line when a newer checkpoint did not restore and an older step is shown."""
    if not self.skipped:
      return None
    newer = ", ".join(str(s) for s in self.skipped)
    return (
        f"Showing step {self.model.step}: the newer checkpoint step(s) {newer} of "
        f"{self.workdir} did not restore (damaged or incomplete; the server log says why)."
    )


def page_settings() -> dict:
  """The controls' ranges and defaults, for the static page's `model.json` (JSON types)."""
  return {
      "truncation_range": list(TRUNCATION_RANGE),
      "truncation_step": TRUNCATION_STEP,
      "default_truncation": DEFAULT_TRUNCATION,
      "grid_range": list(GRID_RANGE),
      "default_grid": DEFAULT_GRID,
      "max_seed": MAX_SEED,
  }


def check_request(request: Request) -> None:
  lo, hi = TRUNCATION_RANGE
  if not lo <= request.truncation <= hi:
    raise DemoError(f"truncation must be in [{lo}, {hi}], got {request.truncation}.")
  lo, hi = GRID_RANGE
  if not lo <= request.grid <= hi:
    raise DemoError(f"the grid size must be in [{lo}, {hi}], got {request.grid}.")
  check_seed(request.seed)


def check_seed(seed: int) -> None:
  if not 0 <= seed <= MAX_SEED:
    raise DemoError(f"the seed must be a whole number in [0, {MAX_SEED}], got {seed}.")


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


def display_grid_png(grid: Grid, factor: int, gap: int = SHOWN_GAP) -> bytes:
  """The grid at the size the page shows it: each flower enlarged `factor`× (nearest
  neighbour), `gap` white pixels around and between them; PNG."""
  tiles = imaging.to_uint8(grid.images)
  n, size = grid.request.grid, tiles.shape[1] * factor
  side = n * size + (n + 1) * gap
  canvas = np.full((side, side, 3), 255, np.uint8)
  for index, tile in enumerate(tiles):
    row, column = divmod(index, n)
    y, x = gap + row * (size + gap), gap + column * (size + gap)
    canvas[y : y + size, x : x + size] = imaging.enlarge(tile, factor)
  return imaging.png_bytes(canvas, compress_level=1)


def stored_steps(workdir: str) -> list[int]:
  """The step folders in `workdir/checkpoints` (finished or not, restorable or not)."""
  directory = os.path.join(workdir, "checkpoints")
  try:
    names = os.listdir(directory)
  except OSError:
    return []
  return sorted(int(name) for name in names if name.isdigit())


def step_metrics(workdir: str, step: int) -> dict | None:
  """The last evaluation of `step` in `workdir/metrics.jsonl`, or None (no file, no record of
  that step). Lines that do not parse (not UTF-8, not JSON) are skipped with one warning: one
  bad line costs that line, not the file (`untrusted.read_jsonl`)."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return None
  try:
    records, bad = untrusted.read_jsonl(path)
  except untrusted.UntrustedFileError as e:
    logging.warning("%s: the page shows no evaluation numbers.", str(e).rstrip("."))
    return None
  if bad:
    logging.warning(
        "%s: skipped line(s) %s that are not UTF-8 JSON.", path, untrusted.describe_lines(bad)
    )
  for record in reversed(records):
    if isinstance(record, dict) and record.get("step") == step:
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


def query_of(request: Request) -> dict[str, str]:
  """The request as URL parameters (all of them: a copied link shows the same flowers)."""
  values = (request.choice, repr(request.truncation), str(request.grid), str(request.seed))
  return dict(zip(QUERY_KEYS, values))


def parse_query(
    query: Mapping[str, str | list[str]], choices: list[str]
) -> tuple[dict[str, object], list[str]]:
  """The valid request values of URL parameters, and one note per ignored parameter (Markdown:
  the link's text is shown as code, so a crafted link cannot put links or images in it)."""
  values, ignored = {}, []
  for key, raw in query.items():
    text = raw[-1] if isinstance(raw, list) and raw else raw
    if not isinstance(text, str) or key not in QUERY_KEYS:
      ignored.append(f"{shown_code(f'{key}={raw}')} (unknown parameter)")
      continue
    if len(text) > MAX_LINK_VALUE_CHARS:
      ignored.append(
          f"{shown_code(f'{key}={text}')} (longer than {MAX_LINK_VALUE_CHARS} characters)"
      )
      continue
    value, expected = _parse_query_value(key, text, choices)
    if value is None:
      ignored.append(f"{shown_code(f'{key}={text}')} (not {expected})")
    else:
      values[key] = value
  return values, ignored


def shown_code(text: str) -> str:
  """`text` as one inline Markdown code span: Markdown is not rendered inside one. Backticks
  (which would end it) and unprintable characters (a line break would too) become `'` and
  `?`; text beyond `SHOWN_LINK_CHARS` characters is cut to `…`."""
  if len(text) > SHOWN_LINK_CHARS:
    text = text[:SHOWN_LINK_CHARS] + "…"
  text = "".join("'" if c == "`" else c if c.isprintable() else "?" for c in text)
  return f"`{text}`"


def _parse_query_value(key: str, text: str, choices: list[str]) -> tuple[object, str]:
  """(the value, or None when `text` is not valid; what a valid value is)."""
  if key == "class":
    return (text if text in choices else None), "one of " + ", ".join(choices)
  if key == "truncation":
    lo, hi = TRUNCATION_RANGE
    try:
      value = float(text)
    except ValueError:
      value = math.nan
    return (value if lo <= value <= hi else None), f"a number in [{lo}, {hi}]"
  lo, hi = GRID_RANGE if key == "grid" else (0, MAX_SEED)
  value = int(text) if text.isascii() and text.isdigit() else None
  ok = value is not None and lo <= value <= hi
  return (value if ok else None), f"a whole number in [{lo}, {hi}]"


def ignored_notice(ignored: list[str]) -> str:
  """One line naming the URL parameters that were ignored."""
  return "Ignored in the link: " + "; ".join(ignored) + ". The page's defaults are used instead."


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
