"""Small functions and tampering helpers shared by the analysis tests."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import onnx
from onnx import numpy_helper

RNG = np.random.default_rng(0)
W1 = RNG.standard_normal((4, 8)).astype(np.float32)
B1 = RNG.standard_normal((8,)).astype(np.float32)
W2 = RNG.standard_normal((8, 3)).astype(np.float32)


def mlp(x):
    h = jnp.tanh(x @ W1 + B1)
    gate = jax.nn.sigmoid(h) * 3.0
    return (h * gate) @ W2


def two_outputs(x, y):
    s = x + y
    return jnp.exp(s) * 0.5, jnp.sum(s * s, axis=-1)


@jax.jit
def _block(x):
    return jnp.sin(x) * 1.5 + x


def twice_jitted(x):
    """The same jitted body (one jaxpr, one set of Vars) inlined at two call sites."""
    return _block(_block(x) - 1.0)


def copy_model(model: onnx.ModelProto) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy


def swap_op(model: onnx.ModelProto, old: str, new: str, occurrence: int = 0) -> tuple[onnx.ModelProto, str]:
    """A copy of the model with the ``occurrence``-th ``old`` node turned into ``new``; returns its name."""
    copy = copy_model(model)
    nodes = [n for n in copy.graph.node if n.op_type == old]
    node = nodes[occurrence]
    node.op_type = new
    return copy, node.name


def scale_initializer(model: onnx.ModelProto, predicate, factor: float) -> tuple[onnx.ModelProto, str, list[str]]:
    """Multiply the first initializer matching ``predicate(array)`` by ``factor``; returns its name and consumers."""
    copy = copy_model(model)
    for index, tensor in enumerate(copy.graph.initializer):
        array = numpy_helper.to_array(tensor)
        if predicate(array):
            copy.graph.initializer[index].CopyFrom(numpy_helper.from_array(array * np.asarray(factor, array.dtype), tensor.name))
            consumers = [n.name for n in copy.graph.node if tensor.name in n.input]
            return copy, tensor.name, consumers
    raise AssertionError("no initializer matched")


def scanned(x):
    """A scan over the symbolic leading axis: evaluated through jax.export by the locator."""

    def body(carry, row):
        carry = jnp.tanh(carry + row)
        return carry, carry * 2.0

    carry, ys = jax.lax.scan(body, jnp.zeros(x.shape[1:]), x)
    return ys.sum(0) + carry


def make_nnx_net():
    from flax import nnx

    class Net(nnx.Module):
        def __init__(self, rngs: nnx.Rngs):
            self.l1 = nnx.Linear(4, 8, rngs=rngs)
            self.norm = nnx.LayerNorm(8, rngs=rngs)
            self.l2 = nnx.Linear(8, 2, rngs=rngs)

        def __call__(self, x):
            return self.l2(nnx.gelu(self.norm(self.l1(x))))

    return Net(nnx.Rngs(0))
