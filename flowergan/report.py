"""The results of `flowergan.evaluate` for people and TensorBoard: a table and `eval/...` scalars.

`format_table` prints what `python evaluate.py` and the training loop show (with a warning line
when the classifier loses to the pixel probe); `scalars` names the values for TensorBoard.
"""

from __future__ import annotations

_NOT_SCALARS = (
    "step",
    "use_ema",
    "seed",
    "classifier_cached",
    "inception_protocol",
    "inception_weights_sha256",
    "inception_real_cached",
)


def scalars(results: dict) -> dict[str, float]:
  """The metric values of `evaluate`'s result, named `eval/...` for TensorBoard."""
  return {f"eval/{k}": float(v) for k, v in results.items() if k not in _NOT_SCALARS}


def _inception_rows(r: dict, names: list[str]) -> list[list[str]]:
  """Table rows of the `inception/...` metrics (none without them); '-' where not measured."""
  if "inception_protocol" not in r:
    return []

  def cells(fmt, name, std=None):
    keys = [f"inception/{name}/{n}" for n in names] + [f"inception/{name}"]
    out = []
    for key in keys:
      if key not in r:
        out.append("-")
      elif std:
        out.append(fmt(r[key], r[key.replace(name, std, 1)]))
      else:
        out.append(fmt(r[key]))
    return out

  protocol = r["inception_protocol"].split(" ")[0]  # "pytorch-fid"
  return [
      [f"FID ({protocol})", *cells(lambda v: f"{v:.2f}", "fid")],
      [
          "KID ×10³ (Inception)",
          *cells(lambda m, s: f"{m * 1e3:.2f} ± {s * 1e3:.2f}", "kid", "kid_std"),
      ],
      ["precision (Inception, k=3)", *cells(lambda v: f"{v:.3f}", "precision")],
      ["recall (Inception, k=3)", *cells(lambda v: f"{v:.3f}", "recall")],
  ]


def format_table(results: dict, class_names) -> str:
  """A readable table of `evaluate`'s result."""
  r = results
  names = list(class_names)
  kid = lambda m, s: f"{m * 1e3:.2f} ± {s * 1e3:.2f}"
  rows = [
      ["", *names, "all"],
      [
          "GAN-test (class consistency)",
          *(f"{r[f'class_consistency/{n}']:.3f}" for n in names),
          f"{r['class_consistency_mean']:.3f}",
      ],
      [
          "GAN-train (trained on generated)",
          *(f"{r[f'gan_train/{n}']:.3f}" for n in names),
          f"{r['gan_train']:.3f}",
      ],
      [
          "  same on as many real",
          *(f"{r[f'gan_train_real/{n}']:.3f}" for n in names),
          f"{r['gan_train_real']:.3f}",
      ],
      ["FD (classifier features)", *(f"{r[f'fd/{n}']:.3f}" for n in names), f"{r['fd']:.3f}"],
      [
          "KID ×10³",
          *(kid(r[f"kid/{n}"], r[f"kid_std/{n}"]) for n in names),
          kid(r["kid"], r["kid_std"]),
      ],
      *_inception_rows(r, names),
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
          f"accuracy on held-out real images: classifier {r['classifier_holdout_accuracy']:.3f}, "
          f"probe (logistic regression on pixels) {r['probe_holdout_accuracy']:.3f}",
          *_probe_warning(r),
          *table,
          "(GAN-train: accuracy on held-out real images of the classifier trained on "
          f"{r['gan_train_num_images']} generated images, and on as many real ones; 'all': over "
          "all held-out images. FD 'all': pooled over classes; KID 'all': mean of the classes' "
          "KIDs)",
          f"FD real half vs half (floor): {r['fd_real_halves']:.3f}",
          "SWD ×10³ per level: "
          + ", ".join(f"{s}px {r[f'swd_{s}']:.2f}" for s in res)
          + f", mean {r['swd_mean']:.2f}  (real half vs half: mean "
          f"{r['swd_real_halves_mean']:.2f})",
          f"checkerboard score: generated {r['checkerboard']:.4f}, "
          f"real {r['checkerboard_real']:.4f}",
          *(
              [f"Inception metrics: protocol {r['inception_protocol']} (pooled over classes)"]
              if "inception_protocol" in r
              else []
          ),
      ]
  )


def _probe_warning(results: dict) -> list[str]:
  """The warning line of a classifier that loses to the probe, or none."""
  if results["classifier_holdout_accuracy"] < results["probe_holdout_accuracy"]:
    return [
        "WARNING: the classifier loses to the probe: its metrics below understate the "
        "generator (eval.classifier_steps, more real images)."
    ]
  return []
