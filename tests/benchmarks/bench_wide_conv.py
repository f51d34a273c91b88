"""FCN-ResNet50's wide 3x3 convolutions in their forms under YNNPACK dots only: CPU ms per block.

A script, not a test: it prints a table. FCN-ResNet50 at the vision corpus's 96x96 input runs layer3
and layer4 of its ResNet-50 on a 12x12 map with the 3x3 convolutions dilated 2 and 4, and its head's 3x3
convolution 2048 -> 512 on the same map. Each is timed inside the block the model has (channels-last,
batch 1, weights folded into the jitted function, compiled with
``xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_DOT`` as ``wb.jit_forward`` compiles the model):

- ``l3 d2``: a layer3 bottleneck, 1x1 1024 -> 256, ReLU, 3x3 dilated 2, ReLU, 1x1 256 -> 1024, residual, ReLU;
- ``l4 d4``: a layer4 bottleneck, 2048 -> 512 -> 2048 with the 3x3 dilated 4;
- ``head``: the head's 3x3 2048 -> 512, ReLU, and its 1x1 512 -> 21.

The 3x3 convolution in the forms

- ``xla``: ``lax.conv_general_dilated`` (before: what the generated code ran for the dilated ones);
- ``im2col``: one dot over the gathered windows (``_conv_im2col``; before: the undilated head);
- ``winograd``: Winograd's F(2x2, 3x3) (``_conv_winograd``; dilated: on the interleaved grids);
- ``live_taps``: one dot per tap over the outputs it reads input for (``_conv_live_taps``);

and ``ort``: onnxruntime's session of the same block (NCHW, one thread). The generated code picks
``_conv_wide_form``'s form (workbench/onnx_to_jax/emitters/conv_wide.py). Latency is the median over
interleaved rounds of process CPU time per call, one XLA thread; compile is each form's first call.

    PYTHONPATH=$PWD /work/venv-o2j/bin/python tests/benchmarks/bench_wide_conv.py [--rounds 9] [--calls 5]

Findings: docs/onnx_to_jax_corpus.md, "FCN-ResNet50's dilated convolutions".
"""

from __future__ import annotations

import argparse
import functools
import time

from tests.support.kernel_bench import ort_graph_session, time_interleaved
from tests.support.thread_limits import limit_xla_threads

limit_xla_threads(1)  # before JAX is imported: XLA reads the flags once

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax import lax  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402

from workbench.onnx_to_jax.emitters.conv_wide import _conv_live_taps, _conv_wide_form  # noqa: E402
from workbench.onnx_to_jax.emitters.conv import _conv_im2col, _conv_winograd  # noqa: E402
from workbench.onnx_to_jax.jit_options import YNN_DOTS_ONLY, YNN_FUSION_TYPE  # noqa: E402

SIZE = 12  # FCN-ResNet50's layer3 / layer4 / head map at 96x96


def _padding(d):
    return ((d, d), (d, d))


FORMS = {
    "xla": lambda x, w, d: lax.conv_general_dilated(
        x, w, (1, 1), _padding(d), rhs_dilation=(d, d), dimension_numbers=("NHWC", "HWIO", "NHWC")),
    "im2col": lambda x, w, d: _conv_im2col(x, w, (1, 1), _padding(d)),  # undilated only
    "winograd": lambda x, w, d: _conv_winograd(x, w, _padding(d), (d, d)),
    "live_taps": lambda x, w, d: _conv_live_taps(x, w, _padding(d), (d, d)),
}
# (label, kind, in channels, 3x3 channels, dilation, forms)
CASES = [
    ("l3 d2 (x5)", "block", 1024, 256, 2, ("xla", "winograd", "live_taps")),
    ("l4 d4 (x2)", "block", 2048, 512, 4, ("xla", "winograd", "live_taps")),
    ("head", "head", 2048, 512, 1, ("xla", "im2col", "winograd", "live_taps")),
]


def _block(form, x, ws, d):
    w1, b1, w2, b2, w3, b3 = ws
    y = jax.nn.relu(jnp.einsum("nhwc,co->nhwo", x, w1) + b1)
    y = jax.nn.relu(FORMS[form](y, w2, d) + b2)
    return jax.nn.relu(jnp.einsum("nhwc,co->nhwo", y, w3) + b3 + x)


def _head(form, x, ws, d):
    w1, b1, w2, b2 = ws
    y = jax.nn.relu(FORMS[form](x, w1, d) + b1)
    return jnp.einsum("nhwc,co->nhwo", y, w2) + b2


def _ort_session(kind, ws, cin, d):
    """onnxruntime session of the same block (OIHW weights, NCHW input), one thread."""
    inits, nodes = {}, []

    def conv(name, source, w, b, out, pad, dilation):
        inits[name + "_w"] = np.ascontiguousarray(w.transpose(3, 2, 0, 1))
        inits[name + "_b"] = b
        nodes.append(helper.make_node("Conv", [source, name + "_w", name + "_b"], [out], pads=[pad] * 4,
                                      dilations=[dilation] * 2))

    if kind == "block":
        w1, b1, w2, b2, w3, b3 = ws
        conv("c1", "x", w1[None, None], b1, "a1", 0, 1)
        nodes.append(helper.make_node("Relu", ["a1"], ["r1"]))
        conv("c2", "r1", w2, b2, "a2", d, d)
        nodes.append(helper.make_node("Relu", ["a2"], ["r2"]))
        conv("c3", "r2", w3[None, None], b3, "a3", 0, 1)
        nodes += [helper.make_node("Add", ["a3", "x"], ["s"]), helper.make_node("Relu", ["s"], ["y"])]
    else:
        w1, b1, w2, b2 = ws
        conv("c1", "x", w1, b1, "a1", 1, 1)
        nodes.append(helper.make_node("Relu", ["a1"], ["r1"]))
        conv("c2", "r1", w2[None, None], b2, "y", 0, 1)
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, SIZE, SIZE])]
    return ort_graph_session(nodes, inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--calls", type=int, default=5, help="calls per timing")
    args = parser.parse_args()
    options = {YNN_FUSION_TYPE: YNN_DOTS_ONLY}
    rng = np.random.default_rng(0)

    def normal(*shape, scale=1.0):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    calls, compiles, chosen = {}, {}, {}
    for label, kind, cin, mid, d, forms in CASES:
        if kind == "block":
            ws = (normal(cin, mid, scale=cin ** -0.5), normal(mid), normal(3, 3, mid, mid, scale=(9 * mid) ** -0.5),
                  normal(mid), normal(mid, cin, scale=mid ** -0.5), normal(cin))
        else:
            ws = (normal(3, 3, cin, mid, scale=(9 * cin) ** -0.5), normal(mid), normal(mid, 21, scale=mid ** -0.5),
                  normal(21))
        conv_in = mid if kind == "block" else cin  # the 3x3 convolution's input channels
        chosen[label] = _conv_wide_form((SIZE, SIZE), (3, 3), (1, 1), (d, d), _padding(d), 1, conv_in)
        x_np = np.abs(normal(1, SIZE, SIZE, cin))
        session = _ort_session(kind, ws, cin, d)
        x_nchw = np.ascontiguousarray(x_np.transpose(0, 3, 1, 2))
        expected = session.run(None, {"x": x_nchw})[0].transpose(0, 2, 3, 1)
        calls[label, "ort"] = functools.partial(session.run, None, {"x": x_nchw})
        x = jnp.asarray(x_np)
        for form in forms:
            body = _block if kind == "block" else _head
            # weights as jax arrays closed over: folded constants, as wb.jit_forward folds a model's
            fn = jax.jit(functools.partial(body, form, ws=tuple(jnp.asarray(w) for w in ws), d=d),
                         compiler_options=options)
            start = time.process_time()
            got = np.asarray(fn(x))
            compiles[label, form] = time.process_time() - start
            np.testing.assert_allclose(got, expected, rtol=1e-4, atol=2e-4, err_msg=f"{label} {form}")
            calls[label, form] = lambda fn=fn, x=x: fn(x).block_until_ready()
    times = time_interleaved(calls, args.rounds, args.calls)
    print(f"jax {jax.__version__}, load average {times.load_range()}, median of {args.rounds} rounds "
          f"x {args.calls} calls, CPU ms per call (first call's CPU s)")
    columns = ("xla", "im2col", "winograd", "live_taps", "ort")
    print(f"| block | {' | '.join(columns)} | generated form |")
    print("|---|" + "---:|" * len(columns) + "---|")
    for label, *_ in CASES:
        cells = []
        for name in columns:
            if (label, name) not in calls:
                cells.append("-")
                continue
            cell = f"{times.median((label, name)):.2f}"
            cells.append(cell if name == "ort" else f"{cell} ({compiles[label, name]:.2f})")
        print(f"| {label} | {' | '.join(cells)} | {chosen[label]} |")


if __name__ == "__main__":
    main()
