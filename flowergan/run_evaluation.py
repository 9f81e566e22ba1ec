"""The evaluation of a run's checkpoint against the run's own real images: `python evaluate.py`.

No TensorFlow is imported here except by `evaluate_run`, lazily, to load the real images with
the run's own data config. A checkpoint's config says which images to read, never where to
write: `evaluate_run` renders synthetic data into its own `cache_dir`, not into the stored
`data.cache_dir` (checkpoints come from other people).
"""

from __future__ import annotations

from typing import Any

import ml_collections

from flowergan import default_config, evaluate, inception_cache, sampling, trained

# Generated images per class: KID compares subsets of at least 2; at most one sampling request.
MIN_PER_CLASS, MAX_PER_CLASS = 2, sampling.MAX_IMAGES


def data_config_to_read(stored_config, cache_dir: str) -> ml_collections.ConfigDict:
  """A copy of a checkpoint's `data` config whose writable location is the user's own.

  The stored `data.cache_dir` is where the training machine rendered synthetic data; taken
  from an untrusted checkpoint it could point anywhere, so the current `cache_dir` replaces it.
  """
  data = ml_collections.ConfigDict(stored_config.data.to_dict())
  data.cache_dir = cache_dir
  return data


def evaluate_run(
    workdir: str,
    *,
    step: int | str | None = None,
    cache_dir: str = default_config.CACHE_DIR,
    num_per_class: int | None = None,
    seed: int | None = None,
    use_ema: bool = True,
    write: bool = True,
    inception_weights: str | None = None,
) -> tuple[dict[str, Any], list[str]]:
  """`evaluate.evaluate` of a workdir's checkpoint against the run's own real images (what `python
  evaluate.py` does); appends to `workdir/metrics.jsonl` if `write` (evaluate.py appends
  itself, after printing). Returns the results and class names.

  The flags, and that the workdir can take the classifier cache and the results (`write` or
  not), are checked before anything is computed. The real images are read with the
  checkpoint's data config, TensorFlow imported only now; synthetic data are rendered into
  `cache_dir`, never into the checkpoint's stored one. `inception_weights` (the `--inception`
  flag) overrides `config.eval.inception_weights`; the weights are loaded before the model and
  images, so that a missing file is one line at once. A stored path that is not on this machine
  (a run trained elsewhere) leaves the Inception metrics out, with a warning.
  """
  if num_per_class is not None and not MIN_PER_CLASS <= num_per_class <= MAX_PER_CLASS:
    raise evaluate.EvaluationError(
        f"--num_per_class must be between {MIN_PER_CLASS} (KID compares pairs) and "
        f"{MAX_PER_CLASS} (the generated images are held in memory), got {num_per_class}."
    )
  network = None
  if inception_weights:
    network = inception_cache.load_inception(inception_weights, cache_dir)
  model = trained.load_trained(workdir, step)
  evaluate.check_results_writable(workdir)
  eval_config = evaluate.eval_config_of(model.config)
  for name, value in (("num_per_class", num_per_class), ("seed", seed)):
    if value is not None:
      eval_config[name] = value
  if network is None:
    network = inception_cache.stored_inception(eval_config, cache_dir)
  from flowergan import data_errors, data_sources  # PIL; TensorFlow only for a TFDS source

  try:
    images, labels, class_names = data_sources.load_images(
        data_config_to_read(model.config, cache_dir)
    )
  except data_errors.DataError as e:
    raise evaluate.EvaluationError(f"cannot load the run's real images ({e})") from None
  results = evaluate.evaluate(
      model,
      images,
      labels,
      class_names,
      eval_config=eval_config,
      use_ema=use_ema,
      workdir=workdir,
      write=write,
      inception_network=network,
      cache_dir=cache_dir,
  )
  return results, class_names
