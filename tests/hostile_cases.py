"""The hostile matrix of tests/test_hostile.py: every command × what it writes × each hostile
destination, and every command × what it reads × each damage.

A new command or output is one row: one `Output` (how the command is called so that it writes
a given path) or one `Input` (how it is called so that it reads a given file). The kinds and
damages are applied by the test to every row.

Commands run in this process (`run_command`): each entry point's `main` through `cli.run`, with
its absl flags swapped in (the entry points define flags of the same names: `workdir`, `out`, …),
the console captured at the file-descriptor level, and `SystemExit` turned into an exit status as
Python's own exit would. A command that blocks (a FIFO opened for writing) is stopped by an alarm
and fails its row.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
import pathlib
import shutil
import signal
import stat
import subprocess
import sys
import traceback
from collections.abc import Callable

import numpy as np
from absl import flags, logging

from flowergan import cli
from tests import tiny_config

REPO = tiny_config.REPO
ROW_TIMEOUT_S = 60


# ------------------------------------------------------------------------------- the commands


@dataclasses.dataclass(frozen=True)
class Command:
  """An entry point: a script of the repository (`train.py`) or a module (`flowergan.fid`)."""

  name: str
  positional: tuple[str, ...] = ()


TRAIN = Command("train.py")
SAMPLE = Command("sample.py")
EVALUATE = Command("evaluate.py")
IMPORT_TORCH = Command("import_torch.py", ("FILE.pt",))
EXPORT = Command("flowergan.export")
FID = Command("flowergan.fid", ("DIR_A", "DIR_B"))


def _load_main(command: Command) -> Callable[[list[str]], None]:
  """Imports the entry point (defining its flags) and returns its `main(argv)`."""
  if command.name.endswith(".py"):
    spec = importlib.util.spec_from_file_location(
        "hostile_" + command.name.removesuffix(".py"), REPO / command.name
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main
  module = importlib.import_module(command.name)
  defined = module._define_flags()  # pylint: disable=protected-access
  if command is FID:
    return module.make_main(defined)
  return lambda argv: module.main(argv, *defined)


_MAINS: dict[str, tuple[Callable, dict]] = {}  # command → (main, its flags)
_ACTIVE: list[str | None] = [None]
# Flags that other test files' imports defined (benchmarks.bench's --config, …): hidden while the
# commands run here, whose flags may share their names, and put back by `restore_process`.
_HIDDEN: dict[str, flags.Flag] = {}


def _hide_foreign_flags() -> None:
  registry = flags.FLAGS
  ours = {name for _, defined in _MAINS.values() for name in defined}
  for name in list(registry):
    module = registry.find_module_defining_flag(name) or ""
    if name not in ours and not module.startswith("absl"):
      _HIDDEN[name] = registry[name]
      delattr(registry, name)


def _activate(command: Command) -> Callable[[list[str]], None]:
  """The command's `main`, with exactly its flags defined (those of the last one removed)."""
  registry = flags.FLAGS
  if _ACTIVE[0] == command.name:
    return _MAINS[command.name][0]
  if _ACTIVE[0] is not None:
    for name in _MAINS[_ACTIVE[0]][1]:
      if name in registry:
        delattr(registry, name)
  _hide_foreign_flags()
  if command.name in _MAINS:
    for name, flag in _MAINS[command.name][1].items():
      registry[name] = flag
  else:
    before = set(registry)
    main = _load_main(command)
    _MAINS[command.name] = (main, {n: registry[n] for n in set(registry) - before})
  _ACTIVE[0] = command.name
  return _MAINS[command.name][0]


def restore_process(saved: dict) -> None:
  """Undoes what running commands here changed in this process (for the next test files of
  the same pytest worker): their flags, the log verbosity, the quiet console, the environment."""
  registry = flags.FLAGS
  for name in [n for n in registry if n.startswith("config.")]:
    delattr(registry, name)
  if _ACTIVE[0] is not None:
    for name in _MAINS[_ACTIVE[0]][1]:
      if name in registry:
        delattr(registry, name)
    _ACTIVE[0] = None
  for name, flag in _HIDDEN.items():
    if name not in registry:
      registry[name] = flag
  _HIDDEN.clear()
  if not saved["parsed"]:
    registry.unparse_flags()
  logging.set_verbosity(saved["verbosity"])
  cli._quiet = saved["quiet"]  # pylint: disable=protected-access
  sys.excepthook = saved["excepthook"]
  os.environ.clear()
  os.environ.update(saved["environ"])
  absl_logger = logging.get_absl_logger()
  for f in list(absl_logger.filters):
    if f not in saved["filters"]:
      absl_logger.removeFilter(f)


def process_state() -> dict:
  """What `restore_process` puts back."""
  return {
      "parsed": flags.FLAGS.is_parsed(),
      "verbosity": logging.get_verbosity(),
      "quiet": cli._quiet,  # pylint: disable=protected-access
      "excepthook": sys.excepthook,
      "environ": dict(os.environ),
      "filters": list(logging.get_absl_logger().filters),
  }


@dataclasses.dataclass
class Result:
  status: int
  stdout: str
  stderr: str


class _Timeout(BaseException):
  pass


def _alarm(signum, frame):
  del signum, frame
  raise _Timeout()


def run_command(command: Command, args: list[str], capfd) -> Result:
  """`command args` run in this process as a user's shell runs it: exit status and console."""
  main = _activate(command)
  for name in [n for n in flags.FLAGS if n.startswith("config.")]:
    delattr(flags.FLAGS, name)  # ml_collections defines one per override at each parse
  flags.FLAGS.unparse_flags()
  saved_argv, sys.argv = sys.argv, [command.name, *args]
  saved_term = signal.getsignal(signal.SIGTERM)
  saved_alarm = signal.signal(signal.SIGALRM, _alarm)
  capfd.readouterr()
  # absl's handler keeps the stream it was made with (an earlier test's capture): the console
  # of this command is today's sys.stderr.
  logging.get_absl_handler().python_handler.stream = sys.stderr
  extra = ""
  signal.alarm(ROW_TIMEOUT_S)
  try:
    cli.run(main, positional=command.positional)
    status = 0
  except SystemExit as e:
    if isinstance(e.code, str):
      extra, status = e.code + "\n", 1
    else:
      status = 0 if e.code is None else int(e.code)
  except _Timeout:
    extra, status = f"TIMEOUT: still running after {ROW_TIMEOUT_S} s\n", -1
  except BaseException:  # pylint: disable=broad-except  # what Python would print at exit
    extra, status = traceback.format_exc(), 1
  finally:
    signal.alarm(0)
    signal.signal(signal.SIGALRM, saved_alarm)
    signal.signal(signal.SIGTERM, saved_term)
    sys.argv = saved_argv
  out, err = capfd.readouterr()
  return Result(status, out, err + extra)


# ------------------------------------------------------------------------------- the place


@dataclasses.dataclass
class Place:
  """A row's folders: `root` (everything the row may touch), `workdir` (a copy of the tiny
  run), `outside` (where links lead: nothing there may change) and the files rows read."""

  root: pathlib.Path
  workdir: pathlib.Path
  outside: pathlib.Path
  files: dict[str, pathlib.Path]

  @property
  def cache(self) -> str:
    return str(self.root / "cache")


# ------------------------------------------------------------------------------- outputs


@dataclasses.dataclass(frozen=True)
class Output:
  """One thing a command writes: `args(place)` makes it write `target(place)`."""

  id: str
  command: Command
  args: Callable[[Place], list[str]]
  target: Callable[[Place], pathlib.Path]
  folder: bool = False  # a folder output (refuses a non-empty folder) or a file
  kinds: tuple[str, ...] | None = None  # default: FILE_KINDS or FOLDER_KINDS


FILE_KINDS = ("fifo", "link_out", "directory", "read_only")
FOLDER_KINDS = ("fifo", "link_out", "non_empty", "read_only")


def _w(p: Place) -> str:
  return f"--workdir={p.workdir}"


OUTPUTS = [
    Output(
        "sample_grid",
        SAMPLE,
        lambda p: [_w(p), "--num=1", f"--out={p.root / 'out' / 'grid.png'}"],
        lambda p: p.root / "out" / "grid.png",
    ),
    Output(
        # The run's samples folder holds many files by design: a link out of the workdir is
        # refused, a non-empty one is not.
        "sample_default_samples",
        SAMPLE,
        lambda p: [_w(p), "--num=1"],
        lambda p: p.workdir / "samples",
        folder=True,
        kinds=("fifo", "link_out", "read_only"),
    ),
    Output(
        "sample_default_file",
        SAMPLE,
        lambda p: [_w(p), "--num=1", "--label=marigold", "--seed=3"],
        lambda p: p.workdir / "samples" / "sample_marigold_seed3.png",
    ),
    Output(
        # A folder of single PNGs: "other files in it are kept" (docs/reliability.md).
        "sample_png_folder",
        SAMPLE,
        lambda p: [_w(p), "--num=1", f"--out={p.root / 'pngs'}"],
        lambda p: p.root / "pngs",
        folder=True,
        kinds=("fifo", "link_out", "read_only"),
    ),
    Output(
        "sample_save_z",
        SAMPLE,
        lambda p: [_w(p), "--num=1", f"--out={p.root / 'g.png'}", f"--save_z={p.root / 'z.npy'}"],
        lambda p: p.root / "z.npy",
    ),
    Output(
        "sample_walk_png",
        SAMPLE,
        lambda p: [_w(p), "--interpolate=1,2", "--frames=2", f"--out={p.root / 'walk.png'}"],
        lambda p: p.root / "walk.png",
    ),
    Output(
        "sample_walk_gif",
        SAMPLE,
        lambda p: [_w(p), "--interpolate=1,2", "--frames=2", f"--out={p.root / 'walk.png'}"],
        lambda p: p.root / "walk.gif",
    ),
    Output(
        "sample_dataset",
        SAMPLE,
        lambda p: [_w(p), f"--dataset={p.root / 'data'}", "--num_per_class=1"],
        lambda p: p.root / "data",
        folder=True,
    ),
    Output(
        "evaluate_metrics_jsonl",
        EVALUATE,
        lambda p: [_w(p), f"--cache_dir={p.cache}", "--num_per_class=2"],
        lambda p: p.workdir / "metrics.jsonl",
    ),
    Output(
        "train_metrics_jsonl",
        TRAIN,
        lambda p: [
            f"--config={tiny_config.CONFIG_FILE}:tiny",
            "--config.data.image_size=16",
            "--config.train.num_steps=3",
            f"--config.data.cache_dir={p.cache}",
            _w(p),
        ],
        lambda p: p.workdir / "metrics.jsonl",
    ),
    Output(
        "import_torch_workdir",
        IMPORT_TORCH,
        lambda p: [str(p.files["authors.pt"]), f"--workdir={p.root / 'imported'}"],
        lambda p: p.root / "imported",
        folder=True,
        # A workdir that is itself a link (to a larger disk) is the user's choice: the links
        # refused are those inside it.
        kinds=("fifo", "non_empty", "read_only"),
    ),
    *(
        Output(
            f"export_{fmt}",
            EXPORT,
            lambda p, fmt=fmt: [_w(p), f"--format={fmt}", f"--out={p.root / ('gen.' + fmt)}"],
            lambda p, fmt=fmt: p.root / ("gen." + fmt),
        )
        for fmt in ("onnx", "stablehlo")
    ),
    Output(
        "export_stablehlo_json",
        EXPORT,
        lambda p: [_w(p), "--format=stablehlo", f"--out={p.root / 'gen.jax'}"],
        lambda p: p.root / "gen.jax.json",
    ),
    Output(
        "export_web",
        EXPORT,
        lambda p: [_w(p), "--format=web", f"--out={p.root / 'site'}"],
        lambda p: p.root / "site",
        folder=True,
    ),
]


def output_rows() -> list[tuple[Output, str]]:
  return [(o, k) for o in OUTPUTS for k in (o.kinds or (FOLDER_KINDS if o.folder else FILE_KINDS))]


def make_destination(place: Place, output: Output, kind: str) -> None:
  """Puts the hostile `kind` at the output's path (or, read-only, on its folder)."""
  target = output.target(place)
  target.parent.mkdir(parents=True, exist_ok=True)
  if target.is_symlink() or target.is_file():
    target.unlink()
  elif target.is_dir():
    shutil.rmtree(target)
  if kind == "fifo":
    os.mkfifo(target)
  elif kind == "link_out":
    victim = place.outside / ("victim_dir" if output.folder else "victim.txt")
    if output.folder:
      victim.mkdir(exist_ok=True)
    else:
      victim.write_text("the user's own file\n")
    target.symlink_to(victim)
  elif kind == "non_empty":
    target.mkdir()
    (target / "index.html").write_text("the user's own page\n")
  elif kind == "directory":
    target.mkdir()
    (target / "keep.txt").write_text("the user's own file\n")
  elif kind == "read_only":
    make_read_only(target.parent)
  else:
    raise ValueError(kind)


def make_read_only(folder: pathlib.Path) -> None:
  """Makes `folder` read-only, undone by `undo_read_only`.

  chmod does not stop root, so as root the folder is also bind-mounted read-only over itself,
  which needs the mount privilege root usually has (the caller checks that writes fail).
  """
  folder.chmod(0o555)
  if os.geteuid() != 0:
    return
  mounted = _run_quietly("mount", "--bind", str(folder), str(folder))
  if mounted and not _run_quietly("mount", "-o", "remount,bind,ro", str(folder)):
    _run_quietly("umount", str(folder))


def undo_read_only(folder: pathlib.Path) -> None:
  if os.geteuid() == 0:  # os.path.ismount misses a bind mount of the same filesystem
    _run_quietly("umount", str(folder))
  folder.chmod(0o755)


def _run_quietly(*command: str) -> bool:
  try:
    return subprocess.run(command, capture_output=True, check=False).returncode == 0
  except OSError:
    return False


# ------------------------------------------------------------------------------- inputs


@dataclasses.dataclass(frozen=True)
class Input:
  """One file a command reads: `args(place, path)` makes it read `path`, a damaged copy of
  `place.files[valid]`; `nan(path)` writes a readable file holding a NaN (None: no such file)."""

  id: str
  command: Command
  valid: str
  args: Callable[[Place, pathlib.Path], list[str]]
  nan: Callable[[pathlib.Path], None] | None = None
  rebuilt: bool = False  # a cache: rebuilt with a warning (the row fails later on purpose)


DAMAGES = ("empty", "truncated", "garbage", "nan")


def _nan_npy(path: pathlib.Path) -> None:
  np.save(path, np.full((1, 10), np.nan, np.float32))


def _nan_stats(path: pathlib.Path) -> None:
  np.savez(path, mu=np.full(2048, np.nan), sigma=np.eye(2048))


def _nan_metadata(path: pathlib.Path) -> None:
  metadata = json.loads(path.read_text())
  metadata["config"]["train"]["generator_lr"] = float("nan")
  path.write_text(json.dumps(metadata))  # Python writes NaN, which JSON does not have


def _nan_torch(key: str) -> Callable[[pathlib.Path], None]:
  def write(path: pathlib.Path) -> None:
    import torch  # pylint: disable=g-import-not-at-top

    obj = torch.load(path, map_location="cpu", weights_only=True)
    state = obj.get("model_state_dict", obj)
    state[key].view(-1)[0] = float("nan")
    torch.save(obj, path)

  return write


def _nan_cache(path: pathlib.Path) -> None:
  with np.load(path) as npz:
    arrays = dict(npz)
  first = sorted(arrays)[0]
  arrays[first] = np.full_like(arrays[first], np.nan)
  np.savez(path, **arrays)


def metadata_file(workdir: pathlib.Path) -> pathlib.Path:
  """The `metadata` file of the run's only checkpoint step."""
  (path,) = (workdir / "checkpoints").glob("*/metadata/metadata")
  return path


INPUTS = [
    Input(
        "sample_z_file",
        SAMPLE,
        "z.npy",
        lambda p, f: [_w(p), f"--z_file={f}", f"--out={p.root / 'g.png'}"],
        _nan_npy,
    ),
    *(
        Input(
            f"{command.name}_checkpoint_metadata",
            command,
            "metadata",
            args,
            _nan_metadata,
        )
        for command, args in (
            (SAMPLE, lambda p, f: [_w(p), "--num=1", f"--out={p.root / 'g.png'}"]),
            (SAMPLE, lambda p, f: [_w(p), f"--dataset={p.root / 'd'}", "--num_per_class=1"]),
            (EVALUATE, lambda p, f: [_w(p), f"--cache_dir={p.cache}", "--num_per_class=2"]),
            (EXPORT, lambda p, f: [_w(p), "--format=onnx", f"--out={p.root / 'g.onnx'}"]),
        )
    ),
    Input(
        "import_torch_file",
        IMPORT_TORCH,
        "authors.pt",
        lambda p, f: [str(f), f"--workdir={p.root / 'imported'}"],
        _nan_torch("gen.0.0.weight"),
    ),
    Input(
        "fid_statistics",
        FID,
        "stats.npz",
        lambda p, f: [str(f), str(p.files["stats.npz"])],
        _nan_stats,
    ),
    Input(
        "fid_image",
        FID,
        "image.png",
        lambda p, f: [str(f.parent), str(p.files["stats.npz"]), f"--inception={p.files['w.pth']}"],
    ),
    Input(
        "fid_weights",
        FID,
        "w.pth",
        lambda p, f: [str(p.root / "images"), str(p.root / "images"), f"--inception={f}"],
        _nan_torch("Conv2d_1a_3x3.conv.weight"),
    ),
    Input(
        "evaluate_inception_weights",
        EVALUATE,
        "w.pth",
        lambda p, f: [_w(p), f"--cache_dir={p.cache}", "--num_per_class=2", f"--inception={f}"],
        _nan_torch("Conv2d_1a_3x3.conv.weight"),
    ),
    Input(
        "fid_weights_cache",
        FID,
        "cache.npz",
        # A damaged statistics file stops the run right after the weights are loaded: the
        # cache is rebuilt (one warning) and the network never runs.
        lambda p, f: [
            str(p.root / "bad_stats.npz"),
            str(p.root / "images"),
            f"--inception={p.files['w.pth']}",
            f"--cache_dir={p.cache}",
        ],
        _nan_cache,
        rebuilt=True,
    ),
]


def input_rows() -> list[tuple[Input, str]]:
  return [(i, d) for i in INPUTS for d in DAMAGES if d != "nan" or i.nan is not None]


def damage(path: pathlib.Path, how: str, nan: Callable[[pathlib.Path], None] | None) -> None:
  data = path.read_bytes()
  if how == "empty":
    path.write_bytes(b"")
  elif how == "truncated":
    path.write_bytes(data[: len(data) // 2])
  elif how == "garbage":
    path.write_bytes(np.random.default_rng(0).bytes(max(64, min(len(data), 4096))))
  else:
    nan(path)


# ------------------------------------------------------------------------------- checks


def snapshot(root: pathlib.Path) -> dict[str, str]:
  """Relative path → what it is: a file's sha256, a link's target, 'dir', 'fifo'."""
  out = {}
  for base, dirs, names in os.walk(root):
    for name in dirs + names:
      path = os.path.join(base, name)
      mode = os.lstat(path).st_mode
      if stat.S_ISLNK(mode):
        kind = "link->" + os.readlink(path)
      elif stat.S_ISREG(mode):
        with open(path, "rb") as f:
          kind = hashlib.sha256(f.read()).hexdigest()
      elif stat.S_ISDIR(mode):
        kind = "dir"
      else:
        kind = "fifo" if stat.S_ISFIFO(mode) else "special"
      out[os.path.relpath(path, root)] = kind
  return out


def console_problems(result: Result) -> list[str]:
  """What breaks 'one line, no traceback' in a refused command's console."""
  problems = []
  err = result.stderr
  for marker in ("Traceback", "Exception ignored", "TIMEOUT"):
    if marker in err:
      problems.append(f"{marker} in stderr")
  errors = [line for line in err.splitlines() if line.startswith("error: ")]
  if len(errors) != 1:
    problems.append(f"{len(errors)} 'error: ' lines")
  return problems
