"""The web demo page, drawn with Streamlit (the logic is in `flowergan.demo_app`).

  streamlit run demo.py -- --workdir=runs/demo

As the authors' page: a class choice (ALL or one class), the truncation slider, the grid size,
new flowers on a button, each flower enlarged on the server with nearest-neighbour. Beyond it:
the seed is shown and can be typed in (the class, truncation, grid size and seed are in the URL
from the first view on, so a copied link shows the same flowers; what a link gets wrong is
named in one line), the grid as PNG downloads (as `sample.py` writes it, and at the size shown),
a latent walk from the grid's first flower, and the shown step's evaluation numbers.
"""

from __future__ import annotations

import random
import sys

import streamlit as st

from flowergan import demo_app, errors, imaging

TITLE = "THIS FLOWER DOES NOT EXIST"
PAPERS = (
    "Papers: [Wasserstein GAN](https://arxiv.org/abs/1701.07875) · "
    "[WGAN with gradient penalty](https://arxiv.org/abs/1704.00028) · "
    "[conditional GAN](https://arxiv.org/abs/1411.1784)."
)


@st.cache_resource(show_spinner="Loading the generator and compiling it (once per server)…")
def load_demo(workdir: str, step: int | None) -> demo_app.Demo:
  return demo_app.Demo.load(workdir, step)


def render(argv: list[str] | None = None) -> None:
  """The whole page; `argv` defaults to the arguments after `streamlit run demo.py --`."""
  st.set_page_config(page_title="This flower does not exist", layout="wide")
  st.title(TITLE)
  try:
    workdir, step = demo_app.parse_args(sys.argv[1:] if argv is None else argv)
    demo = load_demo(workdir, step)
    ignored = start_from_link(demo)
    request = sidebar(demo)
    if ignored:
      st.warning(demo_app.ignored_notice(ignored))
    if notice := demo.fallback_notice():
      st.warning(notice)
    grid = demo.grid(request)
  except errors.FlowerganError as e:
    st.error(str(e))
    return
  query = demo_app.query_of(request)
  if st.query_params.to_dict() != query:
    st.query_params.from_dict(query)  # from the first view on: a copied link shows these flowers
  show_grid(demo, grid)
  show_walk(demo, grid)
  st.markdown(PAPERS)


def start_from_link(demo: demo_app.Demo) -> list[str]:
  """On a visitor's first run: the request's widgets start from the URL's valid values (the
  rest from the defaults, the seed drawn at random); returns the ignored parameters' notes."""
  if "seed" in st.session_state:
    return []
  values, ignored = demo_app.parse_query(st.query_params.to_dict(), demo.choices)
  st.session_state["class"] = values.get("class", demo_app.ALL)
  st.session_state.truncation = values.get("truncation", demo_app.DEFAULT_TRUNCATION)
  st.session_state.grid = values.get("grid", demo_app.DEFAULT_GRID)
  if "seed" in values:
    st.session_state.seed = values["seed"]
  else:  # fresh flowers for every new visitor, as the original
    _new_seed()
  return ignored


def _new_seed() -> None:
  st.session_state.seed = random.randrange(demo_app.MAX_SEED + 1)


def seed_help() -> str:
  """The seed inputs' help: the range `demo_app.check_seed` accepts."""
  return f"A whole number in [0, {demo_app.MAX_SEED}]."


def sidebar(demo: demo_app.Demo) -> demo_app.Request:
  """The controls of the original page, plus the seed (their values start from the link)."""
  bar = st.sidebar
  choice = bar.radio("What do you want to generate?", demo.choices, key="class")
  truncation = bar.slider(
      "Fidelity/Diversity trade off (truncation)",
      *demo_app.TRUNCATION_RANGE,
      step=demo_app.TRUNCATION_STEP,
      key="truncation",
  )
  grid = bar.slider("The grid size", *demo_app.GRID_RANGE, key="grid")
  # No bounds in the widget: out of range, the browser would only turn it red; the request
  # check names the range instead.
  seed = bar.number_input(
      "Seed",
      step=1,
      key="seed",
      help=f"{seed_help()} Same seed, class and truncation: same flowers (also from sample.py).",
  )
  bar.button("New flowers", on_click=_new_seed, type="primary")
  return demo_app.Request(choice, float(truncation), int(grid), int(seed))


def show_grid(demo: demo_app.Demo, grid: demo_app.Grid) -> None:
  """grid² images in an n-column grid at every width, enlarged on the server; in ALL each
  flower's class under it; the downloads and the command."""
  request, names = grid.request, demo.class_names
  n, factor = request.grid, demo.enlargement()
  pngs = demo_app.display_pngs(grid, factor)
  classes = [names[k] for k in grid.labels]
  # wrap=False: n columns even on a phone (Streamlit would stack them into one column).
  cells = st.grid(n, wrap=False, min_column_width=24, gap=8)
  for png, name in zip(pngs, classes):
    # PNG: "auto" would re-encode as JPEG and blur the enlarged pixels.
    cells.image(
        png,
        width="stretch",
        output_format="PNG",
        alt=name,
        caption=name if request.choice == demo_app.ALL else None,
    )
  label = "random" if request.choice == demo_app.ALL else request.choice
  name = f"flowers_{label}_seed{request.seed}"
  size = demo.image_size
  small, large = st.columns(2)
  small.download_button(
      f"Download the grid ({size}×{size} px flowers, as sample.py writes it)",
      demo_app.grid_png(grid),
      file_name=f"{name}.png",
      mime="image/png",
  )
  shown = size * factor
  large.download_button(
      f"Download the grid as shown ({shown}×{shown} px flowers)",
      lambda: demo_app.display_grid_png(grid, factor),  # encoded only when asked for
      file_name=f"{name}_{shown}px.png",
      mime="image/png",
  )
  st.caption(
      f"Seed {request.seed} · {request.choice} · truncation {request.truncation:g} · "
      f"{n}×{n} generated in {grid.seconds:.2f} s. The same grid: "
      f"`{demo_app.sample_command(request, demo.workdir)}`"
  )
  st.caption(demo.caption())


def follow_grid(demo: demo_app.Demo, grid: demo_app.Grid) -> str:
  """The walk's "to" widgets start again (next seed, same class) when the grid's first flower
  changes; returns that flower's class."""
  request, first = grid.request, demo.class_names[int(grid.labels[0])]
  restart = st.session_state.get("walk_start") != (request.seed, first)
  if restart or "walk_to" not in st.session_state:  # (hidden widgets lose their values)
    st.session_state.walk_start = (request.seed, first)
    st.session_state.walk_to = (request.seed + 1) % (demo_app.MAX_SEED + 1)
    st.session_state.walk_to_class = first
  return first


def show_walk(demo: demo_app.Demo, grid: demo_app.Grid) -> None:
  """A latent walk from the grid's first flower to the flower of another seed and class."""
  if not st.toggle("Latent walk", key="walk"):
    return
  names, request = demo.class_names, grid.request
  first = follow_grid(demo, grid)
  left, middle, right = st.columns(3)
  seed_b = int(left.number_input("To seed", step=1, key="walk_to", help=seed_help()))
  frames = int(middle.slider("Frames", 2, 16, 8, key="walk_frames"))
  class_b = right.selectbox("To class", names, key="walk_to_class")
  if (seed_b, class_b) == (request.seed, first):
    st.info(
        f"The walk would stay on one flower (seed {seed_b}, {class_b} at both ends): "
        "choose another seed or class to walk to."
    )
    return
  try:
    images = demo.walk(request.seed, seed_b, frames, first, class_b, request.truncation)
  except errors.FlowerganError as e:
    st.error(str(e))
    return
  what = (
      f"from the grid's first flower (seed {request.seed}, {first}) to seed {seed_b}'s "
      f"({class_b}), {frames} frames"
  )
  scale = demo.enlargement()
  st.image(
      imaging.gif_bytes(images, scale=max(1, scale // 2)),
      caption="The walk, animated",
      alt=f"A latent walk {what}, animated.",
  )
  strip = imaging.strip(images)
  # Streamlit resizes (bilinearly) anything wider than its 1460 px content width.
  st.image(
      imaging.png_bytes(imaging.enlarge(strip, max(1, 1460 // strip.shape[1]))),
      output_format="PNG",
      caption=f"{what[0].upper()}{what[1:]}.",
      alt=f"A latent walk {what}, side by side.",
  )
  st.caption(
      f"The same walk: `python sample.py --workdir={demo.workdir} --label={first},{class_b} "
      f"--interpolate={request.seed},{seed_b} --frames={frames} "
      f"--truncation={request.truncation!r}`"
  )
