"""The `tiny` variant of configs/cwgan128.py, loaded by path as `config_flags` loads it."""

from __future__ import annotations

import importlib.util
import os
import pathlib

import ml_collections

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIG_FILE = REPO / "configs" / "cwgan128.py"


def load_config_file(path: str | os.PathLike, arg: str | None = None) -> ml_collections.ConfigDict:
  """`get_config(arg)` of a config file (`get_config()` without `arg`)."""
  spec = importlib.util.spec_from_file_location(pathlib.Path(path).stem, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config() if arg is None else module.get_config(arg)


def get_config(
    image_size: int = 16, cache_dir: str | os.PathLike | None = None
) -> ml_collections.ConfigDict:
  """`configs/cwgan128.py:tiny` at `image_size`, with its synthetic data cached in `cache_dir`."""
  config = load_config_file(CONFIG_FILE, "tiny")
  config.data.image_size = image_size
  if cache_dir is not None:
    config.data.cache_dir = str(cache_dir)
  return config
