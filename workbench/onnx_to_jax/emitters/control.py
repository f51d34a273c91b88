"""Control flow: If -> lax.cond, Loop -> lax.while_loop / lax.scan, Scan -> lax.scan (Scan-8: vmapped over its
batch axis).

Subgraphs become nested Python functions (see ``NodeContext.subgraph``) that
read outer values through closures. When the condition or trip count is a
concrete value (eager execution) the helpers run plain Python control flow, so
branches with different output shapes and loops with growing state still
work; under ``jax.jit`` they lower to ``lax`` control flow.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import onnx
from jax import lax

from workbench.onnx_to_jax.context import NodeContext
from workbench.onnx_to_jax.registry import emitter, runtime_helper
from workbench.onnx_to_jax.trip_count import proven_trip_count


@runtime_helper
def _is_concrete(value):
    return not isinstance(value, jax.core.Tracer)


@runtime_helper
def _if(cond, then_fn, else_fn):
    if _is_concrete(cond):
        return then_fn() if bool(np.asarray(cond).reshape(())) else else_fn()
    try:
        return lax.cond(jnp.reshape(cond, ()), then_fn, else_fn)
    except TypeError as error:
        if "equal output types" not in str(error):
            raise
        # e.g. Optimum's merged decoders: present.* has the new tokens' length without the cache, past + new with it
        raise TypeError(
            "the If's branches give outputs of different shapes or types, so jax.jit cannot trace its condition as "
            "an array; pass the condition input as a static Python bool, e.g. "
            "wb.jit_forward(forward, params, static_argnums=(<its position among the inputs>,)), one compilation "
            "per branch"
        ) from error


def _tensor_signature(value: onnx.ValueInfoProto) -> tuple | None:
    """(element type, shape) of a subgraph output when shape inference fixed it entirely, else None."""
    if value.type.WhichOneof("value") != "tensor_type" or not value.type.tensor_type.HasField("shape"):
        return None
    dims = value.type.tensor_type.shape.dim
    if any(not d.HasField("dim_value") for d in dims):
        return None
    return value.type.tensor_type.elem_type, tuple(d.dim_value for d in dims)


def _branches_differ(then_graph: onnx.GraphProto, else_graph: onnx.GraphProto) -> bool:
    """True when the branches are known to give outputs of different types or shapes, or give sequences
    or optionals (whose length or presence may differ): lax.cond cannot trace them, so the condition
    must then be concrete."""
    for a, b in zip(then_graph.output, else_graph.output):
        if {a.type.WhichOneof("value"), b.type.WhichOneof("value")} & {"sequence_type", "optional_type"}:
            return True
        sig_a, sig_b = _tensor_signature(a), _tensor_signature(b)
        if sig_a is not None and sig_b is not None and sig_a != sig_b:
            return True
    return False


@emitter("If", since=(1, 11, 13, 16))
def if_(ctx: NodeContext) -> str:
    then_fn = ctx.subgraph("then_branch")
    else_fn = ctx.subgraph("else_branch")
    differ = _branches_differ(ctx.attr("then_branch"), ctx.attr("else_branch"))
    call = ctx.call(_if, ctx.host(0) if differ else ctx.x(0), then_fn, else_fn)
    return call if ctx.n_out > 1 else f"{call}[0]"


@runtime_helper
def _loop(body, max_trip, cond, carried, n_scan, cond_passthrough, trip_count=None):
    """ONNX Loop. ``body(i, cond, *carried) -> (cond, *carried, *scan_outputs)``.

    ``trip_count``: how many times the body runs, when the generator proved it (trip_count.py): with scan
    outputs the loop then lowers to lax.scan however its condition is computed."""
    # sequences (lists) and empty optionals (None) are carried as they are
    carried = tuple(c if isinstance(c, list) or c is None else jnp.asarray(c) for c in carried)
    has_max = max_trip is not None
    has_cond = cond is not None
    eager = (not has_max or _is_concrete(max_trip)) and (not has_cond or _is_concrete(cond))
    eager = eager and all(_is_concrete(c) for c in carried)
    counter = jax.dtypes.canonicalize_dtype(jnp.int64)  # int32 unless x64 is on
    if eager:
        limit = int(np.asarray(max_trip).reshape(())) if has_max else None
        keep_going = bool(np.asarray(cond).reshape(())) if has_cond else True
        i = 0
        scans = [[] for _ in range(n_scan)]
        while keep_going and (limit is None or i < limit):
            out = body(jnp.asarray(i, counter), jnp.asarray(keep_going), *carried)
            if has_cond and not cond_passthrough:  # (a passed-through condition is traced under jax.jit)
                keep_going = bool(np.asarray(out[0]).reshape(()))
            carried = tuple(out[1:1 + len(carried)])
            for k in range(n_scan):
                scans[k].append(out[1 + len(carried) + k])
            i += 1
        stacked = tuple(jnp.stack(s) if s else jnp.zeros((0,)) for s in scans)
        return carried + stacked
    always = not has_cond or (cond_passthrough and _is_concrete(cond) and bool(np.asarray(cond).reshape(())))
    if n_scan and (trip_count is not None or (has_max and _is_concrete(max_trip) and always)):
        # fixed trip count: lax.scan collects the per-iteration outputs (the condition stays true until then)
        count = trip_count if trip_count is not None else int(np.asarray(max_trip).reshape(()))

        def step(state, i):
            out = body(i, jnp.asarray(True), *state)
            return tuple(out[1:1 + len(state)]), tuple(out[1 + len(state):])

        final, stacked = lax.scan(step, carried, jnp.arange(count, dtype=counter))
        return tuple(final) + tuple(stacked)
    if n_scan:
        raise NotImplementedError("Loop with scan outputs and a dynamic condition cannot be jitted")
    # no trip count (tf2onnx's while loops), or one the counter cannot reach (jax2onnx writes int64's maximum
    # for a while loop): the condition alone ends the loop; the counter keeps JAX's integer width (int64's
    # maximum as a limit overflowed int32 when x64 is off, and the loop never ran)
    unreachable = (has_max and _is_concrete(max_trip)
                   and int(np.asarray(max_trip).reshape(())) >= np.iinfo(counter).max)
    limit = jnp.asarray(max_trip).reshape(()) if has_max and not unreachable else None
    counter = counter if limit is None else limit.dtype
    start_cond = jnp.asarray(cond if has_cond else True).reshape(())

    def cond_fn(state):
        i, c, _ = state
        return c if limit is None else jnp.logical_and(c, i < limit)

    def body_fn(state):
        i, c, values = state
        out = body(i, c, *values)
        return i + 1, jnp.reshape(out[0], ()).astype(bool), tuple(out[1:])

    _, _, final = lax.while_loop(cond_fn, body_fn, (jnp.asarray(0, counter), start_cond, carried))
    return tuple(final)


def _cond_passes_through(body) -> bool:
    """True when the body returns its condition input unchanged (directly or via Identity)."""
    if len(body.input) < 2:
        return False
    name = body.output[0].name
    producers = {out: node for node in body.node for out in node.output}
    while name in producers and producers[name].op_type == "Identity":
        name = producers[name].input[0]
    return name == body.input[1].name


@emitter("Loop", since=(1, 11, 13, 16))
def loop(ctx: NodeContext) -> str:
    body = ctx.attr("body")
    n_carried = ctx.n_in - 2
    n_scan = len(body.output) - 1 - n_carried
    trip = _trip_count(ctx, body) if n_scan else None
    body_fn = ctx.subgraph("body")
    # with scan outputs, only a trip count known while tracing (and a condition that stays true, or the
    # count proven now) lowers to lax.scan: otherwise the loop runs in Python on concrete values (see _loop)
    read = ctx.host if n_scan and trip is None else ctx.x
    max_trip = read(0) if ctx.has(0) else "None"
    cond = read(1) if ctx.has(1) else "None"
    carried = [ctx.x(i) for i in range(2, ctx.n_in)]
    carried_expr = f"({', '.join(carried)}{',' if len(carried) == 1 else ''})"
    args = [body_fn, max_trip, cond, carried_expr, ctx.lit(n_scan), ctx.lit(_cond_passes_through(body))]
    call = ctx.call(_loop, *args, *([] if trip is None else [ctx.lit(trip)]))
    return call if ctx.n_out > 1 else f"{call}[0]"


def _trip_count(ctx: NodeContext, body: onnx.GraphProto) -> int | None:
    """The Loop's trip count when the file's values fix it (tf2onnx's while loops: trip_count.py)."""
    max_trip = ctx.file_value(ctx.node.input[0]) if ctx.has(0) else None
    cond = ctx.file_value(ctx.node.input[1]) if ctx.has(1) else None
    if (ctx.has(0) and max_trip is None) or (ctx.has(1) and cond is None):
        return None
    carried = [ctx.file_value(ctx.node.input[i]) if ctx.has(i) else None for i in range(2, ctx.n_in)]
    return proven_trip_count(body, max_trip, cond, carried, ctx.file_value, ctx.opset)


@runtime_helper
def _scan(body, n_state, inputs, n_scan_in, scan_input_axes, scan_input_directions,
          scan_output_axes, scan_output_directions):
    state = tuple(jnp.asarray(v) for v in inputs[:n_state])
    xs = []
    for k, x in enumerate(inputs[n_state:]):
        x = jnp.moveaxis(jnp.asarray(x), scan_input_axes[k] if scan_input_axes else 0, 0)
        if scan_input_directions and scan_input_directions[k]:
            x = jnp.flip(x, 0)
        xs.append(x)

    def step(carry, slices):
        out = body(*carry, *slices)
        return tuple(out[:n_state]), tuple(out[n_state:])

    final, ys = lax.scan(step, state, tuple(xs))
    outs = []
    for k, y in enumerate(ys):
        if scan_output_directions and scan_output_directions[k]:
            y = jnp.flip(y, 0)
        axis = scan_output_axes[k] if scan_output_axes else 0
        outs.append(jnp.moveaxis(y, 0, axis % y.ndim))
    return tuple(final) + tuple(outs)


@emitter("Scan", since=(9, 11, 16))
def scan(ctx: NodeContext) -> str:
    body = ctx.attr("body")
    n_scan_in = ctx.attr("num_scan_inputs")
    n_state = ctx.n_in - n_scan_in
    body_fn = ctx.subgraph("body")

    def opt_list(name: str) -> str:
        value = ctx.attr(name, None)
        return "None" if value is None else ctx.lit(tuple(value))

    inputs = f"({', '.join(ctx.xs())},)"
    del body
    call = ctx.call(
        _scan, body_fn, ctx.lit(n_state), inputs, ctx.lit(n_scan_in), opt_list("scan_input_axes"),
        opt_list("scan_input_directions"), opt_list("scan_output_axes"), opt_list("scan_output_directions"),
    )
    return call if ctx.n_out > 1 else f"{call}[0]"


@runtime_helper
def _scan8(body, sequence_lens, n_state, inputs, directions):
    """Scan-8: axis 0 of every state and scan input is a batch, run independently (``jax.vmap``); each
    sequence runs along axis 1 for its own length (``sequence_lens``, else the whole axis), a reverse
    scan input from that length's last element down. The states stop changing after a sequence's end
    and its scan outputs there are 0 (the spec leaves them undefined). Lengths are checked against the
    sequence axis when concrete (traced under jax.jit they cannot be)."""
    states = tuple(jnp.asarray(v) for v in inputs[:n_state])
    xs = tuple(jnp.asarray(v) for v in inputs[n_state:])
    steps = xs[0].shape[1]
    reverse = tuple(bool(directions[k]) if directions else False for k in range(len(xs)))
    if sequence_lens is None:
        lengths = jnp.full((xs[0].shape[0],), steps, jnp.int32)
    else:
        lengths = jnp.reshape(jnp.asarray(sequence_lens), (-1,)).astype(jnp.int32)
        if _is_concrete(sequence_lens) and not bool(jnp.all((lengths >= 0) & (lengths <= steps))):
            raise ValueError(f"Scan sequence_lens {np.asarray(sequence_lens).tolist()} must lie in [0, {steps}], "
                             "the scan inputs' axis 1")

    def one(length, state, seqs):
        def step(carry, t):
            slices = tuple(jnp.take(x, jnp.clip(length - 1 - t if back else t, 0, steps - 1), axis=0)
                           for x, back in zip(seqs, reverse))
            out = body(*carry, *slices)
            live = t < length
            carry = tuple(jnp.where(live, jnp.asarray(o).astype(c.dtype), c) for o, c in zip(out[:n_state], carry))
            return carry, tuple(jnp.where(live, o, jnp.zeros_like(o)) for o in out[n_state:])

        return lax.scan(step, state, jnp.arange(steps, dtype=jnp.int32))

    final, ys = jax.vmap(one)(lengths, states, xs)
    return tuple(final) + tuple(ys)


@emitter("Scan", since=8)
def scan8(ctx: NodeContext) -> str:
    n_scan_in = ctx.attr("num_scan_inputs")
    n_state = ctx.n_in - 1 - n_scan_in
    if n_scan_in < 1 or n_state < 0:
        raise ctx.error(f"num_scan_inputs={n_scan_in} with {ctx.n_in - 1} state and scan inputs: Scan-8 needs "
                        "at least one scan input, after the states")
    body_fn = ctx.subgraph("body")
    directions = ctx.attr("directions", None)
    inputs = f"({', '.join(ctx.x(i) for i in range(1, ctx.n_in))},)"
    call = ctx.call(_scan8, body_fn, ctx.opt(0), ctx.lit(n_state), inputs,
                    "None" if directions is None else ctx.lit(tuple(directions)))
    return call if ctx.n_out > 1 else f"{call}[0]"
