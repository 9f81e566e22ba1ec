"""The static page (python -m flowergan.export --format=web) in a real headless Chromium.

The site is written with the runtime copied from web/node_modules (`npm ci --prefix web`), so
the page needs no network; http.server serves it, which sends no COOP/COEP headers (the page's
service worker, coi.js, gives it cross-origin isolation). Skips when Chromium or the runtime is
missing, unless FLOWERGAN_REQUIRE_BROWSER=1 (set by .ci/run, which installs both), where that
fails instead.
"""

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import numpy as np
import onnx
import pytest
from selenium.webdriver.common.action_chains import ActionChains

from flowergan import export, imaging, sampling, trained
from tests import export_helpers, site_browser, tiny_config, tiny_run

RUNTIME = tiny_config.REPO / "web" / "node_modules" / "onnxruntime-web" / "dist"


def _missing(reason):
  if os.environ.get("FLOWERGAN_REQUIRE_BROWSER") == "1":
    pytest.fail(reason)
  pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
  export_helpers.require_export_packages()
  paths = site_browser.find_browser()
  if paths is None:
    _missing("no Chromium and chromedriver: apt-get install chromium chromium-driver")
  pytest.importorskip("selenium", reason='selenium is not installed (pip install -e ".[test]")')
  if not (RUNTIME / export.RUNTIME_SCRIPT).is_file():
    _missing(f"no onnxruntime-web in {RUNTIME}: run `npm ci --prefix web`")
  return paths


@pytest.fixture(scope="module")
def site(browser, tmp_path_factory):
  """(the site folder, the trained run it was exported from)."""
  workdir = tiny_run.trained_workdir(tmp_path_factory)
  out = tmp_path_factory.mktemp("site") / "site"
  result = subprocess.run(
      [
          sys.executable,
          "-m",
          "flowergan.export",
          f"--workdir={workdir}",
          "--format=web",
          f"--out={out}",
          f"--runtime={RUNTIME}",
          "--weights=float16",
      ],
      cwd=tiny_config.REPO,
      env=tiny_run.env(),
      capture_output=True,
      text=True,
      timeout=600,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  names = sorted(p.name for p in out.iterdir())
  assert names == [
      "coi.js",
      "flowers.css",
      "flowers.js",
      "index.html",
      "model.json",
      "model.onnx",
      "ort",
      "worker.js",
  ]
  model = onnx.load(str(out / export.SITE_MODEL))
  assert onnx.TensorProto.FLOAT16 in {i.data_type for i in model.graph.initializer}
  return out, workdir


@pytest.fixture(scope="module")
def random_site(browser, tmp_path_factory):
  """(the site of a random 32×32 generator whose images span [-1, 1], its module, variables)."""
  generator, variables, exportable = export_helpers.random_exportable(32, seed=5)
  out = tmp_path_factory.mktemp("random_site")
  export.write_site(exportable, str(out), runtime_dir=str(RUNTIME))
  return out, generator, variables


def _float16_copy(folder, tmp_path):
  """`folder` with its model's weights stored as float16 (`export.float16_weights`)."""
  copy = tmp_path / "float16"
  shutil.copytree(folder, copy)
  model = onnx.load(str(copy / export.SITE_MODEL))
  export.float16_weights(model)
  onnx.save(model, str(copy / export.SITE_MODEL))
  return copy


def _expected_pixels(generator, variables, z, weights):
  return imaging.to_uint8((np.asarray(generator.apply(variables, z, weights, train=False)) + 1) / 2)


def test_page_runs_in_a_worker_on_every_core_with_the_generators_pixels(
    browser, random_site, tmp_path
):
  folder, generator, variables = random_site
  z, weights = export_helpers.inputs(49, seed=5)
  expected = _expected_pixels(generator, variables, z, weights)
  assert expected.astype(float).std() > 40  # flowers over the whole range, not near-flat ones
  float16 = _float16_copy(folder, tmp_path)
  sizes = [os.path.getsize(f / export.SITE_MODEL) for f in (folder, float16)]
  assert sizes[1] < 0.55 * sizes[0]
  with site_browser.static_server(folder) as url, site_browser.chromium(browser) as driver:
    with urllib.request.urlopen(url) as response:  # a host that sends no isolation headers
      assert "Cross-Origin-Embedder-Policy" not in response.headers
    driver.get(f"{url}/?seed=1&grid=7")
    site_browser.wait_for_draws(driver, 1)
    # Isolated by coi.js, so the runtime runs on every core (this machine's 2 and more).
    cores = driver.execute_script("return navigator.hardwareConcurrency;")
    ran = site_browser.backend(driver)
    assert ran["crossOriginIsolated"] and ran["isolated"]
    assert ran["backend"] == "wasm" and ran["threads"] == min(cores, 8) and ran["threads"] >= 2
    assert f"(WebAssembly, {ran['threads']} threads)" in ran["info"]
    site_browser.render(driver, z, weights)
    shown = site_browser.grid_pixels(driver)
    assert shown.shape == (49, 32, 32, 3)
    assert np.abs(shown.astype(int) - expected.astype(int)).max() <= 2

    # While a 7×7 grid is generated the page answers each key press at its next frame, and
    # each newer request stops the older one in the worker (no queue of stale grids).
    driver.execute_script("flowergan.answers.length = 0;")
    drawn = len(driver.execute_script("return flowergan.timings;"))
    driver.find_element("id", "new").click()
    ActionChains(driver).send_keys("rrrr").perform()
    site_browser.wait_for_draws(driver, drawn + 1)
    time.sleep(0.3)  # a stale grid would be drawn after this one
    answers = driver.execute_script("return flowergan.answers;")
    presses = [a for a in answers if a["type"] == "keydown"]
    assert len(presses) == 4 and all(a["busy"] for a in presses)
    assert max(a["ms"] for a in answers) <= 100, answers
    assert len(driver.execute_script("return flowergan.timings;")) == drawn + 1
    assert driver.execute_script("return flowergan.superseded;") >= 4
    latest = site_browser.grid_pixels(driver)
    driver.get(driver.current_url)  # the link of the grid shown: the last request's flowers
    site_browser.wait_for_draws(driver, 1)
    np.testing.assert_array_equal(site_browser.grid_pixels(driver), latest)

  # Float16 weights: half the file, pixels within 2/255 of flowergan's float32 ones.
  with site_browser.static_server(float16) as url, site_browser.chromium(browser) as driver:
    driver.get(url)
    site_browser.wait_for_draws(driver, 1)
    site_browser.render(driver, z, weights)
    assert np.abs(site_browser.grid_pixels(driver).astype(int) - expected.astype(int)).max() <= 2


def test_page_uses_webgpu_where_offered(browser, random_site):
  """Chromium's software adapter (SwiftShader) stands in for a GPU: "auto" leaves a software
  adapter to WebAssembly (faster on the same CPU); asked for, WebGPU draws the same pixels."""
  folder, generator, variables = random_site
  z, weights = export_helpers.inputs(3, seed=6)  # one flower: a class morph
  z, weights = z[2:], weights[2:]
  expected = _expected_pixels(generator, variables, z, weights)
  with site_browser.static_server(folder) as url, site_browser.chromium_webgpu(browser) as driver:
    driver.get(f"{url}/?grid=1")
    site_browser.wait_for_draws(driver, 1)
    assert site_browser.backend(driver)["backend"] == "wasm"
    assert driver.execute_async_script(
        "navigator.gpu.requestAdapter().then((a) => arguments[0](Boolean(a)));"
    )
    site_browser.set_options(driver, {"backend": "webgpu"})
    driver.get(f"{url}/?grid=1")  # one flower: the render below reuses the compiled shaders
    site_browser.wait_for_draws(driver, 1, timeout=300)
    ran = site_browser.backend(driver)
    assert ran["backend"] == "webgpu" and "WebGPU (google swiftshader)" in ran["info"]
    site_browser.render(driver, z, weights)
    assert np.abs(site_browser.grid_pixels(driver).astype(int) - expected.astype(int)).max() <= 2


def _query(driver) -> dict:
  return dict(urllib.parse.parse_qsl(urllib.parse.urlparse(driver.current_url).query))


def test_page_draws_flowergans_pixels_and_its_controls_work(browser, site):
  folder, workdir = site
  model = trained.load_trained(str(workdir))
  variables = model.sampling_variables()
  with site_browser.static_server(folder) as url, site_browser.chromium(browser) as driver:
    driver.get(f"{url}/index.html?seed=7&grid=3")
    site_browser.wait_for_draws(driver, 1)
    # Every setting is in the URL from the first view.
    assert _query(driver) == {"seed": "7", "class": "ALL", "truncation": "1.5", "grid": "3"}
    first = site_browser.grid_pixels(driver)
    assert first.shape == (9, 16, 16, 3)
    classes = site_browser.captions(driver)  # ALL shows each flower's class
    assert len(classes) == 9 and set(classes) <= {"dandelion", "marigold"}

    # The same noise and classes as flowergan: the same pixels, within 2/255.
    z = np.random.default_rng(1).standard_normal((9, 8)).astype(np.float32)
    labels = np.array([0, 1, 1, 0, 1, 0, 0, 1, 1])
    weights = sampling.class_weights(labels, 2)
    weights[4] = [0.25, 0.75]  # a class morph
    site_browser.render(driver, z, weights)
    shown = site_browser.grid_pixels(driver).astype(int)
    expected = imaging.to_uint8(
        sampling.generate_from_z(model.generator, variables, z, weights)
    ).astype(int)
    assert expected.std() > 2  # not one flat colour (the run trained 2 steps)
    assert np.abs(shown - expected).max() <= 2

    # The page's noise: truncated normal, within ±truncation, for any seed.
    noise = np.asarray(
        driver.execute_script("return Array.from(flowergan.seedNoise(3, 500, 8, 0.5));")
    )
    assert np.abs(noise).max() <= 0.5 and 0.25 < noise.std() < 0.3 and abs(noise.mean()) < 0.03

    # A class: new images, the URL follows; the grid size; the link restores the same flowers.
    driver.find_element("css selector", 'input[name="class"][value="marigold"]').click()
    site_browser.wait_for_draws(driver, 2)
    assert _query(driver)["class"] == "marigold"
    assert site_browser.captions(driver) == []
    marigolds = site_browser.grid_pixels(driver)
    assert not np.array_equal(marigolds, first)
    driver.execute_script(
        "const g = document.getElementById('grid'); g.value = 2;"
        "g.dispatchEvent(new Event('input'));"
    )
    site_browser.wait_for_draws(driver, 3)
    two = site_browser.grid_pixels(driver)
    assert two.shape[0] == 4 and _query(driver)["grid"] == "2"
    np.testing.assert_array_equal(two, marigolds[:4])  # flower i does not depend on the grid
    shared = driver.current_url
    driver.get(shared)
    site_browser.wait_for_draws(driver, 1)
    np.testing.assert_array_equal(site_browser.grid_pixels(driver), two)

    # The download is the grid at the size shown (whole-number enlargement, 2 px borders).
    size = driver.execute_script(
        "const c = flowergan.gridCanvas(); return [c.width, c.height,"
        " document.querySelector('#flowers canvas').getBoundingClientRect().width];"
    )
    factor = max(1, round(size[2] / 16))
    assert size[:2] == [2 * (16 * factor + 2) + 2] * 2 and factor > 1

    # New flowers: another seed, other flowers; the latent walk animates.
    driver.find_element("id", "new").click()
    site_browser.wait_for_draws(driver, 2)
    assert _query(driver)["seed"] != "7"
    assert not np.array_equal(site_browser.grid_pixels(driver), two)
    driver.find_element("id", "walk").click()
    site_browser.wait_for_state(driver, "ready")
    frames = set()
    for _ in range(40):
      frames.add(
          driver.execute_script(
              "const c = document.getElementById('walk-canvas'); if (c.hidden) return '';"
              "return Array.from(c.getContext('2d').getImageData(0, 0, 16, 16).data).join();"
          )
      )
      if len(frames - {""}) >= 3:
        break
      time.sleep(0.1)
    assert len(frames - {""}) >= 3
    assert "Latent walk: seed" in site_browser.message(driver)

    # A phone's width keeps the grid's columns.
    driver.set_window_size(390, 844)
    lefts = driver.execute_script(
        "return Array.from(document.querySelectorAll('#flowers canvas'))"
        ".map(c => Math.round(c.getBoundingClientRect().left));"
    )
    assert len(set(lefts)) == 2


def _controls(driver) -> dict:
  """The page's inputs as it set them up: {id: [min, max, step, value]}, and the shown text."""
  return driver.execute_script(
      "const out = {};"
      "for (const id of ['truncation', 'grid', 'seed']) {"
      "  const e = document.getElementById(id); out[id] = [e.min, e.max, e.step, e.value]; }"
      "out.shown = document.getElementById('truncation-value').textContent;"
      "return out;"
  )


def test_page_takes_its_controls_from_python(browser, tmp_path, monkeypatch):
  """Ranges and defaults set in flowergan.demo_app reach the page through model.json."""
  export_helpers.use_other_page_settings(monkeypatch)
  _, _, exportable = export_helpers.random_exportable(32, seed=2)
  export.write_site(exportable, str(tmp_path), runtime_dir=str(RUNTIME))
  with site_browser.static_server(tmp_path) as url, site_browser.chromium(browser) as driver:
    driver.get(f"{url}/?seed=1000")
    site_browser.wait_for_draws(driver, 1)
    assert _query(driver) == {"seed": "1000", "class": "ALL", "truncation": "0.7", "grid": "3"}
    assert site_browser.grid_pixels(driver).shape[0] == 9
    assert _controls(driver) == {
        "truncation": ["0.5", "2", "0.1", "0.7"],
        "grid": ["2", "3", "1", "3"],
        "seed": ["0", "1000", "1", "1000"],
        "shown": "0.7",
    }
    driver.get(f"{url}/?seed=1001&grid=4&truncation=0.4")
    site_browser.wait_for_draws(driver, 1)
    text = site_browser.message(driver)
    for part in ("seed=1001 (a whole number 0–1000)", "grid=4 (2–3)", "truncation=0.4 (0.5–2)"):
      assert part in text
    assert site_browser.grid_pixels(driver).shape[0] == 9


def test_page_says_in_one_line_what_it_ignored_or_what_to_do(browser, site, tmp_path):
  folder, _ = site
  broken = tmp_path / "broken"
  shutil.copytree(folder, broken)
  (broken / "model.onnx").write_bytes(b"not a model")
  missing = tmp_path / "missing"
  shutil.copytree(folder, missing)
  (missing / "model.onnx").unlink()
  tampered = tmp_path / "tampered"  # a runtime file that is not the one its SRI hash names
  shutil.copytree(folder, tampered)
  with open(tampered / export.SITE_RUNTIME_DIR / export.RUNTIME_SCRIPT, "a") as f:
    f.write("\n")
  older = tmp_path / "older"  # a site written before model.json carried the page's controls
  shutil.copytree(folder, older)
  meta = json.loads((older / "model.json").read_text())
  del meta["grid_range"], meta["max_seed"]
  (older / "model.json").write_text(json.dumps(meta))
  with site_browser.chromium(browser) as driver:
    with site_browser.static_server(folder) as url:
      driver.get(f"{url}/?seed=abc&grid=1000&truncation=nan&class=rose")
      site_browser.wait_for_draws(driver, 1)
      text = site_browser.message(driver)
      for part in ("seed=abc", "grid=1000", "truncation=nan", "class=rose"):
        assert part in text
      assert "\n" not in text and text.startswith("Ignored from the link")
      assert site_browser.grid_pixels(driver).shape[0] == 16  # the defaults: 4×4
      query = _query(driver)
      assert query["grid"] == "4" and query["class"] == "ALL" and query["seed"].isdigit()

    with site_browser.static_server(broken) as url:
      driver.get(url)
      site_browser.wait_for_state(driver, "error")
      text = site_browser.message(driver)
      assert text.startswith("The model file could not be loaded") and "export" in text

    with site_browser.static_server(missing) as url:
      driver.get(url)
      site_browser.wait_for_state(driver, "error")
      assert "HTTP 404" in site_browser.message(driver)

    with site_browser.static_server(tampered) as url:
      driver.get(url)
      site_browser.wait_for_state(driver, "error")
      text = site_browser.message(driver)
      assert text.startswith("The runtime (onnxruntime-web) did not load from") and "\n" not in text

    with site_browser.static_server(older) as url:
      driver.get(url)
      site_browser.wait_for_state(driver, "error")
      text = site_browser.message(driver)
      assert text.startswith("The model's description could not be read") and "\n" not in text
      assert "grid_range, max_seed" in text and "flowergan.export --format=web" in text

    driver.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument", {"source": "delete window.WebAssembly;"}
    )
    with site_browser.static_server(folder) as url:
      driver.get(url)
      site_browser.wait_for_state(driver, "error")
      assert "no WebAssembly" in site_browser.message(driver)


def test_export_refuses_unknown_weights_in_one_line(tmp_path):
  for fmt, weights, words in (
      ("web", "float64", "unknown --weights='float64': use one of float32, float16"),
      ("stablehlo", "float16", "--weights=float16 is for --format=onnx and web"),
  ):
    with pytest.raises(export.ExportError, match=words):
      export.export(str(tmp_path / "no_run"), fmt, str(tmp_path / "out"), weights=weights)
  assert not (tmp_path / "out").exists()
