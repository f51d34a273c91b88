"""Suite-wide guards, and XLA compiling the tests' programs quickly."""

from __future__ import annotations

import os

# The tests run thousands of tiny XLA programs once each (reference outputs, model initializers,
# generated JAX code), so compiling them is most of the suite's CPU time, and most of that is LLVM
# optimizing code that then runs for microseconds. Without those optimizations the programs compute
# the same operations (XLA's fast-math stays off either way) and the tests need about half the CPU time
# (tests/jax_to_onnx/test_model_zoo.py + test_export_graphs.py: 54 s -> 29 s). Set before JAX
# creates its CPU backend; flags the user already set win.
_FAST_COMPILE_FLAGS = ("--xla_backend_optimization_level=0", "--xla_llvm_disable_expensive_passes=true")
_user_flags = os.environ.get("XLA_FLAGS", "")
os.environ["XLA_FLAGS"] = " ".join(
    [_user_flags] + [f for f in _FAST_COMPILE_FLAGS if f.split("=")[0] not in _user_flags]
).strip()

import jax  # noqa: E402 - after XLA_FLAGS
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _no_global_x64_leak():
    """Nothing may flip JAX's global 64-bit mode: it silently changes every later test in the worker."""
    before = bool(jax.config.jax_enable_x64)
    yield
    after = bool(jax.config.jax_enable_x64)
    if after != before:
        jax.config.update("jax_enable_x64", before)
        pytest.fail(f"the test changed jax_enable_x64 globally ({before} -> {after})")
