"""XLA compiler options chosen from the ONNX graph and applied by ``wb.jit_forward`` (jit_options.py).

A model with many weights gets YNNPACK restricted to dots, so XLA compiles its elementwise ops on their
own instead of inside YNNPACK subgraphs; a large CNN without MatMul layers gets YNNPACK running each
convolution alone besides (XLA's own convolution ran ResNet's 7x7 stem at 2.2x YNNPACK's time); a small
one with a 2-D convolution and no MatMul layers gets YNNPACK running each convolution alone and nothing
else; the other small ones keep XLA's defaults. The threshold is lowered here (``MIN_WEIGHTS``) so that
small test graphs stand for both sizes. Every test that runs code
compares with onnxruntime.
"""

from __future__ import annotations

import functools

import jax
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import workbench as wb
from tests.support.harness import run_onnx
from tests.support.saved_jax import load_saved
from workbench.onnx_to_jax import jit_options
from workbench.onnx_to_jax.api import generate_module
from workbench.onnx_to_jax.jit_options import (
    LLVM_LEVEL, LLVM_LEVEL_CHOSEN, YNN_CONVOLUTIONS_ONLY, YNN_DOTS_AND_CONVOLUTIONS, YNN_DOTS_ONLY, YNN_FUSION_TYPE,
    YNN_NONE,
)

LEVEL = {LLVM_LEVEL: LLVM_LEVEL_CHOSEN}  # every model: LLVM at level 2 (compiles faster, runs as fast)
CHOSEN = {YNN_FUSION_TYPE: YNN_DOTS_AND_CONVOLUTIONS, **LEVEL}  # large CNNs without MatMul layers
DOTS = {YNN_FUSION_TYPE: YNN_DOTS_ONLY, **LEVEL}  # other large models (ConvNeXt-T's, transformers' MatMuls)
SEPARABLE = {YNN_FUSION_TYPE: YNN_NONE, **LEVEL}
CONVOLUTIONS = {YNN_FUSION_TYPE: YNN_CONVOLUTIONS_ONLY, **LEVEL}  # small models with a 2-D convolution


def _init(rng: np.random.Generator, name: str, shape: tuple[int, ...], scale: float = 0.1) -> onnx.TensorProto:
    return numpy_helper.from_array((scale * rng.standard_normal(shape)).astype(np.float32), name)


def _model(nodes, inits, x_shape, y_shape) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)], inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    return model


def _residual_cnn(channels: int = 32) -> onnx.ModelProto:
    """A 5x5 stem, two residual blocks of 3x3 convolutions with ReLU, a global pool and a classifier.

    At 16x16 with 32 channels no convolution takes a dot form (``_conv_as_winograd``, ``_conv_as_dot``):
    under YNNPACK dots only all five stay XLA's convolutions, under the large CNNs' choice each is a
    YNNPACK fusion of its own, which the tests look for."""
    rng = np.random.default_rng(0)
    inits = [
        _init(rng, "stem", (channels, 3, 5, 5), 0.3), _init(rng, "fc.w", (10, channels)), _init(rng, "fc.b", (10,)),
    ]  # fmt: skip
    nodes = [
        helper.make_node("Conv", ["x", "stem"], ["h0"], pads=[2, 2, 2, 2]),
        helper.make_node("Relu", ["h0"], ["r0"]),
    ]
    for block in range(2):
        for i in range(2):
            inits.append(_init(rng, f"w{block}{i}", (channels, channels, 3, 3)))
        nodes += [
            helper.make_node(
                "Conv", [f"r{block}", f"w{block}0"], [f"a{block}"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]
            ),
            helper.make_node("Relu", [f"a{block}"], [f"b{block}"]),
            helper.make_node("Conv", [f"b{block}", f"w{block}1"], [f"c{block}"], pads=[1, 1, 1, 1]),
            helper.make_node("Add", [f"c{block}", f"r{block}"], [f"s{block}"]),
            helper.make_node("Relu", [f"s{block}"], [f"r{block + 1}"]),
        ]
    nodes += [
        helper.make_node("GlobalAveragePool", ["r2"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "fc.w", "fc.b"], ["y"], transB=1),
    ]
    return _model(nodes, inits, [1, 3, 16, 16], [1, 10])


def _patch_transformer() -> onnx.ModelProto:
    """A ViT-like graph: one 4x4 stride-4 patch convolution, then MatMuls over the 16 tokens."""
    rng = np.random.default_rng(1)
    inits = [
        _init(rng, "patch", (32, 3, 4, 4), 0.3), _init(rng, "w1", (32, 64)), _init(rng, "w2", (64, 32)),
        numpy_helper.from_array(np.array([1, 32, 16], np.int64), "tokens"),
    ]  # fmt: skip
    nodes = [
        helper.make_node("Conv", ["x", "patch"], ["p"], strides=[4, 4]),
        helper.make_node("Reshape", ["p", "tokens"], ["t"]),
        helper.make_node("Transpose", ["t"], ["tt"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["tt", "w1"], ["m1"]),
        helper.make_node("Relu", ["m1"], ["r1"]),
        helper.make_node("MatMul", ["r1", "w2"], ["y"]),
    ]
    return _model(nodes, inits, [1, 3, 16, 16], [1, 16, 32])


def _mlp() -> onnx.ModelProto:
    """Two MatMuls by constant weights with a ReLU between: no convolution."""
    rng = np.random.default_rng(7)
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["m1"]),
        helper.make_node("Relu", ["m1"], ["r1"]),
        helper.make_node("MatMul", ["r1", "w2"], ["y"]),
    ]
    return _model(nodes, [_init(rng, "w1", (32, 64)), _init(rng, "w2", (64, 16))], [4, 32], [4, 16])


def _separable_cnn(channels: int = 32, middle: tuple[str, int, int] | None = None) -> onnx.ModelProto:
    """A MobileNet-like graph: a 3x3 stride-2 stem on the RGB image, two blocks of a depthwise 3x3 (5x5
    in the second) then a 1x1 expansion and projection with ReLU, a global pool and a classifier.
    ``middle`` = (name, input channels per group, kernel) adds one more convolution of ``channels``
    outputs after the blocks: ``("dense", channels, 3)`` a dense 3x3, ``("grouped", 2, 3)`` a grouped
    3x3 of two channels per group, ``("pointwise", channels, 1)`` one more 1x1."""
    rng = np.random.default_rng(5)
    inits = [_init(rng, "stem", (channels, 3, 3, 3), 0.3), _init(rng, "fc.w", (10, channels)), _init(rng, "fc.b", (10,))]
    nodes = [helper.make_node("Conv", ["x", "stem"], ["h0"], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Relu", ["h0"], ["r0"])]
    for block, k in enumerate((3, 5)):
        inits += [_init(rng, f"dw{block}", (channels, 1, k, k), 0.3), _init(rng, f"dw{block}.b", (channels,)),
                  _init(rng, f"up{block}", (2 * channels, channels, 1, 1), 0.2),
                  _init(rng, f"down{block}", (channels, 2 * channels, 1, 1), 0.2)]
        nodes += [
            helper.make_node("Conv", [f"r{block}", f"dw{block}", f"dw{block}.b"], [f"d{block}"], group=channels,
                             pads=[k // 2] * 4),
            helper.make_node("Relu", [f"d{block}"], [f"e{block}"]),
            helper.make_node("Conv", [f"e{block}", f"up{block}"], [f"u{block}"]),
            helper.make_node("Relu", [f"u{block}"], [f"v{block}"]),
            helper.make_node("Conv", [f"v{block}", f"down{block}"], [f"p{block}"]),
            helper.make_node("Add", [f"p{block}", f"r{block}"], [f"r{block + 1}"]),
        ]
    last = "r2"
    if middle is not None:
        name, per_group, k = middle
        inits.append(_init(rng, name, (channels, per_group, k, k), 0.1))
        nodes.append(helper.make_node("Conv", [last, name], ["m"], group=channels // per_group, pads=[k // 2] * 4))
        last = "m"
    nodes += [
        helper.make_node("GlobalAveragePool", [last], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "fc.w", "fc.b"], ["y"], transB=1),
    ]
    return _model(nodes, inits, [1, 3, 16, 16], [1, 10])


def _image(shape=(1, 3, 16, 16)) -> np.ndarray:
    return np.random.default_rng(2).standard_normal(shape).astype(np.float32)


def _requires_option() -> None:
    if not jit_options.supported_options(CHOSEN):
        pytest.skip(f"this jaxlib's XLA does not know {YNN_FUSION_TYPE}={YNN_DOTS_AND_CONVOLUTIONS} (jit_forward drops it)")


@pytest.fixture(autouse=True)
def _small_threshold(monkeypatch):
    """The residual CNN (38 k weights) counts as large, the patch transformer (5.6 k) as small."""
    monkeypatch.setattr(jit_options, "MIN_WEIGHTS", 20_000)


def test_weights_are_counted_from_float_initializers_and_constants():
    assert jit_options.float_weights(_residual_cnn().graph) == 32 * 3 * 25 + 4 * 32 * 32 * 9 + 10 * 32 + 10
    assert jit_options.float_weights(_patch_transformer().graph) == 32 * 3 * 16 + 2 * 32 * 64  # not the int64 shape
    constant = helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(np.zeros((7, 3), np.float32)))
    graph = helper.make_graph([constant], "g", [], [])
    assert jit_options.float_weights(graph) == 21


def test_the_choice_follows_the_number_of_weights():
    assert jit_options.choose_compiler_options(_residual_cnn().graph) == CHOSEN
    assert jit_options.choose_compiler_options(_residual_cnn(16).graph) == CONVOLUTIONS  # 10.6 k weights
    # a large model whose products are MatMuls by constant weights keeps dots only (ViT-B/16, Swin-T)
    assert jit_options.choose_compiler_options(_with_linear_head(_residual_cnn()).graph) == DOTS


def test_small_patch_transformers_run_convolutions_alone_and_models_without_one_keep_xla_s_defaults():
    """The patch transformer (a convolution, then MatMul layers: ViT-Ti ran 12-16% faster with its
    products in Eigen, YNNPACK running only its convolution) gets each convolution alone; a model without
    convolutions keeps XLA's defaults."""
    assert jit_options.has_convolution(_patch_transformer().graph) and not jit_options.has_convolution(_mlp().graph)
    assert jit_options.linear_layers(_patch_transformer().graph)
    assert jit_options.choose_compiler_options(_patch_transformer().graph) == CONVOLUTIONS
    assert jit_options.choose_compiler_options(_mlp().graph) == LEVEL
    model, x = _mlp(), np.random.default_rng(8).standard_normal((4, 32)).astype(np.float32)
    forward, params = wb.to_jax(model)
    assert jit_options.generated_options(forward) == LEVEL
    np.testing.assert_allclose(np.asarray(wb.jit_forward(forward, params)(x)), run_onnx(model, [x])[0],
                               rtol=1e-4, atol=1e-5)


def test_small_cnn_s_convolutions_each_alone_in_ynnpack(monkeypatch):
    """The residual CNN as a small model (38 k weights; 16 channels are too few for YNNPACK to take):
    YNNPACK runs each of its five convolutions as a library fusion of its own, where XLA's defaults make
    the whole convolution stack one YNNPACK fusion."""
    if not jit_options.supported_options(CONVOLUTIONS):
        pytest.skip(f"this jaxlib's XLA does not know {YNN_FUSION_TYPE}={YNN_CONVOLUTIONS_ONLY}")
    monkeypatch.setattr(jit_options, "MIN_WEIGHTS", 10_000_000)
    model, x = _residual_cnn(), _image()
    forward, params = wb.to_jax(model)
    assert jit_options.generated_options(forward) == CONVOLUTIONS
    fn = wb.jit_forward(forward, params)
    chosen = fn.lower(x).compile().as_text()
    default = jax.jit(lambda v: forward(params, v)).lower(x).compile().as_text()
    assert chosen.count("kind=kCustom") == 5, chosen
    assert default.count("kind=kCustom") == 1, default
    np.testing.assert_allclose(np.asarray(fn(x)), run_onnx(model, [x])[0], rtol=1e-4, atol=1e-5)


def _with_linear_head(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with its Gemm classifier written as MatMul by a constant weight and Add (a Linear layer
    as exporters write it on more than a batch of vectors)."""
    graph = model.graph
    gemm = next(node for node in graph.node if node.op_type == "Gemm")
    index = list(graph.node).index(gemm)
    graph.node.remove(gemm)
    weight = next(init for init in graph.initializer if init.name == gemm.input[1])
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight).T.copy(), weight.name))
    graph.node.insert(index, helper.make_node("MatMul", [gemm.input[0], gemm.input[1]], ["mm"]))
    graph.node.insert(index + 1, helper.make_node("Add", ["mm", gemm.input[2]], [gemm.output[0]]))
    onnx.checker.check_model(model, full_check=True)
    return model


def test_models_with_depthwise_convolutions_run_with_ynnpack_off(monkeypatch):
    """A depthwise convolution anywhere: YNNPACK fuses nothing, above the weight threshold too (ConvMixer
    has 21 M weights), dense convolutions or not (MobileViT, DeepLabv3); only a large model whose
    products are MatMuls of constant weights (ConvNeXt-T) keeps the weight rule."""
    for middle in (None, ("pointwise", 32, 1), ("dense", 32, 3), ("grouped", 2, 3)):
        graph = _separable_cnn(middle=middle).graph
        assert jit_options.has_depthwise(graph), middle
        assert jit_options.choose_compiler_options(graph) == SEPARABLE, middle
    linear = _with_linear_head(_separable_cnn())
    assert jit_options.linear_layers(linear.graph) and not jit_options.linear_layers(_separable_cnn().graph)
    assert jit_options.choose_compiler_options(linear.graph) == SEPARABLE  # small: 10.6 k weights
    monkeypatch.setattr(jit_options, "MIN_WEIGHTS", 1)
    assert jit_options.choose_compiler_options(_separable_cnn().graph) == SEPARABLE
    assert jit_options.choose_compiler_options(linear.graph) == DOTS
    # no depthwise convolution: a plain CNN, a transformer, a grouped convolution of two channels per group
    assert not jit_options.has_depthwise(_residual_cnn().graph)
    assert not jit_options.has_depthwise(_patch_transformer().graph)
    grouped = _model(
        [helper.make_node("Conv", ["x", "w"], ["y"], group=2, pads=[1, 1, 1, 1])],
        [_init(np.random.default_rng(6), "w", (4, 2, 3, 3))], [1, 4, 8, 8], [1, 4, 8, 8],
    )  # fmt: skip
    assert not jit_options.has_depthwise(grouped.graph)


def test_a_convolution_whose_weight_is_computed_is_not_taken_for_depthwise():
    model = _separable_cnn()
    graph = model.graph
    for name in ("dw0", "dw1"):
        dw = next(node for node in graph.node if node.input[1:2] == [name])
        graph.node.insert(0, helper.make_node("Identity", [name], [f"{name}.copy"]))
        dw.input[1] = f"{name}.copy"
    assert not jit_options.has_depthwise(graph)
    assert jit_options.choose_compiler_options(graph) == CONVOLUTIONS  # its stem and 1x1 layers remain


@pytest.mark.parametrize("fold", [True, False], ids=["folded", "args"])
def test_separable_cnn_with_ynnpack_off_matches_onnxruntime(fold):
    """The chosen options reach XLA (no YNNPACK fusion in what it compiled) and the result is onnxruntime's."""
    if not jit_options.supported_options(SEPARABLE):
        pytest.skip(f"this jaxlib's XLA does not know {YNN_FUSION_TYPE}={YNN_NONE!r} (jit_forward drops it)")
    model = _separable_cnn()
    x = _image()
    forward, params = wb.to_jax(model)
    assert jit_options.generated_options(forward) == SEPARABLE
    fn = wb.jit_forward(forward, params) if fold else wb.jit_forward(forward)
    args = (x,) if fold else (params, x)
    assert "kind=kCustom" not in fn.lower(*args).compile().as_text(), "YNNPACK should fuse nothing"
    default = jax.jit(lambda v: forward(params, v)).lower(x).compile().as_text()
    assert "kind=kCustom" in default, "under XLA's defaults YNNPACK fuses this model's kernels"
    np.testing.assert_allclose(np.asarray(fn(*args)), run_onnx(model, [x])[0], rtol=1e-4, atol=1e-5)


def test_generated_module_records_the_options_chosen_from_its_graph():
    cnn = generate_module(_residual_cnn())
    vit = generate_module(_patch_transformer())
    level = f"'{LLVM_LEVEL}': {LLVM_LEVEL_CHOSEN}"
    assert f"XLA_COMPILER_OPTIONS = {{{level}, '{YNN_FUSION_TYPE}': '{YNN_DOTS_AND_CONVOLUTIONS}'}}" in cnn.source
    small = generate_module(_residual_cnn(16))
    for module in (vit, small):
        assert f"XLA_COMPILER_OPTIONS = {{{level}, '{YNN_FUSION_TYPE}': '{YNN_CONVOLUTIONS_ONLY}'}}" in module.source
    mlp = generate_module(_mlp())
    assert f"XLA_COMPILER_OPTIONS = {{{level}}}" in mlp.source
    assert jit_options.generated_options(cnn.forward) == CHOSEN
    assert jit_options.generated_options(vit.forward) == CONVOLUTIONS
    assert jit_options.generated_options(mlp.forward) == LEVEL


@pytest.mark.parametrize("fold", [True, False], ids=["folded", "args"])
def test_jit_forward_matches_onnxruntime(fold):
    for model in (_residual_cnn(), _patch_transformer()):
        x = _image()
        expected = run_onnx(model, [x])[0]
        forward, params = wb.to_jax(model)
        fn = wb.jit_forward(forward, params) if fold else wb.jit_forward(forward)
        got = fn(x) if fold else fn(params, x)
        np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("fold", [True, False], ids=["folded", "args"])
def test_jit_forward_runs_inside_grad_vmap_and_an_outer_jit(fold):
    """JAX refuses ``compiler_options`` on a jit nested in a transformation: the jitted model traces
    without them there. Options are passed explicitly so that they survive the suite's XLA_FLAGS (which
    drop the chosen LLVM level); the values are checked against the same function traced plainly."""
    model = _residual_cnn(8)
    forward, params = wb.to_jax(model)
    options = {LLVM_LEVEL: 1}
    fn = (wb.jit_forward(forward, params, compiler_options=options) if fold
          else functools.partial(wb.jit_forward(forward, compiler_options=options), params))
    plain = functools.partial(forward, params)
    x = _image()
    np.testing.assert_allclose(np.asarray(fn(x)), run_onnx(model, [x])[0], rtol=1e-4, atol=1e-5)
    grad = jax.grad(lambda v: (fn(v) ** 2).sum())(x)
    np.testing.assert_allclose(np.asarray(grad), np.asarray(jax.grad(lambda v: (plain(v) ** 2).sum())(x)), rtol=1e-4, atol=1e-6)
    batch = np.stack([x[0], 0.5 * x[0]])[:, None]
    np.testing.assert_allclose(np.asarray(jax.vmap(fn)(batch)), np.asarray(jax.vmap(plain)(batch)), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(jax.jit(lambda v: fn(v) * 2)(x)), 2 * np.asarray(plain(x)), rtol=1e-4, atol=1e-5)
    if not fold:  # fine-tuning: the gradient with respect to the weights
        tuned = wb.jit_forward(forward, compiler_options=options)
        grads = jax.grad(lambda p: (tuned(p, x) ** 2).sum())(params)
        plain_grads = jax.grad(lambda p: (forward(p, x) ** 2).sum())(params)
        for name in plain_grads:
            np.testing.assert_allclose(np.asarray(grads[name]), np.asarray(plain_grads[name]), rtol=1e-4, atol=1e-6)


def test_the_options_change_what_xla_compiles():
    """With XLA's defaults YNNPACK takes the whole convolution stack into one fusion; with the chosen
    options each of the five convolutions is a YNNPACK fusion of its own; with dots only the
    convolutions are XLA's own ops."""
    _requires_option()
    forward, params = wb.to_jax(_residual_cnn())
    x = _image()
    chosen = wb.jit_forward(forward, params).lower(x).compile().as_text()
    dots = wb.jit_forward(forward, params, compiler_options={YNN_FUSION_TYPE: YNN_DOTS_ONLY}).lower(x).compile().as_text()
    default = jax.jit(lambda v: forward(params, v)).lower(x).compile().as_text()
    assert chosen.count("kind=kCustom") == 5, chosen
    assert "convolution(" not in chosen.split("\nENTRY ", 1)[1], "YNNPACK should run the convolutions"
    assert "convolution(" in dots.split("\nENTRY ", 1)[1], "dots only should leave the convolutions to XLA"
    assert default.count("kind=kCustom") == 1, "XLA's default should fuse them into one YNNPACK fusion"


def test_user_options_are_added_and_win():
    _requires_option()
    forward, params = wb.to_jax(_residual_cnn())
    x = _image()
    expected = run_onnx(_residual_cnn(), [x])[0]
    # YNNPACK fusing dots only: the user's value replaces the chosen one, the convolutions are XLA's
    fn = wb.jit_forward(forward, params, compiler_options={YNN_FUSION_TYPE: YNN_DOTS_ONLY})
    assert "convolution(" in fn.lower(x).compile().as_text().split("\nENTRY ", 1)[1]
    np.testing.assert_allclose(np.asarray(fn(x)), expected, rtol=1e-4, atol=1e-5)



@pytest.mark.parametrize("flags", ["", "--xla_dump_hlo_as_text --xla_backend_optimization_level=0"],
                         ids=["no-flags", "flags-set-a-level"])
def test_llvm_level_defers_to_a_level_in_xla_flags(flags, monkeypatch):
    """Every module asks for LLVM level 2; a level the process's XLA_FLAGS sets (the suite's 0 for its
    speed, or a user's) is left to the flag. The values are onnxruntime's either way."""
    monkeypatch.setenv("XLA_FLAGS", flags)
    seen = []
    real_jit = jax.jit

    def spy(fn, compiler_options=None, **kwargs):
        seen.append(dict(compiler_options or {}))
        return real_jit(fn, compiler_options=compiler_options, **kwargs)

    model, x = _residual_cnn(), _image()
    forward, params = wb.to_jax(model)
    # once before the spy: the first jit_forward in a process asks XLA which options it knows, each
    # through a jit of a one-op program (helpers._xla_accepts, cached), which would be seen[0] here
    wb.jit_forward(forward, params)
    monkeypatch.setattr(jax, "jit", spy)
    got = wb.jit_forward(forward, params)(x)
    np.testing.assert_allclose(np.asarray(got), run_onnx(model, [x])[0], rtol=1e-4, atol=1e-5)
    options = seen[0]  # jit_forward's first jit carries the options (the second serves calls inside transformations)
    if flags:
        assert LLVM_LEVEL not in options, options
    else:
        assert options.get(LLVM_LEVEL) == LLVM_LEVEL_CHOSEN, options
    assert (YNN_FUSION_TYPE in options) == bool(jit_options.supported_options({YNN_FUSION_TYPE: YNN_DOTS_AND_CONVOLUTIONS}))

def test_options_the_running_xla_does_not_know_are_dropped():
    assert jit_options.supported_options({"xla_cpu_no_such_option_in_any_xla": "1"}) == {}
    assert jit_options.supported_options({YNN_FUSION_TYPE: "NOT_A_FUSION_TYPE"}) == {}


def test_jit_forward_refuses_functions_that_are_not_generated_code():
    with pytest.raises(wb.SpecError, match="not the forward function of generated code"):
        wb.jit_forward(lambda params, x: x)
    forward, _ = wb.to_jax(_residual_cnn())
    for not_generated in (jax.jit(forward), functools.partial(forward), np.add):
        with pytest.raises(wb.SpecError, match="not the forward function of generated code"):
            wb.jit_forward(not_generated)


def test_saved_module_keeps_its_options(tmp_path):
    model = _residual_cnn()
    folder = wb.save_jax(model, tmp_path / "cnn")
    forward, params = load_saved(folder)
    assert jit_options.generated_options(forward) == CHOSEN
    x = _image()
    got = wb.jit_forward(forward, params)(x)
    np.testing.assert_allclose(np.asarray(got), run_onnx(model, [x])[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("prepared", [False, True], ids=["onnx-layout", "prepared"])
def test_generated_module_jit_applies_the_options_to_either_forward(prepared):
    _requires_option()
    model = _residual_cnn()
    generated = generate_module(model)
    x = _image()
    fn = generated.jit(prepared=prepared)
    assert fn.lower(x).compile().as_text().count("kind=kCustom") == 5  # each convolution alone (XLA's default: 1)
    np.testing.assert_allclose(np.asarray(fn(x)), run_onnx(model, [x])[0], rtol=1e-4, atol=1e-5)
    as_arguments = generated.jit(fold_weights=False, prepared=prepared)
    weights = generated.prepare(generated.params) if prepared else generated.params
    got = as_arguments(weights, x)
    np.testing.assert_allclose(np.asarray(got), run_onnx(model, [x])[0], rtol=1e-4, atol=1e-5)


def _float64_model() -> onnx.ModelProto:
    """y = x * w + b in float64, with weights whose float32 roundings change the result."""
    x = helper.make_tensor_value_info("x", TensorProto.DOUBLE, [4])
    y = helper.make_tensor_value_info("y", TensorProto.DOUBLE, [4])
    w = numpy_helper.from_array(np.array([1 + 1e-12, 3.0, 1 / 3, 1e-9]), "w")
    b = numpy_helper.from_array(np.array([1e-10, -1.0, 2 / 3, 1.0]), "b")
    nodes = [helper.make_node("Mul", ["x", "w"], ["t"]), helper.make_node("Add", ["t", "b"], ["y"])]
    graph = helper.make_graph(nodes, "g", [x], [y], [w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    return model


@pytest.mark.parametrize("fold", [True, False], ids=["folded", "args"])
def test_jit_forward_keeps_64_bit_models_64_bit(fold):
    """A plain outer jax.jit narrows float64 inputs at its boundary (x64 is off by default), or fails
    against the compiled signature; jit_forward traces and calls 64-bit models with x64 on."""
    assert not jax.config.jax_enable_x64, "this test needs JAX's default 32-bit mode"
    model = _float64_model()
    x = np.array([1.0, 1e-8, 3.0, 1e8])
    expected = run_onnx(model, [x])[0]
    forward, params = wb.to_jax(model)
    fn = wb.jit_forward(forward, params) if fold else wb.jit_forward(forward)
    got = fn(x) if fold else fn(params, x)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(np.asarray(got), expected)  # exact: float32 anywhere would show
    lowered = fn.lower(x) if fold else fn.lower(params, x)
    assert "f64" in lowered.as_text() and "f32" not in lowered.as_text()
    assert not jax.config.jax_enable_x64, "the process-wide setting must be left as it was"


def test_folding_folds_the_prepared_weights():
    """``jit_forward(forward, params)`` folds ``prepare(params)`` into ``forward_prepared``: the same
    program as jitting that pair by hand (the weights already in the kernels' layouts, so XLA does not
    constant-fold their transposes into new literals), with onnxruntime's results."""
    model = _residual_cnn()
    generated = generate_module(model)
    assert generated.forward_prepared is not generated.forward, "the CNN should have weights in kernel layouts"
    forward, params = wb.to_jax(model)
    x = _image()
    by_hand = jax.jit(
        functools.partial(generated.forward_prepared, generated.prepare(generated.params)),
        compiler_options=jit_options.supported_options(jit_options.generated_options(forward)) or None,
    )
    fn = wb.jit_forward(forward, params)
    assert fn.lower(x).as_text() == by_hand.lower(x).as_text()
    unprepared = jax.jit(functools.partial(forward, params)).lower(x).as_text()
    assert "stablehlo.transpose" in unprepared and fn.lower(x).as_text() != unprepared
    np.testing.assert_allclose(np.asarray(fn(x)), run_onnx(model, [x])[0], rtol=1e-4, atol=1e-5)


def test_folding_leaves_a_module_without_weight_layouts_alone():
    model = _model(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        [_init(np.random.default_rng(3), "w", (16, 8))], [4, 16], [4, 8],
    )  # fmt: skip
    forward, params = wb.to_jax(model)
    assert jit_options.prepared_for_folding(forward, params) == (forward, params)
    x = np.random.default_rng(4).standard_normal((4, 16)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(wb.jit_forward(forward, params)(x)), run_onnx(model, [x])[0],
                               rtol=1e-4, atol=1e-5)


def _cnn_then_nonzero() -> onnx.ModelProto:
    """The residual CNN, then the positions of its positive logits: NonZero's output shape depends on the
    values, so forward runs the CNN as a jitted part and NonZero between parts (segments.py)."""
    cnn = _residual_cnn()
    graph = cnn.graph
    graph.node.extend([helper.make_node("Greater", ["y", "zero"], ["positive"]),
                       helper.make_node("NonZero", ["positive"], ["where"])])
    graph.initializer.append(numpy_helper.from_array(np.array(0.0, np.float32), "zero"))
    graph.output.append(helper.make_tensor_value_info("where", TensorProto.INT64, [2, None]))
    onnx.checker.check_model(cnn, full_check=True)
    return cnn


def _segment_entries(folder) -> list[str]:
    """The ENTRY computations of the parts XLA compiled, from its dump of the optimized HLO."""
    dumps = sorted(folder.glob("*jit__segment_run*cpu_after_optimizations.txt"))
    return [path.read_text().split("\nENTRY ", 1)[1] for path in dumps]


@pytest.mark.parametrize("chosen", [True, False], ids=["chosen-options", "xla-defaults"])
def test_jitted_parts_of_value_dependent_models_compile_with_the_chosen_options(chosen, tmp_path):
    """The parts of a model whose shapes depend on values are compiled with the module's
    XLA_COMPILER_OPTIONS, as wb.jit_forward compiles a whole model: XLA's dump of what it compiled
    (an option added to the module's for this test) shows each convolution a YNNPACK fusion of its own,
    where with its defaults YNNPACK fuses them all into one."""
    _requires_option()
    model = _cnn_then_nonzero()
    generated = generate_module(model)
    namespace = generated.forward.__globals__
    assert namespace["VALUE_DEPENDENT_NODES"] and namespace["XLA_COMPILER_OPTIONS"] == CHOSEN
    namespace["XLA_COMPILER_OPTIONS"] = {
        **(CHOSEN if chosen else {}), "xla_dump_to": str(tmp_path), "xla_dump_hlo_as_text": True,
    }
    x = _image()
    got = generated.forward(generated.params, x)
    for want, have in zip(run_onnx(model, [x]), got):
        np.testing.assert_allclose(np.asarray(have), want, rtol=1e-4, atol=1e-5)
    entries = _segment_entries(tmp_path)
    assert len(entries) == 1, "the CNN is one jitted part"
    assert entries[0].count("kind=kCustom") == (5 if chosen else 1), entries[0]
