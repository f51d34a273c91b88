"""Structure: function calls and composites (inlined), while (ONNX Loop), case and if (ONNX If), and the
custom calls JAX adds around a shape-polymorphic export.

- ``func.call`` inlines the callee (JAX outlines jitted helpers and the wrapped main function);
- ``stablehlo.composite``: ``chlo.top_k`` goes to lax.top_k's handler (one TopK node); any other
  composite is inlined from its decomposition function, which is its definition;
- ``while``: the condition region runs once on the initial values outside the Loop and again at
  the end of each iteration inside the body, which is how ONNX Loop carries its condition;
- ``case``: a balanced tree of If on the branch index; an index outside ``[0, N)`` runs the last
  branch (StableHLO's rule; JAX lowers every cond/switch to ``case``, never to ``if``);
- ``custom_call @shape_assertion``: the checks jax.export adds that the input shapes satisfy the
  symbolic constraints (``B >= 1``). ONNX has no way to fail a run with a message, so they are not
  converted: the ONNX model, like the symbolic shapes it declares, assumes valid inputs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx_ir as ir
from jaxlib.mlir import ir as mlir_ir

from workbench.jax_to_onnx.builder import GraphBuilder
from workbench.jax_to_onnx.lowering import finish_subgraph
from workbench.jax_to_onnx.stablehlo import mlir
from workbench.jax_to_onnx.stablehlo.context import OpContext, Sym, shaped
from workbench.jax_to_onnx.stablehlo.registry import converter

_I64_SCALAR = shaped((), np.int64)
_BOOL_SCALAR = shaped((), np.bool_)


def _finish(ctx: OpContext, results: list[Sym]) -> list[ir.Value]:
    ctx.set_avals_out([s.aval for s in results])
    ctx.known_out = [s.known for s in results]
    return [s.value for s in results]


@converter("func.call", onnx_ops=(), family="control", primitives=("jit",), spec="https://mlir.llvm.org/docs/Dialects/Func/#funccall-funccallop")
def _call(ctx: OpContext, *operands: ir.Value) -> list[ir.Value]:
    del operands
    callee = mlir.symbol_ref(ctx.attr("callee"))
    return _finish(ctx, ctx.walker.convert_function(ctx.builder, callee, ctx.operands))


@converter("stablehlo.composite", via="top_k (chlo.top_k), else the decomposition", family="control", primitives=("top_k",))
def _composite(ctx: OpContext, *operands: ir.Value) -> list[ir.Value]:
    name = mlir.string_attr(ctx.op, "name")
    if name == "chlo.top_k" and len(operands) == 1:
        attributes = mlir_ir.DictAttr(ctx.attr("composite_attributes"))
        k = int(mlir_ir.IntegerAttr(attributes["k"]).value)
        rank = len(ctx.avals_in[0].shape)
        return ctx.delegate("top_k", list(operands), k=k, axis=rank - 1)
    decomposition = mlir.symbol_ref(ctx.attr("decomposition"))
    return _finish(ctx, ctx.walker.convert_function(ctx.builder, decomposition, ctx.operands))


@converter("stablehlo.custom_call@shape_assertion", onnx_ops=(), family="control", primitives=("reshape",),
           spec="https://docs.jax.dev/en/latest/export/shape_poly.html#shape-assertion-errors")
def _shape_assertion(ctx: OpContext, *operands: ir.Value) -> list[ir.Value]:
    """Dropped: ONNX cannot raise at run time (see the module docstring)."""
    del ctx, operands
    return []


@converter("stablehlo.while", onnx_ops=("Loop",), family="control", primitives=("while", "scan"))
def _while(ctx: OpContext, *init: ir.Value) -> list[ir.Value]:
    init_syms = [Sym(s.value, s.aval) for s in ctx.operands]  # carried values change: their contents are unknown
    (first_condition,) = ctx.inline_region(0, init_syms)

    def condition_after(child: GraphBuilder, outputs: list[Sym]) -> list[Sym]:
        (condition,) = ctx.inline_region(0, outputs, builder=child)
        return [condition, *outputs]

    avals = [s.aval for s in init_syms]
    graph, _ = ctx.region_graph(
        1, avals, name="while_body", extra_inputs=[("iteration", _I64_SCALAR), ("condition", _BOOL_SCALAR)],
        after=condition_after,
    )
    result = ctx.op_("Loop", None, first_condition.value, *init, body=graph, num_outputs=len(init))
    outputs = list(result) if isinstance(result, tuple) else [result]
    ctx.set_avals_out(avals)
    for value, aval in zip(outputs, avals, strict=True):
        ctx.typed(value, aval)
    return outputs


def _branch_results(ctx: OpContext) -> list[Any]:
    """The result avals of a case/if: the module's types, dynamic dims taken from the first branch."""
    types = ctx.result_types
    if all(t.is_static for t in types):
        return [shaped(t.dims, t.dtype) for t in types]
    probe = GraphBuilder(ctx.builder.state, parent=ctx.builder)
    return [s.aval for s in ctx.inline_region(0, [], builder=probe)]


def _emit_branches(ctx: OpContext, builder: GraphBuilder, index: ir.Value, low: int, high: int, avals: list[Any]) -> list[ir.Value]:
    """Outputs of branch ``index`` for an index known to lie in ``[low, high)``: a balanced tree of If."""
    if high - low == 1:
        return [s.value for s in ctx.inline_region(low, [], builder=builder)]
    middle = (low + high + 1) // 2
    predicate = builder.op("Less", index, builder.const(np.asarray(middle, dtype=np.int64)))
    builder.set_type(predicate, _BOOL_SCALAR)
    graphs = []
    for sub_low, sub_high in ((low, middle), (middle, high)):
        child = GraphBuilder(builder.state, parent=builder)
        outputs = _emit_branches(ctx, child, index, sub_low, sub_high, avals)
        graph = finish_subgraph(child, [], outputs, f"branch{sub_low}" if sub_high - sub_low == 1 else f"branches{sub_low}_{sub_high - 1}")
        for value, aval in zip(graph.outputs, avals, strict=True):
            child.set_type(value, aval)
        graphs.append(graph)
    result = builder.op("If", predicate, then_branch=graphs[0], else_branch=graphs[1], num_outputs=len(avals))
    outputs = list(result) if isinstance(result, tuple) else [result]
    for value, aval in zip(outputs, avals, strict=True):
        builder.set_type(value, aval)
    return outputs


@converter("stablehlo.case", onnx_ops=("If", "Less", "Where"), family="control", primitives=("cond",))
def _case(ctx: OpContext, index: ir.Value) -> list[ir.Value]:
    count = len(ctx.op.regions)
    avals = _branch_results(ctx)
    position = ctx.op_("Cast", index, to=ir.DataType.INT64)
    inside = ctx.op_("And", ctx.op_("GreaterOrEqual", position, ctx.i64(0)), ctx.op_("Less", position, ctx.i64(count)))
    position = ctx.typed(ctx.op_("Where", inside, position, ctx.i64(count - 1)), _I64_SCALAR)
    ctx.set_avals_out(avals)
    return _emit_branches(ctx, ctx.builder, position, 0, count, avals)
