"""Graph building on top of onnx-ir: values, nodes, constants and runtime dimensions.

One :class:`GraphBuilder` per ONNX graph being built: the main graph, each If/Loop
body (which may read values of the enclosing graphs) and each ONNX local function
body (which may not: its constants are Constant nodes and its dimensions are read
from its own inputs). Names are unique across the whole model.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx_ir as ir

from workbench.compat import affine_in_one_symbol, evaluate_dim
from workbench.errors import ConversionError, SourceLocation
from workbench.jax_to_onnx.constant_pool import ConstantPool
from workbench.jax_to_onnx.complex_numbers import COMPLEX_DOC, is_complex, real_dtype, storage_shape, to_pairs
from workbench.jax_to_onnx.keys import physical_aval
from workbench.jax_to_onnx.source import eqn_location, eqn_user_location
from workbench.jax_to_onnx.opset_forms import adapt, needs_adapting, shape_slice


def onnx_dtype(dtype: Any) -> ir.DataType:
    """NumPy/JAX dtype → ONNX data type (bfloat16 and float8 through ml_dtypes)."""
    return _onnx_dtype(np.dtype(dtype))


@functools.lru_cache(maxsize=None)
def _onnx_dtype(np_dtype: np.dtype) -> ir.DataType:
    try:
        return ir.DataType.from_numpy(np_dtype)
    except (TypeError, ValueError) as error:
        raise ConversionError(f"dtype {np_dtype} has no ONNX equivalent") from error


@functools.lru_cache(maxsize=None)
def tensor_type(np_dtype: np.dtype) -> ir.TensorType:
    """The (shared, never mutated) ONNX tensor type of a NumPy dtype."""
    return ir.TensorType(_onnx_dtype(np_dtype))


def dim_text(dim: Any) -> int | str:
    """A JAX dimension (int or symbolic expression) as an ONNX dim (int or dim_param)."""
    if isinstance(dim, (int, np.integer)):
        return int(dim)
    return str(dim).replace(" ", "")


def _attribute(name: str, value: Any) -> ir.Attr:
    """A node attribute from a Python value, with the common types converted directly.

    ``ir.convenience.convert_attribute`` (the fallback) checks the value against onnx-ir's runtime
    Protocols first, which made attribute conversion a tenth of the lowering time; the result is the same.
    """
    if isinstance(value, np.generic):  # numpy scalars in jaxpr params (gather's np.int64 dims)
        value = value.item()
    elif isinstance(value, (list, tuple)) and any(isinstance(item, np.generic) for item in value):
        value = [item.item() if isinstance(item, np.generic) else item for item in value]
    kind = type(value)
    if kind is int or kind is bool or isinstance(value, ir.DataType):
        return ir.AttrInt64(name, int(value))
    if kind is float:
        return ir.AttrFloat32(name, value)
    if kind is str:
        return ir.AttrString(name, value)
    if (kind is list or kind is tuple) and value and all(type(item) is int for item in value):
        return ir.AttrInt64s(name, list(value))
    if isinstance(value, ir.Tensor):
        return ir.AttrTensor(name, value)
    if isinstance(value, ir.Graph):
        return ir.AttrGraph(name, value)
    return ir.convenience.convert_attribute(name, value)


def ir_shape(shape: Sequence[Any]) -> ir.Shape:
    return ir.Shape([dim_text(d) for d in shape])


def typed_like(value: ir.Value, like: ir.Value, dims: Sequence[Any]) -> ir.Value:
    """``value`` given ``like``'s element type and the shape ``dims`` (ints, names or JAX dims); returns it.

    For values that handlers and rewrite rules build in between: later passes read these types, and
    setting them here spares a per-node ONNX shape inference (the final full inference checks them).
    """
    value.type = like.type
    value.shape = ir_shape(dims)
    return value


@functools.lru_cache(maxsize=4096)
def _stored_type(shape: tuple[Any, ...], dtype: np.dtype) -> tuple[ir.TensorType, tuple[int | str, ...]]:
    """The ONNX type and dims a value of a NumPy ``dtype`` and ``shape`` is stored with (complex as real pairs).

    Cached: asked for every value the lowering binds to a jaxpr variable, mostly for a few shapes; the type
    is shared (never mutated), the dims are plain ints and names from which each value gets its own Shape.
    """
    return tensor_type(real_dtype(dtype)), tuple(dim_text(d) for d in storage_shape(tuple(shape), dtype))


def is_static(dim: Any) -> bool:
    return isinstance(dim, (int, np.integer))


def _initializer(array: np.ndarray, name: str) -> ir.Value:
    """A main-graph initializer named ``name`` holding ``array`` (GraphBuilder.const and .materialize)."""
    return ir.Value(
        name=name, type=ir.TensorType(onnx_dtype(array.dtype)), shape=ir.Shape(array.shape),
        const_value=ir.Tensor(array, name=name),
    )


@dataclass(slots=True)
class PendingConstant:
    """A main-graph constant computed while lowering (constant_eval.py) that no node has read yet.

    Keras's BatchNorm arithmetic on its constant statistics chains ~10 evaluated equations per layer, of
    which only the last two results are read by nodes: the others only feed the next evaluation. Such a
    result takes its name, its place among the initializers and its entry in the constant pool at once,
    as an initializer would, so every later name and the initializers' order are those of an initializer
    made there; the ``ir.Tensor`` and ``ir.Value`` are made when something other than an evaluation reads
    it (:meth:`GraphBuilder.materialize`). One never read is left out of the graph, as the dead-initializer
    pass would have removed it.

    A model weight is held so too (:meth:`GraphBuilder.weight`): a CNN's BatchNorm statistics are read by the
    convolution blocks as arrays (:mod:`.conv_blocks`) and folded into the kernels, never by a node. The
    lowering makes a weight an initializer before anything else reads it (an evaluation too: equations on
    weights are not evaluated, constant_eval.py).
    """

    array: np.ndarray
    name: str
    slot: int  # its index in ``ModelState.initializers``
    value: ir.Value | None = None
    weight: bool = False  # a model weight (its name is in ``ModelState.weights``)


@dataclass(frozen=True, slots=True)
class DimSource:
    """Where a symbol's runtime value is read: ``value``'s dim at ``axis`` is ``scale * symbol + offset``."""

    value: ir.Value
    axis: int
    scale: int = 1
    offset: int = 0

    @property
    def is_bare(self) -> bool:
        return self.scale == 1 and self.offset == 0


@dataclass(frozen=True, slots=True)
class Evaluation:
    """A constant equation computed while lowering: its operands (kept alive, as its key holds their ids) and results."""

    operands: tuple[Any, ...]
    results: tuple[ir.Value | PendingConstant | None, ...]  # None for a dropped output


@dataclass
class ModelState:
    """What all builders of one export share: names, main-graph initializers, functions, origins."""

    opset: int
    # the export traced with 64-bit types (enable_double_precision), for JAX evaluations while lowering
    x64: bool = False
    # common blocks (LayerNorm, gelu, softmax) are lowered as their fused op (blocks.py): part of the
    # graph optimisations, off with them (an unoptimized export lowers every equation)
    fuse_blocks: bool = True
    # the values of the attention head projections lowered in the rules' layout (attention_blocks.py)
    head_projections: set[ir.Value] = field(default_factory=set)
    # names of the initializers that hold the model's weights (never folded into other constants)
    weights: set[str] = field(default_factory=set)
    names: set[str] = field(default_factory=set)
    counter: itertools.count = field(default_factory=itertools.count)
    # main-graph initializers in creation order; evaluated constants no node has read yet hold their place
    initializers: list[ir.Value | PendingConstant] = field(default_factory=list)
    constant_cache: ConstantPool[ir.Value | PendingConstant] = field(default_factory=ConstantPool)
    functions: dict[tuple[Any, ...], ir.Function] = field(default_factory=dict)
    # (primitive, parameters, operand ids) → an evaluation of constants done before (lowering._evaluation_key)
    evaluations: dict[Any, Evaluation] = field(default_factory=dict)
    # ONNX value name → (jaxpr variable as text, primitive, source location text)
    origins: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    # ONNX value name → (path of equation indices to the enclosing jaxpr, jaxpr Var object): a key that
    # is unique even when one nested jaxpr (and so one Var) is inlined at several call sites
    origin_vars: dict[str, tuple[tuple[int, ...], Any]] = field(default_factory=dict)
    # equation indices from the top-level jaxpr down to the equation being lowered
    eqn_path: list[int] = field(default_factory=list)
    # name stacks of the equations whose nested jaxprs are being lowered (theirs are relative to these)
    scope_stack: list[str] = field(default_factory=list)
    # user locations of those equations (nested equations inside library code have none of their own)
    location_stack: list[str] = field(default_factory=list)
    # node names (a namespace of their own in ONNX: a node may share its name with its output)
    node_names: set[str] = field(default_factory=set)
    # the first name-stack component is the root module's class name (Flax Linen), not a module path
    drop_root_scope: bool = False
    # id(eqn) → what JAX's traceback and name stack would say, for equations that have neither (a jaxpr
    # rebuilt from a Graph IR): any frame, the user's own frame, the name stack text
    source_locations: dict[int, SourceLocation] = field(default_factory=dict)
    user_locations: dict[int, SourceLocation] = field(default_factory=dict)
    scopes: dict[int, str] = field(default_factory=dict)

    def graph_initializers(self) -> list[ir.Value]:
        """The initializers of the main graph: those made, in creation order (unread evaluated constants left out)."""
        return [value for value in self.initializers if isinstance(value, ir.Value)]

    def location(self, eqn: Any) -> SourceLocation | None:
        """Where ``eqn`` came from (library frames allowed): recorded for rebuilt jaxprs, else JAX's traceback."""
        recorded = self.source_locations.get(id(eqn))
        return recorded if recorded is not None else eqn_location(eqn)

    def user_location(self, eqn: Any) -> SourceLocation | None:
        """The user's own line of ``eqn``, or None: recorded for rebuilt jaxprs, else JAX's traceback."""
        if id(eqn) in self.scopes:  # a rebuilt equation: what was recorded is all there is
            return self.user_locations.get(id(eqn))
        return eqn_user_location(eqn)

    def scope(self, eqn: Any) -> str:
        """The equation's JAX name stack as text (``jit(f)/block``): recorded for rebuilt jaxprs."""
        recorded = self.scopes.get(id(eqn))
        return recorded if recorded is not None else str(eqn.source_info.name_stack)

    def fresh(self, hint: str) -> str:
        """A value name from ``hint`` that no other value of the model has."""
        return _fresh(self.names, self.counter, hint)

    def fresh_node(self, hint: str) -> str:
        """A node name from ``hint`` that no other node of the model has."""
        return _fresh(self.node_names, self.counter, hint)


def _fresh(taken: set[str], counter: itertools.count, hint: str) -> str:
    base = _sanitized(hint)
    if base not in taken:
        taken.add(base)
        return base
    while True:
        name = f"{base}_{next(counter)}"
        if name not in taken:
            taken.add(name)
            return name


@functools.lru_cache(maxsize=4096)
def _sanitized(hint: str) -> str:
    """``hint`` with characters other than letters, digits and ``._/`` replaced (hints repeat: cached)."""
    return "".join(ch if ch.isalnum() or ch in "._/" else "_" for ch in hint) or "v"


class GraphBuilder:
    """Collects the nodes of one graph and offers the helpers handlers use."""

    SMALL_CONSTANT_ELEMENTS = 16

    def __init__(
        self,
        state: ModelState,
        *,
        parent: GraphBuilder | None = None,
        is_function: bool = False,
    ) -> None:
        self.state = state
        self.parent = parent
        self.is_function = is_function
        self.nodes: list[ir.Node] = []
        self.inputs: list[ir.Value] = []
        self.local_constants: ConstantPool[ir.Value] = ConstantPool()
        # symbol name → where its runtime value is read: an axis of a value whose dim is the symbol itself or,
        # failing that, an affine expression of it (an input spec's ``8*h``)
        self.dim_sources: dict[str, DimSource] = {}
        self.dim_cache: dict[str, ir.Value] = {}
        self.used_opsets: dict[str, int] = {"": state.opset}

    # ------------------------------------------------------------------ values
    def add_input(self, name: str, aval: Any) -> ir.Value:
        """A graph input for ``aval`` (complex ones as real pairs, see complex_numbers.py)."""
        aval = physical_aval(aval)  # a PRNG key array is carried by its uint32 key data
        value = ir.Value(
            name=self.state.fresh(name),
            type=ir.TensorType(onnx_dtype(real_dtype(aval.dtype))),
            shape=ir_shape(storage_shape(tuple(aval.shape), aval.dtype)),
        )
        if is_complex(aval.dtype):
            value.doc_string = COMPLEX_DOC.format(real=real_dtype(aval.dtype).name)
        self.inputs.append(value)
        self.register_dims(value, aval.shape)
        return value

    def register_dims(self, value: ir.Value, shape: Sequence[Any]) -> None:
        """Remember where each symbolic dimension can be read at run time: from an axis that is the bare
        symbol, or else from one that is ``scale * symbol + offset`` (the first of each kind is kept)."""
        for axis, dim in enumerate(shape):
            if is_static(dim):
                continue
            text = dim_text(dim)
            known = self.dim_sources.get(text) if text.isidentifier() else None
            if text.isidentifier():
                if known is None or not known.is_bare:
                    self.dim_sources[text] = DimSource(value, axis)
                continue
            affine = affine_in_one_symbol(dim)
            if affine is not None and affine[0] not in self.dim_sources:
                symbol, scale, offset = affine
                self.dim_sources[symbol] = DimSource(value, axis, scale, offset)

    def set_type(self, value: ir.Value, aval: Any) -> None:
        """Type ``value`` as ``aval`` is stored in the graph (complex as real pairs, see complex_numbers.py,
        PRNG keys as their uint32 data, see keys.py)."""
        dtype = aval.dtype
        if isinstance(dtype, np.dtype):  # the common case, with the dims worked out once per shape and dtype
            try:
                value.type, dims = _stored_type(aval.shape, dtype)
            except TypeError:  # a dimension that cannot be hashed: worked out every time
                value.type, dims = _stored_type.__wrapped__(aval.shape, dtype)
            value.shape = ir.Shape(dims)
            return
        aval = physical_aval(aval)
        value.type = tensor_type(real_dtype(aval.dtype))
        value.shape = ir_shape(storage_shape(tuple(aval.shape), aval.dtype))

    # ------------------------------------------------------------------ nodes
    def op(
        self,
        op_type: str,
        *inputs: ir.Value | None,
        domain: str = "",
        num_outputs: int = 1,
        name_hint: str | None = None,
        **attributes: Any,
    ) -> Any:
        """Emit one node; returns its single output value, or a tuple for ``num_outputs > 1``.

        Nodes are written in their opset-18 form; below it they take the target opset's (opset_forms.py).
        """
        if needs_adapting(op_type, self.state.opset, domain):
            window = shape_slice(op_type, attributes, self.state.opset)
            if window is not None:  # Shape(start, end) before opset 15: the whole shape, then a Slice
                whole = self.op("Shape", *inputs, name_hint=name_hint)
                start, end = window
                stop = self.i64([end if end is not None else np.iinfo(np.int64).max])
                return self.op("Slice", whole, self.i64([start]), stop, self.i64([0]), name_hint=name_hint)
            adapted_inputs, attributes = adapt(op_type, list(inputs), dict(attributes), self.state.opset)
            inputs = tuple(adapted_inputs)
        attrs = [_attribute(key, value) for key, value in attributes.items() if value is not None]
        hint = name_hint or op_type.lower()
        outputs = [ir.Value(name=self.state.fresh(hint)) for _ in range(num_outputs)]
        # unnamed here: the lowering names each node after its module path, and the passes make node
        # names unique once at the end (provenance.unique_node_names)
        node = ir.Node(domain, op_type, inputs, attributes=attrs, outputs=outputs)
        self.nodes.append(node)
        if domain:
            self._use_domain(domain)
        return node.outputs[0] if num_outputs == 1 else tuple(node.outputs)

    def call_function(self, function: ir.Function, inputs: Sequence[ir.Value], num_outputs: int) -> tuple[ir.Value, ...]:
        node = ir.Node(
            function.domain,
            function.name,
            inputs,
            overload=function.overload,
            num_outputs=num_outputs,
            name=self.state.fresh_node(function.name),
        )
        for output in node.outputs:
            output.name = self.state.fresh(function.name.lower())
        self.nodes.append(node)
        self._use_domain(function.domain)
        return tuple(node.outputs)

    def _use_domain(self, domain: str) -> None:
        """Import ``domain`` where ONNX looks for it: this graph and the enclosing graphs up to the model or
        function whose opset imports cover them (a node inside a Loop body counts for the graph around the Loop)."""
        builder: GraphBuilder | None = self
        while builder is not None:
            builder.used_opsets.setdefault(domain, 1)
            if builder.is_function:
                return
            builder = builder.parent

    # --------------------------------------------------------------- constants
    def const(self, array: Any, dtype: Any = None, *, name: str | None = None) -> ir.Value:
        """A constant tensor: an initializer of the main graph, or a Constant node in a function body.

        Anonymous main-graph constants are deduplicated (so repeated blocks, e.g. the causal mask
        each attention layer builds from its own iota, read the same initializer and the common-
        subexpression pass merges their arithmetic before constant folding); in function bodies only
        small ones are. Named ones (weights) keep their name and are never merged.
        """
        np_array = np.asarray(array, dtype=dtype)
        if np_array.dtype == np.dtype("float64") and dtype is None and not isinstance(array, np.ndarray):
            np_array = np_array.astype(np.float32)
        np_array = to_pairs(np_array)  # complex constants are stored as (real, imag) pairs
        small = np_array.size <= self.SMALL_CONSTANT_ELEMENTS
        if self.is_function or self.inside_function():
            cached = self.local_constants.find(np_array) if small else None
            if cached is not None:
                return cached
            value = self.op("Constant", value=ir.Tensor(np_array), name_hint=name or "const")
            value.type = ir.TensorType(onnx_dtype(np_array.dtype))
            value.shape = ir.Shape(np_array.shape)
            if small:
                self.local_constants.add(np_array, value)
            return value
        if name is None:
            cached = self.state.constant_cache.find(np_array)
            if cached is not None:
                return self.materialize(cached) if isinstance(cached, PendingConstant) else cached
        value = _initializer(np_array, self.state.fresh(name or "const"))
        self.state.initializers.append(value)
        if name is None:
            self.state.constant_cache.add(np_array, value)
        return value

    def weight(self, array: np.ndarray, name: str) -> PendingConstant:
        """A model weight of the main graph named ``name`` (its module path), holding its slot among the
        initializers and made one on the first read (:meth:`materialize`): as :meth:`const` would make it there."""
        np_array = to_pairs(np.asarray(array))  # complex weights are stored as (real, imag) pairs
        pending = PendingConstant(np_array, self.state.fresh(name), len(self.state.initializers), weight=True)
        self.state.initializers.append(pending)
        return pending

    def evaluated_const(self, array: np.ndarray) -> ir.Value | PendingConstant:
        """An anonymous constant computed while lowering: as :meth:`const` would make it, but pending.

        In the main graph (not inside a function body) the result is a :class:`PendingConstant` taking the
        name, the initializer slot and the pool entry :meth:`const` would give it (or the equal constant
        already pooled); elsewhere it is :meth:`const`'s value.
        """
        if self.is_function or self.inside_function() or is_complex(array.dtype):
            return self.const(array)
        state = self.state
        cached = state.constant_cache.find(array)
        if cached is not None:
            return cached.value if isinstance(cached, PendingConstant) and cached.value is not None else cached
        pending = PendingConstant(array, state.fresh("const"), len(state.initializers))
        state.initializers.append(pending)
        state.constant_cache.add(array, pending)
        return pending

    def materialize(self, pending: PendingConstant) -> ir.Value:
        """The initializer of an evaluated constant, made in its own slot on the first read (see PendingConstant)."""
        if pending.value is None:
            pending.value = _initializer(pending.array, pending.name)
            self.state.initializers[pending.slot] = pending.value
        return pending.value

    def inside_function(self) -> bool:
        """Whether an enclosing builder is a function body (its constants are Constant nodes, not initializers)."""
        builder = self.parent
        while builder is not None:
            if builder.is_function:
                return True
            builder = builder.parent
        return False

    def i64(self, values: Sequence[int] | int) -> ir.Value:
        return self.const(np.asarray(values, dtype=np.int64))

    # ------------------------------------------------------ runtime dimensions
    def _find_dim_source(self, symbol: str) -> DimSource | None:
        builder: GraphBuilder | None = self
        while builder is not None:
            if symbol in builder.dim_sources:
                return builder.dim_sources[symbol]
            if builder.is_function:
                return None
            builder = builder.parent
        return None

    def dim_value(self, dim: Any) -> ir.Value:
        """A 1-D int64 tensor of length 1 holding ``dim`` at run time (Shape ops when symbolic).

        ``dim`` is an int, a JAX symbolic dimension expression, or a bare symbol name.
        """
        if is_static(dim):
            return self.i64([int(dim)])
        text = dim_text(dim)
        cached = self.dim_cache.get(text)
        if cached is not None:
            return cached
        if text.isidentifier():
            source = self._find_dim_source(text)
            if source is None:
                raise ConversionError(
                    f"symbolic dimension {text!r} is needed at run time but no input of this graph has it as "
                    "a dimension; give it to an input spec."
                )
            result = self.op("Shape", source.value, start=source.axis, end=source.axis + 1, name_hint=f"dim_{text}")
            result.type = ir.TensorType(ir.DataType.INT64)
            result.shape = ir.Shape([1])
            if source.offset:
                result = (_DimOperand(self, result) - source.offset).value
            if source.scale != 1:
                result = (_DimOperand(self, result) // source.scale).value
        else:
            result = _evaluate_dim_expression(self, dim)
        self.dim_cache[text] = result
        return result

    def shape_value(self, shape: Sequence[Any]) -> ir.Value:
        """A 1-D int64 tensor holding a whole shape (a constant when every dim is static)."""
        if all(is_static(d) for d in shape):
            return self.i64([int(d) for d in shape])
        pieces: list[ir.Value] = []
        static_run: list[int] = []
        for dim in shape:
            if is_static(dim):
                static_run.append(int(dim))
                continue
            if static_run:
                pieces.append(self.i64(static_run))
                static_run = []
            pieces.append(self.dim_value(dim))
        if static_run:
            pieces.append(self.i64(static_run))
        if len(pieces) == 1:
            return pieces[0]
        result = self.op("Concat", *pieces, axis=0, name_hint="shape")
        result.type = ir.TensorType(ir.DataType.INT64)
        result.shape = ir.Shape([len(shape)])
        return result


class _DimOperand:
    """A runtime dimension value that JAX's dimension-expression evaluator can combine with + * // % and
    max/min (``max(floordiv(T - 10, 5) + 1, 0)``, the length of a strided VALID convolution over ``T``).

    JAX's evaluator combines the operands of a max or min with ``core.max_dim``/``core.min_dim`` when it
    takes one for a symbolic dimension, which it recognises by a ``dimension_as_value`` method (and with
    ``lax.max`` otherwise, which cannot take a graph value): so this class provides that method and the
    ``max``/``rmax``/``min``/``rmin`` those functions call.
    """

    def __init__(self, builder: GraphBuilder, value: ir.Value) -> None:
        self.builder = builder
        self.value = value

    def _lift(self, other: Any) -> ir.Value:
        if isinstance(other, _DimOperand):
            return other.value
        return self.builder.i64([int(other)])

    def _binary(self, op_type: str, left: ir.Value, right: ir.Value) -> _DimOperand:
        result = self.builder.op(op_type, left, right, name_hint="dim")
        result.type = ir.TensorType(ir.DataType.INT64)
        result.shape = ir.Shape([1])
        return _DimOperand(self.builder, result)

    def __add__(self, other: Any) -> _DimOperand:
        return self._binary("Add", self.value, self._lift(other))

    def __radd__(self, other: Any) -> _DimOperand:
        return self._binary("Add", self._lift(other), self.value)

    def __sub__(self, other: Any) -> _DimOperand:
        return self._binary("Sub", self.value, self._lift(other))

    def __rsub__(self, other: Any) -> _DimOperand:
        return self._binary("Sub", self._lift(other), self.value)

    def __mul__(self, other: Any) -> _DimOperand:
        if not isinstance(other, _DimOperand) and int(other) == 1:
            return self
        return self._binary("Mul", self.value, self._lift(other))

    def __rmul__(self, other: Any) -> _DimOperand:
        return self.__mul__(other)

    def __floordiv__(self, other: Any) -> _DimOperand:
        # dims are non-negative, so truncating Div equals floor division
        return self._binary("Div", self.value, self._lift(other))

    def __rfloordiv__(self, other: Any) -> _DimOperand:
        return self._binary("Div", self._lift(other), self.value)

    def __divmod__(self, other: Any) -> tuple[_DimOperand, _DimOperand]:
        return self._floor_divmod(self.value, self._lift(other))

    def __rdivmod__(self, other: Any) -> tuple[_DimOperand, _DimOperand]:
        return self._floor_divmod(self._lift(other), self.value)

    def _floor_divmod(self, left: ir.Value, right: ir.Value) -> tuple[_DimOperand, _DimOperand]:
        """Python floor semantics, which JAX's evaluator uses (expressions like floordiv(-H, 2) are negative):
        integer Mod with fmod=0 takes the divisor's sign, so (left - mod) / right is exact."""
        remainder = self._binary("Mod", left, right)
        return self._binary("Div", self._binary("Sub", left, remainder.value).value, right), remainder

    def __mod__(self, other: Any) -> _DimOperand:
        return self._binary("Mod", self.value, self._lift(other))

    def dimension_as_value(self) -> ir.Value:
        """The dimension as a graph value (what marks a symbolic dimension to JAX's evaluator)."""
        return self.value

    def max(self, other: Any) -> _DimOperand:
        return self._binary("Max", self.value, self._lift(other))

    def rmax(self, other: Any) -> _DimOperand:
        return self._binary("Max", self._lift(other), self.value)

    def min(self, other: Any) -> _DimOperand:
        return self._binary("Min", self.value, self._lift(other))

    def rmin(self, other: Any) -> _DimOperand:
        return self._binary("Min", self._lift(other), self.value)

    def __rmod__(self, other: Any) -> _DimOperand:
        return self._binary("Mod", self._lift(other), self.value)


def _evaluate_dim_expression(builder: GraphBuilder, dim: Any) -> ir.Value:
    """Build a composite dimension such as ``H*W`` or ``2*B+1`` from its symbols' runtime values."""
    env = {symbol: _DimOperand(builder, builder.dim_value(symbol)) for symbol in dim.get_vars()}
    result = evaluate_dim(dim, env)
    if isinstance(result, _DimOperand):
        return result.value
    return builder.i64([int(result)])
