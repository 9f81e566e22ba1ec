r"""The static page (`python -m flowergan.export --format=web`) timed in headless Chromium, side by
side with native onnxruntime and flowergan's own sampling on the same threads.

  python docs/measure_static_page.py                         # a random 128×128 generator
  python docs/measure_static_page.py --workdir=runs/demo --screenshot=docs/static_page.png

Writes the site (runtime copied from web/node_modules: `npm ci --prefix web` first) to a
temporary folder and serves it with http.server on localhost (no COOP/COEP headers: the page's
service worker isolates it, as on GitHub Pages). For each thread count (`--threads`), each load
starts a fresh Chromium profile (a first visit: the service worker's one reload included) and
times: page request → first 4×4 grid drawn (runtime, model, first run), then each new 4×4 and
each new 7×7 grid (`New flowers`: noise, the worker's run, drawing). Beside it, on the same
thread count and the same noise (49 rows): native onnxruntime on the same model.onnx
(`intra_op_num_threads`), and flowergan's sampling (jit, in a process pinned to that many cores).
A random generator times the same as a trained one of its size (same operations). Prints each
file's size and gzip size, the 1-minute load average before and after, and a Markdown table.
"""

import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app, flags, logging

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from flowergan import export  # noqa: E402
from tests import export_helpers, site_browser  # noqa: E402

_WORKDIR = flags.DEFINE_string("workdir", None, "Run to export (default: random 128×128).")
_RUNTIME = flags.DEFINE_string(
    "runtime", "web/node_modules/onnxruntime-web/dist", "onnxruntime-web's dist folder."
)
_WEIGHTS = flags.DEFINE_enum("weights", "float32", export.WEIGHTS, "The site's model.onnx.")
_THREADS = flags.DEFINE_list("threads", ["1", "2"], "Thread counts to compare.")
_LOADS = flags.DEFINE_integer("loads", 2, "Page loads (fresh profiles) per thread count.")
_NEW_GRIDS = flags.DEFINE_integer("new_grids", 3, "New grids of each size per load.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed runs of native onnxruntime and flowergan.")
_SCREENSHOT = flags.DEFINE_string("screenshot", None, "PNG of the first 4×4 page (if set).")
_QUERY = flags.DEFINE_string("query", "seed=3&grid=4", "URL of the screenshot's page.")

# flowergan's sampling in a process pinned to N cores (XLA sizes its thread pool from them).
_FLOWERGAN = r"""
import json, os, sys, time
os.sched_setaffinity(0, set(range(int(sys.argv[1]))))
sys.path.insert(0, sys.argv[2])
import numpy as np
from flowergan import sampling, trained
from tests import export_helpers
workdir, repeats = sys.argv[3], int(sys.argv[4])
if workdir:
  model = trained.load_trained(workdir)
  generator, variables = model.generator, model.sampling_variables()
  z_dim, classes = model.z_dim, len(model.class_names)
else:
  generator, variables = export_helpers.random_generator(128)
  z_dim, classes = export_helpers.Z_DIM, len(export_helpers.CLASS_NAMES)
rng = np.random.default_rng(5)
z = np.clip(rng.standard_normal((49, z_dim)), -1.5, 1.5).astype(np.float32)
weights = np.eye(classes, dtype=np.float32)[np.arange(49) % classes]
out = {}
for num in (16, 49):
  sampling.generate_from_z(generator, variables, z[:num], weights[:num])  # compiles
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    np.asarray(sampling.generate_from_z(generator, variables, z[:num], weights[:num]))
    times.append(time.perf_counter() - start)
  out[num] = sorted(times)[len(times) // 2]
print(json.dumps(out))
"""


def load_average() -> float:
  return os.getloadavg()[0]


def file_sizes(folder: str) -> list[tuple[str, int, int]]:
  """(name, bytes, gzip -9 bytes) of the files a visitor downloads."""
  rows = []
  for root, _, names in os.walk(folder):
    for name in sorted(names):
      path = os.path.join(root, name)
      with open(path, "rb") as f:
        data = f.read()
      rows.append((os.path.relpath(path, folder), len(data), len(gzip.compress(data, 9))))
  return sorted(rows)


def page_load(paths, url: str, threads: int) -> dict:
  """One first visit in a fresh profile: ms to the first 4×4, ms of each new 4×4 and 7×7."""
  with site_browser.chromium(paths) as driver:
    site_browser.set_options(driver, {"threads": threads})
    start = time.time()
    driver.get(f"{url}/?seed=1&grid=4")
    site_browser.wait_for_draws(driver, 1, timeout=600)
    first = driver.execute_script("return flowergan.timings[0].at;") - start * 1000
    ran = site_browser.backend(driver)
    for grid in (4, 7):
      if grid == 7:
        driver.execute_script(
            "const g = document.getElementById('grid'); g.value = 7;"
            "g.dispatchEvent(new Event('input'));"
        )
        site_browser.wait_for_draws(driver, 1 + _NEW_GRIDS.value + 1, timeout=600)
      for _ in range(_NEW_GRIDS.value):
        drawn = driver.execute_script("return flowergan.timings.length;")
        driver.find_element("id", "new").click()
        site_browser.wait_for_draws(driver, drawn + 1, timeout=600)
    timings = driver.execute_script("return flowergan.timings;")
  news = {4: [], 7: []}
  for t in timings[1 : 1 + _NEW_GRIDS.value] + timings[2 + _NEW_GRIDS.value :]:
    news[t["grid"]].append(t["ms"])
  return {"first": first, "new": news, "backend": ran}


def native_onnxruntime(model_path: str, threads: int, z, weights) -> dict:
  import onnxruntime

  options = onnxruntime.SessionOptions()
  options.intra_op_num_threads = threads
  options.inter_op_num_threads = 1
  session = onnxruntime.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
  out = {}
  for num in (16, 49):
    feeds = {"z": z[:num], "class_weights": weights[:num]}
    session.run(None, feeds)
    times = []
    for _ in range(_REPEATS.value):
      start = time.perf_counter()
      session.run(None, feeds)
      times.append(time.perf_counter() - start)
    out[num] = statistics.median(times)
  return out


def flowergan_sampling(threads: int) -> dict:
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  result = subprocess.run(
      [
          sys.executable,
          "-c",
          _FLOWERGAN,
          str(threads),
          repo,
          _WORKDIR.value or "",
          str(_REPEATS.value),
      ],
      capture_output=True,
      text=True,
      check=False,
  )
  if result.returncode != 0:
    sys.exit(f"error: flowergan's sampling failed: {result.stderr.strip().splitlines()[-1:]}")
  return {int(k): v for k, v in json.loads(result.stdout.strip().splitlines()[-1]).items()}


def pixel_difference(model_a: bytes, model_b: bytes, z, weights) -> str:
  """How far apart two models' pixels are (native onnxruntime, round((x + 1) / 2 * 255))."""
  import numpy as np
  import onnxruntime

  pixels = []
  for model in (model_a, model_b):
    (images,) = onnxruntime.InferenceSession(model).run(None, {"z": z, "class_weights": weights})
    pixels.append(np.clip(np.round((images + 1) / 2 * 255), 0, 255).astype(int))
  diff = np.abs(pixels[0] - pixels[1])
  return (
      f"max {diff.max()}/255, mean {diff.mean():.3f}/255, "
      f"{(diff > 2).sum()} of {diff.size} values over 2/255"
  )


def seconds(ms_list) -> str:
  if len(ms_list) == 1:
    return f"{ms_list[0] / 1000:.2f} s"
  low, high = min(ms_list) / 1000, max(ms_list) / 1000
  return f"{statistics.median(ms_list) / 1000:.2f} s ({low:.2f}–{high:.2f})"


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  paths = site_browser.find_browser()
  if paths is None:
    sys.exit("error: no /usr/bin/chromium and /usr/bin/chromedriver: apt-get install chromium")
  threads_list = [int(t) for t in _THREADS.value]
  load_before = load_average()
  if _WORKDIR.value:
    exportable = export.load_exportable(_WORKDIR.value)
  else:
    exportable = export_helpers.random_exportable(128)[2]
  num_classes = len(exportable.class_names)
  z = export_helpers.inputs(49, seed=5)[0][:, : exportable.z_dim]
  import numpy as np

  weights = np.eye(num_classes, dtype=np.float32)[np.arange(49) % num_classes]
  with tempfile.TemporaryDirectory() as root:
    folder = os.path.join(root, "site")
    export.write_site(exportable, folder, runtime_dir=_RUNTIME.value, weights=_WEIGHTS.value)
    size = exportable.image_size
    print(f"{size}×{size} generator, model.onnx weights {_WEIGHTS.value}; files (bytes, gzip -9):")
    for name, raw, packed in file_sizes(folder):
      print(f"  {name}: {raw / 1e6:.3f} MB, gzip {packed / 1e6:.3f} MB")
    other = "float16" if _WEIGHTS.value == "float32" else "float32"
    data = export.onnx_bytes(exportable, other)
    print(
        f"  (model.onnx with {other} weights: {len(data) / 1e6:.3f} MB, "
        f"gzip {len(gzip.compress(data, 9)) / 1e6:.3f} MB)"
    )
    with open(os.path.join(folder, export.SITE_MODEL), "rb") as f:
      print(
          f"  float16 vs float32 weights, 49 images of the test noise: {pixel_difference(f.read(), data, z, weights)}"
      )
    rows = []
    with site_browser.static_server(folder) as url:
      if _SCREENSHOT.value:
        with site_browser.chromium(paths) as driver:
          driver.get(f"{url}/?{_QUERY.value}")
          site_browser.wait_for_draws(driver, 1, timeout=600)
          time.sleep(0.5)
          driver.save_screenshot(_SCREENSHOT.value)
          print(f"screenshot: {_SCREENSHOT.value}")
      for threads in threads_list:
        loads = [page_load(paths, url, threads) for _ in range(_LOADS.value)]
        ran = loads[0]["backend"]
        print(
            f"page, {threads} thread(s): runs on {ran['backend']}, {ran['threads']} thread(s), "
            f"crossOriginIsolated {ran['crossOriginIsolated']}",
            flush=True,
        )
        native = native_onnxruntime(os.path.join(folder, export.SITE_MODEL), threads, z, weights)
        own = flowergan_sampling(threads)
        rows.append((threads, loads, native, own))
  load_after = load_average()
  print(
      f"\n1-minute load average: {load_before:.1f} before, {load_after:.1f} after "
      f"({os.cpu_count()} cores); {_LOADS.value} page loads × {_NEW_GRIDS.value} new grids "
      f"of each size per thread count; medians (min–max)\n"
  )
  print(
      "| threads | page: request → first 4×4 | page: new 4×4 | page: new 7×7 "
      "| native onnxruntime: 16 / 49 | flowergan: 16 / 49 | page 7×7 ÷ native 49 |"
  )
  print("|---|---|---|---|---|---|---|")
  for threads, loads, native, own in rows:
    firsts = [load["first"] for load in loads]
    new4 = [ms for load in loads for ms in load["new"][4]]
    new7 = [ms for load in loads for ms in load["new"][7]]
    ratio = statistics.median(new7) / 1000 / native[49]
    print(
        f"| {threads} | {seconds(firsts)} | {seconds(new4)} | {seconds(new7)} "
        f"| {native[16]:.2f} s / {native[49]:.2f} s | {own[16]:.2f} s / {own[49]:.2f} s "
        f"| {ratio:.1f}× |"
    )


if __name__ == "__main__":
  app.run(main)
