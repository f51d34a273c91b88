"""``@wb.onnx_function``: calls become ONNX local functions, shared per signature, with weights as inputs."""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import onnx
import pytest
from flax import nnx

import workbench as wb
from tests.support.harness import assert_graph_quality, run_onnx
from workbench.jax_to_onnx.functions import ONNX_FUNCTION_DOMAIN


def _calls(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if n.domain == ONNX_FUNCTION_DOMAIN]


def _assert_parity(model: onnx.ModelProto, fn: Callable, *args: np.ndarray, rtol: float = 1e-5) -> None:
    got = run_onnx(model, list(args))
    expected = jax.tree_util.tree_leaves(fn(*args))
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, np.asarray(e), rtol=rtol, atol=1e-5)


# ----------------------------------------------------------------------------- plain function
@wb.onnx_function
def dense(x, w, b):
    return jnp.tanh(x @ w + b)


def three_dense(x, w, b):
    return dense(dense(dense(x, w, b), w, b), w, b)


def test_plain_function_three_calls_share_one_definition():
    model = wb.to_onnx(three_dense, [("B", 4), (4, 4), (4,)])
    assert_graph_quality(model)
    calls = _calls(model)
    assert len(calls) == 3 and len(model.graph.node) == 3
    assert len(model.functions) == 1
    function = model.functions[0]
    assert (function.domain, function.name) == (ONNX_FUNCTION_DOMAIN, "dense")
    assert all((c.op_type, c.overload) == (function.name, function.overload) for c in calls)
    assert len(function.input) == 3 and len(function.output) == 1
    rng = np.random.default_rng(0)
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in [(5, 4), (4, 4), (4,)])
    _assert_parity(model, three_dense, x, w, b)


def test_different_computations_or_shapes_get_separate_definitions():
    @wb.onnx_function(name="Scaled")
    def scaled(x, *, factor):
        return jnp.sin(x) * factor

    def fn(x, y):
        return scaled(x, factor=2.0), scaled(x + 1.0, factor=2.0), scaled(x, factor=3.0), scaled(y, factor=2.0)

    model = wb.to_onnx(fn, [("B", 3), (5,)])
    assert_graph_quality(model)
    assert len(_calls(model)) == 4
    assert len(model.functions) == 3, "factor 3.0 and the (5,) input each need their own definition"
    assert len({(f.name, f.overload) for f in model.functions}) == 3
    x = np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)
    _assert_parity(model, fn, x, np.arange(5, dtype=np.float32))


def test_keyword_array_arguments_become_function_inputs():
    @wb.onnx_function
    def masked(x, *, mask):
        return jnp.where(mask > 0, x, 0.0)

    def fn(x, m):
        return masked(x, mask=m) + masked(x * 2.0, mask=m)

    model = wb.to_onnx(fn, [("B", 4), ("B", 4)])
    assert_graph_quality(model)
    assert len(model.functions) == 1 and len(model.functions[0].input) == 2
    rng = np.random.default_rng(1)
    _assert_parity(model, fn, *(rng.standard_normal((3, 4)).astype(np.float32) for _ in range(2)))


# ----------------------------------------------------------------------------- Flax NNX
@wb.onnx_function
class ResidualBlock(nnx.Module):
    def __init__(self, features: int, rngs: nnx.Rngs) -> None:
        self.norm = nnx.LayerNorm(features, rngs=rngs)
        self.linear = nnx.Linear(features, features, rngs=rngs)

    def __call__(self, x):
        return x + nnx.relu(self.linear(self.norm(x)))


class ResidualStack(nnx.Module):
    def __init__(self, rngs: nnx.Rngs) -> None:
        self.blocks = nnx.List([ResidualBlock(8, rngs) for _ in range(3)])

    def __call__(self, x):
        for block in self.blocks:
            x = block(x)
        return x


def _assert_weights_are_call_inputs(model: onnx.ModelProto, prefix: str) -> None:
    initializers = {t.name for t in model.graph.initializer}
    for index, call in enumerate(_calls(model)):
        weights = [name for name in call.input if name in initializers]
        assert weights, f"call {index} passes no weights"
        assert all(name.startswith(f"{prefix}.{index}.") for name in weights), weights


def test_nnx_module_class_calls_are_one_function_with_weights_as_inputs():
    model_jax = ResidualStack(nnx.Rngs(0))
    model = wb.to_onnx(model_jax, [("B", 8)])
    assert_graph_quality(model)
    assert len(_calls(model)) == 3 and len(model.functions) == 1
    function = model.functions[0]
    assert function.name == "ResidualBlock"
    assert {"linear.kernel", "linear.bias", "norm.scale", "norm.bias"} <= set(function.input)
    _assert_weights_are_call_inputs(model, "blocks")
    assert "blocks.2.linear.kernel" in {t.name for t in model.graph.initializer}
    x = np.random.default_rng(2).standard_normal((4, 8)).astype(np.float32)
    _assert_parity(model, model_jax, x)


# ----------------------------------------------------------------------------- Equinox
@wb.onnx_function
class EqxBlock(eqx.Module):
    linear: eqx.nn.Linear
    activation: Callable = eqx.field(static=False)  # a non-array leaf: closed over, not an input
    scale: float = 0.5

    def __init__(self, features: int, key: jax.Array) -> None:
        self.linear = eqx.nn.Linear(features, features, key=key)
        self.activation = jax.nn.tanh

    def __call__(self, x):
        return x + self.scale * self.activation(self.linear(x))


class EqxStack(eqx.Module):
    blocks: list

    def __init__(self, key: jax.Array) -> None:
        self.blocks = [EqxBlock(6, k) for k in jax.random.split(key, 3)]

    def __call__(self, x):
        for block in self.blocks:
            x = block(x)
        return x


def test_equinox_module_class_calls_are_one_function_with_weights_as_inputs():
    model_jax = EqxStack(jax.random.PRNGKey(0))
    model = wb.to_onnx(model_jax, [(6,)])
    assert_graph_quality(model)
    assert len(_calls(model)) == 3 and len(model.functions) == 1
    assert {"linear.weight", "linear.bias"} <= set(model.functions[0].input)
    _assert_weights_are_call_inputs(model, "blocks")
    _assert_parity(model, model_jax, np.random.default_rng(3).standard_normal(6).astype(np.float32))


# ----------------------------------------------------------------------------- transformer-like stack
@wb.onnx_function(name="Block")
class AttentionBlock(nnx.Module):
    """Pre-LN single-head self-attention and MLP, causal mask, residuals."""

    def __init__(self, d: int, rngs: nnx.Rngs) -> None:
        self.ln1 = nnx.LayerNorm(d, rngs=rngs)
        self.query = nnx.Linear(d, d, rngs=rngs)
        self.key = nnx.Linear(d, d, rngs=rngs)
        self.value = nnx.Linear(d, d, rngs=rngs)
        self.ln2 = nnx.LayerNorm(d, rngs=rngs)
        self.up = nnx.Linear(d, 2 * d, rngs=rngs)
        self.down = nnx.Linear(2 * d, d, rngs=rngs)

    def __call__(self, x, mask):
        h = self.ln1(x)
        q, k, v = self.query(h), self.key(h), self.value(h)
        scores = jnp.einsum("bqd,bkd->bqk", q, k) / np.sqrt(q.shape[-1]).astype(np.float32)
        weights = jax.nn.softmax(jnp.where(mask, scores, -1e9), axis=-1)
        x = x + jnp.einsum("bqk,bkd->bqd", weights, v)
        return x + self.down(nnx.relu(self.up(self.ln2(x))))


class TinyTransformer(nnx.Module):
    def __init__(self, layers: int, d: int, rngs: nnx.Rngs) -> None:
        self.blocks = nnx.List([AttentionBlock(d, rngs) for _ in range(layers)])

    def __call__(self, x, mask):
        for block in self.blocks:
            x = block(x, mask)
        return x


def test_transformer_block_stack_is_one_function_called_n_times():
    layers = 4
    model_jax = TinyTransformer(layers, 8, nnx.Rngs(0))
    model = wb.to_onnx(model_jax, [("B", 5, 8), jax.ShapeDtypeStruct((5, 5), jnp.bool_)])
    assert_graph_quality(model)
    assert [n.op_type for n in model.graph.node] == ["Block"] * layers
    assert len(model.functions) == 1 and model.functions[0].name == "Block"
    _assert_weights_are_call_inputs(model, "blocks")
    x = np.random.default_rng(4).standard_normal((2, 5, 8)).astype(np.float32)
    mask = np.tril(np.ones((5, 5), dtype=bool))
    _assert_parity(model, model_jax, x, mask, rtol=1e-4)


# ----------------------------------------------------------------------------- outside export
def test_outside_export_the_decorator_changes_nothing():
    def plain(x, w, b):
        return jnp.tanh(x @ w + b)

    rng = np.random.default_rng(5)
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in [(2, 4), (4, 4), (4,)])
    np.testing.assert_array_equal(np.asarray(dense(x, w, b)), np.asarray(plain(x, w, b)))
    primitives = {eqn.primitive.name for eqn in jax.make_jaxpr(three_dense)(x, w, b).jaxpr.eqns}
    assert "jit" not in primitives, "outside an export no jit may be introduced"
    block = ResidualBlock(8, nnx.Rngs(0))
    h = rng.standard_normal((2, 8)).astype(np.float32)
    expected = h + nnx.relu(block.linear(block.norm(h)))
    np.testing.assert_array_equal(np.asarray(block(h)), np.asarray(expected))
    assert "jit" not in {e.primitive.name for e in jax.make_jaxpr(lambda v: block(v))(h).jaxpr.eqns}


def test_bad_decorator_arguments_raise_value_errors():
    with pytest.raises(ValueError, match="identifier"):
        wb.onnx_function(name="my block")
    with pytest.raises(ValueError, match="function or a class"):
        wb.onnx_function(42)
