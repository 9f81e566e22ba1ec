"""What `sample.py` does: a request's files, checked before the checkpoint is read, then written.

`write_request(workdir, request)` refuses a bad request (`sampling.check_request`) or an output
that cannot be written (`imaging.check_outputs`, `dataset_writer.check_dataset_request`) before
anything is read or written, loads the run, answers the request and writes its files: a grid
(one image, or a folder of single PNGs), a walk (a PNG strip and a GIF beside it), the noise
(`save_z`), or a labelled dataset (`dataset_writer`). It returns the line sample.py prints.
"""

from __future__ import annotations

from flowergan import config_checks, dataset_writer, imaging, latents, sampling, storage, trained


def write_request(
    workdir: str, request: sampling.SampleRequest, step: int | str | None = None
) -> str:
  """Writes the files of `request` from checkpoint `step` of the run in `workdir` (a number,
  'best', or None: the latest) and says what it wrote, in one line."""
  check_request(workdir, request)
  model = trained.load_trained(workdir, parse_step(step))
  if request.dataset is not None:
    return _write_dataset(model, workdir, request)
  if request.interpolate is not None:
    return _write_walk(model, workdir, request)
  return _write_grid(model, workdir, request)


def check_request(workdir: str, request: sampling.SampleRequest) -> None:
  """The request and every output path, before the checkpoint is read or anything written."""
  sampling.check_request(request)
  if request.dataset is not None:
    dataset_writer.check_dataset_request(request.dataset, request.num_per_class)
    return
  imaging.check_outputs(outputs(workdir, request))
  if not request.out and not storage.is_remote(workdir):
    # The default outputs go into `<workdir>/samples/`: not through a link out of the workdir.
    defaults = [o for o in outputs(workdir, request) if o[0] != "--save_z"]
    imaging.check_outputs(defaults, root=workdir)


def parse_step(value: int | str | None) -> int | str | None:
  """`--step`: None (the latest), 'best', or a step number."""
  if value is None or value == "best":
    return value
  try:
    return int(value)
  except ValueError:
    raise sampling.SamplingError(
        f"--step must be a step number or 'best', got {value!r}."
    ) from None


def outputs(workdir: str, request: sampling.SampleRequest) -> list[tuple[str, str, bool]]:
  """The files a grid or walk request writes, as `imaging.check_outputs` takes them."""
  if request.interpolate is None:
    out = grid_out(workdir, request)
    outputs_ = [("--out", out, imaging.grid_format(out) is None)]  # a bad extension fails here
  else:
    png, gif = walk_paths(workdir, request)
    outputs_ = [("--out", png, False), ("the GIF beside --out", gif, False)]
  if request.save_z:
    outputs_.append(("--save_z", request.save_z, False))
  return outputs_


def grid_out(workdir: str, request: sampling.SampleRequest) -> str:
  """Where a grid goes: `out`, or `<workdir>/samples/sample_<label>_seed<seed>.png`."""
  label = config_checks.file_stem(request.label)
  return request.out or f"{workdir}/samples/sample_{label}_seed{request.seed}.png"


def walk_paths(workdir: str, request: sampling.SampleRequest) -> tuple[str, str]:
  """The walk's .png strip (`out`, or one in `<workdir>/samples/`) and the GIF beside it."""
  seed_a, seed_b = latents.parse_seed_pair(request.interpolate)
  pair = request.label.split(",")
  stems = "-".join(map(config_checks.file_stem, dict.fromkeys(pair)))
  out = request.out or f"{workdir}/samples/walk_{stems}_seed{seed_a}-{seed_b}.png"
  if not out.lower().endswith(".png"):
    raise latents.LatentError(f"--out of a walk is the .png strip (the GIF goes beside it): {out}.")
  return out, out[: -len(".png")] + ".gif"


def _write_grid(model: trained.TrainedModel, workdir: str, request: sampling.SampleRequest) -> str:
  """A grid (or single files) of the request's images, and its noise with `save_z`."""
  samples = sampling.sample_request(model, request)
  labels, class_names = samples.labels, model.class_names
  out = grid_out(workdir, request)
  per_class = len(labels) // len(class_names) if request.label == "all" else None
  paths = imaging.write_images(
      samples.images,
      out,
      labels=labels,
      class_names=class_names,
      ncols=per_class,
      group_size=per_class,
  )
  if request.save_z:
    latents.save_z(request.save_z, samples.z)
  what = "a grid of" if len(paths) == 1 else f"{len(paths)} files with"
  source = f"noise {request.z_file}" if request.z_file else f"seed {request.seed}"
  return (
      f"wrote {what} {len(labels)} images ({request.label}, step {model.step}, {source}) "
      f"to {out}"
  )


def _write_walk(model: trained.TrainedModel, workdir: str, request: sampling.SampleRequest) -> str:
  """A latent walk between the single samples of two seeds (and labels): PNG strip + GIF."""
  walk = sampling.sample_request(model, request)
  out, gif = walk_paths(workdir, request)
  imaging.write_walk(walk.images, out, gif)
  if request.save_z:
    latents.save_z(request.save_z, walk.z)
  seed_a, seed_b = latents.parse_seed_pair(request.interpolate)
  pair = sampling.walk_labels(request.label, model.class_names)
  return (
      f"wrote a walk of {len(walk.z)} frames ({' → '.join(pair)}, seeds {seed_a} → {seed_b}, "
      f"step {model.step}) to {out} and {gif}"
  )


def _write_dataset(
    model: trained.TrainedModel, workdir: str, request: sampling.SampleRequest
) -> str:
  """A labelled dataset of `num_per_class` images per class from `seed`."""
  dataset_writer.write_dataset(
      model,
      request.dataset,
      request.num_per_class,
      seed=request.seed,
      truncation=request.truncation,
      use_ema=request.use_ema,
      workdir=workdir,
      progress=dataset_writer.print_progress,
  )
  return (
      f"wrote {request.num_per_class} images per class of {', '.join(model.class_names)} "
      f"(step {model.step}, seed {request.seed}) to {request.dataset}/<class>/, with "
      f"{dataset_writer.DATASET_MANIFEST} and {dataset_writer.DATASET_NOISE}"
  )
