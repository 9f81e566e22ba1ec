r"""Small data: the paper's recipe, DiffAugment, ADA and the small-data recipe on real images.

Trains the `demo` variant of configs/cwgan128.py (shrunk as the flags say) on scikit-learn's
bundled handwritten digits (1,797 real 8×8 scans, 10 classes, upsampled) with 30, 60 and all
training images per class, and on the synthetic flowers; every recipe with the same step
budget and seeds. Measured at every `--eval_every` steps, against real images no run trained on:

* GAN-train: a classifier trained on generated images (as many per class as the run's real
  training images), its accuracy on the held-out real images; beside it the real ceiling, the
  same classifier trained on the run's real training images;
* GAN-test: a judge classifier trained on all the non-held-out real images, its accuracy on
  generated images (do they show their class?);
* FD: Fréchet distance between the judge's features of generated and of held-out real images.

Writes `<out>.json` (every number, per run and step, with `real_above_fake` and ADA's p along
the run), `<out>.md` (the table) and `<out>.png` (GAN-train against steps). docs/small_data.md
has the command and the results:

    nice -n 10 python -m benchmarks.small_data --out=docs/small_data_results \
      --image_size=16 --width=16 --batch_size=16 --steps=300 --eval_every=100 \
      --seeds=0,1 --subsets=30,60,all --flowers=30 --classifier_steps=200
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import app, flags, logging

from flowergan import ada, classifier, metrics
from flowergan import mesh as mesh_lib
from flowergan import synthetic
from flowergan import train_step as ts
from flowergan.diffaugment import diff_augment

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command's flags, defined only when it runs (tests import this file beside modules whose
  flags share these names, e.g. flowergan.export's --out)."""
  flags.DEFINE_string("out", "/tmp/small_data", "output path without extension")
  flags.DEFINE_integer("steps", 600, "generator steps of every run")
  flags.DEFINE_integer("eval_every", 200, "GAN-train/GAN-test/FD every ... steps")
  flags.DEFINE_integer("image_size", 32, "image size")
  flags.DEFINE_integer("width", 32, "generator and critic width (demo: 32)")
  flags.DEFINE_integer("batch_size", 32, "batch size (demo: 32)")
  flags.DEFINE_list("seeds", ["0", "1"], "training seeds")
  flags.DEFINE_list("subsets", ["30", "60", "all"], "digits per class")
  flags.DEFINE_list("flowers", ["30"], "synthetic flowers per class ('' = none)")
  flags.DEFINE_list("recipes", ["paper", "diffaugment", "ada", "small_data"], "recipes")
  flags.DEFINE_integer("classifier_steps", 300, "steps of each classifier")


HOLDOUT_PER_CLASS = 40  # real images per class that no run trains on (GAN-train's test set)


# ---------------------------------------------------------------- data


def digits(size: int):
  """(images uint8 (N, size, size, 3), labels, class names) of scikit-learn's digits."""
  from PIL import Image
  from sklearn import datasets

  d = datasets.load_digits()
  scans = (d.images * (255 / 16)).round().astype(np.uint8)
  images = np.stack(
      [np.asarray(Image.fromarray(s).resize((size, size), Image.BILINEAR)) for s in scans]
  )
  return np.repeat(images[..., None], 3, -1), d.target.astype(np.int32), [str(i) for i in range(10)]


def flowers(num_per_class: int, size: int):
  """The synthetic flowers: `num_per_class` to train on plus the held-out ones, rendered."""
  images, labels, names = synthetic.render_images(num_per_class + HOLDOUT_PER_CLASS, 0, size)
  return images, labels, list(names)


def split(labels, num_classes: int, per_class: int | None, seed: int = 0):
  """(train, holdout) indices: `HOLDOUT_PER_CLASS` held out per class, then the first
  `per_class` of the rest (all of it for None), the same for every recipe and seed."""
  rng = np.random.default_rng(seed)
  train, hold = [], []
  for c in range(num_classes):
    idx = rng.permutation(np.flatnonzero(labels == c))
    hold.append(idx[:HOLDOUT_PER_CLASS])
    train.append(idx[HOLDOUT_PER_CLASS:][:per_class])
  return np.sort(np.concatenate(train)), np.sort(np.concatenate(hold))


# ---------------------------------------------------------------- training


def demo_config(recipe: str, total_images: int) -> ml_collections.ConfigDict:
  """configs/cwgan128.py:demo (shrunk by the flags) with `recipe`'s augmentation."""
  from configs import cwgan128

  config = cwgan128.get_config("demo")
  config.data.image_size = FLAGS.image_size
  config.model.width = config.model.critic_width = FLAGS.width
  config.train.batch_size = FLAGS.batch_size
  if recipe in ("small_data",):
    config.update_from_flattened_dict(cwgan128.SMALL_DATA_OVERRIDES)
  elif recipe == "diffaugment":
    config.train.diffaugment = "translation,cutout"
  elif recipe == "ada":
    config.train.ada.enabled = True
  if config.train.ada.enabled:
    # StyleGAN2-ADA's speed relative to the run: p can cross [0, 1] in a third of the images
    # the critic sees (500k of ADA's 25M would be 2% here: p would barely move).
    config.train.ada.kimg = total_images / 3 / 1000
  return config


@dataclasses.dataclass
class Trainer:
  """One recipe's jitted step and input augmentation, reused for every data set and seed."""

  gan: ts.WGANGP
  step: object
  mesh: object
  n_critic: int
  batch: int
  hflip: bool

  @classmethod
  def make(cls, config, num_classes: int, hflip: bool):
    policy = config.train.diffaugment
    augment_fn = functools.partial(diff_augment, policy=policy) if policy else None
    gan = ts.wgangp_from_config(config, num_classes=num_classes, augment_fn=augment_fn)
    mesh = mesh_lib.make_mesh()
    return cls(
        gan,
        ts.make_train_step(gan, mesh),
        mesh,
        config.train.n_critic,
        config.train.batch_size,
        hflip,
    )


@functools.partial(jax.jit, static_argnames=("hflip",))
def paper_input(images, key, hflip: bool):
  """The paper's input augmentation (data.max_rotation_deg 15, random_hflip for flowers):
  rotation with reflect padding and horizontal flips, as the input pipeline does."""
  n = images.shape[0]
  k_rot, k_flip = jax.random.split(key)
  theta = jax.random.uniform(k_rot, (n,), minval=-1.0, maxval=1.0) * jnp.deg2rad(15.0)
  c, s = jnp.cos(theta), jnp.sin(theta)
  flip = jnp.where(jax.random.uniform(k_flip, (n,)) < 0.5, -1.0, 1.0) if hflip else jnp.ones(n)
  zero, one = jnp.zeros(n), jnp.ones(n)
  m = jnp.stack(
      [
          jnp.stack([c * flip, -s, zero], -1),
          jnp.stack([s * flip, c, zero], -1),
          jnp.stack([zero, zero, one], -1),
      ],
      -2,
  )
  return ada.warp(images, m)


def train_run(trainer: Trainer, images, labels, num_classes, seed, steps, eval_every, evaluate):
  """Trains from scratch; `evaluate(gan, state)` at every `eval_every` steps. Returns the
  evaluations and the per-step heuristic/p trace."""
  x = jnp.asarray(classifier.to_model_range(images))
  by_class = [np.flatnonzero(labels == c) for c in range(num_classes)]
  rng = np.random.default_rng(seed)
  state = ts.init_state(trainer.gan, jax.random.key(seed), trainer.mesh)
  step_key = jax.random.fold_in(jax.random.key(seed), 1)
  aug_key = jax.random.key(seed + 1000)
  trace, evals = [], []
  start = time.perf_counter()
  for s in range(1, steps + 1):
    # Class-balanced draws as data.balanced: a class, then one of its images.
    cls_ = rng.integers(0, num_classes, (trainer.n_critic * trainer.batch,))
    idx = np.array([by_class[c][rng.integers(len(by_class[c]))] for c in cls_])
    xb = paper_input(x[idx], jax.random.fold_in(aug_key, s), trainer.hflip)
    batch = {
        "image": xb.reshape(trainer.n_critic, trainer.batch, *xb.shape[1:]),
        "label": jnp.asarray(cls_.reshape(trainer.n_critic, trainer.batch), jnp.int32),
    }
    state, m = trainer.step(state, mesh_lib.shard_batch(batch, trainer.mesh), step_key)
    if s % 10 == 0 or s == steps:
      m = jax.device_get(m)
      trace.append(
          {
              "step": s,
              "real_above_fake": float(m["real_above_fake"]),
              "ada_p": float(m.get("ada_p", 0.0)),
              "wasserstein": float(m["wasserstein"]),
          }
      )
    if s % eval_every == 0 or s == steps:
      train_seconds = time.perf_counter() - start
      evals.append({"step": s, "train_seconds": train_seconds, **evaluate(trainer.gan, state)})
      logging.info("step %d: %s", s, evals[-1])
  return evals, trace


# ---------------------------------------------------------------- measuring


def train_classifier(images, labels, num_classes):
  params, _ = classifier.train_classifier(
      images,
      labels,
      num_classes,
      steps=FLAGS.classifier_steps,
      batch_size=64,
      seed=0,
      learning_rate=1e-3,
      holdout_fraction=0.0,
      augment="translate",
  )
  return params


def accuracy(params, images, labels, num_classes) -> float:
  logits, _ = classifier.predict(params, images, 256)
  return float(classifier.per_class_accuracy(np.argmax(logits, -1), labels, num_classes)[1])


@functools.partial(jax.jit, static_argnums=0)
def critic_scores(critic, params, images, labels):
  """The critic's scores of `images` (compiled once per critic and shape, not once per run)."""
  return critic.apply({"params": params}, images, labels)


def make_evaluator(real, labels, train_idx, hold_idx, num_classes, judge, seed):
  """`evaluate(gan, state)` → GAN-train, GAN-test, FD of the EMA generator's images."""
  counts = np.bincount(labels[train_idx], minlength=num_classes)
  gen_labels = np.repeat(np.arange(num_classes, dtype=np.int32), counts.max())
  _, hold_feats = classifier.predict(judge, real[hold_idx], 256)

  def generate(gan, state, labs):
    z = jax.random.normal(jax.random.key(10_000 + seed), (len(labs), gan.z_dim))
    imgs = jax.jit(gan.generate)(state.ema_params, state.g_batch_stats, z, jnp.asarray(labs))
    return np.asarray(jnp.clip(imgs, -1.0, 1.0))

  def train_above_heldout(gan, state) -> float:
    """The share of (training, held-out) real pairs the critic scores training first: 0.5 while
    it has not memorised its training images (the held-out heuristic's statistic)."""
    seen = critic_scores(gan.critic, state.d_params, real[train_idx], labels[train_idx])
    unseen = critic_scores(gan.critic, state.d_params, real[hold_idx], labels[hold_idx])
    return float(ada.real_above_fake(seen, unseen))

  def evaluate(gan, state):
    gen = generate(gan, state, gen_labels)
    keep = np.concatenate(
        [np.flatnonzero(gen_labels == c)[: counts[c]] for c in range(num_classes)]
    )
    params = train_classifier(gen[keep], gen_labels[keep], num_classes)
    gan_train = accuracy(params, real[hold_idx], labels[hold_idx], num_classes)
    gan_test = accuracy(judge, gen, gen_labels, num_classes)
    _, gen_feats = classifier.predict(judge, gen, 256)
    return {
        "gan_train": gan_train,
        "gan_test": gan_test,
        "fd": float(metrics.frechet_distance(gen_feats, hold_feats)),
        "train_above_heldout": train_above_heldout(gan, state),
    }

  return evaluate


def data_sets(size: int):
  """(name, images, labels, classes, train idx, holdout idx, hflip) of every measured set."""
  out = []
  images, labels, names = digits(size)
  for sub in FLAGS.subsets:
    per_class = None if sub == "all" else int(sub)
    train_idx, hold_idx = split(labels, len(names), per_class)
    out.append((f"digits/{sub}", images, labels, names, train_idx, hold_idx, False))
  for sub in [f for f in FLAGS.flowers if f]:
    f_images, f_labels, f_names = flowers(int(sub), size)
    train_idx, hold_idx = split(f_labels, len(f_names), int(sub))
    out.append((f"flowers/{sub}", f_images, f_labels, f_names, train_idx, hold_idx, True))
  return out


def run_grid() -> dict:
  steps, size = FLAGS.steps, FLAGS.image_size
  results = {
      "settings": {
          k: flags.FLAGS[k].value
          for k in (
              "steps",
              "eval_every",
              "image_size",
              "width",
              "batch_size",
              "seeds",
              "subsets",
              "flowers",
              "recipes",
              "classifier_steps",
          )
      },
      "holdout_per_class": HOLDOUT_PER_CLASS,
      "runs": [],
  }
  start = time.perf_counter()
  trainers = {}
  sets = []
  for name, images, labels, names, train_idx, hold_idx, hflip in data_sets(size):
    k = len(names)
    real = classifier.to_model_range(images)
    pool = np.setdiff1d(np.arange(len(labels)), hold_idx)
    judge = train_classifier(real[pool], labels[pool], k)
    ceiling = accuracy(
        train_classifier(real[train_idx], labels[train_idx], k), real[hold_idx], labels[hold_idx], k
    )
    judge_on_real = accuracy(judge, real[hold_idx], labels[hold_idx], k)
    logging.info("%s: real ceiling %.3f, judge %.3f", name, ceiling, judge_on_real)
    sets.append(
        (name, images, labels, k, train_idx, hold_idx, hflip, real, judge, ceiling, judge_on_real)
    )
  for seed in map(int, FLAGS.seeds):  # outermost: a cut grid has all of the first seed
    for (
        name,
        images,
        labels,
        k,
        train_idx,
        hold_idx,
        hflip,
        real,
        judge,
        ceiling,
        judge_on_real,
    ) in sets:
      for recipe in FLAGS.recipes:
        key = (recipe, k, hflip)
        if key not in trainers:
          trainers[key] = Trainer.make(demo_config(recipe, steps * FLAGS.batch_size * 5), k, hflip)
        t0 = time.perf_counter()
        evaluate = make_evaluator(real, labels, train_idx, hold_idx, k, judge, seed)
        evals, trace = train_run(
            trainers[key],
            images[train_idx],
            labels[train_idx],
            k,
            seed,
            steps,
            FLAGS.eval_every,
            evaluate,
        )
        results["runs"].append(
            {
                "data": name,
                "recipe": recipe,
                "seed": seed,
                "train_per_class": int(np.bincount(labels[train_idx]).max()),
                "real_ceiling": ceiling,
                "judge_on_real": judge_on_real,
                "evals": evals,
                "trace": trace,
                "seconds": time.perf_counter() - t0,
            }
        )
        results["wall_seconds"] = time.perf_counter() - start
        logging.info(
            "%s %s seed %d: %s (%.0f s)", name, recipe, seed, evals[-1], time.perf_counter() - t0
        )
        write(results)
  results["wall_seconds"] = time.perf_counter() - start
  return results


# ---------------------------------------------------------------- reporting


def summary(results) -> list[dict]:
  """Per (data, recipe): the final GAN-train/GAN-test/FD, mean and spread over seeds."""
  rows = {}
  for r in results["runs"]:
    rows.setdefault((r["data"], r["recipe"]), []).append(r)
  out = []
  for (data, recipe), runs in rows.items():
    row = {
        "data": data,
        "recipe": recipe,
        "seeds": len(runs),
        "real_ceiling": runs[0]["real_ceiling"],
        "train_per_class": runs[0]["train_per_class"],
    }
    for key in ("gan_train", "gan_test", "fd"):
      v = [r["evals"][-1][key] for r in runs]
      row[key], row[key + "_spread"] = float(np.mean(v)), float(np.max(v) - np.min(v))
    tail = [t["real_above_fake"] for r in runs for t in r["trace"][len(r["trace"]) // 2 :]]
    row["real_above_fake"] = float(np.mean(tail))
    row["ada_p"] = float(np.mean([r["trace"][-1]["ada_p"] for r in runs]))
    row["train_above_heldout"] = float(
        np.mean([r["evals"][-1].get("train_above_heldout", np.nan) for r in runs])
    )
    out.append(row)
  return out


def markdown(results) -> str:
  lines = [
      "| data | recipe | GAN-train (± half range) | real ceiling | GAN-test | FD | "
      "real_above_fake (2nd half) | train_above_heldout (end) | final p |",
      "|---|---|---|---|---|---|---|---|---|",
  ]
  for row in summary(results):
    lines.append(
        f"| {row['data']} ({row['train_per_class']}/class) | {row['recipe']} | "
        f"{row['gan_train']:.3f} ± {row['gan_train_spread'] / 2:.3f} | {row['real_ceiling']:.3f} | "
        f"{row['gan_test']:.3f} | {row['fd']:.3g} | {row['real_above_fake']:.3f} | "
        f"{row['train_above_heldout']:.3f} | {row['ada_p']:.2f} |"
    )
  return "\n".join(lines) + "\n"


COLOURS = {
    "paper": (0, 0, 0),
    "diffaugment": (31, 119, 180),
    "ada": (255, 127, 14),
    "small_data": (44, 160, 44),
}


def plot(results, path: str) -> None:
  """GAN-train against steps, one panel per data set, one line per run (PIL: no matplotlib)."""
  from PIL import Image, ImageDraw

  sets = list(dict.fromkeys(r["data"] for r in results["runs"]))
  w, h, m = 300, 240, 30
  img = Image.new("RGB", (w * len(sets), h + 20), "white")
  draw = ImageDraw.Draw(img)
  steps = max(e["step"] for r in results["runs"] for e in r["evals"])
  for i, data in enumerate(sets):
    x0 = i * w

    def xy(step, acc):
      return x0 + m + (w - 2 * m) * step / steps, h - m - (h - 2 * m) * acc

    draw.rectangle([xy(0, 1), xy(steps, 0)], outline=(160, 160, 160))
    for acc in (0.25, 0.5, 0.75):
      draw.text((x0 + 2, xy(0, acc)[1] - 5), f"{acc:.2f}", fill=(90, 90, 90))
    runs = [r for r in results["runs"] if r["data"] == data]
    ceiling = runs[0]["real_ceiling"]
    draw.line([xy(0, ceiling), xy(steps, ceiling)], fill=(150, 150, 150), width=1)
    for r in runs:
      pts = [xy(e["step"], e["gan_train"]) for e in r["evals"]]
      colour = COLOURS.get(r["recipe"], (128, 128, 128))
      if len(pts) > 1:
        draw.line(pts, fill=colour, width=2)
      for p in pts:
        draw.ellipse([p[0] - 2, p[1] - 2, p[0] + 2, p[1] + 2], fill=colour)
    draw.text((x0 + m, 5), f"{data}: GAN-train vs step (grey: real)", fill=(0, 0, 0))
    draw.text((x0 + w // 2 - 10, h - m + 5), f"step (0-{steps})", fill=(0, 0, 0))
  x = 5
  for name, colour in COLOURS.items():
    draw.rectangle([x, h + 6, x + 10, h + 16], fill=colour)
    draw.text((x + 14, h + 5), name, fill=(0, 0, 0))
    x += 110
  img.save(path)


def write(results) -> None:
  with open(FLAGS.out + ".json", "w") as f:
    json.dump(results, f, indent=1)


def main(argv):
  del argv
  results = run_grid()
  write(results)
  with open(FLAGS.out + ".md", "w") as f:
    f.write(markdown(results))
  plot(results, FLAGS.out + ".png")
  print(markdown(results))
  print(f"wall: {results['wall_seconds']:.0f} s")


if __name__ == "__main__":
  define_flags()
  app.run(main)
