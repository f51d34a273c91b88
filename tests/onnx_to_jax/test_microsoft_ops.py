"""onnxruntime's com.microsoft ops its own tools write (issue 21): GroupQueryAttention (onnxruntime-genai's
model builder, the LLaMA/Phi optimizations), EmbedLayerNormalization (the BERT optimizer) and the
QOperator-format quantized ops (quantize_static with QuantFormat.QOperator, quantize_dynamic's QAttention).

Every case is a one-node model built with onnx.helper and run by onnxruntime's CPU provider; the
generated JAX code must give the same numbers, called eagerly and under jax.jit.
"""

from __future__ import annotations

import jax
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import workbench as wb
from tests.support.harness import run_onnx
from workbench.onnx_to_jax.contrib_cases import one_node_model, rotary_caches

MS = "com.microsoft"
RNG = np.random.default_rng(44)


@pytest.fixture(autouse=True)
def _fresh_rng():
    """Each test draws the same numbers whichever tests run before it."""
    global RNG
    RNG = np.random.default_rng(44)


def _f32(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def _check(model, values, *, rtol=1e-5, atol=1e-5, compare=None):
    """onnxruntime against the generated code, eagerly and jitted; ``compare`` picks the outputs'
    meaningful part where onnxruntime leaves some of an output unwritten."""
    expected = run_onnx(model, values)
    forward, params = wb.to_jax(model)
    for label, fn in (("eager", forward), ("jit", jax.jit(forward))):
        got = fn(params, *values)
        got = got if isinstance(got, tuple) else (got,)
        assert len(got) == len(expected), label
        for i, (want, have) in enumerate(zip(expected, got)):
            have = np.asarray(have)
            if compare is not None:
                want, have = compare(i, want), compare(i, have)
            assert have.shape == want.shape, (label, i, have.shape, want.shape)
            assert have.dtype == want.dtype, (label, i, have.dtype, want.dtype)
            np.testing.assert_allclose(have, want, rtol=rtol, atol=atol, err_msg=f"{label} output {i}")


# ---- GroupQueryAttention --------------------------------------------------------------------------
GQA_INPUTS = ["q", "k", "v", "past_k", "past_v", "seqlens_k", "total", "cos", "sin", "position_ids", "bias",
              "head_sink"]


def _gqa(values: dict, *, heads=4, kv_heads=2, compare=None, out_shapes=(), **attrs):
    names = [n if n in values else "" for n in GQA_INPUTS]
    while names and not names[-1]:
        names.pop()
    given = [values[n] for n in names if n]
    model = one_node_model("GroupQueryAttention", names, 3, given, num_heads=heads, kv_num_heads=kv_heads,
                   out_shapes=out_shapes, **attrs)
    _check(model, given, rtol=1e-4, atol=2e-5, compare=compare)


def _lengths(seqlens, new, past):
    return {"seqlens_k": np.asarray(seqlens, np.int32), "total": np.array(past + new, np.int32)}


@pytest.mark.parametrize("attrs", [
    {}, {"scale": 0.2}, {"softcap": 2.0}, {"local_window_size": 2}, {"causal": 0},
    {"do_rotary": 1}, {"do_rotary": 1, "rotary_interleaved": 1},
])  # fmt: skip
def test_gqa_prompt(attrs):
    """The first call: no past, total_sequence_length = the prompt's length."""
    batch, length, heads, kv_heads, head = 2, 5, 4, 2, 16
    values = {"q": _f32(batch, length, heads * head), "k": _f32(batch, length, kv_heads * head),
              "v": _f32(batch, length, kv_heads * head), **_lengths([length - 1] * batch, length, 0)}
    if attrs.get("do_rotary"):
        values["cos"], values["sin"] = rotary_caches(16, head)
    _gqa(values, heads=heads, kv_heads=kv_heads, **attrs)


@pytest.mark.parametrize("attrs", [
    {}, {"local_window_size": 3}, {"softcap": 3.0}, {"do_rotary": 1}, {"do_rotary": 1, "rotary_interleaved": 1},
])  # fmt: skip
def test_gqa_token_with_past(attrs):
    """Decoding: one new token per sequence after a past of 6 (a cache that grows: present = past + 1)."""
    batch, past, heads, kv_heads, head = 2, 6, 4, 1, 16
    values = {"q": _f32(batch, 1, heads * head), "k": _f32(batch, 1, kv_heads * head),
              "v": _f32(batch, 1, kv_heads * head), "past_k": _f32(batch, kv_heads, past, head),
              "past_v": _f32(batch, kv_heads, past, head), **_lengths([past] * batch, 1, past)}
    if attrs.get("do_rotary"):
        values["cos"], values["sin"] = rotary_caches(16, head)
    _gqa(values, heads=heads, kv_heads=kv_heads, **attrs)


def test_gqa_packed_qkv_with_partial_rotary():
    """Packed QKV in ``query`` (key and value absent) and a rotary cache covering half the head."""
    batch, length, heads, kv_heads, head = 1, 4, 4, 2, 32
    values = {"q": _f32(batch, length, (heads + 2 * kv_heads) * head), **_lengths([length - 1], length, 0)}
    values["cos"], values["sin"] = rotary_caches(8, head // 2)
    _gqa(values, heads=heads, kv_heads=kv_heads, do_rotary=1)


def test_gqa_subsequent_prompt_and_attention_bias():
    """A second chunk of 3 tokens after a past of 4 (batch 1, as onnxruntime requires), with an additive bias."""
    heads, kv_heads, head, past, new = 2, 2, 8, 4, 3
    values = {"q": _f32(1, new, heads * head), "k": _f32(1, new, kv_heads * head), "v": _f32(1, new, kv_heads * head),
              "past_k": _f32(1, kv_heads, past, head), "past_v": _f32(1, kv_heads, past, head),
              **_lengths([past + new - 1], new, past), "bias": _f32(1, 1, new, past + new)}
    _gqa(values, heads=heads, kv_heads=kv_heads)


@pytest.mark.parametrize("sink", ["head_sink", "smooth_softmax"])
def test_gqa_attention_sinks(sink):
    """Attention sinks (gpt-oss's head_sink, one logit per head; smooth_softmax's zero logit): they join each
    softmax's denominator only. A prompt and a decoding step with a local window."""
    heads, kv_heads, head = 4, 2, 16
    extra = {"head_sink": _f32(heads)} if sink == "head_sink" else {}
    attrs = {"smooth_softmax": 1} if sink == "smooth_softmax" else {}
    prompt = {"q": _f32(2, 5, heads * head), "k": _f32(2, 5, kv_heads * head), "v": _f32(2, 5, kv_heads * head),
              **_lengths([4, 4], 5, 0), **extra}
    _gqa(prompt, heads=heads, kv_heads=kv_heads, **attrs)
    decode = {"q": _f32(2, 1, heads * head), "k": _f32(2, 1, kv_heads * head), "v": _f32(2, 1, kv_heads * head),
              "past_k": _f32(2, kv_heads, 5, head), "past_v": _f32(2, kv_heads, 5, head), **_lengths([5, 5], 1, 5),
              **extra}
    _gqa(decode, heads=heads, kv_heads=kv_heads, local_window_size=3, **attrs)


def test_gqa_float16_decode_with_rotary():
    """float16 activations and caches (onnxruntime's CPU kernel computes in float32 and rounds the result)."""
    batch, past, heads, kv_heads, head = 2, 6, 4, 2, 16
    values = {"q": _f32(batch, 1, heads * head), "k": _f32(batch, 1, kv_heads * head),
              "v": _f32(batch, 1, kv_heads * head), "past_k": _f32(batch, kv_heads, past, head),
              "past_v": _f32(batch, kv_heads, past, head)}
    values = {k: v.astype(np.float16) for k, v in values.items()}
    values.update(_lengths([past] * batch, 1, past))
    values["cos"], values["sin"] = (c.astype(np.float16) for c in rotary_caches(16, head))
    names = [n if n in values else "" for n in GQA_INPUTS][:9]
    given = [values[n] for n in names if n]
    model = one_node_model("GroupQueryAttention", names, 3, given, out_types=[TensorProto.FLOAT16] * 3, num_heads=heads,
                   kv_num_heads=kv_heads, do_rotary=1)
    _check(model, given, rtol=2e-3, atol=2e-3)


def test_gqa_padded_prompt_batch():
    """A right-padded prompt batch: sequence 0 has 3 real tokens of 5 (seqlens_k = 2). Its padding queries attend
    to its 3 real keys only, in onnxruntime as here; their rows are compared too."""
    heads, kv_heads, head = 4, 2, 16
    values = {"q": _f32(2, 5, heads * head), "k": _f32(2, 5, kv_heads * head), "v": _f32(2, 5, kv_heads * head),
              "seqlens_k": np.array([2, 4], np.int32), "total": np.array(5, np.int32)}
    _gqa(values, heads=heads, kv_heads=kv_heads)


def test_gqa_ragged_decode_in_a_shared_length_cache():
    """Decoding a ragged batch in a cache of the maximum length (onnxruntime-genai's past_present_share_buffer
    layout: past and present have the same length, each sequence's new token goes at its own length). With
    separate buffers onnxruntime leaves the present rows after each sequence's length unwritten, so those
    are not compared; the present length (8) is declared in the graph, as a shared-buffer model declares it.
    An attention_bias covers the total length (7), shorter than the cache."""
    heads, kv_heads, head, capacity = 4, 2, 16, 8
    seqlens = np.array([4, 6], np.int32)
    values = {"q": _f32(2, 1, heads * head), "k": _f32(2, 1, kv_heads * head), "v": _f32(2, 1, kv_heads * head),
              "past_k": _f32(2, kv_heads, capacity, head), "past_v": _f32(2, kv_heads, capacity, head),
              "seqlens_k": seqlens, "total": np.array(seqlens.max() + 1, np.int32),
              "bias": _f32(2, 1, 1, seqlens.max() + 1)}  # attention_bias spans the total length, not the cache
    written = np.arange(capacity)[None, None, :, None] <= seqlens[:, None, None, None]

    def compare(i, array):
        return array if i == 0 else np.where(written, array, 0)

    _gqa(values, heads=heads, kv_heads=kv_heads, compare=compare,
         out_shapes=[None, [2, kv_heads, capacity, head], [2, kv_heads, capacity, head]])


def test_gqa_rotary_decode_with_position_ids():
    """Decoding with explicit position_ids (here 2 past the cache length, as after a left-padded prompt):
    the rotary angles follow position_ids, not the cache length."""
    batch, past, heads, kv_heads, head = 2, 6, 4, 2, 16
    values = {"q": _f32(batch, 1, heads * head), "k": _f32(batch, 1, kv_heads * head),
              "v": _f32(batch, 1, kv_heads * head), "past_k": _f32(batch, kv_heads, past, head),
              "past_v": _f32(batch, kv_heads, past, head), **_lengths([past] * batch, 1, past),
              "position_ids": np.array([[past + 2], [past - 3]], np.int64)}
    values["cos"], values["sin"] = rotary_caches(16, head)
    _gqa(values, heads=heads, kv_heads=kv_heads, do_rotary=1)


@pytest.mark.parametrize("attrs, inputs, message", [
    ({"k_quant_type": "PER_TENSOR"}, {}, "quantized KV caches"),
    ({"qk_output": 1}, {}, "the QK output"),
    ({}, {"head_sink": 12}, "k_scale"),
    ({"do_rotary": 1}, {}, "cos_cache and sin_cache"),
    ({"kv_num_heads": 3}, {}, "multiple of kv_num_heads"),
])  # fmt: skip
def test_gqa_refuses_what_it_does_not_implement(attrs, inputs, message):
    names = ["q", "", "", "", "", "seqlens_k", "total"] + [""] * 9
    for name, index in inputs.items():
        names[index] = name
    attrs = {"num_heads": 4, "kv_num_heads": 2, **attrs}
    node = helper.make_node("GroupQueryAttention", names, ["y"], domain=MS, **attrs)
    declared = [helper.make_tensor_value_info("q", TensorProto.FLOAT, [1, 2, 128]),
                helper.make_tensor_value_info("seqlens_k", TensorProto.INT32, [1]),
                helper.make_tensor_value_info("total", TensorProto.INT32, []),
                helper.make_tensor_value_info("head_sink", TensorProto.FLOAT, [4])]
    used = [v for v in declared if v.name in names]
    graph = helper.make_graph([node], "g", used, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(MS, 1)])
    with pytest.raises(wb.WorkbenchError, match=message):
        wb.to_jax(model)


# ---- EmbedLayerNormalization ----------------------------------------------------------------------
@pytest.mark.parametrize("form", ["full", "no_segment", "no_mask", "position_ids"])
def test_embed_layer_normalization(form):
    """The BERT embedding fusion: word + position + segment rows, LayerNorm, mask_index and the sum. The mask
    has a hole: onnxruntime's mask_index counts the ones (3), it is not the first zero's position (2)."""
    batch, length, vocab, hidden = 2, 6, 20, 8
    values = {"ids": RNG.integers(0, vocab, (batch, length)).astype(np.int32),
              "segment_ids": RNG.integers(0, 2, (batch, length)).astype(np.int32),
              "words": _f32(vocab, hidden), "positions": _f32(16, hidden), "segments": _f32(2, hidden),
              "gamma": _f32(hidden), "beta": _f32(hidden),
              "mask": np.array([[1, 1, 0, 1, 0, 0], [1, 1, 1, 1, 1, 1]], np.int32),
              "position_ids": np.array([[3, 4, 5, 6, 7, 8]], np.int32)}
    dropped = {"no_segment": ("segment_ids", "segments"), "no_mask": ("mask",), "position_ids": ()}.get(form, ())
    names = ["ids", "segment_ids", "words", "positions", "segments", "gamma", "beta", "mask"]
    if form == "position_ids":
        names.append("position_ids")
    names = [n if n not in dropped else "" for n in names]
    given = [values[n] for n in names if n]
    model = one_node_model("EmbedLayerNormalization", names, 3, given, out_types=[TensorProto.FLOAT, TensorProto.INT32],
                   epsilon=1e-5)
    _check(model, given, rtol=1e-4, atol=1e-5)


# ---- QOperator quantization -----------------------------------------------------------------------
def _scalar(value, dtype=np.float32):
    return np.array(value, dtype)


def _u8(*shape):
    return RNG.integers(0, 256, shape).astype(np.uint8)


def _q(op, names, values, out_type=TensorProto.UINT8, *, atol=0, **attrs):
    """A quantized op against onnxruntime: exact, or within ``atol`` quantization steps."""
    model = one_node_model(op, names, 1, values, out_types=[out_type], **attrs)
    _check(model, values, rtol=0, atol=atol)


@pytest.mark.parametrize("form", ["u8_out", "float_out", "per_column_trans_b", "alpha_trans_a"])
def test_qgemm(form):
    """QGemm as quantize_static writes it for Gemm / fully connected layers. 7-bit weights: onnxruntime's u8 x s8
    kernel saturates int16 pair sums on this CPU (workbench/analysis/reference_caveats.py)."""
    m, k, n = 3, 16, 5
    a, b = _u8(m, k), RNG.integers(-64, 64, (k, n)).astype(np.int8)
    c = RNG.integers(-2000, 2000, (n,)).astype(np.int32)
    inputs = {"a": a, "sa": _scalar(0.02), "za": _scalar(128, np.uint8), "b": b, "sb": _scalar(0.01),
              "zb": _scalar(0, np.int8), "c": c, "sy": _scalar(0.05), "zy": _scalar(120, np.uint8)}
    attrs, out_type = {}, TensorProto.UINT8
    if form == "float_out":
        del inputs["sy"], inputs["zy"]
        out_type = TensorProto.FLOAT
    if form == "per_column_trans_b":
        inputs["b"] = b.T.copy()
        inputs["sb"] = (RNG.random(n) * 0.02 + 0.005).astype(np.float32)
        inputs["zb"] = np.zeros(n, np.int8)
        attrs["transB"] = 1
    if form == "alpha_trans_a":
        inputs["a"] = a.T.copy()
        attrs.update(transA=1, alpha=0.5)
    names = list(inputs)
    _q("QGemm", names, [inputs[n] for n in names], out_type, atol=1e-5 if form == "float_out" else 0, **attrs)


def test_qlinear_concat():
    names = ["sy", "zy", "a", "sa", "za", "b", "sb", "zb", "c", "sc", "zc"]
    values = [_scalar(0.05), _scalar(128, np.uint8), _u8(2, 3, 4), _scalar(0.05), _scalar(128, np.uint8),
              _u8(2, 2, 4), _scalar(0.02), _scalar(100, np.uint8), _u8(2, 1, 4), _scalar(0.1), _scalar(10, np.uint8)]
    _q("QLinearConcat", names, values, axis=1)


@pytest.mark.parametrize("attrs", [
    {"kernel_shape": [2, 2]}, {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]},
    {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 1},
    {"kernel_shape": [2, 2], "channels_last": 1},
])  # fmt: skip
def test_qlinear_average_pool(attrs):
    """Within one quantization step: onnxruntime's kernel rounds differently on some outputs (measured on
    (4, 8, 32, 32) inputs: 57 of 32,768 outputs of a padded 3x3 pool and 155 of 8,192 of a 2x2/2 pool one step
    away, none further; no ordering of the float sum or the scale products reproduced its rounding exactly)."""
    values = [_u8(1, 3, 7, 7), _scalar(0.05), _scalar(128, np.uint8), _scalar(0.03), _scalar(100, np.uint8)]
    _q("QLinearAveragePool", ["x", "sx", "zx", "sy", "zy"], values, atol=1, **attrs)


@pytest.mark.parametrize("opset, axis", [(13, -1), (13, 1), (11, 1)])
def test_qlinear_softmax(opset, axis):
    """Exact (measured also on 6,400 outputs of (64, 100) inputs: none differ)."""
    values = [_u8(2, 3, 8), _scalar(0.1), _scalar(128, np.uint8), _scalar(1 / 256), _scalar(0, np.uint8)]
    _q("QLinearSoftmax", ["x", "sx", "zx", "sy", "zy"], values, opset=opset, axis=axis)


def test_qlinear_where():
    names = ["cond", "x", "sx", "zx", "y", "sy", "zy", "sz", "zz"]
    values = [RNG.random((2, 5)) > 0.5, _u8(2, 5), _scalar(0.05), _scalar(128, np.uint8), _u8(1, 5), _scalar(0.02),
              _scalar(100, np.uint8), _scalar(0.04), _scalar(110, np.uint8)]
    _q("QLinearWhere", names, values)


@pytest.mark.parametrize("form", ["plain", "mask_unidirectional", "per_column"])
def test_qattention(form):
    """quantize_dynamic's QAttention: u8 activations, 7-bit s8 weights (per tensor, or per column with
    per_channel=True), float bias."""
    batch, length, hidden, heads = 2, 5, 16, 2
    names = ["x", "w", "bias", "sx", "sw"]
    values = [_u8(batch, length, hidden), RNG.integers(-64, 64, (hidden, 3 * hidden)).astype(np.int8),
              _f32(3 * hidden), _scalar(0.02), _scalar(0.01)]
    attrs = {}
    if form == "mask_unidirectional":
        names += ["mask", "zx"]
        values += [np.array([3, 5], np.int32), _scalar(128, np.uint8)]
        attrs["unidirectional"] = 1
    if form == "per_column":
        names += ["", "zx", "zw"]
        values[4] = (RNG.random(3 * hidden) * 0.02 + 0.002).astype(np.float32)
        values += [_scalar(128, np.uint8), RNG.integers(-3, 4, 3 * hidden).astype(np.int8)]
    model = one_node_model("QAttention", names, 1, values, num_heads=heads, **attrs)
    _check(model, values, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("segments", [True, False])
def test_qembed_layer_normalization(segments):
    """quantize_dynamic's form of EmbedLayerNormalization (an optimized BERT's): 8-bit tables, gamma and beta."""
    batch, length, vocab, hidden = 2, 6, 20, 8
    tables = {"words": _u8(vocab, hidden), "positions": _u8(16, hidden), "segments": _u8(2, hidden),
              "gamma": _u8(hidden), "beta": _u8(hidden)}
    scales = {k: _scalar(0.01 + 0.01 * i) for i, k in enumerate(tables)}
    zeros = {k: _scalar(120 + i, np.uint8) for i, k in enumerate(tables)}
    order = ["words", "positions", "segments", "gamma", "beta"]
    values = {"ids": RNG.integers(0, vocab, (batch, length)).astype(np.int32),
              "segment_ids": RNG.integers(0, 2, (batch, length)).astype(np.int32), **tables,
              "mask": np.array([[1, 1, 0, 1, 0, 0], [1, 1, 1, 1, 1, 1]], np.int32),
              **{f"{k}_scale": scales[k] for k in order}, **{f"{k}_zero": zeros[k] for k in order}}
    names = ["ids", "segment_ids", *order, "mask", *[f"{k}_scale" for k in order], *[f"{k}_zero" for k in order]]
    if not segments:
        names = ["" if n in ("segment_ids", "segments", "segments_scale", "segments_zero") else n for n in names]
    given = [values[n] for n in names if n]
    model = one_node_model("QEmbedLayerNormalization", names, 2, given, out_types=[TensorProto.FLOAT, TensorProto.INT32],
                   epsilon=1e-5)
    _check(model, given, rtol=1e-4, atol=1e-5)


# ---- a model quantize_static writes in the QOperator format ----------------------------------------
def _small_cnn() -> onnx.ModelProto:
    """Conv-Relu-AveragePool, a second Conv branch, Concat, GlobalAveragePool, Gemm, Softmax (float)."""
    def weight(name, *shape, scale=0.3):
        return numpy_helper.from_array((RNG.standard_normal(shape) * scale).astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("AveragePool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Concat", ["p1", "r2"], ["joined"], axis=1),
        helper.make_node("GlobalAveragePool", ["joined"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("Gemm", ["flat", "wf", "bf"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["y"], axis=-1),
    ]
    weights = [weight("w1", 8, 3, 3, 3), weight("b1", 8, scale=0.1), weight("w2", 8, 8, 3, 3),
               weight("b2", 8, scale=0.1), weight("wf", 10, 16), weight("bf", 10, scale=0.1)]
    graph = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], initializer=weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def test_quantize_static_qoperator_cnn(tmp_path):
    """onnxruntime's quantize_static in the QOperator format (7-bit symmetric weights, u8 activations) on a
    small CNN writes QLinearConv, QLinearAveragePool, QLinearConcat, QLinearGlobalAveragePool, QGemm and
    QLinearSoftmax; the generated code matches onnxruntime within one step of the output's quantization
    (measured: 0, exact, eagerly and jitted)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Calibration(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"x": _f32(1, 3, 16, 16)} for _ in range(8)])

        def get_next(self):
            return next(self.batches, None)

    onnx.save(_small_cnn(), str(tmp_path / "float.onnx"))
    quantize_static(str(tmp_path / "float.onnx"), str(tmp_path / "static.onnx"), Calibration(),
                    quant_format=QuantFormat.QOperator, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    reduce_range=True, extra_options={"WeightSymmetric": True})
    model = onnx.load(str(tmp_path / "static.onnx"))
    written = {node.op_type for node in model.graph.node if node.domain == MS}
    assert {"QLinearAveragePool", "QLinearConcat", "QGemm", "QLinearSoftmax"} <= written, written
    softmax = next(node for node in model.graph.node if node.op_type == "QLinearSoftmax")
    output_step = float(numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == softmax.input[3])))
    _check(model, [_f32(1, 3, 16, 16)], rtol=0, atol=output_step)
