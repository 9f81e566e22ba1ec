r"""Evaluation of a trained run: class consistency, distances to the real images, artefacts.

  python -m flowergan.evaluate --workdir=runs/demo [--step=N] [--no_ema] [--num_per_class=N]

Metrics (one line per evaluation appended to `workdir/metrics.jsonl`, a table printed):

* **Class consistency.** A small CNN (`flowergan.classifier`) trained on the run's own real
  training images (cached in `workdir/eval/classifier.msgpack` with the data fingerprint and its
  settings; retrained when either changes). `classifier_holdout_accuracy`: its accuracy on the
  held-out real images. `class_consistency/<class>`: the fraction of generated images of that
  label it assigns to that label; `class_consistency_mean` their mean.
* **Fréchet distance and KID in that classifier's feature space** (128-d pooled features)
  between generated and real images, per class (`fd/<class>`, `kid/<class>`,
  `kid_std/<class>`) and over all classes (`fd`, `kid`, `kid_std`). They are not FID/KID on
  Inception features: compare them between runs on the same data only. FD is biased by the
  sample count (few real images per class give a large floor); KID is unbiased, so prefer it
  for small sets. `kid` is the mean of the per-class KIDs (±: the std over random subsets). `fd_real_halves` is the FD between two random halves of the real set: the
  floor that sampling noise alone gives.
* **SWD** (Karras et al. 2018, ×10³) between generated and real images per Laplacian level
  (`swd_<res>`) and `swd_mean`; `swd_real_halves_<res>` / `swd_real_halves_mean` between two
  halves of the real set, the reference.
* **Checkerboard score** (share of spectral energy at Nyquist) of the generated images
  (`checkerboard`) and of the real images (`checkerboard_real`).

No TensorFlow is imported here except by the CLI, lazily, to load the real images with the
run's own data config; `evaluate()` takes the real images as arrays.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import jax
import ml_collections
import numpy as np

from flowergan import errors
from flowergan import classifier as clf
from flowergan import checkpointing, metrics, sampling
from flowergan.eval_config import default_eval_config

METRICS_FILE = "metrics.jsonl"
CLASSIFIER_FILE = os.path.join("eval", "classifier.msgpack")


def eval_config_of(config) -> ml_collections.ConfigDict:
  """`config.eval` completed with the defaults (older checkpoints have no eval block)."""
  return _complete(config.get("eval") if config is not None else None)


def _complete(eval_config) -> ml_collections.ConfigDict:
  out = default_eval_config()
  if eval_config is not None:
    out.update(dict(eval_config))
  return out


class EvaluationError(errors.FlowerganError):
  """Real images that do not fit the model (one-line message)."""


def _to_model_range(images) -> np.ndarray:
  """uint8 [0, 255] → float32 [-1, 1]; floats are taken as already in [-1, 1]."""
  x = np.asarray(images)
  if x.dtype == np.uint8:
    return x.astype(np.float32) / 127.5 - 1.0
  return x.astype(np.float32)


def _classifier_settings(eval_config, num_classes: int, image_size: int) -> dict:
  return {
      "steps": int(eval_config.classifier_steps),
      "batch_size": int(eval_config.classifier_batch_size),
      "learning_rate": float(eval_config.classifier_learning_rate),
      "holdout": float(eval_config.classifier_holdout),
      "seed": int(eval_config.classifier_seed),
      "widths": list(clf.DEFAULT_WIDTHS),
      "num_classes": int(num_classes),
      "image_size": int(image_size),
  }


def get_classifier(
    real_images, real_labels, num_classes: int, eval_config, cache_path: str | None = None
) -> tuple[dict, dict]:
  """The classifier of these real images: from `cache_path` when it was trained on the same data
  (fingerprint) with the same settings, else trained now (and cached). Returns (params, info);
  info has holdout_accuracy, train_accuracy, fingerprint and `cached` (reused or not)."""
  real_images = np.asarray(real_images)
  labels = np.asarray(real_labels, np.int32)
  fingerprint = clf.data_fingerprint(real_images, labels)
  settings = json.dumps(
      _classifier_settings(eval_config, num_classes, real_images.shape[1]), sort_keys=True
  )
  if cache_path and os.path.exists(cache_path):
    try:
      params, meta = clf.load_classifier(cache_path)
    except Exception:  # pylint: disable=broad-except  # unreadable cache: retrain
      meta = {}
    if meta.get("fingerprint") == fingerprint and meta.get("settings") == settings:
      return params, {**meta, "cached": True}
  params, info = clf.train_classifier(
      _to_model_range(real_images),
      labels,
      num_classes,
      steps=eval_config.classifier_steps,
      batch_size=eval_config.classifier_batch_size,
      seed=eval_config.classifier_seed,
      learning_rate=eval_config.classifier_learning_rate,
      holdout_fraction=eval_config.classifier_holdout,
  )
  meta = {
      "fingerprint": fingerprint,
      "settings": settings,
      "holdout_accuracy": float(info["holdout_accuracy"]),
      "train_accuracy": float(info["train_accuracy"]),
      "num_train": int(info["num_train"]),
      "num_holdout": int(info["num_holdout"]),
      "image_size": int(real_images.shape[1]),
  }
  if cache_path:
    clf.save_classifier(cache_path, params, meta)
  return params, {**meta, "cached": False}


def _halves(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  order = np.random.default_rng(seed).permutation(n)
  return np.sort(order[: n // 2]), np.sort(order[n // 2 :])


def evaluate(
    model: str | checkpointing.TrainedModel,
    real_images,
    real_labels,
    class_names,
    *,
    eval_config=None,
    use_ema: bool = True,
    workdir: str | None = None,
    seed: int | None = None,
    write: bool = True,
) -> dict[str, Any]:
  """Evaluates a trained generator against the real images; returns a flat dict of scalars.

  Args:
    model: a workdir (its latest checkpoint is loaded) or a `checkpointing.TrainedModel`.
    real_images: uint8 (N, S, S, 3) as `input_pipeline.load_images` returns (or floats in
      [-1, 1]); real_labels: int (N,); class_names: the label order (must match the model's).
    eval_config: `config.eval` fields (default: the model config's own, else the defaults).
    use_ema: evaluate the EMA generator (what sampling uses) or the raw one.
    workdir: where the classifier cache and metrics.jsonl live (default: `model` if a path).
    seed: noise seed of the generated images (default eval_config.seed).
    write: append the result to `workdir/metrics.jsonl`.
  """
  if isinstance(model, (str, os.PathLike)):
    workdir = workdir or os.fspath(model)
    model = checkpointing.load_trained(workdir)
  eval_config = _complete(eval_config) if eval_config is not None else eval_config_of(model.config)
  class_names = list(class_names)
  if class_names != list(model.class_names):
    raise EvaluationError(
        f"real images have classes {class_names}, the model "
        f"{list(model.class_names)}: load the run's own data."
    )
  real = _to_model_range(real_images)
  real_labels = np.asarray(real_labels, np.int32)
  size = model.gan.generator.image_size
  if real.ndim != 4 or real.shape[1:] != (size, size, 3) or len(real) != len(real_labels):
    raise EvaluationError(
        f"real images {real.shape} / labels {real_labels.shape} do not fit "
        f"the model's {size}×{size} RGB images."
    )
  missing = [n for i, n in enumerate(class_names) if not np.any(real_labels == i)]
  if missing:
    raise EvaluationError(f"no real images of class(es) {missing}.")
  seed = int(eval_config.seed if seed is None else seed)
  start = time.perf_counter()
  k, n = len(class_names), int(eval_config.num_per_class)

  # Generated images, from host copies of the weights: this runs on one local device even when
  # the training state is spread over a multi-host mesh.
  params, batch_stats = jax.device_get(model.variables(use_ema=use_ema))
  gen_labels = np.repeat(np.arange(k, dtype=np.int32), n)
  generated = (
      sampling.generate(
          model.gan,
          params,
          batch_stats,
          gen_labels,
          seed=seed,
          batch_size=int(eval_config.batch_size),
      )
      * 2.0
      - 1.0
  )

  cache = os.path.join(workdir, CLASSIFIER_FILE) if workdir else None
  clf_params, clf_info = get_classifier(real_images, real_labels, k, eval_config, cache)
  gen_logits, gen_feats = clf.predict(clf_params, generated, int(eval_config.batch_size))
  _, real_feats = clf.predict(clf_params, real, int(eval_config.batch_size))
  gen_pred = np.argmax(gen_logits, axis=-1)

  def kid(a, b):
    return metrics.kernel_inception_distance(
        a,
        b,
        num_subsets=int(eval_config.kid_subsets),
        subset_size=int(eval_config.kid_subset_size),
        seed=seed,
    )

  out: dict[str, Any] = {
      "step": int(model.step),
      "use_ema": bool(use_ema),
      "seed": seed,
      "num_generated_per_class": n,
      "num_real": int(len(real)),
      "classifier_holdout_accuracy": float(clf_info["holdout_accuracy"]),
      "classifier_train_accuracy": float(clf_info["train_accuracy"]),
  }
  for i, name in enumerate(class_names):
    out[f"class_consistency/{name}"] = float(np.mean(gen_pred[gen_labels == i] == i))
  out["class_consistency_mean"] = float(
      np.mean([out[f"class_consistency/{name}"] for name in class_names])
  )
  for i, name in enumerate(class_names):
    g, r = gen_feats[gen_labels == i], real_feats[real_labels == i]
    out[f"fd/{name}"] = metrics.frechet_distance(g, r)
    out[f"kid/{name}"], out[f"kid_std/{name}"] = kid(g, r)
  out["fd"] = metrics.frechet_distance(gen_feats, real_feats)
  # Not KID of the pooled sets: both are class-stratified (equal counts per label), which the
  # unbiased estimator does not assume; pooled, it comes out below zero by about the
  # between-class feature variance / subset size. The mean over classes has no such bias.
  out["kid"] = float(np.mean([out[f"kid/{name}"] for name in class_names]))
  out["kid_std"] = float(np.sqrt(np.sum([out[f"kid_std/{name}"] ** 2 for name in class_names])) / k)
  a, b = _halves(len(real), seed)
  out["fd_real_halves"] = metrics.frechet_distance(real_feats[a], real_feats[b])

  def swd(x, y):
    return metrics.sliced_wasserstein_distance(
        x, y, nhoods_per_image=int(eval_config.swd_nhoods_per_image), seed=seed
    )

  out.update(swd(generated, real))
  out.update(
      {
          k_.replace("swd_", "swd_real_halves_"): v
          for k_, v in swd(real[a], real[b[: len(a)]]).items()
      }
  )
  out["checkerboard"] = metrics.checkerboard_score(generated)
  out["checkerboard_real"] = metrics.checkerboard_score(real)
  out["eval_seconds"] = time.perf_counter() - start
  out["classifier_cached"] = bool(clf_info["cached"])

  if write and workdir:
    path = os.path.join(workdir, METRICS_FILE)
    os.makedirs(workdir, exist_ok=True)
    with open(path, "a") as f:
      f.write(json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S"), **out}) + "\n")
  return out


_NOT_SCALARS = ("step", "use_ema", "seed", "classifier_cached")


def scalars(results: dict) -> dict[str, float]:
  """The metric values of `evaluate`'s result, named `eval/...` for TensorBoard."""
  return {f"eval/{k}": float(v) for k, v in results.items() if k not in _NOT_SCALARS}


def format_table(results: dict, class_names) -> str:
  """A readable table of `evaluate`'s result."""
  r = results
  names = list(class_names)
  kid = lambda m, s: f"{m * 1e3:.2f} ± {s * 1e3:.2f}"
  rows = [
      ["", *names, "all"],
      [
          "class consistency",
          *(f"{r[f'class_consistency/{n}']:.3f}" for n in names),
          f"{r['class_consistency_mean']:.3f}",
      ],
      ["FD (classifier features)", *(f"{r[f'fd/{n}']:.3f}" for n in names), f"{r['fd']:.3f}"],
      [
          "KID ×10³",
          *(kid(r[f"kid/{n}"], r[f"kid_std/{n}"]) for n in names),
          kid(r["kid"], r["kid_std"]),
      ],
  ]
  widths = [max(len(row[i]) for row in rows) + (0 if i == 0 else 3) for i in range(len(rows[0]))]
  table = [
      row[0].ljust(widths[0]) + "".join(c.rjust(w) for c, w in zip(row[1:], widths[1:]))
      for row in rows
  ]
  res = sorted((int(k[4:]) for k in r if k.startswith("swd_") and k[4:].isdigit()), reverse=True)
  return "\n".join(
      [
          f"step {r['step']} ({'EMA' if r['use_ema'] else 'raw'} generator), "
          f"{r['num_generated_per_class']} generated per class, {r['num_real']} real, "
          f"seed {r['seed']}",
          f"classifier accuracy on held-out real images: {r['classifier_holdout_accuracy']:.3f}",
          *table,
          "(FD 'all': pooled over classes; KID 'all': mean of the classes' KIDs)",
          f"FD real half vs half (floor): {r['fd_real_halves']:.3f}",
          "SWD ×10³ per level: "
          + ", ".join(f"{s}px {r[f'swd_{s}']:.2f}" for s in res)
          + f", mean {r['swd_mean']:.2f}  (real half vs half: mean "
          f"{r['swd_real_halves_mean']:.2f})",
          f"checkerboard score: generated {r['checkerboard']:.4f}, real {r['checkerboard_real']:.4f}",
      ]
  )


# --------------------------------------------------------------------------------- the CLI


def _main(argv):
  import sys

  from absl import app, flags, logging

  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  if not f["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  try:
    model = checkpointing.load_trained(f.workdir, f.step)
    eval_config = eval_config_of(model.config)
    for name in ("num_per_class", "seed"):
      if f[name].value is not None:
        eval_config[name] = f[name].value
    from flowergan import input_pipeline  # TensorFlow: only here, to read the run's data

    try:
      images, labels, class_names = input_pipeline.load_images(model.config.data)
    except input_pipeline.DataError as e:
      raise EvaluationError(f"cannot load the run's real images ({e})") from None
    results = evaluate(
        model,
        images,
        labels,
        class_names,
        eval_config=eval_config,
        use_ema=not f.no_ema,
        workdir=f.workdir,
    )
  except errors.FlowerganError as e:
    sys.exit(f"error: {e}")
  print(format_table(results, class_names))
  print(f"appended to {os.path.join(f.workdir, METRICS_FILE)}")


def main():
  from absl import app, flags

  flags.DEFINE_string("workdir", "runs/cwgan128", "Run directory of train.py.")
  flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
  flags.DEFINE_bool("no_ema", False, "Evaluate the raw generator weights, not their EMA.")
  flags.DEFINE_integer(
      "num_per_class",
      None,
      "Generated images per class " "(default: the run's config.eval.num_per_class).",
  )
  flags.DEFINE_integer("seed", None, "Noise seed (default: config.eval.seed).")
  app.run(_main)


if __name__ == "__main__":
  main()
