"""What one JAX -> ONNX conversion produced: :class:`Conversion` (``wb.convert``'s result).

Like torch's ``ONNXProgram``, it holds the model and lets you save and run it without converting
again. The model is kept as an onnx-ir model whose weights are the very arrays the function was
traced with: nothing is copied, so a model of any size costs no memory beyond its graph. A
``ModelProto`` (which holds a copy of every weight, and which protobuf cannot serialize above
2 GB) is made only when :attr:`Conversion.model` is read; :meth:`Conversion.save` streams the
weights from the arrays to the side file and :meth:`Conversion.run` hands them to onnxruntime in
memory.

The verification shortcuts (``.check()``, ``.parity()``, ``.locate_divergence()``, ``.to_jax()``,
``.optimize()``) need the analysis layer and the other conversion direction, which sit above or
beside this package (docs/architecture.md): they are methods of
:class:`workbench.analysis.conversion.Conversion`, the subclass ``wb.convert`` returns. This module
stays apart from :mod:`~workbench.jax_to_onnx.api` so the analysis can accept a Conversion without
importing the converter's passes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import numpy as np
import onnx
import onnx_ir as ir

from workbench.jax_to_onnx.complex_numbers import to_pairs
from workbench.jax_to_onnx.precision import Precision
from workbench.jax_to_onnx.tracing import Traced
from workbench.onnx_io import (
    ExternalData,
    Session,
    WrittenModel,
    open_session,
    write_model,
)
from workbench.onnx_io.write import DEFAULT_TENSOR_THRESHOLD

#: How reports and errors name a model run from a conversion (as ``<ModelProto>`` names a proto).
CONVERSION_LABEL = "<Conversion>"


@dataclass(eq=False)
class Conversion:
    """Everything one conversion produced: the model plus what analysis tools need to look inside.

    ``ir_model`` is the model (onnx-ir; its weights are the traced arrays); ``traced`` the jaxpr and
    the normalized callable; ``origins``/``origin_vars`` map ONNX value names back to the jaxpr;
    ``weights`` names the initializers that hold the function's parameters; ``path`` is where
    :meth:`save` last wrote the model.
    """

    ir_model: ir.Model
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
    weights: frozenset[str] = frozenset()
    optimized: bool = True
    precision: Precision = field(default_factory=Precision)
    opset: int | None = None
    path: Path | None = None
    _proto: onnx.ModelProto | None = field(default=None, repr=False)
    # the weight-less ModelProto the conversion's ONNX check validated (passes/shapes.py), from which the
    # first read of ``model`` makes the ModelProto without serializing the graph again; then dropped
    _checked: onnx.ModelProto | None = field(default=None, repr=False)
    _session: Session | None = field(default=None, repr=False)

    # ------------------------------------------------------------------ the model
    @property
    def model(self) -> onnx.ModelProto:
        """The model as an ``onnx.ModelProto`` (made on first use, then kept: it holds a copy of every weight).

        It is the model as converted: made from the graph the conversion serialized for its ONNX check,
        so changes made to ``ir_model`` afterwards are not in it (``to_proto(conversion.ir_model)`` has them).
        """
        if self._proto is None:
            checked, self._checked = self._checked, None
            self._proto = to_proto(self.ir_model) if checked is None else proto_from_checked(self.ir_model, checked)
        return self._proto

    @property
    def input_names(self) -> list[str]:
        return [value.name for value in self.ir_model.graph.inputs if value.name]

    @property
    def output_names(self) -> list[str]:
        return [value.name for value in self.ir_model.graph.outputs if value.name]

    @property
    def weight_bytes(self) -> int:
        """Bytes of all initializers (the weights and the constants the graph keeps), as stored in the model."""
        return sum(value.const_value.nbytes for value in self.ir_model.graph.initializers.values()
                   if value.const_value is not None)  # fmt: skip

    def save(
        self,
        path: str | os.PathLike[str],
        *,
        external_data: bool = True,
        external_data_threshold: int | None = DEFAULT_TENSOR_THRESHOLD,
    ) -> WrittenModel:
        """Write the model to ``path`` atomically (model and side file as one unit); returns the files written.

        With ``external_data`` (the default) tensors of at least ``external_data_threshold`` bytes
        (1 MiB) go to the side file ``<path>.<16 hex of its SHA-256>.data``, as
        ``wb.to_onnx(path=...)`` does; ``external_data=False`` or a threshold of ``None`` keeps
        everything in one file (at most 2 GB). The weights go from the
        arrays to the file one at a time: saving needs no memory beyond the largest weight.
        """
        if not isinstance(external_data, bool):
            raise ValueError(f"external_data: expected True or False, got {external_data!r}.")
        if external_data_threshold is not None and (
            isinstance(external_data_threshold, bool) or not isinstance(external_data_threshold, int)
        ):
            raise ValueError(f"external_data_threshold: expected bytes (an int) or None, got {external_data_threshold!r}.")
        policy = None
        if external_data and external_data_threshold is not None:
            policy = ExternalData(tensor_bytes=external_data_threshold)
        written = write_model(self.ir_model, path, external_data=policy)
        self.path = written.model
        return written

    # ------------------------------------------------------------------ running
    def session(self) -> Session:
        """The onnxruntime session of this model (opened on first use, weights handed over in memory)."""
        if self._session is None:
            self._session = open_session(self.ir_model, label=CONVERSION_LABEL)
        return self._session

    def run(self, *inputs: Any) -> list[np.ndarray]:
        """Run the model in onnxruntime on the function's own arguments; one array per graph output.

        ``inputs`` are what the function takes (arrays, or pytrees of them, in the order of its
        positional parameters); they are flattened as the conversion flattened them, complex
        arrays become (real, imag) pairs as the model carries them.
        """
        leaves = jax.tree_util.tree_leaves(list(inputs))
        names = self.input_names
        if len(leaves) != len(names):
            raise ValueError(
                f"run: the model takes {len(names)} input array(s) {names}, got {len(leaves)} "
                "(pass the function's positional arguments)."
            )
        feeds = {name: to_pairs(np.asarray(leaf)) for name, leaf in zip(names, leaves, strict=True)}
        return self.session().run(feeds)


def to_proto(model: ir.Model) -> onnx.ModelProto:
    """``model`` as a ModelProto (every weight copied in), ``value_info`` listing only computed values."""
    proto = ir.serde.serialize_model(model)
    _drop_initializer_infos(proto.graph)
    return proto


def proto_from_checked(model: ir.Model, checked: onnx.ModelProto) -> onnx.ModelProto:
    """:func:`to_proto` of ``model``, made from ``checked``, taken over (changed in place and returned).

    ``checked`` is what the shape step (passes/shapes.py) serialized of ``model`` for the ONNX checker:
    the same graph with its large initializers as typed graph inputs without data. Here those inputs
    become initializers again, their tensors serialized in initializer order, so the nodes and types are
    not serialized a second time (a sixth of a transformer's warm conversion); the result is equal to
    ``to_proto(model)`` byte for byte (tests/jax_to_onnx/test_conversion.py compares them).
    Written by hand because onnx-ir serializes a model whole; what it reorders is onnx-ir's own output.
    """
    graph, proto = model.graph, checked.graph
    kept = len(graph.inputs)
    moved = {info.name for info in proto.input[kept:]}
    initializers = graph.initializers
    if proto.quantization_annotation or model.device_configurations or not all(
        name in initializers and initializers[name].const_value is not None for name in moved
    ):
        return to_proto(model)  # not the shape step's view of this model: serialized whole
    del proto.input[kept:]
    small = {tensor.name: index for index, tensor in enumerate(proto.initializer)}
    count = len(proto.initializer)
    for value in initializers.values():
        tensor = value.const_value
        if tensor is None:
            continue  # onnx-ir leaves such an initializer out (and says so)
        target = proto.initializer.add()
        if value.name in moved:
            tensor.name = value.name  # as onnx-ir's serialize_graph_into does
            ir.serde.serialize_tensor_into(target, from_=tensor)
        else:
            target.CopyFrom(proto.initializer[small[value.name]])
    del proto.initializer[:count]
    _drop_initializer_infos(proto)
    return checked


def _drop_initializer_infos(graph: onnx.GraphProto) -> None:
    """Drop the ``value_info`` of initializers: onnx-ir lists each one's type there; their tensors already say it."""
    initializers = {tensor.name for tensor in graph.initializer}
    if any(info.name in initializers for info in graph.value_info):
        kept = [info for info in graph.value_info if info.name not in initializers]
        del graph.value_info[:]
        graph.value_info.extend(kept)


__all__ = ["CONVERSION_LABEL", "Conversion", "proto_from_checked", "to_proto"]
