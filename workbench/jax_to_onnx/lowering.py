"""The equation walker: lowers a (Closed)Jaxpr into a GraphBuilder, one handler call per equation.

Handlers receive a :class:`LoweringContext` (the builder plus this equation's avals and
source location) and the ONNX values of the equation's operands, with the primitive's
parameters as keyword arguments: ``rule(ctx, *operands, **eqn.params)``. A handler names the
parameters it takes (keyword-only); an equation parameter it does not name fails the conversion
with a ConversionError naming the primitive and the parameter, never silently ignored.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx_ir as ir
import jax
from jax.extend import core as jex_core

from workbench.errors import (
    ConversionError,
    SourceLocation,
    UnsupportedPrimitive,
    UnsupportedPrimitiveError,
    WorkbenchError,
)
from workbench.jax_to_onnx import constant_eval
from workbench.jax_to_onnx.block_plan import plan_blocks
from workbench.jax_to_onnx.blocks import Block
from workbench.jax_to_onnx.builder import Evaluation, GraphBuilder, PendingConstant, is_static, onnx_dtype
from workbench.jax_to_onnx.complex_numbers import touches_complex
from workbench.jax_to_onnx.dims import same_shape
from workbench.jax_to_onnx.keys import KEY_NATIVE, host_array, involves_keys, physical_aval, physical_equation
from workbench.jax_to_onnx.passes.layout import RELAID_KEY
from workbench.jax_to_onnx.provenance import MODULE_KEY, PRIMITIVE_KEY, SOURCE_KEY, inherit
from workbench.jax_to_onnx.registry import REGISTRY, HandlerInfo, unknown_parameters
from workbench.jax_to_onnx.relaid import EQUIVARIANT, WINDOW_PARAMETERS, Relaid, composed, held_shape, is_identity
from workbench.jax_to_onnx.scopes import module_path
from workbench.jax_to_onnx.source import eqn_location, eqn_user_location
from workbench.jax_to_onnx.unsupported import reason_without_handler


@dataclass(frozen=True)
class LoweringContext:
    """What a handler may use while lowering one equation."""

    builder: GraphBuilder
    eqn: Any
    avals_in: tuple[Any, ...]
    avals_out: tuple[Any, ...]

    @property
    def aval_out(self) -> Any:
        return self.avals_out[0]

    @property
    def location(self) -> SourceLocation | None:
        return self.builder.state.location(self.eqn)

    def op(self, op_type: str, *inputs: ir.Value | None, **kwargs: Any) -> Any:
        return self.builder.op(op_type, *inputs, **kwargs)

    def const(self, array: Any, dtype: Any = None) -> ir.Value:
        return self.builder.const(array, dtype)

    def i64(self, values: Sequence[int] | int) -> ir.Value:
        return self.builder.i64(values)

    def scalar(self, value: Any, dtype: Any) -> ir.Value:
        """A 0-d constant of the given dtype (e.g. the operand's dtype)."""
        return self.builder.const(np.asarray(value, dtype=dtype))

    def constant_values(self, *values: ir.Value) -> list[np.ndarray] | None:
        """The NumPy arrays of ``values`` when every one is a constant of the graph, else None.

        Handlers whose decomposition is many nodes (bit-pattern arithmetic) compute constant operands
        directly, rather than leave hundreds of nodes for constant folding.
        """
        arrays = []
        for value in values:
            tensor = value.const_value
            if tensor is None:
                return None
            arrays.append(tensor.numpy())
        return arrays

    def cast(self, value: ir.Value, aval: Any, dtype: Any) -> ir.Value:
        """``value`` (of abstract value ``aval``) converted to ``dtype``, typed; itself when it already is.

        For operands that JAX lets differ in dtype (dot_general, conv): they are converted the way
        XLA's CPU lowering converts them before the operation.
        """
        if np.dtype(aval.dtype) == np.dtype(dtype):
            return value
        result = self.builder.op("Cast", value, to=onnx_dtype(dtype))
        self.builder.set_type(result, jax.core.ShapedArray(aval.shape, dtype))
        return result

    def shape_value(self, shape: Sequence[Any]) -> ir.Value:
        return self.builder.shape_value(shape)

    def dim_value(self, dim: Any) -> ir.Value:
        return self.builder.dim_value(dim)

    @property
    def opset(self) -> int:
        return self.builder.state.opset

    def lower_inline(self, closed_jaxpr: Any, inputs: Sequence[ir.Value]) -> list[ir.Value]:
        """Inline a nested ClosedJaxpr (jit, custom_jvp_call, remat...) into the current graph."""
        jaxpr, consts = _split_closed(closed_jaxpr)
        const_values = [self.builder.const(host_array(c)) for c in consts]
        with _nested_scope(self.builder, self.eqn):
            return lower_jaxpr(self.builder, jaxpr, const_values, list(inputs))

    def subgraph(
        self, closed_jaxpr: Any, input_avals: Sequence[Any], *, name: str, input_names: Sequence[str] | None = None
    ) -> ir.Graph:
        """Build an ONNX subgraph (If/Loop/Scan body) from a jaxpr; it may read enclosing values."""
        jaxpr, consts = _split_closed(closed_jaxpr)
        child = GraphBuilder(self.builder.state, parent=self.builder)
        names = input_names or [f"{name}_in{i}" for i in range(len(input_avals))]
        inputs = [child.add_input(n, aval) for n, aval in zip(names, input_avals, strict=True)]
        const_values = [self.builder.const(host_array(c)) for c in consts]
        with _nested_scope(self.builder, self.eqn):
            outputs = lower_jaxpr(child, jaxpr, const_values, inputs[len(inputs) - len(jaxpr.invars) :])
        return finish_subgraph(child, inputs, outputs, name)


@contextlib.contextmanager
def _nested_scope(builder: GraphBuilder, eqn: Any) -> Iterator[None]:
    """Equations of a nested jaxpr carry name stacks relative to the equation that holds it."""
    state = builder.state
    state.scope_stack.append(state.scope(eqn))
    location = state.user_location(eqn)
    state.location_stack.append(str(location) if location else (state.location_stack[-1] if state.location_stack else ""))
    try:
        yield
    finally:
        state.scope_stack.pop()
        state.location_stack.pop()


def finish_subgraph(child: GraphBuilder, inputs: list[ir.Value], outputs: list[ir.Value], name: str) -> ir.Graph:
    """Wrap a child builder's nodes as an ir.Graph; outputs that are not produced inside get an Identity."""
    produced = {id(output) for node in child.nodes for output in node.outputs}
    final_outputs: list[ir.Value] = []
    seen: set[int] = set()
    for value in outputs:
        if id(value) not in produced or id(value) in seen:
            copy = child.op("Identity", value, name_hint=f"{name}_out")
            copy.type, copy.shape = value.type, value.shape
            value = copy
        seen.add(id(value))
        final_outputs.append(value)
    return ir.Graph(inputs, final_outputs, nodes=child.nodes, name=child.state.fresh(name))


def _split_closed(closed_or_open: Any) -> tuple[Any, list[Any]]:
    if isinstance(closed_or_open, jex_core.ClosedJaxpr):
        return closed_or_open.jaxpr, list(closed_or_open.consts)
    return closed_or_open, []


# what a jaxpr variable is bound to while lowering: its ONNX value, a constant computed for it that no node
# has read yet (made an initializer on its first read by a node: builder.PendingConstant), or its value held in
# another layout (a convolution's result kept channels-first: relaid.Relaid)
Env = dict[Any, ir.Value | PendingConstant | Relaid]


def _read(builder: GraphBuilder, env: Env, atom: Any) -> ir.Value:
    value = _read_operand(builder, env, atom)
    return builder.materialize(value) if isinstance(value, PendingConstant) else value


def _read_operand(builder: GraphBuilder, env: Env, atom: Any) -> ir.Value | PendingConstant:
    """The value bound to ``atom`` (in the jaxpr's layout), or the pending constant computed for it (not made an
    initializer yet)."""
    if isinstance(atom, jex_core.Literal):
        return builder.const(np.asarray(atom.val, dtype=atom.aval.dtype))
    try:
        value = env[atom]
    except KeyError as error:
        raise ConversionError(f"jaxpr variable {atom} is used before it is defined") from error
    if isinstance(value, Relaid):
        return _restored(builder, value, atom)
    if isinstance(value, PendingConstant) and value.weight:
        return builder.materialize(value)  # a weight: read as an initializer (never evaluated as a constant)
    return value


def _restored(builder: GraphBuilder, record: Relaid, var: Any) -> ir.Value:
    """The variable's value in the jaxpr's layout: one Transpose of the held value, made on the first read (with
    the provenance of the node computing the held value, as the layout pass gives the Transposes it leaves)."""
    if record.restored is None:
        restored = builder.op("Transpose", record.value, perm=list(record.perm))
        producer = record.value.producer()
        if producer is not None:
            inherit([restored.producer()], producer)
        restored.name = record.name
        builder.set_type(restored, var.aval)
        record.restored = restored
    return record.restored


class _Reader:
    """What a block's ``emit`` reads the atoms outside it with (:class:`.relaid.Reader`); ``held_operand``, when
    given, is read as held (an element-wise block computing in its operand's layout)."""

    __slots__ = ("builder", "env", "held_operand")

    def __init__(self, builder: GraphBuilder, env: Env, held_operand: Any = None) -> None:
        self.builder, self.env, self.held_operand = builder, env, held_operand

    def __call__(self, atom: Any) -> ir.Value:
        if self.held_operand is not None and atom is self.held_operand:
            return self.held(atom)[0]
        return _read(self.builder, self.env, atom)

    def held(self, atom: Any) -> tuple[ir.Value, tuple[int, ...]]:
        if not isinstance(atom, jex_core.Literal):
            entry = self.env.get(atom)
            if isinstance(entry, Relaid):
                return entry.value, entry.perm
        return _read(self.builder, self.env, atom), tuple(range(len(atom.aval.shape)))

    def constant(self, atom: Any) -> np.ndarray | None:
        if not isinstance(atom, jex_core.Literal):
            entry = self.env.get(atom)
            if isinstance(entry, PendingConstant):
                return entry.array
        tensor = _read(self.builder, self.env, atom).const_value
        return None if tensor is None else tensor.numpy()

    def laid(self, atom: Any, perm: Sequence[int]) -> ir.Value:
        value, held = self.held(atom)
        order = composed(held, perm)
        if is_identity(order):
            return value
        laid = self.builder.op("Transpose", value, perm=list(order))
        laid.type = value.type
        laid.shape = None if value.shape is None else ir.Shape([value.shape[axis] for axis in order])
        return laid


def lower_jaxpr(
    builder: GraphBuilder, jaxpr: Any, consts: Sequence[ir.Value], args: Sequence[ir.Value | PendingConstant]
) -> list[ir.Value]:
    """Lower every equation of ``jaxpr``; returns the ONNX values of its outputs. ``args`` may hold weights
    not made initializers yet (:meth:`.builder.GraphBuilder.weight`)."""
    env: Env = {}
    if len(consts) != len(jaxpr.constvars) or len(args) != len(jaxpr.invars):
        raise ConversionError(
            f"jaxpr expects {len(jaxpr.constvars)} constants and {len(jaxpr.invars)} inputs, "
            f"got {len(consts)} and {len(args)}"
        )
    env.update(zip(jaxpr.constvars, consts, strict=True))
    env.update(zip(jaxpr.invars, args, strict=True))
    path = builder.state.eqn_path
    blocks = plan_blocks(jaxpr, builder.state.opset) if builder.state.fuse_blocks else {}
    members = {member for block in blocks.values() for member in block.members}
    for index, eqn in enumerate(jaxpr.eqns):
        if index in members:
            if index in blocks:
                _lower_block(builder, env, jaxpr.eqns, blocks[index])
            continue
        path.append(index)
        try:
            if eqn.primitive.name not in EQUIVARIANT or not _lower_held(builder, env, eqn):
                _lower_eqn(builder, env, eqn)
        finally:
            path.pop()
    return [_read(builder, env, atom) for atom in jaxpr.outvars]


def _lower_block(builder: GraphBuilder, env: Env, eqns: Sequence[Any], block: Block) -> None:
    """Lower a recognised block (:mod:`.blocks`) as its one fused op, recorded as its last equation's result.

    A block whose operand is a constant is lowered equation by equation instead (each then folds), and
    so is one that declines on the values it reads (``Block.declines``). An element-wise block whose operand
    is held in another layout computes in that layout (:mod:`.relaid`).
    """
    path = builder.state.eqn_path
    read = _Reader(builder, env)
    operand, layout = read.held(block.operand)
    if operand.const_value is not None or (block.declines is not None and block.declines(builder, read)):
        for index in block.members:
            path.append(index)
            try:
                _lower_eqn(builder, env, eqns[index])
            finally:
                path.pop()
        return
    held = block.elementwise and not is_identity(layout)
    if held:
        read = _Reader(builder, env, held_operand=block.operand)
    root = eqns[block.root]
    path.append(block.root)
    try:
        first_new_node = len(builder.nodes)
        try:
            result = block.emit(builder, read)
        except WorkbenchError:
            raise
        except Exception as error:
            raise ConversionError(f"lowering the {block.kind} block ending at {root.primitive.name!r} failed: "
                                  f"{type(error).__name__}: {error}") from error
        own: set[int] = set()  # nodes annotated as made by another member equation (Block.origins)
        provenance: dict[int, tuple[str, str]] = {}  # member index → its scope and source line, found once
        for node in builder.nodes[first_new_node:]:
            origin = block.origins.get(node.op_type)
            if origin is not None and PRIMITIVE_KEY not in node.metadata_props:
                eqn = eqns[origin]
                if origin not in provenance:
                    provenance[origin] = (_scope_name(builder, eqn), _origin_location(builder, eqn))
                scope, location = provenance[origin]
                _annotate(builder, [node], (), scope, eqn.primitive.name, location)
                own.add(id(node))
        if held and isinstance(result, ir.Value):
            result = Relaid(result, layout)
        if isinstance(result, Relaid):
            _bind_relaid(builder, env, root, result, first_new_node, rename=held)
            fused = result.value.producer()
        else:
            _record(builder, env, root, (result,), first_new_node)
            fused = result.producer()
        # named as the rewrite rules name the nodes they make: <module>/<OpType>
        for node in builder.nodes[first_new_node:] if block.name_all else ([fused] if fused is not None else []):
            if id(node) in own:
                continue
            module = node.metadata_props.get(MODULE_KEY)
            node.name = f"{module}/{node.op_type}" if module else node.op_type
    finally:
        path.pop()


def _lower_held(builder: GraphBuilder, env: Env, eqn: Any) -> bool:
    """Lower an equation of :data:`.relaid.EQUIVARIANT` on operands held in another layout, in that layout: its
    handler given the held values, their avals and its per-axis parameters permuted; the result is held alike.
    Returns False (nothing lowered) unless an operand is held, all held ones in the same layout, an element-wise
    equation's other operands scalar literals and every operand of its result's shape, and the handler applies."""
    name = eqn.primitive.name
    out = eqn.outvars[0]
    if len(eqn.outvars) != 1 or not isinstance(out.aval.dtype, np.dtype) or touches_complex(eqn):
        return False
    perm: tuple[int, ...] | None = None
    for atom in eqn.invars:
        if isinstance(atom, jex_core.Literal):
            if atom.aval.shape or name in WINDOW_PARAMETERS:
                return False
            continue
        entry = env.get(atom)
        if not isinstance(entry, Relaid) or (perm is not None and entry.perm != perm):
            return False
        if name not in WINDOW_PARAMETERS and not same_shape(atom.aval.shape, out.aval.shape):
            return False
        perm = entry.perm
    info = REGISTRY.get(name)
    if perm is None or info is None or unsupported_reason(eqn, builder.state.opset) is not None:
        return False
    inputs = [env[atom].value if not isinstance(atom, jex_core.Literal) else _read(builder, env, atom)
              for atom in eqn.invars]
    params = dict(eqn.params)
    for key in WINDOW_PARAMETERS.get(name, ()):
        params[key] = held_shape(params[key], perm)
    ctx = LoweringContext(
        builder=builder,
        eqn=eqn,
        avals_in=tuple(atom.aval if isinstance(atom, jex_core.Literal) else atom.aval.update(shape=held_shape(atom.aval.shape, perm))
                       for atom in eqn.invars),
        avals_out=(out.aval.update(shape=held_shape(out.aval.shape, perm)),),
    )
    first_new_node = len(builder.nodes)
    result = _apply_rule(ctx, info, inputs, params)
    value = result[0] if isinstance(result, (tuple, list)) and len(result) == 1 else result
    if not isinstance(value, ir.Value):
        raise ConversionError(f"the handler for {name!r} returned {result!r} for one output")
    _bind_relaid(builder, env, eqn, Relaid(value, perm), first_new_node, rename=True)
    return True


def _bind_relaid(builder: GraphBuilder, env: Env, eqn: Any, record: Relaid, first_new_node: int, *, rename: bool) -> None:
    """Bind ``eqn``'s result to its value held in another layout: the nodes named and annotated as
    :func:`_record` does, the name of the jaxpr-layout value reserved and its origin recorded, the held value
    typed and recorded as that value relaid (``RELAID_KEY``); with ``rename`` it is named ``<name>/relaid``,
    as the layout pass names a value it moved a Transpose below."""
    name = eqn.primitive.name
    var = eqn.outvars[0]
    state = builder.state
    new_nodes = builder.nodes[first_new_node:]
    location = _origin_location(builder, eqn)
    scope = _scope_name(builder, eqn)
    _annotate(builder, new_nodes, (record.value,), scope, name, location)
    record.name = state.fresh(f"{scope}/{name}" if scope else name)
    state.origins[record.name] = (_var_text(var), name, location)
    state.origin_vars[record.name] = (tuple(state.eqn_path[:-1]), var)
    value = record.value
    if any(value.producer() is node for node in new_nodes):
        if value.type is None or value.shape is None:  # else typed so by the block or the handler
            builder.set_type(value, var.aval.update(shape=held_shape(var.aval.shape, record.perm)))
        if rename:
            value.name = f"{record.name}/relaid"
        value.meta[RELAID_KEY] = (record.name, list(record.perm))
    env[var] = record


def _lower_eqn(builder: GraphBuilder, env: Env, eqn: Any) -> None:
    name = eqn.primitive.name
    info = REGISTRY.get(name, complex_numbers=touches_complex(eqn))
    if info is None or info.unsupported_reason is not None or info.min_opset > builder.state.opset:
        reason = unsupported_reason(eqn, builder.state.opset)
        if reason is not None:
            location = builder.state.location(eqn)
            raise UnsupportedPrimitiveError([UnsupportedPrimitive(name, 1, [location] if location else [], reason)])
    operands = [_read_operand(builder, env, atom) for atom in eqn.invars]
    constants = [value.array if isinstance(value, PendingConstant) else value for value in operands]
    if not builder.is_function and all(isinstance(c, np.ndarray) or c.const_value is not None for c in constants):
        key = _evaluation_key(builder, eqn, operands)
        done = builder.state.evaluations.get(key) if key is not None else None
        # the same primitive of the same constants, computed before: the same results (unless it dropped one)
        if done is not None and all(v is not None or isinstance(var, jex_core.DropVar) for var, v in zip(eqn.outvars, done.results)):
            for var, value in zip(eqn.outvars, done.results, strict=True):
                if value is not None and not isinstance(var, jex_core.DropVar):
                    env[var] = value
            return
        computed = constant_eval.evaluate(eqn, constants, builder.state.weights, builder.state.x64)
        if computed is not None:  # every operand is a constant: JAX computed the result (constant_eval.py)
            results = [None if isinstance(var, jex_core.DropVar) else builder.evaluated_const(array)
                       for var, array in zip(eqn.outvars, computed, strict=True)]
            for var, value in zip(eqn.outvars, results, strict=True):
                if value is not None:
                    env[var] = value
            if key is not None:
                builder.state.evaluations[key] = Evaluation(tuple(operands), tuple(results))
            return
    inputs = [builder.materialize(value) if isinstance(value, PendingConstant) else value for value in operands]
    ctx = LoweringContext(
        builder=builder,
        eqn=eqn,
        avals_in=tuple(atom.aval for atom in eqn.invars),
        avals_out=tuple(var.aval for var in eqn.outvars),
    )
    params = eqn.params
    first_new_node = len(builder.nodes)
    try:
        if involves_keys(eqn) and name not in KEY_NATIVE:
            # a structural primitive moving PRNG keys: lowered on the keys' uint32 data (see keys.py)
            inputs, params = physical_equation(ctx, inputs, params)
            extra = [jax.core.ShapedArray((), ctx.avals_in[-1].dtype)] * (len(inputs) - len(ctx.avals_in))
            ctx = LoweringContext(
                builder=builder,
                eqn=eqn,
                avals_in=(*(physical_aval(a) for a in ctx.avals_in), *extra),
                avals_out=tuple(physical_aval(a) for a in ctx.avals_out),
            )
    except WorkbenchError:
        raise
    except Exception as error:
        location = builder.state.location(eqn)
        where = f" at {location}" if location else ""
        raise ConversionError(
            f"the handler for primitive {name!r}{where} failed: {type(error).__name__}: {error}"
        ) from error
    result = _apply_rule(ctx, info, inputs, params)
    outputs = result if isinstance(result, (tuple, list)) else (result,)
    if len(outputs) != len(eqn.outvars):
        raise ConversionError(
            f"the handler for {name!r} returned {len(outputs)} values for {len(eqn.outvars)} outputs"
        )
    _record(builder, env, eqn, outputs, first_new_node)


def _apply_rule(ctx: LoweringContext, info: HandlerInfo, inputs: Sequence[ir.Value], params: dict[str, Any]) -> Any:
    """``info.rule(ctx, *inputs, **params)``, a parameter it does not take or an exception of its own reported as a
    ConversionError naming the primitive and where it is."""
    eqn = ctx.eqn
    try:
        unknown = unknown_parameters(info.rule, params)
        if unknown:
            raise _unknown_parameters_error(eqn, info, unknown)
        return info.rule(ctx, *inputs, **params)
    except WorkbenchError:
        raise
    except Exception as error:
        location = ctx.builder.state.location(eqn)
        where = f" at {location}" if location else ""
        raise ConversionError(
            f"the handler for primitive {eqn.primitive.name!r}{where} failed: {type(error).__name__}: {error}"
        ) from error


def _evaluation_key(builder: GraphBuilder, eqn: Any, operands: Sequence[ir.Value | PendingConstant]) -> Any:
    """What identifies a constant evaluation in the main graph: primitive, parameters, operand objects; else None.

    Equal constants share one pooled value (``GraphBuilder.const``), so an equation repeated on the same
    constants (each layer's broadcast of a literal or causal-mask iota; an untrained BatchNorm's statistics,
    equal in every layer of a width) has the same key, and its results are the pooled values an evaluation
    would give again: the same arrays, found in the pool. Function bodies keep Constant nodes of their own.
    """
    if builder.is_function or builder.inside_function():
        return None
    key = (eqn.primitive, tuple(sorted(eqn.params.items())), tuple(map(id, operands)))
    try:
        hash(key)
    except TypeError:  # an unhashable parameter: evaluated every time
        return None
    return key


def _record(builder: GraphBuilder, env: Env, eqn: Any, outputs: Sequence[ir.Value], first_new_node: int) -> None:
    """Name, annotate and type the nodes an equation produced (from ``first_new_node`` on); bind its results."""
    name = eqn.primitive.name
    new_nodes = builder.nodes[first_new_node:]
    new_outputs = {id(o) for node in new_nodes for o in node.outputs}
    origin_location = _origin_location(builder, eqn)
    scope = _scope_name(builder, eqn)
    _annotate(builder, new_nodes, outputs, scope, name, origin_location)
    for var, value in zip(eqn.outvars, outputs, strict=True):
        if isinstance(var, jex_core.DropVar):
            continue
        if id(value) in new_outputs:
            builder.set_type(value, var.aval)
            if value.name not in builder.state.origins:
                value.name = builder.state.fresh(f"{scope}/{name}" if scope else name)
            builder.state.origins[value.name] = (_var_text(var), name, origin_location)
            builder.state.origin_vars[value.name] = (tuple(builder.state.eqn_path[:-1]), var)
        env[var] = value


def _origin_location(builder: GraphBuilder, eqn: Any) -> str:
    """The user's line of ``eqn`` as text; equations inside jax.nn.relu & co. have no user frame of their
    own: their caller's line is theirs."""
    location = builder.state.user_location(eqn)
    return str(location) if location else (builder.state.location_stack[-1] if builder.state.location_stack else "")


def _scope_name(builder: GraphBuilder, eqn: Any) -> str:
    """The dotted module path of an equation (``block2.c1``), including the scopes of enclosing equations."""
    state = builder.state
    own = state.scope(eqn)
    full = "/".join([*state.scope_stack, own]) if state.scope_stack else own
    return _module_path(full, state.drop_root_scope)


@functools.lru_cache(maxsize=4096)
def _module_path(name_stack: str, drop_root: bool) -> str:
    # the equations of one module share their name stack: parsed once
    return module_path(name_stack, drop_root=drop_root)


def _annotate(
    builder: GraphBuilder, nodes: Sequence[ir.Node], outputs: Sequence[Any], scope: str, primitive: str, location: str
) -> None:
    """Name the nodes one equation produced after its module path and primitive, and record their provenance.

    The node producing the equation's result is ``<module>/<primitive>``, helpers it needed are
    ``<module>/<primitive>/<OpType>``. Nodes of nested equations (already annotated) are left alone.
    """
    base = f"{scope}/{primitive}" if scope else primitive
    results = {id(value.producer()) for value in outputs if isinstance(value, ir.Value)}
    for node in nodes:
        metadata = node.metadata_props
        if PRIMITIVE_KEY in metadata:
            continue
        metadata[PRIMITIVE_KEY] = primitive
        if scope:
            metadata[MODULE_KEY] = scope
        if location:
            metadata[SOURCE_KEY] = location
        node.doc_string = f"{primitive} at {location}" if location else primitive
        node.name = base if id(node) in results else f"{base}/{node.op_type}"  # made unique after the passes


def _unknown_parameters_error(eqn: Any, info: Any, unknown: list[str]) -> ConversionError:
    location = eqn_location(eqn)
    where = f" at {location}" if location else ""
    rule = info.rule.func if isinstance(info.rule, functools.partial) else info.rule
    shown = ", ".join(f"{name}={eqn.params[name]!r}"[:120] for name in unknown)
    return ConversionError(
        f"primitive {eqn.primitive.name!r}{where} has the parameter(s) {shown}, which its handler "
        f"{rule.__module__}.{rule.__qualname__} does not take: this JAX version added them. Check what they "
        "change and add them to the handler's keyword-only parameters."
    )


def _var_text(var: Any) -> str:
    """``str(var)`` (JAX's ``Var(id=...):f32[4,8]``) with the aval part formatted once per aval."""
    try:
        return f"Var(id={id(var)}):{_aval_text(var.aval)}"
    except TypeError:  # an aval type that cannot be hashed: formatted every time
        return str(var)


@functools.lru_cache(maxsize=4096)
def _aval_text(aval: Any) -> str:
    return aval.str_short()


# --------------------------------------------------------------------- discovery
def iter_eqns(jaxpr: Any) -> Iterator[Any]:
    """Every equation of a jaxpr and of every jaxpr nested in its parameters."""
    for eqn in jaxpr.eqns:
        yield eqn
        for sub in sub_jaxprs(eqn):
            yield from iter_eqns(sub)


def sub_jaxprs(eqn: Any) -> Iterator[Any]:
    for param in eqn.params.values():
        candidates = param if isinstance(param, (tuple, list)) else (param,)
        for candidate in candidates:
            if isinstance(candidate, jex_core.ClosedJaxpr):
                yield candidate.jaxpr
            elif isinstance(candidate, jex_core.Jaxpr):
                yield candidate


def find_unsupported(
    jaxpr: Any, opset: int | None = None, locate: Callable[[Any], SourceLocation | None] = eqn_location
) -> list[UnsupportedPrimitive]:
    """Every primitive of the jaxpr (nested included) that cannot be exported, with count and locations.

    That is: no handler, a handler that refuses this use (its ``unsupported_reason``), or a handler
    whose lowest opset is above ``opset``. ``locate`` finds an equation's source line (a jaxpr
    rebuilt from a Graph IR has them recorded, not in JAX tracebacks).
    """
    if all(unsupported_reason(eqn, opset) is None for eqn in iter_eqns(jaxpr)):
        return []  # the common case, without finding every equation's source line (a traceback walk each)
    found: dict[str, UnsupportedPrimitive] = {}
    for eqn, location in eqns_with_user_locations(jaxpr, None):
        name = eqn.primitive.name
        reason = unsupported_reason(eqn, opset)
        if reason is None:
            continue
        entry = found.setdefault(name, UnsupportedPrimitive(name, 0, [], reason))
        entry.count += 1
        location = location or locate(eqn)
        if location is not None and location not in entry.locations:
            entry.locations.append(location)
    return sorted(found.values(), key=lambda p: p.name)


def eqns_with_user_locations(jaxpr: Any, enclosing: SourceLocation | None) -> Iterator[tuple[Any, SourceLocation | None]]:
    """Every equation (nested included) with the user's line: its own, else that of the equation around it."""
    for eqn in jaxpr.eqns:
        location = eqn_user_location(eqn) or enclosing
        yield eqn, location
        for sub in sub_jaxprs(eqn):
            yield from eqns_with_user_locations(sub, location)


def unsupported_reason(eqn: Any, opset: int | None = None) -> str | None:
    """None when ``eqn`` can be lowered; otherwise why not ("" for a primitive without a handler)."""
    name = eqn.primitive.name
    complex_values = touches_complex(eqn)
    info = REGISTRY.get(name, complex_numbers=complex_values)
    if info is None:
        if complex_values and REGISTRY.get(name) is not None:
            return (
                "its handler covers real numbers only, and this use reads or writes complex values (exported as "
                "(real, imag) pairs, see complex_numbers.py); compute on the real and imaginary parts instead"
            )
        return reason_without_handler(eqn)
    if opset is not None and opset < info.min_opset:
        return f"its handler needs opset >= {info.min_opset} (the export targets opset {opset})"
    if info.unsupported_reason is not None:
        return info.unsupported_reason(eqn, opset) or None
    return None


def check_all_supported(
    jaxpr: Any, opset: int | None = None, locate: Callable[[Any], SourceLocation | None] = eqn_location
) -> None:
    unsupported = find_unsupported(jaxpr, opset, locate)
    if unsupported:
        raise UnsupportedPrimitiveError(unsupported)


__all__ = [
    "LoweringContext",
    "check_all_supported",
    "eqns_with_user_locations",
    "find_unsupported",
    "finish_subgraph",
    "is_static",
    "iter_eqns",
    "lower_jaxpr",
    "sub_jaxprs",
    "unsupported_reason",
]
