"""Test configuration: 4 fake CPU devices, float64 available, strict dtype promotion, and
reproducible property tests (every Hypothesis test draws the same examples on every run:
``derandomize``, which also leaves out the example database)."""

import os

from hypothesis import settings

settings.register_profile("jrnn", derandomize=True)
settings.load_profile("jrnn")

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")
