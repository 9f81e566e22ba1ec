r"""Imports the authors' published PyTorch generator into a new flowergan workdir.

  python import_torch.py GANFLOWER-28_03500_c2wgan_128_generator.pt --workdir=runs/authors128
  python sample.py --workdir=runs/authors128 --label=marigold --truncation=1.5

Which files, what the checkpoint holds and why its critic is random: `flowergan/import_torch.py`.
Needs torch (`pip install -e ".[torch]"`).

Exit status: 0 done; 1 an error (`error: <one line>`).
"""

import os
import sys

from absl import app, flags
from ml_collections import config_flags

from flowergan import cli

_CONFIG = config_flags.DEFINE_config_file(
    "config",
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "cwgan128.py"),
    "Config of the imported run (its model must be the authors'); image size and classes "
    "come from the file.",
    lock_config=True,
)
_WORKDIR = flags.DEFINE_string("workdir", None, "New run directory for the imported generator.")


def main(argv):
  if len(argv) != 2:
    raise app.UsageError("usage: python import_torch.py FILE.pt --workdir=runs/authors128")
  cli.quiet_logs()
  workdir = _WORKDIR.value
  if not workdir:
    sys.exit("error: pass --workdir=runs/NAME, a new run directory for the imported generator.")
  from flowergan import errors, import_torch  # after the log settings: imports JAX

  try:
    size, directory = import_torch.import_file(argv[1], workdir, _CONFIG.value)
  except errors.FlowerganError as e:
    sys.exit(f"error: {e}")
  print(
      f"imported the authors' {size}×{size} generator from {argv[1]} into {directory} (the "
      f"critic is random: theirs was never published); sample with `python sample.py "
      f"--workdir={workdir} --label=marigold --truncation=1.5`"
  )


if __name__ == "__main__":
  cli.run(main, positional=("FILE.pt",))
