r"""Timings of the static page (`python -m flowergan.export --format=web`) in headless Chromium.

  python docs/measure_static_page.py                         # a random 128×128 generator
  python docs/measure_static_page.py --workdir=runs/demo --screenshot=docs/static_page.png

Writes the site (runtime copied from web/node_modules: `npm ci --prefix web` first) to a
temporary folder, serves it with http.server on localhost, and for the 4×4 and the 7×7 grid
prints the time from the page request to the first grid drawn (runtime, model and first run
included) and the time of each new grid (noise, the model run, drawing; `New flowers`). A
random-init generator times the same as a trained one of the same size (same operations).
Served without cross-origin isolation headers (as most static hosts), the runtime uses one
thread.
"""

import os
import statistics
import sys
import tempfile
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from flowergan import export  # noqa: E402
from tests import export_helpers, site_browser  # noqa: E402

_WORKDIR = flags.DEFINE_string("workdir", None, "Run to export (default: random 128×128).")
_RUNTIME = flags.DEFINE_string(
    "runtime", "web/node_modules/onnxruntime-web/dist", "onnxruntime-web's dist folder."
)
_LOADS = flags.DEFINE_integer("loads", 3, "Page loads per grid size.")
_NEW_GRIDS = flags.DEFINE_integer("new_grids", 5, "Clicks on 'New flowers' per load.")
_SCREENSHOT = flags.DEFINE_string("screenshot", None, "PNG of the first 4×4 page (if set).")
_QUERY = flags.DEFINE_string("query", "seed=3&grid=4", "URL of the screenshot's page.")


def measure(driver, url: str, grid: int) -> tuple[float, list[float]]:
  """(ms from the page request to the first grid, [ms of each new grid])."""
  driver.get("about:blank")
  driver.get(f"{url}/?seed=1&grid={grid}")
  site_browser.wait_for_draws(driver, 1, timeout=600)
  first = driver.execute_script("return flowergan.timings[0].since_start;")
  for i in range(_NEW_GRIDS.value):
    driver.find_element("id", "new").click()
    site_browser.wait_for_draws(driver, i + 2, timeout=600)
  new = driver.execute_script("return flowergan.timings.slice(1).map(t => t.ms);")
  return first, new


def main(argv):
  del argv
  paths = site_browser.find_browser()
  if paths is None:
    sys.exit("error: no /usr/bin/chromium and /usr/bin/chromedriver: apt-get install chromium")
  if _WORKDIR.value:
    exportable = export.load_exportable(_WORKDIR.value)
  else:
    exportable = export_helpers.random_exportable(128)[2]
  with tempfile.TemporaryDirectory() as folder:
    export.write_site(exportable, folder, runtime_dir=_RUNTIME.value)
    size = os.path.getsize(os.path.join(folder, export.SITE_MODEL)) / 1e6
    print(f"{exportable.image_size}×{exportable.image_size} generator, model.onnx {size:.2f} MB")
    with site_browser.static_server(folder) as url, site_browser.chromium(paths) as driver:
      if _SCREENSHOT.value:
        driver.get(f"{url}/?{_QUERY.value}")
        site_browser.wait_for_draws(driver, 1, timeout=600)
        time.sleep(0.5)
        driver.save_screenshot(_SCREENSHOT.value)
        print(f"screenshot: {_SCREENSHOT.value}")
      for grid in (4, 7):
        firsts, news = [], []
        for _ in range(_LOADS.value):
          first, new = measure(driver, url, grid)
          firsts.append(first)
          news += new
        print(
            f"{grid}×{grid}: page request → first grid {statistics.median(firsts):.0f} ms "
            f"(median of {len(firsts)}: {', '.join(f'{t:.0f}' for t in firsts)}); new grid "
            f"{statistics.median(news):.0f} ms (median of {len(news)}, "
            f"{min(news):.0f}–{max(news):.0f})"
        )


if __name__ == "__main__":
  app.run(main)
