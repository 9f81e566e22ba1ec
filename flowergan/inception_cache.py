"""The FID Inception network of an evaluation, and the workdir's cache of the real features.

`load_inception` loads the network of a weights file (`inception.load_weights`);
`stored_inception` that of a run's own `eval.inception_weights` when the file is on this machine.
`real_features` gives the real images' 2048-d features, from `workdir/eval/inception_real_<key>.npz`
when that holds the features of the same data (fingerprint), protocol and weights (sha256).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os

import numpy as np
from absl import logging

from flowergan import default_config, inception, storage, untrusted

INCEPTION_FLAG = "--inception / config.eval.inception_weights"


@dataclasses.dataclass(frozen=True)
class InceptionNetwork:
  """The FID Inception network's variables and the sha256 of the weights file they came from."""

  variables: dict
  weights_sha256: str


def load_inception(path: str, cache_dir: str = default_config.CACHE_DIR) -> InceptionNetwork:
  """The network of the weights file `path` (`inception.load_weights`; `InceptionError`)."""
  variables = inception.load_weights(path, cache_dir, flag=INCEPTION_FLAG)
  return InceptionNetwork(variables, storage.file_sha256(os.path.expanduser(path)))


def stored_inception(eval_config, cache_dir: str) -> InceptionNetwork | None:
  """The network of the run's own `eval.inception_weights`, or None when unset or not here.

  A run trained on another machine names a file of that machine: its evaluation goes on without
  the Inception metrics (a warning says how to add them) instead of stopping, and
  `eval_config.inception_weights` is cleared so that `evaluate` does not look for it again.
  """
  path = eval_config.inception_weights
  if not path:
    return None
  if not os.path.isfile(os.path.expanduser(path)):
    logging.warning(
        "the run's config names the Inception weights %s, which are not on this machine: the "
        "Inception metrics are left out (pass --inception=FILE to measure them).",
        path,
    )
    eval_config.inception_weights = ""
    return None
  return load_inception(path, cache_dir)


def real_features(
    network: InceptionNetwork,
    real: np.ndarray,
    fingerprint: str,
    workdir: str | os.PathLike | None,
    batch_size: int,
) -> tuple[np.ndarray, bool]:
  """The Inception features (N, 2048) of the real images `real` (uint8), and whether cached.

  Read from the workdir's cache when it holds those of the same data (`fingerprint`), protocol
  and weights; else computed, and written there when `workdir` is given (process 0).
  """
  cache = _real_inception_cache(workdir, fingerprint, network.weights_sha256) if workdir else None
  features = _read_real_features(cache, len(real))
  if features is not None:
    return features, True
  features = inception.extract_features(network.variables, real, batch_size=batch_size)
  if cache is not None:
    _write_real_features(cache, features)
  return features, False


def _real_inception_cache(workdir, fingerprint: str, weights_sha256: str):
  """Where the real images' Inception features of these data, protocol and weights live."""
  key = hashlib.sha256(f"{fingerprint}|{inception.PROTOCOL}|{weights_sha256}".encode())
  return storage.workdir_path(workdir) / "eval" / f"inception_real_{key.hexdigest()[:16]}.npz"


def _read_real_features(path, num: int) -> np.ndarray | None:
  """The cached features (num, 2048), or None when absent or damaged (then recomputed, with a
  one-line warning): read through `flowergan.untrusted` (shape checked before reading, finite)."""
  if path is None or not storage.exists(path):
    return None
  where = f"the Inception feature cache {path}"
  try:
    data = storage.read_bytes(path)
    arrays = untrusted.read_npz(
        data, {"features": (num, inception.FEATURE_DIM)}, where=where, dtype_kinds="f"
    )
  except (OSError, untrusted.UntrustedFileError) as e:
    logging.warning("%s; computing the features again.", " ".join(str(e).split()).rstrip("."))
    return None
  return np.asarray(arrays["features"], np.float32)


def _write_real_features(path, features: np.ndarray) -> None:
  storage.save_npz(path, {"features": features, "protocol": np.asarray(inception.PROTOCOL)})
