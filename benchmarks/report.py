"""The reports of the two benchmark commands, from their JSON-able results.

`benchmark_table`: the plain-text table of `benchmarks.bench`; `accelerator_markdown`: the
Markdown report of `benchmarks.accelerator_check` (of whatever part of its results exists yet:
it is rewritten after every part).
"""

from __future__ import annotations

from typing import Any

# --- benchmarks.bench ------------------------------------------------------------------------


def _fmt(x, unit="", digits=3) -> str:
  if x is None:
    return "n/a"
  if isinstance(x, str):
    return x
  return f"{x:.{digits}g}{unit}"


def _it_fmt(s: dict) -> str:
  return f"{s['median']:.3f} ({s['min']:.3f}-{s['max']:.3f})"


def _bench_header(result: dict) -> list[str]:
  m, torch = result["machine"], result.get("torch")
  torch_info = ""
  if torch:
    torch_info = (
        f", torch {torch['version']} on {torch['device']} ({torch['num_threads']} threads, "
        f"{'channels_last' if result.get('torch_channels_last') else 'NCHW'}"
        f"{', generator under torch.compile' if result.get('torch_compile') else ''})"
    )
  return [
      f"device: {m['device_kind']} ({m['platform']}) x{m['device_count']}, "
      f"{m.get('cpu_cores_available')} CPU cores; jax {m['versions']['jax']}" + torch_info,
      f"dtype {result['dtype']}, {result['image_size']}², n_critic {result['n_critic']}, "
      f"critic convs {result['critic_conv']}, generator convs {result['generator_conv']}; "
      f"measured {result['dtype']} matmul peak "
      f"{_fmt(result['peak_flops_per_s'] / 1e9)} GFLOP/s",
  ]


_BENCH_COLUMNS = (
    f"{'batch':>5} | {'flowergan s/iter (min-max)':>27} | {'img/s':>6} | "
    f"{'torch s/iter (min-max)':>24} | {'fg/torch':>8} | {'TFLOP/it':>8} | "
    f"{'floor s':>7} | {'x floor':>7} | {'% peak':>6} | {'compile s':>9} | "
    f"{'sample img/s':>12} | {'peak mem':>8}"
)


def _bench_entry(e: dict, result: dict) -> list[str]:
  """The row of one batch size and the lines under it."""
  fg, t = e["flowergan"], e.get("torch")
  mem = fg.get("peak_memory_bytes")
  lines = [
      f"{e['batch_size']:>5} | {_it_fmt(fg['iteration_s']):>27} | {fg['images_per_s']:6.2f} | "
      f"{_it_fmt(t['iteration_s']) if t else 'n/a':>24} | "
      f"{_fmt(e.get('flowergan_over_torch')):>8} | "
      f"{_fmt((fg['flops_per_iteration'] or 0) / 1e12):>8} | {_fmt(fg.get('floor_s')):>7} | "
      f"{_fmt(fg.get('time_over_floor')):>7} | "
      f"{_fmt(100 * fg['fraction_of_peak'] if fg.get('fraction_of_peak') else None):>6} | "
      f"{fg['compile_s']:9.1f} | {fg['sampling_images_per_s']:12.1f} | "
      f"{_fmt(mem / 2**30 if mem else None, ' GiB'):>8}",
      f"      process CPU s/iter (median): flowergan {fg['iteration_cpu_s']['median']:.3f}"
      + (f", torch {t['iteration_cpu_s']['median']:.3f}" if t else ""),
  ]
  also, dtype = result.get("also_dtype"), result["dtype"]
  if also and f"flowergan_{also}" in e:
    o = e[f"flowergan_{also}"]
    lines.append(
        f"      flowergan {also}: {_it_fmt(o['iteration_s'])} s/iter, "
        f"{also}/{dtype} time {e[f'{also}_over_{dtype}']:.3f} "
        f"(pairwise median {e[f'{also}_over_{dtype}_pairwise_median']:.3f}), "
        f"compile {o['compile_s']:.1f} s"
        + (
            f", {100 * o['fraction_of_peak']:.3g}% of the {also} matmul peak"
            if o.get("fraction_of_peak")
            else ""
        )
    )
  if "torch_check" in e:
    lines.append(
        f"      torch vs flowergan on the same weights (losses, penalty, images, "
        f"gradients): max relative error {e['torch_check']['max_error']:.1e}, "
        f"{e['torch_check']['max_error_default_kernels']:.1e} with torch's oneDNN"
    )
  for name, c in fg.get("components", {}).items():
    tc = (t or {}).get("components", {}).get(name)
    lines.append(
        f"      {name}: flowergan {c['s']['median']:.3f} s "
        f"({_fmt((c['flops'] or 0) / 1e9)} GFLOP)"
        + (f", torch {tc['s']['median']:.3f} s" if tc else "")
    )
  return lines


def _conv_layers(result: dict) -> list[str]:
  lines = [
      f"generator 3×3 conv layers alone, batch {result['results'][0]['batch_size']}, "
      "median s (XLA conv / flowergan 'dots' / torch; torch's gradients include "
      "its forward pass, autograd needs it):"
  ]
  for r in result["conv_layers"]:
    cells = []
    for part in (k[len("lax_") : -len("_s")] for k in r if k.startswith("lax_")):
      times = [
          f"{r[f'{name}_{part}_s']:.4f}"
          for name in ("lax", "dots", "torch")
          if f"{name}_{part}_s" in r
      ]
      cells.append(f"{part} " + " / ".join(times))
    lines.append(f"  {r['size']:>4}² {r['c_in']:>3}→{r['c_out']:<3} " + "; ".join(cells))
  return lines


def benchmark_table(result: dict) -> str:
  """A plain-text summary of `run_benchmark`'s results."""
  lines = _bench_header(result) + [_BENCH_COLUMNS, "-" * len(_BENCH_COLUMNS)]
  for e in result["results"]:
    lines += _bench_entry(e, result)
  if result.get("conv_layers"):
    lines += _conv_layers(result)
  ip = result.get("input_pipeline_images_per_s")
  lines.append(f"input pipeline: {_fmt(ip, ' img/s')}")
  return "\n".join(lines)


# --- benchmarks.accelerator_check ------------------------------------------------------------


def _g(x: Any, scale: float = 1.0, digits: int = 3) -> str:
  """A number in `digits` significant digits after dividing by `scale`; '–' for none."""
  if x is None or isinstance(x, (str, dict)):
    return "–"
  return f"{x / scale:.{digits}g}"


def _s_per_iter(part: dict[str, Any] | None) -> str:
  if not part:
    return "–"
  if "iteration_s" in part:
    s = part["iteration_s"]
    return f"{s['median']:.4g} ({s['min']:.4g}–{s['max']:.4g}, n={s['n']})"
  return "error" if "error" in part else "–"


def _check_header(result: dict[str, Any]) -> list[str]:
  m = result.get("machine", {})
  versions = m.get("versions", {})
  soft = ", ".join(f"{k} {v}" for k, v in versions.items() if v)
  status = "ok" if result.get("core_ok") else "NOT ok (see errors)"
  lines = [
      "# flowergan accelerator check",
      "",
      f"{m.get('device_kind', '?')} ({m.get('platform', '?')}) ×{m.get('device_count', '?')}; "
      f"{soft}; {result.get('started_utc')}; {result.get('elapsed_s', 0):.0f} s of a "
      f"{result.get('budget_s', 0):.0f} s budget; flowergan measurements: {status}.",
  ]
  torch_info = result.get("torch", {})
  if torch_info.get("device"):
    lines.append(
        f"torch {torch_info.get('version')} on {torch_info['device']}"
        + (
            f" (CUDA {torch_info.get('cuda')}, cuDNN {torch_info.get('cudnn')}, cudnn.benchmark, "
            f"matmul TF32 {torch_info.get('matmul_allow_tf32')}, "
            f"cuDNN TF32 {torch_info.get('cudnn_allow_tf32')})"
            if torch_info["device"] == "cuda"
            else f" (threads: {torch_info.get('num_threads')})"
        )
        + "."
    )
  elif torch_info.get("status"):
    lines.append(f"PyTorch comparison: {torch_info['status']}.")
  return lines


def _checks(result: dict[str, Any]) -> list[str]:
  """A paragraph per check: what it found, or its error, or 'not measured' (yet)."""
  checks = result.get("checks", {})
  parts = (
      ("'auto' convolutions", checks.get("conv_auto", {}), _conv_text),
      ("float32 matmul precision", checks.get("matmul_precision", {}), _precision_text),
      ("Matmul peaks", result.get("peaks", {}), _peaks_text),
  )
  lines = []
  for title, part, text in parts:
    if part and "error" not in part:
      lines += ["", text(part)]
    else:
      lines += ["", f"**{title}:** {part.get('error', 'not measured')}"]
  return lines


def _conv_text(conv: dict[str, Any]) -> str:
  return (
      f"**'auto' convolutions** on {conv['backend']}: generator {conv['generator']}, critic "
      f"{conv['critic']} (flowergan's CPU formulations on the CPU, XLA's own 'lax' elsewhere): "
      + ("ok." if conv["ok"] else "**NOT as intended**.")
  )


def _precision_text(prec: dict[str, Any]) -> str:
  return (
      f"**float32 matmul precision** (jax_default_matmul_precision="
      f"{prec['jax_default_matmul_precision']}): max relative error against float64 of a "
      f"{prec['size']}² matmul {prec['rel_error_default']:.2e} at the default precision, "
      f"{prec['rel_error_highest']:.2e} at HIGHEST: "
      + (
          "the default is reduced precision (TF32-like)."
          if prec["default_is_reduced_precision"]
          else "the default is full float32."
      )
  )


def _peaks_text(peaks: dict[str, Any]) -> str:
  return (
      f"**Matmul peaks** ({peaks['size']}², measured in this run): float32 "
      f"{_g(peaks['float32'], 1e12)} TFLOP/s at the default precision "
      f"({_g(peaks['float32_highest'], 1e12)} at HIGHEST), bfloat16 "
      f"{_g(peaks['bfloat16'], 1e12)} TFLOP/s."
  )


_CHECK_COLUMNS = (
    "dtype",
    "batch",
    "flowergan s/iter (min–max)",
    "images/s",
    "compile s",
    "TFLOP/iter",
    "floor s",
    "× floor",
    "XLA memory GiB",
    "torch eager s/iter",
    "torch.compile s/iter",
    "flowergan / eager",
    "flowergan / compile",
)


def _check_row(e: dict[str, Any]) -> str:
  if "skipped" in e:
    cells = [e["dtype"], str(e["batch_size"]), f"skipped: {e['skipped']}"]
    return "| " + " | ".join(cells + ["–"] * (len(_CHECK_COLUMNS) - 3)) + " |"
  fg = e.get("flowergan", {})
  memory = (fg.get("compiled_memory_bytes") or {}).get("total")
  compile_s = fg["lower_s"] + fg["compile_s"] if "compile_s" in fg else None
  cells = [
      e["dtype"],
      str(e["batch_size"]),
      _s_per_iter(fg),
      _g(fg.get("images_per_s"), digits=4),
      _g(compile_s),
      _g(fg.get("flops_per_iteration"), 1e12),
      _g(fg.get("floor_s")),
      _g(fg.get("time_over_floor")),
      _g(memory, 2**30),
      _s_per_iter(e.get("torch_eager")),
      _s_per_iter(e.get("torch_compile")),
      _g(e.get("flowergan_over_torch_eager")),
      _g(e.get("flowergan_over_torch_compile")),
  ]
  return "| " + " | ".join(cells) + " |"


def _iterations(result: dict[str, Any]) -> list[str]:
  entries = result.get("iterations", [])
  lines = [
      "",
      "| " + " | ".join(_CHECK_COLUMNS) + " |",
      "|" + "---|" * len(_CHECK_COLUMNS),
  ]
  lines += [_check_row(e) for e in entries]
  timed = [e for e in entries if "iteration_s" in e.get("flowergan", {})]
  if timed:
    first = timed[0]["flowergan"]
    lines += [
        "",
        f"{result['model']['config']}, {result['model']['image_size']}². One iteration = "
        f"{result['model']['n_critic']} critic steps + 1 generator "
        "step; images/s = real images the critic consumes. FLOPs: "
        f"{first['flops_source'].replace('_', ' ')}; floor = FLOPs ÷ the matmul peak of the "
        "step's dtype measured above. Compile s = trace, lower and compile. XLA memory = the "
        "compiled step's temp + arguments + outputs − aliased. Ratios: median time over median "
        "time (< 1: flowergan faster); torch timed interleaved with flowergan.",
    ]
  peak_memory = [
      (e["flowergan"].get("device_memory_bytes") or {}).get("peak_bytes_in_use") for e in timed
  ]
  if any(peak_memory):
    lines.append("")
    lines.append(
        "Device memory peak_bytes_in_use after each row (whole process, in table order): "
        + ", ".join(f"{_g(p, 2**30)} GiB" for p in peak_memory)
        + "."
    )
  torch_memory = [e.get("torch_peak_memory_bytes") for e in timed]
  if any(torch_memory):
    lines.append("")
    lines.append(
        "torch's peak CUDA memory per row (its runners of that row together): "
        + ", ".join(f"{_g(p, 2**30)} GiB" for p in torch_memory)
        + "."
    )
  lines += _torch_notes(result, entries)
  return lines


def _torch_notes(result: dict[str, Any], entries: list[dict[str, Any]]) -> list[str]:
  lines = [""]
  full = result.get("torch_compile_full_iteration")
  if full:
    if full.get("status") == "failed":
      lines.append(
          f"**torch.compile of the whole iteration** ({full.get('backend')}; the penalty's double "
          f"backward through compiled code): refused — `{full.get('error')}`. The torch.compile "
          "column times the generator under torch.compile, the critic eager."
      )
    elif full.get("status") == "ran":
      lines.append(
          f"**torch.compile of the whole iteration** ({full.get('backend')}, double backward "
          f"included) ran; first iteration {full.get('first_iteration_s', 0):.1f} s."
      )
    else:
      lines.append(f"**torch.compile of the whole iteration:** {full.get('status')}.")
  for e in entries:
    for name in ("torch_eager", "torch_compile"):
      part = e.get(name, {})
      if "error" in part or "status" in part:
        lines.append(
            f"- {name} at {e['dtype']}, batch {e['batch_size']}: "
            f"{part.get('error') or part.get('status')}"
        )
  return lines


def _tail(result: dict[str, Any]) -> list[str]:
  lines = ["", "**Sampling** (`sampling.generate_from_z`, EMA generator, images back on the host):"]
  for dtype, s in result.get("sampling", {}).items():
    if "images" not in s:
      lines.append(f"- {dtype}: {s.get('error') or s.get('status')}")
      continue
    per_batch = [
        f"batch {b}: {_g(v['images_per_s'], digits=4)} images/s"
        for b, v in s.items()
        if isinstance(v, dict)
    ]
    lines.append(f"- {dtype}, {s['images']} images: " + "; ".join(per_batch))
  inception = result.get("inception", {})
  lines.append("")
  if inception.get("status") == "measured":
    lines.append(
        f"**Inception features** (random weights, batch {inception['batch']}): "
        f"{_g(inception['images_per_s'], digits=4)} images/s."
    )
  else:
    lines.append(
        f"**Inception features:** {inception.get('status') or inception.get('error', '–')}"
    )
  errors = collect_errors(result)
  lines += ["", "**Errors:** " + ("none." if not errors else "")]
  lines += [f"- {e}" for e in errors]
  return lines


def collect_errors(tree: Any, path: str = "") -> list[str]:
  """'path: error' of every part that recorded one."""
  if isinstance(tree, list):
    return [err for i, item in enumerate(tree) for err in collect_errors(item, f"{path}[{i}]")]
  if not isinstance(tree, dict):
    return []
  out = [f"{path or 'run'}: {tree['error']}"] if isinstance(tree.get("error"), str) else []
  for key, value in tree.items():
    if key != "error":
      out += collect_errors(value, f"{path}.{key}" if path else key)
  return out


def accelerator_markdown(result: dict[str, Any]) -> str:
  """The Markdown report of `run_check`'s results (whatever part of them exists yet)."""
  return "\n".join(_check_header(result) + _checks(result) + _iterations(result) + _tail(result))
