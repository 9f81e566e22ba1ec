r"""Evaluation of a trained run: class consistency, distances to the real images, artefacts.

  python evaluate.py --workdir=runs/demo [--step=N] [--no_ema] [--num_per_class=N]
      [--cache_dir=~/.cache/flowergan]

Metrics (one line per evaluation appended to `workdir/metrics.jsonl`, a table printed):

* **Class consistency.** A small CNN (`flowergan.classifier`) trained on the run's own real
  training images (`flowergan.classifier_cache`: cached in `workdir/eval/classifier.msgpack`
  with the data fingerprint and its settings; retrained when either changes).
  `classifier_holdout_accuracy`: its accuracy on the held-out real images.
  `class_consistency/<class>`: the fraction of generated images of that label it assigns to
  that label; `class_consistency_mean` their mean. This is GAN-test (Shmelkov et al. 2018):
  high when the generated images look like their class.
* **The probe** (`flowergan.probe`). `probe_holdout_accuracy`: a logistic regression on raw
  pixels (32 px at most) trained on the same real training split, on the same holdout. A
  classifier below it sees less than the pixels show, and its metrics understate the generator
  (a warning says so).
* **GAN-train** (Shmelkov et al. 2018; Ravuri & Vinyals' classification accuracy score): the
  same classifier, same settings, trained on generated images (per class as many as the real
  training split has, or all generated if fewer), its accuracy on the held-out real images
  (`gan_train/<class>`: the share of that class's held-out images it gets right; `gan_train`
  over all). `gan_train_real/...`: the same trained on as many real images, the ceiling. It
  falls when the generator drops modes or styles of a class, which GAN-test cannot see.
* **Fréchet distance and KID in that classifier's feature space** (128-d pooled features)
  between generated and real images, per class (`fd/<class>`, `kid/<class>`,
  `kid_std/<class>`) and over all classes (`fd`, `kid`, `kid_std`). They are not FID/KID on
  Inception features: compare them between runs on the same data only. FD is biased by the
  sample count (few real images per class give a large floor); KID is unbiased, so prefer it
  for small sets. `kid` is the mean of the per-class KIDs (±: the std over random subsets).
  `fd_real_halves` is the FD between two random halves of the real set: the floor that
  sampling noise alone gives.
* **SWD** (Karras et al. 2018, ×10³) between generated and real images per Laplacian level
  (`swd_<res>`) and `swd_mean`; `swd_real_halves_<res>` / `swd_real_halves_mean` between two
  halves of the real set, the reference.
* **Checkerboard score** (share of spectral energy at Nyquist) of the generated images
  (`checkerboard`) and of the real images (`checkerboard_real`).
* **Inception metrics**, only with the weights file configured (`config.eval.inception_weights`
  or `python evaluate.py --inception=FILE`): FID, KID (`kid_std`: its std over subsets),
  precision and recall (k = 3) on the 2048-d pool3 features of the FID Inception network,
  protocol `inception_protocol` ("pytorch-fid 0.3.0"), over all images (`inception/fid`, ...)
  and per class (`inception/fid/<class>`, ...). The generated images are measured as their
  PNGs hold them (uint8). Comparable with pytorch-fid's numbers on the same images; the
  per-class FIDs are intra-class FIDs. The real images' features are cached in
  `workdir/eval/inception_real_<key>.npz`, keyed by the data fingerprint, the protocol and the
  weights file's sha256 (`flowergan.inception_cache`).

No TensorFlow is imported here: `evaluate()` takes the real images as arrays;
`flowergan.run_evaluation` loads a run's own (what `python evaluate.py` does). The table and the
TensorBoard scalars of the results are `flowergan.report`'s.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging

from flowergan import classifier, classifier_cache, default_config, errors, fid, imaging
from flowergan import inception, inception_cache, metrics, probe, sampling, storage, trained

METRICS_FILE = "metrics.jsonl"
CLASSIFIER_FILE = os.path.join("eval", "classifier.msgpack")


class EvaluationError(errors.FlowerganError):
  """Real images that do not fit the model, or a run without evaluation settings (one line)."""


def eval_config_of(config) -> ml_collections.ConfigDict:
  """A copy of `config.eval`: what the evaluation of a run trained with `config` measures."""
  if "eval" not in config:
    raise EvaluationError(
        "the run's config has no `eval` block (trained before flowergan had evaluation): pass "
        "`eval_config=flowergan.default_config.get_config().eval` to `evaluate.evaluate`."
    )
  return ml_collections.ConfigDict(config.eval.to_dict())


# ---------------------------------------------------------------- the stages of `evaluate`


def _checked_real_images(model, real_images, real_labels, class_names):
  """The real images in [-1, 1] and their int32 labels, refused if they do not fit `model`."""
  if class_names != list(model.class_names):
    raise EvaluationError(
        f"real images have classes {class_names}, the model "
        f"{list(model.class_names)}: load the run's own data."
    )
  real = classifier.to_model_range(real_images)
  real_labels = np.asarray(real_labels, np.int32)
  size = model.image_size
  if real.ndim != 4 or real.shape[1:] != (size, size, 3) or len(real) != len(real_labels):
    raise EvaluationError(
        f"real images {real.shape} / labels {real_labels.shape} do not fit "
        f"the model's {size}×{size} RGB images."
    )
  missing = [n for i, n in enumerate(class_names) if not np.any(real_labels == i)]
  if missing:
    raise EvaluationError(f"no real images of class(es) {missing}.")
  return real, real_labels


def _generate_per_class(model, num_classes: int, eval_config, seed: int, use_ema: bool):
  """`num_per_class` generated images of each class in [-1, 1], and their labels.

  The generator runs on host copies of the weights: on one local device even when the training
  state is spread over a multi-host mesh.
  """
  variables = jax.device_get(model.sampling_variables(use_ema=use_ema))
  labels = np.repeat(np.arange(num_classes, dtype=np.int32), int(eval_config.num_per_class))
  images = sampling.generate(
      model.generator,
      variables,
      labels,
      z_dim=model.z_dim,
      seed=seed,
      batch_size=int(eval_config.batch_size),
  )
  return images * 2.0 - 1.0, labels


def _halves(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Two random halves of `range(n)` (sorted indices), the second one longer if `n` is odd."""
  order = np.random.default_rng(seed).permutation(n)
  return np.sort(order[: n // 2]), np.sort(order[n // 2 :])


def _class_consistency(gen_logits, gen_labels, class_names) -> dict[str, float]:
  """Per class, the share of its generated images that the classifier assigns to it."""
  gen_pred = np.argmax(gen_logits, axis=-1)
  out = {
      f"class_consistency/{name}": float(np.mean(gen_pred[gen_labels == i] == i))
      for i, name in enumerate(class_names)
  }
  out["class_consistency_mean"] = float(np.mean(list(out.values())))
  return out


def _gan_train(
    clf_params, generated, gen_labels, real, real_labels, class_names, eval_config
) -> dict[str, Any]:
  """GAN-train: the classifier trained on generated images, its accuracy on held-out real ones.

  Beside it, the same classifier trained on as many real images (per class) of the training
  split: the evaluation classifier itself when the counts match (the run's generated images
  are at least as many as its real training images), else one trained now. Both are tested on
  the real holdout, which neither saw.
  """
  k = len(class_names)
  train, holdout = classifier.split_indices(
      real_labels, eval_config.classifier_holdout, eval_config.classifier_seed
  )
  real_counts = np.bincount(real_labels[train], minlength=k)
  counts = np.minimum(real_counts, np.bincount(gen_labels, minlength=k))
  gen_idx = _first_per_class(gen_labels, counts)
  gen_params, _ = classifier_cache.train_like_evaluation(
      generated[gen_idx], gen_labels[gen_idx], k, eval_config, holdout_fraction=0.0
  )
  real_params = clf_params
  if not np.array_equal(counts, real_counts):
    real_idx = train[_first_per_class(real_labels[train], counts)]
    real_params, _ = classifier_cache.train_like_evaluation(
        real[real_idx], real_labels[real_idx], k, eval_config, holdout_fraction=0.0
    )
  out: dict[str, Any] = {"gan_train_num_images": int(counts.sum())}
  for key, params in (("gan_train", gen_params), ("gan_train_real", real_params)):
    logits, _ = classifier.predict(params, real[holdout], int(eval_config.batch_size))
    per_class, overall = classifier.per_class_accuracy(
        np.argmax(logits, axis=-1), real_labels[holdout], k
    )
    out.update({f"{key}/{name}": float(a) for name, a in zip(class_names, per_class)})
    out[key] = overall
  return out


def _first_per_class(labels: np.ndarray, counts: np.ndarray) -> np.ndarray:
  """Indices of the first `counts[c]` examples of each class c, sorted."""
  return np.sort(
      np.concatenate([np.flatnonzero(labels == c)[:n] for c, n in enumerate(counts)])
  ).astype(np.int64)


def _probe(real, real_labels, num_classes: int, eval_config, classifier_accuracy: float):
  """The probe's accuracy on the classifier's holdout; a warning if the classifier loses."""
  accuracy = probe.train_probe(
      real,
      real_labels,
      num_classes,
      holdout_fraction=eval_config.classifier_holdout,
      seed=eval_config.classifier_seed,
  )["holdout_accuracy"]
  if classifier_accuracy < accuracy:
    logging.warning(_PROBE_WARNING, classifier_accuracy, accuracy)
  return {"probe_holdout_accuracy": accuracy}


_PROBE_WARNING = (
    "the evaluation classifier (%.3f on held-out real images) loses to a logistic regression "
    "on raw pixels (%.3f): its class consistency, GAN-train and FD/KID understate the "
    "generator; train it longer (eval.classifier_steps) or on more real images."
)


def _feature_distances(
    gen_feats, gen_labels, real_feats, real_labels, class_names, halves, eval_config, seed: int
) -> dict[str, float]:
  """FD and KID between generated and real classifier features, per class and over all."""

  def kid(a, b):
    return metrics.kernel_inception_distance(
        a,
        b,
        num_subsets=int(eval_config.kid_subsets),
        subset_size=int(eval_config.kid_subset_size),
        seed=seed,
    )

  out = {}
  for i, name in enumerate(class_names):
    g, r = gen_feats[gen_labels == i], real_feats[real_labels == i]
    out[f"fd/{name}"] = metrics.frechet_distance(g, r)
    out[f"kid/{name}"], out[f"kid_std/{name}"] = kid(g, r)
  out["fd"] = metrics.frechet_distance(gen_feats, real_feats)
  # Not KID of the pooled sets: both are class-stratified (equal counts per label), which the
  # unbiased estimator does not assume; pooled, it comes out below zero by about the
  # between-class feature variance / subset size. The mean over classes has no such bias.
  k = len(class_names)
  out["kid"] = float(np.mean([out[f"kid/{name}"] for name in class_names]))
  out["kid_std"] = float(np.sqrt(np.sum([out[f"kid_std/{name}"] ** 2 for name in class_names])) / k)
  a, b = halves
  out["fd_real_halves"] = metrics.frechet_distance(real_feats[a], real_feats[b])
  return out


def _sliced_wasserstein(generated, real, halves, eval_config, seed: int) -> dict[str, float]:
  """SWD of the generated images to the real ones and, as the reference, of two real halves."""

  def swd(x, y):
    return metrics.sliced_wasserstein_distance(
        x, y, nhoods_per_image=int(eval_config.swd_nhoods_per_image), seed=seed
    )

  a, b = halves
  out = swd(generated, real)
  for key, value in swd(real[a], real[b[: len(a)]]).items():
    out[key.replace("swd_", "swd_real_halves_")] = value
  return out


def _inception_results(
    network: inception_cache.InceptionNetwork,
    generated,
    gen_labels,
    real_images,
    real_labels,
    class_names,
    eval_config,
    workdir,
) -> dict[str, Any]:
  """`inception/...` metrics of the generated images (in [-1, 1]) against the real ones.

  The generated images go in as uint8, as `sample.py` writes their PNGs; the real images'
  features come from the workdir's cache when it holds those of the same data, protocol and
  weights (written when `workdir` is given: process 0).
  """
  batch = int(eval_config.inception_batch_size)
  real = np.asarray(real_images)
  if real.dtype != np.uint8:  # floats in [-1, 1]
    real = imaging.to_uint8((real + 1.0) / 2.0)
  fingerprint = classifier_cache.data_fingerprint(real_images, real_labels)
  real_features, cached = inception_cache.real_features(network, real, fingerprint, workdir, batch)
  gen_uint8 = imaging.to_uint8((np.asarray(generated) + 1.0) / 2.0)
  gen_features = inception.extract_features(network.variables, gen_uint8, batch_size=batch)
  values = fid.inception_metrics(
      real_features,
      real_labels,
      gen_features,
      gen_labels,
      class_names,
      kid_subset_size=int(eval_config.kid_subset_size),
  )
  return {
      "inception_protocol": inception.PROTOCOL,
      "inception_weights_sha256": network.weights_sha256,
      "inception_real_cached": cached,
      **{f"inception/{k}": v for k, v in values.items()},
  }


def evaluate(
    model: str | trained.TrainedModel,
    real_images,
    real_labels,
    class_names,
    *,
    eval_config=None,
    use_ema: bool = True,
    workdir: str | None = None,
    seed: int | None = None,
    write: bool = True,
    inception_network: inception_cache.InceptionNetwork | None = None,
    cache_dir: str = default_config.CACHE_DIR,
) -> dict[str, Any]:
  """Evaluates a trained generator against the real images; returns a flat dict of scalars.

  Args:
    model: a workdir (its latest checkpoint is loaded) or a `trained.TrainedModel`.
    real_images: uint8 (N, S, S, 3) as `data_sources.load_images` returns (or floats in
      [-1, 1]).
    real_labels: int (N,).
    class_names: the label order (must match the model's).
    eval_config: every `config.eval` field (default: the model config's own `eval`).
    use_ema: evaluate the EMA generator (what sampling uses) or the raw one.
    workdir: where the classifier cache and metrics.jsonl live (default: `model` if a path).
    seed: noise seed of the generated images (default `eval_config.seed`).
    write: append the result to `workdir/metrics.jsonl`.
    inception_network: the Inception network (`inception_cache.load_inception`) for the
      `inception/...` metrics; default: loaded from `eval_config.inception_weights` when set.
    cache_dir: where `inception_cache.load_inception` caches the weights file's arrays.
  """
  if isinstance(model, (str, os.PathLike)):
    workdir = workdir or os.fspath(model)
    model = trained.load_trained(workdir)
  if eval_config is None:
    eval_config = eval_config_of(model.config)
  if workdir:
    check_results_writable(workdir, metrics_file=write)
  if inception_network is None and eval_config.inception_weights:
    inception_network = inception_cache.load_inception(eval_config.inception_weights, cache_dir)
  class_names = list(class_names)
  real, real_labels = _checked_real_images(model, real_images, real_labels, class_names)
  seed = int(eval_config.seed if seed is None else seed)
  start = time.perf_counter()
  k = len(class_names)
  generated, gen_labels = _generate_per_class(model, k, eval_config, seed, use_ema)

  cache = storage.workdir_path(workdir) / CLASSIFIER_FILE if workdir else None
  clf_params, clf_info = classifier_cache.get_classifier(
      real_images, real_labels, k, eval_config, cache
  )
  gen_logits, gen_feats = classifier.predict(clf_params, generated, int(eval_config.batch_size))
  _, real_feats = classifier.predict(clf_params, real, int(eval_config.batch_size))
  halves = _halves(len(real), seed)

  out: dict[str, Any] = {
      "step": int(model.step),
      "use_ema": bool(use_ema),
      "seed": seed,
      "num_generated_per_class": int(eval_config.num_per_class),
      "num_real": int(len(real)),
      "classifier_holdout_accuracy": float(clf_info["holdout_accuracy"]),
      "classifier_train_accuracy": float(clf_info["train_accuracy"]),
      **_probe(real, real_labels, k, eval_config, float(clf_info["holdout_accuracy"])),
      **_class_consistency(gen_logits, gen_labels, class_names),
      **_gan_train(clf_params, generated, gen_labels, real, real_labels, class_names, eval_config),
      **_feature_distances(
          gen_feats, gen_labels, real_feats, real_labels, class_names, halves, eval_config, seed
      ),
      **_sliced_wasserstein(generated, real, halves, eval_config, seed),
      "checkerboard": metrics.checkerboard_score(generated),
      "checkerboard_real": metrics.checkerboard_score(real),
  }
  if inception_network is not None:
    out.update(
        _inception_results(
            inception_network,
            generated,
            gen_labels,
            real_images,
            real_labels,
            class_names,
            eval_config,
            workdir,
        )
    )
  out["eval_seconds"] = time.perf_counter() - start
  out["classifier_cached"] = bool(clf_info["cached"])
  if write and workdir:
    append_metrics(workdir, out)
  return out


# ---------------------------------------------------------------- the results in the workdir


def check_results_writable(workdir: str | os.PathLike, *, metrics_file: bool = True) -> None:
  """Refuses, before anything is computed, a workdir where the evaluation cannot write: the
  classifier cache (`eval/`) and, with `metrics_file`, `metrics.jsonl` (appended to)."""
  root = storage.workdir_path(workdir)
  outputs = [(root / os.path.dirname(CLASSIFIER_FILE), True, False)]
  if metrics_file:
    outputs.append((root / METRICS_FILE, False, True))
  for path, folder, append in outputs:
    problem = imaging.output_problem(os.fspath(path), folder=folder, append=append)
    if problem:
      raise EvaluationError(
          f"cannot write the evaluation's results to {path}: {problem}; make the workdir "
          "writable, or evaluate a writable copy of it."
      )


def append_metrics(workdir: str | os.PathLike, results: dict[str, Any]) -> None:
  """One JSON line (with the time) appended to `workdir/metrics.jsonl` (local or `gs://`)."""
  line = json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S"), **results})
  path = storage.workdir_path(workdir) / METRICS_FILE
  try:
    storage.append_line(path, line)
  except OSError as e:
    raise EvaluationError(
        f"cannot append the evaluation's results to {path} ({e.strerror or e}): free space or "
        "make it writable, and evaluate again."
    ) from None
