"""The web demo in a real headless Chromium (Debian's chromium + chromium-driver).

Skips when no Chromium is found, unless FLOWERGAN_REQUIRE_BROWSER=1 (set by .ci/run, which
installs it), where a missing browser fails the test instead.
"""

import os

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
  paths = _browser_or_skip()
  log = tmp_path / "streamlit.log"
  with (
      demo_browser.streamlit_server(workdir, log_path=log) as url,
      demo_browser.chromium(paths) as driver,
  ):
    driver.get(f"{url}/?seed=7&grid=3")
    first = demo_browser.wait_for_images(driver, 9)
    # Enlarged on the server (16 px × 32 = 512 px), not by the browser.
    widths = driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0])).map(i => i.naturalWidth);",
        demo_browser.IMAGES,
    )
    assert widths == [512] * 9
    text = demo_browser.page_text(driver)
    assert "THIS FLOWER DOES NOT EXIST" in text and "Seed 7 · ALL" in text

    demo_browser.choose_class(driver, "marigold")
    second = demo_browser.wait_for_images(driver, 9, differ_from=first, timeout=120)
    assert second != first
    assert "Seed 7 · marigold" in demo_browser.wait_for_text(driver, "Seed 7 · marigold")
    assert "class=marigold" in driver.current_url  # the request is in the URL

    screenshot = tmp_path / "demo.png"
    assert driver.save_screenshot(str(screenshot))
  with Image.open(screenshot) as image:
    assert image.width >= 800 and image.height >= 600
  assert "Traceback" not in log.read_text()
