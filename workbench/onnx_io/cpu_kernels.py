"""Which nodes onnxruntime's CPU provider has a kernel for, measured on the installed onnxruntime.

onnxruntime picks a kernel by op, domain, opset version and the element types bound to the op's
type variables; a node with no match fails at session creation with ``NOT_IMPLEMENTED : Could not
find an implementation for MatMul(13) node with name '...'``. The CPU provider has almost no
bfloat16 kernels (MatMul, Add, Max, Relu, Equal, Exp... all missing in onnxruntime 1.31; Transpose,
Reshape, Identity and Cast exist) and no int16 kernel for Max/Min/Relu; it loads every float16 node,
casting around the ones it lacks itself.

The answer is probed, not written down: :func:`has_cpu_kernel` builds a one-node model from the
node itself (its attributes, its input and output types and shapes), asks onnxruntime for a session
with graph optimisations off, and keeps the verdict per signature (domain, op, opset, input and
output element types; a narrow-typed node's attributes too) for the life of the process. A few kernels
load with a narrow type and refuse it when run (float16 ScatterND with ``reduction="add"``), so a
bfloat16/float16/int16 node that loads is also run once on zeros (its symbolic dimensions 1).

Why lazily rather than a table in code: the answer depends on the installed onnxruntime, the op's opset version and the exact type binding
(MatMul's, Max's and Relu's int16 differ), and a table of every op at every version needs a valid
one-node model per op (required attributes, arities) that the model's own node already is. A probe
costs about a millisecond, and a model has tens of distinct signatures.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import onnx
import onnx_ir as ir

# onnxruntime's message for a node no kernel of the provider takes
_MISSING_KERNEL = re.compile(
    r"Could not find an implementation for (?P<op>[\w.]+)\((?P<version>\d+)\) node with name '(?P<node>[^']*)'"
)
_DEFAULT_DOMAINS = ("", "ai.onnx")
# a kernel's refusal of a type when run (onnxruntime names the type as MLFloat16, BFloat16, int16_t...)
_REFUSED_TYPE = re.compile(r"[^:\n]*\b(data )?type (is )?not supported[^\n]*", re.IGNORECASE)
# the narrow types' names in such a refusal: only these are widened, so only these get the advice to widen
_NARROW_TYPE_NAME = re.compile(r"\b(MLFloat16|BFloat16|int16_t|u?int16|b?float16)\b", re.IGNORECASE)
# the most zero elements a run probe hands a node
_PROBE_ELEMENTS = 1 << 20
#: The types a model computes in that the CPU provider lacks kernels for: the ones a run probe checks.
NARROW_TYPES = frozenset({ir.DataType.BFLOAT16, ir.DataType.FLOAT16, ir.DataType.INT16})


@dataclass(frozen=True)
class KernelSignature:
    """What onnxruntime chooses a kernel by: the op, its opset and its input/output element types."""

    domain: str
    op_type: str
    opset: int
    inputs: tuple[ir.DataType | None, ...]  # None: an omitted optional input
    outputs: tuple[ir.DataType | None, ...]
    # a narrow-typed node's attributes: some kernels refuse a type only for some attribute values when
    # run (float16 ScatterND with reduction="add"); empty for the others, whose kernel choice they do not change
    attributes: tuple[tuple[str, object], ...] = ()

    def describe(self) -> str:
        """E.g. ``MatMul (opset 21) on bfloat16, bfloat16 -> bfloat16``."""
        op = self.op_type if self.domain in _DEFAULT_DOMAINS else f"{self.domain}.{self.op_type}"
        ins = ", ".join(type_name(t) for t in self.inputs)
        outs = ", ".join(type_name(t) for t in self.outputs)
        return f"{op} (opset {self.opset}) on {ins} -> {outs}"


@dataclass(frozen=True)
class MissingKernel:
    """onnxruntime's report that no kernel takes a node: the op, its since-version, the node's name."""

    op_type: str
    version: int
    node: str


# one verdict per signature for the life of the process (see the module docstring)
_VERDICTS: dict[KernelSignature, bool] = {}


def type_name(dtype: ir.DataType | None) -> str:
    """``bfloat16``, ``int16``... (``-`` for an omitted input)."""
    if dtype is None:
        return "-"
    return {ir.DataType.FLOAT: "float32", ir.DataType.DOUBLE: "float64"}.get(dtype, dtype.name.lower())


def missing_kernel_in(message: str) -> MissingKernel | None:
    """The node onnxruntime's load error says has no kernel, or None for any other error."""
    match = _MISSING_KERNEL.search(message)
    if match is None:
        return None
    return MissingKernel(match.group("op"), int(match.group("version")), match.group("node"))


def signature(node: ir.Node, opsets: dict[str, int]) -> KernelSignature | None:
    """The signature ``node`` is chosen a kernel by, or None when a type is unknown (nothing to probe)."""
    if node.graph is None:
        return None
    opset = opsets.get(node.domain)
    if opset is None and node.domain in _DEFAULT_DOMAINS:  # the default domain imported under either name
        opset = next((opsets[d] for d in _DEFAULT_DOMAINS if d in opsets), None)
    if opset is None:
        return None
    ins = tuple(None if v is None else element_type(v) for v in node.inputs)
    outs = tuple(element_type(v) for v in node.outputs)
    if any(v is not None and t is None for v, t in zip(node.inputs, ins, strict=True)) or None in outs:
        return None
    attributes = _attribute_key(node) if any(t in NARROW_TYPES for t in (*ins, *outs)) else ()
    return KernelSignature(node.domain, node.op_type, opset, ins, outs, attributes)


def _attribute_key(node: ir.Node) -> tuple[tuple[str, object], ...]:
    """The attributes as hashable values (a tensor by its type and shape, not its data)."""
    key: list[tuple[str, object]] = []
    for name, attribute in sorted(node.attributes.items()):
        value = attribute.value
        if attribute.type == ir.AttributeType.TENSOR:
            value = (str(value.dtype), tuple(value.shape))
        elif isinstance(value, (list, tuple)):
            value = tuple(value) if all(isinstance(v, (int, float, str)) for v in value) else attribute.type.name
        elif not isinstance(value, (int, float, str)):
            value = attribute.type.name
        key.append((name, value))
    return tuple(key)


def has_cpu_kernel(node: ir.Node, opsets: dict[str, int]) -> bool:
    """Whether the installed onnxruntime's CPU provider has a kernel for ``node`` as it is typed.

    Nodes that cannot be probed alone (with a subgraph, a call of a model-local function, an
    unknown type) count as having one: their own session creation will say otherwise.
    """
    key = signature(node, opsets)
    if key is None or any(a.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS) for a in node.attributes.values()):
        return True
    if key not in _VERDICTS:
        _VERDICTS[key] = _probe(node, opsets)
    return _VERDICTS[key]


def without_cpu_kernel(model: ir.Model, nodes: Iterable[ir.Node] | None = None) -> list[ir.Node]:
    """The nodes of ``model`` (its If/Loop/Scan bodies included; or of ``nodes``) the CPU provider has no kernel for."""
    opsets = dict(model.opset_imports)
    local = {(f.domain, f.name) for f in model.functions.values()}
    chosen = model.graph.all_nodes() if nodes is None else nodes
    return [n for n in chosen if (n.domain, n.op_type) not in local and not has_cpu_kernel(n, opsets)]


def _probe(node: ir.Node, opsets: dict[str, int]) -> bool:
    """Ask onnxruntime for a session on a model of ``node`` alone (optimisations off)."""
    import onnxruntime as ort

    proto = ir.serde.serialize_node(node)
    proto.name = "probe"
    inputs: dict[str, onnx.ValueInfoProto] = {}
    for value in node.inputs:
        if value is not None and value.name not in inputs:
            inputs[value.name] = ir.serde.serialize_value(value)
    outputs = [ir.serde.serialize_value(v) for v in node.outputs if v.name]
    graph = onnx.helper.make_graph([proto], "probe", list(inputs.values()), outputs)
    imports = [onnx.helper.make_opsetid(domain, version) for domain, version in opsets.items()]
    model = onnx.helper.make_model(graph, opset_imports=imports, ir_version=min(onnx.IR_VERSION, 10))
    options = ort.SessionOptions()
    options.log_severity_level = 4  # a refusal is the answer, not an error to log
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own pybind exception types
        return missing_kernel_in(str(error)) is None  # another fault is not a missing kernel
    if not any(element_type(v) in NARROW_TYPES for v in (*node.inputs, *node.outputs) if v is not None):
        return True
    # a few kernels take a narrow type at load and refuse it when run (float16 ScatterND with reduction
    # "add"): run the node once on zeros, its symbolic dimensions 1 (zero indices are in range)
    feeds = _zero_feeds(list({v.name: v for v in node.inputs if v is not None}.values()), ort)
    if feeds is None:
        return True
    try:
        session.run_with_ort_values([v.name for v in outputs], feeds)
    except Exception as error:  # onnxruntime raises its own pybind exception types
        return refused_type_in(str(error)) is None
    return True


def refused_type_in(message: str) -> str | None:
    """onnxruntime's run-time refusal of a narrow type (bfloat16, float16, int16) by a kernel it has
    (``MLFloat16 data type is not supported with ScatterND opset 16 when reduction is 'add'``), or None for
    any other error, a refusal of another type included."""
    match = _REFUSED_TYPE.search(message)
    if match is None or _NARROW_TYPE_NAME.search(match.group(0)) is None:
        return None  # not a refusal, or of a type widening does not change (a float32 model's failure)
    return match.group(0)


def _zero_feeds(values: list[ir.Value], ort: object) -> dict[str, object] | None:
    """OrtValues of zeros for ``values`` (symbolic dimensions 1); None when a rank is unknown, a type
    has no fixed width or the zeros would be large (the probe then trusts session creation alone)."""
    feeds: dict[str, object] = {}
    total = 0
    for value in values:
        dtype = element_type(value)
        if value.shape is None or dtype is None or dtype.itemsize not in (1, 2, 4, 8) or dtype == ir.DataType.STRING:
            return None
        shape = tuple(d if isinstance(d, int) else 1 for d in value.shape)
        total += int(np.prod(shape, dtype=np.int64))
        if total > _PROBE_ELEMENTS:
            return None
        bits = np.zeros(shape, dtype=f"uint{8 * int(dtype.itemsize)}")  # zero bits are zero in every type
        feeds[value.name] = ort.OrtValue.ortvalue_from_numpy_with_onnx_type(bits, onnx_element_type=int(dtype))
    return feeds


def element_type(value: ir.Value) -> ir.DataType | None:
    """``value``'s element type, or None when it is not a tensor of a known type."""
    return value.type.dtype if isinstance(value.type, ir.TensorType) else None


__all__ = ["NARROW_TYPES", "KernelSignature", "MissingKernel", "element_type", "has_cpu_kernel", "missing_kernel_in", "refused_type_in",
           "signature", "type_name", "without_cpu_kernel"]
