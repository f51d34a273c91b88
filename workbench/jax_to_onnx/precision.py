"""Half-precision export: float32 weights and compute in float16 or bfloat16, the sensitive ops kept float32.

``wb.to_onnx(fn, specs, precision="float16")`` converts as usual, then this pass rewrites the typed
onnx-ir graph: every float32 initializer only read by half-precision nodes is stored in half
precision (converted when it is written or run, one tensor at a time), every node outside
:data:`FLOAT32_OPS` computes in half precision, and a ``Cast`` sits on each edge where the two
meet. With ``keep_io_types`` (the default) the model still takes and returns float32, as
deployment code expects.

Which ops stay float32 follows the usual mixed-precision practice (PyTorch autocast's float32
list, onnxruntime's transformer float16 tool): normalisations (their variance is a sum of
squares), softmax and log-softmax (exponentials normalised by a sum), and the reductions that
accumulate (sums, means, products, norms, cumulative sums); ops that create values from a
``dtype`` attribute (random numbers, ``EyeLike``) and the ONNX-ML ops are left alone. Nodes with
subgraphs (If, Loop, Scan) and calls of model-local functions keep their bodies as they are, in
float32. Which inputs of a node may be half precision is read from the op's ONNX schema (``Resize``'s
``scales`` stays float32, ``Shape`` takes either).

Why a pass of our own: onnxconverter-common's ``convert_float_to_float16`` and onnxruntime's
``transformers.float16`` (the libraries for this job) work on a ModelProto, so they need the whole
model, weights included, as a second copy in memory (and protobuf caps it at 2 GB), and they do
not write bfloat16. This pass works on the onnx-ir model the conversion already holds and converts
each weight only when it is written, and uses the same idea of a block list with casts at its edges.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import ml_dtypes
import numpy as np
import onnx
import onnx_ir as ir

from workbench.errors import SpecError, check_flag
from workbench.jax_to_onnx.casts import CastInserter
from workbench.jax_to_onnx.cpu_widening import RUNTIMES, has_narrow_types, widen_for_cpu, widen_invalid_types
from workbench.onnx_io.cpu_kernels import element_type
from workbench.onnx_io.schema_types import schema_types

#: Ops computed in float32 in a half-precision export (each listed with why).
FLOAT32_OPS: frozenset[str] = frozenset({
    # normalisations: a mean of squares loses the small variances in half precision
    "LayerNormalization", "BatchNormalization", "InstanceNormalization", "GroupNormalization",
    "RMSNormalization", "LpNormalization", "MeanVarianceNormalization",
    # softmax: exponentials divided by their sum
    "Softmax", "LogSoftmax",
    # reductions that accumulate many terms
    "ReduceSum", "ReduceMean", "ReduceProd", "ReduceSumSquare", "ReduceL1", "ReduceL2",
    "ReduceLogSum", "ReduceLogSumExp", "CumSum",
    # values made from a dtype attribute, which this pass does not rewrite
    "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Bernoulli", "Multinomial",
    "EyeLike",
})  # fmt: skip

#: Ops that only move data: their output takes the precision of their input (no cast is added just
#: to move float32 data around, e.g. between a float32 input and a float32 ``Scan``).
DATA_MOVEMENT_OPS: frozenset[str] = frozenset({
    "Identity", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Expand", "Tile", "Slice",
    "Gather", "GatherElements", "GatherND", "Concat", "Split", "Pad", "DepthToSpace", "SpaceToDepth", "Where",
})  # fmt: skip

PRECISIONS = ("float32", "float16", "bfloat16")
_LOW_TYPES = {"float16": ir.DataType.FLOAT16, "bfloat16": ir.DataType.BFLOAT16}
_NUMPY_LOW = {ir.DataType.FLOAT16: np.dtype(np.float16), ir.DataType.BFLOAT16: np.dtype(ml_dtypes.bfloat16)}
_DEFAULT_DOMAINS = ("", "ai.onnx")


@dataclass(frozen=True)
class Precision:
    """The precision a model computes in: ``dtype`` (``"float32"``, ``"float16"`` or ``"bfloat16"``),
    whether its inputs and outputs stay float32 (``keep_io_types``), and the ops kept float32.

    ``runtime="onnxruntime-cpu"`` also makes the model load in onnxruntime's CPU provider: each node
    it has no kernel for (bfloat16 MatMul, int16 Max...) computes in float32 (int32) between Casts
    (:mod:`workbench.jax_to_onnx.cpu_widening`), whether the narrow types came from ``dtype`` or from
    the function itself.
    """

    dtype: str = "float32"
    keep_io_types: bool = True
    float32_ops: frozenset[str] = field(default=FLOAT32_OPS)
    runtime: str | None = None

    def __post_init__(self) -> None:
        if self.dtype not in PRECISIONS:
            raise SpecError(f"precision: expected one of {', '.join(map(repr, PRECISIONS))}, got {self.dtype!r}.")
        check_flag("keep_io_types", self.keep_io_types)
        object.__setattr__(self, "float32_ops", _op_names(self.float32_ops))
        if self.runtime is not None and self.runtime not in RUNTIMES:
            raise SpecError(
                f"runtime: expected None (the model as traced) or one of {', '.join(map(repr, RUNTIMES))}, "
                f"got {self.runtime!r}."
            )

    @classmethod
    def of(cls, precision: str | Precision, keep_io_types: bool = True, runtime: str | None = None) -> Precision:
        """A Precision from ``wb.to_onnx``'s arguments (a dtype name, or a Precision used as it is;
        a ``runtime`` given beside it is added to it)."""
        if isinstance(precision, Precision):
            # only a keep_io_types other than the default True can be told from not given: True beside
            # wb.Precision(..., keep_io_types=False) is the default, and the Precision says what it wants
            if keep_io_types is not True and keep_io_types is not precision.keep_io_types:
                raise SpecError(
                    f"keep_io_types={keep_io_types!r} given beside a wb.Precision({precision.dtype!r}) whose keep_io_types "
                    f"is {precision.keep_io_types!r}; set it in the Precision: "
                    f"wb.Precision({precision.dtype!r}, keep_io_types={keep_io_types!r})."
                )
            return precision if runtime is None else replace(precision, runtime=runtime)
        if not isinstance(precision, str):
            raise SpecError(f"precision: expected a dtype name or a wb.Precision, got {type(precision).__name__}.")
        return cls(precision, keep_io_types, runtime=runtime)

    @property
    def is_half(self) -> bool:
        return self.dtype != "float32"

    @property
    def rewrites(self) -> bool:
        """Whether the model is rewritten at all (a half precision, or a runtime to load in)."""
        return self.is_half or self.runtime is not None


def _op_names(ops: object) -> frozenset[str]:
    """``float32_ops`` as a frozenset of ONNX operator names; a bare string (a set of its letters) or a name
    onnx does not define (a typo, which would keep nothing in float32) is a SpecError."""
    expected = f"float32_ops: expected a set of ONNX operator names such as {{'Softmax', 'LayerNormalization'}}, got {ops!r}."
    if isinstance(ops, (str, bytes)) or not isinstance(ops, (set, frozenset, list, tuple)):
        raise SpecError(expected)
    try:
        names = frozenset(ops)
    except TypeError as error:  # an unhashable item (a list inside the list)
        raise SpecError(expected) from error
    unknown = sorted(str(name) for name in names if not isinstance(name, str) or not onnx.defs.has(name))
    if unknown:
        raise SpecError(
            f"float32_ops: {unknown} are not ONNX operators (onnx.defs, the ai.onnx domain); give operator names "
            "as ONNX writes them, e.g. 'Softmax', 'ReduceMean' (the default is workbench.jax_to_onnx.precision.FLOAT32_OPS)."
        )
    return names


def needs_rewrite(model: ir.Model, precision: Precision) -> bool:
    """Whether :func:`convert_precision` has anything to do: a half precision, a runtime, or narrow types."""
    return precision.rewrites or has_narrow_types(model)


def convert_precision(model: ir.Model, precision: Precision) -> None:
    """Rewrite the typed ``model`` to compute in ``precision``, in place: the half-precision rewrite, then
    the nodes ONNX does not take in a narrow type computed wider (always), then those the runtime has no
    kernel for (:mod:`workbench.jax_to_onnx.cpu_widening`)."""
    if precision.is_half:
        _Rewrite(model, _LOW_TYPES[precision.dtype], precision).run()
    widen_invalid_types(model)
    if precision.runtime == "onnxruntime-cpu":
        widen_for_cpu(model)


@dataclass
class _Slots:
    """Where a node may hold half-precision values, and the float type its outputs get."""

    inputs: set[int]
    outputs: set[int]
    either: set[int]  # inputs that take float32 or half precision as they come
    moves_data: bool
    output_type: ir.DataType  # the low type; FLOAT when the node only moves float32 data


class _Rewrite:
    """One pass over the main graph: decide each node's precision, retype values, cast where they meet."""

    def __init__(self, model: ir.Model, low: ir.DataType, precision: Precision) -> None:
        self.graph = model.graph
        self.low = low
        self.precision = precision
        self.opset = next((v for d, v in model.opset_imports.items() if d in _DEFAULT_DOMAINS), 21)
        self.plan: dict[ir.Node, _Slots | None] = {}
        self.casts = CastInserter(self.graph)

    # -- which nodes compute in half precision, and which of their inputs/outputs may be half
    def slots(self, node: ir.Node) -> _Slots | None:
        """Which inputs/outputs of ``node`` may hold half-precision values; None for a float32 node."""
        if node.domain not in _DEFAULT_DOMAINS or node.op_type in self.precision.float32_ops:
            return None
        if any(a.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS) for a in node.attributes.values()):
            return None
        types = schema_types(node, self.opset)
        if types is None:
            return None  # not an ONNX op at this opset (a model-local function)
        in_types, out_types = list(types.inputs), list(types.outputs)

        def low_ok(type_str: str | None) -> bool:
            return type_str is not None and types.takes(type_str, self.low)

        # an input whose type variable binds nothing else (Shape's data) takes either float type as it is
        either = {i for i, t in enumerate(in_types) if t in types.allowed and in_types.count(t) == 1 and t not in out_types}
        return _Slots(
            inputs={i for i, t in enumerate(in_types) if low_ok(t)} - either,
            outputs={i for i, t in enumerate(out_types) if low_ok(t)},
            either=either,
            moves_data=node.op_type in DATA_MOVEMENT_OPS,
            output_type=self.low,
        )

    def run(self) -> None:
        graph, low = self.graph, self.low
        plan = {node: self.slots(node) for node in graph}
        self.plan = plan
        flexible = {v for v in graph.initializers.values() if element_type(v) == ir.DataType.FLOAT and not v.is_graph_output()}
        if not self.precision.keep_io_types:
            for value in graph.inputs:
                if element_type(value) == ir.DataType.FLOAT:
                    value.type = ir.TensorType(low)
        for node, slots in plan.items():  # in graph order: a node's inputs are decided before it
            if slots is None:
                continue
            if slots.moves_data:
                floats = [v for i, v in enumerate(node.inputs) if i in slots.inputs and v is not None
                          and element_type(v) in (ir.DataType.FLOAT, low)]  # fmt: skip
                fixed = [v for v in floats if v not in flexible]
                # float32 data stays float32 while it is only moved; weights follow what reads them
                if fixed and all(element_type(v) == ir.DataType.FLOAT for v in fixed):
                    slots.output_type = ir.DataType.FLOAT
            for index in slots.outputs:
                value = node.outputs[index]
                if element_type(value) == ir.DataType.FLOAT and slots.output_type == low:
                    value.type = ir.TensorType(low)
            if slots.output_type == low:
                self.rewrite_attributes(node)
        for value in flexible:
            if value.uses() and all(self.wants(use.node, use.idx) in (low, None) for use in value.uses()):
                self.store_low(value)
        for value in self.float_values():
            for use in list(value.uses()):
                wanted = self.wants(use.node, use.idx)
                if wanted is not None and wanted != element_type(value):
                    use.node.replace_input_with(use.idx, self.casts.cast(value, wanted))
        if self.precision.keep_io_types:
            for index, value in enumerate(graph.outputs):
                if element_type(value) == low:
                    graph.outputs[index] = self.casts.cast_output(value, ir.DataType.FLOAT)

    def wants(self, node: ir.Node, index: int) -> ir.DataType | None:
        """The float type input ``index`` of ``node`` needs (``None``: either will do)."""
        slots = self.plan.get(node)  # nodes inside subgraphs are not in the plan: their bodies stay float32
        if slots is None:
            return ir.DataType.FLOAT
        if index in slots.either:
            return None
        return slots.output_type if index in slots.inputs else ir.DataType.FLOAT

    def float_values(self) -> list[ir.Value]:
        values = [*self.graph.inputs, *self.graph.initializers.values()]
        values += [o for node in self.graph for o in node.outputs]
        return [v for v in values if element_type(v) in (ir.DataType.FLOAT, self.low)]

    # -- rewrites
    def rewrite_attributes(self, node: ir.Node) -> None:
        """Attributes that make float32 values: ``Cast``'s ``to``, ``Constant``/``ConstantOfShape`` tensors."""
        if node.op_type == "Cast" and node.attributes["to"].as_int() == ir.DataType.FLOAT:
            node.attributes["to"] = ir.AttrInt64("to", self.low)
        for name in ("value", "value_float", "value_floats"):
            attribute = node.attributes.get(name)
            if attribute is None or node.op_type not in ("Constant", "ConstantOfShape"):
                continue
            if attribute.type == ir.AttributeType.TENSOR and attribute.as_tensor().dtype == ir.DataType.FLOAT:
                array = _to_low(attribute.as_tensor().numpy(), _NUMPY_LOW[self.low])
                node.attributes[name] = ir.AttrTensor(name, ir.Tensor(array))
            elif attribute.type in (ir.AttributeType.FLOAT, ir.AttributeType.FLOATS):
                array = _to_low(np.asarray(attribute.value, dtype=np.float32), _NUMPY_LOW[self.low])
                del node.attributes[name]
                node.attributes["value"] = ir.AttrTensor("value", ir.Tensor(array))

    def store_low(self, value: ir.Value) -> None:
        """Keep the float32 array; convert it when the tensor is written or run (one tensor at a time)."""
        tensor = value.const_value
        assert tensor is not None
        target = _NUMPY_LOW[self.low]
        value.const_value = ir.LazyTensor(
            _converter(tensor, target), dtype=self.low, shape=tensor.shape, name=value.name
        )
        value.type = ir.TensorType(self.low)


def _to_low(array: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``array`` in ``dtype``, magnitudes beyond its range saturated to its largest finite value.

    float16 ends at 65504: the large negative numbers JAX uses for masks (float32's minimum)
    become float16's minimum rather than -inf (infinities in masks turn into NaN in a sum).
    """
    limit = float(ml_dtypes.finfo(dtype).max)
    if array.size and np.issubdtype(array.dtype, np.floating) and (array.max() > limit or array.min() < -limit):
        array = np.where(np.isinf(array), array, np.clip(array, -limit, limit))
    return array.astype(dtype)


def _converter(tensor: ir.TensorProtocol, dtype: np.dtype) -> Callable[[], ir.Tensor]:
    return lambda: ir.Tensor(_to_low(tensor.numpy(), dtype))


__all__ = ["FLOAT32_OPS", "PRECISIONS", "Precision", "convert_precision", "needs_rewrite"]
