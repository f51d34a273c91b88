"""Structure of the exported graphs (issue 15): node and Transpose budgets, weights laid out at export,
BatchNorm folded, nodes named after module paths with provenance in metadata_props, channels-first inputs.

Parity of every zoo export is checked in test_model_zoo.py, on the same export (tests/support/zoo_exports.py
converts each zoo model once per test process); here the ResNet with channels-first input and the activation
fusions are also compared with JAX.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

import workbench as wb
from tests.support.harness import assert_graph_quality, assert_matches_jax, run_onnx
from tests.support.zoo_exports import reference, zoo_export
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
    # symbolic sequence: MatMuls where Einsums were (104 nodes, 5 Transposes, 4 Einsums); no Add for the
    # attention projections' zero biases (89 nodes before)
    "nnx_gpt": (83, 8),
    # symbolic batch: the attention-layout rules fire as with a static one (62 nodes); no Add for the
    # attention projections' zero biases (65 nodes before)
    "nnx_vit": (59, 10),
    "nnx_gru": (6, 1),
    "nnx_lstm": (7, 2),
    "linen_mlp": (3, 0),
    "linen_cnn": (9, 1),
    "eqx_mlp": (3, 0),
    "eqx_cnn": (9, 1),
}
# the models with BatchNorms (each after a Conv or Dense): folded into its weights
BN_FOLDED = ("nnx_mlp", "nnx_cnn", "nnx_resnet", "linen_mlp", "linen_cnn", "eqx_mlp", "eqx_cnn")
# a module path each model's node names must carry
MODULE_NAMES = {
    "nnx_mlp": "linear1/", "nnx_cnn": "conv2/", "nnx_resnet": "blocks.2.c1/", "nnx_gpt": "blocks.1.attn",
    "nnx_vit": "blocks.0.mlp_in/", "nnx_gru": "head/", "nnx_lstm": "head/", "linen_mlp": "linear2/",
    "linen_cnn": "conv1/", "eqx_mlp": "linear1/", "eqx_cnn": "conv2/",
}


ZOO_NAMES = sorted(zoo.ZOO)


def test_budgets_cover_the_zoo():
    assert set(BUDGETS) == set(zoo.ZOO) == set(MODULE_NAMES)
    assert set(BN_FOLDED) <= set(zoo.ZOO)


@pytest.mark.parametrize("name", ZOO_NAMES)
def test_node_and_transpose_budgets(name):
    model = zoo_export(name).model
    ops = [node.op_type for node in model.graph.node]
    nodes, transposes = BUDGETS[name]
    assert len(ops) <= nodes, (name, ops)
    assert ops.count("Transpose") <= transposes, (name, ops)


@pytest.mark.parametrize("name", ZOO_NAMES)
def test_no_initializer_is_transposed_at_run_time(name):
    model = zoo_export(name).model
    initializers = {t.name for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Transpose":
            assert node.input[0] not in initializers, f"{name}: {node.name} transposes weight {node.input[0]}"


@pytest.mark.parametrize("name", BN_FOLDED)
def test_batch_norm_is_folded(name):
    model = zoo_export(name).model
    ops = {node.op_type for node in model.graph.node}
    assert not ops & {"BatchNormalization", "Sqrt", "Reciprocal", "Sub"}, (name, ops)
    assert not any(".mean" in t.name or ".var" in t.name for t in model.graph.initializer)


@pytest.mark.parametrize("name", ZOO_NAMES)
def test_nodes_carry_module_paths_and_provenance(name):
    model = zoo_export(name).model
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
    built = zoo_export("nnx_resnet").built
    model = wb.to_onnx(built.fn, built.inputs, input_layout="NCHW")
    assert_graph_quality(model)
    ops = [node.op_type for node in model.graph.node]
    assert "Transpose" not in ops and len(ops) <= 25, ops
    assert ops.count("Conv") == 9 and "BatchNormalization" not in ops
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "B" and [d.dim_value for d in dims[1:]] == [3, 32, 32]
    images = np.random.default_rng(0).standard_normal((3, 32, 32, 3)).astype(np.float32)
    (got,) = run_onnx(model, [np.ascontiguousarray(images.transpose(0, 3, 1, 2))])
    np.testing.assert_allclose(got, np.asarray(reference("nnx_resnet")(images)), rtol=1e-4, atol=1e-4)


def test_input_layout_rejects_what_it_cannot_mean():
    built = zoo_export("nnx_cnn").built
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


@pytest.mark.parametrize(("features_in", "features_out"), [(8, 32), (32, 8), (16, 16)])
def test_per_example_dense_layers_under_vmap_become_gemms(features_in, features_out):
    # Equinox's Linear computes W @ x for one example; under vmap that is x @ W^T with W^T stored
    # at export, whether the layer widens, narrows or keeps its width
    import equinox as eqx

    first = eqx.nn.Linear(features_in, features_out, key=jax.random.key(0))
    second = eqx.nn.Linear(features_out, features_in, key=jax.random.key(1))

    def mlp(x):
        return jax.vmap(lambda example: second(jax.nn.relu(first(example))))(x)

    model = wb.to_onnx(mlp, [("B", features_in)])
    assert [node.op_type for node in model.graph.node] == ["Gemm", "Relu", "Gemm"]
    x = np.random.default_rng(3).standard_normal((3, features_in)).astype(np.float32)
    assert_matches_jax(mlp, model, [x], rtol=1e-5, atol=1e-5)


def test_per_example_channels_first_convolution_under_vmap_has_no_reshape_round_trips():
    # vmap of a per-image CHW conv and pool adds and removes a unit batch axis around each op;
    # those Unsqueeze/Reshape/Squeeze round trips are dropped, leaving Conv and MaxPool on NCHW
    import equinox as eqx

    conv = eqx.nn.Conv2d(3, 4, 3, padding=1, key=jax.random.key(0))
    pool = eqx.nn.MaxPool2d(2, stride=2)

    def net(images):
        return jax.vmap(lambda image: pool(jax.nn.relu(conv(image))))(images)

    model = wb.to_onnx(net, [("B", 3, 8, 8)])
    assert [node.op_type for node in model.graph.node] == ["Conv", "Relu", "MaxPool"]
    images = np.random.default_rng(4).standard_normal((2, 3, 8, 8)).astype(np.float32)
    assert_matches_jax(net, model, [images], rtol=1e-5, atol=1e-5)


def test_asymmetric_pad_between_convolutions_keeps_its_axes():
    """The channel-layout pass moves a Pad into NCHW: each axis keeps its own pads (H and W differ here)."""
    kernel1 = np.random.default_rng(3).standard_normal((3, 3, 2, 4)).astype(np.float32)
    kernel2 = np.random.default_rng(4).standard_normal((3, 3, 4, 5)).astype(np.float32)

    def conv(x, kernel):
        return jax.lax.conv_general_dilated(x, kernel, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))

    def fn(x):
        padded = jax.numpy.pad(jax.nn.relu(conv(x, kernel1)), ((0, 0), (1, 2), (0, 3), (0, 0)))
        return conv(padded, kernel2)

    model = wb.to_onnx(fn, [("B", 9, 7, 2)])
    ops = [node.op_type for node in model.graph.node]
    assert ops.count("Transpose") == 2 and "Pad" in ops, ops
    x = np.random.default_rng(5).standard_normal((2, 9, 7, 2)).astype(np.float32)
    assert_matches_jax(fn, model, [x], rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------------ norm layers
def _layer_norms() -> dict[str, tuple[object, list[tuple[object, ...]]]]:
    """Every way a layer norm is commonly written, as (function, input specs): Flax NNX and Linen in
    both variance forms, with and without scale/bias, several trailing axes, Equinox per example
    under one or two vmaps."""
    import equinox as eqx
    from flax import linen, nnx

    def trained(module):  # non-trivial scale and bias, so a dropped parameter fails the parity check
        rng = np.random.default_rng(7)
        for name in ("scale", "bias"):
            param = getattr(module, name, None)
            if param is not None:
                param[...] = rng.standard_normal(param[...].shape).astype(np.float32)
        return module

    cases: dict[str, tuple[object, list[tuple[object, ...]]]] = {}
    for fast in (True, False):
        for scale, bias in ((True, True), (True, False), (False, True), (False, False)):
            module = nnx.LayerNorm(16, use_fast_variance=fast, use_scale=scale, use_bias=bias, rngs=nnx.Rngs(0))
            cases[f"nnx-{'fast' if fast else 'exact'}-scale{int(scale)}-bias{int(bias)}"] = (trained(module), [("B", "S", 16)])
        linen_norm = linen.LayerNorm(use_fast_variance=fast)
        leaf_rng = np.random.default_rng(8)
        params = jax.tree_util.tree_map(
            lambda p, r=leaf_rng: r.standard_normal(p.shape).astype(np.float32),
            linen_norm.init(jax.random.key(0), np.ones((2, 16), np.float32)),
        )
        cases[f"linen-{'fast' if fast else 'exact'}"] = (lambda x, n=linen_norm, p=params: n.apply(p, x), [("B", 16)])
        two_axes = nnx.LayerNorm(16, reduction_axes=(-2, -1), use_fast_variance=fast, use_scale=False,
                                 use_bias=False, rngs=nnx.Rngs(0))
        cases[f"nnx-two-axes-{'fast' if fast else 'exact'}"] = (two_axes, [("B", 4, 16)])
    rng = np.random.default_rng(9)
    equinox_norm = eqx.nn.LayerNorm(16)
    equinox_norm = eqx.tree_at(lambda n: (n.weight, n.bias), equinox_norm,
                               (rng.standard_normal(16).astype(np.float32), rng.standard_normal(16).astype(np.float32)))
    cases["eqx-one-example"] = (equinox_norm, [(16,)])
    cases["eqx-vmap"] = (jax.vmap(equinox_norm), [("B", 16)])
    cases["eqx-vmap-vmap"] = (jax.vmap(jax.vmap(equinox_norm)), [("B", "S", 16)])
    cases["eqx-no-weight-vmap"] = (jax.vmap(eqx.nn.LayerNorm(16, use_weight=False, use_bias=False)), [("B", 16)])
    cases["eqx-two-axes-vmap"] = (jax.vmap(eqx.nn.LayerNorm((4, 16))), [("B", 4, 16)])
    return cases


LAYER_NORMS = _layer_norms()


@pytest.mark.parametrize("name", sorted(LAYER_NORMS))
def test_every_layer_norm_spelling_is_one_layer_normalization(name):
    fn, specs = LAYER_NORMS[name]
    model = wb.to_onnx(fn, specs)
    assert [node.op_type for node in model.graph.node] == ["LayerNormalization"], name
    assert_graph_quality(model)
    x = 3 + 2 * np.random.default_rng(10).standard_normal([2 if d == "B" else 5 if d == "S" else d for d in specs[0]])
    assert_matches_jax(fn, model, [x.astype(np.float32)], rtol=1e-4, atol=1e-4)


def test_a_gate_multiplied_into_a_layer_norm_is_no_scale():
    # Mul(LayerNorm(x), y) with y an activation must stay a Mul: LayerNormalization's scale is per feature
    from flax import nnx

    norm = nnx.LayerNorm(16, use_fast_variance=False, use_scale=False, use_bias=False, rngs=nnx.Rngs(0))

    def gated(x, gate):
        return norm(x) * gate + gate

    model = wb.to_onnx(gated, [("B", 16), ("B", 16)])
    assert [node.op_type for node in model.graph.node] == ["LayerNormalization", "Mul", "Add"]
    rng = np.random.default_rng(11)
    args = [rng.standard_normal((3, 16)).astype(np.float32) for _ in range(2)]
    assert_matches_jax(gated, model, args, rtol=1e-4, atol=1e-4)


def _rms_norms() -> dict[str, tuple[object, list[tuple[object, ...]]]]:
    """RMS norms as Flax NNX, Equinox (per example, vmapped) and Llama/Gemma-style code write them."""
    import equinox as eqx
    from flax import nnx

    rng = np.random.default_rng(12)
    weight = rng.standard_normal(16).astype(np.float32)
    flax_norm = nnx.RMSNorm(16, rngs=nnx.Rngs(0))
    flax_norm.scale[...] = weight
    equinox_norm = eqx.tree_at(lambda n: n.weight, eqx.nn.RMSNorm(16), weight)

    def llama(x):  # Llama / GPT-OSS: computed in float32, x * rsqrt(mean(x^2) + eps) * w
        variance = jax.numpy.mean(x.astype(jax.numpy.float32) ** 2, axis=-1, keepdims=True)
        return x * jax.lax.rsqrt(variance + 1e-6) * weight

    def unscaled(x):
        return x * jax.lax.rsqrt(jax.numpy.mean(jax.numpy.square(x), axis=-1, keepdims=True) + 1e-5)

    return {
        "nnx": (flax_norm, [("B", "S", 16)]),
        "eqx-vmap": (jax.vmap(equinox_norm), [("B", 16)]),
        "eqx-no-weight-vmap": (jax.vmap(eqx.nn.RMSNorm(16, use_weight=False, use_bias=False)), [("B", 16)]),
        "llama": (llama, [("B", "S", 16)]),
        "unscaled": (unscaled, [("B", "S", 16)]),
    }


RMS_NORMS = _rms_norms()


@pytest.mark.parametrize("opset", [21, 23])
@pytest.mark.parametrize("name", sorted(RMS_NORMS))
def test_rms_norm_is_rms_normalization_from_opset_23_else_five_nodes(name, opset):
    from workbench.jax_to_onnx.passes.norms import onnxruntime_runs_rms_normalization

    fn, specs = RMS_NORMS[name]
    model = wb.to_onnx(fn, specs, opset=opset)
    ops = [node.op_type for node in model.graph.node]
    scaled = "unscaled" not in name and "no-weight" not in name
    if opset >= 23 and onnxruntime_runs_rms_normalization():
        assert ops == ["RMSNormalization"], ops
    else:
        assert ops == ["Pow", "ReduceMean", "Add", "Sqrt", "Div"] + (["Mul"] if scaled else []), ops
    assert_graph_quality(model)
    x = 2 * np.random.default_rng(13).standard_normal([2 if d == "B" else 5 if d == "S" else d for d in specs[0]])
    assert_matches_jax(fn, model, [x.astype(np.float32)], rtol=1e-4, atol=1e-4)


def test_onnxruntime_probe_for_rms_normalization_agrees_with_its_version():
    import onnxruntime

    from workbench.jax_to_onnx.passes.norms import onnxruntime_runs_rms_normalization

    major, minor = (int(part) for part in onnxruntime.__version__.split(".")[:2])
    assert onnxruntime_runs_rms_normalization() == ((major, minor) >= (1, 22))


def test_softmax_of_flax_attention_on_a_transposed_view_is_one_softmax():
    # Flax's (grouped-query) attention takes the softmax of 5-D logits through a transposed view: one
    # Softmax on the logits, its Transpose composed with the one the next einsum wants
    from flax import nnx

    attention = nnx.MultiHeadAttention(num_heads=4, in_features=32, decode=False, rngs=nnx.Rngs(0))
    model = wb.to_onnx(lambda x: attention(x), [("B", 17, 32)])
    ops = [node.op_type for node in model.graph.node]
    assert ops.count("Softmax") == 1 and not {"Exp", "ReduceMax", "ReduceSum"} & set(ops), ops
    assert ops.count("Transpose") <= 5, ops
    assert_graph_quality(model)
    x = np.random.default_rng(14).standard_normal((2, 17, 32)).astype(np.float32)
    assert_matches_jax(lambda x: attention(x), model, [x], rtol=1e-4, atol=1e-4)


def test_vit_with_channels_first_input_reads_its_batch_size_past_the_input_transpose():
    # the class token is broadcast to the batch size read with Shape: reading it from the NCHW input
    # directly lets the input's Transpose cancel the patch embedding's
    built = zoo_export("nnx_vit").built
    model = wb.to_onnx(built.fn, built.inputs, input_layout="NCHW")
    ops = [node.op_type for node in model.graph.node]
    assert ops.count("Transpose") == BUDGETS["nnx_vit"][1] - 1 and len(ops) < BUDGETS["nnx_vit"][0], ops
    images = np.random.default_rng(15).standard_normal((2, 16, 16, 3)).astype(np.float32)
    (got,) = run_onnx(model, [np.ascontiguousarray(images.transpose(0, 3, 1, 2))])
    np.testing.assert_allclose(got, np.asarray(reference("nnx_vit")(images)), rtol=1e-4, atol=1e-4)
