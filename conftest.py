"""Doctests of the jrnn package run as a user sees them: float32 and JAX's default dtype
promotion, also when tests/conftest.py (float64 available, strict promotion) is loaded in
the same pytest session."""

import jax
import pytest
from _pytest.doctest import DoctestItem


@pytest.fixture(autouse=True)
def _default_jax_config_for_doctests(request):
    if not isinstance(request.node, DoctestItem):
        yield
        return
    with jax.enable_x64(False), jax.numpy_dtype_promotion("standard"):
        yield
