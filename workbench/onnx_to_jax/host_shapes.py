"""Value-dependent models: what runs on concrete arrays written in numpy, no XLA compile per operation.

In a model whose shapes depend on values (segments.py) much of the shape arithmetic can only run once
a ``NonZero`` has counted something: ``TopK``'s ``k = min(1000, n)`` from a shape read inside a part,
a ``ConstantOfShape`` of the number of boxes. The generator writes such nodes under
``jax.ensure_compile_time_eval()`` so they stay concrete while ``jax.jit`` traces, and JAX then runs
each operation eagerly: one small XLA compile per operation and input shape, 10-50 ms of CPU each. The
same holds for the subgraphs of a value-dependent node, which run op by op on the host (torchvision's
batched NMS: an ``If`` whose branch moves each label's boxes apart, then calls NonMaxSuppression). A
detector's first call made 25 to 47 such compiles. For these models the segment assembler writes those
operations as numpy calls instead, through ``_on_host``, which keeps JAX's function wherever an
argument is traced (a part shared between classes passes its class label as a traced argument,
segments.py; ``jax.grad`` through the model traces everything).

How a node gets its numpy form: an emitter writes a call through ``NodeContext.call``, which returns a
``Call`` (context.py) that keeps the function and the arguments. For a node that would run on concrete
arrays (shape arithmetic, the nodes of a subgraph) the generator asks ``host_form`` for the same call
with the numpy function first, and writes it beside the node's line as that line's host form
(writer.py); the segment assembler writes the host forms of the nodes it runs on concrete arrays.
Whether a model has value-dependent nodes is known only once all its nodes are written, so each line
keeps both forms until then; models without such nodes never use the second: their source is
unchanged.

Which functions have a numpy form: the jnp functions of ``_NUMPY_NAMESAKES`` (numpy's function of the
same name computes the same on integers, booleans, float32 and float64: data movement, comparisons, one
correctly rounded IEEE operation, min/max) and the runtime helpers of ``_HOST_HELPERS``. A helper has no
numpy copy: ``_in_numpy`` runs the helper's own body with ``jnp`` naming numpy (each listed helper uses
only what numpy has under the same name, and calls no other helper; tests/onnx_to_jax/
test_value_dependent.py checks each against JAX). Giving the helpers an array-namespace argument
(``xp=jnp``) instead would rewrite their text in every generated module that uses them, for models that
never run on the host. Only single-output nodes whose inputs are integers, booleans or float32/float64
get a numpy form; float sums and products (rounded in another order) and float casts keep JAX's.
"""

from __future__ import annotations

from typing import Callable

import jax
import numpy as np

from workbench.onnx_to_jax.context import Call
from workbench.onnx_to_jax.emitters.reduce import _reduce
from workbench.onnx_to_jax.emitters.shape import _constant_of_shape, _squeeze, _unsqueeze
from workbench.onnx_to_jax.helpers import runtime_helper
from workbench.onnx_to_jax.literals import literal


@runtime_helper
def _on_host(numpy_fn, jax_fn, *args, **kwargs):
    """``numpy_fn(*args, **kwargs)`` on concrete values (shape arithmetic of a value-dependent model:
    no XLA compile), ``jax_fn`` where an argument is traced. Concrete JAX arrays become numpy arrays
    first: numpy hands a JAX array to its own methods (``np.take`` calls ``.take(mode='raise')``, which
    JAX does not implement; Mask R-CNN's per-box Loop body)."""
    leaves, tree = jax.tree_util.tree_flatten((args, kwargs))
    if any(isinstance(leaf, jax.core.Tracer) for leaf in leaves):
        return jax_fn(*args, **kwargs)
    args, kwargs = jax.tree_util.tree_unflatten(
        tree, [np.asarray(leaf) if isinstance(leaf, jax.Array) else leaf for leaf in leaves])
    return numpy_fn(*args, **kwargs)


@runtime_helper
def _in_numpy(helper):
    """``helper`` (a runtime helper) run with ``jnp`` naming numpy: its own body on concrete arrays, no
    XLA (workbench/onnx_to_jax/host_shapes.py lists the helpers whose body means the same there). Made
    once per helper."""
    import types

    made = _in_numpy.__dict__.setdefault("made", {})
    if helper not in made:
        names = dict(helper.__globals__, jnp=np)
        made[helper] = types.FunctionType(helper.__code__, names, helper.__name__, helper.__defaults__,
                                          helper.__closure__)
    return made[helper]


# jnp functions whose numpy namesake computes the same on integer and boolean arrays, and on
# float32/float64 too: each is data movement, a comparison or one correctly rounded IEEE operation
_NUMPY_NAMESAKES: dict[str, str] = {
    f"jnp.{name}": f"np.{name}" for name in (
        "take", "concatenate", "reshape", "equal", "not_equal", "add", "subtract", "multiply", "where", "tile",
        "less", "greater", "less_equal", "greater_equal", "maximum", "minimum", "logical_and", "logical_or",
        "logical_not", "logical_xor",
    )
}
# ... and one that does so on integers and booleans only: a cast (``jnp.asarray(x).astype(t)``) of floats
# may round or overflow otherwise in numpy than in XLA
_INTEGER_NAMESAKES: dict[str, str] = {"jnp.asarray": "np.asarray"}


def _any_call(args: tuple[str, ...], floats: bool) -> bool:
    return True


def _reduction_on_host(args: tuple[str, ...], floats: bool) -> bool:
    # min and max of anything; sum and prod of integers only (float sums round in another order); the
    # kind is the first argument, a literal (emitters/reduce.py)
    kind = args[0]
    return kind in (literal("min"), literal("max")) or (not floats and kind in (literal("sum"), literal("prod")))


# runtime helpers whose body computes the same with numpy as with jnp on integers, booleans and
# float32/float64, for the calls the rule accepts (its arguments as written, whether an input is a float)
_HOST_HELPERS: dict[Callable, Callable[[tuple[str, ...], bool], bool]] = {
    _unsqueeze: _any_call,
    _squeeze: _any_call,
    _constant_of_shape: _any_call,
    _reduce: _reduction_on_host,
}


def host_form(call: Call, floats: bool) -> tuple[str, tuple[Callable, ...]] | None:
    """``call`` as a call of ``_on_host`` with the numpy form first, and the helpers that text names;
    None when the call has no numpy form here. ``floats``: some input of the node is float32/float64
    (the caller checks that the others are integers or booleans)."""
    arguments = ", ".join(call.args)
    if call.helper is not None:
        accepts = _HOST_HELPERS.get(call.helper)
        if accepts is None or not accepts(call.args, floats):
            return None
        return f"_on_host(_in_numpy({call.fn}), {call.fn}, {arguments}){call.method}", (_on_host, _in_numpy)
    numpy_fn = _NUMPY_NAMESAKES.get(call.fn) or (None if floats else _INTEGER_NAMESAKES.get(call.fn))
    if numpy_fn is None:
        return None
    return f"_on_host({numpy_fn}, {call.fn}, {arguments}){call.method}", (_on_host,)
