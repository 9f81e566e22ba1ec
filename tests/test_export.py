"""The generator exported (python -m flowergan.export): ONNX and jax.export give flowergan's
images, carry their metadata, and bad requests fail in one line."""

import json
import os
import subprocess
import sys
import types
from importlib import resources

import jax
import numpy as np
import pytest

from flowergan import demo_app, export, sampling, trained
from tests import export_helpers, tiny_config, tiny_run

TOLERANCE = 1e-4  # in the generator's [-1, 1] units


@pytest.fixture(autouse=True)
def _export_packages():
  export_helpers.require_export_packages()


def _onnx_images(model_bytes: bytes, z, weights) -> np.ndarray:
  import onnxruntime

  session = onnxruntime.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
  return session.run(None, {"z": z, "class_weights": weights})[0]


@pytest.mark.parametrize("size", [32, 64, 128])
def test_onnx_gives_flowergans_images(size):
  generator, variables, exportable = export_helpers.random_exportable(size, seed=size)
  model_bytes = export.onnx_bytes(exportable)
  z, weights = export_helpers.inputs(49, seed=size)
  expected = np.asarray(generator.apply(variables, z, weights, train=False))
  assert expected.std() > 0.3  # the comparison is over tanh's range, not near-zero outputs
  for num in (1, 49):
    images = _onnx_images(model_bytes, z[:num], weights[:num])
    assert images.shape == (num, size, size, 3) and images.dtype == np.float32
    assert np.abs(images - expected[:num]).max() <= TOLERANCE
  if size == 128:
    assert len(model_bytes) <= 5_000_000  # float32 weights, 1,123,011 parameters


def test_onnx_carries_its_metadata_and_no_value_info():
  import onnx

  _, _, exportable = export_helpers.random_exportable(32)
  model = onnx.load_from_string(export.onnx_bytes(exportable))
  props = {p.key: json.loads(p.value) for p in model.metadata_props}
  assert props["class_names"] == ["dandelion", "marigold"]
  assert props["z_dim"] == 64 and props["image_size"] == 32 and props["step"] == 123
  assert props["default_truncation"] == 1.5 and props["output"]["range"] == [-1.0, 1.0]
  # onnxruntime-web refuses the file with jax2onnx's (wrong) intermediate shape annotations.
  assert len(model.graph.value_info) == 0
  names = [i.name for i in model.graph.input], [o.name for o in model.graph.output]
  assert names == (["z", "class_weights"], ["images"])
  batch = model.graph.input[0].type.tensor_type.shape.dim[0]
  assert batch.dim_param and not batch.dim_value  # N is free


def test_metadata_carries_the_demos_controls_as_python_defines_them(monkeypatch):
  """The static page reads its ranges and defaults from here; they are demo_app's."""
  _, _, exportable = export_helpers.random_exportable(32)
  controls = {
      "truncation_range": [0.01, 3.0],
      "truncation_step": 0.01,
      "default_truncation": 1.5,
      "grid_range": [1, 7],
      "default_grid": 4,
      "max_seed": 2**31 - 1,
  }
  assert demo_app.page_settings() == controls
  assert {k: export.metadata(exportable)[k] for k in controls} == controls
  monkeypatch.setattr(demo_app, "GRID_RANGE", (2, 5))
  monkeypatch.setattr(demo_app, "DEFAULT_TRUNCATION", 0.7)
  monkeypatch.setattr(demo_app, "MAX_SEED", 999)
  meta = json.loads(export.metadata_json(exportable))
  assert (meta["grid_range"], meta["default_truncation"], meta["max_seed"]) == ([2, 5], 0.7, 999)


def test_the_static_page_has_no_control_values_of_its_own():
  """index.html and flowers.js take every range and default from model.json."""
  site = resources.files("flowergan").joinpath("site")
  for name in ("index.html", "flowers.js"):
    text = site.joinpath(name).read_text()
    for value in ("2147483647", "0.01", "1.5", "3.0", "max=", "value="):
      assert value not in text, (name, value)


def test_stablehlo_gives_flowergans_images_for_any_batch():
  generator, variables, exportable = export_helpers.random_exportable(32, seed=1)
  exported = jax.export.deserialize(bytearray(export.stablehlo_bytes(exportable)))
  assert set(exported.platforms) == {"cpu", "cuda", "tpu"}
  z, weights = export_helpers.inputs(49, seed=1)
  expected = np.asarray(generator.apply(variables, z, weights, train=False))
  for num in (1, 49):
    images = np.asarray(exported.call(z[:num], weights[:num]))
    assert images.shape == (num, 32, 32, 3)
    assert np.abs(images - expected[:num]).max() <= TOLERANCE


def test_authors_generator_imported_then_exported(tmp_path):
  import onnx

  torch_tests = pytest.importorskip("tests.test_import_torch")
  g = torch_tests.trained_like(64, seed=3)
  path = tmp_path / "GANFLOWER-24_05000_c2wgan_64_generator.pt"
  torch_tests.torch.save({"model_state_dict": g.state_dict()}, path)
  workdir = tmp_path / "authors"
  result = torch_tests._import(path, workdir)
  assert result.returncode == 0, result.stderr[-3000:]

  out = tmp_path / "generator.onnx"
  result = _export(f"--workdir={workdir}", "--format=onnx", f"--out={out}")
  assert result.returncode == 0, result.stderr[-3000:]
  model = trained.load_trained(str(workdir))  # what flowergan samples from
  z, weights = export_helpers.inputs(49, seed=3)
  variables = model.sampling_variables()
  expected = sampling.generate_from_z(model.generator, variables, z, weights) * 2 - 1
  assert expected.std() > 0.15
  images = _onnx_images(out.read_bytes(), z, weights)
  assert np.abs(images - expected).max() <= TOLERANCE
  props = {p.key: json.loads(p.value) for p in onnx.load(str(out)).metadata_props}
  assert props["imported_generator"] == path.name and props["image_size"] == 64


def _export(*args) -> subprocess.CompletedProcess:
  return subprocess.run(
      [sys.executable, "-m", "flowergan.export", *args],
      cwd=tiny_config.REPO,
      env=tiny_run.env(),
      capture_output=True,
      text=True,
      timeout=600,
  )


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  return tiny_run.trained_workdir(tmp_path_factory)


def test_cli_writes_onnx_and_stablehlo_of_a_trained_run(workdir, tmp_path):
  onnx_file, hlo_file = tmp_path / "g.onnx", tmp_path / "g.jax"
  result = _export(f"--workdir={workdir}", "--format=onnx", f"--out={onnx_file}")
  assert result.returncode == 0, result.stderr[-3000:]
  assert f"wrote {onnx_file}" in result.stdout
  result = _export(f"--workdir={workdir}", "--format=stablehlo", f"--out={hlo_file}")
  assert result.returncode == 0, result.stderr[-3000:]
  sidecar = json.loads((tmp_path / "g.jax.json").read_text())
  assert sidecar["image_size"] == 16 and sidecar["step"] == 2 and sidecar["z_dim"] == 8

  model = trained.load_trained(str(workdir))
  variables = model.sampling_variables()
  z = np.random.default_rng(0).standard_normal((5, 8)).astype(np.float32)
  labels = np.array([0, 1, 1, 0, 1])
  expected = sampling.generate_from_z(model.generator, variables, z, labels) * 2 - 1
  weights = sampling.class_weights(labels, 2)
  assert np.abs(_onnx_images(onnx_file.read_bytes(), z, weights) - expected).max() <= TOLERANCE
  exported = jax.export.deserialize(bytearray(hlo_file.read_bytes()))
  assert np.abs(np.asarray(exported.call(z, weights)) - expected).max() <= TOLERANCE


def _one_line_error(result, *needles):
  assert result.returncode == 1
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-2000:]
  for needle in needles:
    assert needle in lines[0]


def test_cli_refuses_bad_requests_in_one_line(workdir, tmp_path):
  _one_line_error(
      _export(f"--workdir={tmp_path / 'nothing'}", f"--out={tmp_path / 'g.onnx'}"),
      "no checkpoint",
  )
  blocker = tmp_path / "a_file"
  blocker.write_text("")
  _one_line_error(
      _export(f"--workdir={workdir}", f"--out={blocker / 'g.onnx'}"), "choose another --out"
  )
  _one_line_error(
      _export(f"--workdir={workdir}", "--format=tflite", f"--out={tmp_path / 'g'}"),
      "unknown --format='tflite'",
      "onnx, stablehlo, web",
  )
  _one_line_error(_export(f"--workdir={workdir}", "--format=web", f"--out={blocker}"), "is a file")
  _one_line_error(
      _export(f"--workdir={workdir}", "--format=web", f"--out={tmp_path}/s", "--runtime=/nope"),
      "lacks ort.wasm.min.js",
  )
  assert not (tmp_path / "g.onnx").exists() and blocker.read_text() == ""


def test_page_runtime_pin_matches_the_npm_package():
  """The CDN script's SRI hash is the hash of web/package-lock.json's onnxruntime-web file."""
  lock = json.loads((tiny_config.REPO / "web" / "package-lock.json").read_text())
  assert lock["packages"]["node_modules/onnxruntime-web"]["version"] == export.RUNTIME_VERSION
  dist = tiny_config.REPO / "web" / "node_modules" / "onnxruntime-web" / "dist"
  if not dist.is_dir():
    reason = "web/node_modules is missing: run `npm ci --prefix web` (as .ci/run does)"
    if os.environ.get("FLOWERGAN_REQUIRE_EXPORT") == "1":
      pytest.fail(reason)
    pytest.skip(reason)
  assert export.file_sri(str(dist / export.RUNTIME_SCRIPT)) == export.RUNTIME_SRI
  html = export.index_html(export.RUNTIME_CDN + export.RUNTIME_SCRIPT, export.RUNTIME_SRI)
  assert f'integrity="{export.RUNTIME_SRI}"' in html and "onnxruntime-web@1.30.0" in html


# ------------------------------------------ destinations (issue 26): checked first, all of them


def _refused(out, fmt, *needles):
  """export() of `fmt` to `out` fails in one line naming `needles`, before reading the run (the
  workdir does not exist: a check that let it through would fail with 'no checkpoint')."""
  with pytest.raises(export.ExportError) as e:
    export.export(str(out.parent / "no_run"), fmt, str(out))
  message = str(e.value)
  assert "\n" not in message and "checkpoint" not in message, message
  for needle in needles:
    assert needle in message, message


def test_export_refuses_every_destination_it_would_replace_before_writing_any(tmp_path):
  site = tmp_path / "site"
  site.mkdir()
  (site / "index.html").write_text("my page")
  _refused(site, "web", "not empty")
  os.mkfifo(tmp_path / "fifo")
  _refused(tmp_path / "fifo", "web", "not a folder")
  _refused(tmp_path / "fifo", "onnx", "not a regular file")
  fifo_site = tmp_path / "fifo_site"
  fifo_site.mkdir()
  os.mkfifo(fifo_site / "model.onnx")
  _refused(fifo_site, "web", "not empty")
  os.mkfifo(tmp_path / "g.jax.json")
  _refused(tmp_path / "g.jax", "stablehlo", "g.jax.json", "not a regular file")
  (tmp_path / "h.jax.json").mkdir()
  _refused(tmp_path / "h.jax", "stablehlo", "h.jax.json", "is a directory")
  outside = tmp_path / "outside"
  outside.mkdir()
  (outside / "victim").write_text("precious")
  (site / "g.onnx").symlink_to(outside / "victim")
  _refused(site / "g.onnx", "onnx", "symbolic link")
  assert (site / "index.html").read_text() == "my page" and (outside / "victim").read_text()
  assert sorted(os.listdir(tmp_path)) == [
      "fifo",
      "fifo_site",
      "g.jax.json",
      "h.jax.json",
      "outside",
      "site",
  ]  # no g.jax, no h.jax
  assert os.listdir(fifo_site) == ["model.onnx"] and os.path.exists(tmp_path / "fifo")


def test_site_appears_whole_through_the_one_writer(tmp_path, monkeypatch):
  # No network: the conversion is tested above; metadata needs only these fields.
  generator = types.SimpleNamespace(image_size=16)
  exportable = export.Exportable(generator, {}, ["a", "b"], step=1, info={"z_dim": 8})
  monkeypatch.setattr(export, "onnx_bytes", lambda *args, **kwargs: b"model")
  outside = tmp_path / "outside"
  outside.mkdir()
  (outside / "victim").write_text("precious")
  out = tmp_path / "site"
  # The old writer's guessable temporary name, planted as a link: never written through.
  (tmp_path / f"model.onnx.tmp{os.getpid()}").symlink_to(outside / "victim")
  written = export.write_site(exportable, str(out))
  assert sorted(os.path.relpath(p, out) for p in written) == sorted(os.listdir(out))
  assert (out / "model.onnx").read_bytes() == b"model"
  assert (outside / "victim").read_text() == "precious"
  assert sorted(os.listdir(tmp_path)) == ["model.onnx.tmp" + str(os.getpid()), "outside", "site"]

  def interrupted(exportable):
    raise KeyboardInterrupt

  monkeypatch.setattr(export, "metadata_json", interrupted)
  with pytest.raises(KeyboardInterrupt):
    export.write_site(exportable, str(tmp_path / "half"))
  assert not (tmp_path / "half").exists()  # nothing half written, no temporary folder
  assert sorted(os.listdir(tmp_path)) == ["model.onnx.tmp" + str(os.getpid()), "outside", "site"]
