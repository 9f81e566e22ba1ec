"""The error of the data sources (`flowergan.data_sources` and the sources it reads).

Its own module because every source raises it and `data_sources` imports the sources.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from flowergan import cli, errors


class DataError(errors.FlowerganError):
  """A data problem the user must fix; the message is one line saying how."""


def data_error(msg: str) -> DataError:
  """`DataError` with `msg` collapsed to one line."""
  return DataError(cli.one_line(msg))


def did_you_mean(name: str, choices: Sequence[str]) -> str:
  """` (did you mean 'a' or 'b'?)`: the names of `choices` close to `name`; empty if none is.

  The one hint of every "class not found" message, whether the class was looked up among a
  folder's subfolders or a TFDS data set's labels.
  """
  close = difflib.get_close_matches(name, [str(c) for c in choices], n=3)  # ratio >= 0.6
  if not close:
    return ""
  return f" (did you mean {' or '.join(repr(c) for c in close)}?)"
