"""Structure of the exported graphs (issue 15): node and Transpose budgets, weights laid out at export,
BatchNorm folded, nodes named after module paths with provenance in metadata_props, channels-first inputs.

Parity of every zoo export is checked in test_model_zoo.py; here the ResNet with channels-first input
and the activation fusions are also compared with JAX.
"""

from __future__ import annotations

import jax
import numpy as np
import onnx
import pytest

import workbench as wb
from tests.support.harness import assert_graph_quality, assert_matches_jax, run_onnx
from workbench import zoo
from workbench.jax_to_onnx.provenance import MODULE_KEY, PRIMITIVE_KEY, SOURCE_KEY

# (nodes, Transposes) at most, per zoo model: measured on the current export, so a regression fails.
# nnx_resnet's 26 = torch.onnx's 25 for the same architecture + the one input Transpose (0 and 25
# with input_layout="NCHW", below); every budget is at or below jax2onnx 0.17's node count
# (tests/benchmarks/bench_graphs.py).
BUDGETS: dict[str, tuple[int, int]] = {
    "nnx_mlp": (3, 0),
    "nnx_cnn": (9, 1),
    "nnx_resnet": (26, 1),
    "nnx_gpt": (104, 5),
    "nnx_vit": (95, 16),
    "nnx_gru": (6, 1),
    "nnx_lstm": (7, 2),
    "linen_mlp": (3, 0),
    "linen_cnn": (9, 1),
    "eqx_mlp": (7, 2),
    "eqx_cnn": (38, 9),
}
# models whose inference BatchNorms follow a Conv or Dense: folded into its weights
BN_FOLDED = ("nnx_mlp", "nnx_cnn", "nnx_resnet", "linen_mlp", "linen_cnn")
# a module path each model's node names must carry
MODULE_NAMES = {
    "nnx_mlp": "linear1/", "nnx_cnn": "conv2/", "nnx_resnet": "blocks.2.c1/", "nnx_gpt": "blocks.1.attn",
    "nnx_vit": "blocks.0.mlp_in/", "nnx_gru": "head/", "nnx_lstm": "head/", "linen_mlp": "linear2/",
    "linen_cnn": "conv1/", "eqx_mlp": "linear1/", "eqx_cnn": "conv2/",
}


@pytest.fixture(scope="module", params=sorted(zoo.ZOO))
def export(request: pytest.FixtureRequest) -> tuple[str, onnx.ModelProto]:
    built = zoo.ZOO[request.param]()
    return request.param, wb.to_onnx(built.fn, built.inputs)


def test_budgets_cover_the_zoo():
    assert set(BUDGETS) == set(zoo.ZOO) == set(MODULE_NAMES)


def test_node_and_transpose_budgets(export):
    name, model = export
    ops = [node.op_type for node in model.graph.node]
    nodes, transposes = BUDGETS[name]
    assert len(ops) <= nodes, (name, ops)
    assert ops.count("Transpose") <= transposes, (name, ops)


def test_no_initializer_is_transposed_at_run_time(export):
    name, model = export
    initializers = {t.name for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Transpose":
            assert node.input[0] not in initializers, f"{name}: {node.name} transposes weight {node.input[0]}"


def test_batch_norm_is_folded(export):
    name, model = export
    if name not in BN_FOLDED:
        pytest.skip(f"{name} has no BatchNorm after a Conv or Dense")  # listed in BN_FOLDED above
    ops = {node.op_type for node in model.graph.node}
    assert not ops & {"BatchNormalization", "Sqrt", "Reciprocal", "Sub"}, (name, ops)
    assert not any(".mean" in t.name or ".var" in t.name for t in model.graph.initializer)


def test_nodes_carry_module_paths_and_provenance(export):
    name, model = export
    names = [node.name for node in model.graph.node]
    assert len(set(names)) == len(names), "node names are unique"
    assert any(MODULE_NAMES[name] in n for n in names), (name, names)
    for node in model.graph.node:
        metadata = {p.key: p.value for p in node.metadata_props}
        assert metadata.get(PRIMITIVE_KEY), f"{name}: {node.name} has no primitive in {metadata}"
        assert "site-packages" not in node.doc_string and "site-packages" not in metadata.get(SOURCE_KEY, "")
        if MODULE_KEY in metadata:
            assert node.name.startswith(metadata[MODULE_KEY] + "/"), (node.name, metadata)
    sourced = [n for n in model.graph.node if any(p.key == SOURCE_KEY for p in n.metadata_props)]
    assert sourced and all("zoo.py:" in {p.key: p.value for p in n.metadata_props}[SOURCE_KEY] for n in sourced)


def test_resnet_with_channels_first_input_has_no_transpose_and_matches_jax():
    built = zoo.nnx_resnet()
    model = wb.to_onnx(built.fn, built.inputs, input_layout="NCHW")
    assert_graph_quality(model)
    ops = [node.op_type for node in model.graph.node]
    assert "Transpose" not in ops and len(ops) <= 25, ops
    assert ops.count("Conv") == 9 and "BatchNormalization" not in ops
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "B" and [d.dim_value for d in dims[1:]] == [3, 32, 32]
    images = np.random.default_rng(0).standard_normal((3, 32, 32, 3)).astype(np.float32)
    (got,) = run_onnx(model, [np.ascontiguousarray(images.transpose(0, 3, 1, 2))])
    np.testing.assert_allclose(got, np.asarray(built.eval_fn()(images)), rtol=1e-4, atol=1e-4)


def test_input_layout_rejects_what_it_cannot_mean():
    built = zoo.nnx_cnn()
    with pytest.raises(ValueError, match="input_layout"):
        wb.to_onnx(built.fn, built.inputs, input_layout="NXYZ")
    with pytest.raises(ValueError, match="input_layout"):
        wb.to_onnx(built.fn, built.inputs, input_layout=["NCHW", "NCHW"])
    with pytest.raises(ValueError, match="rank"):
        wb.to_onnx(built.fn, built.inputs, input_layout=["NCW"])


@pytest.mark.parametrize(("fn", "expected"), [
    (jax.nn.relu, ["Relu"]),
    (jax.nn.relu6, ["Clip"]),
    (jax.nn.hard_sigmoid, ["HardSigmoid"]),
    (jax.nn.hard_swish, ["HardSwish"]),
    (jax.nn.leaky_relu, ["LeakyRelu"]),
    (jax.nn.silu, ["Sigmoid", "Mul"]),
    (lambda x: x.mean(axis=-1), ["ReduceMean"]),
], ids=["relu", "relu6", "hard_sigmoid", "hard_swish", "leaky_relu", "silu", "mean"])
def test_activation_spellings_become_their_onnx_op(fn, expected):
    model = wb.to_onnx(fn, [("B", 8)])
    assert [node.op_type for node in model.graph.node] == expected
    x = 4 * np.random.default_rng(1).standard_normal((3, 8)).astype(np.float32)
    assert_matches_jax(fn, model, [x])


def test_batch_norm_without_a_layer_before_it_is_one_batch_normalization():
    from flax import nnx

    norm = nnx.BatchNorm(4, rngs=nnx.Rngs(0))
    norm.mean.value = np.arange(4, dtype=np.float32)
    norm.var.value = 1.0 + np.arange(4, dtype=np.float32)
    model = wb.to_onnx(norm, [("B", 4)])
    assert [node.op_type for node in model.graph.node] == ["BatchNormalization"]
    x = np.random.default_rng(2).standard_normal((5, 4)).astype(np.float32)
    clone = nnx.clone(norm)
    clone.eval()
    assert_matches_jax(clone, model, [x], rtol=1e-5, atol=1e-5)
