"""Small cases (one node, or a few) of the ops the ONNX node suite does not test, against onnxruntime.

The ONNX node suite (:mod:`workbench.onnx_to_jax.node_suite`) has cases for the ONNX domains only;
onnxruntime's ``com.microsoft`` ops (and ``SimplifiedLayerNormalization``, which it registers in the
ONNX domain) have none, nor, in the installed onnx, a few ONNX ops (GlobalLpPool, the sequence ops,
Optional) and ai.onnx.ml ops (the tree ensembles, linear models, Scaler, Normalizer, Imputer,
OneHotEncoder). This module builds, for each of them, a few seeded small models with inputs (onnx.helper,
numpy); :func:`run_case` runs one through the generated JAX code and through onnxruntime's CPU
provider and compares every output.

The coverage explorer shows these results on the op's row; the tests in tests/onnx_to_jax share the
model builder. u8 x s8 integer matmuls use 7-bit weights (|w| < 64): onnxruntime's kernel saturates
on x86 CPUs without VNNI beyond that (:mod:`workbench.analysis.reference_caveats`).
"""

from __future__ import annotations

import functools
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from workbench.onnx_to_jax.node_suite import CaseResult, compare_output

MS = "com.microsoft"


@dataclass(frozen=True)
class ContribCase:
    """One model with its inputs; outputs must match onnxruntime's within ``rtol``/``atol`` (for integer
    outputs ``atol`` counts quantization steps)."""

    name: str
    model: onnx.ModelProto
    inputs: tuple[np.ndarray, ...]
    rtol: float = 1e-4
    atol: float = 1e-5


def one_node_model(op: str, inputs: Sequence[str], n_out: int, values: Sequence[np.ndarray], *, domain: str = MS,
                   onnx_opset: int = 17, domain_opset: int = 1, out_types: Sequence[int] = (),
                   out_shapes: Sequence[Any] = (), **attrs: Any) -> onnx.ModelProto:
    """A model of one ``domain::op`` node; ``inputs`` names the node's inputs ("" for an absent one) and
    ``values`` gives the present ones (their dtype and shape declare the graph inputs); outputs are
    ``out0``... of type float (or ``out_types``) and unknown shape (or ``out_shapes``). The model imports
    the ONNX domain at ``onnx_opset``, com.microsoft at 1 and any other ``domain`` at ``domain_opset``."""
    out_types = list(out_types) + [TensorProto.FLOAT] * (n_out - len(out_types))
    out_shapes = list(out_shapes) + [None] * (n_out - len(out_shapes))
    node = helper.make_node(op, list(inputs), [f"out{i}" for i in range(n_out)], domain=domain, **attrs)
    given = [name for name in inputs if name]
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), list(v.shape))
         for n, v in zip(given, values, strict=True)],
        [helper.make_tensor_value_info(f"out{i}", out_types[i], out_shapes[i]) for i in range(n_out)],
    )
    opsets = [helper.make_opsetid("", onnx_opset), helper.make_opsetid(MS, 1)]
    if domain not in ("", MS):
        opsets.append(helper.make_opsetid(domain, domain_opset))
    return helper.make_model(graph, opset_imports=opsets, ir_version=8)


def tree_attributes(rng: np.random.Generator, n_trees: int = 3, depth: int = 3,
                    n_features: int = 4) -> tuple[dict[str, list[Any]], list[tuple[int, int]]]:
    """Random complete binary trees in TreeEnsembleRegressor/Classifier's ``nodes_*`` attribute layout, and
    their leaves as (tree, node) pairs."""
    attrs: dict[str, list[Any]] = {k: [] for k in (
        "nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_values", "nodes_modes", "nodes_truenodeids",
        "nodes_falsenodeids", "nodes_missing_value_tracks_true")}
    leaves = []
    for tree in range(n_trees):
        for node in range(2 ** (depth + 1) - 1):
            leaf = node >= 2 ** depth - 1
            attrs["nodes_treeids"].append(tree)
            attrs["nodes_nodeids"].append(node)
            attrs["nodes_featureids"].append(0 if leaf else int(rng.integers(n_features)))
            attrs["nodes_values"].append(0.0 if leaf else float(rng.standard_normal()))
            attrs["nodes_modes"].append("LEAF" if leaf else str(rng.choice(["BRANCH_LEQ", "BRANCH_LT", "BRANCH_GT"])))
            attrs["nodes_truenodeids"].append(0 if leaf else 2 * node + 1)
            attrs["nodes_falsenodeids"].append(0 if leaf else 2 * node + 2)
            attrs["nodes_missing_value_tracks_true"].append(int(rng.integers(2)))
            if leaf:
                leaves.append((tree, node))
    return attrs, leaves


def rotary_caches(max_length: int, rotary_dim: int) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin caches (max_length, rotary_dim / 2) with base 10000, as the model builders write them."""
    angles = np.arange(max_length)[:, None] / (10000 ** (np.arange(rotary_dim // 2) / (rotary_dim // 2)))
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


# ----------------------------------------------------------------------------- builders
Builder = Callable[[np.random.Generator], list[ContribCase]]
_BUILDERS: dict[tuple[str, str], Builder] = {}


def _builds(*ops: str, domain: str = MS) -> Callable[[Builder], Builder]:
    def register(fn: Builder) -> Builder:
        for op in ops:
            if (domain, op) in _BUILDERS:
                raise ValueError(f"two case builders for {domain}::{op}")
            _BUILDERS[(domain, op)] = fn
        return fn

    return register


def _case(name: str, op: str, names: Sequence[str], values: Sequence[np.ndarray], *, n_out: int = 1,
          rtol: float = 1e-4, atol: float = 1e-5, **options: Any) -> ContribCase:
    model = one_node_model(op, names, n_out, values, **options)
    return ContribCase(name, model, tuple(values), rtol, atol)


def _f32(rng: np.random.Generator, *shape: int, scale: float = 1.0) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def _u8(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.integers(0, 256, shape).astype(np.uint8)


def _s7(rng: np.random.Generator, *shape: int) -> np.ndarray:
    """int8 weights within +-63 (onnxruntime's u8 x s8 kernel is exact there on every x86 CPU)."""
    return rng.integers(-64, 64, shape).astype(np.int8)


def _scalar(value: float, dtype: Any = np.float32) -> np.ndarray:
    return np.array(value, dtype)


@_builds("Gelu", "QuickGelu")
def _unary_activations(rng: np.random.Generator) -> list[ContribCase]:
    x = _f32(rng, 2, 5, 8)
    return [_case("gelu", "Gelu", ["x"], [x]), _case("quick_gelu_alpha", "QuickGelu", ["x"], [x], alpha=1.5)]


@_builds("BiasGelu", "FastGelu")
def _bias_activations(rng: np.random.Generator) -> list[ContribCase]:
    x, bias = _f32(rng, 2, 5, 8), _f32(rng, 8)
    return [_case(op.lower(), op, ["x", "b"], [x, bias]) for op in ("BiasGelu", "FastGelu")]


@_builds("FusedMatMul")
def _fused_matmul(rng: np.random.Generator) -> list[ContribCase]:
    return [_case("trans_a_trans_b_alpha", "FusedMatMul", ["a", "b"], [_f32(rng, 2, 4, 3), _f32(rng, 2, 5, 4)],
                  transA=1, transB=1, alpha=0.5)]


@_builds("FusedConv")
def _fused_conv(rng: np.random.Generator) -> list[ContribCase]:
    x, w, b, z = _f32(rng, 1, 4, 7, 7), _f32(rng, 6, 4, 3, 3), _f32(rng, 6), _f32(rng, 1, 6, 7, 7)
    return [_case(f"{activation.lower()}_with_sum", "FusedConv", ["x", "w", "b", "z"], [x, w, b, z],
                  activation=activation, pads=[1, 1, 1, 1], kernel_shape=[3, 3], **extra)
            for activation, extra in (("Relu", {}), ("LeakyRelu", {"activation_params": [0.2]}))]


@_builds("FusedGemm")
def _fused_gemm(rng: np.random.Generator) -> list[ContribCase]:
    a, b, c = _f32(rng, 3, 4), _f32(rng, 5, 4), _f32(rng, 5)
    return [_case("relu_trans_b", "FusedGemm", ["a", "b", "c"], [a, b, c], transB=1, activation="Relu"),
            _case("leaky_relu_alpha_beta", "FusedGemm", ["a", "b", "c"], [a.T.copy(), b, _f32(rng, 3, 5)],
                  transA=1, transB=1, alpha=0.5, beta=2.0, activation="LeakyRelu", activation_alpha=0.3)]


@_builds("SkipLayerNormalization", "SkipSimplifiedLayerNormalization")
def _skip_layer_norms(rng: np.random.Generator) -> list[ContribCase]:
    x, skip, gamma, beta, bias = _f32(rng, 2, 5, 8), _f32(rng, 2, 5, 8), _f32(rng, 8), _f32(rng, 8), _f32(rng, 8)
    return [_case("all_outputs", "SkipLayerNormalization", ["x", "s", "g", "b", "bias"], [x, skip, gamma, beta, bias],
                  n_out=4, epsilon=1e-5),
            _case("simplified", "SkipSimplifiedLayerNormalization", ["x", "s", "g"], [x, skip, gamma], epsilon=1e-5)]


@_builds("SimplifiedLayerNormalization", domain="")
def _simplified_layer_norm(rng: np.random.Generator) -> list[ContribCase]:
    """onnxruntime's own op in the ONNX domain (RMS normalization; the genai builder writes it)."""
    x, gamma = _f32(rng, 2, 5, 8), _f32(rng, 8)
    return [_case("opset14", "SimplifiedLayerNormalization", ["x", "g"], [x, gamma], domain="", onnx_opset=14,
                  epsilon=1e-5)]


@_builds("MatMulIntegerToFloat", "DynamicQuantizeMatMul")
def _integer_matmuls(rng: np.random.Generator) -> list[ContribCase]:
    a, b = _u8(rng, 3, 8), _s7(rng, 8, 4)
    b_scale = (rng.random(4) * 0.05).astype(np.float32)
    b_zero = np.zeros(4, np.int8)
    return [_case("per_column_bias", "MatMulIntegerToFloat", ["a", "b", "sa", "sb", "za", "zb", "bias"],
                  [a, b, _scalar(0.02), b_scale, _scalar(128, np.uint8), b_zero, _f32(rng, 4)]),
            _case("per_column", "DynamicQuantizeMatMul", ["a", "b", "sb", "zb"], [_f32(rng, 3, 8), b, b_scale, b_zero],
                  atol=1e-4)]


@_builds("QLinearAdd", "QLinearMul")
def _qlinear_binary(rng: np.random.Generator) -> list[ContribCase]:
    a, b, s, z = _u8(rng, 2, 3, 4, 4), _u8(rng, 2, 3, 4, 4), _scalar(0.05), _scalar(120, np.uint8)
    names = ["a", "sa", "za", "b", "sb", "zb", "sc", "zc"]
    values = [a, s, z, b, s, z, _scalar(0.1), _scalar(100, np.uint8)]
    return [_case(op.lower(), op, names, values, rtol=0, atol=1, out_types=[TensorProto.UINT8])
            for op in ("QLinearAdd", "QLinearMul")]


@_builds("QLinearSigmoid", "QLinearLeakyRelu", "QLinearGlobalAveragePool")
def _qlinear_unary(rng: np.random.Generator) -> list[ContribCase]:
    x, s, z = _u8(rng, 2, 3, 4, 4), _scalar(0.05), _scalar(120, np.uint8)
    names = ["x", "sx", "zx", "sy", "zy"]
    out = [_scalar(0.004), _scalar(0, np.uint8)]
    return [_case("sigmoid", "QLinearSigmoid", names, [x, s, z, *out], rtol=0, atol=1, out_types=[TensorProto.UINT8]),
            _case("leaky_relu", "QLinearLeakyRelu", names, [x, s, z, *out], rtol=0, atol=1,
                  out_types=[TensorProto.UINT8], alpha=0.1),
            _case("global_average_pool", "QLinearGlobalAveragePool", names, [x, s, z, s, z], rtol=0, atol=1,
                  out_types=[TensorProto.UINT8])]


@_builds("QLinearAveragePool")
def _qlinear_average_pool(rng: np.random.Generator) -> list[ContribCase]:
    """Within one step: onnxruntime rounds a few outputs differently (tests/onnx_to_jax/test_microsoft_ops.py)."""
    values = [_u8(rng, 1, 3, 7, 7), _scalar(0.05), _scalar(128, np.uint8), _scalar(0.03), _scalar(100, np.uint8)]
    return [_case("padded_3x3_stride_2", "QLinearAveragePool", ["x", "sx", "zx", "sy", "zy"], values, rtol=0, atol=1,
                  out_types=[TensorProto.UINT8], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])]


@_builds("QLinearSoftmax")
def _qlinear_softmax(rng: np.random.Generator) -> list[ContribCase]:
    values = [_u8(rng, 2, 3, 8), _scalar(0.1), _scalar(128, np.uint8), _scalar(1 / 256), _scalar(0, np.uint8)]
    return [_case(f"opset{opset}_axis{axis}", "QLinearSoftmax", ["x", "sx", "zx", "sy", "zy"], values, rtol=0, atol=0,
                  out_types=[TensorProto.UINT8], opset=opset, axis=axis) for opset, axis in ((13, -1), (11, 1))]


@_builds("QLinearConcat")
def _qlinear_concat(rng: np.random.Generator) -> list[ContribCase]:
    names = ["sy", "zy", "a", "sa", "za", "b", "sb", "zb"]
    values = [_scalar(0.05), _scalar(128, np.uint8), _u8(rng, 2, 3, 4), _scalar(0.05), _scalar(128, np.uint8),
              _u8(rng, 2, 2, 4), _scalar(0.02), _scalar(100, np.uint8)]
    return [_case("two_scales", "QLinearConcat", names, values, rtol=0, atol=0, out_types=[TensorProto.UINT8], axis=1)]


@_builds("QLinearWhere")
def _qlinear_where(rng: np.random.Generator) -> list[ContribCase]:
    names = ["cond", "x", "sx", "zx", "y", "sy", "zy", "sz", "zz"]
    values = [rng.random((2, 5)) > 0.5, _u8(rng, 2, 5), _scalar(0.05), _scalar(128, np.uint8), _u8(rng, 1, 5),
              _scalar(0.02), _scalar(100, np.uint8), _scalar(0.04), _scalar(110, np.uint8)]
    return [_case("broadcast", "QLinearWhere", names, values, rtol=0, atol=0, out_types=[TensorProto.UINT8])]


@_builds("QGemm")
def _qgemm(rng: np.random.Generator) -> list[ContribCase]:
    a, b, c = _u8(rng, 3, 16), _s7(rng, 16, 5), rng.integers(-2000, 2000, (5,)).astype(np.int32)
    quantized = [a, _scalar(0.02), _scalar(128, np.uint8), b, _scalar(0.01), _scalar(0, np.int8), c]
    names = ["a", "sa", "za", "b", "sb", "zb", "c"]
    return [_case("u8_out", "QGemm", [*names, "sy", "zy"], [*quantized, _scalar(0.05), _scalar(120, np.uint8)],
                  rtol=0, atol=0, out_types=[TensorProto.UINT8]),
            _case("float_out", "QGemm", names, quantized, rtol=0, atol=1e-5)]


@_builds("QAttention")
def _qattention(rng: np.random.Generator) -> list[ContribCase]:
    values = [_u8(rng, 2, 5, 16), _s7(rng, 16, 48), _f32(rng, 48), _scalar(0.02), _scalar(0.01),
              np.array([3, 5], np.int32), _scalar(128, np.uint8)]
    return [_case("mask_unidirectional", "QAttention", ["x", "w", "bias", "sx", "sw", "mask", "zx"], values,
                  num_heads=2, unidirectional=1)]


@_builds("MatMulNBits")
def _matmul_nbits(rng: np.random.Generator) -> list[ContribCase]:
    n, k, block = 6, 32, 16
    weights = rng.integers(0, 16, (n, k)).astype(np.uint8)
    packed = (weights[:, 0::2] | (weights[:, 1::2] << 4)).reshape(n, k // block, block // 2)
    scales = (rng.random(n * (k // block)) * 0.1).astype(np.float32)
    return [_case("4bit_block16", "MatMulNBits", ["a", "b", "s"], [_f32(rng, 3, k), packed, scales], atol=1e-4,
                  N=n, K=k, bits=4, block_size=block)]


@_builds("Attention", "MultiHeadAttention")
def _attentions(rng: np.random.Generator) -> list[ContribCase]:
    x, w, b = _f32(rng, 2, 5, 8), _f32(rng, 8, 24, scale=0.3), _f32(rng, 24)
    mask = np.array([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], np.int32)
    q, k, v = _f32(rng, 2, 5, 8), _f32(rng, 2, 7, 8), _f32(rng, 2, 7, 8)
    return [_case("mask", "Attention", ["x", "w", "b", "mask"], [x, w, b, mask], num_heads=2),
            _case("unidirectional", "Attention", ["x", "w", "b"], [x, w, b], num_heads=2, unidirectional=1),
            _case("cross", "MultiHeadAttention", ["q", "k", "v"], [q, k, v], num_heads=2)]


@_builds("RotaryEmbedding")
def _rotary_embedding(rng: np.random.Generator) -> list[ContribCase]:
    x = _f32(rng, 2, 4, 16)
    positions = np.tile(np.arange(4, dtype=np.int64), (2, 1))
    cos, sin = rotary_caches(16, 8)
    return [_case(f"interleaved{flag}", "RotaryEmbedding", ["x", "p", "c", "s"], [x, positions, cos, sin],
                  num_heads=2, interleaved=flag) for flag in (0, 1)]


@_builds("GroupQueryAttention")
def _group_query_attention(rng: np.random.Generator) -> list[ContribCase]:
    """A rotary prompt and a decoding step after a past of 6 (4 query heads on 2 KV heads)."""
    heads, kv_heads, head = 4, 2, 16
    names = ["q", "k", "v", "past_k", "past_v", "seqlens_k", "total", "cos", "sin"]
    cos, sin = rotary_caches(16, head)
    prompt = [_f32(rng, 2, 5, heads * head), _f32(rng, 2, 5, kv_heads * head), _f32(rng, 2, 5, kv_heads * head),
              np.array([4, 4], np.int32), _scalar(5, np.int32), cos, sin]
    decode = [_f32(rng, 2, 1, heads * head), _f32(rng, 2, 1, kv_heads * head), _f32(rng, 2, 1, kv_heads * head),
              _f32(rng, 2, kv_heads, 6, head), _f32(rng, 2, kv_heads, 6, head), np.array([6, 6], np.int32),
              _scalar(7, np.int32)]
    return [_case("rotary_prompt", "GroupQueryAttention", ["q", "k", "v", "", "", *names[5:]], prompt, n_out=3,
                  atol=2e-5, num_heads=heads, kv_num_heads=kv_heads, do_rotary=1),
            _case("decode_with_past", "GroupQueryAttention", names[:7], decode, n_out=3, atol=2e-5, num_heads=heads,
                  kv_num_heads=kv_heads)]


def _embedding_inputs(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ids = rng.integers(0, 20, (2, 6)).astype(np.int32)
    segments = rng.integers(0, 2, (2, 6)).astype(np.int32)
    mask = np.array([[1, 1, 0, 1, 0, 0], [1, 1, 1, 1, 1, 1]], np.int32)
    return ids, segments, mask


@_builds("EmbedLayerNormalization")
def _embed_layer_normalization(rng: np.random.Generator) -> list[ContribCase]:
    ids, segments, mask = _embedding_inputs(rng)
    values = [ids, segments, _f32(rng, 20, 8), _f32(rng, 16, 8), _f32(rng, 2, 8), _f32(rng, 8), _f32(rng, 8), mask]
    names = ["ids", "segment_ids", "words", "positions", "segments", "gamma", "beta", "mask"]
    return [_case("bert", "EmbedLayerNormalization", names, values, n_out=3,
                  out_types=[TensorProto.FLOAT, TensorProto.INT32], epsilon=1e-5)]


@_builds("QEmbedLayerNormalization")
def _qembed_layer_normalization(rng: np.random.Generator) -> list[ContribCase]:
    ids, segments, mask = _embedding_inputs(rng)
    order = ["words", "positions", "segments", "gamma", "beta"]
    tables = [_u8(rng, 20, 8), _u8(rng, 16, 8), _u8(rng, 2, 8), _u8(rng, 8), _u8(rng, 8)]
    scales = [_scalar(0.01 + 0.01 * i) for i in range(5)]
    zeros = [_scalar(120 + i, np.uint8) for i in range(5)]
    names = ["ids", "segment_ids", *order, "mask", *[f"{k}_scale" for k in order], *[f"{k}_zero" for k in order]]
    return [_case("bert_quantized", "QEmbedLayerNormalization", names, [ids, segments, *tables, mask, *scales, *zeros],
                  n_out=2, out_types=[TensorProto.FLOAT, TensorProto.INT32], epsilon=1e-5)]


# ---- ONNX-domain ops the installed onnx's node suite has no case for
def _graph_case(name: str, nodes: list[onnx.NodeProto], names: Sequence[str], values: Sequence[np.ndarray],
                outputs: list[onnx.ValueInfoProto]) -> ContribCase:
    inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), list(v.shape))
              for n, v in zip(names, values, strict=True)]
    graph = helper.make_graph(nodes, "g", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    return ContribCase(name, model, tuple(values))


@_builds("GlobalLpPool", domain="")
def _global_lp_pool(rng: np.random.Generator) -> list[ContribCase]:
    x = _f32(rng, 2, 3, 5, 4)
    return [_case(f"p{p}", "GlobalLpPool", ["x"], [x], domain="", p=p) for p in (1, 2, 3)]


def _sequence(element_shape: list[int]) -> Callable[[str], onnx.ValueInfoProto]:
    return lambda name: helper.make_tensor_sequence_value_info(name, TensorProto.FLOAT, element_shape)


def _tensor(name: str, shape: Any = None, dtype: int = TensorProto.FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, dtype, shape)


@_builds("SequenceConstruct", "SequenceAt", "SequenceErase", "ConcatFromSequence", domain="")
def _sequences(rng: np.random.Generator) -> list[ContribCase]:
    """Sequences of three (2, 3) tensors: built, indexed (negative position), erased from, concatenated."""
    values = [_f32(rng, 2, 3) for _ in range(3)]
    make = helper.make_node("SequenceConstruct", ["a", "b", "c"], ["s"])
    abc = ["a", "b", "c"]
    at = np.array(-1, np.int64)
    return [
        _graph_case("construct", [make], abc, values, [_sequence([2, 3])("s")]),
        _graph_case("at_negative", [make, helper.make_node("SequenceAt", ["s", "i"], ["y"])], [*abc, "i"],
                    [*values, at], [_tensor("y", [2, 3])]),
        _graph_case("erase_then_concat", [make, helper.make_node("SequenceErase", ["s", "i"], ["t"]),
                                          helper.make_node("ConcatFromSequence", ["t"], ["y"], axis=1)],
                    [*abc, "i"], [*values, np.array(1, np.int64)], [_tensor("y", [2, 6])]),
        _graph_case("concat_new_axis", [make, helper.make_node("ConcatFromSequence", ["s"], ["y"], axis=-1, new_axis=1)],
                    abc, values, [_tensor("y", [2, 3, 3])]),
    ]


@_builds("Optional", domain="")
def _optional(rng: np.random.Generator) -> list[ContribCase]:
    """An optional holding a tensor (read back) and an empty one of a declared type (has no element)."""
    x = _f32(rng, 2, 3)
    empty_type = helper.make_tensor_type_proto(TensorProto.FLOAT, [2, 3])
    return [
        _graph_case("wrap_and_get", [helper.make_node("Optional", ["x"], ["o"]),
                                     helper.make_node("OptionalGetElement", ["o"], ["y"])], ["x"], [x],
                    [_tensor("y", [2, 3])]),
        _graph_case("empty_has_no_element", [helper.make_node("Optional", [], ["o"], type=empty_type),
                                             helper.make_node("OptionalHasElement", ["o"], ["y"])], [], [],
                    [_tensor("y", [], TensorProto.BOOL)]),
    ]


# ---- ai.onnx.ml ops the installed onnx's node suite has no case for
ML = "ai.onnx.ml"
_LABEL_AND_SCORES = {"n_out": 2, "out_types": [TensorProto.INT64, TensorProto.FLOAT]}


def _ml(name: str, op: str, values: Sequence[np.ndarray], **options: Any) -> ContribCase:
    return _case(name, op, [f"in{i}" for i in range(len(values))], values, domain=ML, domain_opset=3, **options)


@_builds("TreeEnsembleRegressor", "TreeEnsembleClassifier", domain=ML)
def _tree_ensembles(rng: np.random.Generator) -> list[ContribCase]:
    """Three random trees of depth 3 on 4 features; a NaN follows nodes_missing_value_tracks_true."""
    attrs, leaves = tree_attributes(rng)
    trees, nodes = [t for t, _ in leaves], [n for _, n in leaves]
    x = _f32(rng, 16, 4)
    x[0, 1] = np.nan
    regressor = _ml("sum_two_targets", "TreeEnsembleRegressor", [x], n_targets=2, aggregate_function="SUM",
                    target_treeids=trees * 2, target_nodeids=nodes * 2, target_ids=[0] * len(leaves) + [1] * len(leaves),
                    target_weights=_f32(rng, 2 * len(leaves)).tolist(), base_values=[0.5, -0.25], **attrs)
    classifier = _ml("softmax_three_classes", "TreeEnsembleClassifier", [x], classlabels_int64s=[3, 5, 7],
                     class_treeids=trees * 3, class_nodeids=nodes * 3, class_ids=[c for c in range(3) for _ in leaves],
                     class_weights=_f32(rng, 3 * len(leaves)).tolist(), post_transform="SOFTMAX", **_LABEL_AND_SCORES,
                     **attrs)
    return [regressor, classifier]


@_builds("LinearRegressor", "LinearClassifier", domain=ML)
def _linear_models(rng: np.random.Generator) -> list[ContribCase]:
    x = _f32(rng, 8, 5)
    return [_ml("two_targets", "LinearRegressor", [x], targets=2, coefficients=_f32(rng, 10).tolist(),
                intercepts=[0.1, -0.2]),
            _ml("softmax", "LinearClassifier", [x], classlabels_ints=[0, 1, 2], coefficients=_f32(rng, 15).tolist(),
                intercepts=[0.0, 0.5, -0.5], post_transform="SOFTMAX", **_LABEL_AND_SCORES)]


@_builds("Scaler", "Normalizer", "Imputer", "OneHotEncoder", domain=ML)
def _preprocessing(rng: np.random.Generator) -> list[ContribCase]:
    x = _f32(rng, 6, 3)
    with_nan = x.copy()
    with_nan[1, 2] = np.nan
    codes = np.array([[1, 4], [2, 9]], np.int64)
    return [_ml("offset_scale", "Scaler", [x], offset=[0.5, -1.0, 2.0], scale=[2.0, 0.5, 1.5]),
            *[_ml(norm.lower(), "Normalizer", [x], norm=norm) for norm in ("L1", "L2", "MAX")],
            _ml("nan_per_feature", "Imputer", [with_nan], imputed_value_floats=[1.0, 2.0, 3.0],
                replaced_value_float=float("nan")),
            _ml("int64_unknown_is_zeros", "OneHotEncoder", [codes], cats_int64s=[1, 2, 4], zeros=1)]


# ----------------------------------------------------------------------------- lookup and run
def has_cases(domain: str, op: str) -> bool:
    return (domain, op) in _BUILDERS


def case_ops() -> tuple[tuple[str, str], ...]:
    """Every (domain, op) with cases here."""
    return tuple(sorted(_BUILDERS))


@functools.lru_cache(maxsize=None)
def cases(domain: str, op: str) -> tuple[ContribCase, ...]:
    """The cases of ``domain::op`` (seeded by the op's name: the same numbers in every process); () if none."""
    build = _BUILDERS.get((domain, op))
    if build is None:
        return ()
    rng = np.random.default_rng(zlib.crc32(f"{domain}::{op}".encode()))
    built = build(rng)
    return tuple(case for case in built if any(node.op_type == op for node in case.model.graph.node))


def run_onnxruntime(model: onnx.ModelProto, inputs: Sequence[np.ndarray]) -> list[Any]:
    """The model's outputs from onnxruntime's CPU provider, through onnx_io's session like every other run."""
    from workbench.onnx_io.session import open_session

    session = open_session(model)
    return session.run(dict(zip(session.input_names, inputs, strict=True)))


def _compare(want: np.ndarray, got: np.ndarray, rtol: float, atol: float) -> None:
    if want.dtype.kind in "iu" and atol and got.shape == want.shape and got.dtype == want.dtype:
        np.testing.assert_allclose(got.astype(np.int64), want.astype(np.int64), rtol=0, atol=atol)
        return
    compare_output(want, got, rtol, atol)


def run_case(case: ContribCase) -> CaseResult:
    """Run ``case`` through onnxruntime and the generated JAX code; failures come back with their reason."""
    from workbench.onnx_to_jax.backend import Backend

    ops = tuple(sorted({node.op_type for node in case.model.graph.node}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            expected = run_onnxruntime(case.model, case.inputs)
            outputs = Backend.prepare(case.model).run(list(case.inputs))
            if len(outputs) != len(expected):
                raise AssertionError(f"{len(outputs)} outputs, onnxruntime gives {len(expected)}")
            for want, got in zip(expected, outputs, strict=True):
                _compare(np.asarray(want), np.asarray(got), case.rtol, case.atol)
        except Exception as error:  # noqa: BLE001 - the result carries the reason; callers decide
            first = str(error).strip().splitlines()[0] if str(error).strip() else ""
            return CaseResult(case.name, ops, False, f"{type(error).__name__}: {first[:200]}")
    return CaseResult(case.name, ops, True, "")


__all__ = ["ML", "MS", "ContribCase", "case_ops", "cases", "has_cases", "one_node_model", "rotary_caches", "run_case",
           "run_onnxruntime", "tree_attributes"]
