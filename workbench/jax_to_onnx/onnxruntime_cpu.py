"""``wb.for_onnxruntime_cpu``: a copy of a model that onnxruntime's CPU provider loads.

The widening itself is :func:`workbench.jax_to_onnx.cpu_widening.widen_for_cpu`; this module only
takes the model in each form the public API accepts one (a Conversion, a ModelProto, a path, its
bytes). It sits apart from :mod:`.cpu_widening` because a Conversion's module imports the precision
pass, which imports the widening: taking a Conversion there would close a circle.
"""

from __future__ import annotations

import os

import onnx
import onnx_ir as ir

from workbench.errors import ModelSourceError
from workbench.jax_to_onnx import api
from workbench.jax_to_onnx.conversion import Conversion
from workbench.jax_to_onnx.cpu_widening import widen_for_cpu
from workbench.jax_to_onnx.program import check_save_options, write_model_to
from workbench.onnx_io import ModelSource, load_model
from workbench.onnx_io.order import sort_in_place
from workbench.onnx_io.shapes import edges_without_shape, infer_shapes
from workbench.onnx_io.runtime_ops import RUNTIME_ONNX_OPS
from workbench.onnx_io.validate import check_model_rules
from workbench.onnx_io.write import DEFAULT_TENSOR_THRESHOLD


def for_onnxruntime_cpu(
    model: Conversion | ModelSource,
    *,
    path: str | os.PathLike[str] | None = None,
    external_data_threshold: int | None = DEFAULT_TENSOR_THRESHOLD,
) -> onnx.ModelProto:
    """A copy of ``model`` that onnxruntime's CPU provider loads: each node it has no kernel for
    computes in float32 (int16: int32) between Casts, rounded back to its own type (:func:`widen_for_cpu`).

    ``model``: a :class:`~workbench.Conversion` (its model as converted), an ``onnx.ModelProto``, a
    path to an .onnx file (its external data read from the file's folder) or its serialized bytes.
    ``model`` itself is not changed. For a model converted here, ``wb.convert(..., runtime="onnxruntime-cpu")``
    does the same without a copy. ``path``: also write the copy there, as ``wb.to_onnx(path=...)`` does:
    atomically, tensors of at least ``external_data_threshold`` bytes in the side file
    ``<path>.<16 hex of its SHA-256>.data`` (``None``: one file, at most 2 GB).

    Returns:
        The copy as an ``onnx.ModelProto``, weights included; when ``path`` is given and the weights do
        not fit a protobuf (2 GB), the saved model, its weights referring to its side file (a copy of
        several GB is never made; without ``path`` such a copy is made in memory, so pass one).

    Raises:
        ModelSourceError: ``model`` is none of those (a :class:`~workbench.SpecError`).
        SpecError: ``path`` is not a path or ``external_data_threshold`` not an int >= 0 or None.
        OnnxModelError: the file or bytes are not an ONNX model, the graph breaks ONNX's structural rules
            (:func:`check_structure`), or a node has no kernel even widened.
    """
    check_save_options(path, external_data_threshold)
    copy = _private_copy(model)
    widen_for_cpu(copy)
    if path is None:
        return ir.serde.serialize_model(copy)
    write_model_to(copy, path, external_data_threshold)
    weights = sum(v.const_value.nbytes for v in copy.graph.initializers.values() if v.const_value is not None)
    if weights < api.PROTOBUF_LIMIT:
        return ir.serde.serialize_model(copy)
    return load_model(path, external_data=False).proto


def _private_copy(model: Conversion | ModelSource) -> ir.Model:
    """``model`` as an onnx-ir model this module may change, checked and typed (a Conversion's weights shared,
    not copied: the widening adds Casts and never changes a tensor)."""
    if isinstance(model, Conversion):
        return model.ir_model.clone()  # nodes and values copied, tensors shared
    if not isinstance(model, (onnx.ModelProto, str, os.PathLike, bytes, bytearray)):
        raise ModelSourceError(
            "model: expected a wb.Conversion, an onnx.ModelProto, a path to an .onnx file or its serialized "
            f"bytes, got {type(model).__name__}."
        )
    loaded = load_model(model, copy=True)  # a private copy: sorted and typed below
    proto = loaded.proto
    check_structure(proto, loaded.label)
    if edges_without_shape(proto.graph):  # the kernel probes need every value's type
        infer_shapes(proto, loaded.label)
    return ir.serde.deserialize_model(proto)


def check_structure(proto: onnx.ModelProto, label: str) -> None:
    """The checks the ONNX -> JAX reader runs before it reads a model, on ``proto`` (its nodes sorted in place,
    as onnxruntime sorts them: any order is accepted): every value read defined and no cycle, in the graph
    and its If/Loop/Scan bodies, then :func:`~workbench.onnx_io.validate.check_model_rules` (onnx.checker's
    checks, versions the installed onnx knows, ONNX element types, sizes within the limits, one producer per
    value). Without them onnx-ir rebuilt a broken graph with made-up values (a missing weight became a new
    graph input) or failed with its own ``SerdeError``, and onnxruntime refused the widened copy later, far
    from the cause. Each failure is an :class:`~workbench.errors.OnnxModelError` naming ``label``, the node or
    value and the rule.
    """
    sort_in_place(proto.graph, label)
    check_model_rules(proto, label, runtime_ops={op for op, _ in RUNTIME_ONNX_OPS})


__all__ = ["check_structure", "for_onnxruntime_cpu"]
