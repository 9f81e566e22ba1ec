"""The web demo in a real headless Chromium: start `streamlit run demo.py`, drive the page.

Used by tests/test_demo_browser.py and docs/make_demo_screenshot.py. Chromium and its driver
are Debian's (`apt-get install chromium chromium-driver`); Selenium gets both paths, so its
Selenium Manager never downloads a browser or a driver.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from tests import tiny_config

REPO = tiny_config.REPO
CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMEDRIVER = ("/usr/bin/chromedriver",)
IMAGES = '[data-testid="stImage"] img'


def find_browser() -> tuple[str, str] | None:
  """(chromium, chromedriver) paths, or None when either is missing."""
  browser = next((p for p in CHROMIUM if os.path.exists(p)), shutil.which("chromium"))
  driver = next((p for p in CHROMEDRIVER if os.path.exists(p)), shutil.which("chromedriver"))
  return (browser, driver) if browser and driver else None


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@contextlib.contextmanager
def streamlit_server(workdir, *, timeout: float = 120.0, log_path=None):
  """`streamlit run demo.py -- --workdir=…` on a free localhost port, with the page's own
  settings (.streamlit/config.toml); yields its URL once `/_stcore/health` answers; the server
  is always stopped (its whole process group)."""
  port = free_port()
  env = dict(os.environ, PYTHONPATH=str(REPO), XLA_FLAGS="")
  command = [
      sys.executable,
      "-m",
      "streamlit",
      "run",
      str(REPO / "demo.py"),
      "--server.headless=true",
      f"--server.port={port}",
      "--server.address=127.0.0.1",
      "--",
      f"--workdir={workdir}",
  ]
  log = open(log_path, "w") if log_path else subprocess.DEVNULL
  server = subprocess.Popen(
      command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
  )
  url = f"http://127.0.0.1:{port}"
  try:
    deadline = time.monotonic() + timeout
    while True:
      if server.poll() is not None:
        raise RuntimeError(f"streamlit exited with status {server.returncode}")
      try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=5) as answer:
          if answer.read().strip() == b"ok":
            break
      except OSError:
        pass
      if time.monotonic() > deadline:
        raise TimeoutError(f"streamlit did not answer on {url} within {timeout:.0f} s")
      time.sleep(0.5)
    yield url
  finally:
    _stop(server)
    if log_path:
      log.close()


def _stop(server: subprocess.Popen) -> None:
  if server.poll() is None:
    os.killpg(server.pid, 15)
    try:
      server.wait(timeout=20)
    except subprocess.TimeoutExpired:
      os.killpg(server.pid, 9)
      server.wait(timeout=20)


@contextlib.contextmanager
def chromium(
    paths: tuple[str, str],
    *,
    width: int = 1600,
    height: int = 1300,
    gpu_flags: tuple[str, ...] | None = None,
    script_timeout_s: int = 60,
):
  """A headless Chromium driven by Selenium with explicit binary and driver paths; without
  `gpu_flags` its GPU is off, with them its pages get what those flags give (WebGPU)."""
  from selenium import webdriver
  from selenium.webdriver.chrome.service import Service

  browser, driver_path = paths
  profile = tempfile.mkdtemp(prefix="flowergan-chromium-")
  options = webdriver.ChromeOptions()
  options.binary_location = browser
  for flag in (
      "--headless=new",
      "--no-sandbox",
      *(gpu_flags if gpu_flags is not None else ("--disable-gpu",)),
      "--disable-dev-shm-usage",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
      f"--user-data-dir={profile}",
      f"--window-size={width},{height}",
  ):
    options.add_argument(flag)
  driver = None
  try:
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(script_timeout_s)
    yield driver
  finally:
    if driver is not None:
      driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def loaded_images(driver) -> list[str]:
  """The `src` of every fully loaded flower image on the page."""
  return driver.execute_script(
      "return Array.from(document.querySelectorAll(arguments[0]))"
      ".filter(i => i.complete && i.naturalWidth > 0).map(i => i.src);",
      IMAGES,
  )


def wait_for_images(driver, count: int, *, differ_from=None, timeout: float = 300.0) -> list[str]:
  """Waits until exactly `count` images are loaded, the page has stopped running and (if
  given) the images are not `differ_from`; returns their sources (Streamlit's media URLs,
  which follow the image content)."""
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    sources = loaded_images(driver)
    changed = differ_from is None or sources != list(differ_from)
    if len(sources) == count and changed and not is_running(driver):
      return sources
    time.sleep(0.2)
  raise TimeoutError(
      f"expected {count} new images within {timeout:.0f} s, the page shows "
      f"{len(loaded_images(driver))}: {page_text(driver)[:500]!r}"
  )


def image_boxes(driver) -> list[dict]:
  """The flower images' boxes on the page (CSS px: left, top, width, height)."""
  return driver.execute_script(
      "return Array.from(document.querySelectorAll(arguments[0])).map(i => {"
      "const r = i.getBoundingClientRect();"
      "return {left: r.left, top: r.top + window.scrollY, width: r.width, height: r.height};});",
      IMAGES,
  )


def is_running(driver) -> bool:
  """Streamlit shows its status widget while the script runs."""
  return bool(
      driver.execute_script(
          "return document.querySelector('[data-testid=\"stStatusWidget\"]') !== null;"
      )
  )


def page_text(driver) -> str:
  return driver.execute_script("return document.body ? document.body.innerText : '';")


def wait_for_text(driver, text: str, *, timeout: float = 60.0) -> str:
  """The page's text once it contains `text` (the caption may follow the images by a frame)."""
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    shown = page_text(driver)
    if text in shown:
      return shown
    time.sleep(0.2)
  raise TimeoutError(f"{text!r} not on the page within {timeout:.0f} s: {page_text(driver)[:500]}")


def wait_for_url(driver, text: str, *, timeout: float = 60.0) -> str:
  """The page's URL once it contains `text` (Streamlit updates it after the script's run)."""
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if text in driver.current_url:
      return driver.current_url
    time.sleep(0.2)
  raise TimeoutError(f"{text!r} not in the URL within {timeout:.0f} s: {driver.current_url}")


def choose_class(driver, name: str) -> None:
  """Clicks the sidebar radio option `name`."""
  from selenium.webdriver.common.by import By

  for label in driver.find_elements(By.CSS_SELECTOR, '[data-testid="stSidebar"] label'):
    if label.text.strip() == name:
      label.click()
      return
  raise LookupError(f"no radio option {name!r} in the sidebar")


def click_button(driver, text: str) -> None:
  from selenium.webdriver.common.by import By

  for button in driver.find_elements(By.CSS_SELECTOR, "button"):
    if button.text.strip() == text:
      button.click()
      return
  raise LookupError(f"no button {text!r} on the page")
