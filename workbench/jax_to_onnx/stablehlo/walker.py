"""The op walker: every function body, region and called function of a StableHLO module, one converter per op.

Functions are inlined where they are called (``func.call``, composite decompositions), regions either
inlined (a reducer applied elementwise, a condition) or turned into ONNX subgraphs (Loop, If bodies).
Before anything is built, :func:`find_unsupported` walks everything reachable from ``@main`` so that
every op without a converter, or in a form its converter refuses, is reported at once with its location.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import onnx_ir as ir
from jaxlib.mlir import ir as mlir_ir

from workbench.errors import (
    ConversionError,
    UnsupportedPrimitive,
    UnsupportedStableHLOOpError,
    WorkbenchError,
)
from workbench.jax_to_onnx.builder import GraphBuilder
from workbench.jax_to_onnx.lowering import finish_subgraph
from workbench.jax_to_onnx.stablehlo import mlir
from workbench.jax_to_onnx.stablehlo.context import OpContext, Scope, Sym
from workbench.jax_to_onnx.stablehlo.registry import REGISTRY, registry_key

TERMINATORS = frozenset({"func.return", "stablehlo.return"})


class Walker:
    """Converts the functions of one module; keeps the synthetic jaxpr equations of delegated ops alive."""

    def __init__(self, module: Any) -> None:
        self.module = module  # the functions' operations live as long as their module
        self.functions: dict[str, Any] = {}
        for op in module.body.operations:
            if op.operation.name == "func.func":
                self.functions[mlir.string_attr(op.operation, "sym_name")] = op.operation
        self._alive: list[Any] = []
        # > 0 while a scalar reducer body is converted to run on whole slices (a running reduction)
        self.batched = 0

    def keep_alive(self, obj: Any) -> None:
        """Source locations are keyed by ``id(eqn)``: the equations must outlive the conversion."""
        self._alive.append(obj)

    def function(self, name: str) -> Any:
        try:
            return self.functions[name]
        except KeyError:
            raise ConversionError(f"the module has no function @{name}") from None

    # ------------------------------------------------------------------ blocks
    def convert_function(self, builder: GraphBuilder, name: str, args: Sequence[Sym]) -> list[Sym]:
        """Inline function ``@name`` with its arguments bound (functions see no enclosing values)."""
        block = self.function(name).regions[0].blocks[0]
        return self.convert_block(builder, block, list(args), Scope(None))

    def convert_region(self, builder: GraphBuilder, region: Any, args: list[Sym], parent: Scope) -> list[Sym]:
        return self.convert_block(builder, region.blocks[0], args, Scope(parent))

    def convert_block(self, builder: GraphBuilder, block: Any, args: list[Sym], scope: Scope) -> list[Sym]:
        arguments = list(block.arguments)
        if len(arguments) != len(args):
            raise ConversionError(f"a block takes {len(arguments)} arguments, {len(args)} given")
        for argument, sym in zip(arguments, args, strict=True):
            scope[argument] = sym
        for op in block.operations:
            operation = op.operation
            if operation.name in TERMINATORS:
                return [scope[v] for v in operation.operands]
            self.convert_op(builder, operation, scope)
        raise ConversionError("a block ends without a return")

    def convert_op(self, builder: GraphBuilder, operation: Any, scope: Scope) -> None:
        key = registry_key(operation)
        entry = REGISTRY.get(key)
        if entry is None:  # find_unsupported ran first; only a converter bug gets here
            raise ConversionError(f"no converter for {key}")
        operands = [scope[v] for v in operation.operands]
        ctx = OpContext(self, builder, operation, operands, scope)
        try:
            result = entry.rule(ctx, *[s.value for s in operands])
        except WorkbenchError:
            raise
        except Exception as error:  # a converter bug: name the op and where it came from
            raise ConversionError(f"the converter for {ctx.where} failed: {type(error).__name__}: {error}") from error
        outputs = list(result) if isinstance(result, (tuple, list)) else ([] if result is None else [result])
        results = list(operation.results)
        if len(outputs) != len(results):
            raise ConversionError(f"the converter for {ctx.where} returned {len(outputs)} values for {len(results)} results")
        if not results:
            return
        avals = ctx.avals_out
        known = ctx.known_out
        if known is None and entry.fold is not None:
            known = _fold(entry.fold, ctx)
        for index, (mlir_value, value, aval) in enumerate(zip(results, outputs, avals, strict=True)):
            if value.type is None:  # a node the converter built without typing its output
                builder.set_type(value, aval)
            scope[mlir_value] = Sym(value, aval, None if known is None else known[index])

    # ------------------------------------------------------------------ subgraphs
    def region_graph(
        self,
        ctx: OpContext,
        index: int,
        input_avals: list[Any],
        *,
        name: str,
        extra_inputs: list[tuple[str, Any]],
        after: Callable[[GraphBuilder, list[Sym]], list[Sym]] | None,
    ) -> tuple[ir.Graph, list[Sym]]:
        child = GraphBuilder(ctx.builder.state, parent=ctx.builder)
        extra = [child.add_input(n, aval) for n, aval in extra_inputs]
        inputs = [child.add_input(f"{name}_in{i}", aval) for i, aval in enumerate(input_avals)]
        args = [Sym(value, aval) for value, aval in zip(inputs, input_avals, strict=True)]
        outputs = self.convert_region(child, ctx.op.regions[index], args, ctx.scope)
        if after is not None:
            outputs = after(child, outputs)
        values = [s.value for s in outputs]
        graph = finish_subgraph(child, extra + inputs, values, name)
        for value, sym in zip(graph.outputs, outputs, strict=True):
            child.set_type(value, sym.aval)
        return graph, outputs


def _fold(fold: Callable[[Any], list[Any]], ctx: OpContext) -> list[Any] | None:
    """Known result contents, or None when they cannot be computed symbolically (never an error)."""
    try:
        return fold(ctx)
    except UNDECIDABLE:
        return None


UNDECIDABLE: tuple[type[BaseException], ...] = (
    jax.errors.InconclusiveDimensionOperation,
    OverflowError,
    ZeroDivisionError,
)


# ----------------------------------------------------------------------------- discovery
def reachable_ops(walker: Walker, entry: str = "main") -> Iterator[Any]:
    """Every op reachable from ``@entry``: nested regions, called functions and composite decompositions."""
    seen: set[str] = set()
    pending = [entry]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        for op in _ops_in(walker.function(name)):
            yield op
            for callee in _callees(op):
                pending.append(callee)


def _ops_in(operation: Any) -> Iterator[Any]:
    for region in operation.regions:
        for block in region.blocks:
            for op in block.operations:
                yield op.operation
                entry = REGISTRY.get(registry_key(op.operation))
                if entry is None or entry.walks_regions:
                    yield from _ops_in(op.operation)


def _callees(operation: Any) -> list[str]:
    names = []
    for attribute in ("callee", "decomposition"):
        if attribute in operation.attributes:
            names.append(mlir.symbol_ref(operation.attributes[attribute]))
    if "called_computations" in operation.attributes:
        names.extend(mlir.symbol_ref(a) for a in mlir_ir.ArrayAttr(operation.attributes["called_computations"]))
    return names


def find_unsupported(walker: Walker) -> list[UnsupportedPrimitive]:
    """Every op without a converter (or refused by its converter's check), with counts and locations."""
    found: dict[str, UnsupportedPrimitive] = {}
    for op in reachable_ops(walker):
        if op.name in TERMINATORS or op.name == "func.func":
            continue
        key = registry_key(op)
        entry = REGISTRY.get(key)
        reason = None if entry is None or entry.check is None else entry.check(op)
        if entry is not None and reason is None and _touches_complex(op):
            reason = "complex numbers are not converted by the StableHLO door yet"
        if entry is not None and reason is None:
            continue
        label = key if reason is None else f"{key} ({reason})"
        record = found.setdefault(label, UnsupportedPrimitive(label, 0, []))
        record.count += 1
        location = mlir.op_location(op.location)
        if location.source is not None and location.source not in record.locations:
            record.locations.append(location.source)
    return sorted(found.values(), key=lambda p: p.name)


def module_op_names(exported: Any) -> set[str]:
    """The registry keys of every op reachable from @main of an Exported's module (for coverage)."""
    context = mlir.new_context()
    with context:
        walker = Walker(mlir.parse_portable_artifact(context, exported.mlir_module_serialized))
        return {registry_key(op) for op in reachable_ops(walker)}


def _touches_complex(op: Any) -> bool:
    """Whether the op reads or makes a complex tensor (the jaxpr door's complex pairs are not wired in here)."""
    for value in [*op.operands, *op.results]:
        if isinstance(value.type, mlir_ir.RankedTensorType) and isinstance(value.type.element_type, mlir_ir.ComplexType):
            return True
    return False


def check_all_supported(walker: Walker) -> None:
    unsupported = find_unsupported(walker)
    if unsupported:
        raise UnsupportedStableHLOOpError(unsupported)


__all__ = ["Walker", "check_all_supported", "find_unsupported", "module_op_names", "reachable_ops"]
