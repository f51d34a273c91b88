"""Convolution weights laid out for XLA's kernels once, outside jax.jit: ``prepare`` / ``forward_prepared``.

The generated module of a channels-last network (layout.py) reads the weights of its 2-D convolutions
as (kh, kw, I, O); ``prepare(params)`` transposes them from ONNX's (O, I, kh, kw), with numpy for
concrete arrays and with jnp (differentiable) under tracing, and ``forward(params, ...)`` is
``forward_prepared(prepare(params), ...)``. The params the user holds keep ONNX's names and layouts.
Every test compares with onnxruntime, or for gradients and float64 with XLA's NCHW convolution.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import workbench as wb
from tests.onnx_to_jax.test_channels_last import _init, _network
from tests.support.harness import run_onnx
from tests.support.saved_jax import load_saved
from workbench.onnx_to_jax.api import generate_module
from workbench.onnx_to_jax.generator import HELPERS_MARKER

HWIO = (2, 3, 1, 0)


def _layouts(source: str) -> dict[str, tuple[int, ...]]:
    """The generated module's WEIGHT_LAYOUTS, read by running the module's top lines."""
    namespace: dict = {}
    start = source.index("WEIGHT_LAYOUTS = {")
    exec(source[start:source.index("}", start) + 1], namespace)  # noqa: S102 - our own generated literal
    return namespace["WEIGHT_LAYOUTS"]


def _model(nodes, inputs, outputs, inits, opset: int = 17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    return model


def _close(got, want, tol: float = 1e-5) -> None:
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=tol, atol=tol)


def test_prepared_forms_match_onnxruntime_and_params_keep_onnx_layout():
    model = _network()  # a strided-free 3x3 conv, a depthwise conv and a 1x1 conv, all channels-last
    generated = generate_module(model)
    before = {k: v.copy() for k, v in generated.params.items()}
    prepared = generated.prepare(generated.params)
    # the three convolutions' weights HWIO, the classifier's transB weight (K, N)
    assert _layouts(generated.source) == {"w0": HWIO, "dw": HWIO, "pw": HWIO, "fc.w": (1, 0)}
    assert {k: prepared[k].shape for k in ("w0", "dw", "pw", "fc.w")} == {
        "w0": (3, 3, 3, 8), "dw": (3, 3, 1, 8), "pw": (1, 1, 8, 8), "fc.w": (16, 5)}
    np.testing.assert_array_equal(prepared["w0"], np.transpose(before["w0"], (2, 3, 1, 0)))
    assert all(type(prepared[k]) is np.ndarray for k in ("w0", "dw", "pw", "fc.w"))  # numpy in, numpy out
    for name, value in generated.params.items():  # the user's params: untouched, ONNX's layouts
        np.testing.assert_array_equal(value, before[name])
        assert prepared[name] is value or name in ("w0", "dw", "pw", "fc.w")
    x = np.random.default_rng(1).standard_normal((2, 3, 12, 12)).astype(np.float32)
    expected = run_onnx(model, [x])
    runs = {
        "eager": generated.forward_prepared(prepared, x),
        "args": jax.jit(generated.forward_prepared)(prepared, x),
        "folded": jax.jit(functools.partial(generated.forward_prepared, prepared))(x),
        "forward, args": jax.jit(generated.forward)(generated.params, x),
    }
    forward, device_params = wb.to_jax(model, prepared=True)
    assert device_params["dw"].shape == (3, 3, 1, 8) and isinstance(device_params["dw"], jax.Array)
    assert device_params["fc.w"].shape == (16, 5)
    runs["to_jax(prepared=True)"] = jax.jit(forward)(device_params, x)
    for label, got in runs.items():
        for g, e in zip(got, expected):
            assert g.shape == e.shape, label
            _close(g, e)


def test_prepare_of_jax_arrays_gives_jax_arrays():
    generated = generate_module(_network())
    device = {k: jax.device_put(v) for k, v in generated.params.items()}
    prepared = generated.prepare(device)
    assert isinstance(prepared["w0"], jax.Array) and prepared["w0"].shape == (3, 3, 3, 8)
    np.testing.assert_array_equal(np.asarray(prepared["w0"]), np.transpose(generated.params["w0"], (2, 3, 1, 0)))
    assert device["w0"].shape == (8, 3, 3, 3)


def _reference_net(p, x):
    """The network of _conv_stack with XLA's NCHW convolutions on ONNX-layout weights."""
    dn = ("NCHW", "OIHW", "NCHW")
    y = jax.lax.conv_general_dilated(x, p["w"], (2, 2), [(1, 1), (1, 1)], dimension_numbers=dn)
    y = jax.nn.relu(y + p["b"][None, :, None, None])
    y = jax.lax.conv_general_dilated(y, p["dw"], (1, 1), [(2, 2), (2, 2)], dimension_numbers=dn,
                                     feature_group_count=4)
    y = jax.lax.conv_general_dilated(y, p["pw"], (1, 1), [(0, 0), (0, 0)], dimension_numbers=dn)
    return y


def _conv_stack() -> onnx.ModelProto:
    """A strided 3x3 conv with bias, a 5x5 depthwise conv (the tap loop), a 1x1 conv."""
    rng = np.random.default_rng(2)
    inits = [_init(rng, "w", (4, 3, 3, 3)), _init(rng, "b", (4,)), _init(rng, "dw", (4, 1, 5, 5)),
             _init(rng, "pw", (6, 4, 1, 1))]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Conv", ["r", "dw"], ["d"], group=4, pads=[2, 2, 2, 2]),
             helper.make_node("Conv", ["d", "pw"], ["y"])]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 9, 9])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)


def test_gradients_through_prepare_are_in_onnx_layout_and_match_xla():
    model = _conv_stack()
    generated = generate_module(model)
    assert _layouts(generated.source) == {"w": HWIO, "dw": HWIO, "pw": HWIO}
    x = np.random.default_rng(3).standard_normal((1, 3, 9, 9)).astype(np.float32)
    _close(generated.forward(generated.params, x), run_onnx(model, [x])[0])
    params = {k: jnp.asarray(v) for k, v in generated.params.items()}

    def loss_prepared(p):
        return (generated.forward_prepared(generated.prepare(p), x) ** 2).sum()

    want = jax.grad(lambda p: (_reference_net(p, x) ** 2).sum())(params)
    for got in (jax.jit(jax.grad(loss_prepared))(params), jax.grad(loss_prepared)(params),
                jax.jit(jax.grad(lambda p: (generated.forward(p, x) ** 2).sum()))(params)):
        for name in ("w", "b", "dw", "pw"):
            assert got[name].shape == generated.params[name].shape  # ONNX's (O, I, kh, kw)
            _close(got[name], want[name], 1e-4)


def test_weights_read_elsewhere_keep_the_onnx_layout():
    """A weight two convolutions share, one a Mul also reads and the weight of a 1-D convolution stay
    OIHW; only the weight one channels-last convolution alone reads is prepared."""
    rng = np.random.default_rng(4)
    inits = [_init(rng, "shared", (3, 3, 3, 3)), _init(rng, "also_mul", (3, 3, 1, 1)), _init(rng, "own", (3, 3, 3, 3)),
             _init(rng, "w1d", (2, 3, 3))]
    nodes = [
        helper.make_node("Conv", ["x", "shared"], ["a"], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["a", "shared"], ["b"], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["b", "also_mul"], ["c"]),
        helper.make_node("Mul", ["also_mul", "also_mul"], ["sq"]),
        helper.make_node("Conv", ["c", "own"], ["d"], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["s", "w1d"], ["e"]),
    ]
    model = _model(
        nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 6, 6]),
                helper.make_tensor_value_info("s", TensorProto.FLOAT, [1, 3, 7])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("d", "sq", "e")], inits)
    generated = generate_module(model)
    assert _layouts(generated.source) == {"own": HWIO}
    prepared = generated.prepare(generated.params)
    assert prepared["shared"].shape == (3, 3, 3, 3) and prepared["also_mul"].shape == (3, 3, 1, 1)
    np.testing.assert_array_equal(prepared["shared"], generated.params["shared"])
    x = np.random.default_rng(5).standard_normal((1, 3, 6, 6)).astype(np.float32)
    s = np.random.default_rng(6).standard_normal((1, 3, 7)).astype(np.float32)
    expected = run_onnx(model, [x, s])
    for got in (jax.jit(generated.forward_prepared)(prepared, x, s), generated.forward(generated.params, x, s)):
        for g, e in zip(got, expected):
            _close(g, e)


def test_generated_source_reads_top_down_and_models_without_such_weights_are_unchanged():
    source = generate_module(_conv_stack()).source
    code = source.split(HELPERS_MARKER)[0]
    # forward first (what the user calls), then prepare, then the body that reads HWIO weights
    assert code.index("def forward(params, x):") < code.index("def prepare(params):") < code.index(
        "def forward_prepared(params, x):")
    assert "    return forward_prepared(prepare(params), x)\n" in code
    assert "    return _prepare_params(params, WEIGHT_LAYOUTS)\n" in code
    assert "WEIGHT_LAYOUTS = {\n    'w': (2, 3, 1, 0),\n    'dw': (2, 3, 1, 0),\n" in code  # one weight a line
    assert code.count("hwio=True") == 3 and "jnp.transpose(params" not in code
    matmul = _model([helper.make_node("MatMul", ["x", "w"], ["y"])],
                    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
                    [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                    [_init(np.random.default_rng(7), "w", (4, 3))])
    generated = generate_module(matmul)
    assert "prepare" not in generated.source and "WEIGHT_LAYOUTS" not in generated.source
    assert generated.forward_prepared is generated.forward
    copied = generated.prepare(generated.params)
    assert copied == generated.params and copied is not generated.params


def test_gemm_transb_weights_are_prepared_where_the_plain_product_reads_them():
    """Gemm(transB=1) with alpha = beta = 1 reads a prepared (K, N) weight; a Gemm with alpha != 1 (the
    _gemm helper) and a weight two Gemms share keep the ONNX layout; gradients come back as (N, K)."""
    rng = np.random.default_rng(11)
    inits = [_init(rng, "fc1", (6, 4)), _init(rng, "b1", (6,)), _init(rng, "fc2", (3, 6)), _init(rng, "shared", (6, 6))]
    nodes = [helper.make_node("Gemm", ["x", "fc1", "b1"], ["h"], transB=1),
             helper.make_node("Gemm", ["h", "shared"], ["h2"], transB=1),
             helper.make_node("Gemm", ["h2", "shared"], ["h3"], transB=1),
             helper.make_node("Gemm", ["h3", "fc2"], ["y"], transB=1, alpha=0.5)]
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    generated = generate_module(model)
    assert _layouts(generated.source) == {"fc1": (1, 0)}
    assert "jnp.matmul(x, params['fc1']) + params['b1']" in generated.source
    x = rng.standard_normal((2, 4)).astype(np.float32)
    prepared = generated.prepare(generated.params)
    assert prepared["fc1"].shape == (4, 6) and prepared["shared"].shape == (6, 6)
    expected = run_onnx(model, [x])[0]
    _close(jax.jit(generated.forward_prepared)(prepared, x), expected)
    _close(jax.jit(functools.partial(generated.forward_prepared, prepared))(x), expected)

    def reference(p):
        h = x @ p["fc1"].T + p["b1"]
        h = h @ p["shared"].T @ p["shared"].T
        return ((0.5 * h @ p["fc2"].T) ** 2).sum()

    params = {k: jnp.asarray(v) for k, v in generated.params.items()}
    got = jax.jit(jax.grad(lambda p: (generated.forward_prepared(generated.prepare(p), x) ** 2).sum()))(params)
    want = jax.grad(reference)(params)
    for name in ("fc1", "b1", "fc2", "shared"):
        assert got[name].shape == generated.params[name].shape
        _close(got[name], want[name], 1e-4)


def test_float64_network_prepares_under_x64():
    rng = np.random.default_rng(8)
    w = rng.standard_normal((4, 2, 3, 3))
    model = _model([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])],
                   [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [1, 2, 5, 5])],
                   [helper.make_tensor_value_info("y", TensorProto.DOUBLE, None)], [numpy_helper.from_array(w, "w")])
    generated = generate_module(model)
    assert _layouts(generated.source) == {"w": HWIO} and "jax.enable_x64(True)" in generated.source
    x = rng.standard_normal((1, 2, 5, 5))
    with jax.enable_x64(True):
        want = jax.lax.conv_general_dilated(x, w, (1, 1), [(1, 1), (1, 1)])
    prepared = generated.prepare(generated.params)
    runs = [generated.forward(generated.params, x), generated.forward_prepared(prepared, x)]
    with jax.enable_x64(True):  # an outer jit converts its float64 arguments before the module's own switch
        runs.append(jax.jit(generated.forward_prepared)(prepared, x))
    for got in runs:
        assert got.dtype == np.float64
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-12, atol=1e-12)


def test_to_jax_keeps_float64_weights_with_x64_off():
    """to_jax's device_put ran outside the module's x64 switch and narrowed the weights to float32:
    the convolution then refused float64 input against a float32 kernel (a raw JAX TypeError)."""
    rng = np.random.default_rng(11)
    w = rng.standard_normal((3, 2, 3, 3))
    model = _model([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])],
                   [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [1, 2, 6, 6])],
                   [helper.make_tensor_value_info("y", TensorProto.DOUBLE, None)], [numpy_helper.from_array(w, "w")])
    x = rng.standard_normal((1, 2, 6, 6))
    with jax.enable_x64(True):  # onnxruntime has no float64 Conv
        expected = np.asarray(jax.lax.conv_general_dilated(x, w, (1, 1), [(1, 1), (1, 1)]))
    assert not jax.config.jax_enable_x64
    for prepared in (False, True):
        forward, params = wb.to_jax(model, prepared=prepared)
        assert params["w"].dtype == np.float64
        got = forward(params, x)
        assert got.dtype == np.float64
        np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-12, atol=1e-12)


def test_value_dependent_parts_read_prepared_weights():
    """A NonZero splits the model into jitted parts (segments.py); the parts get the prepared params."""
    rng = np.random.default_rng(9)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Greater", ["c1", "zero"], ["mask"]),
             helper.make_node("NonZero", ["mask"], ["nz"]),
             helper.make_node("Conv", ["c1", "w2"], ["c2"], pads=[1, 1, 1, 1])]
    inits = [_init(rng, "w1", (2, 2, 3, 3)), _init(rng, "w2", (2, 2, 3, 3)),
             numpy_helper.from_array(np.array(0.0, np.float32), "zero")]
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
                   [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("c2",)]
                   + [helper.make_tensor_value_info("nz", TensorProto.INT64, None)], inits)
    generated = generate_module(model)
    assert generated.value_dependent_nodes and _layouts(generated.source) == {"w1": HWIO, "w2": HWIO}
    x = rng.standard_normal((1, 2, 4, 4)).astype(np.float32)
    expected = run_onnx(model, [x])
    for got in (generated.forward(generated.params, x),
                generated.forward_prepared(generated.prepare(generated.params), x)):
        for g, e in zip(got, expected):
            _close(g, e)


def test_saved_module_prepares_its_weights(tmp_path):
    model = _conv_stack()
    out = wb.save_jax(model, tmp_path / "saved")
    forward, params = load_saved(out)
    assert params["w"].shape == (4, 3, 3, 3)  # saved in ONNX's layout, under ONNX's names
    x = np.random.default_rng(10).standard_normal((1, 3, 9, 9)).astype(np.float32)
    _close(jax.jit(forward)(params, x), run_onnx(model, [x])[0])
    prepare = forward.__globals__["prepare"]
    _close(jax.jit(forward.__globals__["forward_prepared"])(prepare(params), x), run_onnx(model, [x])[0])
