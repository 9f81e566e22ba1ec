"""Reading files that come from elsewhere: one policy for every reader of an untrusted file.

Statistics, weight caches, feature caches, noise files, JSON records and checkpoint metadata
may be empty, truncated, foreign, huge or hold NaN. Every reader here:

- checks the size before reading (`max_bytes`), and an `.npz`'s shapes and dtypes from its
  headers before any array is allocated (`max_elements`);
- refuses non-finite floats where the file promises numbers (`finite=True`);
- reports any problem as one `UntrustedFileError` line (a `FlowerganError`): what is wrong with
  which file, and the advice the caller gives (`advice`), never numpy's, zipfile's or json's own
  text (numpy's advises allowing pickles);
- reads no pickles.

A cache the program can rebuild catches `UntrustedFileError`, warns in one line and rebuilds
(`flowergan.inception`, `flowergan.inception_cache`); a file the user gave is refused.

  arrays = untrusted.read_npz(path, {"mu": (2048,), "sigma": (2048, 2048)}, advice="...")
  record = untrusted.read_json(path, max_bytes=1 << 20)
  records, bad_lines = untrusted.read_jsonl(path)
"""

from __future__ import annotations

import io
import json
import math
import os
import stat
import zipfile
import zlib
from collections.abc import Iterable, Mapping

import numpy as np

from flowergan import errors

# A statistics file (2048² float64) is 32 MiB, the Inception weights cache ~90 MiB.
DEFAULT_MAX_BYTES = 1 << 30
DEFAULT_MAX_ELEMENTS = 1 << 28  # 1 GiB of float32: no reader here needs more
MAX_JSON_BYTES = 64 << 20
# `None` in an expected shape: any length along that axis.
Shape = tuple[int | None, ...]


class UntrustedFileError(errors.FlowerganError):
  """A file from elsewhere that is damaged, foreign, too large or not finite (one line)."""


def _refuse(where: str, problem: str, advice: str) -> UntrustedFileError:
  text = f"{where} {problem}"
  return UntrustedFileError(" ".join((f"{text}: {advice}." if advice else f"{text}.").split()))


def check_size(path: str, max_bytes: int, advice: str = "") -> int:
  """The size of the regular file `path` (links followed), or one line when it is missing, not
  a regular file (a FIFO would block the reader) or larger than `max_bytes`."""
  try:
    info = os.stat(path)
  except OSError as e:
    raise _refuse(path, f"cannot be read ({e.strerror or type(e).__name__})", advice) from None
  if not stat.S_ISREG(info.st_mode):
    raise _refuse(path, "is not a regular file", advice)
  if info.st_size > max_bytes:
    raise _refuse(path, f"is {info.st_size} bytes, more than the {max_bytes} allowed", advice)
  return info.st_size


def read_bytes(path: str, max_bytes: int = DEFAULT_MAX_BYTES, advice: str = "") -> bytes:
  """The bytes of a local regular file of at most `max_bytes`."""
  check_size(path, max_bytes, advice)
  try:
    with open(path, "rb") as f:
      data = f.read(max_bytes + 1)
  except OSError as e:
    raise _refuse(path, f"cannot be read ({e.strerror or type(e).__name__})", advice) from None
  if len(data) > max_bytes:  # grew since the check
    raise _refuse(path, f"is more than the {max_bytes} bytes allowed", advice)
  return data


# ------------------------------------------------------------------------------- arrays


def check_finite(arrays: Mapping[str, np.ndarray], where: str, advice: str = "") -> None:
  """One line naming the first array of `arrays` that holds NaN or infinity, and how many.

  The one check of every reader of numbers from other people's files (npz, weight files): a
  NaN weight would sample black images, a NaN feature make FID's sqrtm run for minutes."""
  for name, value in arrays.items():
    value = np.asarray(value)
    if value.dtype.kind in "fc" and not (finite := np.isfinite(value)).all():
      bad = int(finite.size - finite.sum())
      raise _refuse(where, f"holds {bad} non-finite value(s) (NaN or infinity) in {name}", advice)


def _shape_matches(shape: tuple[int, ...], want: Shape) -> bool:
  return len(shape) == len(want) and all(w is None or s == w for s, w in zip(shape, want))


def _member_header(archive: zipfile.ZipFile, member: str) -> tuple[tuple[int, ...], np.dtype]:
  """Shape and dtype from an `.npy` member's header, reading no data."""
  with archive.open(member) as f:
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
      shape, _, dtype = np.lib.format.read_array_header_1_0(f)
    else:
      shape, _, dtype = np.lib.format.read_array_header_2_0(f)
  return shape, dtype


def read_npz(
    source: str | bytes,
    expected: Mapping[str, Shape | None],
    *,
    where: str | None = None,
    advice: str = "",
    dtype_kinds: str = "fiub",
    finite: bool = True,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
    extra_keys: bool = True,
) -> dict[str, np.ndarray]:
  """The arrays `expected` names, from an `.npz` file (a path, or its bytes).

  `expected` maps each required key to its shape (`None`: any shape; `None` along an axis: any
  length). Each array's header is checked (shape, a dtype of `dtype_kinds`, at most
  `max_elements` values in all) before any array is read; then float arrays are checked to be
  finite. Keys not named are not read (`extra_keys=False` refuses them).
  """
  where = where or (source if isinstance(source, str) else "the .npz")
  if isinstance(source, str):
    source = read_bytes(source, max_bytes, advice)
  elif len(source) > max_bytes:
    raise _refuse(where, f"is more than the {max_bytes} bytes allowed", advice)
  if not source:
    raise _refuse(where, "is empty", advice)
  try:
    with zipfile.ZipFile(io.BytesIO(source)) as archive:
      members = {name.removesuffix(".npy"): name for name in archive.namelist()}
      missing = [key for key in expected if key not in members]
      if missing:
        raise _refuse(where, f"lacks {', '.join(map(repr, missing))}", advice)
      if not extra_keys and set(members) - set(expected):
        extra = sorted(set(members) - set(expected))[:3]
        raise _refuse(where, f"holds unexpected arrays {extra}", advice)
      total = 0
      for key, want in expected.items():
        shape, dtype = _member_header(archive, members[key])
        if dtype.kind not in dtype_kinds or dtype.hasobject:
          raise _refuse(where, f"holds {key} of dtype {dtype}, not numbers", advice)
        if want is not None and not _shape_matches(shape, want):
          raise _refuse(where, f"holds {key} of shape {shape}, expected {want}", advice)
        total += math.prod(shape)
        if total > max_elements:
          raise _refuse(where, f"holds more than the {max_elements} values allowed", advice)
      arrays = {}
      for key in expected:
        with archive.open(members[key]) as f:
          arrays[key] = np.lib.format.read_array(f, allow_pickle=False)
  except UntrustedFileError:
    raise
  except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, KeyError) as e:
    raise _refuse(where, f"is damaged or not an .npz ({type(e).__name__})", advice) from None
  if finite:
    check_finite(arrays, where, advice)
  return arrays


def npz_keys(source: str | bytes, *, where: str | None = None, advice: str = "") -> list[str]:
  """The array names of an `.npz` (reading no array), or one line if it is not one."""
  where = where or (source if isinstance(source, str) else "the .npz")
  if isinstance(source, str):
    source = read_bytes(source, DEFAULT_MAX_BYTES, advice)
  try:
    with zipfile.ZipFile(io.BytesIO(source)) as archive:
      return [name.removesuffix(".npy") for name in archive.namelist()]
  except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
    raise _refuse(where, f"is damaged or not an .npz ({type(e).__name__})", advice) from None


# ------------------------------------------------------------------------------- torch files

MAX_TORCH_BYTES = 1 << 30  # the FID Inception weights are 91 MiB, the authors' generator 4.5 MiB


def torch_load_reason(error: BaseException) -> str:
  """Why `torch.load(weights_only=True)` failed, in a few words (its own texts run to pages,
  and the zip reader's stops mid-sentence when cut)."""
  text = str(error).strip()
  if "PytorchStreamReader" in text or "central directory" in text:
    return "truncated, or not the zip archive torch.save writes"
  if text.startswith("Weights only load failed"):
    return "not a pickle of tensors only"
  first = (text.splitlines() or [""])[0]
  first = first if len(first) <= 160 else first[:160] + "…"
  return f"{type(error).__name__}: {first}" if first else type(error).__name__


# ------------------------------------------------------------------------------- JSON


def _no_constants(name: str):
  raise ValueError(f"{name} is not a JSON number")


def parse_json(text: bytes | str, where: str, advice: str = ""):
  """One JSON value from `text` (UTF-8 if bytes); NaN and Infinity are refused (not JSON)."""
  try:
    if isinstance(text, bytes):
      text = text.decode("utf-8")
    return json.loads(text, parse_constant=_no_constants)
  except UnicodeDecodeError as e:
    raise _refuse(where, f"is not UTF-8 text (byte {e.start})", advice) from None
  except RecursionError:
    raise _refuse(where, "is nested too deeply", advice) from None
  except ValueError as e:  # JSONDecodeError too
    reason = " ".join(str(e).split())[:120]
    raise _refuse(where, f"is not valid JSON ({reason})", advice) from None


def read_json(path: str, *, max_bytes: int = MAX_JSON_BYTES, advice: str = ""):
  """The JSON value of a local file of at most `max_bytes` (one line if not)."""
  return parse_json(read_bytes(path, max_bytes, advice), path, advice)


def read_jsonl(path: str, *, max_bytes: int = MAX_JSON_BYTES) -> tuple[list[object], list[int]]:
  """The records of a JSON-lines file, and the numbers (from 1) of the lines that did not parse
  (not UTF-8, not JSON): one bad line costs that line, not the file. Blank lines are skipped."""
  data = read_bytes(path, max_bytes)
  records, bad = [], []
  for number, line in enumerate(data.splitlines(), start=1):
    if not line.strip():
      continue
    try:
      records.append(parse_json(line, path))
    except UntrustedFileError:
      bad.append(number)
  return records, bad


def describe_lines(numbers: Iterable[int], limit: int = 5) -> str:
  """'3, 7 and 2 more' for a warning."""
  numbers = list(numbers)
  shown = ", ".join(map(str, numbers[:limit]))
  return shown + (f" and {len(numbers) - limit} more" if len(numbers) > limit else "")
