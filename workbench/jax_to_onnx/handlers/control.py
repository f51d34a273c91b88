"""Control flow: cond/switch → If, while/fori_loop → Loop, scan (forward and reverse) → Scan or Loop.

- ``cond`` (``lax.cond`` and ``lax.switch``, whose index JAX has already clamped): two branches
  are one ``If``; more branches are a balanced tree of nested ``If`` nodes that halves the index
  range at each level (``Less(index, mid)``), so N branches cost ``ceil(log2 N)`` tests.
- ``while`` (``lax.while_loop``, and ``lax.fori_loop`` with a traced bound): an ONNX ``Loop``
  without trip count. The condition is evaluated once outside for the first iteration and
  inside the body, after the update, for the next one.
- ``scan`` (``lax.scan``, and ``lax.fori_loop`` with static bounds): with scanned inputs, an ONNX
  ``Scan`` (its sequence length comes from the inputs, so symbolic lengths work, and
  ``reverse=True`` maps to ``scan_input_directions``/``scan_output_directions``); without
  scanned inputs, a ``Loop`` with the static trip count whose per-iteration outputs are
  accumulated as loop scan outputs (reversed afterwards for ``reverse=True``).

Branch and body jaxprs read the operands that JAX passes them (closures, consts) from the
enclosing graph by name, as ONNX subgraphs may; only per-iteration values are body inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import onnx_ir as ir
from jax import lax

from workbench.errors import ConversionError
from workbench.jax_to_onnx.builder import GraphBuilder, is_static
from workbench.jax_to_onnx.keys import host_array, physical_aval
from workbench.jax_to_onnx.lowering import LoweringContext, finish_subgraph, lower_jaxpr
from workbench.jax_to_onnx.registry import Testcase, handler

_I64_SCALAR = jax.ShapeDtypeStruct((), np.int64)
_BOOL_SCALAR = jax.ShapeDtypeStruct((), np.bool_)


# ----------------------------------------------------------------------------- shared helpers
def _lower_closed(builder: GraphBuilder, closed_jaxpr: Any, args: Sequence[ir.Value]) -> list[ir.Value]:
    """Lower a ClosedJaxpr into ``builder`` with ``args`` bound to its inputs (its consts become constants)."""
    consts = [builder.const(host_array(c)) for c in closed_jaxpr.consts]
    return lower_jaxpr(builder, closed_jaxpr.jaxpr, consts, list(args))


def _child(builder: GraphBuilder) -> GraphBuilder:
    """A builder for a subgraph of ``builder``'s graph; it may read every enclosing value."""
    return GraphBuilder(builder.state, parent=builder)


def _outputs(result: Any) -> list[ir.Value]:
    return list(result) if isinstance(result, tuple) else [result]


def _typed(builder: GraphBuilder, values: Sequence[ir.Value], avals: Sequence[Any]) -> list[ir.Value]:
    """Give control-flow node outputs their types (nested nodes are not seen by the walker)."""
    for value, aval in zip(values, avals, strict=True):
        builder.set_type(value, aval)
    return list(values)


def _typed_op(builder: GraphBuilder, aval: Any, op_type: str, *inputs: ir.Value, **attrs: Any) -> ir.Value:
    value = builder.op(op_type, *inputs, **attrs)
    builder.set_type(value, aval)
    return value


# ----------------------------------------------------------------------------- cond / switch
def _bool_predicate(builder: GraphBuilder, index: ir.Value) -> ir.Value:
    """The bool scalar for a two-way choice: the bool that ``lax.cond`` cast to int32, or index != 0."""
    producer = index.producer()
    if (
        producer is not None
        and producer.op_type == "Cast"
        and producer.inputs[0] is not None
        and producer.inputs[0].dtype == ir.DataType.BOOL
        and producer.inputs[0].shape is not None
        and producer.inputs[0].shape.rank() == 0
    ):
        return producer.inputs[0]
    return _typed_op(builder, _BOOL_SCALAR, "Cast", index, to=ir.DataType.BOOL)


def _emit_branches(
    builder: GraphBuilder,
    index: ir.Value,
    index_dtype: Any,
    branches: Sequence[Any],
    low: int,
    high: int,
    operands: Sequence[ir.Value],
    avals_out: Sequence[Any],
) -> list[ir.Value]:
    """Outputs of ``branches[index]`` for an index known to lie in ``[low, high)``."""
    if high - low == 1:
        return _lower_closed(builder, branches[low], operands)
    if (low, high) == (0, 2):
        predicate, first, second = _bool_predicate(builder, index), (1, 2), (0, 1)
    else:
        middle = (low + high + 1) // 2
        bound = builder.const(np.asarray(middle, dtype=index_dtype))
        predicate = _typed_op(builder, _BOOL_SCALAR, "Less", index, bound)
        first, second = (low, middle), (middle, high)
    graphs = []
    for sub_low, sub_high in (first, second):
        child = _child(builder)
        outputs = _emit_branches(child, index, index_dtype, branches, sub_low, sub_high, operands, avals_out)
        name = f"branch{sub_low}" if sub_high - sub_low == 1 else f"branches{sub_low}_{sub_high - 1}"
        graphs.append(finish_subgraph(child, [], outputs, name))
    result = builder.op("If", predicate, then_branch=graphs[0], else_branch=graphs[1], num_outputs=len(avals_out))
    return _typed(builder, _outputs(result), avals_out)


def _three_way(i: jax.Array, x: jax.Array) -> jax.Array:
    return lax.switch(i, [lambda v: v * 2.0, lambda v: jnp.sin(v) - 1.0, lambda v: (v @ v) * 0.5], x)


def _four_way(i: jax.Array, x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    return lax.switch(
        i,
        [
            lambda a, b: (a + b, jnp.sum(a)),
            lambda a, b: (a * b, jnp.max(b)),
            lambda a, b: (a - b, jnp.float32(0.5)),
            lambda a, b: (jnp.tanh(a), jnp.min(a)),
        ],
        x,
        y,
    )


def _cond_closure(p: jax.Array, x: jax.Array, w: jax.Array) -> jax.Array:
    scale = jnp.exp(w)  # closed over by both branches

    def positive(v: jax.Array) -> jax.Array:
        return v * scale

    def negative(v: jax.Array) -> jax.Array:
        return v / scale + w

    return lax.cond(jnp.sum(p) > 0, positive, negative, x)


def _cond_with_scan(p: jax.Array, xs: jax.Array) -> jax.Array:
    def running_sum(values: jax.Array) -> jax.Array:
        return lax.scan(lambda c, v: (c + v, c * v), jnp.zeros(values.shape[1:]), values)[1]

    return lax.cond(p > 0, running_sum, lambda values: values * 3.0, xs)


@handler("cond", onnx_ops=("If", "Less", "Cast"), testcases=[
    Testcase("cond_two_branches_true", lambda p, x: lax.cond(p > 0, lambda v: v * 2.0, lambda v: v - 1.0, x),
             [np.float32(1.0), ("B", 4)], expect_ops=("If",)),
    Testcase("cond_two_branches_false", lambda p, x: lax.cond(p > 0, lambda v: jnp.cos(v), lambda v: -v, x),
             [np.float32(-1.0), ("B", 4)], expect_ops=("If",)),
    Testcase("cond_closure_outer_values", _cond_closure, [(3,), ("B", 4), (4,)]),
    Testcase("cond_identity_branch", lambda p, x: lax.cond(p, lambda v: v, lambda v: v + 1.0, x),
             [np.array(True), ("B", 4)]),
    Testcase("switch_three_branches", _three_way, [np.array(2, np.int32), (3, 3)], rtol=1e-4, atol=1e-4),
    Testcase("switch_three_branches_middle", _three_way, [np.array(1, np.int32), (3, 3)]),
    Testcase("switch_four_branches_clamped_high", _four_way, [np.array(7, np.int32), ("B", 4), ("B", 4)]),
    Testcase("switch_four_branches_clamped_low", _four_way, [np.array(-3, np.int32), ("B", 4), ("B", 4)]),
    Testcase("switch_four_branches_index2", _four_way, [np.array(2, np.int32), ("B", 4), ("B", 4)]),
    Testcase("cond_scan_inside", _cond_with_scan, [np.float32(1.0), ("T", 3)]),
], doc="https://docs.jax.dev/en/latest/_autosummary/jax.lax.switch.html")
def _cond(
    ctx: LoweringContext,
    index: ir.Value,
    *operands: ir.Value,
    branches: Sequence[Any],
    branches_platforms: Sequence[Sequence[str] | None] | None = None,
) -> Any:
    """``cond(index, *operands, branches)``: If for two branches, a balanced tree of If for more.

    With ``branches_platforms`` (``lax.platform_dependent``, whose index is a ``platform_index``) the
    CPU branch is chosen here and lowered in place, with no If: see :func:`_platform_index`.
    """
    if branches_platforms is not None:
        return tuple(_lower_closed(ctx.builder, branches[cpu_branch(branches_platforms)], list(operands)))
    index_dtype = np.dtype(ctx.avals_in[0].dtype)
    outputs = _emit_branches(
        ctx.builder, index, index_dtype, branches, 0, len(branches), list(operands), ctx.avals_out
    )
    return tuple(outputs)


# ----------------------------------------------------------------------------- while
def _count_until(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Data-dependent trip count: double until the sum exceeds a threshold."""

    def keep_going(state: tuple[jax.Array, jax.Array]) -> jax.Array:
        return (jnp.sum(jnp.abs(state[1])) < 100.0) & (state[0] < 50)

    def step(state: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        return state[0] + 1, state[1] * 2.0 + 0.1

    return lax.while_loop(keep_going, step, (jnp.int32(0), x))


def _while_with_consts(x: jax.Array, limit: jax.Array, w: jax.Array) -> jax.Array:
    """Both cond and body close over traced outer values (cond_nconsts, body_nconsts > 0)."""
    return lax.while_loop(lambda v: jnp.max(v) < jnp.max(limit), lambda v: v + jnp.abs(w) + 0.5, x)


def _freeze_finished(
    builder: GraphBuilder, active: ir.Value, batch_rank: int, new: ir.Value, old: ir.Value, aval: Any
) -> ir.Value:
    """``new`` where the batched predicate ``active`` (the carry's leading axes) holds, else ``old``.

    A carried PRNG key is its key data here: its trailing key axis is broadcast over too. A bool carry
    is selected by logic (onnxruntime's CPU provider has no Where kernel for bool tensors).
    """
    trailing = list(range(batch_rank, physical_aval(aval).ndim))
    if trailing:
        active = builder.op("Unsqueeze", active, builder.i64(trailing))
    if np.dtype(physical_aval(aval).dtype) == np.bool_:
        kept = builder.op("And", builder.op("Not", active), old)
        return _typed_op(builder, aval, "Or", builder.op("And", active, new), kept)
    return _typed_op(builder, aval, "Where", active, new, old)


def _masked_state_loop(x: jax.Array) -> jax.Array:
    """A vmapped while_loop whose condition depends on the batch element (a batched predicate)."""
    return jax.vmap(lambda row: lax.while_loop(lambda v: jnp.mean(v) < 3.0, lambda v: v + 1.0, row))(x)


def _masked_two_carries(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Batched predicate with a scalar-per-element counter and a vector carry."""

    def run(row: jax.Array) -> tuple[jax.Array, jax.Array]:
        return lax.while_loop(lambda s: jnp.sum(s[1]) < 6.0, lambda s: (s[0] + 1, s[1] * 1.5 + 0.25),
                              (jnp.int32(0), jnp.abs(row)))

    return jax.vmap(run)(x)


def _rejection_sampled(key_data: jax.Array) -> tuple[jax.Array, jax.Array]:
    """A vmapped rejection loop carrying a PRNG key (jax.random.gamma's shape): redraw until above 0.6."""

    def draw(key: jax.Array) -> tuple[jax.Array, jax.Array]:
        def redraw(state: tuple[jax.Array, jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array, jax.Array]:
            key, sub = jax.random.split(state[0])
            return key, jax.random.uniform(sub), state[2] + 1

        _, value, tries = lax.while_loop(lambda state: state[1] < 0.6, redraw, (key, jnp.float32(0.0), jnp.int32(0)))
        return value, tries

    return jax.vmap(draw)(jax.random.wrap_key_data(key_data))


def _flag_carry(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """A vmapped while_loop carrying a bool flag (mctx's search loops carry such flags)."""

    def run(v: jax.Array) -> tuple[jax.Array, jax.Array]:
        return lax.while_loop(lambda s: s[0] < 2.0, lambda s: (s[0] * 1.5 + 0.1, s[1] & (s[0] < 1.0)), (v, jnp.bool_(True)))

    return jax.vmap(run)(x)


@handler("while", onnx_ops=("Loop", "ReduceSum", "Where", "And", "Or"), testcases=[
    Testcase("while_data_dependent_trip_count", _count_until, [("B", 4)], expect_ops=("Loop",)),
    Testcase("while_consts_in_cond_and_body", _while_with_consts, [("B", 4), (2,), (4,)]),
    Testcase("fori_loop_traced_bound", lambda n, x: lax.fori_loop(0, n, lambda i, v: v * 1.5 + i, x),
             [np.array(4, np.int32), ("B", 3)]),
    Testcase("while_zero_iterations", lambda x: lax.while_loop(lambda v: jnp.sum(v) > 1e9, lambda v: v + 1.0, x),
             [(2, 3)]),
    Testcase("while_vmap_batched_predicate", _masked_state_loop, [np.array([[1.0, 1.0], [2.5, 2.5]], np.float32)],
             expect_ops=("Loop",)),
    Testcase("while_vmap_batched_predicate_two_carries", _masked_two_carries, [("B", 3)]),
    Testcase("while_vmap_batched_predicate_key_carry", _rejection_sampled,
             [np.arange(1, 13, dtype=np.uint32).reshape(6, 2) * np.uint32(2654435761)], rtol=0, atol=0),
    Testcase("while_vmap_batched_predicate_bool_carry", _flag_carry, [np.array([0.5, 3.0, 0.2, 1.2, 0.9], np.float32)]),
], doc="https://docs.jax.dev/en/latest/_autosummary/jax.lax.while_loop.html")
def _while(
    ctx: LoweringContext,
    *operands: ir.Value,
    cond_jaxpr: Any,
    cond_nconsts: int,
    body_jaxpr: Any,
    body_nconsts: int,
) -> Any:
    """``while(cond_consts, body_consts, init)``: a Loop whose body also computes the next condition."""
    cond_consts = list(operands[:cond_nconsts])
    body_consts = list(operands[cond_nconsts : cond_nconsts + body_nconsts])
    init = list(operands[cond_nconsts + body_nconsts :])
    carry_avals = ctx.avals_in[cond_nconsts + body_nconsts :]

    predicate_aval = cond_jaxpr.out_avals[0]

    def condition(builder: GraphBuilder, state: Sequence[ir.Value]) -> tuple[ir.Value, ir.Value]:
        """(the loop's bool scalar, the raw predicate) for ``state``; they differ for a batched predicate."""
        predicate = _lower_closed(builder, cond_jaxpr, [*cond_consts, *state])[0]
        if not predicate_aval.shape:
            return predicate, predicate
        # vmap of a while_loop whose condition depends on the batch: JAX keeps iterating while any
        # element's predicate holds and freezes the elements whose predicate is false (see the
        # batched branch of jax's _while_lowering)
        count = builder.op("ReduceSum", builder.op("Cast", predicate, to=ir.DataType.INT32), keepdims=0)
        return _typed_op(builder, _BOOL_SCALAR, "Cast", count, to=ir.DataType.BOOL), predicate

    first_condition = condition(ctx.builder, init)[0]
    body = _child(ctx.builder)
    iteration = body.add_input("while_iter", _I64_SCALAR)
    condition_in = body.add_input("while_cond_in", _BOOL_SCALAR)
    carries = [body.add_input(f"while_carry{i}", aval) for i, aval in enumerate(carry_avals)]
    updated = _lower_closed(body, body_jaxpr, [*body_consts, *carries])
    if predicate_aval.shape:
        active = condition(body, carries)[1]
        updated = [_freeze_finished(body, active, predicate_aval.ndim, new, old, aval)
                   for new, old, aval in zip(updated, carries, carry_avals, strict=True)]
    next_condition = condition(body, updated)[0]
    graph = finish_subgraph(body, [iteration, condition_in, *carries], [next_condition, *updated], "while_body")
    result = ctx.op("Loop", None, first_condition, *init, body=graph, num_outputs=len(init))
    return tuple(_outputs(result))


# ----------------------------------------------------------------------------- scan
def _running(xs: jax.Array, w: jax.Array, *, reverse: bool) -> tuple[jax.Array, jax.Array]:
    def step(carry: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        new = jnp.tanh(carry * w + x)
        return new, new * 2.0 + carry

    return lax.scan(step, jnp.zeros(xs.shape[1:], xs.dtype), xs, reverse=reverse)


def _two_sequences(xs: jax.Array, ys: jax.Array) -> tuple[tuple[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]:
    def step(carry: tuple[jax.Array, jax.Array], pair: tuple[jax.Array, jax.Array]) -> Any:
        total, count = carry
        x, y = pair
        return (total + x * y, count + 1), (total, jnp.sum(x))

    return lax.scan(step, (jnp.zeros(xs.shape[1:]), jnp.int32(0)), (xs, ys), reverse=True)


Weights = dict[str, jax.Array]


def _gru_like(xs: jax.Array, wx: Weights, wh: Weights, b: Weights) -> tuple[jax.Array, jax.Array]:
    """A GRU cell unrolled over a time-major sequence (time, batch, features) → (final state, all states).

    The weight dicts hold the reset (``r``), update (``z``) and candidate (``n``) gates.
    """

    def cell(h: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        r = jax.nn.sigmoid(x @ wx["r"] + h @ wh["r"] + b["r"])
        z = jax.nn.sigmoid(x @ wx["z"] + h @ wh["z"] + b["z"])
        n = jnp.tanh(x @ wx["n"] + b["n"] + r * (h @ wh["n"]))
        h_new = (1.0 - z) * n + z * h
        return h_new, h_new

    h0 = jnp.zeros((xs.shape[1], wh["r"].shape[-1]), xs.dtype)
    return lax.scan(cell, h0, xs)


def _lstm_like(xs: jax.Array, wx: Weights, wh: Weights) -> jax.Array:
    """An LSTM cell with an (h, c) tuple carry over a time-major sequence; returns the last h.

    The weight dicts hold the input (``i``), forget (``f``), cell (``g``) and output (``o``) gates.
    """

    def cell(state: tuple[jax.Array, jax.Array], x: jax.Array) -> tuple[tuple[jax.Array, jax.Array], None]:
        h, c = state
        i, f, g, o = (x @ wx[k] + h @ wh[k] for k in "ifgo")
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (h, c), None

    zeros = jnp.zeros((xs.shape[1], wh["i"].shape[-1]), xs.dtype)
    (h, _), _ = lax.scan(cell, (zeros, zeros), xs)
    return h


def _gates(names: str, shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    return {name: shape for name in names}


def _no_xs_with_ys(x: jax.Array, *, reverse: bool) -> tuple[jax.Array, jax.Array]:
    return lax.scan(lambda c, _: (c * 0.5 + 1.0, jnp.sum(c)), x, None, length=5, reverse=reverse)


@handler("scan", onnx_ops=("Scan", "Loop", "Slice"), testcases=[
    Testcase("scan_forward_carry_ys", lambda xs, w: _running(xs, w, reverse=False), [(6, "B"), ("B",)],
             expect_ops=("Scan",)),
    Testcase("scan_reverse_carry_ys", lambda xs, w: _running(xs, w, reverse=True), [(6, "B"), ("B",)]),
    Testcase("scan_symbolic_length", lambda xs, w: _running(xs, w, reverse=False), [("T", 3), (3,)],
             symbolic_sizes={"T": 7}),
    Testcase("scan_reverse_symbolic_length_two_xs", _two_sequences, [("T", 2), ("T", 2)]),
    Testcase("scan_gru_cell", _gru_like, [(5, "B", 3), _gates("rzn", (3, 4)), _gates("rzn", (4, 4)), _gates("rzn", (4,))],
             rtol=1e-4, atol=1e-5),
    Testcase("scan_lstm_cell_tuple_carry", _lstm_like, [("T", "B", 3), _gates("ifgo", (3, 5)), _gates("ifgo", (5, 5))],
             rtol=1e-4, atol=1e-5),
    Testcase("fori_loop_static", lambda x: lax.fori_loop(0, 6, lambda i, v: v * 0.9 + i, x), [("B", 3)],
             expect_ops=("Loop",)),
    Testcase("scan_no_xs_ys", lambda x: _no_xs_with_ys(x, reverse=False), [(3,)]),
    Testcase("scan_no_xs_ys_reverse", lambda x: _no_xs_with_ys(x, reverse=True), [(3,)]),
], doc="https://docs.jax.dev/en/latest/_autosummary/jax.lax.scan.html")
def _scan(
    ctx: LoweringContext,
    *operands: ir.Value,
    jaxpr: Any,
    length: Any,
    reverse: bool,
    num_consts: int,
    num_carry: int,
    unroll: Any,
    linear: Any = None,
    _split_transpose: bool = False,
) -> Any:
    """``scan(consts, init, xs)`` → (final carry, ys): Scan when there are xs, Loop otherwise."""
    del unroll  # an XLA compilation hint; the ONNX runtime decides how to run the loop
    del linear, _split_transpose  # (older JAX releases) for differentiation only
    consts = list(operands[:num_consts])
    init = list(operands[num_consts : num_consts + num_carry])
    xs = list(operands[num_consts + num_carry :])
    body_avals = jaxpr.in_avals
    carry_avals = body_avals[num_consts : num_consts + num_carry]
    x_avals = body_avals[num_consts + num_carry :]
    num_ys = len(ctx.avals_out) - num_carry

    body = _child(ctx.builder)
    prefix: list[ir.Value] = []
    if not xs:
        prefix = [body.add_input("scan_iter", _I64_SCALAR), body.add_input("scan_cond_in", _BOOL_SCALAR)]
    carries = [body.add_input(f"scan_carry{i}", aval) for i, aval in enumerate(carry_avals)]
    x_slices = [body.add_input(f"scan_x{i}", aval) for i, aval in enumerate(x_avals)]
    outputs = _lower_closed(body, jaxpr, [*consts, *carries, *x_slices])

    if xs:
        graph = finish_subgraph(body, [*carries, *x_slices], outputs, "scan_body")
        directions = {}
        if reverse:
            directions = {"scan_input_directions": [1] * len(xs), "scan_output_directions": [1] * num_ys}
        result = ctx.op(
            "Scan", *init, *xs, body=graph, num_scan_inputs=len(xs), num_outputs=len(ctx.avals_out), **directions
        )
        return tuple(_outputs(result))

    # No scanned inputs (fori_loop with static bounds, scan(..., None, length=n)): a counted Loop.
    graph = finish_subgraph(body, [*prefix, *carries], [prefix[1], *outputs], "scan_body")
    trip_count = _trip_count(ctx, length)
    keep_going = ctx.const(np.asarray(True))
    results = _outputs(ctx.op("Loop", trip_count, keep_going, *init, body=graph, num_outputs=len(ctx.avals_out)))
    if reverse and num_ys:
        for position in range(num_carry, len(results)):
            stacked = _typed(ctx.builder, [results[position]], [ctx.avals_out[position]])[0]
            results[position] = ctx.op(
                "Slice", stacked, ctx.i64([-1]), ctx.i64([np.iinfo(np.int64).min]), ctx.i64([0]), ctx.i64([-1])
            )
    return tuple(results)


def _trip_count(ctx: LoweringContext, length: Any) -> ir.Value:
    """The Loop trip count M as an int64 scalar.

    Without scanned inputs JAX itself requires a static ``length`` (a symbolic one fails in tracing).
    """
    if not is_static(length):
        raise ConversionError(f"scan without scanned inputs needs a static length, got {length!r}")
    return ctx.const(np.asarray(int(length), dtype=np.int64))


__all__: list[str] = []


# ----------------------------------------------------------------------------- platform_index
PLATFORM = "cpu"  # the branch of lax.platform_dependent an ONNX model takes: onnxruntime's CPU is the reference


@handler("platform_index", onnx_ops=(), area="jax", doc="https://docs.jax.dev/en/latest/_autosummary/jax.lax.platform_dependent.html",
         testcases=[
    Testcase("platform_dependent_cpu_branch", lambda x: lax.platform_dependent(x, cpu=jnp.sin, default=jnp.cos), [("B", 3)]),
    Testcase("platform_dependent_default_branch", lambda x: lax.platform_dependent(x, tpu=jnp.sin, default=jnp.cos), [("B", 3)]),
])
def _platform_index(ctx: LoweringContext, *, platforms: Sequence[Sequence[str] | None]) -> ir.Value:
    """The index of the CPU branch among ``platforms`` (a tuple of platform-name tuples, None = default).

    JAX picks the branch when it lowers for a device; the ONNX model is one program for any runtime,
    so it takes the CPU branch (what jax computes on CPU, which the parity tests compare with).
    """
    return ctx.const(np.asarray(cpu_branch(platforms), dtype=np.int32))


def cpu_branch(platforms: Sequence[Sequence[str] | None]) -> int:
    """The index of the branch for :data:`PLATFORM` among ``platforms``, else of the default (None) one."""
    default = None
    for index, names in enumerate(platforms):
        if names is None:
            default = index
        elif PLATFORM in names:
            return index
    if default is None:
        raise ConversionError(
            f"lax.platform_dependent has no CPU branch and no default (branches for {list(platforms)}); "
            "add cpu=... or default=... to export it."
        )
    return default
