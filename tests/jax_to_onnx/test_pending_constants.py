"""Constants computed while lowering become initializers only when a node reads them (builder.PendingConstant).

A result that only feeds the next constant evaluation (Keras's BatchNorm arithmetic on its statistics)
takes its name, initializer slot and pool entry at once but no ``ir.Value``; the graph's initializers,
their names and order are those an initializer made at that point would give.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import onnx_ir as ir
from jax import lax

import workbench as wb
from tests.support.harness import assert_graph_quality, assert_matches_jax
from workbench.jax_to_onnx.builder import GraphBuilder, ModelState, PendingConstant


def test_pending_constant_keeps_name_slot_and_pool_entry():
    builder = GraphBuilder(ModelState(opset=21))
    first = builder.evaluated_const(np.arange(3, dtype=np.float32))
    made = builder.const(np.full(2, 7, np.int64))
    never_read = builder.evaluated_const(np.ones(4, np.float32))
    assert isinstance(first, PendingConstant) and isinstance(never_read, PendingConstant)
    assert [first.name, never_read.name] == ["const", never_read.name] and never_read.name not in {"const", made.name}
    # an equal array asked for by a node: the pending constant itself, made in its own slot
    value = builder.const(np.arange(3, dtype=np.float32))
    assert isinstance(value, ir.Value) and value.name == "const" and first.value is value
    assert builder.materialize(first) is value
    assert builder.evaluated_const(np.arange(3, dtype=np.float32)) is value  # pooled: the made value
    # order of creation, the never-read one left out
    assert builder.state.graph_initializers() == [value, made]
    np.testing.assert_array_equal(value.const_value.numpy(), np.arange(3, dtype=np.float32))
    assert value.shape == ir.Shape((3,)) and value.dtype == ir.DataType.FLOAT


def test_function_bodies_get_constant_nodes_not_pending_constants():
    state = ModelState(opset=21)
    body = GraphBuilder(state, is_function=True)
    value = body.evaluated_const(np.arange(3, dtype=np.float32))
    assert isinstance(value, ir.Value) and value.producer().op_type == "Constant"
    assert state.initializers == []


def test_batchnorm_chain_on_constants_exports_only_what_nodes_read():
    rng = np.random.default_rng(0)
    channels = 6
    mean, beta = (rng.standard_normal(channels).astype(np.float32) for _ in range(2))
    var = rng.uniform(0.5, 2.0, channels).astype(np.float32)
    gamma = rng.standard_normal(channels).astype(np.float32)

    def forward(x):  # Keras's inference BatchNorm on closed-over statistics
        shape = (1, 1, channels)
        inv = lax.rsqrt(jnp.reshape(var, shape) + 1e-3) * jnp.reshape(gamma, shape)
        shift = -jnp.reshape(mean, shape) * inv + jnp.reshape(beta, shape)
        return x * inv + shift

    x = rng.standard_normal((2, 3, channels)).astype(np.float32)
    conversion = wb.convert(forward, [x])
    model = conversion.model
    assert_graph_quality(model)
    assert_matches_jax(forward, model, [x])
    # the two results nodes read, bit for bit what JAX computes, and nothing of the chain before them
    shape = (1, 1, channels)
    inv = np.asarray(lax.rsqrt(jnp.reshape(var, shape) + 1e-3) * jnp.reshape(gamma, shape))
    shift = np.asarray(-jnp.reshape(mean, shape) * inv + jnp.reshape(beta, shape))
    stored = [ir.serde.deserialize_tensor(t).numpy() for t in model.graph.initializer]
    assert {a.tobytes() for a in stored if a.shape == shape} >= {inv.tobytes(), shift.tobytes()}
    assert not any(a.tobytes() == np.asarray(jnp.reshape(var, shape) + 1e-3).tobytes() for a in stored)


def test_repeated_evaluation_of_the_same_constants_is_computed_once(monkeypatch):
    from workbench.jax_to_onnx import constant_eval

    calls = []
    evaluate = constant_eval.evaluate
    monkeypatch.setattr(constant_eval, "evaluate", lambda eqn, *rest: calls.append(eqn.primitive.name) or evaluate(eqn, *rest))
    var = np.random.default_rng(1).uniform(0.5, 2.0, 4).astype(np.float32)
    other = var + 1  # a different array: computed on its own

    def forward(x, y):  # two layers with equal statistics (two constants of the jaxpr) and one with others
        return x * lax.rsqrt(var + 1e-3) + y * lax.rsqrt(var + 1e-3) + x * lax.rsqrt(other + 1e-3)

    x, y = (np.random.default_rng(2).standard_normal((3, 4)).astype(np.float32) for _ in range(2))
    model = wb.convert(forward, [x, y]).model
    assert len(jax.make_jaxpr(forward)(x, y).jaxpr.constvars) == 3
    assert calls.count("rsqrt") == 2, calls  # the equal statistics share one pooled initializer: one evaluation
    assert_graph_quality(model)
    assert_matches_jax(forward, model, [x, y])


def test_weights_become_initializers_when_first_read_in_their_slots(monkeypatch):
    """Model weights are held like evaluated constants (GraphBuilder.weight): those a convolution block folds
    (an NNX BatchNorm's statistics) are never made initializers, the others keep their names and the order of
    the weights, and an equation on a weight alone is still not evaluated (constant_eval.py)."""
    from flax import nnx

    from workbench.jax_to_onnx import program

    class Net(nnx.Module):
        def __init__(self) -> None:
            self.conv = nnx.Conv(3, 4, (3, 3), rngs=nnx.Rngs(0))
            self.bn = nnx.BatchNorm(4, use_running_average=True, rngs=nnx.Rngs(0))
            self.bn.mean[...] = jnp.arange(4.0)
            self.bn.var[...] = jnp.linspace(0.5, 2.0, 4)
            self.head = nnx.Linear(4, 2, rngs=nnx.Rngs(1))

        def __call__(self, x: jax.Array) -> jax.Array:
            y = self.bn(self.conv(x)).mean(axis=(1, 2))
            return self.head(y) * jnp.exp(self.head.bias[...])  # a weight read by a unary op on it alone

    lowered: list[list[str]] = []
    lowered_ops: list[str] = []
    run_passes = program.run_passes

    def recording(model, **options):
        lowered.append(list(model.graph.initializers))
        lowered_ops.extend(node.op_type for node in model.graph)
        return run_passes(model, **options)

    monkeypatch.setattr(program, "run_passes", recording)
    net = Net()
    x = np.random.default_rng(3).standard_normal((2, 5, 5, 3)).astype(np.float32)
    conversion = wb.convert(net, [x])
    names = lowered[0]
    assert not any(name.startswith("bn.") for name in names), names  # folded into the kernel as arrays
    weights = [name for name in names if name in conversion.weights]
    assert weights == ["conv.bias", "conv.kernel", "head.bias", "head.kernel"], weights  # as the weights come
    assert "Exp" in lowered_ops  # exp(head.bias) lowered as a node (for the folding pass and its size limits)
    assert_graph_quality(conversion.model)
    assert_matches_jax(net, conversion.model, [x], rtol=1e-5, atol=1e-5)
