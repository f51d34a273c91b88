"""What a StableHLO op converter works with: the op, its operands as ONNX values with symbolic types, the builder.

Every MLIR value the walker has converted is a :class:`Sym`: its ONNX value, its abstract value
(a ``jax.core.ShapedArray`` whose dynamic dims are JAX symbolic expressions of the Exported's
dimension variables, e.g. ``B`` or ``2*B``), and for small integer tensors (shape arithmetic) or
constants its known contents. Converters build ONNX nodes with the GraphBuilder, or hand the op to
the jaxpr handler of the lax primitive with the same semantics (:meth:`OpContext.delegate`), so both
frontends share one implementation of gather, convolution, sorting...
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
import onnx_ir as ir
from jax.extend import core as jex_core
from jax.extend.core import primitives as jax_primitives

from workbench.errors import ConversionError
from workbench.jax_to_onnx.builder import GraphBuilder
from workbench.jax_to_onnx.lowering import LoweringContext
from workbench.jax_to_onnx.registry import REGISTRY as HANDLERS
from workbench.jax_to_onnx.stablehlo import mlir
from workbench.jax_to_onnx.stablehlo.mlir import OpLocation, TensorType

_PRIMITIVES: dict[str, Any] = {
    value.name: value for value in vars(jax_primitives).values() if isinstance(value, jex_core.Primitive)
}
# Constants up to this many elements keep their contents for the converters that look at them
# (reduction init values, iota detection, shape arithmetic).
KNOWN_CONSTANT_LIMIT = 1024


class _Unknown:
    """An element of a partly known integer tensor whose value only exists at run time (a loop index)."""

    def __repr__(self) -> str:
        return "?"


UNKNOWN = _Unknown()


@dataclass(frozen=True)
class Sym:
    """A converted MLIR value: ONNX value, symbolic abstract value, known contents (or None)."""

    value: ir.Value
    aval: Any
    known: np.ndarray | None = None


class Scope:
    """MLIR value → Sym for one block; regions see their enclosing blocks' values."""

    def __init__(self, parent: Scope | None = None) -> None:
        self.parent = parent
        self._values: dict[Any, Sym] = {}

    def __setitem__(self, key: Any, sym: Sym) -> None:
        self._values[key] = sym

    def __getitem__(self, key: Any) -> Sym:
        scope: Scope | None = self
        while scope is not None:
            found = scope._values.get(key)  # noqa: SLF001 - same class
            if found is not None:
                return found
            scope = scope.parent
        raise ConversionError(f"an MLIR value of type {key.type} is used before it is defined")


def shaped(dims: Sequence[Any], dtype: Any) -> Any:
    return jax.core.ShapedArray(tuple(dims), np.dtype(dtype))


class OpContext:
    """One op being converted. ``walker`` converts regions and called functions."""

    def __init__(self, walker: Any, builder: GraphBuilder, op: Any, operands: list[Sym], scope: Scope) -> None:
        self.walker = walker
        self.builder = builder
        self.op = op
        self.operands = operands
        self.scope = scope
        self.name = op.name
        self.location: OpLocation = mlir.op_location(op.location)
        self._avals_out: list[Any] | None = None
        self.known_out: list[np.ndarray | None] | None = None

    # ---------------------------------------------------------------- operands and results
    @property
    def avals_in(self) -> list[Any]:
        return [s.aval for s in self.operands]

    @property
    def known_in(self) -> list[np.ndarray | None]:
        return [s.known for s in self.operands]

    @property
    def where(self) -> str:
        return f"{self.name} at {self.location}"

    @property
    def result_types(self) -> list[TensorType]:
        return [mlir.tensor_type(r.type, self.where) for r in self.op.results]

    def attr(self, name: str) -> Any:
        try:
            return self.op.attributes[name]
        except KeyError:
            raise ConversionError(f"{self.where}: attribute {name!r} is missing") from None

    def has_attr(self, name: str) -> bool:
        return name in self.op.attributes

    @property
    def avals_out(self) -> list[Any]:
        """Result avals: set by the converter, else the module's static types (refused when dynamic)."""
        if self._avals_out is None:
            avals = []
            for index, result in enumerate(self.result_types):
                if not result.is_static:
                    raise ConversionError(
                        f"{self.where}: result {index} has dynamic dims {list(result.dims)} and this converter "
                        "does not say what they are"
                    )
                avals.append(shaped(result.dims, result.dtype))
            self._avals_out = avals
        return self._avals_out

    def set_avals_out(self, avals: Sequence[Any]) -> None:
        """Declare the result avals (symbolic dims); checked against the module's static dims."""
        avals = list(avals)
        types = self.result_types
        if len(avals) != len(types):
            raise ConversionError(f"{self.where}: {len(avals)} result types for {len(types)} results")
        if self.walker.batched:  # a reducer applied to whole slices: the module's types are of one element
            self._avals_out = avals
            return
        for index, (aval, declared) in enumerate(zip(avals, types, strict=True)):
            if np.dtype(aval.dtype) != declared.dtype or len(aval.shape) != len(declared.dims):
                raise ConversionError(f"{self.where}: result {index} is {declared.dtype}{list(declared.dims)}, "
                                      f"the converter computed {aval.str_short()}")
            for dim, static in zip(aval.shape, declared.dims, strict=True):
                if static is not None and isinstance(dim, (int, np.integer)) and int(dim) != static:
                    raise ConversionError(f"{self.where}: result {index} is {list(declared.dims)}, computed {aval.str_short()}")
        self._avals_out = [aval if _has_symbolic(aval) else shaped(t.dims, t.dtype) for aval, t in zip(avals, types, strict=True)]

    def result_avals_like(self, index: int = 0) -> list[Any]:
        """Result avals of an elementwise op: the operands' common dims (operand ``index``'s, with the
        other operands' broadcast in: a reducer applied to whole slices meets scalar constants), and
        the results' own dtypes."""
        dims = list(self.operands[index].aval.shape)
        for other in self.operands:
            shape = list(other.aval.shape)
            if len(shape) > len(dims):
                dims = shape[: len(shape) - len(dims)] + dims
            for offset in range(1, len(shape) + 1):
                if isinstance(dims[-offset], (int, np.integer)) and int(dims[-offset]) == 1:
                    dims[-offset] = shape[-offset]
        return [shaped(dims, t.dtype) for t in self.result_types]

    # ---------------------------------------------------------------- graph building
    def op_(self, op_type: str, *inputs: ir.Value | None, **kwargs: Any) -> Any:
        return self.builder.op(op_type, *inputs, **kwargs)

    def const(self, array: Any, dtype: Any = None) -> ir.Value:
        return self.builder.const(array, dtype)

    def i64(self, values: Sequence[int] | int) -> ir.Value:
        return self.builder.i64(values)

    def shape_value(self, shape: Sequence[Any]) -> ir.Value:
        return self.builder.shape_value(shape)

    def typed(self, value: ir.Value, aval: Any) -> ir.Value:
        self.builder.set_type(value, aval)
        return value

    def known_elements(self, index: int) -> np.ndarray | None:
        """Operand ``index``'s known contents as an object array (UNKNOWN where only the run time knows),
        or None when nothing is known."""
        known = self.operands[index].known
        if known is not None:
            return np.asarray(known, dtype=object)
        aval = self.operands[index].aval
        if all(isinstance(d, (int, np.integer)) for d in aval.shape) and int(np.prod(aval.shape)) <= KNOWN_CONSTANT_LIMIT:
            return np.full(tuple(int(d) for d in aval.shape), UNKNOWN, dtype=object)
        return None

    def known_dims(self, index: int, *, partial: bool = False) -> list[Any]:
        """Operand ``index`` (a 1-D shape tensor) as a list of dims; refused when not computable
        (with ``partial``, elements only the run time knows are UNKNOWN)."""
        known = self.operands[index].known
        elements = [] if known is None else [_dim(d) for d in np.asarray(known, dtype=object).reshape(-1)]
        if known is None or (not partial and any(e is UNKNOWN for e in elements)):
            raise ConversionError(
                f"{self.where}: operand {index} (a shape) is computed at run time from data, not from the "
                "input shapes; ONNX needs it from the shapes"
            )
        return elements

    # ---------------------------------------------------------------- the jaxpr handlers
    def delegate(
        self,
        primitive: str,
        operands: Sequence[ir.Value],
        *,
        avals_in: Sequence[Any] | None = None,
        avals_out: Sequence[Any] | None = None,
        **params: Any,
    ) -> list[ir.Value]:
        """Lower this op with the jaxpr handler of ``primitive`` (same semantics), given its params.

        The op's result avals: ``avals_out``, else the module's static types, else JAX's own shape
        rule for the primitive applied to the symbolic operand avals (``jax.eval_shape`` of ``bind``).
        """
        avals_in = list(avals_in if avals_in is not None else self.avals_in)
        if avals_out is not None:
            self.set_avals_out(avals_out)
        elif all(t.is_static for t in self.result_types):
            _ = self.avals_out
        else:
            self.set_avals_out(abstract_eval(primitive, avals_in, params, self.where))
        return self.lower(primitive, operands, avals_in=avals_in, avals_out=self.avals_out, **params)

    def lower(
        self, primitive: str, operands: Sequence[ir.Value], *, avals_in: Sequence[Any], avals_out: Sequence[Any], **params: Any
    ) -> list[ir.Value]:
        """One step of a converter: the jaxpr handler of ``primitive`` on explicit avals (the op's result
        avals are not touched; a converter of several steps declares them with :meth:`set_avals_out`)."""
        info = HANDLERS.get(primitive)
        if info is None:
            raise ConversionError(f"{self.where}: no jaxpr handler for {primitive!r}")
        eqn = jex_core.new_jaxpr_eqn(
            [jex_core.Var(a) for a in avals_in],
            [jex_core.Var(a) for a in avals_out],
            _PRIMITIVES.get(primitive) or jex_core.Primitive(primitive),
            params,
            jex_core.no_effects,
        )
        self.walker.keep_alive(eqn)
        if self.location.source is not None:
            self.builder.state.source_locations[id(eqn)] = self.location.source
        context = LoweringContext(builder=self.builder, eqn=eqn, avals_in=tuple(avals_in), avals_out=tuple(avals_out))
        first_new = len(self.builder.nodes)
        try:
            result = info.rule(context, *operands, **params)
        except ConversionError as error:
            raise ConversionError(f"{self.where} (through the {primitive!r} handler): {error}") from error
        outputs = list(result) if isinstance(result, (tuple, list)) else [result]
        produced = {id(o) for node in self.builder.nodes[first_new:] for o in node.outputs}
        for value, aval in zip(outputs, avals_out, strict=True):
            if id(value) in produced:
                self.builder.set_type(value, aval)
        return outputs

    # ---------------------------------------------------------------- regions
    def inline_region(self, index: int, args: Sequence[Sym], builder: GraphBuilder | None = None) -> list[Sym]:
        """Convert region ``index``'s block in ``builder`` (default: this one) with its arguments bound."""
        return self.walker.convert_region(builder or self.builder, self.op.regions[index], list(args), self.scope)

    def region_graph(
        self, index: int, input_avals: Sequence[Any], *, name: str, extra_inputs: Sequence[tuple[str, Any]] = (),
        after: Callable[[GraphBuilder, list[Sym]], list[Sym]] | None = None,
    ) -> tuple[ir.Graph, list[Sym]]:
        """Region ``index`` as an ONNX subgraph: ``extra_inputs`` first (Loop's iteration and condition),
        then one input per block argument; ``after`` may append computations to its outputs."""
        return self.walker.region_graph(self, index, list(input_avals), name=name, extra_inputs=list(extra_inputs), after=after)


def dims_equal(a: Any, b: Any) -> bool:
    """``a == b`` for ints and JAX symbolic dims, soundly: JAX's ``==`` on symbolic expressions is
    structural (False when it cannot prove equality), so equality is decided as ``a >= b and a <= b``,
    which raises InconclusiveDimensionOperation when JAX cannot decide it."""
    if isinstance(a, (int, np.integer, bool, np.bool_)) and isinstance(b, (int, np.integer, bool, np.bool_)):
        return bool(a == b)
    return bool(a >= b) and bool(a <= b)


def _dim(value: Any) -> Any:
    return int(value) if isinstance(value, (int, np.integer)) else value


def _has_symbolic(aval: Any) -> bool:
    return any(not isinstance(d, (int, np.integer)) for d in aval.shape)


def abstract_eval(primitive: str, avals_in: Sequence[Any], params: dict[str, Any], where: str) -> list[Any]:
    """Result avals of ``primitive`` on symbolic avals, by JAX's own shape rule."""
    prim = _PRIMITIVES.get(primitive)
    if prim is None:
        raise ConversionError(f"{where}: no public JAX primitive {primitive!r} to compute result shapes with")
    structs = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in avals_in]
    try:
        with jax.enable_x64(True):  # the avals say which types; JAX must not canonicalize 64-bit ones away
            out = jax.eval_shape(lambda *xs: prim.bind(*xs, **params), *structs)
    except Exception as error:  # JAX's shape rules raise TypeError/ValueError with details
        raise ConversionError(f"{where}: JAX's shape rule for {primitive!r} failed: {error}") from error
    outs = out if isinstance(out, (tuple, list)) else [out]
    return [shaped(o.shape, o.dtype) for o in outs]
