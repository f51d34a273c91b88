"""Suite-wide guards."""

from __future__ import annotations

import jax
import pytest


@pytest.fixture(autouse=True)
def _no_global_x64_leak():
    """Nothing may flip JAX's global 64-bit mode: it silently changes every later test in the worker."""
    before = bool(jax.config.jax_enable_x64)
    yield
    after = bool(jax.config.jax_enable_x64)
    if after != before:
        jax.config.update("jax_enable_x64", before)
        pytest.fail(f"the test changed jax_enable_x64 globally ({before} -> {after})")
