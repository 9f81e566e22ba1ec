"""The training loop: data, state, checkpoints (with resume), progress, sample grids.

Stages, in order: config check → claim on the workdir (writable, locked) → mesh → checkpoint
manager and resume point (the newest checkpoint that restores) → input → model and state (fresh
or restored) → jitted step → loop. Per-step randomness is `fold_in(key, step)` and the input for
step s is a function of (seed, s), so a resumed run continues exactly where it stopped.

Exit statuses of train.py (README, "Reliability"): 0 done, 1 an error (one line), and
`cli.EXIT_STOPPED_EARLY` (3) when a signal or preemption notice stopped the run after saving.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging
from etils import epath
from flax import traverse_util

from flowergan import best_checkpoint, checkpoint_recovery, checkpointing, config_checks, errors
from flowergan import imaging, sampling, storage, trained, workdir_guard
from flowergan import mesh as mesh_lib
from flowergan import train_step as ts

SAMPLES_PER_CLASS = 16  # grid of 4×4 per class, same noise at every sample step


class TrainingError(errors.FlowerganError):
  """Training stopped; the message is one line that says why and what to do."""


class StoppedEarly(Exception):  # not a FlowerganError: nothing is wrong, the run is resumable
  """A signal or preemption notice stopped training before `num_steps`, after saving."""

  def __init__(self, signal_name: str, step: int, state):
    super().__init__(f"{signal_name}: stopped at step {step}")
    self.signal_name = signal_name
    self.step = step
    self.state = state


class _StopRequest:
  """SIGTERM (preemption) and Ctrl-C set a flag; the loop finishes its step, saves, exits."""

  def __init__(self):
    self.signal_name = None

  def __call__(self, signum, frame):
    self.signal_name = signal.Signals(signum).name


@contextlib.contextmanager
def _graceful_stop():
  stop = _StopRequest()
  if jax.process_count() > 1 or threading.current_thread() is not threading.main_thread():
    yield stop  # only the main thread may install handlers
    return
  previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
  try:
    yield stop
  finally:
    for s, handler in previous.items():
      signal.signal(s, handler)


def _augment_fn(config):
  policy = config.train.diffaugment
  if not policy:
    return None
  from flowergan.diffaugment import diff_augment, parse_policy

  parse_policy(policy)  # fails now, with the list of valid names, not inside jit
  return functools.partial(diff_augment, policy=policy)


def sample_grids(gan: ts.WGANGP, state: ts.TrainState, class_names, seed: int) -> dict:
  """One grid per class from the EMA generator with the same noise every time."""
  labels = np.repeat(np.arange(len(class_names), dtype=np.int32), SAMPLES_PER_CLASS)
  variables = {"params": state.ema_params, "batch_stats": state.g_batch_stats}
  images = sampling.generate(gan.generator, variables, labels, z_dim=gan.z_dim, seed=seed)
  return {
      name: imaging.make_grid(images[labels == i], ncols=4) for i, name in enumerate(class_names)
  }


def _format_progress(step, num_steps, steps_per_sec, images_per_step, metrics) -> str:
  remaining = (num_steps - step) / steps_per_sec if steps_per_sec > 0 else float("inf")
  eta = time.strftime("%H:%M:%S", time.gmtime(remaining)) if np.isfinite(remaining) else "?"
  return (
      f"step {step}/{num_steps} | {steps_per_sec:.3g} steps/s "
      f"{steps_per_sec * images_per_step:.3g} img/s | ETA {eta} | "
      f"critic {metrics['critic_loss']:.4g} W {metrics['wasserstein']:.4g} "
      f"GP {metrics['gradient_penalty']:.4g} gen {metrics['generator_loss']:.4g}"
      + (f" | ADA p {metrics['ada_p']:.3f}" if "ada_p" in metrics else "")
  )


@dataclasses.dataclass(frozen=True)
class _Run:
  """What the loop's helpers share, fixed for the whole run."""

  config: ml_collections.ConfigDict
  workdir: epath.Path
  gan: ts.WGANGP
  class_names: tuple[str, ...]
  manager: object  # orbax.checkpoint.CheckpointManager
  metadata: dict  # saved with every checkpoint
  writer: Any  # clu's MetricWriter (clu imports TensorFlow: only where the writer is made)
  is_main: bool  # process 0: writes sample PNGs, metrics.jsonl, TensorBoard, the console
  sample_seed: int  # the grids' noise, the same at every sample step
  real_images: Callable[[], tuple]  # (images, labels) of the run's data, loaded once when asked
  inception: Any = None  # inception_cache.InceptionNetwork with config.eval.inception_weights


def _writer(config, workdir, is_main: bool, start_step: int):
  """TensorBoard (process 0; the others only log), with the config as hparams on a fresh run."""
  from clu import metric_writers  # pylint: disable=g-import-not-at-top  # imports TensorFlow

  writer = metric_writers.create_default_writer(str(workdir), just_logging=not is_main)
  if start_step == 0:
    hparams = traverse_util.flatten_dict(config.to_dict(), sep=".")
    writer.write_hparams({k: str(v) for k, v in hparams.items()})
  return writer


def _inception_network(config):
  """The Inception network of `config.eval.inception_weights` when the run evaluates, or None.

  Loaded before training, so that a missing weights file is one line now, not after the run.
  """
  if config.eval_every < 0 or not config.eval.get("inception_weights"):
    return None
  from flowergan import inception_cache

  return inception_cache.load_inception(config.eval.inception_weights, config.data.cache_dir)


def _real_images_loader(data_config) -> Callable[[], tuple]:
  """(images, labels) of the run's data, loaded at the first call (the first evaluation)."""

  @functools.cache
  def load():
    from flowergan import data_sources

    return data_sources.load_images(data_config)[:2]

  return load


def train_and_evaluate(
    config: ml_collections.ConfigDict, workdir: str | os.PathLike
) -> ts.TrainState:
  """Trains `config` in `workdir` (a local path or `gs://...`), resuming from its newest
  checkpoint that restores.

  Raises:
    errors.FlowerganError: a bad config value, an unusable or busy workdir, an incompatible
      checkpoint, a failed save, a non-finite step (one-line messages).
    StoppedEarly: SIGTERM/SIGINT or a preemption notice stopped the run; it saved first.
  """
  config_checks.validate(config)
  workdir = storage.workdir_path(workdir)
  try:
    storage.check_reachable(workdir)
  except storage.StorageError as e:
    raise TrainingError(str(e)) from None
  mesh = mesh_lib.make_mesh()
  try:
    mesh_lib.check_batch_size(config.train.batch_size, mesh)
  except ValueError as e:
    raise TrainingError(str(e)) from None
  # Multi-host: the hosts of one run share the workdir, so process 0 alone checks and locks it;
  # then every process checks the checkpoint folder, which all of them write to.
  is_main = jax.process_index() == 0
  with workdir_guard.claim(workdir) if is_main else contextlib.nullcontext():
    _sync_processes("flowergan: workdir claimed")
    if is_main:  # every output the run will write, checked before training
      workdir_guard.check_run_outputs(os.fspath(workdir), evaluates=config.eval_every >= 0)
    workdir_guard.check_writable(checkpointing.checkpoint_dir(workdir), what="checkpoint folder")
    return _train(config, workdir, mesh)


def _sync_processes(name: str) -> None:
  """A barrier across processes (nothing on a single process)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices(name)


def _resume_point(manager, config, workdir: str, mesh):
  """`(step, state, metadata, damaged steps)` of the newest checkpoint that restores.

  `(0, None, {}, [])` without one. Damaged newer steps, and steps whose best-checkpoint metrics
  do not parse, get a warning each (moved aside by `_set_aside` once the data agree with the
  checkpoint); an incompatible one is refused.
  """
  if not manager.all_steps():
    return 0, None, {}, []

  def restore(step):
    metadata = checkpointing.read_metadata(manager, step)
    # The classes of the data are checked after loading them; the architecture is checked now,
    # so that a state that does not fit means a changed config, not damage.
    checkpoint_recovery.check_compatible(metadata, config, metadata["class_names"], workdir)
    gan = ts.wgangp_from_config(config, num_classes=len(metadata["class_names"]))
    return checkpointing.read_state(manager, step, ts.abstract_state(gan, mesh)), metadata

  step, (state, metadata), damaged = checkpoint_recovery.restore_newest(
      manager,
      restore,
      advice="move the checkpoints folder away to start afresh, or pass another --workdir.",
  )
  # An older step whose metrics do not parse cannot be ranked for the best checkpoint: it goes
  # aside too, rather than be kept or deleted by a ranking that cannot see it.
  for older, error in sorted(manager.damaged_metrics.items()):
    if older not in damaged:
      logging.warning(
          "%s; set aside.", checkpointing.DamagedCheckpointError(older, manager.directory, error)
      )
      damaged.append(older)
  return step, state, metadata, sorted(damaged)


def _set_aside(manager, workdir: str, damaged: list[int]) -> None:
  """`checkpoint_recovery.set_aside` on process 0; the other processes wait and then re-list.

  Damaged steps newer than the resume point must leave `checkpoints/`: Orbax neither overwrites
  a step nor saves one below its latest, so the steps trained again would not be saved.
  """
  if not damaged:
    return
  if jax.process_index() == 0:
    checkpoint_recovery.set_aside(manager, workdir, damaged)
  if jax.process_count() > 1:
    _sync_processes("flowergan: damaged checkpoints set aside")
    manager.reload()


def _train(config: ml_collections.ConfigDict, workdir: str, mesh) -> ts.TrainState:
  """The run itself, once the workdir is claimed."""
  is_main = jax.process_index() == 0
  inception_network = _inception_network(config)  # a missing weights file stops us now
  best = best_checkpoint.best_checkpoint_of(config)
  manager = checkpointing.make_manager(workdir, max_to_keep=config.keep_checkpoints, best=best)
  try:
    start_step, restored, saved_metadata, damaged = _resume_point(manager, config, workdir, mesh)
  except BaseException:
    manager.close()
    raise

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
    checkpoint_recovery.check_compatible(saved_metadata, config, class_names, workdir)
    _set_aside(manager, workdir, damaged)
    state = restored
    logging.info("Resumed from %s at step %d.", checkpointing.checkpoint_dir(workdir), start_step)
  else:
    state = ts.init_state(gan, jax.random.key(config.seed), mesh)
  step_fn = ts.make_train_step(gan, mesh)
  step_key = jax.random.fold_in(jax.random.key(config.seed), 1)

  run = _Run(
      config=config,
      workdir=workdir,
      gan=gan,
      class_names=tuple(class_names),
      manager=manager,
      metadata=metadata,
      writer=_writer(config, workdir, is_main, start_step),
      is_main=is_main,
      sample_seed=config.seed + 1,
      real_images=_real_images_loader(config.data),
      inception=inception_network,
  )
  images_per_step = config.train.batch_size * config.train.n_critic
  num_steps = config.train.num_steps
  last_saved = start_step
  window, window_start, window_step = [], time.perf_counter(), start_step

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
          run.writer.write_scalars(step, means)
          if is_main:
            print(
                _format_progress(step, num_steps, steps_per_sec, images_per_step, means), flush=True
            )
          window, window_start, window_step = [], now, step
        if step % config.sample_every == 0 or step == num_steps:
          _write_samples(run, state, step)
        _stop_on_preemption_notice(manager, step, stop)
        ranking = None
        if _evaluation_due(config, step, num_steps) and not stop.signal_name:
          results = _evaluate(run, state, step)
          ranking = _checkpoint_metrics(results, best)
        # An evaluated state is always saved, so that it can become the best checkpoint.
        due = step % config.checkpoint_every == 0 or step == num_steps or stop.signal_name
        if due or ranking is not None:
          _save(run, state, step, last_saved, ranking)
          last_saved = int(jax.device_get(state.step))
        if stop.signal_name:
          _report_stop(stop.signal_name, step, workdir)
          break
  finally:
    manager.close()  # waits for Orbax's threads first
    run.writer.flush()
  if stop.signal_name:
    raise StoppedEarly(stop.signal_name, step, state)
  return state


def _kept(last_saved: int, workdir: str) -> str:
  """What is kept on disk, truthfully: the last saved step, or nothing yet."""
  if last_saved:
    return (
        f"the last good checkpoint (step {last_saved}) is kept in "
        f"{checkpointing.checkpoint_dir(workdir)}"
    )
  return "no checkpoint had been saved yet"


def _save(run: _Run, state, step: int, last_saved: int, ranking: dict | None) -> None:
  """`checkpointing.save` (with the best-checkpoint `ranking`); a failure stops training at once,
  saying what is kept."""
  try:
    saved_step = int(jax.device_get(state.step))
    checkpointing.save(
        run.manager, saved_step, ts.checkpoint_items(state), run.metadata, metrics=ranking
    )
  except checkpointing.CheckpointError as e:
    raise TrainingError(
        f"{e}; training stopped at step {step}, {_kept(last_saved, run.workdir)}: free space or fix "
        "the folder, then rerun the same command to resume."
    ) from None


def _check_finite(metrics: dict, step: int, last_saved: int, workdir: str) -> None:
  """Raises `TrainingError` (naming the step and what is kept) on a non-finite step."""
  if metrics["finite"]:
    return
  values = ", ".join(f"{k}={float(v):.4g}" for k, v in metrics.items() if k != "finite")
  raise TrainingError(
      f"non-finite loss or gradient at step {step} ({values}); {_kept(last_saved, workdir)}: "
      "lower --config.train.critic_lr/generator_lr or check the input images."
  )


def _write_samples(run: _Run, state, step: int) -> None:
  """`samples/<class>_step<step>.png` and TensorBoard images; every process generates."""
  grids = sample_grids(run.gan, state, run.class_names, seed=run.sample_seed)
  if not run.is_main:
    return
  for name, grid in grids.items():
    stem = config_checks.file_stem(name)  # the names were checked; this keeps them a file name
    imaging.save_png(grid, run.workdir / "samples" / f"{stem}_step{step:07d}.png")
  run.writer.write_images(step, {f"samples/{n}": g[None] for n, g in grids.items()})


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
  every = config.eval_every
  return every >= 0 and (step == num_steps or (every > 0 and step % every == 0))


def _checkpoint_metrics(results: dict, best: best_checkpoint.BestCheckpoint | None) -> dict | None:
  """`{metric: value}` for the checkpoint manager, process 0's value on every process.

  Saving is collective: every process must pass the same metrics, or their preservation
  decisions (which checkpoint to delete) could differ.
  """
  if best is None:
    return None
  if best.result_key not in results:
    raise TrainingError(
        f"config.best_checkpoint.metric {best.metric!r} is not an evaluation result; valid: "
        f"{', '.join(sorted(k for k in results if k not in ('step', 'use_ema')))}."
    )
  value = np.float32(results[best.result_key])
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils

    value = multihost_utils.broadcast_one_to_all(value)
  return {best.metric: float(value)}


def _evaluate(run: _Run, state, step: int) -> dict:
  """flowergan.evaluate on the current state, on every process (the same computation, so no
  process waits long for another); process 0 writes metrics.jsonl, TensorBoard scalars
  `eval/...` and the table on stdout. Returns the results."""
  from flowergan import evaluate, report

  class_names = list(run.class_names)
  model = trained.TrainedModel(
      generator=run.gan.generator,
      variables=ts.generator_variables(state),
      class_names=class_names,
      step=step,
      config=run.config,
  )
  results = evaluate.evaluate(
      model,
      *run.real_images(),
      class_names,
      eval_config=evaluate.eval_config_of(run.config),
      inception_network=run.inception,
      workdir=run.workdir if run.is_main else None,  # the classifier cache too: process 0 only
      write=False,  # below, with ADA's p beside the evaluation it explains
  )
  if state.ada is not None:
    results["ada_p"] = float(jax.device_get(state.ada.p))
  if run.is_main:
    evaluate.append_metrics(run.workdir, results)
    run.writer.write_scalars(step, report.scalars(results))
    print(f"evaluation at step {step}:\n" + report.format_table(results, class_names), flush=True)
  return results
