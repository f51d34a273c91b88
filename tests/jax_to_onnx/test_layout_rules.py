"""Layout rewrites (workbench/jax_to_onnx/passes/attention_layout.py): attention leaves the exporter in the layout onnxruntime
runs fastest, the graph shapes are the ones the rules promise, and the numbers still match JAX."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper

import workbench as wb
from tests.support.harness import assert_graph_quality, assert_matches_jax
from workbench.jax_to_onnx.passes import rewrite_layouts


def _ranks(model: onnx.ModelProto) -> dict[str, int]:
    return {info.name: len(info.type.tensor_type.shape.dim) for info in model.graph.value_info}


def _producers(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {out: node for node in model.graph.node for out in node.output}


def _assert_attention_layout(model: onnx.ModelProto, blocks: int) -> None:
    """Per block: 4 transposes (Q, K, V, heads merge), the scale right after the scores MatMul, the mask
    Where and the Softmax on 4-D scores, every projection bias a 1-D Add right after its MatMul (none when it
    is zeros)."""
    ops = [node.op_type for node in model.graph.node]
    # the tied head's embedding transpose is folded into an initializer (a small embedding: a copy
    # costs less than FOLD_GROWTH_LIMIT), so no Transpose of an initializer is left
    transposed = {name for node in model.graph.node if node.op_type == "Transpose" for name in node.input}
    assert not transposed & {t.name for t in model.graph.initializer}
    assert ops.count("Transpose") == 4 * blocks, ops
    ranks = _ranks(model)
    assert max(ranks.values()) <= 4, [name for name, rank in ranks.items() if rank > 4]
    producers = _producers(model)
    initializers = {tensor.name: tensor for tensor in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Softmax":
            where = producers[node.input[0]]
            assert where.op_type == "Where" and ranks[node.input[0]] == 4
            assert list(initializers[where.input[2]].dims) == [], "the mask fill is a scalar"
            scale = producers[where.input[1]]
            assert scale.op_type == "Mul" and producers[scale.input[0]].op_type == "MatMul"
    for block in range(blocks):
        for projection in ("query", "key", "value"):
            module = f"blocks.{block}.attn.{projection}"
            bias = initializers.get(f"{module}.bias")
            if bias is None:  # a bias of zeros (freshly initialised) is not added
                product = next(node for node in model.graph.node if f"{module}.kernel" in node.input).output[0]
                assert [node.op_type for node in model.graph.node if product in node.input] == ["Reshape"]
                continue
            assert len(bias.dims) == 1, "the per-head bias is stored flat under its own name"
            add = next(node for node in model.graph.node if node.op_type == "Add" and bias.name in node.input)
            assert producers[add.input[0]].op_type == "MatMul"


@pytest.mark.parametrize("batch", [1, 2])
def test_gpt_attention_layout_and_parity(batch):
    from workbench.zoo import nnx_gpt

    # head size 8 != sequence 16: with equal sizes the attention contraction takes another operand order
    built = nnx_gpt(layers=2, d_model=32, heads=4, seq=16, vocab=50, symbolic_seq=False)
    model = wb.to_onnx(built.fn, [jax.ShapeDtypeStruct((batch, 16), jnp.int32)])
    assert_graph_quality(model)
    _assert_attention_layout(model, blocks=2)
    tokens = np.random.default_rng(0).integers(0, 50, (batch, 16)).astype(np.int32)
    assert_matches_jax(built.eval_fn(), model, [tokens], rtol=1e-4, atol=1e-4)


def test_minimal_causal_attention_layout_and_parity():
    from flax import nnx

    attention = nnx.MultiHeadAttention(
        num_heads=2, in_features=8, qkv_features=8, decode=False, rngs=nnx.Rngs(0)
    )
    mask = nnx.make_causal_mask(jnp.ones((1, 5), jnp.int32))

    def attend(x):
        return attention(x, mask=mask)

    model = wb.to_onnx(attend, [(1, 5, 8)])
    assert_graph_quality(model)
    ops = [node.op_type for node in model.graph.node]
    assert ops.count("Transpose") <= 4 and ops.count("Softmax") == 1, ops
    assert max(_ranks(model).values()) <= 4
    x = np.random.default_rng(1).standard_normal((1, 5, 8)).astype(np.float32)
    assert_matches_jax(attend, model, [x], rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------- single rules, by hand
def _rewritten(nodes, inputs, output, initializers) -> tuple[onnx.ModelProto, onnx.ModelProto]:
    """The model before and after the layout rules, for graphs built node by node."""
    graph = helper.make_graph(nodes, "g", inputs, [output], initializers)
    before = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)
    before = onnx.shape_inference.infer_shapes(before)
    model = ir.from_proto(before)
    rewrite_layouts(model)
    after = onnx.shape_inference.infer_shapes(ir.to_proto(model))
    onnx.checker.check_model(after, full_check=True)
    return before, after


def _run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


def _shape(name: str, dims: list[int]) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(dims, np.int64), name)


def test_unit_axis_transpose_becomes_a_4d_transpose():
    # the heads merge flax emits: (1, 8, 64, 32) -> (1, 8, 1, 64, 32) -> move axes -> (1, 64, 256)
    nodes = [
        helper.make_node("Reshape", ["x", "s5"], ["r"]),
        helper.make_node("Transpose", ["r"], ["t"], perm=[0, 3, 1, 2, 4]),
        helper.make_node("Reshape", ["t", "s3"], ["y"]),
    ]
    before, after = _rewritten(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6, 3])],
        helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6, 12]),
        [_shape("s5", [1, 4, 1, 6, 3]), _shape("s3", [1, 6, 12])],
    )
    transposes = [node for node in after.graph.node if node.op_type == "Transpose"]
    assert len(transposes) == 1 and list(transposes[0].attribute[0].ints) == [0, 2, 1, 3]
    assert len(after.graph.node) == 2
    x = np.random.default_rng(0).standard_normal((1, 4, 6, 3)).astype(np.float32)
    np.testing.assert_array_equal(_run(after, {"x": x}), _run(before, {"x": x}))


def test_transpose_of_data_axes_feeding_a_non_reshape_is_left_alone():
    # the rewrite would need a reshape after the transpose that nothing absorbs: no gain, no rewrite
    nodes = [
        helper.make_node("Reshape", ["x", "s5"], ["r"]),
        helper.make_node("Transpose", ["r"], ["y"], perm=[0, 3, 1, 2, 4]),
    ]
    _, after = _rewritten(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 6, 3])],
        helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6, 4, 1, 3]),
        [_shape("s5", [1, 4, 1, 6, 3])],
    )
    assert [node.op_type for node in after.graph.node] == ["Reshape", "Transpose"]


def test_masked_softmax_leaves_the_unit_axis_layout():
    # scores (2, 3, 5) seen as (2, 3, 1, 5): scale, mask with a fill, softmax, back to (2, 3, 5)
    mask = np.tril(np.ones((3, 5), bool))[None, :, None, :].repeat(2, axis=0)
    nodes = [
        helper.make_node("Reshape", ["x", "s4"], ["r"]),
        helper.make_node("Mul", ["r", "scale"], ["m"]),
        helper.make_node("Where", ["mask", "m", "fill"], ["w"]),
        helper.make_node("Softmax", ["w"], ["p"], axis=3),
        helper.make_node("Reshape", ["p", "s3"], ["back"]),
        helper.make_node("Neg", ["back"], ["y"]),
    ]
    fill = np.full((2, 3, 1, 5), np.finfo(np.float32).min, np.float32)
    before, after = _rewritten(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 5])],
        helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 5]),
        [
            _shape("s4", [2, 3, 1, 5]), _shape("s3", [2, 3, 5]),
            numpy_helper.from_array(np.array(0.5, np.float32), "scale"),
            numpy_helper.from_array(mask, "mask"), numpy_helper.from_array(fill, "fill"),
        ],
    )
    assert [node.op_type for node in after.graph.node] == ["Mul", "Where", "Softmax", "Neg"]
    initializers = {tensor.name: tensor for tensor in after.graph.initializer}
    where = next(node for node in after.graph.node if node.op_type == "Where")
    assert list(initializers[where.input[0]].dims) == [1, 3, 5], "the mask is not repeated over the batch"
    assert list(initializers[where.input[2]].dims) == [], "a uniform fill is a scalar"
    x = np.random.default_rng(0).standard_normal((2, 3, 5)).astype(np.float32)
    np.testing.assert_array_equal(_run(after, {"x": x}), _run(before, {"x": x}))


def test_where_with_a_computed_mask_is_left_alone():
    nodes = [
        helper.make_node("Reshape", ["x", "s4"], ["r"]),
        helper.make_node("Greater", ["r", "zero"], ["mask"]),
        helper.make_node("Where", ["mask", "r", "fill"], ["y"]),
    ]
    _, after = _rewritten(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5])],
        helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 1, 5]),
        [_shape("s4", [2, 1, 5]), numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
         numpy_helper.from_array(np.array(-1.0, np.float32), "fill")],
    )
    assert [node.op_type for node in after.graph.node] == ["Reshape", "Greater", "Where"]


def test_bias_is_added_before_the_head_split_only_when_it_covers_the_split_axes():
    def graph(bias: np.ndarray):
        nodes = [
            helper.make_node("MatMul", ["x", "w"], ["p"]),
            helper.make_node("Reshape", ["p", "s"], ["r"]),
            helper.make_node("Add", ["r", "b"], ["y"]),
        ]
        weight = np.random.default_rng(0).standard_normal((6, 8)).astype(np.float32)
        return _rewritten(
            nodes,
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 6])],
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 2, 4]),
            [numpy_helper.from_array(weight, "w"), _shape("s", [1, 3, 2, 4]), numpy_helper.from_array(bias, "b")],
        )

    x = np.random.default_rng(2).standard_normal((1, 3, 6)).astype(np.float32)
    before, after = graph(np.random.default_rng(1).standard_normal((2, 4)).astype(np.float32))
    ops = [node.op_type for node in after.graph.node]
    assert ops.index("Add") < ops.index("Reshape", ops.index("Add")), ops
    np.testing.assert_array_equal(_run(after, {"x": x}), _run(before, {"x": x}))
    # a bias over the sequence axis too (3, 2, 4) does not broadcast along the product's last axis alone
    _, after = graph(np.random.default_rng(1).standard_normal((3, 2, 4)).astype(np.float32))
    assert [node.op_type for node in after.graph.node] == ["MatMul", "Reshape", "Add"]


def test_reshape_read_elsewhere_is_not_rewritten_away():
    # the unit-axis reshape also feeds a Neg: the match must not remove a value another node reads
    nodes = [
        helper.make_node("Reshape", ["x", "s5"], ["r"]),
        helper.make_node("Transpose", ["r"], ["t"], perm=[0, 3, 1, 2, 4]),
        helper.make_node("Reshape", ["t", "s3"], ["back"]),
        helper.make_node("Neg", ["r"], ["negated"]),
        helper.make_node("Reshape", ["negated", "s3"], ["other"]),
        helper.make_node("Add", ["back", "other"], ["y"]),
    ]
    before, after = _rewritten(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6, 3])],
        helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6, 12]),
        [_shape("s5", [1, 4, 1, 6, 3]), _shape("s3", [1, 6, 12])],
    )
    assert [node.op_type for node in after.graph.node].count("Transpose") == 1
    x = np.random.default_rng(0).standard_normal((1, 4, 6, 3)).astype(np.float32)
    np.testing.assert_array_equal(_run(after, {"x": x}), _run(before, {"x": x}))


@pytest.mark.parametrize("name", ["nnx_vit", "nnx_cnn", "nnx_mlp"])
def test_static_batch_zoo_models_keep_parity(name):
    # the zoo's specs have a symbolic batch, which the rules leave alone: with a static batch they apply
    from workbench import zoo

    built = getattr(zoo, name)()
    shape = tuple(2 if isinstance(size, str) else size for size in built.inputs[0])
    model = wb.to_onnx(built.fn, [shape])
    assert_graph_quality(model)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    assert_matches_jax(built.eval_fn(), model, [x], rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------- symbolic batch and sequence
def test_symbolic_batch_and_sequence_attention_layout_and_parity():
    # the zoo GPT with symbolic (B, T): MatMuls (no Einsum), the same 4 Transposes per block as with static
    # shapes, the masked Softmax on 4-D scores, the causal mask built once from a Range (make_causal_mask
    # broadcasts the positions to (B, T) first: that Expand stays)
    from workbench.zoo import nnx_gpt

    built = nnx_gpt(layers=2, d_model=32, heads=4, seq=16, vocab=50)
    model = wb.to_onnx(built.fn, built.inputs)
    assert_graph_quality(model)
    ops = [node.op_type for node in model.graph.node]
    assert "Einsum" not in ops and ops.count("Transpose") == 4 * 2, ops
    assert ops.count("Range") == 1 and ops.count("Shape") <= 2, ops
    ranks, producers = _ranks(model), _producers(model)
    assert max(ranks.values()) <= 4, [name for name, rank in ranks.items() if rank > 4]
    for node in model.graph.node:
        if node.op_type == "Softmax":
            where = producers[node.input[0]]
            assert where.op_type == "Where" and producers[where.input[1]].op_type == "Mul"
    for batch, length in ((1, 16), (3, 7)):
        tokens = np.random.default_rng(length).integers(0, 50, (batch, length)).astype(np.int32)
        assert_matches_jax(built.eval_fn(), model, [tokens], rtol=1e-4, atol=1e-4)


def test_causal_mask_of_a_symbolic_sequence_is_a_comparison_of_ranges():
    # tril(ones((T, T))) with T symbolic: no Expand to (T, T) of ones and zeros, no Where and Cast back to bool
    def masked(x):
        length = x.shape[1]
        return jnp.where(jnp.tril(jnp.ones((length, length), x.dtype)).astype(bool), x, -1e9)

    model = wb.to_onnx(masked, [("B", "T", "T")])
    ops = [node.op_type for node in model.graph.node]
    assert "Expand" not in ops and ops.count("Where") == 1 and ops.count("Cast") <= 1, ops
    assert len(ops) <= 9, ops
    x = np.random.default_rng(2).standard_normal((2, 6, 6)).astype(np.float32)
    assert_matches_jax(masked, model, [x], rtol=1e-6, atol=1e-6)
