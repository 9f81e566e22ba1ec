r"""The README's demo screenshot and the page's timings (docs/web.md), in the same headless
Chromium as the test.

  python docs/make_demo_screenshot.py --workdir=runs/demo --query="seed=3&grid=4" \
      --out=docs/demo_screenshot.png
  python docs/make_demo_screenshot.py --workdir=runs/untrained128 --query="seed=3&grid=7" \
      --new_grids=5      # timings of the 128×128 model at 7×7

Run it from the repository root (the server starts there). Starts `streamlit run demo.py` on a free port, opens the page and prints: the first-page time
(from the page request until every image is loaded; the server has just started, so this
includes loading the checkpoint and compiling the generator) and the time per new grid (a click
on "New flowers" until all the new images are loaded).
"""

import os
import statistics
import sys
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests import demo_browser  # noqa: E402

_WORKDIR = flags.DEFINE_string("workdir", "runs/demo", "Run to show.")
_QUERY = flags.DEFINE_string("query", "seed=3&grid=4", "URL query: seed, grid, class, truncation.")
_OUT = flags.DEFINE_string("out", None, "Screenshot PNG (none if unset).")
_NEW_GRIDS = flags.DEFINE_integer("new_grids", 3, "Clicks on 'New flowers' to time.")
_WIDTH = flags.DEFINE_integer("width", 1400, "Browser window width.")
_HEIGHT = flags.DEFINE_integer("height", 1500, "Browser window height.")


def main(argv):
  del argv
  paths = demo_browser.find_browser()
  if paths is None:
    sys.exit(
        "error: no /usr/bin/chromium and /usr/bin/chromedriver: apt-get install chromium "
        "chromium-driver"
    )
  query = dict(part.split("=", 1) for part in _QUERY.value.split("&") if part)
  count = int(query.get("grid", 4)) ** 2
  with (
      demo_browser.streamlit_server(_WORKDIR.value, timeout=300) as url,
      demo_browser.chromium(paths, width=_WIDTH.value, height=_HEIGHT.value) as driver,
  ):
    start = time.perf_counter()
    driver.get(f"{url}/?{_QUERY.value}")
    sources = demo_browser.wait_for_images(driver, count, timeout=600)
    print(f"first page: {time.perf_counter() - start:.1f} s ({count} images)")
    if _OUT.value:
      driver.save_screenshot(_OUT.value)
      print(f"screenshot: {_OUT.value}")
    times = []
    for _ in range(_NEW_GRIDS.value):
      start = time.perf_counter()
      demo_browser.click_button(driver, "New flowers")
      sources = demo_browser.wait_for_images(driver, count, differ_from=sources, timeout=600)
      times.append(time.perf_counter() - start)
    if times:
      print(
          f"new grid: median {statistics.median(times):.2f} s over {len(times)} "
          f"({', '.join(f'{t:.2f}' for t in times)})"
      )
    caption = [
        line for line in demo_browser.page_text(driver).splitlines() if "generated in" in line
    ]
    print(caption[0] if caption else "")


if __name__ == "__main__":
  app.run(main)
