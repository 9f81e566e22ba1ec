"""The static page of `python -m flowergan.export --format=web` in a real headless Chromium.

Used by tests/test_export_site.py and docs/measure_static_page.py: serve a folder on a free
localhost port (`http.server` in a thread), drive the page, read its canvases back.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import threading
import time

import numpy as np

from tests import demo_browser

find_browser = demo_browser.find_browser
chromium = demo_browser.chromium

# Chromium's software WebGPU adapter (SwiftShader's Vulkan, shipped with Debian's chromium):
# the page's WebGPU path runs without a GPU, slowly (checked with Chromium 156).
WEBGPU_FLAGS = ("--enable-unsafe-webgpu", "--use-angle=swiftshader", "--enable-features=Vulkan")


def chromium_webgpu(paths: tuple[str, str]):
  """A headless Chromium whose pages get WebGPU from the software adapter."""
  return demo_browser.chromium(
      paths, width=1200, height=900, gpu_flags=WEBGPU_FLAGS, script_timeout_s=120
  )


def set_options(driver, options: dict) -> None:
  """`window.flowerganOptions` (backend, threads) for every page this driver loads next."""
  driver.execute_cdp_cmd(
      "Page.addScriptToEvaluateOnNewDocument",
      {"source": f"window.flowerganOptions = {json.dumps(options)};"},
  )


def backend(driver) -> dict:
  """What the page runs on: {backend, threads, isolated, adapter} and the page's own words."""
  return driver.execute_script(
      "return Object.assign({crossOriginIsolated: self.crossOriginIsolated,"
      " info: document.getElementById('info').textContent}, flowergan.backend);"
  )


class _QuietHandler(http.server.SimpleHTTPRequestHandler):

  def log_message(self, *args):  # no line per request on stderr
    pass


@contextlib.contextmanager
def static_server(folder):
  """`folder` served on 127.0.0.1 (a free port) by http.server in a thread; yields its URL."""
  handler = functools.partial(_QuietHandler, directory=str(folder))
  server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  try:
    yield f"http://127.0.0.1:{server.server_address[1]}"
  finally:
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def state(driver) -> str:
  return driver.execute_script("return document.body ? document.body.dataset.state : '';")


def message(driver) -> str:
  """The one-line message the page shows ('' when hidden)."""
  return driver.execute_script(
      "const m = document.getElementById('message'); return m && !m.hidden ? m.textContent : '';"
  )


def wait_for_state(driver, *wanted: str, timeout: float = 120.0) -> str:
  """Waits until the page's state (`body[data-state]`) is one of `wanted`."""
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    now = state(driver)
    if now in wanted:
      return now
    time.sleep(0.1)
  raise TimeoutError(
      f"the page stayed {state(driver)!r} (not {wanted}) for {timeout:.0f} s; "
      f"message {message(driver)!r}"
  )


def wait_for_draws(driver, count: int, timeout: float = 120.0) -> None:
  """Waits until the page has drawn `count` grids and is idle."""
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    drawn = driver.execute_script(
        "return window.flowergan && window.flowergan.timings ? window.flowergan.timings.length"
        " : 0;"
    )
    now = state(driver)
    if drawn >= count and now == "ready":
      return
    if now == "error":
      raise RuntimeError(f"the page failed: {message(driver)!r}")
    time.sleep(0.1)
  raise TimeoutError(f"fewer than {count} grids drawn in {timeout:.0f} s: {message(driver)!r}")


def grid_pixels(driver) -> np.ndarray:
  """The flowers of the grid as uint8 (N, S, S, 3), read from their canvases."""
  flat = driver.execute_script(
      "return Array.from(document.querySelectorAll('#flowers canvas')).map(c => {"
      " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
      " return [c.width, Array.from(d)]; });"
  )
  images = []
  for size, data in flat:
    rgba = np.asarray(data, np.uint8).reshape(size, size, 4)
    images.append(rgba[..., :3])
  return np.stack(images)


def render(driver, z: np.ndarray, weights: np.ndarray) -> None:
  """Draws the given noise and class weights through the page's test hook (no PRNG)."""
  driver.execute_async_script(
      "const done = arguments[arguments.length - 1];"
      "window.flowergan.render(Float32Array.from(arguments[0]), Float32Array.from(arguments[1]))"
      ".then(() => done(null), e => done(String(e)));",
      np.asarray(z, np.float32).ravel().tolist(),
      np.asarray(weights, np.float32).ravel().tolist(),
  )


def captions(driver) -> list[str]:
  return driver.execute_script(
      "return Array.from(document.querySelectorAll('#flowers figcaption'))"
      ".map(c => c.textContent);"
  )
