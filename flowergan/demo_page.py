"""The web demo page, drawn with Streamlit (the logic is in `flowergan.demo_app`).

  streamlit run demo.py -- --workdir=runs/demo

As the authors' page: a class choice (ALL or one class), the truncation slider, the grid size,
new flowers on a button, each flower enlarged on the server with nearest-neighbour. Beyond it:
the seed is shown and can be typed in (the class, truncation, grid size and seed are in the URL,
so a grid can be shared), the grid as a PNG download, a latent walk, and the run's step and
evaluation numbers under the grid.
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
    request = sidebar(demo)
    grid = demo.grid(request)
  except errors.FlowerganError as e:
    st.error(str(e))
    return
  show_grid(demo, grid)
  show_walk(demo, request)
  st.markdown(PAPERS)


def _new_seed() -> None:
  st.session_state.seed = random.randrange(demo_app.MAX_SEED + 1)


def sidebar(demo: demo_app.Demo) -> demo_app.Request:
  """The controls of the original page, plus the seed."""
  bar = st.sidebar
  choice = bar.radio(
      "What do you want to generate?", demo.choices, key="class", bind="query-params"
  )
  truncation = bar.slider(
      "Fidelity/Diversity trade off (truncation)",
      *demo_app.TRUNCATION_RANGE,
      demo_app.DEFAULT_TRUNCATION,
      step=0.01,
      key="truncation",
      bind="query-params",
  )
  grid = bar.slider(
      "The grid size", *demo_app.GRID_RANGE, demo_app.DEFAULT_GRID, key="grid", bind="query-params"
  )
  if "seed" not in st.session_state:  # fresh flowers for every new visitor, as the original
    _new_seed()
  seed = bar.number_input(
      "Seed",
      0,
      demo_app.MAX_SEED,
      step=1,
      key="seed",
      bind="query-params",
      help="Same seed, " "class and truncation: same flowers (also from sample.py).",
  )
  bar.button("New flowers", on_click=_new_seed, type="primary")
  return demo_app.Request(choice, float(truncation), int(grid), int(seed))


def show_grid(demo: demo_app.Demo, grid: demo_app.Grid) -> None:
  """grid² images in rows of columns, enlarged on the server; the download, the command."""
  n, names = grid.request.grid, demo.class_names
  pngs = demo_app.display_pngs(grid, demo.enlargement())
  for row in range(n):
    for column, index in zip(st.columns(n), range(row * n, row * n + n)):
      # PNG: "auto" would re-encode as JPEG and blur the enlarged pixels.
      column.image(pngs[index], width="stretch", output_format="PNG", alt=names[grid.labels[index]])
  request = grid.request
  label = "random" if request.choice == demo_app.ALL else request.choice
  st.download_button(
      "Download the grid (PNG)",
      demo_app.grid_png(grid),
      file_name=f"flowers_{label}_seed{request.seed}.png",
      mime="image/png",
  )
  st.caption(
      f"Seed {request.seed} · {request.choice} · truncation {request.truncation:g} · "
      f"{n}×{n} generated in {grid.seconds:.2f} s. The same grid: "
      f"`{demo_app.sample_command(request, demo.workdir)}`"
  )
  st.caption(demo.caption())


def show_walk(demo: demo_app.Demo, request: demo_app.Request) -> None:
  """A latent walk from the grid's first flower to the first flower of another seed."""
  if not st.toggle("Latent walk", key="walk"):
    return
  names = demo.class_names
  first = names[int(demo.labels(request.choice, 1, request.seed)[0])]
  left, middle, right, last = st.columns(4)
  seed_b = left.number_input(
      "To seed", 0, demo_app.MAX_SEED, (request.seed + 1) % (demo_app.MAX_SEED + 1), key="walk_to"
  )
  frames = middle.slider("Frames", 2, 16, 8, key="walk_frames")
  class_a = right.selectbox("From class", names, names.index(first), key="walk_from_class")
  class_b = last.selectbox("To class", names, names.index(first), key="walk_to_class")
  images = demo.walk(request.seed, int(seed_b), int(frames), class_a, class_b, request.truncation)
  scale = demo.enlargement()
  st.image(imaging.gif_bytes(images, scale=max(1, scale // 2)), caption="The walk, animated")
  strip = imaging.strip(images)
  # Streamlit resizes (bilinearly) anything wider than its 1460 px content width.
  st.image(
      imaging.png_bytes(imaging.enlarge(strip, max(1, 1460 // strip.shape[1]))),
      output_format="PNG",
      caption=f"From the grid's first flower (seed {request.seed}, {class_a}) to seed {seed_b}'s "
      f"({class_b}), {frames} frames.",
  )
  st.caption(
      f"The same walk: `python sample.py --workdir={demo.workdir} --label={class_a},{class_b} "
      f"--interpolate={request.seed},{seed_b} --frames={frames} "
      f"--truncation={request.truncation!r}`"
  )
