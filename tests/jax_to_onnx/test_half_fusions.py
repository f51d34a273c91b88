"""bfloat16 / float16 models export with the fusions of their float32 twins, and compute what JAX computes.

Flax and Equinox write a half-precision LayerNorm with its statistics in float32 between
``convert_element_type``s, ``jax.nn.gelu`` with its constants rounded to the half type, ``jax.nn.softmax``
with the sum in float32, and Flax's attention with the scores accumulated in float32
(``preferred_element_type``). The recognisers of :mod:`workbench.jax_to_onnx.blocks` and
:mod:`workbench.jax_to_onnx.attention_blocks` take these forms; the exports hold a ``Cast`` wherever JAX rounds to
or widens from the half type and nothing else around the fused op. Each fused form is compared with JAX in half
precision: float16 in onnxruntime CPU (it runs float16 LayerNormalization, Gelu, Softmax), bfloat16 through
``runtime="onnxruntime-cpu"`` (those nodes computed in float32 between Casts). The error is normwise,
``max|onnx - jax| / max|jax|``, in the type's machine epsilon.
"""

from __future__ import annotations

from collections import Counter

import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import onnx
import pytest
from flax import nnx

import workbench as wb
from tests.jax_to_onnx.half_blocks import LENGTH, WIDTH, eqx_block, linen_block, nnx_block

HALVES = {"bfloat16": jnp.bfloat16, "float16": jnp.float16}


def _eps(dtype) -> float:
    return float(ml_dtypes.finfo(dtype).eps)


def _input(dtype, shape, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) * 2.0 + 0.5).astype(np.float32).astype(dtype)


def _randomized(module: nnx.Module, seed: int = 1) -> nnx.Module:
    """``module`` with every parameter drawn at random (trained-like scales and biases, not ones and zeros)."""
    graphdef, state = nnx.split(module)
    leaves, tree = jax.tree.flatten(state)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    leaves = [(1.0 + 0.3 * jax.random.normal(k, a.shape)).astype(a.dtype) for k, a in zip(keys, leaves)]
    return nnx.merge(graphdef, jax.tree.unflatten(tree, leaves))


def _export_and_run(fn, x: np.ndarray) -> tuple[onnx.ModelProto, np.ndarray]:
    """The export of ``fn`` at ``x`` and its result: float16 in onnxruntime CPU as exported, bfloat16 through
    the model widened for onnxruntime CPU."""
    plain = wb.to_onnx(fn, [x])
    if x.dtype == np.dtype(ml_dtypes.bfloat16):
        conversion = wb.convert(fn, [x], runtime="onnxruntime-cpu")
    else:
        conversion = wb.convert(fn, [x])
    onnx.checker.check_model(plain, full_check=True)
    return plain, np.asarray(conversion.run(x)[0])


def _error_in_eps(got: np.ndarray, want: np.ndarray) -> float:
    assert got.dtype == want.dtype and got.shape == want.shape
    got64, want64 = got.astype(np.float64), want.astype(np.float64)
    return float(np.max(np.abs(got64 - want64)) / np.max(np.abs(want64)) / _eps(want.dtype))


def _ln_nnx(dtype, param_dtype):
    return _randomized(nnx.LayerNorm(WIDTH, rngs=nnx.Rngs(0), dtype=dtype, param_dtype=param_dtype))


def _ln_linen(dtype, param_dtype):
    module = nn.LayerNorm(dtype=dtype, param_dtype=param_dtype)
    params = module.init(jax.random.key(0), jnp.ones((1, LENGTH, WIDTH), dtype))
    params = jax.tree.map(lambda a: (a + 0.3 * jax.random.normal(jax.random.key(2), a.shape)).astype(a.dtype), params)
    return lambda x: module.apply(params, x)


def _ln_eqx(dtype, _):
    norm = eqx.nn.LayerNorm(WIDTH)
    norm = eqx.tree_at(lambda m: (m.weight, m.bias), norm, (1.0 + 0.3 * jax.random.normal(jax.random.key(3), (WIDTH,)),
                                                            0.3 * jax.random.normal(jax.random.key(4), (WIDTH,))))
    norm = jax.tree.map(lambda a: a.astype(dtype) if eqx.is_inexact_array(a) else a, norm)
    return jax.vmap(jax.vmap(norm))


def _attention(dtype, _):
    return _randomized(nnx.MultiHeadAttention(4, WIDTH, rngs=nnx.Rngs(0), decode=False, dtype=dtype, param_dtype=dtype))


# name -> (the model given (dtype, param_dtype), the op it must fuse to, the ops that must not remain, the
# normwise bound in eps; measured: LayerNorms 0 (bfloat16) and <= 0.003 (float16), GELUs 0.30, softmax 0.48 / 0.96,
# attention 0 / 0.62)
FORMS = {
    "nnx_layer_norm": (lambda d: _ln_nnx(d, d), "LayerNormalization", {"ReduceMean", "Sqrt", "Reciprocal"}, 0.5),
    "nnx_layer_norm_float32_params": (lambda d: _ln_nnx(d, jnp.float32), "LayerNormalization", {"ReduceMean", "Sqrt"}, 0.5),
    "linen_layer_norm": (lambda d: _ln_linen(d, d), "LayerNormalization", {"ReduceMean", "Sqrt"}, 0.5),
    "eqx_layer_norm": (lambda d: _ln_eqx(d, d), "LayerNormalization", {"ReduceMean", "Sqrt"}, 0.5),
    "gelu_tanh": (lambda d: jax.nn.gelu, "Gelu", {"Tanh", "Pow"}, 1.0),
    "gelu_exact": (lambda d: lambda x: jax.nn.gelu(x, approximate=False), "Gelu", {"Erf"}, 1.0),
    "softmax": (lambda d: jax.nn.softmax, "Softmax", {"Exp", "ReduceSum"}, 2.0),
    "nnx_attention": (lambda d: _attention(d, d), "Softmax", {"Exp", "ReduceMax"}, 1.0),
}


@pytest.mark.parametrize("dtype", sorted(HALVES))
@pytest.mark.parametrize("name", sorted(FORMS))
def test_half_precision_forms_fuse_and_compute_what_jax_computes(name, dtype):
    make, fused, gone, bound = FORMS[name]
    half = HALVES[dtype]
    fn = make(half)
    x = _input(half, (2, LENGTH, WIDTH))
    model, got = _export_and_run(fn, x)
    ops = Counter(node.op_type for node in model.graph.node)
    assert ops[fused] >= 1 and not gone & set(ops), dict(ops)
    if name == "nnx_attention" and dtype == "float16":
        # JAX on CPU does not run a float16 dot_general accumulating in float32 (F16_F16_F32): the same weights
        # computed in float32 (what that dot does with float16 inputs), the output rounded to float16
        twin = _randomized(nnx.MultiHeadAttention(4, WIDTH, rngs=nnx.Rngs(0), decode=False, dtype=jnp.float32,
                                                  param_dtype=half))
        want = np.asarray(jax.jit(twin)(x.astype(np.float32))).astype(half)
    else:
        want = np.asarray(jax.jit(fn)(x))
    error = _error_in_eps(got, want)
    print(f"{name} {dtype}: {error:.3g} eps")
    assert error <= bound, f"{name} in {dtype}: {error:.3g} eps normwise from JAX"


# (maker, input shape) -> node budget per dtype, float32 for reference: a Cast where JAX converts (2 a LayerNorm,
# 3 an attention: query, key, probabilities) and nothing else beyond float32's nodes; bfloat16's 3 extra Adds are
# the freshly initialised zero biases, which the affine pass drops in float16/float32 but not in bfloat16
# (measured before these recognisers: NNX 76/70, Linen 78/75, Equinox 36/36 nodes in bfloat16/float16)
BLOCKS = {
    "nnx": (nnx_block, (1, LENGTH, WIDTH), {"float32": 23, "bfloat16": 33, "float16": 30}),
    "linen": (linen_block, (1, LENGTH, WIDTH), {"float32": 27, "bfloat16": 34, "float16": 31}),
    "eqx": (eqx_block, (LENGTH, WIDTH), {"float32": 22, "bfloat16": 28, "float16": 28}),
}


@pytest.mark.parametrize("dtype", ["float32", *sorted(HALVES)])
@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_transformer_blocks_in_half_precision_keep_their_fusions(name, dtype):
    make, shape, budgets = BLOCKS[name]
    half = jnp.float32 if dtype == "float32" else HALVES[dtype]
    model = wb.to_onnx(make(half), [np.ones(shape, half)])
    ops = Counter(node.op_type for node in model.graph.node)
    assert len(model.graph.node) <= budgets[dtype], dict(ops)
    assert ops["LayerNormalization"] == 2 and ops["Gelu"] == 1 and ops["Softmax"] == 1, dict(ops)
    assert not {"ReduceMean", "Tanh", "Exp", "Sqrt"} & set(ops), dict(ops)


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_bfloat16_transformer_blocks_compute_what_jax_computes(name):
    make, shape, _ = BLOCKS[name]
    fn = make(jnp.bfloat16)
    x = _input(ml_dtypes.bfloat16, shape)
    _, got = _export_and_run(fn, x)
    error = _error_in_eps(got, np.asarray(jax.jit(lambda v: fn(v))(x)))
    print(f"{name} block bfloat16: {error:.3g} eps")
    assert error <= 1.0, f"{name} block: {error:.3g} eps normwise from JAX"


# Hugging Face's Flax BERT (exact GELU) and GPT-2 (tanh GELU) of tests/real_programs' size, built with
# ``dtype=`` and their params cast with the model's own ``to_bf16`` / ``to_fp16``: node budgets (float32: 64, 66;
# before these recognisers BERT 185/170 and GPT-2 189/178 nodes in bfloat16/float16)
HF = {("bert", "float16"): 74, ("gpt2", "bfloat16"): 87}


@pytest.mark.parametrize(("name", "dtype"), sorted(HF))
def test_hugging_face_flax_models_in_half_precision_keep_their_fusions(name, dtype):
    transformers = pytest.importorskip("transformers")
    half = HALVES[dtype]
    if name == "bert":
        config = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                         intermediate_size=64, max_position_embeddings=64)
        model = transformers.FlaxBertModel(config, seed=0, dtype=half)
    else:
        config = transformers.GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=4, n_positions=64)
        model = transformers.FlaxGPT2LMHeadModel(config, seed=0, dtype=half)
    params = model.to_bf16(model.params) if dtype == "bfloat16" else model.to_fp16(model.params)

    def forward(input_ids, attention_mask):
        return model(input_ids=input_ids, attention_mask=attention_mask, params=params, train=False)[0]

    tokens = np.random.default_rng(0).integers(0, 100, (2, 12)).astype(np.int32)
    onnx_model = wb.to_onnx(forward, [tokens, np.ones((2, 12), np.int32)])
    ops = Counter(node.op_type for node in onnx_model.graph.node)
    assert len(onnx_model.graph.node) <= HF[name, dtype], dict(ops)
    assert ops["LayerNormalization"] == 5 and ops["Gelu"] == 2 and ops["Softmax"] == 2, dict(ops)
