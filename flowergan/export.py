"""The generator without flowergan: ONNX, a serialized `jax.export`, and a static web page.

    python -m flowergan.export --workdir=runs/demo --format=onnx --out=generator.onnx
    python -m flowergan.export --workdir=runs/demo --format=stablehlo --out=generator.jax
    python -m flowergan.export --workdir=runs/demo --format=web --out=site/

Every format is the same function (`INPUTS`, `OUTPUT`): noise `z` float32 (N, z_dim) and class
weights float32 (N, C) (one-hot rows for a class, blends for a class morph), N free, → images
float32 (N, S, S, 3), NHWC, in [-1, 1] (the generator's tanh; `(x + 1) / 2` maps them to the
[0, 1] of `sample.py`). Sampling the noise (truncated normal, seeds) stays with the caller.

The generator is traced with XLA's own convolutions ('lax'), whatever the run was trained
with (the formulations compute the same function with the same parameters), in float32.

Metadata travels with the model (`metadata`): the ONNX file's `metadata_props` (each value
JSON), the JSON file beside a `stablehlo` export (`OUT.json`), and `model.json` of the site,
whose page takes its controls' ranges and defaults from it (`demo_app.page_settings`).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import logging as std_logging
import os
import sys
from importlib import resources

import flax.linen as nn
import jax
import jax.numpy as jnp
from absl import app, flags, logging

from flowergan import __version__, cli, demo_app, errors, models, storage, trained

FORMATS = ("onnx", "stablehlo", "web")
INPUTS = ("z", "class_weights")
OUTPUT = "images"
OUTPUT_RANGE = (-1.0, 1.0)
ONNX_OPSET = 21  # onnxruntime-web 1.30 and onnxruntime ≥ 1.20 run it
STABLEHLO_PLATFORMS = ("cpu", "cuda", "tpu")

# The page's runtime: onnxruntime-web's WebAssembly build (web/package.json pins the same
# version; tests check that RUNTIME_SRI is the hash of that npm package's file).
RUNTIME_VERSION = "1.30.0"
RUNTIME_CDN = f"https://cdn.jsdelivr.net/npm/onnxruntime-web@{RUNTIME_VERSION}/dist/"
RUNTIME_SCRIPT = "ort.wasm.min.js"
RUNTIME_SRI = "sha384-Bw6URI+Gvoadw0do7/QrSHUC9D1vCYYK5OSqChFyhyV5mzPL4oe2rOAFljAnS8Sq"
# Its build with WebGPU (JSEP), loaded instead where the browser offers a GPU adapter. Not
# ort.webgpu.min.js: its newer WebGPU backend drew wrong images of this generator (1.30.0 and
# 1.31.1, Chromium 156's SwiftShader adapter; this one matched onnxruntime within 1e-5).
RUNTIME_WEBGPU_SCRIPT = "ort.min.js"
RUNTIME_WEBGPU_SRI = "sha384-N94xSNjPDbfBJj4+QINst0nbHpcCm8kc1qNlIP/wA0muqjR3aVyIuDkMeccPrLvQ"
RUNTIME_FILES = (
    RUNTIME_SCRIPT,
    "ort-wasm-simd-threaded.mjs",
    "ort-wasm-simd-threaded.wasm",
    RUNTIME_WEBGPU_SCRIPT,
    "ort-wasm-simd-threaded.jsep.mjs",
    "ort-wasm-simd-threaded.jsep.wasm",
)
# flowergan/site/, copied as they are; worker.js runs the model, coi.js is the service worker
# that gives the page cross-origin isolation (threads) on hosts that send no COOP/COEP headers.
SITE_FILES = ("index.html", "flowers.js", "flowers.css", "worker.js", "coi.js")
WEIGHTS = ("float32", "float16")  # --weights: float16 halves the file, compute stays float32
SITE_MODEL, SITE_METADATA, SITE_RUNTIME_DIR = "model.onnx", "model.json", "ort"


class ExportError(errors.FlowerganError):
  """A bad export request or an unwritable output; one line that says what to do."""


@dataclasses.dataclass(frozen=True)
class Exportable:
  """What an export needs of a trained run: the generator module, its inference variables
  (`params` = the EMA weights, `batch_stats`), and what the metadata says about it."""

  generator: models.Generator
  variables: dict
  class_names: list[str]
  step: int
  info: dict  # the checkpoint's metadata (e.g. `imported_generator`), may be empty

  @property
  def z_dim(self) -> int:
    return int(self.info["z_dim"])

  @property
  def image_size(self) -> int:
    return int(self.generator.image_size)


def load_exportable(workdir: str, step: int | str | None = None) -> Exportable:
  """The generator of `workdir`'s checkpoint (the newest one that restores, or `step`).

  The only place that reads a trained run; raises FlowerganError (one line) when it cannot.
  """
  model = trained.load_trained(workdir, step)
  # XLA's own convolutions in float32: what ONNX and StableHLO consumers compute natively.
  generator = model.generator.clone(conv=nn.Conv, dtype=jnp.float32)
  info = dict(model.metadata or {})
  info["z_dim"] = model.z_dim
  return Exportable(
      generator=generator,
      variables=model.sampling_variables(use_ema=True),
      class_names=list(model.class_names),
      step=int(model.step),
      info=info,
  )


def generator_function(exportable: Exportable):
  """`(z, class_weights) -> images` in [-1, 1], NHWC float32, weights closed over."""
  generator, variables = exportable.generator, exportable.variables

  def generate(z, class_weights):
    return generator.apply(variables, z, class_weights, train=False).astype(jnp.float32)

  return generate


def metadata(exportable: Exportable) -> dict:
  """What a consumer needs to feed the model and read its output (JSON-serialisable)."""
  imported = exportable.info.get("imported_generator")
  return {
      "producer": f"flowergan {__version__}",
      "class_names": list(exportable.class_names),
      "num_classes": len(exportable.class_names),
      "z_dim": exportable.z_dim,
      "image_size": exportable.image_size,
      "step": exportable.step,
      # The demo's controls (truncation range and default, grid sizes, seeds): the static
      # page sets its own from these.
      **demo_app.page_settings(),
      "inputs": {
          INPUTS[0]: "float32 (N, z_dim): noise, truncated normal N(0, 1) in ±truncation",
          INPUTS[1]: "float32 (N, num_classes): one-hot class rows, or blends (class morphs)",
      },
      "output": {
          "name": OUTPUT,
          "dtype": "float32",
          "layout": "NHWC (N, image_size, image_size, 3), RGB",
          "range": list(OUTPUT_RANGE),
          "to_uint8": "round((x + 1) / 2 * 255), clipped to 0..255",
      },
      "imported_generator": imported.get("file") if isinstance(imported, dict) else None,
  }


def onnx_model(exportable: Exportable, weights: str = "float32"):
  """The generator as an `onnx.ModelProto` (opset `ONNX_OPSET`, batch dimension 'N'), its
  weights stored in `weights` (`float16_weights`)."""
  # Lazily: only exports need them (the `export` extra). jax2onnx logs a warning with a
  # traceback for each optional plugin whose library (equinox, dm-pix…) is not installed.
  for name in ("jax2onnx", "onnx_ir"):  # and onnx_ir one line per unannotated shape
    std_logging.getLogger(name).setLevel(std_logging.ERROR)
  import jax2onnx
  import onnx

  model = jax2onnx.to_onnx(
      generator_function(exportable),
      inputs=[("N", exportable.z_dim), ("N", len(exportable.class_names))],
      model_name="flowergan_generator",
      opset=ONNX_OPSET,
      input_names=list(INPUTS),
      output_names=[OUTPUT],
  )
  # onnxruntime-web refuses jax2onnx's intermediate shape annotations (one declares NHWC where
  # the tensor is NCHW); they are optional hints, the runtimes infer shapes themselves.
  del model.graph.value_info[:]
  del model.metadata_props[:]
  for key, value in metadata(exportable).items():
    model.metadata_props.add(key=key, value=json.dumps(value))
  if weights == "float16":
    float16_weights(model)
  onnx.checker.check_model(model)
  return model


def float16_weights(model, min_size: int = 1024) -> None:
  """Stores `model`'s float32 initializers of `min_size` values or more as float16, each read
  back through a Cast to float32: half the file, the same float32 computation (every runtime
  and op runs it) on weights rounded to float16. The smaller ones (biases, BatchNorm's
  per-channel values) stay float32: at 128² they cost 7 KB, and with them in float16 a few
  pixels of the test noise differed by 3/255 from float32's instead of at most 2."""
  import numpy as np
  from onnx import TensorProto, helper, numpy_helper

  graph = model.graph
  casts = []
  for initializer in graph.initializer:
    if initializer.data_type != TensorProto.FLOAT or np.prod(initializer.dims) < min_size:
      continue
    name = initializer.name
    values = numpy_helper.to_array(initializer).astype(np.float16)
    initializer.CopyFrom(numpy_helper.from_array(values, f"{name}_float16"))
    casts.append(
        helper.make_node(
            "Cast", [f"{name}_float16"], [name], to=TensorProto.FLOAT, name=f"{name}_cast"
        )
    )
  nodes = list(graph.node)
  del graph.node[:]
  graph.node.extend(casts + nodes)


def onnx_bytes(exportable: Exportable, weights: str = "float32") -> bytes:
  return onnx_model(exportable, weights).SerializeToString()


def stablehlo_bytes(exportable: Exportable, platforms=STABLEHLO_PLATFORMS) -> bytes:
  """`jax.export` of the generator for `platforms`, serialized (`jax.export.deserialize`)."""
  (n,) = jax.export.symbolic_shape("N")
  specs = [
      jax.ShapeDtypeStruct((n, exportable.z_dim), jnp.float32),
      jax.ShapeDtypeStruct((n, len(exportable.class_names)), jnp.float32),
  ]
  exported = jax.export.export(jax.jit(generator_function(exportable)), platforms=platforms)(*specs)
  return bytes(exported.serialize())


def metadata_json(exportable: Exportable) -> bytes:
  return (json.dumps(metadata(exportable), indent=2, ensure_ascii=False) + "\n").encode()


def write_file(path: str, data: bytes) -> None:
  """Writes `data` whole through flowergan's one writer (`storage.write_bytes`: an
  unpredictable temporary name beside `path`, renamed; no link followed out of its folder;
  a special file refused), or raises ExportError."""
  try:
    storage.write_bytes(path, data)
  except storage.StorageError as e:
    raise ExportError(str(e)) from None
  except OSError as e:
    raise ExportError(f"cannot write {path} ({e.strerror}): choose a writable --out.") from None


def destinations(fmt: str, out: str) -> list[tuple[str, str, bool]]:
  """What `fmt` writes at `out`: `(what, path, is_folder)`, as `storage.destination_problem`
  checks them."""
  if fmt == "stablehlo":
    return [("--out", out, False), ("its metadata file", f"{out}.json", False)]
  return [("--out", out, fmt == "web")]


def check_destinations(fmt: str, out: str) -> None:
  """Refuses, before the slow export and before any file is written, a destination that cannot
  be written: a missing or read-only folder, a FIFO or device, a directory where a file goes, a
  link out of its folder, and for `web` a folder that exists and is not empty."""
  if fmt != "web" and not os.path.isdir(os.path.dirname(os.path.abspath(out))):
    raise ExportError(f"no folder {os.path.dirname(out)}: create it or choose another --out.")
  for what, path, folder in destinations(fmt, out):
    problem = storage.destination_problem(path, folder=folder, new=folder)
    if problem:
      raise ExportError(f"cannot write {path} ({what}): {problem}; choose another --out.")


def export_onnx(exportable: Exportable, out: str, weights: str = "float32") -> list[str]:
  check_destinations("onnx", out)
  write_file(out, onnx_bytes(exportable, weights))
  return [out]


def export_stablehlo(exportable: Exportable, out: str) -> list[str]:
  """`out` (the serialized export) and `out.json` (its metadata), both checked first."""
  check_destinations("stablehlo", out)
  write_file(out, stablehlo_bytes(exportable))
  write_file(f"{out}.json", metadata_json(exportable))
  return [out, f"{out}.json"]


def file_sri(path: str) -> str:
  """The Subresource Integrity value (`sha384-…`) of a file."""
  with open(path, "rb") as f:
    return "sha384-" + base64.b64encode(hashlib.sha384(f.read()).digest()).decode()


def check_runtime_dir(runtime_dir: str) -> None:
  missing = [name for name in RUNTIME_FILES if not os.path.isfile(os.path.join(runtime_dir, name))]
  if missing:
    raise ExportError(
        f"--runtime={runtime_dir} lacks {', '.join(missing)}: pass the dist folder of "
        f"onnxruntime-web {RUNTIME_VERSION} (`npm ci --prefix web` puts it in "
        "web/node_modules/onnxruntime-web/dist), or leave --runtime out for the CDN."
    )


def index_html(
    runtime_src: str,
    integrity: str | None,
    webgpu_src: str | None = None,
    webgpu_integrity: str | None = None,
) -> str:
  """The page with its runtime filled in: where worker.js loads the WebAssembly build
  (`runtime_src`) and the WebGPU build from (default: beside it), with their SRI hashes."""
  template = resources.files("flowergan").joinpath("site", "index.html").read_text()
  webgpu_src = webgpu_src or runtime_src.rsplit("/", 1)[0] + "/" + RUNTIME_WEBGPU_SCRIPT
  sri = f' data-integrity="{integrity}"' if integrity else ""
  webgpu_sri = f' data-webgpu-integrity="{webgpu_integrity}"' if webgpu_integrity else ""
  tag = (
      f'<meta id="ort-runtime" name="ort-runtime" content="{runtime_src}"{sri}'
      f' data-webgpu="{webgpu_src}"{webgpu_sri}>'
  )
  return template.replace("<!-- RUNTIME -->", tag)


def write_site(
    exportable: Exportable, out: str, runtime_dir: str | None = None, weights: str = "float32"
) -> list[str]:
  """A folder any static host serves: the page, its scripts and style, `model.onnx`,
  `model.json`; with `runtime_dir` (onnxruntime-web's `dist`) the runtime too, in `ort/`,
  so that the page needs no network; without it the page loads the runtime from the CDN,
  checked by its SRI hash."""
  if runtime_dir is not None:
    check_runtime_dir(runtime_dir)
  check_destinations("web", out)
  try:
    with storage.new_folder(out, what="--out") as tmp:  # the whole site or nothing
      written = _write_site_files(exportable, tmp, runtime_dir, weights)
  except storage.StorageError as e:
    raise ExportError(str(e)) from None
  except OSError as e:
    raise ExportError(f"cannot write the site to {out} ({e.strerror}).") from None
  return [os.path.join(out, os.path.relpath(path, tmp)) for path in written]


def _write_site_files(
    exportable: Exportable, out: str, runtime_dir: str | None, weights: str
) -> list[str]:
  """The site's files in the new folder `out`."""
  written = []
  model = os.path.join(out, SITE_MODEL)
  write_file(model, onnx_bytes(exportable, weights))
  written.append(model)
  for name, data in ((SITE_METADATA, metadata_json(exportable)),):
    write_file(os.path.join(out, name), data)
    written.append(os.path.join(out, name))
  for name in SITE_FILES[1:]:
    data = resources.files("flowergan").joinpath("site", name).read_bytes()
    write_file(os.path.join(out, name), data)
    written.append(os.path.join(out, name))
  if runtime_dir is None:
    html = index_html(
        RUNTIME_CDN + RUNTIME_SCRIPT,
        RUNTIME_SRI,
        RUNTIME_CDN + RUNTIME_WEBGPU_SCRIPT,
        RUNTIME_WEBGPU_SRI,
    )
  else:
    vendored = os.path.join(out, SITE_RUNTIME_DIR)
    try:
      for name in RUNTIME_FILES:
        storage.copy_file(os.path.join(runtime_dir, name), os.path.join(vendored, name))
        written.append(os.path.join(vendored, name))
    except OSError as e:
      raise ExportError(f"cannot copy the runtime into {vendored} ({e.strerror}).") from None
    html = index_html(
        f"{SITE_RUNTIME_DIR}/{RUNTIME_SCRIPT}",
        file_sri(os.path.join(vendored, RUNTIME_SCRIPT)),
        f"{SITE_RUNTIME_DIR}/{RUNTIME_WEBGPU_SCRIPT}",
        file_sri(os.path.join(vendored, RUNTIME_WEBGPU_SCRIPT)),
    )
  index = os.path.join(out, SITE_FILES[0])
  write_file(index, html.encode())
  written.append(index)
  return written


def export(
    workdir: str, fmt: str, out: str, *, step=None, runtime_dir=None, weights="float32"
) -> list[str]:
  """Loads `workdir`'s generator and writes `fmt` to `out`; returns the paths written."""
  if fmt not in FORMATS:
    raise ExportError(f"unknown --format={fmt!r}: use one of {', '.join(FORMATS)}.")
  if not out:
    raise ExportError("pass --out (a file for onnx and stablehlo, a folder for web).")
  if fmt != "web" and os.path.isdir(out):
    raise ExportError(f"--out={out} is a folder: pass a file name for --format={fmt}.")
  if fmt != "web" and runtime_dir is not None:
    raise ExportError("--runtime is for --format=web only.")
  if weights not in WEIGHTS:
    raise ExportError(f"unknown --weights={weights!r}: use one of {', '.join(WEIGHTS)}.")
  if fmt == "stablehlo" and weights != "float32":
    raise ExportError("--weights=float16 is for --format=onnx and web; stablehlo is float32.")
  if fmt == "web" and runtime_dir is not None:
    check_runtime_dir(runtime_dir)
  check_destinations(fmt, out)
  exportable = load_exportable(workdir, step)
  if fmt == "onnx":
    return export_onnx(exportable, out, weights)
  if fmt == "stablehlo":
    return export_stablehlo(exportable, out)
  return write_site(exportable, out, runtime_dir, weights)


def _define_flags():
  return (
      flags.DEFINE_string("workdir", None, "The trained run to export."),
      flags.DEFINE_string("step", None, "A checkpoint step, 'best', or none for the newest."),
      flags.DEFINE_string("format", "onnx", f"One of {', '.join(FORMATS)}."),
      flags.DEFINE_string("out", None, "Output file (onnx, stablehlo) or folder (web)."),
      flags.DEFINE_string(
          "runtime",
          None,
          "web: onnxruntime-web's dist folder to copy into the site (no network needed); "
          "default: the page loads it from the CDN.",
      ),
      flags.DEFINE_string(
          "weights",
          "float32",
          "onnx, web: how the weights are stored, float32 or float16 (half the file; computed "
          "in float32 all the same, images within a few 1/255 of float32's).",
      ),
  )


def parse_step(text: str | None) -> int | str | None:
  if text is None or text == "best":
    return text
  if not text.isdigit():
    raise ExportError(f"--step={text!r}: pass a step number, 'best', or leave it out.")
  return int(text)


def main(argv, workdir_flag, step_flag, format_flag, out_flag, runtime_flag, weights_flag):
  if len(argv) > 1:
    sys.exit(f"error: unexpected arguments {' '.join(argv[1:])}: pass flags only.")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  if not workdir_flag.value:
    sys.exit("error: pass --workdir=runs/NAME, the trained run to export.")
  try:
    written = export(
        workdir_flag.value,
        format_flag.value,
        out_flag.value,
        step=parse_step(step_flag.value),
        runtime_dir=runtime_flag.value,
        weights=weights_flag.value,
    )
  except errors.FlowerganError as e:
    sys.exit(f"error: {cli.one_line(e)}")
  sizes = ", ".join(f"{path} ({os.path.getsize(path) / 1e6:.1f} MB)" for path in written[:2])
  more = f" and {len(written) - 2} more" if len(written) > 2 else ""
  print(f"wrote {sizes}{more}")
  if format_flag.value == "web":
    print(f"serve it with `python -m http.server -d {out_flag.value}` or upload the folder.")


if __name__ == "__main__":
  _flags = _define_flags()
  app.run(lambda argv: main(argv, *_flags), flags_parser=cli.parse_flags)
