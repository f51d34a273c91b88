"""Fixtures shared by the analysis tests."""

from __future__ import annotations

from collections.abc import Iterator

import jax.numpy as jnp
import pytest
from jax.extend.core import Primitive

from workbench.jax_to_onnx.registry import REGISTRY, handler


@pytest.fixture
def softsign_without_lowering() -> Iterator[Primitive]:
    """A library primitive with an impl and an ONNX handler (Softsign) but no XLA lowering: a function using it
    does not compile whole under jax.jit, so the analysis falls back to running it op by op."""
    softsign_p = Primitive("workbench_test_softsign_no_lowering")
    softsign_p.def_impl(lambda x: x / (1 + jnp.abs(x)))
    softsign_p.def_abstract_eval(lambda x: x)

    @handler(softsign_p.name, onnx_ops=("Softsign",))
    def softsign(ctx, x):
        return ctx.op("Softsign", x)

    try:
        yield softsign_p
    finally:
        REGISTRY.unregister(softsign_p.name)
