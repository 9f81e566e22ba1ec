"""Labelled synthetic datasets (`sample.py --dataset=DIR`, `dataset_writer.write_dataset`): the
folder layout that `data.source='folder:DIR'` reads back, the manifest and noise file, refusals."""

import json
import os
import subprocess
import sys

import ml_collections
import numpy as np
import pytest

from flowergan import data_sources, dataset_writer, imaging, sampling, trained
from tests import image_folders, tiny_run


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  return tiny_run.trained_workdir(tmp_path_factory)


def _folder_config(path, size) -> ml_collections.ConfigDict:
  return image_folders.data_config(source=f"folder:{path}", image_size=size)


def test_dataset_reads_back_as_the_same_images_and_labels(workdir, tmp_path):
  """`sample.py --dataset` writes DIR/<class>/<index>.png that `load_images` reads back as the
  images of `--label=all --num=N` with the same seed, with their labels, plus the manifest
  and the noise those images came from."""
  out = tmp_path / "synth"
  n = 3
  result = tiny_run.run(
      "sample.py", f"--workdir={workdir}", f"--dataset={out}", f"--num_per_class={n}", "--seed=5"
  )
  assert result.returncode == 0, result.stderr[-2000:]
  assert f"{2 * n}/{2 * n} images written" in result.stderr
  model = trained.load_trained(str(workdir))
  expected = sampling.sample_grid(model, "all", n, seed=5)
  images, labels, names = data_sources.load_images(_folder_config(out, model.image_size))
  assert names == list(model.class_names)
  np.testing.assert_array_equal(labels, expected.labels)
  np.testing.assert_array_equal(images, imaging.to_uint8(expected.images))
  manifest = json.loads((out / dataset_writer.DATASET_MANIFEST).read_text())
  assert manifest["step"] == model.step and manifest["seed"] == 5
  assert manifest["class_names"] == names and manifest["num_per_class"] == n
  assert manifest["workdir"] == str(workdir) and manifest["truncation"] is None
  np.testing.assert_array_equal(np.load(out / manifest["noise_file"]), expected.z)
  assert sorted(p.name for p in (out / names[1]).iterdir()) == ["0000.png", "0001.png", "0002.png"]


def test_dataset_streams_in_chunks_with_progress(workdir, tmp_path, monkeypatch):
  """More images than one chunk are generated and written chunk by chunk, and each chunk's
  images are those of one request of them all (the noise rows follow the class order)."""
  monkeypatch.setattr(dataset_writer, "DATASET_CHUNK", 2)
  model = trained.load_trained(str(workdir))
  calls = []
  dataset_writer.write_dataset(
      model, str(tmp_path / "d"), 5, seed=1, truncation=1.5, progress=lambda *a: calls.append(a)
  )
  assert calls == [(2, 10), (4, 10), (5, 10), (7, 10), (9, 10), (10, 10)]
  expected = sampling.sample_grid(model, "all", 5, seed=1, truncation=1.5)
  images, labels, _ = data_sources.load_images(_folder_config(tmp_path / "d", model.image_size))
  np.testing.assert_array_equal(images, imaging.to_uint8(expected.images))
  np.testing.assert_array_equal(labels, expected.labels)


def test_dataset_refuses_a_non_empty_folder_and_keeps_it(workdir, tmp_path):
  """An existing non-empty DIR is refused in one line, and what it holds stays as it was."""
  out = tmp_path / "taken"
  out.mkdir()
  (out / "mine.txt").write_text("keep")
  result = tiny_run.run("sample.py", f"--workdir={workdir}", f"--dataset={out}")
  assert result.returncode != 0
  assert result.stderr.strip().splitlines()[-1].startswith("error: ")
  assert "not an empty folder" in result.stderr and "Traceback" not in result.stderr
  assert [p.name for p in out.iterdir()] == ["mine.txt"]
  model = trained.load_trained(str(workdir))
  with pytest.raises(imaging.ImageError, match="at least 1"):
    dataset_writer.write_dataset(model, str(tmp_path / "new"), 0)


@pytest.mark.parametrize(
    "flag", ["--interpolate=1,2", "--z_file=z.npy", "--out=grid.png", "--num=4", "--save_z=z.npy"]
)
def test_dataset_flags_are_checked_before_the_checkpoint_is_read(tmp_path, flag):
  """A taken DIR or a flag that does not apply to a dataset fails in one line, even without a
  checkpoint to read (so before any is read), and writes nothing."""
  taken = tmp_path / "taken"
  taken.mkdir()
  (taken / "mine.txt").write_text("keep")
  missing = tmp_path / "no_run"
  result = tiny_run.run("sample.py", f"--workdir={missing}", f"--dataset={taken}")
  assert result.returncode == 1 and "not an empty folder" in result.stderr
  result = tiny_run.run("sample.py", f"--workdir={missing}", f"--dataset={tmp_path / 'd'}", flag)
  assert result.returncode == 1 and "exclude each other" in result.stderr
  assert "Traceback" not in result.stderr
  assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


@pytest.mark.parametrize("num_per_class", [0, dataset_writer.MAX_PER_CLASS + 1, 1_000_000_000])
def test_dataset_refuses_counts_out_of_bounds_in_one_line(tmp_path, num_per_class):
  """`--num_per_class` outside 1..MAX_PER_CLASS is refused before any noise is drawn (a billion
  used to abort inside XLA), and nothing is written."""
  with pytest.raises(imaging.ImageError, match=f"at most {dataset_writer.MAX_PER_CLASS}") as e:
    dataset_writer.check_dataset_request(str(tmp_path / "d"), num_per_class)
  assert "\n" not in str(e.value) and str(num_per_class) in str(e.value)
  assert not list(tmp_path.iterdir())
  dataset_writer.check_dataset_request(str(tmp_path / "d"), dataset_writer.MAX_PER_CLASS)


def test_ctrl_c_while_writing_a_dataset_leaves_nothing_and_the_rerun_works(workdir, tmp_path):
  """Ctrl-C after some images were written: the line says no partial file is left, and it is
  true (no PNG, no noise.npy, no temporary folder), so the advised rerun is not refused."""
  out = tmp_path / "synth"
  script = (
      "import runpy, sys\n"
      "from flowergan import imaging\n"
      "save, calls = imaging.save_png, []\n"
      "def save_then_stop(*args):\n"
      "  calls.append(1)\n"
      "  if len(calls) == 3:\n"
      "    raise KeyboardInterrupt\n"
      "  save(*args)\n"
      "imaging.save_png = save_then_stop\n"
      "sys.argv = ['sample.py'] + sys.argv[1:]\n"
      f"runpy.run_path({str(tiny_run.REPO / 'sample.py')!r}, run_name='__main__')\n"
  )
  result = subprocess.run(
      [sys.executable, "-c", script, f"--workdir={workdir}", f"--dataset={out}"],
      env=tiny_run.env(),
      capture_output=True,
      text=True,
      timeout=300,
  )
  assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
  assert "SIGINT (Ctrl-C): interrupted; no partial file is left" in result.stderr
  assert os.listdir(tmp_path) == []  # not the images written before, not the temporary folder
  model = trained.load_trained(str(workdir))
  dataset_writer.write_dataset(model, str(out), 2)  # the rerun is not refused
  assert sorted(os.listdir(out)) == ["dandelion", "manifest.json", "marigold", "noise.npy"]
  assert os.listdir(tmp_path) == ["synth"]


def test_a_dataset_folder_linked_out_of_its_folder_or_special_is_refused(tmp_path):
  outside = tmp_path / "outside"
  outside.mkdir()
  (tmp_path / "here").mkdir()
  (tmp_path / "here" / "link").symlink_to(outside)  # an empty folder, elsewhere
  os.mkfifo(tmp_path / "here" / "fifo")
  for name, needle in [("here/link", "symbolic link"), ("here/fifo", "not an empty folder")]:
    with pytest.raises(imaging.ImageError, match=needle) as e:
      dataset_writer.check_dataset_request(str(tmp_path / name), 1)
    assert "\n" not in str(e.value)
  assert os.listdir(outside) == []
