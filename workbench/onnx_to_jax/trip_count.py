"""Trip counts of ONNX Loops whose body computes the condition from counters (tf2onnx's while loops).

tf2onnx writes ``tf.while_loop`` as a Loop whose body computes the next condition; for Keras' recurrent
layers and TensorArray writes that condition is ``time + 1 < steps and counter < maximum``: it reads the
iteration number, loop-carried counters that start at known values and step by known amounts, and
constants. Such a loop's per-iteration (scan) outputs are stacked to its trip count, which ``jax.jit``
needs while tracing (``lax.scan``), and the condition is a traced value there.

:func:`proven_trip_count` finds the part of the body the condition depends on. When every value in it
is the iteration number, a carried value whose initial value is known and whose next value also lies in
that part, or a value known at generation time, it runs that part with numpy (the package's one constant
evaluator, ``onnx_io.evaluate``) iteration by iteration and returns the count. The values it reads are
the file's, fixed at generation time, as ``NodeContext.host`` inlines the values code reads on the host.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx

from workbench.onnx_io.evaluate import evaluate_node

# iterations simulated at most (each runs the condition's few nodes in onnx's reference evaluator)
MAX_TRIPS = 10_000
# elements of any value on the condition's path (counters and bounds are scalars)
MAX_ELEMENTS = 64
# ops the condition's path may hold: deterministic arithmetic, comparisons and index ops
PATH_OPS = frozenset(
    "Add Sub Mul Div Neg Abs Cast CastLike Identity Equal Less Greater LessOrEqual GreaterOrEqual Not And Or "
    "Xor Min Max Mod Floor Ceil Reshape Squeeze Unsqueeze Gather Slice Concat Constant Where Sign Shape Size "
    "ReduceMax ReduceMin ReduceSum ReduceProd".split()
)

# nodes on one value's path at most (a cycle, which ONNX forbids, or a long computation: not a counter's)
MAX_PATH = 1_000

Lookup = Callable[[str], "np.ndarray | None"]
Producers = Callable[[str], "onnx.NodeProto | None"]


class _Path:
    """The nodes computing values of one graph, evaluated on demand with numpy."""

    def __init__(self, producer: Producers, opset: int):
        self.producer = producer
        self.opset = opset

    def evaluate(self, name: str, known: dict[str, np.ndarray], outer: Lookup) -> np.ndarray | None:
        """The value of ``name``: from ``known`` (filled as it goes), this graph's nodes, or ``outer``."""
        pending = [name]
        while pending:
            current = pending[-1]
            if current in known:
                pending.pop()
                continue
            node = self.producer(current)
            if node is None:
                value = outer(current)
                if value is None:
                    return None
                known[current] = value
                pending.pop()
                continue
            if node.domain not in ("", "ai.onnx") or node.op_type not in PATH_OPS:
                return None
            missing = [n for n in node.input if n and n not in known]
            if missing:
                if len(pending) > MAX_PATH:
                    return None
                pending.extend(missing)
                continue
            inputs = [known[n] if n else None for n in node.input]
            if any(v.size > MAX_ELEMENTS for v in inputs if v is not None):
                return None
            attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            outputs = evaluate_node(node.op_type, inputs, attributes, self.opset, n_outputs=len(node.output))
            if outputs is None:
                return None
            known.update((out, value) for out, value in zip(node.output, outputs) if out)
            pending.pop()
        return known[name]


def static_value(name: str, producer: Producers, known: Lookup, opset: int) -> np.ndarray | None:
    """``name``'s value computed from values ``known`` at generation time through the nodes ``producer``
    gives (by output name), or None when it depends on anything else."""
    return _Path(producer, opset).evaluate(name, {}, known)


def proven_trip_count(body: onnx.GraphProto, max_trip: np.ndarray | None, cond: np.ndarray | None,
                      carried: list[np.ndarray | None], outer: Lookup, opset: int) -> int | None:
    """How many times the Loop runs ``body``, or None when that is not known at generation time.

    ``max_trip`` and ``cond``: the Loop's first two inputs (None when absent); ``carried``: the initial
    value of each loop-carried input when known; ``outer``: values of the enclosing scopes known now.
    """
    iteration, cond_in, *carried_in = [value.name for value in body.input]
    producers = {name: node for node in body.node for name in node.output if name}
    path = _Path(producers.get, opset)
    local = {tensor.name: onnx.numpy_helper.to_array(tensor) for tensor in body.initializer}
    state = {name: value for name, value in zip(carried_in, carried) if value is not None}
    next_of = {name: body.output[1 + k].name for k, name in enumerate(carried_in)}
    used: set[str] = set()  # the carried values the condition reads, directly or through other carried values
    outer_values: dict[str, np.ndarray | None] = {}  # the enclosing scopes' values, looked up once

    def lookup(name: str) -> np.ndarray | None:
        if name in local:
            return local[name]
        if name in next_of:
            if name not in state:
                return None  # a carried value that starts unknown
            used.add(name)
            return state[name]
        if name not in outer_values:
            outer_values[name] = outer(name)
        return outer_values[name]

    limit = None if max_trip is None else int(np.asarray(max_trip).reshape(()))
    keep_going = True if cond is None else bool(np.asarray(cond).reshape(()))
    count = 0
    while keep_going and (limit is None or count < limit):
        if count >= MAX_TRIPS:
            return None
        known = {iteration: np.array(count, np.int64), cond_in: np.array(keep_going)}
        result = path.evaluate(body.output[0].name, known, lookup)
        if result is None or result.size != 1:
            return None
        keep_going = bool(result.reshape(()))
        updated: dict[str, np.ndarray] = {}
        while used - set(updated):
            name = min(used - set(updated))
            value = path.evaluate(next_of[name], known, lookup)
            if value is None:
                return None
            updated[name] = value
        state.update(updated)
        count += 1
    return count
