"""Test setup: 8 fake CPU devices so the data-parallel code runs on a laptop."""

import os

# Must happen before jax is imported anywhere, so multi-device code paths are exercised on CPU.
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# TensorFlow (input pipeline only) must never see an accelerator or spam the log.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
