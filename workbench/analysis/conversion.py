"""``wb.convert``'s result with its verification shortcuts: check, parity, locate, optimize, to_jax,
to_graph_ir.

The conversion itself (the model held without a copy of its weights, ``.model``, ``.save``,
``.run``) is :class:`workbench.jax_to_onnx.conversion.Conversion`. Its shortcuts reach the
analysis (``wb.check``, ``wb.parity``, ``wb.locate_divergence``) and the other conversion
direction (``wb.to_jax``), which the conversion package may not import (docs/architecture.md:
a direction imports nothing above it and not the other direction). So they live here, on a
subclass: every function that takes a Conversion takes this one, and ``wb.convert`` returns it.
Each shortcut is the public function called on this conversion, so it traces nothing again.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec

from workbench.analysis.locate import DivergenceReport, locate_divergence
from workbench.analysis.parity import ParityReport, parity
from workbench.analysis.report import CompatibilityReport, report_of_traced
from workbench.jax_to_onnx import api
from workbench.jax_to_onnx import conversion as base
from workbench.jax_to_onnx.graph_ir.api import graph_ir_of_traced

P = ParamSpec("P")


class Conversion(base.Conversion):
    """A conversion (see :class:`workbench.jax_to_onnx.conversion.Conversion`) that also verifies itself."""

    @classmethod
    def of(cls, conversion: base.Conversion) -> Conversion:
        """The same conversion (same model, same arrays: nothing copied) with the shortcuts."""
        if isinstance(conversion, cls):
            return conversion
        return cls(**{f.name: getattr(conversion, f.name) for f in dataclasses.fields(base.Conversion)})

    def to_graph_ir(self) -> dict[str, Any]:
        """``wb.export_graph_ir`` of the converted function, from this conversion's jaxpr (no second trace)."""
        return graph_ir_of_traced(
            self.traced,
            input_names=self.input_names,
            output_names=self.output_names,
            enable_double_precision=self.enable_double_precision,
        )

    def check(self) -> CompatibilityReport:
        """``wb.check`` of the converted function, from this conversion's jaxpr (no second trace)."""
        return report_of_traced(self.traced)

    def parity(self, inputs: Sequence[Any] | None = None, **options: Any) -> ParityReport:
        """``wb.parity(conversion, inputs, ...)``: this model in onnxruntime (its weights handed over in
        memory) against the traced function in JAX; tolerances follow the model's precision."""
        return parity(self, None, inputs, **options)

    def locate_divergence(self, inputs: Sequence[Any] | None = None, **options: Any) -> DivergenceReport:
        """``wb.locate_divergence(conversion, inputs, ...)``: the first node whose value drifts from JAX."""
        return locate_divergence(self, None, inputs, **options)

    def optimize(self) -> Conversion:
        """This conversion with the graph optimisations ``wb.convert(optimize=True)`` runs.

        Returns ``self`` when it was converted with them; otherwise a new conversion lowered again
        from this one's trace (nothing is traced again) with the same opset, names and precision.
        """
        if self.optimized:
            return self
        again = api.convert_traced(
            self.traced,
            opset=self.opset,
            input_names=self.input_names,
            output_names=self.output_names,
            enable_double_precision=self.enable_double_precision,
            optimize=True,
            precision=self.precision,
        )
        return Conversion.of(again)

    def to_jax(self) -> tuple[Any, dict[str, Any]]:
        """``wb.to_jax`` of the model: ``(forward, params)`` in JAX again (from the saved file when there is one)."""
        from workbench.onnx_to_jax.api import to_jax

        return to_jax(self.path if self.path is not None else self.model)


def _with_shortcuts(convert_function: Callable[P, base.Conversion]) -> Callable[P, Conversion]:
    """``convert_function`` returning its conversion with the shortcuts: the same parameters, checked
    by type checkers through the ParamSpec, so the keyword list is written once (in the conversion package)."""

    @functools.wraps(convert_function)
    def convert(*args: P.args, **kwargs: P.kwargs) -> Conversion:
        return Conversion.of(convert_function(*args, **kwargs))

    convert.__doc__ = (
        "Convert ``fn`` and return the :class:`Conversion`: ``.model`` (a ModelProto), ``.save(path)``, "
        "``.run(*inputs)``, ``.check()``, ``.parity()``, ``.locate_divergence()``, ``.optimize()``, "
        "``.to_jax()``, and the jaxpr, value origins and timings. Arguments as for ``wb.to_onnx``.\n\n"
        "The conversion holds the model without copying its weights (they stay the traced arrays), so "
        "``wb.convert(fn, specs).save(path)`` exports a model of several GB with little extra memory."
    )
    return convert


convert = _with_shortcuts(api.convert)


__all__ = ["Conversion", "convert"]
