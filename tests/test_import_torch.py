"""The authors' published generator imported exactly: python import_torch.py.

A PyTorch module with the authors' state-dict layout (GUIDE §6: `gen.N` of an nn.Sequential,
Upsample bilinear align_corners=False, Conv2d → BatchNorm2d → ReLU blocks, Conv2d → Tanh) gets
random weights and running statistics from forward passes in training mode, is saved as their
files are (`{"model_state_dict": ...}`), imported, and compared with flowergan's output.
"""

import subprocess
import sys

import numpy as np
import pytest

from flowergan import checkpointing, demo_app, import_torch, models, trained
from flowergan import train as train_lib
from tests import tiny_config, tiny_run

torch = pytest.importorskip(
    "torch", reason='torch is not installed (pip install -e ".[torch]"); import tests skipped'
)
nn = torch.nn

# Every generator conv implementation of this branch (after the merge with main:
# config.model.generator_conv in 'dots', 'lax', building the generator from the config).
CONV_IMPLS = ("dots", "lax")


def authors_generator(image_size: int) -> nn.Module:
  """Their GeneratorWGAN(input_dim=66, im_chan=3, hidden_dim=64): one attribute `gen`."""

  def block(c_in, c_out, kernel=3, padding=1):
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, padding=padding), nn.BatchNorm2d(c_out), nn.ReLU()
    )

  def up():
    return nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)

  layers = [block(66, 256, 4, 3), up(), block(256, 128), up(), block(128, 128), block(128, 128)]
  layers += [up(), block(128, 64), block(64, 64), up(), block(64, 64), block(64, 64)]
  if image_size == 128:
    layers += [up(), block(64, 64), block(64, 64)]
  layers.append(nn.Sequential(nn.Conv2d(64, 3, 3, padding=1), nn.Tanh()))

  class GeneratorWGAN(nn.Module):

    def __init__(self):
      super().__init__()
      self.gen = nn.Sequential(*layers)

    def forward(self, noise_and_label):
      return self.gen(noise_and_label.view(len(noise_and_label), 66, 1, 1))

  return GeneratorWGAN()


def _inputs(z, labels):
  onehot = np.eye(2, dtype=np.float32)[labels]
  return torch.from_numpy(np.concatenate([z, onehot], axis=1))


def trained_like(image_size: int, seed: int = 0) -> nn.Module:
  """Random weights; running statistics from a few training-mode passes (untouched statistics
  would make the output ~1e-5 everywhere and any comparison vacuous)."""
  torch.manual_seed(seed)
  g = authors_generator(image_size)
  with torch.no_grad():
    for module in g.modules():
      if isinstance(module, nn.BatchNorm2d):  # not 1 and 0, so a swapped scale/shift shows
        module.weight.uniform_(0.5, 1.5)
        module.bias.normal_(0.0, 0.2)
    # A trained generator uses tanh's range; PyTorch's init leaves the output near 0 (std 0.01).
    g.gen[-1][0].weight.mul_(20.0)
  g.train()
  rng = np.random.default_rng(seed)
  with torch.no_grad():
    for _ in range(4):
      z = rng.standard_normal((16, 64)).astype(np.float32)
      g(_inputs(z, rng.integers(0, 2, 16)))
  return g.eval()


@pytest.fixture(scope="module")
def authors_files(tmp_path_factory):
  root = tmp_path_factory.mktemp("authors")
  files = {}
  for size in (128, 64):
    g = trained_like(size, seed=size)
    path = root / f"GANFLOWER_c2wgan_{size}_generator.pt"
    torch.save({"model_state_dict": g.state_dict()}, path)
    files[size] = (g, path)
  return files


def _import(path, workdir, *args):
  return subprocess.run(
      [sys.executable, "import_torch.py", str(path), f"--workdir={workdir}", *args],
      cwd=tiny_config.REPO,
      env=tiny_run.env(),
      capture_output=True,
      text=True,
      timeout=600,
  )


@pytest.mark.parametrize("size", [128, 64])
def test_imported_generator_equals_pytorch(authors_files, tmp_path, size):
  g, path = authors_files[size]
  assert len(g.state_dict()) == (72 if size == 128 else 58)
  result = _import(path, tmp_path / "run")
  assert result.returncode == 0, result.stderr[-3000:]
  assert f"authors' {size}×{size} generator" in result.stdout

  model = trained.load_trained(str(tmp_path / "run"))
  assert model.class_names == ["dandelion", "marigold"]
  assert model.config.data.image_size == size and model.config.model.width == 64
  assert "randomly initialised" in model.metadata["imported_generator"]["critic"]
  caption = demo_app.Demo(model, str(tmp_path / "run")).caption()
  assert f"the authors' generator ({path.name}), imported, {size}×{size} images" in caption
  for a, b in zip(*map(_leaves, (model.variables["g_params"], model.variables["ema_params"]))):
    np.testing.assert_array_equal(a, b)

  rng = np.random.default_rng(1)
  z = rng.standard_normal((6, 64)).astype(np.float32)
  labels = np.array([0, 1, 0, 1, 1, 0])
  with torch.no_grad():
    expected = g(_inputs(z, labels)).numpy().transpose(0, 2, 3, 1)  # NCHW → NHWC
  assert expected.shape == (6, size, size, 3)
  assert expected.std() > 0.05, "the reference output is (nearly) constant: vacuous comparison"
  variables = model.sampling_variables()
  for impl in CONV_IMPLS:
    generator = model.generator.clone(conv=models.conv_module(impl, role="generator"))
    out = np.asarray(generator.apply(variables, z, labels, train=False))
    assert out.std() > 0.05
    diff = np.abs(out - expected).max()
    assert diff <= 1e-4, f"{impl}, {size}×{size}: max abs difference {diff:.2e}"
    print(f"{size}×{size} generator_conv={impl}: max abs difference {diff:.2e}")


def _leaves(tree):
  import jax

  return jax.tree.leaves(tree)


def test_imported_workdir_refuses_to_train_without_fresh_critic(authors_files, tmp_path):
  _, path = authors_files[64]
  workdir = tmp_path / "run"
  assert _import(path, workdir).returncode == 0
  # sample.py and the walks use it unchanged.
  walk = tiny_run.run(
      "sample.py", f"--workdir={workdir}", "--label=dandelion,marigold", "--interpolate=1,2"
  )
  assert walk.returncode == 0, walk.stderr[-2000:]
  config = tiny_config.load_config_file(tiny_config.REPO / "configs" / "cwgan128.py")
  config.data.update(source="synthetic", image_size=64, synthetic_num_per_class=4)
  config.data.cache_dir = str(tmp_path / "cache")
  config.train.num_steps = import_torch.IMPORTED_STEP  # nothing left to train: restore only
  with pytest.raises(checkpointing.CheckpointError, match="--config.train.fresh_critic=True"):
    train_lib.train_and_evaluate(config, str(workdir))
  config.train.fresh_critic = True
  state = train_lib.train_and_evaluate(config, str(workdir))
  assert int(state.step) == import_torch.IMPORTED_STEP
  # A second import into the same workdir is refused and overwrites nothing.
  again = _import(path, workdir)
  assert again.returncode != 0 and "is a folder that is not empty" in again.stderr


def _damaged(g, change):
  state_dict = dict(g.state_dict())
  change(state_dict)
  return {"model_state_dict": state_dict}


def _nan_then_inf(state_dict):
  """A NaN in an early weight and an infinity in a later running variance (the first is named)."""
  weight = state_dict["gen.2.0.weight"].clone()
  weight[0, 0, 0, 0] = float("nan")
  variance = state_dict["gen.14.1.running_var"].clone()
  variance[0] = float("inf")
  state_dict.update({"gen.2.0.weight": weight, "gen.14.1.running_var": variance})


class _NotATensor:
  pass


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda g, p: p.write_text("not a pickle"), "is not a PyTorch file"),
        (
            lambda g, p: torch.save({"model_state_dict": g.state_dict(), "x": _NotATensor()}, p),
            "_NotATensor to load, which torch.load(weights_only=True) refuses",
        ),
        (
            lambda g, p: torch.save(_damaged(g, lambda d: d.pop("gen.14.1.running_var")), p),
            "missing key gen.14.1.running_var (expected shape (64,)",
        ),
        (
            lambda g, p: torch.save(
                _damaged(g, lambda d: d.update({"gen.16.0.weight": torch.zeros(3)})), p
            ),
            "unexpected key gen.16.0.weight",
        ),
        (
            lambda g, p: torch.save(
                _damaged(g, lambda d: d.update({"gen.2.0.weight": torch.zeros(128, 256, 5, 5)})),
                p,
            ),
            "gen.2.0.weight has shape (128, 256, 5, 5), the authors' 128×128 layout expects "
            "(128, 256, 3, 3)",
        ),
        (lambda g, p: torch.save({"model_state_dict": {"w": torch.zeros(2)}}, p), "none of its"),
        (
            lambda g, p: torch.save(_damaged(g, _nan_then_inf), p),
            "holds 1 non-finite value(s) (NaN or infinity) in gen.2.0.weight",
        ),
        (lambda g, p: None, "no file"),
        (lambda g, p: torch.save({"model_state_dict": g.state_dict()}, p), "cannot create"),
    ],
)
def test_bad_files_are_one_line_errors(authors_files, tmp_path, make, message):
  g, _ = authors_files[128]
  path = tmp_path / "bad.pt"
  make(g, path)
  workdir = "/proc/forbidden/run" if message == "cannot create" else tmp_path / "run"
  result = _import(path, workdir)
  assert result.returncode != 0
  assert "Traceback" not in result.stderr
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith("error: ") and message in last, last
  assert not (tmp_path / "run" / "checkpoints").exists() or not any(
      (tmp_path / "run" / "checkpoints").iterdir()
  )


def test_without_torch_the_command_says_how_to_install_it(authors_files, monkeypatch):
  _, path = authors_files[64]
  monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
  with pytest.raises(import_torch.TorchImportError, match=r'pip install -e "\.\[torch\]"'):
    import_torch.read_state_dict(str(path))
