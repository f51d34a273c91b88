"""Channels-last average pools as one XLA kernel (emitters/pooling.py ``_pool_taps``): values and kernel count.

An average pool written as its taps ends in a chain of adds; when a 1x1 convolution (a dot run by
YNNPACK) follows, as in Inception v3's branch_pool, XLA takes those adds into the dot's YNNPACK fusion
and compiles every tap's pad + strided slice as a kernel of its own (8 distinct kernels per pool shape,
48 of Inception's 105 kernel modules). ``_pool_taps`` sums over one more output row and slices it off,
so the sum ends in a slice and stays one kernel. The tests compare with onnxruntime, compare gradients
with ``lax.reduce_window``'s (the pool on ONNX's axes) and count the compiled program's kernels.
"""

from __future__ import annotations

import jax
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import workbench as wb
from tests.benchmarks.hlo_kernels import kernel_table
from tests.support.harness import run_onnx
from workbench.onnx_to_jax.jit_options import supported_options

YNN_DOTS = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_DOT"}


def _branch_pool(channels: int, size: int, pool_attrs: dict, out_channels: int = 16,
                 first: str = "Conv") -> onnx.ModelProto:
    """``first`` (a 1x1 Conv: the pool's input is held channels-last; or Identity) -> AveragePool -> 1x1 Conv
    -> Relu: Inception v3's branch_pool."""
    rng = np.random.default_rng(7)
    w0 = numpy_helper.from_array(rng.standard_normal((channels, channels, 1, 1), dtype=np.float32) * 0.3, "w0")
    w1 = numpy_helper.from_array(rng.standard_normal((out_channels, channels, 1, 1), dtype=np.float32) * 0.2, "w1")
    b1 = numpy_helper.from_array(rng.standard_normal(out_channels, dtype=np.float32) * 0.1, "b1")
    head = helper.make_node("Conv", ["x", "w0"], ["c"]) if first == "Conv" else helper.make_node("Identity", ["x"], ["c"])
    nodes = [head, helper.make_node("AveragePool", ["c"], ["p"], **pool_attrs),
             helper.make_node("Conv", ["p", "w1", "b1"], ["q"]), helper.make_node("Relu", ["q"], ["y"])]
    graph = helper.make_graph(
        nodes, "branch_pool", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w0, w1, b1] if first == "Conv" else [w1, b1],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


INCEPTION = {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 1}
CASES = {
    "inception-3x3-include-pad": (256, 6, INCEPTION),
    "inception-2x2-input": (256, 2, INCEPTION),
    "3x3-exclude-pad": (128, 9, {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}),
    "3x3-stride2-ceil": (24, 10, {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 0, 1, 1], "ceil_mode": 1}),
    "densenet-2x2-stride2": (32, 8, {"kernel_shape": [2, 2], "strides": [2, 2]}),
}


@pytest.mark.parametrize(("channels", "size", "attrs"), CASES.values(), ids=CASES.keys())
def test_average_pool_before_a_dot_matches_onnxruntime_as_one_kernel(channels, size, attrs) -> None:
    model = _branch_pool(channels, size, attrs)
    assert "channels_last=True" in next(line for line in wb.to_jax_source(model).splitlines() if "_pool(" in line)
    x = np.random.default_rng(8).standard_normal((1, channels, size, size)).astype(np.float32)
    forward, params = wb.to_jax(model)
    jitted = wb.jit_forward(forward, params, compiler_options=supported_options(YNN_DOTS))
    np.testing.assert_allclose(np.asarray(jitted(x)), run_onnx(model, [x])[0], rtol=1e-5, atol=1e-5)

    hlo = jitted.lower(x).compile().as_text()
    # XLA's own kernels besides the input's and output's layout transposes (the dots are YNNPACK's): the
    # pool alone, as one fusion. The sum ending in adds made 8 pad + slice kernels at the first and third
    # shapes ({'pad_slice_fusion': 8}) and a separate pad at the second ({'wrapped_pad': 1, ...: 1}).
    kernels = {kind: distinct for kind, distinct, _ in kernel_table(hlo)
               if not kind.startswith(("ynn", "transpose_copy_fusion"))}
    assert sum(kernels.values()) == 1, kernels


@pytest.mark.parametrize("attrs", [INCEPTION, CASES["3x3-stride2-ceil"][2]], ids=["include-pad", "stride2-ceil"])
def test_average_pool_gradient_matches_reduce_window(attrs) -> None:
    """The gradient through the channels-last taps (after a Conv) equals the one through ``lax.reduce_window``
    on ONNX's axes (after an Identity), the Conv being the identity matrix: the extra row adds nothing."""
    channels, size = 8, 7
    grads = []
    for first in ("Conv", "Identity"):
        model = _branch_pool(channels, size, attrs, first=first)
        if first == "Conv":
            eye = np.eye(channels, dtype=np.float32).reshape(channels, channels, 1, 1)
            model.graph.initializer[0].CopyFrom(numpy_helper.from_array(eye, "w0"))
        pool_line = next(line for line in wb.to_jax_source(model).splitlines() if "_pool(" in line)
        assert ("channels_last=True" in pool_line) == (first == "Conv")
        forward, params = wb.to_jax(model)
        x = np.random.default_rng(9).standard_normal((1, channels, size, size)).astype(np.float32)
        grads.append(np.asarray(jax.jit(jax.grad(lambda v, f=forward, p=params: (f(p, v) ** 2).sum()))(x)))
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-5, atol=1e-6)
    assert np.abs(grads[0]).max() > 0
