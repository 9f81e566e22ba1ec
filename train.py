r"""Trains flowergan: `python train.py --config=configs/cwgan128.py[:VARIANT] [--workdir=DIR]`.

The variants and their commands are in configs/cwgan128.py. The workdir defaults to
`runs/<variant>` (`runs/<config file stem>` without one); an existing checkpoint there is resumed.

Exit status: 0 done; 1 an error (`error: <one line>`); 3 stopped early by SIGTERM, Ctrl-C or a
preemption notice after saving a checkpoint (rerun the same command to resume).
"""

import os
import pathlib
import sys

from absl import flags, logging
from ml_collections import config_flags

from flowergan import cli

_CONFIG = config_flags.DEFINE_config_file(
    "config",
    "configs/cwgan128.py:demo",
    "Config file[:variant]; override fields as --config.train.batch_size=32.",
    lock_config=True,
)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Run directory (default: runs/<variant>, or runs/<config stem> without one)."
)
# Multi-process runs that JAX cannot detect by itself (see flowergan/distributed.py).
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0 (default: $JAX_COORDINATOR_ADDRESS)."
)
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", None, "Number of processes (default: $JAX_NUM_PROCESSES or detected)."
)
_PROCESS_ID = flags.DEFINE_integer(
    "process_id", None, "This process's id, 0..n-1 (default: $JAX_PROCESS_ID or detected)."
)
_CLUSTER_DETECTION = flags.DEFINE_string(
    "cluster_detection", "auto", "JAX's cluster detection: auto, off, or a method (mpi4py, ...)."
)


def _default_workdir(config_arg: str) -> str:
  """`runs/demo` for `configs/cwgan128.py:demo`, `runs/cwgan128` for `configs/cwgan128.py`."""
  path, _, variant = config_arg.partition(":")
  return os.path.join("runs", variant or pathlib.Path(path).stem)


def main(argv):
  del argv  # cli.run refuses arguments that are not flags
  cli.quiet_logs()
  from flowergan import distributed, errors, train  # after the log settings; keeps --help fast

  try:
    distributed.initialize(
        _COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value, _CLUSTER_DETECTION.value
    )
  except errors.FlowerganError as e:
    sys.exit(f"error: {e}")
  print(distributed.describe(), flush=True)
  workdir = _WORKDIR.value or _default_workdir(flags.FLAGS["config"].config_filename)
  logging.info("Workdir: %s", workdir)
  try:
    train.train_and_evaluate(_CONFIG.value, workdir)
  except errors.FlowerganError as e:
    sys.exit(f"error: {e}")
  except train.StoppedEarly:
    sys.exit(cli.EXIT_STOPPED_EARLY)  # the loop said where it saved; no "done"
  print(
      f"done: checkpoints and samples in {workdir}; sample with "
      f"`python sample.py --workdir={workdir} --label=all`"
  )


if __name__ == "__main__":
  cli.run(
      main,
      stopped_status=cli.EXIT_STOPPED_EARLY,
      stopped_message="{signal}: stopped before the run finished, the checkpoints saved so far "
      "are kept; rerun the same command to continue.",
  )
