"""Small ONNX models built with onnx.helper for the web harness tests and the GPT demo.

Random weights from a seeded generator, nothing downloaded. Run ``python -m tests.web_models OUT``
to export the tiny GPT demo harness into OUT and smoke-test it in headless Chromium.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 21
IR_VERSION = 10


def _model(nodes: list[onnx.NodeProto], name: str, inputs: list[onnx.ValueInfoProto],
           outputs: list[onnx.ValueInfoProto], weights: dict[str, np.ndarray],
           opsets: list[onnx.OperatorSetIdProto] | None = None) -> onnx.ModelProto:  # fmt: skip
    initializers = [numpy_helper.from_array(value, key) for key, value in weights.items()]
    graph = helper.make_graph(nodes, name, inputs, outputs, initializers)
    model = helper.make_model(
        graph, opset_imports=opsets or [helper.make_opsetid("", OPSET)], producer_name="workbench-tests"
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def mlp(seed: int = 0, features: int = 16, hidden: int = 32, classes: int = 10) -> onnx.ModelProto:
    """The README MLP: x[B, 16] -> Dense -> ReLU -> Dense -> softmax probabilities [B, 10]."""
    rng = np.random.default_rng(seed)
    weights = {
        "w1": (rng.standard_normal((features, hidden)) / np.sqrt(features)).astype(np.float32),
        "b1": rng.standard_normal(hidden).astype(np.float32) * 0.1,
        "w2": (rng.standard_normal((hidden, classes)) / np.sqrt(hidden)).astype(np.float32),
        "b2": rng.standard_normal(classes).astype(np.float32) * 0.1,
    }
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h"]),
        helper.make_node("Relu", ["h"], ["a"]),
        helper.make_node("Gemm", ["a", "w2", "b2"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
    ]
    return _model(
        nodes, "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", features])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["B", classes])],
        weights,
    )  # fmt: skip


def cnn(seed: int = 0, channels: int = 3, size: int = 16, classes: int = 5) -> onnx.ModelProto:
    """x[B, 3, 16, 16] -> Conv 3x3 -> ReLU -> MaxPool 2 -> Conv 3x3 -> ReLU -> GlobalAveragePool -> Dense."""
    rng = np.random.default_rng(seed)
    weights = {
        "k1": (rng.standard_normal((8, channels, 3, 3)) * 0.3).astype(np.float32),
        "c1": (rng.standard_normal(8) * 0.1).astype(np.float32),
        "k2": (rng.standard_normal((16, 8, 3, 3)) * 0.2).astype(np.float32),
        "c2": (rng.standard_normal(16) * 0.1).astype(np.float32),
        "wd": (rng.standard_normal((16, classes)) * 0.3).astype(np.float32),
        "bd": (rng.standard_normal(classes) * 0.1).astype(np.float32),
        "flat": np.asarray([0, -1], dtype=np.int64),
    }
    nodes = [
        helper.make_node("Conv", ["x", "k1", "c1"], ["y1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["y1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "k2", "c2"], ["y2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["y2"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["g"]),
        helper.make_node("Reshape", ["g", "flat"], ["f"]),
        helper.make_node("Gemm", ["f", "wd", "bd"], ["logits"]),
    ]
    return _model(
        nodes, "cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", channels, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["B", classes])],
        weights,
    )  # fmt: skip


def tiny_gpt(seed: int = 0, vocab: int = 64, d_model: int = 32, heads: int = 4,
             layers: int = 2, max_len: int = 32) -> onnx.ModelProto:  # fmt: skip
    """A GPT-style decoder step: token ids [1, T] -> logits [1, T, vocab], T symbolic.

    Token + learned position embeddings, pre-LayerNorm blocks with causal multi-head
    self-attention and a GELU MLP, final LayerNorm and an untied LM head.
    """
    rng = np.random.default_rng(seed)
    head_dim = d_model // heads

    def dense(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) / np.sqrt(shape[0])).astype(np.float32)

    causal = np.triu(np.full((max_len, max_len), -1e9, dtype=np.float32), k=1)
    weights: dict[str, np.ndarray] = {
        "wte": (rng.standard_normal((vocab, d_model)) * 0.5).astype(np.float32),
        "wpe": (rng.standard_normal((max_len, d_model)) * 0.1).astype(np.float32),
        "causal_mask": causal,
        "ln_f.scale": np.ones(d_model, np.float32), "ln_f.bias": np.zeros(d_model, np.float32),
        "lm_head": dense(d_model, vocab),
        "zero": np.asarray(0, np.int64), "one": np.asarray(1, np.int64),
        "zeros2": np.asarray([0, 0], np.int64),
        "heads_shape": np.asarray([0, 0, heads, head_dim], np.int64),
        "merge_shape": np.asarray([0, 0, d_model], np.int64),
        "scale": np.asarray(1.0 / np.sqrt(head_dim), np.float32),
    }  # fmt: skip
    nodes = [
        helper.make_node("Shape", ["input_ids"], ["seq_len_1d"], start=1, end=2),
        helper.make_node("Squeeze", ["seq_len_1d"], ["seq_len"]),
        helper.make_node("Range", ["zero", "seq_len", "one"], ["positions"]),
        helper.make_node("Gather", ["wte", "input_ids"], ["tok_emb"]),
        helper.make_node("Gather", ["wpe", "positions"], ["pos_emb"]),
        helper.make_node("Add", ["tok_emb", "pos_emb"], ["h0"]),
        helper.make_node("Concat", ["seq_len_1d", "seq_len_1d"], ["mask_end"], axis=0),
        helper.make_node("Slice", ["causal_mask", "zeros2", "mask_end"], ["mask"]),
    ]
    h = "h0"
    for i in range(layers):
        p = f"blocks.{i}"
        weights.update({
            f"{p}.ln1.scale": np.ones(d_model, np.float32), f"{p}.ln1.bias": np.zeros(d_model, np.float32),
            f"{p}.ln2.scale": np.ones(d_model, np.float32), f"{p}.ln2.bias": np.zeros(d_model, np.float32),
            f"{p}.attn.q": dense(d_model, d_model), f"{p}.attn.k": dense(d_model, d_model),
            f"{p}.attn.v": dense(d_model, d_model), f"{p}.attn.o": dense(d_model, d_model),
            f"{p}.mlp.up": dense(d_model, 4 * d_model), f"{p}.mlp.up_bias": np.zeros(4 * d_model, np.float32),
            f"{p}.mlp.down": dense(4 * d_model, d_model),
        })  # fmt: skip
        nodes += [
            helper.make_node("LayerNormalization", [h, f"{p}.ln1.scale", f"{p}.ln1.bias"], [f"{p}.x1"], axis=-1),
        ]
        for proj in ("q", "k", "v"):
            nodes += [
                helper.make_node("MatMul", [f"{p}.x1", f"{p}.attn.{proj}"], [f"{p}.{proj}_flat"]),
                helper.make_node("Reshape", [f"{p}.{proj}_flat", "heads_shape"], [f"{p}.{proj}_bthd"]),
                helper.make_node("Transpose", [f"{p}.{proj}_bthd"], [f"{p}.{proj}_h"],
                                 perm=[0, 2, 3, 1] if proj == "k" else [0, 2, 1, 3]),
            ]  # fmt: skip
        nodes += [
            helper.make_node("MatMul", [f"{p}.q_h", f"{p}.k_h"], [f"{p}.scores_raw"]),
            helper.make_node("Mul", [f"{p}.scores_raw", "scale"], [f"{p}.scores_scaled"]),
            helper.make_node("Add", [f"{p}.scores_scaled", "mask"], [f"{p}.scores"]),
            helper.make_node("Softmax", [f"{p}.scores"], [f"{p}.probs"], axis=-1),
            helper.make_node("MatMul", [f"{p}.probs", f"{p}.v_h"], [f"{p}.ctx_h"]),
            helper.make_node("Transpose", [f"{p}.ctx_h"], [f"{p}.ctx_bthd"], perm=[0, 2, 1, 3]),
            helper.make_node("Reshape", [f"{p}.ctx_bthd", "merge_shape"], [f"{p}.ctx"]),
            helper.make_node("MatMul", [f"{p}.ctx", f"{p}.attn.o"], [f"{p}.attn_out"]),
            helper.make_node("Add", [h, f"{p}.attn_out"], [f"{p}.h_mid"]),
            helper.make_node("LayerNormalization", [f"{p}.h_mid", f"{p}.ln2.scale", f"{p}.ln2.bias"],
                             [f"{p}.x2"], axis=-1),
            helper.make_node("MatMul", [f"{p}.x2", f"{p}.mlp.up"], [f"{p}.up_raw"]),
            helper.make_node("Add", [f"{p}.up_raw", f"{p}.mlp.up_bias"], [f"{p}.up"]),
            helper.make_node("Gelu", [f"{p}.up"], [f"{p}.act"], approximate="tanh"),
            helper.make_node("MatMul", [f"{p}.act", f"{p}.mlp.down"], [f"{p}.down"]),
            helper.make_node("Add", [f"{p}.h_mid", f"{p}.down"], [f"{p}.out"]),
        ]  # fmt: skip
        h = f"{p}.out"
    nodes += [
        helper.make_node("LayerNormalization", [h, "ln_f.scale", "ln_f.bias"], ["h_final"], axis=-1),
        helper.make_node("MatMul", ["h_final", "lm_head"], ["logits"]),
    ]
    return _model(
        nodes, "tiny_gpt",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, "T"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, "T", vocab])],
        weights,
    )  # fmt: skip


def unsupported_op_model() -> onnx.ModelProto:
    """A model onnxruntime (Python) runs but onnxruntime-web's wasm build cannot: the
    ``ai.onnx.ml`` Scaler op (the web build is compiled without the ML operators)."""
    nodes = [helper.make_node("Scaler", ["x"], ["y"], domain="ai.onnx.ml",
                              offset=[0.5, 0.0, -0.5], scale=[1.0, 2.0, 3.0])]  # fmt: skip
    return _model(
        nodes, "scaler",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", 3])],
        {}, opsets=[helper.make_opsetid("", OPSET), helper.make_opsetid("ai.onnx.ml", 3)],
    )  # fmt: skip


def _demo(out_dir: Path) -> int:
    from workbench.web.harness import GreedyGeneration, export_web_harness
    from workbench.web.smoke import smoke_test_web_harness

    info = export_web_harness(tiny_gpt(), out_dir, generate=GreedyGeneration(prompt=[1, 2, 3], steps=8))
    print(f"harness written to {info.out_dir}; expected tokens {info.expected_tokens}")
    report = smoke_test_web_harness(out_dir)
    print(report.summary())
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(_demo(Path(sys.argv[1] if len(sys.argv) > 1 else "gpt_web_harness")))
