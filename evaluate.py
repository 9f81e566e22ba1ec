r"""Evaluates a trained run: `python evaluate.py --workdir=runs/demo [--step=N] [--no_ema]
[--inception=pt_inception-2015-12-05-6726825d.pth]`.

Class consistency, FD/KID in a small classifier's feature space, SWD and a checkerboard score,
and with the Inception weights file FID/KID/precision/recall (pytorch-fid's protocol)
(`flowergan/evaluate.py` says what each measures); the table is printed and one line appended
to `workdir/metrics.jsonl`. Training runs the same evaluation at its end.

Exit status: 0 done; 1 an error (`error: <one line>`). A workdir where the results cannot be
written is refused before anything is computed; if appending fails after all, the table is
printed before the error.
"""

import os
import sys

from absl import flags

from flowergan import cli, default_config

_WORKDIR = flags.DEFINE_string("workdir", "runs/cwgan128", "Run directory of train.py.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
_NO_EMA = flags.DEFINE_bool("no_ema", False, "Evaluate the raw generator weights, not their EMA.")
_NUM_PER_CLASS = flags.DEFINE_integer(
    "num_per_class",
    None,
    "Generated images per class, 2 to 4096 (default: the run's config.eval.num_per_class).",
)
_SEED = flags.DEFINE_integer("seed", None, "Noise seed (default: config.eval.seed).")
_CACHE_DIR = flags.DEFINE_string(
    "cache_dir",
    default_config.CACHE_DIR,
    "Where synthetic data is rendered (never the checkpoint's stored data.cache_dir) and the "
    "Inception weights are cached.",
)
_INCEPTION = flags.DEFINE_string(
    "inception",
    None,
    "The FID Inception weights file pt_inception-2015-12-05-6726825d.pth: adds FID, KID, "
    "precision and recall on its features (default: the run's config.eval.inception_weights).",
)


def main(argv):
  del argv  # cli.run refuses arguments that are not flags
  cli.quiet_logs()
  # After the log settings: these import JAX.
  from flowergan import config_checks, errors, evaluate, report, run_evaluation

  try:
    if _SEED.value is not None:
      config_checks.check_seed(_SEED.value, "--seed")
    results, class_names = run_evaluation.evaluate_run(
        _WORKDIR.value,
        step=_STEP.value,
        cache_dir=_CACHE_DIR.value,
        num_per_class=_NUM_PER_CLASS.value,
        seed=_SEED.value,
        use_ema=not _NO_EMA.value,
        write=False,
        inception_weights=_INCEPTION.value,
    )
    print(report.format_table(results, class_names))  # shown even if the append fails
    evaluate.append_metrics(_WORKDIR.value, results)
  except errors.FlowerganError as e:
    sys.exit(f"error: {e}")
  print(f"appended to {os.path.join(_WORKDIR.value, evaluate.METRICS_FILE)}")


if __name__ == "__main__":
  cli.run(main)
