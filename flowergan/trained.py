"""A trained run as sampling uses it: the generator and its variables, nothing of training.

`load_trained(workdir, step)` reads one checkpoint's `metadata` and its generator's variables
(the EMA weights, the raw weights and BatchNorm's running statistics) and builds the generator
from the stored config; it builds no critic and no optimiser and reads neither from disk.

Format version 2 stores those variables as their own item, `generator`, and only that item is
read. A version-1 checkpoint has them only inside its `state` item (a dict on disk: step, both
nets, both optimiser states, EMA): Orbax's partial restore reads just the three subtrees, so
old checkpoints load with the same arrays, hence the same pixels, and no optimiser is built.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import orbax.checkpoint as ocp
from etils import epath

from flowergan import best_checkpoint, checkpoint_recovery, checkpointing, config_checks, models
from flowergan import mesh as mesh_lib
from flowergan.checkpointing import CheckpointError, DamagedCheckpointError

__all__ = ["TrainedModel", "load_trained", "generator_from_config"]

# The generator's variables in a checkpoint (`generator` item; v1: entries of `state`).
VARIABLES = ("ema_params", "g_params", "g_batch_stats")


@dataclasses.dataclass
class TrainedModel:
  """A trained run: what sampling, evaluation, the demo and exporters use.

  `variables` maps `ema_params`, `g_params` and `g_batch_stats` to their pytrees.
  """

  generator: models.Generator
  variables: dict[str, Any]
  class_names: list[str]
  step: int
  config: ml_collections.ConfigDict
  metadata: dict | None = None  # the checkpoint's own (e.g. `imported_generator`)

  @property
  def z_dim(self) -> int:
    return int(self.config.model.z_dim)

  @property
  def num_classes(self) -> int:
    return self.generator.num_classes

  @property
  def image_size(self) -> int:
    return int(self.generator.image_size)

  def sampling_variables(self, use_ema: bool = True) -> dict:
    """`{'params', 'batch_stats'}` for `generator.apply`: the EMA weights or the raw ones."""
    params = self.variables["ema_params" if use_ema else "g_params"]
    return {"params": params, "batch_stats": self.variables["g_batch_stats"]}


def generator_from_config(config: ml_collections.ConfigDict, num_classes: int) -> models.Generator:
  """The generator a run's config describes (as training builds it)."""
  return models.build_generator(
      config.model,
      image_size=config.data.image_size,
      num_classes=num_classes,
      dtype=models.compute_dtype(config.train.dtype),
  )


def abstract_variables(generator: models.Generator, z_dim: int, mesh) -> dict:
  """Shapes, dtypes and replicated shardings of `VARIABLES`, without computing them."""
  shapes = jax.eval_shape(
      lambda key: generator.init(
          key, jnp.zeros((1, z_dim)), jnp.zeros((1,), jnp.int32), train=False
      ),
      jax.random.key(0),
  )
  params, batch_stats = shapes["params"], shapes["batch_stats"]
  target = {"ema_params": params, "g_params": params, "g_batch_stats": batch_stats}
  return checkpointing.on_mesh(target, mesh)


def read_variables(manager, step: int, generator: models.Generator, z_dim: int) -> dict:
  """The generator's variables of `step`: its `generator` item, or (version 1) those entries
  of its `state` item; `DamagedCheckpointError` if they do not restore, or if the shapes that
  the metadata's config implies are not those stored (checked before anything is read)."""
  target = abstract_variables(generator, z_dim, mesh_lib.make_mesh())
  if checkpointing.has_item(manager, step, checkpointing.GENERATOR):
    name = checkpointing.GENERATOR
    restore = lambda: checkpointing.restore_item(manager, step, name, target)
  else:
    name = checkpointing.STATE
    restore = lambda: checkpointing.restore_subtrees(manager, step, name, target)
  check_stored_shapes(manager, step, name, target)
  return checkpointing.read_item(manager, step, restore)


def _stored_shapes(manager, step: int, name: str) -> dict[str, tuple[int, ...]]:
  """'/'-joined path → shape of every array of the item, from Orbax's tree metadata (no data)."""
  item_dir = epath.Path(manager.directory) / str(step) / name
  handler = ocp.PyTreeCheckpointHandler()  # the item's own tree metadata, no step metadata
  try:
    tree = handler.metadata(item_dir).tree
  finally:
    handler.close()
  out = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    if getattr(leaf, "shape", None) is not None:
      out["/".join(str(getattr(k, "key", k)) for k in path)] = tuple(leaf.shape)
  return out


def check_stored_shapes(manager, step: int, name: str, target: dict) -> None:
  """`DamagedCheckpointError` naming the first array whose stored shape is not the one the
  step's metadata implies (a damaged or edited `metadata`: `model.z_dim` of 10¹²).

  Orbax would otherwise start the restore, fail, and leave its pending reads to report
  "Exception ignored … Traceback" blocks at exit. An item whose tree metadata does not read is
  left to the restore, which reports it as damaged.
  """
  try:
    stored = _stored_shapes(manager, step, name)
  except Exception:  # pylint: disable=broad-except  # unreadable: the restore says it in a line
    return
  for path, leaf in jax.tree_util.tree_flatten_with_path(target)[0]:
    key = "/".join(str(getattr(k, "key", k)) for k in path)
    if key not in stored:
      problem = f"no {key} stored, which its metadata implies"
    elif stored[key] != tuple(leaf.shape):
      problem = f"stored {key} is {stored[key]} but its metadata implies {tuple(leaf.shape)}"
    else:
      continue
    raise DamagedCheckpointError(step, manager.directory, ValueError(problem))


def load_trained(workdir: str, step: int | str | None = None) -> TrainedModel:
  """The generator from `workdir`'s latest or given checkpoint.

  `step`: a step number, `'best'` for the best evaluated one, or None: the newest checkpoint
  that restores (a damaged latest one is skipped with a warning). A damaged `step` is refused
  in one line naming the available ones.
  """
  directory = checkpointing.checkpoint_dir(workdir)
  how_to_train = "train one with `python train.py --config=configs/cwgan128.py` (or pass --workdir)"
  if not directory.is_dir():
    raise CheckpointError(f"no checkpoint in {workdir}: {how_to_train}.")
  manager = checkpointing.make_manager(workdir, create=False)
  try:
    steps = sorted(manager.all_steps())
    if not steps:
      raise CheckpointError(f"no checkpoint in {workdir}: {how_to_train}.")
    if step is None:
      step, model, _ = checkpoint_recovery.restore_newest(
          manager,
          lambda s: _load_step(manager, s),
          advice=f"train again (another --workdir) or restore them; steps: {steps}.",
      )
      return model
    if step == "best":
      step = best_checkpoint.best_step(workdir, manager)
    if step not in steps:
      raise CheckpointError(
          f"no checkpoint for step {step} in {workdir}; available steps: {steps}."
      )
    try:
      return _load_step(manager, step)
    except DamagedCheckpointError as e:
      if not checkpoint_recovery.step_exists(manager, step):
        manager.reload()
        raise CheckpointError(
            f"checkpoint step {step} in {directory} was deleted while being read (a training run "
            f"rotating its checkpoints?); steps now: {sorted(manager.all_steps())}: pass another "
            "--step, or none for the newest one."
        ) from None
      raise CheckpointError(
          f"{e}; available steps: {steps}: pass another --step, or none for the newest one "
          "that restores."
      ) from None
  finally:
    manager.close()


def _load_step(manager, step: int) -> TrainedModel:
  """The model of one step, its stored config validated before anything is built from it."""
  metadata = checkpointing.read_metadata(manager, step)
  config = checkpointing.config_from_metadata(metadata)
  config_checks.validate(config, what=f"config stored in checkpoint step {step}")
  class_names = metadata["class_names"]
  generator = generator_from_config(config, len(class_names))
  variables = read_variables(manager, step, generator, int(config.model.z_dim))
  return TrainedModel(
      generator=generator,
      variables=variables,
      class_names=class_names,
      step=step,
      config=config,
      metadata=metadata,
  )
