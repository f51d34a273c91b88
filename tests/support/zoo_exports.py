"""Each zoo model built and exported once per test process, shared by the tests that check that export.

``tests/jax_to_onnx/test_model_zoo.py`` (parity), ``tests/jax_to_onnx/test_export_graphs.py``
(structure) and ``tests/onnx_to_jax/test_round_trip.py`` (ONNX -> JAX) all check the same
conversion, ``wb.to_onnx(model.fn, model.inputs)`` of the zoo builder with its defaults; building a
model (its random initialization compiles every initializer with XLA) and converting it again in
each file only repeated the work. The cache holds the built model and its export's bytes; each test
gets its own ModelProto parsed from them, so no test can change what another one checks.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import onnx

import workbench as wb
from workbench import zoo


@dataclass(frozen=True)
class ZooExport:
    """A zoo model as built by its builder (shared: do not modify) and its default export."""

    name: str
    built: zoo.ZooModel
    serialized: bytes

    @property
    def model(self) -> onnx.ModelProto:
        """A fresh copy of the export (parsing these small models takes milliseconds)."""
        return onnx.load_from_string(self.serialized)


@functools.cache
def zoo_export(name: str, *, opset: int | None = None) -> ZooExport:
    """The zoo model ``name`` built with its defaults (once per process) and converted with
    ``wb.to_onnx`` at ``opset`` (the default one when None), once per process and opset."""
    built = _built(name)
    return ZooExport(name, built, wb.to_onnx(built.fn, built.inputs, opset=opset).SerializeToString())


@functools.cache
def _built(name: str) -> zoo.ZooModel:
    return zoo.ZOO[name]()


@functools.cache
def reference(name: str) -> Callable[..., Any]:
    """The zoo model in inference mode under ``jax.jit``, the reference outputs are computed with.

    One compiled program instead of one compilation per primitive in eager mode; a closure because
    Equinox modules are not hashable (``jax.jit`` of the module itself would need them to be).
    """
    import jax

    eval_fn = zoo_export(name).built.eval_fn()
    return jax.jit(lambda *args: eval_fn(*args))
