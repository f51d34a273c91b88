"""Each fusion rewrite: the pattern JAX emits becomes the named ONNX op, and outputs still match JAX."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import workbench as wb
from tests.support.harness import assert_graph_quality, assert_matches_jax, concrete_inputs

W = np.random.default_rng(0).standard_normal((8, 5)).astype(np.float32)
BIAS = np.random.default_rng(1).standard_normal((5,)).astype(np.float32)


def _dense(x):
    return x @ W + BIAS


def _dense_3d(x):
    return x @ W + BIAS


def _scale_and_shift(x):
    return x * BIAS - BIAS


CASES = [
    # (id, fn, input specs, op that must appear, ops that must be gone, opset)
    ("gemm", _dense, [("B", 8)], "Gemm", ("MatMul", "Reshape"), 21),
    ("bias_3d_no_reshape", _dense_3d, [("B", "T", 8)], "MatMul", ("Reshape", "Gemm"), 21),
    ("mul_sub_bias_no_reshape", _scale_and_shift, [("B", 5)], "BatchNormalization", ("Reshape", "Mul", "Sub"), 21),
    ("softmax_last", lambda x: jax.nn.softmax(x), [("B", 7)], "Softmax", ("Exp", "ReduceMax"), 21),
    ("softmax_axis1", lambda x: jax.nn.softmax(x, axis=1), [("B", 4, 6)], "Softmax", ("Exp",), 18),
    ("gelu_tanh", lambda x: jax.nn.gelu(x), [("B", 9)], "Gelu", ("Tanh",), 21),
    ("gelu_erf", lambda x: jax.nn.gelu(x, approximate=False), [("B", 9)], "Gelu", ("Erf",), 20),
    ("gelu_tanh_below_opset20", lambda x: jax.nn.gelu(x), [("B", 9)], "Tanh", ("Gelu",), 19),
    ("gelu_erf_below_opset20", lambda x: jax.nn.gelu(x, approximate=False), [("B", 9)], "Erf", ("Gelu",), 18),
]


@pytest.mark.parametrize(("fn", "specs", "present", "absent", "opset"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rewrite_fuses_and_preserves_outputs(fn, specs, present, absent, opset):
    model = wb.to_onnx(fn, specs, opset=opset)
    assert_graph_quality(model)
    ops = [n.op_type for n in model.graph.node]
    assert present in ops, f"expected {present} in {ops}"
    for op in absent:
        assert op not in ops, f"{op} should have been fused away: {ops}"
    assert_matches_jax(fn, model, concrete_inputs(specs), rtol=1e-5, atol=1e-5)


def test_square_of_a_reshaped_scalar_keeps_its_reshape():
    # TFP's ExponentiatedQuadratic kernel: (1 / length_scale) reshaped to (1, 1), then squared. The
    # square is Mul(r, r) with r = Reshape(w): MulReshapedBias matched it with its ``x`` bound to r itself,
    # and its replacement Mul(r, w) read the Reshape it removed (onnx_ir refused: "still being used")
    def kernel_scale(x, length_scale):
        inverse = jnp.reshape(1.0 / length_scale, (1, 1))
        return jnp.exp(-0.5 * x * jnp.square(inverse))

    specs = [(6, 6), ()]
    model = wb.to_onnx(kernel_scale, specs)
    assert_graph_quality(model)
    distances = np.abs(np.random.default_rng(2).standard_normal((6, 6))).astype(np.float32)
    assert_matches_jax(kernel_scale, model, [distances, np.float32(0.6)])


def test_softmax_with_other_guard_is_not_fused():
    # max(0, reduce_max) is not softmax's -inf guard: neither the block recognised while lowering
    # (blocks.py) nor the rewrite rule may take it for a Softmax
    def almost_softmax(x):
        shifted = x - jnp.maximum(0.0, jnp.max(x, axis=-1, keepdims=True))
        e = jnp.exp(shifted)
        return e / jnp.sum(e, axis=-1, keepdims=True)

    model = wb.to_onnx(almost_softmax, [("B", 7)])
    assert "Softmax" not in [n.op_type for n in model.graph.node]
    assert_matches_jax(almost_softmax, model, concrete_inputs([("B", 7)]))


def _nnx_layer_norm(features: int, **options):
    from flax import nnx

    norm = nnx.LayerNorm(features, rngs=nnx.Rngs(0), **options)
    rng = np.random.default_rng(2)
    if norm.scale is not None:
        norm.scale[...] = rng.standard_normal(norm.scale.shape).astype(np.float32)
    if norm.bias is not None:
        norm.bias[...] = rng.standard_normal(norm.bias.shape).astype(np.float32)
    return norm


@pytest.mark.parametrize(
    ("options", "specs"),
    [
        ({}, [("B", "T", 16)]),
        ({"use_bias": False}, [("B", 16)]),
        ({"use_scale": False}, [(2, 3, 16)]),
        ({"use_scale": False, "use_bias": False}, [("B", 16)]),
        ({"epsilon": 1e-3}, [("B", 16)]),
    ],
    ids=["scale_bias_3d", "no_bias", "no_scale", "neither", "epsilon"],
)
def test_flax_layer_norm_becomes_layer_normalization(options, specs):
    norm = _nnx_layer_norm(specs[0][-1], **options)
    model = wb.to_onnx(norm, specs)
    assert_graph_quality(model)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("LayerNormalization") == 1, ops
    assert not {"ReduceSum", "Sqrt", "Reciprocal", "Max"} & set(ops), ops
    node = next(n for n in model.graph.node if n.op_type == "LayerNormalization")
    epsilon = next(a.f for a in node.attribute if a.name == "epsilon")
    assert epsilon == pytest.approx(options.get("epsilon", 1e-6), rel=1e-6)
    inputs = concrete_inputs(specs)
    inputs[0] = inputs[0] * 3.0 + 1.5  # a mean and scale away from 0/1, so the statistics matter
    assert_matches_jax(norm, model, inputs, rtol=1e-4, atol=1e-5)


def test_linen_layer_norm_becomes_layer_normalization():
    # Linen gives the statistics their axis back with broadcast_in_dim (an Unsqueeze), NNX with a reshape
    import functools

    import flax.linen as nn

    norm = nn.LayerNorm(epsilon=1e-5)
    variables = norm.init(jax.random.key(0), jnp.zeros((1, 4, 16)))
    rng = np.random.default_rng(5)
    variables = jax.tree_util.tree_map(lambda v: rng.standard_normal(v.shape).astype(np.float32), variables)
    fn = functools.partial(norm.apply, variables)
    model = wb.to_onnx(fn, [("B", 4, 16)])
    assert_graph_quality(model)
    assert [n.op_type for n in model.graph.node] == ["LayerNormalization"]
    x = concrete_inputs([("B", 4, 16)])[0] * 3.0 + 1.5
    assert_matches_jax(fn, model, [x], rtol=1e-4, atol=1e-5)


def test_variance_guard_of_vmap_leaves_no_where():
    # jnp.var guards its division with where(n - ddof > 0, ...): a constant all-true condition that
    # vmap keeps as a Where with the other branch broadcast (Shape -> Concat -> Expand); it is dropped
    def per_example_variance(x):
        return jax.vmap(lambda row: jnp.var(row, keepdims=True))(x)

    model = wb.to_onnx(per_example_variance, [("B", 16)])
    ops = [n.op_type for n in model.graph.node]
    assert not {"Where", "Expand", "Concat", "Shape"} & set(ops), ops
    assert_matches_jax(per_example_variance, model, concrete_inputs([("B", 16)]), rtol=1e-5, atol=1e-6)


def _layer_norm_two_axes(x):
    # the fast-variance form over the two trailing axes, without scale and bias
    mean = jnp.mean(x, axis=(1, 2))
    var = jnp.maximum(jnp.mean(jnp.square(x), axis=(1, 2)) - jnp.square(mean), 0.0)
    return (x - mean.reshape(-1, 1, 1)) * jax.lax.rsqrt(var.reshape(-1, 1, 1) + 1e-5)


def test_layer_norm_over_two_trailing_axes_is_fused():
    model = wb.to_onnx(_layer_norm_two_axes, [("B", 4, 16)])
    assert_graph_quality(model)
    node = next(n for n in model.graph.node if n.op_type == "LayerNormalization")
    assert next(a.i for a in node.attribute if a.name == "axis") == 1
    assert "ReduceSum" not in [n.op_type for n in model.graph.node]
    x = concrete_inputs([("B", 4, 16)])[0] * 2.0 - 1.0
    assert_matches_jax(_layer_norm_two_axes, model, [x], rtol=1e-4, atol=1e-5)


def test_layer_norm_over_leading_axes_is_not_fused():
    # statistics over axis 1 of (B, 8, 4): LayerNormalization only normalizes trailing axes
    def norm_axis1(x):
        mean = jnp.mean(x, axis=1, keepdims=True)
        var = jnp.maximum(jnp.mean(jnp.square(x), axis=1, keepdims=True) - jnp.square(mean), 0.0)
        return (x - mean) * jax.lax.rsqrt(var + 1e-6)

    model = wb.to_onnx(norm_axis1, [("B", 8, 4)])
    assert "LayerNormalization" not in [n.op_type for n in model.graph.node]
    assert_matches_jax(norm_axis1, model, concrete_inputs([("B", 8, 4)]), rtol=1e-4, atol=1e-5)


def test_float64_layer_norm_stays_decomposed_and_exact():
    # LayerNormalization stashes statistics in float32; a float64 export keeps full precision instead
    from flax import nnx

    with jax.enable_x64(True):
        norm = nnx.LayerNorm(16, rngs=nnx.Rngs(0), param_dtype=jnp.float64, dtype=jnp.float64)
        spec = jax.ShapeDtypeStruct((3, 16), jnp.float64)
        model = wb.to_onnx(norm, [spec], enable_double_precision=True)
        assert "LayerNormalization" not in [n.op_type for n in model.graph.node]
        x = np.random.default_rng(0).standard_normal((3, 16))
        assert_matches_jax(norm, model, [x], rtol=1e-12, atol=1e-12)


# the node budget of one pre-LN GPT block with static shapes: 2 LayerNormalization, 8 MatMul (4 projections,
# 2 attention contractions, 2 MLP) + Gelu, 8 Add (6 biases, 2 residuals), Mul (scale) + Where (folded causal
# mask) + Softmax, and the Transpose/Reshape that split and merge the heads around the MatMuls (9 here, where
# head size = sequence length gives the probabilities @ values contraction another operand order; 8 otherwise)
GPT_NODES_PER_BLOCK = 31


def test_gpt_blocks_fuse_to_a_fixed_node_budget():
    from workbench.zoo import nnx_gpt

    def export(layers):
        built = nnx_gpt(layers=layers, d_model=32, heads=4, seq=8, vocab=50, symbolic_seq=False)
        spec = jax.ShapeDtypeStruct((2, 8), jnp.int32)
        return built, wb.to_onnx(built.fn, [spec])

    (_, one), (two_built, two) = export(1), export(2)
    per_block = len(two.graph.node) - len(one.graph.node)
    assert per_block <= GPT_NODES_PER_BLOCK, per_block
    assert len(two.graph.node) <= len(one.graph.node) + per_block
    ops = [n.op_type for n in two.graph.node]
    assert ops.count("LayerNormalization") == 5 and ops.count("Softmax") == 2 and ops.count("Gelu") == 2, ops
    assert not {"ReduceSum", "ReduceMax", "Exp", "Tanh", "Expand", "And", "GreaterOrEqual", "Einsum"} & set(ops), ops
    assert_graph_quality(two)
    tokens = np.random.default_rng(0).integers(0, 50, (2, 8)).astype(np.int32)
    assert_matches_jax(two_built.eval_fn(), two, [tokens], rtol=1e-4, atol=1e-4)


def test_equal_constants_are_stored_once_and_near_equal_ones_kept():
    """Folded constants with the same bytes (a mask per block) share one initializer; one that differs
    only away from its first and last bytes keeps its own."""
    import onnx_ir as ir

    from workbench.jax_to_onnx.passes.folding import _share_equal_constants

    mask = np.tril(np.ones((64, 64), np.float32))
    near = mask.copy()
    near[32, 5] = 7.0
    x = ir.Value(name="x", type=ir.TensorType(ir.DataType.FLOAT), shape=ir.Shape([64, 64]))
    constants = [ir.Value(name=name, const_value=ir.Tensor(array, name=name)) for name, array in
                 (("mask_a", mask), ("mask_b", mask.copy()), ("near", near))]
    nodes = [ir.node("Add", [x, c]) for c in constants]
    graph = ir.Graph([x], [n.outputs[0] for n in nodes], nodes=nodes, initializers=constants)
    _share_equal_constants(graph, frozenset())
    assert [n.inputs[1].name for n in nodes] == ["mask_a", "mask_a", "near"]


def test_a_dropped_conversion_leaves_no_graph_behind_in_the_cached_rules():
    """The rule scheduler keeps its rules for the next conversion; onnxscript's matchers inside them must
    not keep the last graph (and the weights the conversion made, folded kernels) alive after it is dropped."""
    import gc
    import weakref

    from workbench.zoo import nnx_resnet

    model = nnx_resnet(channels=8, blocks=1, image=16)
    conversion = wb.convert(model.fn, model.inputs)
    assert conversion.timings  # the fusion and layout rules ran on this graph
    weights = [weakref.ref(value) for value in conversion.ir_model.graph.initializers.values()]
    graph = weakref.ref(conversion.ir_model.graph)
    assert graph() is not None and weights
    del conversion
    gc.collect()
    assert graph() is None
    assert all(weight() is None for weight in weights)


def _conv_batchnorm(kernel: np.ndarray, layout: tuple[str, str, str]):
    """A convolution with a closed-over kernel followed by an inference BatchNorm on closed-over statistics."""
    from jax import lax

    channels = kernel.shape[-1] if layout[1] == "HWIO" else kernel.shape[0]
    rng = np.random.default_rng(1)
    mean, var = rng.standard_normal(channels).astype(np.float32), rng.uniform(0.5, 2, channels).astype(np.float32)
    gamma, beta = rng.standard_normal(channels).astype(np.float32), rng.standard_normal(channels).astype(np.float32)
    axis = (slice(None),) + (None, None) if layout[2] == "NCHW" else (slice(None),)

    def fn(x):
        y = lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=layout)
        return (y - mean[axis]) / jnp.sqrt(var[axis] + 1e-5) * gamma[axis] + beta[axis]

    return fn


@pytest.mark.parametrize(
    ("layout", "kernel_shape", "image"),
    [
        (("NHWC", "HWIO", "NHWC"), (3, 3, 48, 64), (1, 8, 8, 48)),  # laid out OIHW by the export: scaled in place
        (("NHWC", "HWIO", "NHWC"), (3, 3, 256, 160), (1, 6, 6, 256)),  # above the blocked transpose's threshold
        (("NCHW", "OIHW", "NCHW"), (64, 48, 3, 3), (1, 48, 8, 8)),  # already OIHW: the caller's array, copied
    ],
)
def test_batchnorm_folded_into_a_closed_over_kernel_leaves_the_callers_arrays_alone(layout, kernel_shape, image):
    """The folded kernel is the caller's kernel scaled per output channel; the caller's array is never
    written (only a copy the export made itself is scaled in place), and converting again gives the same bytes."""
    kernel = np.random.default_rng(0).standard_normal(kernel_shape).astype(np.float32)
    before = kernel.copy()
    fn = _conv_batchnorm(kernel, layout)
    first = wb.convert(fn, [jax.ShapeDtypeStruct(image, np.float32)])
    assert [node.op_type for node in first.model.graph.node] == (
        ["Transpose", "Conv", "Transpose"] if layout[0] == "NHWC" else ["Conv"]
    )
    np.testing.assert_array_equal(kernel, before)
    x = np.random.default_rng(2).standard_normal(image).astype(np.float32)
    assert_matches_jax(fn, first.model, [x], rtol=1e-4, atol=1e-4)
    second = wb.convert(fn, [jax.ShapeDtypeStruct(image, np.float32)])
    assert second.model.SerializeToString() == first.model.SerializeToString()
    np.testing.assert_array_equal(kernel, before)


def test_nnx_conv_batchnorm_keeps_the_modules_kernel():
    """A named kernel (an NNX parameter) laid out and scaled by the export: the module's array is unchanged."""
    from flax import nnx

    class Block(nnx.Module):
        def __init__(self, rngs: nnx.Rngs) -> None:
            self.conv = nnx.Conv(16, 32, (3, 3), use_bias=False, rngs=rngs)
            self.bn = nnx.BatchNorm(32, rngs=rngs)

        def __call__(self, x):
            return self.bn(self.conv(x))

    block = Block(nnx.Rngs(0))
    block.bn.mean[...] = jnp.linspace(-1, 1, 32)
    block.bn.var[...] = jnp.linspace(0.5, 2, 32)
    before = np.array(block.conv.kernel[...])
    model = wb.to_onnx(block, [jax.ShapeDtypeStruct((1, 8, 8, 16), np.float32)])
    assert [node.op_type for node in model.graph.node] == ["Transpose", "Conv", "Transpose"]
    np.testing.assert_array_equal(np.asarray(block.conv.kernel[...]), before)
    block.eval()
    x = np.random.default_rng(0).standard_normal((1, 8, 8, 16)).astype(np.float32)
    assert_matches_jax(block, model, [x], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("imports", [{"": 21}, {"": 21, "com.example": 1}], ids=["default_only", "unused_domain"])
def test_unused_opset_imports_are_dropped_and_the_default_domain_kept(imports):
    """The pipeline runs onnx-ir's unused-function and unused-opset passes only when there is something they could
    remove: an import of a domain no node uses goes, the default domain stays, and outputs are unchanged."""
    import onnx_ir as ir
    import onnxruntime as ort

    from workbench.jax_to_onnx.passes import run_passes

    x = ir.Value(name="x", type=ir.TensorType(ir.DataType.FLOAT), shape=ir.Shape([2, 3]))
    node = ir.Node("", "Add", [x, x], outputs=[ir.Value(name="y")])
    graph = ir.Graph([x], node.outputs, nodes=[node], opset_imports=dict(imports), name="g")
    model = run_passes(ir.Model(graph, ir_version=10))
    assert dict(model.graph.opset_imports) == {"": 21}
    proto = ir.serde.serialize_model(model)
    data = np.arange(6, dtype=np.float32).reshape(2, 3)
    (y,) = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": data})
    np.testing.assert_array_equal(y, data + data)
