"""Fixtures shared by the analysis tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
import pytest
from jax.extend.core import Primitive

from workbench.jax_to_onnx.registry import REGISTRY, handler

T = TypeVar("T")


def _count_compilations(run: Callable[[], T]) -> tuple[T, int]:
    """``run()``'s result and the number of XLA programs compiled meanwhile."""
    compiles: list[str] = []

    def count(event: str, _seconds: float, **_: Any) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append(event)

    jax.monitoring.register_event_duration_secs_listener(count)
    try:
        return run(), len(compiles)
    finally:
        jax.monitoring.unregister_event_duration_listener(count)


@pytest.fixture
def count_compilations() -> Callable[[Callable[[], T]], tuple[T, int]]:
    """``count_compilations(run)``: ``run()``'s result and how many XLA programs it compiled (the analysis
    compiles whole functions, not one program per operation)."""
    return _count_compilations


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
