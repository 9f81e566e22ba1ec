"""The web demo in a real headless Chromium (Debian's chromium + chromium-driver).

Skips when no Chromium is found, unless FLOWERGAN_REQUIRE_BROWSER=1 (set by .ci/run, which
installs it), where a missing browser fails the test instead.
"""

import os
import re

import pytest
from PIL import Image

from tests import demo_browser, tiny_run


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  return tiny_run.trained_workdir(tmp_path_factory)


def _browser_or_skip():
  paths = demo_browser.find_browser()
  if paths is None:
    reason = (
        "no Chromium and chromedriver found (/usr/bin/chromium, /usr/bin/chromedriver): "
        "apt-get install chromium chromium-driver"
    )
    if os.environ.get("FLOWERGAN_REQUIRE_BROWSER") == "1":
      pytest.fail(reason)
    pytest.skip(reason)
  pytest.importorskip("selenium", reason='selenium is not installed (pip install -e ".[test]")')
  pytest.importorskip("streamlit", reason='streamlit is not installed (pip install -e ".[test]")')
  return paths


def test_demo_page_in_headless_chromium(workdir, tmp_path):
  """A visitor's session: a link with a bad value, the link the page then shows, a class
  change, and the grid at phone width; one server and one browser for all of it."""
  paths = _browser_or_skip()
  log = tmp_path / "streamlit.log"
  with (
      demo_browser.streamlit_server(workdir, log_path=log) as url,
      demo_browser.chromium(paths) as driver,
  ):
    driver.get(f"{url}/?grid=3&class=rose")
    first = demo_browser.wait_for_images(driver, 9)
    text = demo_browser.wait_for_text(
        driver, "Ignored in the link: class=rose (not one of ALL, dandelion, marigold)."
    )
    seed = re.search(r"Seed (\d+) · ALL", text).group(1)
    # From the first view on, the URL holds the whole request, the drawn seed included.
    link = demo_browser.wait_for_url(driver, f"seed={seed}")
    assert "grid=3" in link and "class=ALL" in link and "rose" not in link
    # Enlarged on the server (16 px × 32 = 512 px), not by the browser.
    widths = driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0])).map(i => i.naturalWidth);",
        demo_browser.IMAGES,
    )
    assert widths == [512] * 9
    assert "THIS FLOWER DOES NOT EXIST" in text

    # The copied link, opened anew, shows the same flowers (media URLs follow the content).
    driver.get(link)
    assert demo_browser.wait_for_images(driver, 9) == first
    assert "Ignored in the link" not in demo_browser.page_text(driver)

    demo_browser.choose_class(driver, "marigold")
    second = demo_browser.wait_for_images(driver, 9, differ_from=first, timeout=120)
    assert second != first
    demo_browser.wait_for_text(driver, f"Seed {seed} · marigold")
    assert "class=marigold" in demo_browser.wait_for_url(driver, "class=marigold")

    screenshot = tmp_path / "demo.png"
    assert driver.save_screenshot(str(screenshot))

    # At phone width the 4×4 grid stays 4 columns of 4 rows, inside the screen.
    driver.set_window_size(390, 844)
    driver.get(f"{url}/?seed=7&grid=4&class=ALL&truncation=1.5")
    demo_browser.wait_for_images(driver, 16)
    boxes = demo_browser.image_boxes(driver)
    width = driver.execute_script("return document.documentElement.clientWidth;")
    rows = sorted({round(b["top"]) for b in boxes})
    assert len(rows) == 4, boxes
    assert all(sum(round(b["top"]) == r for b in boxes) == 4 for r in rows)
    assert all(b["left"] >= 0 and b["left"] + b["width"] <= width for b in boxes), (width, boxes)
    assert 40 < boxes[0]["width"] < width / 4
  with Image.open(screenshot) as image:
    assert image.width >= 800 and image.height >= 600
  server_log = log.read_text()
  assert "Traceback" not in server_log
  # The page's own settings: no external-IP lookup, no file watcher.
  assert "External URL" not in server_log and "external IP" not in server_log
  assert "Inotify" not in server_log
