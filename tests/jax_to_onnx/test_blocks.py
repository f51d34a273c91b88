"""Blocks recognised on the jaxpr (workbench/jax_to_onnx/blocks.py): lowered as one fused op, same export.

For each block: the fused op is emitted while lowering (the pass rules find nothing left to rewrite),
the optimized export is the one the rewrite rules make (same ops, same attributes) and matches JAX in
onnxruntime; a block whose inner values are read elsewhere, or below the op's opset, is left to the
equation-by-equation lowering (and the rules).
"""

from __future__ import annotations

import collections

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen, nnx

import workbench as wb
import workbench.jax_to_onnx.lowering as lowering
from tests.support.harness import assert_graph_quality, assert_matches_jax, concrete_inputs
from workbench.jax_to_onnx.block_plan import plan_blocks

_NNX_LN = nnx.LayerNorm(16, rngs=nnx.Rngs(0))
_NNX_LN_PLAIN = nnx.LayerNorm(16, use_scale=False, use_bias=False, rngs=nnx.Rngs(0))
_LINEN_LN = linen.LayerNorm()
_LINEN_VARS = _LINEN_LN.init(jax.random.key(0), jnp.ones((2, 16)))
_RNG = np.random.default_rng(0)
_NNX_LN.scale[...] = jnp.asarray(_RNG.standard_normal(16).astype(np.float32))
_NNX_LN.bias[...] = jnp.asarray(_RNG.standard_normal(16).astype(np.float32))


def _linen_ln(x):
    return _LINEN_LN.apply(_LINEN_VARS, x)


_TWO_AXES_LN = linen.LayerNorm(reduction_axes=(-2, -1), feature_axes=(-2, -1))
_TWO_AXES_VARS = _TWO_AXES_LN.init(jax.random.key(1), jnp.ones((2, 4, 8)))


def _two_axes_ln(x):
    return _TWO_AXES_LN.apply(_TWO_AXES_VARS, x)


_NNX_DENSE = nnx.Linear(16, 5, rngs=nnx.Rngs(0))
_NNX_DENSE.bias[...] = jnp.asarray(_RNG.standard_normal(5).astype(np.float32))
_LINEN_DENSE = linen.Dense(5)
_LINEN_DENSE_VARS = _LINEN_DENSE.init(jax.random.key(2), jnp.ones((2, 16)))
_DENSE_KERNEL = _RNG.standard_normal((16, 5)).astype(np.float32)
_DENSE_BIAS = _RNG.standard_normal(5).astype(np.float32)


def _linen_dense(x):
    return _LINEN_DENSE.apply(_LINEN_DENSE_VARS, x)


_EQX_LN = eqx.nn.LayerNorm(16)
_EQX_LN = eqx.tree_at(lambda m: (m.weight, m.bias), _EQX_LN,
                      (jnp.asarray(_RNG.standard_normal(16).astype(np.float32)), jnp.asarray(_RNG.standard_normal(16).astype(np.float32))))
_EQX_LN_PLAIN = eqx.nn.LayerNorm(16, use_weight=False, use_bias=False)


def _eqx_ln(x):
    return jax.vmap(jax.vmap(_EQX_LN))(x)


def _eqx_ln_plain(x):
    return jax.vmap(_EQX_LN_PLAIN)(x)


CASES = [
    # (id, fn, specs, fused op, block kind planned at the top level of the jaxpr)
    ("nnx_layer_norm", lambda x: _NNX_LN(x), [("B", "T", 16)], "LayerNormalization"),
    ("nnx_layer_norm_no_scale_no_bias", lambda x: _NNX_LN_PLAIN(x), [("B", 16)], "LayerNormalization"),
    ("linen_layer_norm", _linen_ln, [("B", 16)], "LayerNormalization"),
    ("equinox_layer_norm_vmap_twice", _eqx_ln, [("B", "T", 16)], "LayerNormalization"),
    ("equinox_layer_norm_no_weight_no_bias", _eqx_ln_plain, [("B", 16)], "LayerNormalization"),
    ("gelu_erf", lambda x: jax.nn.gelu(x, approximate=False), [("B", 9)], "Gelu"),
    ("gelu_tanh", lambda x: jax.nn.gelu(x), [("B", "T", 9)], "Gelu"),
    ("softmax_last", lambda x: jax.nn.softmax(x), [("B", 7)], "Softmax"),
    ("softmax_axis1", lambda x: jax.nn.softmax(x, axis=1), [("B", 4, 6)], "Softmax"),
    ("relu", lambda x: jax.nn.relu(x), [("B", 9)], "Relu"),
    ("mean_spatial", lambda x: jnp.mean(x, axis=(1, 2)), [("B", 4, 5, 3)], "ReduceMean"),
    ("nnx_linear", lambda x: _NNX_DENSE(x), [("B", 16)], "Gemm"),
    ("linen_dense", _linen_dense, [("B", 16)], "Gemm"),
    ("bias_first", lambda x, b: jax.lax.add(b.reshape(1, 5), x @ _DENSE_KERNEL), [("B", 16), (5,)], "Gemm"),
    ("relu_of_a_sum", lambda x: jax.nn.relu(x + jnp.flip(x, 1)) * 2.0, [("B", "T", 5)], "Relu"),
]


def _ops(model) -> collections.Counter:
    return collections.Counter(node.op_type for node in model.graph.node)


def _without_blocks(monkeypatch, fn, specs, **options):
    with monkeypatch.context() as patch:
        patch.setattr(lowering, "plan_blocks", lambda jaxpr, opset: {})
        return wb.convert(fn, specs, **options)


@pytest.mark.parametrize(("fn", "specs", "fused"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_block_is_lowered_fused_and_matches_the_rules(monkeypatch, fn, specs, fused):
    conversion = wb.convert(fn, specs)
    model = conversion.model
    assert_graph_quality(model)
    assert _ops(model)[fused] == 1, _ops(model)
    # the same export as lowering every equation and letting the rewrite rules fuse them
    reference = _without_blocks(monkeypatch, fn, specs).model
    assert [n.op_type for n in model.graph.node] == [n.op_type for n in reference.graph.node]
    for node, expected in zip(model.graph.node, reference.graph.node, strict=True):
        assert [(a.name, a.f, a.i, a.s) for a in node.attribute] == [(a.name, a.f, a.i, a.s) for a in expected.attribute]
    assert_matches_jax(fn, model, concrete_inputs(specs), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("fn", "specs", "fused"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_block_is_recognised_on_the_jaxpr(fn, specs, fused):
    conversion = wb.convert(fn, specs)
    kinds = {block.kind for block in _plans(conversion.traced.closed_jaxpr.jaxpr, 21)}
    assert fused in kinds


@pytest.mark.parametrize("fn", [
    lambda x: jnp.minimum(jax.nn.relu(x), 6.0),  # relu6 written around jax.nn.relu: Min(Max(x, 0), 6)
    lambda x: jax.nn.relu(jnp.minimum(x, 6.0)),  # Max(Min(x, 6), 0)
], ids=["min_of_relu", "relu_of_min"])
def test_relu_next_to_a_min_is_left_to_the_clip_rules(monkeypatch, fn):
    specs = [("B", 9)]
    conversion = wb.convert(fn, specs)
    assert "Relu" not in {block.kind for block in _plans(conversion.traced.closed_jaxpr.jaxpr, 21)}
    model = conversion.model
    assert_graph_quality(model)
    assert [n.op_type for n in model.graph.node] == ["Clip"]
    assert [n.op_type for n in model.graph.node] == [n.op_type for n in _without_blocks(monkeypatch, fn, specs).model.graph.node]
    inputs = [np.linspace(-10.0, 10.0, 18, dtype=np.float32).reshape(2, 9)]
    assert_matches_jax(fn, model, inputs, rtol=0, atol=0)


@pytest.mark.parametrize(("fn", "specs"), [
    (lambda x: jnp.mean(x, axis=1) * 2.0, [("B", "T", 3)]),  # a symbolic reduced axis: n is not a number
    (lambda x: jnp.sum(x, axis=1) / 4.0, [("B", 5)]),  # divided by another number
    (lambda x: x @ _DENSE_KERNEL + _DENSE_BIAS, [("B", "T", 16)]),  # a 3-D x: Gemm takes matrices
    (lambda x: x @ _DENSE_KERNEL + x[:, :5], [("B", 16)]),  # added to a matrix, not a bias vector
], ids=["mean_symbolic_axis", "sum_over_other_count", "dense_3d", "dense_plus_matrix"])
def test_mean_and_dense_blocks_decline_what_the_rules_do_not_fuse(monkeypatch, fn, specs):
    conversion = wb.convert(fn, specs)
    kinds = {block.kind for block in _plans(conversion.traced.closed_jaxpr.jaxpr, 21)}
    assert not kinds & {"ReduceMean", "Gemm"}, kinds
    model = conversion.model
    assert_graph_quality(model)
    assert [n.op_type for n in model.graph.node] == [n.op_type for n in _without_blocks(monkeypatch, fn, specs).model.graph.node]
    assert_matches_jax(fn, model, concrete_inputs(specs), rtol=1e-5, atol=1e-5)


def _plans(jaxpr, opset):
    """The blocks planned for ``jaxpr`` and every jaxpr nested in it."""
    found = list(plan_blocks(jaxpr, opset).values())
    for sub in (s for eqn in jaxpr.eqns for s in lowering.sub_jaxprs(eqn)):
        found += _plans(sub, opset)
    return found


def test_block_whose_inner_value_is_read_elsewhere_is_left_to_the_rules():
    # the exp of the softmax is also returned: fusing the block would lose it
    def softmax_and_exp(x):
        shifted = x - jax.lax.stop_gradient(jnp.max(x, axis=-1, keepdims=True))
        e = jnp.exp(shifted)
        return e / jnp.sum(e, axis=-1, keepdims=True), e

    conversion = wb.convert(softmax_and_exp, [("B", 5)])
    assert plan_blocks(conversion.traced.closed_jaxpr.jaxpr, 21) == {}
    assert "Softmax" not in _ops(conversion.model)
    assert_matches_jax(softmax_and_exp, conversion.model, concrete_inputs([("B", 5)]), rtol=1e-6, atol=1e-6)


def test_layer_norm_below_opset_17_stays_decomposed():
    model = wb.to_onnx(lambda x: _NNX_LN(x), [("B", 16)], opset=16)
    assert "LayerNormalization" not in _ops(model)
    assert_matches_jax(lambda x: _NNX_LN(x), model, concrete_inputs([("B", 16)]), rtol=1e-5, atol=1e-5)


def test_unoptimized_export_lowers_every_equation():
    conversion = wb.convert(lambda x: jax.nn.gelu(_NNX_LN(x)), [("B", 16)], optimize=False)
    ops = _ops(conversion.model)
    assert "LayerNormalization" not in ops and "Gelu" not in ops and ops["Tanh"] == 1


def test_block_of_a_constant_is_folded():
    table = np.arange(12, dtype=np.float32).reshape(3, 4)

    def fn(x):
        return x + jax.nn.softmax(jnp.asarray(table))

    model = wb.to_onnx(fn, [(3, 4)])
    assert _ops(model) == collections.Counter({"Add": 1})
    assert_matches_jax(fn, model, concrete_inputs([(3, 4)]), rtol=1e-6, atol=1e-6)


def test_layer_norm_over_two_trailing_axes():
    model = wb.to_onnx(_two_axes_ln, [("B", 4, 8)])
    assert _ops(model)["LayerNormalization"] == 1
    assert_matches_jax(_two_axes_ln, model, concrete_inputs([("B", 4, 8)]), rtol=1e-5, atol=1e-5)


def test_normalization_by_the_sample_variance_is_not_a_layer_norm():
    # jnp.var with ddof=1 divides by n - 1: not LayerNormalization's variance
    def sample_norm(x):
        mean = jnp.mean(x, axis=-1, keepdims=True)
        return (x - mean) * jax.lax.rsqrt(jnp.maximum(jnp.var(x, axis=-1, keepdims=True, ddof=1), 0.0) + 1e-5)

    conversion = wb.convert(sample_norm, [("B", 16)])
    assert plan_blocks(conversion.traced.closed_jaxpr.jaxpr, 21) == {}
    assert "LayerNormalization" not in _ops(conversion.model)
    assert_matches_jax(sample_norm, conversion.model, concrete_inputs([("B", 16)]), rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------- attention head projections
class _CausalSelfAttention(nnx.Module):
    """``nnx.MultiHeadAttention`` with a causal mask: converted as a module, its parameters are the model's weights."""

    def __init__(self, random_biases: bool) -> None:
        self.attention = nnx.MultiHeadAttention(num_heads=4, in_features=16, decode=False, rngs=nnx.Rngs(0))
        if random_biases:  # as trained: nnx initialises the biases to zeros
            rng = np.random.default_rng(3)
            for path, variable in nnx.iter_graph(self.attention):
                if isinstance(variable, nnx.Param) and path and path[-1] == "bias":
                    variable[...] = jnp.asarray(rng.standard_normal(variable.shape).astype(np.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        length = x.shape[1]
        return self.attention(x, mask=jnp.tril(jnp.ones((length, length), dtype=bool))[None, None])


_ATTENTION = _CausalSelfAttention(random_biases=True)
_ATTENTION_ZERO_BIASES = _CausalSelfAttention(random_biases=False)


def _count_layout_rewrites(monkeypatch) -> collections.Counter:
    """A counter of the rewrites the attention layout rules make from now on, by rule (the rules are built
    once, cached: counted where the scheduler applies them)."""
    from onnxscript.rewriter import RewriteRule

    from workbench.jax_to_onnx.passes.attention_layout import layout_rules

    names = {rule.name for rule in layout_rules()}
    counts: collections.Counter = collections.Counter()
    original = RewriteRule.try_rewrite

    def counted(self, *args, **kwargs):
        delta = original(self, *args, **kwargs)
        if delta is not None and self.name in names:
            counts[self.name] += 1
        return delta

    monkeypatch.setattr(RewriteRule, "try_rewrite", counted)
    return counts


def _same_export(model, reference, *, weights: bool = True) -> None:
    """Same nodes (op, attributes, in order) as ``reference``, and (``weights``) its weights under their names and shapes."""
    assert [n.op_type for n in model.graph.node] == [n.op_type for n in reference.graph.node]
    for node, expected in zip(model.graph.node, reference.graph.node, strict=True):
        assert [(a.name, a.f, a.i, a.s, list(a.ints)) for a in node.attribute] == [
            (a.name, a.f, a.i, a.s, list(a.ints)) for a in expected.attribute]
    if weights:
        named = {(i.name, tuple(i.dims)) for i in reference.graph.initializer if i.name.startswith("attention.")}
        assert named and named <= {(i.name, tuple(i.dims)) for i in model.graph.initializer}


@pytest.mark.parametrize("specs", [[(2, 6, 16)], [("B", "T", 16)]], ids=["static", "symbolic"])
def test_attention_is_lowered_in_the_layout_the_rules_make(monkeypatch, specs):
    fn = _ATTENTION
    rewrites = _count_layout_rewrites(monkeypatch)
    conversion = wb.convert(fn, specs)
    model = conversion.model
    kinds = collections.Counter(block.kind for block in _plans(conversion.traced.closed_jaxpr.jaxpr, 21))
    assert kinds["HeadProjection"] == 3 and kinds["Attention"] == 1  # query, key, value; the scores path
    assert sum(rewrites.values()) == 0  # the layout rules found nothing left to rewrite
    assert_graph_quality(model)
    reference = _without_blocks(monkeypatch, fn, specs)
    # lowered equation by equation, the rules make the same form (bias before the head split, 4-D scores)
    assert rewrites["BiasBeforeHeadSplit"] == 3, rewrites
    assert sum(count for rule, count in rewrites.items() if rule.startswith("WhereAcrossUnit")) == 1, rewrites
    _same_export(model, reference.model)
    inputs = concrete_inputs(specs)
    np.testing.assert_array_equal(conversion.run(*inputs)[0], reference.run(*inputs)[0])
    assert_matches_jax(fn, model, inputs, rtol=1e-5, atol=1e-5)


def test_attention_with_zero_biases_adds_none(monkeypatch):
    # freshly initialised: the projections' zero biases are not added (the rules' form kept them, 3 more Adds)
    fn = _ATTENTION_ZERO_BIASES
    conversion = wb.convert(fn, [("B", "T", 16)])
    model = conversion.model
    reference = _without_blocks(monkeypatch, fn, [("B", "T", 16)]).model
    ops, expected = [n.op_type for n in model.graph.node], [n.op_type for n in reference.graph.node]
    assert "Add" not in ops and expected.count("Add") == 3
    assert ops == [op for op in expected if op != "Add"]
    inputs = concrete_inputs([("B", "T", 16)])
    np.testing.assert_allclose(conversion.run(*inputs)[0], wb.convert(fn, [("B", "T", 16)], optimize=False).run(*inputs)[0],
                               rtol=1e-5, atol=1e-5)
    assert_matches_jax(fn, model, inputs, rtol=1e-5, atol=1e-5)


class _BatchMaskedAttention(nnx.Module):
    """The zoo GPT's spelling: ``nnx.make_causal_mask`` of the input, one (B, 1, T, T) mask per example."""

    def __init__(self) -> None:
        self.attention = _CausalSelfAttention(random_biases=True).attention

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.attention(x, mask=nnx.make_causal_mask(x[..., 0]))


@pytest.mark.parametrize("specs", [[(2, 6, 16)], [("B", "T", 16)]], ids=["static", "symbolic"])
@pytest.mark.parametrize("make", [lambda: _BatchMaskedAttention(), lambda: _SquareMaskAttention(), lambda: _UnmaskedAttention()],
                         ids=["mask_per_example", "mask_of_rank_2", "no_mask"])
def test_attention_with_other_masks(monkeypatch, specs, make):
    fn = make()
    rewrites = _count_layout_rewrites(monkeypatch)
    conversion = wb.convert(fn, specs)
    assert "Attention" in {block.kind for block in _plans(conversion.traced.closed_jaxpr.jaxpr, 21)}
    assert sum(rewrites.values()) == 0
    reference = _without_blocks(monkeypatch, fn, specs)
    _same_export(conversion.model, reference.model)
    inputs = concrete_inputs(specs)
    np.testing.assert_array_equal(conversion.run(*inputs)[0], reference.run(*inputs)[0])
    assert_matches_jax(fn, conversion.model, inputs, rtol=1e-5, atol=1e-5)


class _SquareMaskAttention(nnx.Module):
    """A causal mask of rank 2 (T, T), broadcast by Flax to rank 4 before JAX's attention."""

    def __init__(self) -> None:
        self.attention = _CausalSelfAttention(random_biases=True).attention

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.attention(x, mask=jnp.tril(jnp.ones((x.shape[1], x.shape[1]), dtype=bool)))


class _UnmaskedAttention(_SquareMaskAttention):
    """Attention without a mask (a ViT's): no ``where``, the softmax moves the scores to (1, B, H, T, S) itself."""

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.attention(x)


_QUERIES = _RNG.standard_normal((16, 8, 4)).astype(np.float32)  # 8 query heads
_KEYS_VALUES = _RNG.standard_normal((2, 16, 4, 4)).astype(np.float32)  # 4 key/value heads


def _grouped_query_attention(x):
    """``jax.nn.dot_product_attention`` with two query heads per key/value head: a query group axis of 2."""
    q = jnp.einsum("btd,dhk->bthk", x, _QUERIES)
    k, v = (jnp.einsum("btd,dhk->bthk", x, w) for w in _KEYS_VALUES)
    return jax.nn.dot_product_attention(q, k, v, is_causal=True)


@pytest.mark.parametrize("module", [_grouped_query_attention], ids=["grouped_queries"])
def test_attention_spelled_otherwise_is_left_to_the_rules(monkeypatch, module):
    rewrites = _count_layout_rewrites(monkeypatch)
    conversion = wb.convert(module, [(2, 6, 16)])
    assert "Attention" not in {block.kind for block in _plans(conversion.traced.closed_jaxpr.jaxpr, 21)}
    assert sum(rewrites.values()) > 0  # the rules lay it out
    _same_export(conversion.model, _without_blocks(monkeypatch, module, [(2, 6, 16)]).model,
                 weights=isinstance(module, nnx.Module))
    assert_matches_jax(module, conversion.model, concrete_inputs([(2, 6, 16)]), rtol=1e-5, atol=1e-5)


def test_bias_that_does_not_cover_the_split_axes_is_not_a_head_projection():
    kernel = _RNG.standard_normal((16, 4, 8)).astype(np.float32)
    bias = _RNG.standard_normal(8).astype(np.float32)  # per K only: broadcast over the heads

    def fn(x):
        return jnp.einsum("btd,dhk->bthk", x, kernel) + bias

    conversion = wb.convert(fn, [("B", 5, 16)])
    kinds = {block.kind for block in _plans(conversion.traced.closed_jaxpr.jaxpr, 21)}
    assert "HeadProjection" not in kinds
    assert_matches_jax(fn, conversion.model, concrete_inputs([("B", 5, 16)]), rtol=1e-5, atol=1e-5)


class _LoopedAttention(nnx.Module):
    """The same attention applied twice in a ``fori_loop``: its body is an ONNX subgraph."""

    def __init__(self) -> None:
        self.inner = _CausalSelfAttention(random_biases=True)

    def __call__(self, x: jax.Array) -> jax.Array:
        return jax.lax.fori_loop(0, 2, lambda _, h: self.inner(h), x)


def test_head_projection_in_a_loop_body_is_left_to_the_lowering(monkeypatch):
    # the layout rules rewrite the main graph only: a loop body keeps the split form there
    module = _LoopedAttention()
    conversion = wb.convert(module, [(2, 6, 16)])
    reference = _without_blocks(monkeypatch, module, [(2, 6, 16)])
    bodies = [[(n.op_type, n.name) for a in node.attribute if a.type == 5 for n in a.g.node]
              for node in conversion.model.graph.node]
    assert any(bodies)
    assert bodies == [[(n.op_type, n.name) for a in node.attribute if a.type == 5 for n in a.g.node]
                      for node in reference.model.graph.node]
    inputs = concrete_inputs([(2, 6, 16)])
    np.testing.assert_array_equal(conversion.run(*inputs)[0], reference.run(*inputs)[0])
    assert_matches_jax(module, conversion.model, inputs, rtol=1e-5, atol=1e-5)
