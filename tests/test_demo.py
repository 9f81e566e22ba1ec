"""The web demo's widget logic through Streamlit's AppTest (no browser), and its logic module.

The browser test is tests/test_demo_browser.py.
"""

import json
import shlex
import shutil

import numpy as np
import pytest

from flowergan import demo_app, imaging, sampling
from tests import tiny_run

pytest.importorskip("streamlit", reason='streamlit is not installed (pip install -e ".[test]")')
from streamlit.testing.v1 import AppTest  # noqa: E402


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  return tiny_run.trained_workdir(tmp_path_factory)


@pytest.fixture(scope="module")
def demo(workdir):
  return demo_app.Demo.load(str(workdir))


def _page(argv):
  from flowergan import demo_page  # AppTest runs this function's source as a script

  demo_page.render(argv)


def _app(argv, **query) -> AppTest:
  at = AppTest.from_function(_page, args=(argv,), default_timeout=300)
  for name, value in query.items():
    at.query_params[name] = str(value)
  return at.run()


def _images(at) -> list:
  """The image protos of the main area, in page order."""
  found = []

  def visit(node):
    if type(node).__name__ == "Image":
      found.extend(node.proto.imgs)
    for child in getattr(node, "children", {}).values():
      visit(child)

  visit(at.main)
  return found


def test_page_has_the_originals_controls_and_a_grid(workdir):
  at = _app([f"--workdir={workdir}"])
  assert not at.exception and not at.error
  assert at.title[0].value == "THIS FLOWER DOES NOT EXIST"
  choice = at.sidebar.radio[0]
  assert choice.label == "What do you want to generate?"
  assert choice.options == ["ALL", "dandelion", "marigold"] and choice.value == "ALL"
  truncation, grid = at.sidebar.slider
  assert (truncation.proto.min, truncation.proto.max, truncation.value) == (0.01, 3.0, 1.5)
  assert (grid.proto.min, grid.proto.max, grid.value) == (1, 7, 4)
  seed = at.sidebar.number_input[0].value
  assert 0 <= seed <= demo_app.MAX_SEED
  assert at.sidebar.button[0].label == "New flowers"
  images = _images(at)
  assert len(images) == 16 and all(i.url.endswith(".png") for i in images)
  command, model = (c.value for c in at.caption)
  assert f"--label=random --num=16 --seed={seed} --truncation=1.5" in command
  assert "step 2, 16×16 images" in model
  assert "Evaluation at step 2: class consistency" in model and "KID×10³" in model


def test_url_and_widgets_set_the_request(workdir):
  at = _app([f"--workdir={workdir}"], seed=7, grid=3, truncation=0.8, **{"class": "marigold"})
  assert not at.exception and not at.error
  assert [i.alt for i in _images(at)] == ["marigold"] * 9
  assert "--label=marigold --num=9 --seed=7 --truncation=0.8" in at.caption[0].value
  at.sidebar.slider[1].set_value(5).run()
  at.sidebar.radio[0].set_value("ALL").run()
  drawn = sampling.random_labels(7, 25, 2)  # ALL: each class drawn from the seed
  assert [i.alt for i in _images(at)] == [["dandelion", "marigold"][k] for k in drawn]
  assert "--label=random --num=25 --seed=7" in at.caption[0].value
  at.sidebar.number_input[0].set_value(123).run()
  assert "--seed=123 " in at.caption[0].value


def test_new_flowers_draws_a_new_seed_and_new_images(workdir):
  at = _app([f"--workdir={workdir}"], seed=7, grid=2)
  before = [i.url for i in _images(at)]
  at.sidebar.button[0].click().run()
  seed = at.sidebar.number_input[0].value
  assert seed != 7 and f"--seed={seed} " in at.caption[0].value
  after = [i.url for i in _images(at)]
  assert len(after) == 4 and set(after).isdisjoint(before)


def test_one_compilation_serves_every_grid_size_and_the_walk(workdir):
  at = _app([f"--workdir={workdir}"], seed=3)
  compiled = sampling._generate._cache_size()
  for grid in (1, 7, 2):
    at.sidebar.slider[1].set_value(grid).run()
    assert len(_images(at)) == grid * grid
  at.sidebar.radio[0].set_value("dandelion").run()
  at.toggle[0].set_value(True).run()
  assert not at.exception
  assert sampling._generate._cache_size() == compiled


def test_walk_view_shows_an_animation_a_strip_and_the_command(workdir, demo):
  at = _app([f"--workdir={workdir}"], seed=5, grid=2, **{"class": "marigold"})
  assert not at.toggle[0].value and len(_images(at)) == 4  # off: nothing extra computed
  at.toggle[0].set_value(True).run()
  assert not at.exception
  images = _images(at)
  assert len(images) == 6 and images[4].url.endswith(".gif") and images[5].url.endswith(".png")
  assert (
      "--label=marigold,marigold --interpolate=5,6 --frames=8 --truncation=1.5"
      in at.caption[-1].value
  )
  # It starts at the grid's first flower.
  grid = demo.grid(demo_app.Request("marigold", 1.5, 2, 5))
  walk = demo.walk(5, 6, 8, "marigold", "marigold", 1.5)
  np.testing.assert_array_equal(walk[0], grid.images[0])


@pytest.mark.parametrize(
    "request_",
    [demo_app.Request("marigold", 0.8, 3, 7), demo_app.Request(demo_app.ALL, 1.5, 2, 11)],
    ids=["marigold", "all"],
)
def test_demo_grid_is_what_sample_py_writes(demo, workdir, tmp_path, request_):
  """Same seed, class and truncation: the downloaded PNG is sample.py's file, byte for byte."""
  command = shlex.split(demo_app.sample_command(request_, str(workdir)))
  assert command[:2] == ["python", "sample.py"]
  out = tmp_path / "sample.png"
  result = tiny_run.run("sample.py", *command[2:], f"--out={out}")
  assert result.returncode == 0, result.stderr[-2000:]
  assert demo_app.grid_png(demo.grid(request_)) == out.read_bytes()


def test_flowers_are_enlarged_with_nearest_neighbour_on_the_server(demo):
  grid = demo.grid(demo_app.Request("dandelion", 1.5, 1, 0))
  factor = demo.enlargement()
  assert factor == 32  # 16 px → 512 px, the size the original showed
  from PIL import Image
  import io

  shown = np.asarray(Image.open(io.BytesIO(demo_app.display_pngs(grid, factor)[0])))
  source = imaging.to_uint8(grid.images)[0]
  assert shown.shape == (512, 512, 3)
  np.testing.assert_array_equal(shown[::factor, ::factor], source)
  np.testing.assert_array_equal(shown, imaging.enlarge(source, factor))


def test_no_checkpoint_damaged_checkpoint_and_bad_arguments_are_one_message(workdir, tmp_path):
  damaged = tmp_path / "damaged"
  shutil.copytree(workdir, damaged)
  (damaged / "checkpoints" / "2" / "metadata" / "metadata").write_text("{not json")
  cases = [
      ([f"--workdir={tmp_path / 'empty'}"], "no checkpoint in"),
      ([f"--workdir={damaged}"], "is damaged"),
      (["--workdir=x", "--bogus"], "unexpected argument '--bogus'"),
  ]
  for argv, message in cases:
    at = _app(argv)
    assert not at.exception, at.exception
    assert len(at.error) == 1 and message in at.error[0].value and "\n" not in at.error[0].value
    assert not _images(at)


def test_request_checks_and_argument_parsing():
  assert demo_app.parse_args([]) == ("runs/demo", None)
  assert demo_app.parse_args(["--workdir", "runs/x", "--step=4"]) == ("runs/x", 4)
  for bad in (demo_app.Request("ALL", 0.0, 4, 0), demo_app.Request("ALL", 1.0, 8, 0)):
    with pytest.raises(demo_app.DemoError, match="must be in"):
      demo_app.check_request(bad)
  with pytest.raises(demo_app.DemoError, match="unexpected argument"):
    demo_app.parse_args(["--step=four"])


def test_metrics_line_reads_the_last_evaluation(tmp_path):
  assert demo_app.latest_metrics(str(tmp_path)) is None
  record = {"step": 40, "fd": 0.5, "kid": 0.00123, "kid_std": 0.0004, "swd_mean": 61.25}
  record.update({"class_consistency/a": 1.0, "class_consistency/b": 0.5})
  lines = [json.dumps({"step": 20, "fd": 9.0}), json.dumps(record), "{broken"]
  (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + "\n")
  line = demo_app.format_metrics(demo_app.latest_metrics(str(tmp_path)), ["a", "b"])
  assert line == (
      "Evaluation at step 40: class consistency 1.000 / 0.500, FD 0.500, "
      "KID×10³ 1.23 ± 0.40, SWD×10³ 61.2."
  )
