"""The web demo's widget logic through Streamlit's AppTest (no browser), and its logic module.

The browser test is tests/test_demo_browser.py.
"""

import io
import json
import os
import shlex
import shutil
import subprocess
import sys

import numpy as np
import pytest

from flowergan import demo_app, imaging, sampling
from tests import export_helpers, tiny_run

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


def test_page_controls_are_the_python_constants(workdir, monkeypatch):
  """The constants the static page gets through model.json (`demo_app.page_settings`)."""
  export_helpers.use_other_page_settings(monkeypatch)
  at = _app([f"--workdir={workdir}"], seed=1000)
  assert not at.exception and not at.error
  truncation, grid = at.sidebar.slider
  assert (truncation.proto.min, truncation.proto.max, truncation.proto.step) == (0.5, 2.0, 0.1)
  assert (grid.proto.min, grid.proto.max, grid.value, truncation.value) == (2, 3, 3, 0.7)
  assert "[0, 1000]" in at.sidebar.number_input[0].help and len(_images(at)) == 9
  at = _app([f"--workdir={workdir}"], seed=1001, grid=4)
  assert "`seed=1001` (not a whole number in [0, 1000])" in at.warning[0].value
  assert "`grid=4` (not a whole number in [2, 3])" in at.warning[0].value


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


def test_first_view_puts_the_whole_request_in_the_url(workdir):
  """A link copied from the first view (random seed, default controls) opens the same grid."""
  at = _app([f"--workdir={workdir}"])
  seed = at.sidebar.number_input[0].value
  assert at.query_params == {"class": "ALL", "truncation": "1.5", "grid": "4", "seed": str(seed)}
  again = _app([f"--workdir={workdir}"], **at.query_params)
  assert again.caption[0].value.split(" generated")[0] == at.caption[0].value.split(" generated")[0]
  assert [i.url for i in _images(again)] == [i.url for i in _images(at)]


def test_bad_link_values_are_named_in_one_line_and_the_rest_kept(workdir):
  query = {"seed": "abc", "grid": "1000", "truncation": "nan", "class": "rose"}
  at = _app([f"--workdir={workdir}"], **query)
  assert not at.exception and not at.error
  (warning,) = at.warning
  assert "\n" not in warning.value and warning.value.startswith("Ignored in the link: ")
  for name, value in query.items():
    assert f"`{name}={value}` (not " in warning.value
  assert len(_images(at)) == 16 and at.query_params["class"] == "ALL"
  # A valid value next to bad ones is used; the URL then holds only valid values.
  at = _app([f"--workdir={workdir}"], seed="12", grid="0", truncation="inf")
  assert "grid=0" in at.warning[0].value and "truncation=inf" in at.warning[0].value
  assert "seed=" not in at.warning[0].value
  assert at.query_params == {"class": "ALL", "truncation": "1.5", "grid": "4", "seed": "12"}
  at.sidebar.slider[1].set_value(2).run()
  assert not at.warning  # said once, on arrival


def test_a_typed_seed_out_of_range_says_the_range(workdir):
  at = _app([f"--workdir={workdir}"], seed=7, grid=2)
  at.sidebar.number_input[0].set_value(demo_app.MAX_SEED + 1).run()
  assert not at.exception
  (error,) = at.error
  assert error.value == "the seed must be a whole number in [0, 2147483647], got 2147483648."
  assert not _images(at) and at.query_params["seed"] == "7"  # the link keeps the last good one
  at.sidebar.number_input[0].set_value(-1).run()
  assert "got -1." in at.error[0].value
  at.sidebar.number_input[0].set_value(8).run()
  assert not at.error and len(_images(at)) == 4


def test_the_walk_follows_the_grid(workdir):
  """The walk starts at the grid's first flower and walks to the next seed's, of the same
  class, again after every change of the grid's seed or class."""
  at = _app([f"--workdir={workdir}"], seed=5, grid=2, **{"class": "marigold"})
  at.toggle[0].set_value(True).run()
  assert "--label=marigold,marigold --interpolate=5,6 " in at.caption[-1].value
  at.sidebar.number_input[0].set_value(4).run()
  first = ["dandelion", "marigold"][sampling.random_labels(4, 4, 2)[0]]
  assert first == "dandelion"  # not the walk's former "from" class
  at.sidebar.radio[0].set_value("ALL").run()
  assert f"--label={first},{first} --interpolate=4,5 " in at.caption[-1].value
  gif, strip = _images(at)[4:]
  assert strip.caption.startswith(f"From the grid's first flower (seed 4, {first}) to seed 5's")
  assert gif.alt.startswith("A latent walk from the grid's first flower (seed 4")
  assert strip.alt.startswith("A latent walk from the grid's first flower (seed 4")
  # The walk's own choice is kept while the grid's first flower stays.
  at.number_input(key="walk_to").set_value(20).run()
  at.sidebar.slider[0].set_value(0.9).run()
  assert "--interpolate=4,20 " in at.caption[-1].value
  # Both ends the same flower: said, nothing computed.
  at.number_input(key="walk_to").set_value(4).run()
  assert "stay on one flower" in at.info[0].value and len(_images(at)) == 4
  # Hidden and shown again, it starts from the grid.
  at.toggle[0].set_value(False).run()
  at.toggle[0].set_value(True).run()
  assert "--interpolate=4,5 " in at.caption[-1].value


def test_in_all_each_flower_says_its_class(workdir):
  at = _app([f"--workdir={workdir}"], seed=7, grid=3)
  names = [["dandelion", "marigold"][k] for k in sampling.random_labels(7, 9, 2)]
  assert [i.caption for i in _images(at)] == names and [i.alt for i in _images(at)] == names
  at.sidebar.radio[0].set_value("marigold").run()
  assert [i.caption for i in _images(at)] == [""] * 9  # one class: the choice says it


def test_grid_downloads_at_generator_size_and_as_shown(workdir, demo):
  at = _app([f"--workdir={workdir}"], seed=7, grid=2, **{"class": "marigold"})
  small, large = at.get("download_button")
  assert "16×16 px flowers, as sample.py writes it" in small.proto.label
  assert "as shown (512×512 px flowers)" in large.proto.label
  grid = demo.grid(demo_app.Request("marigold", 1.5, 2, 7))
  from PIL import Image

  shown = np.asarray(Image.open(io.BytesIO(demo_app.display_grid_png(grid, 32))))
  gap = demo_app.SHOWN_GAP
  assert shown.shape == (2 * 512 + 3 * gap,) * 2 + (3,)
  tiles = imaging.to_uint8(grid.images)
  for index, (y, x) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
    top, left = gap + y * (512 + gap), gap + x * (512 + gap)
    np.testing.assert_array_equal(
        shown[top : top + 512, left : left + 512], imaging.enlarge(tiles[index], 32)
    )
  assert (shown[:gap] == 255).all() and (shown[:, 512 + gap : 512 + 2 * gap] == 255).all()


def test_metrics_shown_belong_to_the_step_shown(workdir, tmp_path):
  """A newer checkpoint that does not restore: the page says so, shows the older step and that
  step's evaluation, not the newer one's."""
  run = tmp_path / "run"
  shutil.copytree(workdir, run)
  shutil.copytree(run / "checkpoints" / "2", run / "checkpoints" / "3")
  (run / "checkpoints" / "3" / "metadata" / "metadata").write_text("{broken")
  with open(run / "metrics.jsonl", "a") as f:
    f.write(json.dumps({"step": 3, "fd": 123.0, "kid": 0.5}) + "\n")
  at = _app([f"--workdir={run}"], seed=1, grid=1)
  assert not at.exception and not at.error and len(_images(at)) == 1
  (notice,) = at.warning
  assert notice.value.startswith("Showing step 2: the newer checkpoint step(s) 3 of ")
  model = at.caption[1].value
  assert "step 2, 16×16 images" in model and "Evaluation at step 2:" in model
  assert "FD 123" not in model and "step 3" not in model


def test_streamlit_settings_turn_off_watching_statistics_and_the_ip_lookup(tmp_path):
  """The page's own .streamlit/config.toml, as `streamlit run demo.py` resolves it in the
  repository: no file watcher, no usage statistics, and the start-up banner of a headless
  server does not look up the machine's external IP."""
  script = """if True:
    import json
    from streamlit import config, net_util
    from streamlit.web import bootstrap
    calls = []
    net_util.get_external_ip = lambda: calls.append(1)
    config.get_config_options(force_reparse=True)
    config.set_option("server.headless", True)
    bootstrap._print_url(False)
    print(json.dumps([config.get_option("server.fileWatcherType"),
                      config.get_option("browser.gatherUsageStats"), len(calls)]))
  """
  env = dict(os.environ, HOME=str(tmp_path))  # no personal ~/.streamlit/config.toml
  result = subprocess.run(
      [sys.executable, "-c", script],
      cwd=tiny_run.REPO,
      env=env,
      capture_output=True,
      text=True,
      timeout=120,
  )
  assert result.returncode == 0, result.stderr[-2000:]
  assert json.loads(result.stdout.splitlines()[-1]) == ["none", False, 0]


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


def test_over_long_and_crafted_link_values_are_shown_inert(workdir):
  """A 5000-digit seed is ignored before int() (whose digit limit raised a traceback), and a
  value written as Markdown shows as code: no link or image of the link's inside the notice."""
  crafted = "[text](https://evil.example) ![](https://evil.example/pixel.png) `x`"
  at = _app([f"--workdir={workdir}"], seed="9" * 5000, **{"class": crafted})
  assert not at.exception and not at.error
  (warning,) = at.warning
  assert "\n" not in warning.value and len(warning.value) < 400
  assert f"(longer than {demo_app.MAX_LINK_VALUE_CHARS} characters)" in warning.value
  # Outside code spans the notice holds no link/image syntax; inside, no backtick to end one.
  spans = warning.value.split("`")
  assert len(spans) == 5  # two code spans
  assert "](" not in "".join(spans[0::2]) and "evil" not in "".join(spans[0::2])
  assert "[text](https://evil.example)" in spans[3]
  assert len(_images(at)) == 16 and at.query_params["class"] == "ALL"
  assert demo_app.shown_code("a`b\n![](u)") == "`a'b?![](u)`"


def test_link_parameters_are_checked_one_by_one():
  choices = ["ALL", "a", "b"]
  values, ignored = demo_app.parse_query(
      {"class": "b", "truncation": "0.25", "grid": "7", "seed": str(demo_app.MAX_SEED)}, choices
  )
  assert values == {"class": "b", "truncation": 0.25, "grid": 7, "seed": demo_app.MAX_SEED}
  assert not ignored
  bad = {"seed": "-1", "grid": "٣", "truncation": "3.5", "class": "ALL ", "utm": "x"}
  values, ignored = demo_app.parse_query(bad, choices)
  assert values == {}
  assert ignored == [
      f"`seed=-1` (not a whole number in [0, {demo_app.MAX_SEED}])",
      "`grid=٣` (not a whole number in [1, 7])",
      "`truncation=3.5` (not a number in [0.01, 3.0])",
      "`class=ALL ` (not one of ALL, a, b)",
      "`utm=x` (unknown parameter)",
  ]
  request = demo_app.Request("a", 0.8, 3, 9)
  values, _ = demo_app.parse_query(demo_app.query_of(request), choices)
  assert demo_app.Request(
      values["class"], values["truncation"], values["grid"], values["seed"]
  ) == (request)


def test_metrics_line_reads_the_last_evaluation_of_the_step(tmp_path):
  assert demo_app.step_metrics(str(tmp_path), 40) is None
  record = {"step": 40, "fd": 0.5, "kid": 0.00123, "kid_std": 0.0004, "swd_mean": 61.25}
  record.update({"class_consistency/a": 1.0, "class_consistency/b": 0.5})
  newer = {"step": 60, "fd": 7.0}
  lines = [json.dumps({"step": 40, "fd": 9.0}), json.dumps(record), json.dumps(newer), "{broken"]
  (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + "\n")
  assert demo_app.step_metrics(str(tmp_path), 60) == newer
  assert demo_app.step_metrics(str(tmp_path), 20) is None
  line = demo_app.format_metrics(demo_app.step_metrics(str(tmp_path), 40), ["a", "b"])
  assert line == (
      "Evaluation at step 40: class consistency 1.000 / 0.500, FD 0.500, "
      "KID×10³ 1.23 ± 0.40, SWD×10³ 61.2."
  )


def test_a_line_that_is_not_utf8_costs_that_line_not_the_evaluation(tmp_path, caplog):
  """One non-UTF-8 line in metrics.jsonl made the page say "No evaluation of step 4": now that
  line is skipped with one warning naming it, and the evaluation of step 4 is still shown."""
  good = json.dumps({"step": 4, "fd": 0.25}).encode()
  (tmp_path / "metrics.jsonl").write_bytes(b"\xff\xfe broken \xc3\n" + good + b"\n")
  caplog.set_level("WARNING")
  assert demo_app.step_metrics(str(tmp_path), 4) == {"step": 4, "fd": 0.25}
  warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
  assert len(warnings) == 1 and "skipped line(s) 1 " in warnings[0], warnings
