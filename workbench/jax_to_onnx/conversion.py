"""What one JAX -> ONNX conversion produced: :class:`Conversion` (``wb.convert``'s result).

Kept apart from :mod:`~workbench.jax_to_onnx.api` so the analysis can accept a Conversion without
importing the converter's passes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import onnx

from workbench.jax_to_onnx.tracing import Traced
from workbench.onnx_io.write import DEFAULT_TENSOR_THRESHOLD, ExternalData, WrittenModel, write_model


@dataclass
class Conversion:
    """Everything one conversion produced: the model plus what analysis tools need to look inside."""

    model: onnx.ModelProto
    traced: Traced
    origins: dict[str, tuple[str, str, str]]
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)
    # ONNX value name → (equation-index path of the enclosing jaxpr, jaxpr Var): the unique form of
    # ``origins`` that the divergence locator uses to find each value's JAX counterpart
    origin_vars: dict[str, tuple[tuple[int, ...], Any]] = field(default_factory=dict)
    # ONNX value name → permutation for values the layout pass keeps channels-first: transposed by it,
    # the value equals its JAX counterpart (``origins``/``origin_vars`` hold that counterpart under this name)
    layouts: dict[str, list[int]] = field(default_factory=dict)
    enable_double_precision: bool = False  # traced with 64-bit types enabled

    def to_graph_ir(self) -> dict[str, Any]:
        """The Graph IR of what was traced (as ``wb.export_graph_ir`` would give, without tracing again)."""
        # imported here: the analysis imports this module, and it should not load the converter with it
        from workbench.jax_to_onnx.graph_ir.api import graph_ir_of_traced

        return graph_ir_of_traced(
            self.traced,
            input_names=self.input_names,
            output_names=self.output_names,
            enable_double_precision=self.enable_double_precision,
        )

    @property
    def input_names(self) -> list[str]:
        return [i.name for i in self.model.graph.input]

    @property
    def output_names(self) -> list[str]:
        return [o.name for o in self.model.graph.output]

    def save(
        self, path: str | os.PathLike[str], *, external_data_threshold: int | None = DEFAULT_TENSOR_THRESHOLD
    ) -> WrittenModel:
        """Write the model to ``path`` atomically, as ``wb.to_onnx(..., path=path)`` does.

        Tensors of at least ``external_data_threshold`` bytes go to ``<path>.data`` (``None`` keeps
        everything in one file).
        """
        policy = None if external_data_threshold is None else ExternalData(tensor_bytes=external_data_threshold)
        return write_model(self.model, path, external_data=policy)


__all__ = ["Conversion"]
