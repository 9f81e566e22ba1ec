"""The training loop: data, state, checkpoints (with resume), progress, sample grids.

Stages, in order: mesh → checkpoint manager (resume point) → input → model and state (fresh or
restored) → jitted step → loop. Per-step randomness is `fold_in(key, step)` and the input for
step s is a function of (seed, s), so a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import threading
import time

import jax
import ml_collections
import numpy as np
from absl import logging
from clu import metric_writers
from flax import traverse_util

from flowergan import errors
from flowergan import checkpointing, sampling, storage
from flowergan import mesh as mesh_lib
from flowergan import train_step as ts

SAMPLES_PER_CLASS = 16  # grid of 4×4 per class, same noise at every sample step


class TrainingError(errors.FlowerganError):
  """Training stopped; the message is one line that says why and what to do."""


class _StopRequest:
  """SIGTERM (preemption) and Ctrl-C set a flag; the loop finishes its step, saves, exits."""

  def __init__(self):
    self.signal_name = None

  def __call__(self, signum, frame):
    self.signal_name = signal.Signals(signum).name


@contextlib.contextmanager
def _graceful_stop():
  stop = _StopRequest()
  if jax.process_count() > 1 or not _in_main_thread():
    yield stop  # only the main thread may install handlers
    return
  previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
  try:
    yield stop
  finally:
    for s, handler in previous.items():
      signal.signal(s, handler)


def _in_main_thread() -> bool:
  return threading.current_thread() is threading.main_thread()


def _augment_fn(config):
  policy = config.train.diffaugment
  if not policy:
    return None
  from flowergan.diffaugment import diff_augment, parse_policy

  parse_policy(policy)  # fails now, with the list of valid names, not inside jit
  return functools.partial(diff_augment, policy=policy)


def _check_config(config) -> None:
  t = config.train
  for name in ("batch_size", "n_critic", "num_steps"):
    if t[name] < 1:
      raise TrainingError(f"config.train.{name} must be >= 1, got {t[name]}.")
  for name in ("log_every", "sample_every", "checkpoint_every"):
    if config[name] < 1:
      raise TrainingError(f"config.{name} must be >= 1, got {config[name]}.")


def sample_grids(gan: ts.WGANGP, state: ts.TrainState, class_names, seed: int) -> dict:
  """One grid per class from the EMA generator with the same noise every time."""
  labels = np.repeat(np.arange(len(class_names), dtype=np.int32), SAMPLES_PER_CLASS)
  images = sampling.generate(gan, state.ema_params, state.g_batch_stats, labels, seed=seed)
  return {
      name: sampling.make_grid(images[labels == i], ncols=4) for i, name in enumerate(class_names)
  }


def _format_progress(step, num_steps, steps_per_sec, images_per_step, metrics) -> str:
  remaining = (num_steps - step) / steps_per_sec if steps_per_sec > 0 else float("inf")
  eta = time.strftime("%H:%M:%S", time.gmtime(remaining)) if np.isfinite(remaining) else "?"
  return (
      f"step {step}/{num_steps} | {steps_per_sec:.3g} steps/s "
      f"{steps_per_sec * images_per_step:.3g} img/s | ETA {eta} | "
      f"critic {metrics['critic_loss']:.4g} W {metrics['wasserstein']:.4g} "
      f"GP {metrics['gradient_penalty']:.4g} gen {metrics['generator_loss']:.4g}"
  )


def train_and_evaluate(
    config: ml_collections.ConfigDict, workdir: str | os.PathLike
) -> ts.TrainState:
  """Trains `config` in `workdir` (a local path or `gs://...`), resuming from its latest
  checkpoint if there is one."""
  _check_config(config)
  workdir = storage.workdir_path(workdir)
  try:
    storage.check_reachable(workdir)
  except storage.StorageError as e:
    raise TrainingError(str(e)) from None
  is_main = jax.process_index() == 0
  mesh = mesh_lib.make_mesh()
  try:
    mesh_lib.check_batch_size(config.train.batch_size, mesh)
  except ValueError as e:
    raise TrainingError(str(e)) from None

  best = checkpointing.best_checkpoint_of(config)
  manager = checkpointing.make_manager(workdir, max_to_keep=config.keep_checkpoints, best=best)
  start_step = manager.latest_step() or 0

  from flowergan import input_pipeline  # TensorFlow is imported by the input pipeline only

  batches, class_names = input_pipeline.create_train_iterator(
      config.data,
      global_batch_size=config.train.batch_size,
      n_critic=config.train.n_critic,
      seed=config.seed,
      start_step=start_step,
  )

  gan = ts.wgangp_from_config(config, num_classes=len(class_names), augment_fn=_augment_fn(config))
  metadata = checkpointing.make_metadata(config, class_names)
  if start_step:
    checkpointing.check_compatible(
        checkpointing.restore_metadata(manager, start_step), config, class_names, workdir
    )
    state = checkpointing.restore_state(manager, start_step, gan, mesh)
    logging.info("Resumed from %s at step %d.", checkpointing.checkpoint_dir(workdir), start_step)
  else:
    state = ts.init_state(gan, jax.random.key(config.seed), mesh)
  step_fn = ts.make_train_step(gan, mesh)
  step_key = jax.random.fold_in(jax.random.key(config.seed), 1)
  sample_seed = config.seed + 1

  writer = metric_writers.create_default_writer(str(workdir), just_logging=not is_main)
  if start_step == 0:
    hparams = traverse_util.flatten_dict(config.to_dict(), sep=".")
    writer.write_hparams({k: str(v) for k, v in hparams.items()})
  images_per_step = config.train.batch_size * config.train.n_critic
  num_steps = config.train.num_steps
  last_saved = start_step
  window, window_start, window_step = [], time.perf_counter(), start_step
  eval_cache = {}  # the real images, loaded at the first evaluation

  try:
    with _graceful_stop() as stop:
      for step in range(start_step + 1, num_steps + 1):
        batch = mesh_lib.shard_batch(next(batches), mesh)
        state, metrics = step_fn(state, batch, step_key)
        metrics = jax.device_get(metrics)
        _check_finite(metrics, step, last_saved, workdir)
        window.append({k: float(v) for k, v in metrics.items() if k != "finite"})
        if step % config.log_every == 0 or step == num_steps:
          now = time.perf_counter()
          steps_per_sec = (step - window_step) / max(now - window_start, 1e-9)
          means = {k: float(np.mean([m[k] for m in window])) for k in window[0]}
          means.update(steps_per_sec=steps_per_sec, images_per_sec=steps_per_sec * images_per_step)
          writer.write_scalars(step, means)
          if is_main:
            print(
                _format_progress(step, num_steps, steps_per_sec, images_per_step, means), flush=True
            )
          window, window_start, window_step = [], now, step
        if step % config.sample_every == 0 or step == num_steps:
          _write_samples(gan, state, class_names, sample_seed, step, workdir, writer, is_main)
        _stop_on_preemption_notice(manager, step, stop)
        ranking = None
        if _evaluation_due(config, step, num_steps) and not stop.signal_name:
          results = _evaluate(config, workdir, gan, state, class_names, step, writer, eval_cache)
          ranking = _checkpoint_metrics(results, best)
        # An evaluated state is always saved, so that it can become the best checkpoint.
        due = step % config.checkpoint_every == 0 or step == num_steps or stop.signal_name
        if due or ranking is not None:
          checkpointing.save(manager, state, metadata, metrics=ranking)
          last_saved = int(jax.device_get(state.step))
        if stop.signal_name:
          _report_stop(stop.signal_name, step, workdir)
          break
  finally:
    manager.wait_until_finished()
    manager.close()
    writer.flush()
  return state


def _check_finite(metrics: dict, step: int, last_saved: int, workdir: str) -> None:
  """Raises `TrainingError` (naming the step and the kept checkpoint) on a non-finite step."""
  if metrics["finite"]:
    return
  values = ", ".join(f"{k}={float(v):.4g}" for k, v in metrics.items() if k != "finite")
  raise TrainingError(
      f"non-finite loss or gradient at step {step} ({values}); the last good checkpoint "
      f"(step {last_saved}) is kept in {checkpointing.checkpoint_dir(workdir)}: lower "
      f"--config.train.critic_lr/generator_lr or check the input images."
  )


def _write_samples(gan, state, class_names, seed: int, step: int, workdir: str, writer, is_main):
  """`samples/<class>_step<step>.png` and TensorBoard images; every process generates."""
  grids = sample_grids(gan, state, class_names, seed)
  if not is_main:
    return
  for name, grid in grids.items():
    sampling.save_png(grid, workdir / "samples" / f"{name}_step{step:07d}.png")
  writer.write_images(step, {f"samples/{n}": g[None] for n, g in grids.items()})


def _stop_on_preemption_notice(manager, step: int, stop: _StopRequest) -> None:
  """Multi-host: a preemption notice stops every host at the same step (signals do not)."""
  if jax.process_count() > 1 and manager.reached_preemption(step):
    stop.signal_name = "preemption notice"


def _report_stop(signal_name: str, step: int, workdir: str) -> None:
  """Says that the run stopped early, with its checkpoint saved, and how to resume."""
  logging.warning(
      "%s received: saved step %d to %s; rerun the same command to resume.",
      signal_name,
      step,
      checkpointing.checkpoint_dir(workdir),
  )
  print(
      f"{signal_name}: stopped at step {step}, checkpoint saved; rerun the same command to "
      f"resume.",
      flush=True,
  )


def _evaluation_due(config, step: int, num_steps: int) -> bool:
  every = config.get("eval_every", 0)
  return every >= 0 and (step == num_steps or (every > 0 and step % every == 0))


def _checkpoint_metrics(results: dict, best: checkpointing.BestCheckpoint | None) -> dict | None:
  """`{metric: value}` for the checkpoint manager, process 0's value on every process.

  Saving is collective: every process must pass the same metrics, or their preservation
  decisions (which checkpoint to delete) could differ.
  """
  if best is None:
    return None
  if best.metric not in results:
    raise TrainingError(
        f"config.best_checkpoint.metric {best.metric!r} is not an evaluation result; valid: "
        f"{', '.join(sorted(k for k in results if k not in ('step', 'use_ema')))}."
    )
  value = np.float32(results[best.metric])
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils

    value = multihost_utils.broadcast_one_to_all(value)
  return {best.metric: float(value)}


def _evaluate(config, workdir, gan, state, class_names, step, writer, cache) -> dict:
  """flowergan.evaluate on the current state, on every process (the same computation, so no
  process waits long for another); process 0 writes metrics.jsonl, TensorBoard scalars
  `eval/...` and the table on stdout. Returns the results."""
  from flowergan import evaluate, input_pipeline

  is_main = jax.process_index() == 0
  if "real" not in cache:
    cache["real"] = input_pipeline.load_images(config.data)[:2]
  model = checkpointing.TrainedModel(
      gan=gan, state=state, class_names=list(class_names), step=step, config=config
  )
  results = evaluate.evaluate(
      model,
      *cache["real"],
      class_names,
      eval_config=evaluate.eval_config_of(config),
      workdir=workdir if is_main else None,  # the classifier cache too: process 0 only
      write=is_main,
  )
  if is_main:
    writer.write_scalars(step, evaluate.scalars(results))
    print(f"evaluation at step {step}:\n" + evaluate.format_table(results, class_names), flush=True)
  return results
