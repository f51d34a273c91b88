"""Dense convolution forms for XLA CPU under YNNPACK dots only: latency per layer shape of ResNet-18/50.

A script, not a test: it prints a table. Each 3x3 convolution shape of torchvision's ResNet-18 and
ResNet-50 at the vision corpus's 96x96 input (channels-last, batch 1, bias and ReLU after it, weights
folded into the jitted function as the fastest corpus form has them), compiled with
``xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_DOT`` (what ``wb.jit_forward`` gives
models of 10 M weights and more, workbench/onnx_to_jax/jit_options.py) and written as

- ``xla``: ``lax.conv_general_dilated`` (NHWC, HWIO), which XLA CPU runs with its own kernel;
- ``taps``: the sum over the nine taps of one shifted, strided window times that tap's (I, O) matrix
  (nine YNNPACK dots);
- ``concat``: the nine windows (strided slices) concatenated along the channels times the (9*I, O)
  weight (one YNNPACK dot);
- ``im2col``: the same columns gathered in one op (``_conv_im2col``, what the generated code runs
  where ``_conv_as_dot`` says; XLA compiles each of ``concat``'s slices as a kernel of its own);
- ``winograd``: Winograd's F(2x2, 3x3) (``_conv_winograd``, what the generated code runs where
  ``_conv_as_winograd`` says; stride-1 layers only);

and, for reference, ``ort``: onnxruntime's Conv + Relu of the same layer (NCHW, weights as initializers,
one thread), the kernel the whole-network ratio is measured against.

Latency is the median over interleaved rounds of process CPU time per call (one XLA thread; the
machine is shared, so CPU time rather than wall time), compile is not included. Every form is
checked against ``xla`` first. The whole-network comparison that chose the rule is in
docs/onnx_to_jax_corpus.md, "Small convolutions as dots": per layer, the nine dots are as fast as
the one, but in ResNet-50 they were slower as a whole.

    PYTHONPATH=$PWD python tests/benchmarks/bench_conv_forms.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import functools

from tests.support.kernel_bench import ort_graph_session, time_interleaved
from tests.support.thread_limits import limit_xla_threads

# one XLA thread, as the corpus benchmark times (before JAX is imported: XLA reads the flags once)
limit_xla_threads(1)

import jax  # noqa: E402 - after XLA_FLAGS: XLA reads them once
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax import lax  # noqa: E402

import onnxruntime as ort  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402

from workbench.onnx_to_jax.emitters.conv import _conv_im2col, _conv_winograd  # noqa: E402
from workbench.onnx_to_jax.jit_options import YNN_DOTS_ONLY, YNN_FUSION_TYPE  # noqa: E402

# (label, input map, in channels, out channels, stride); in ResNet-50 the stride-2 3x3 layers keep
# their channels (torchvision's v1.5 puts the stride on the 3x3), ResNet-18's double them
SHAPES = [
    ("64 @24 (r18 x4, r50 x3)", 24, 64, 64, 1),
    ("64->128 s2 @24 (r18)", 24, 64, 128, 2),
    ("128 s2 @24 (r50)", 24, 128, 128, 2),
    ("128 @12 (r18 x3, r50 x3)", 12, 128, 128, 1),
    ("128->256 s2 @12 (r18)", 12, 128, 256, 2),
    ("256 s2 @12 (r50)", 12, 256, 256, 2),
    ("256 @6 (r18 x3, r50 x5)", 6, 256, 256, 1),
    ("256->512 s2 @6 (r18)", 6, 256, 512, 2),
    ("512 s2 @6 (r50)", 6, 512, 512, 2),
    ("512 @3 (r18 x3, r50 x2)", 3, 512, 512, 1),
]
PADDING = ((1, 1), (1, 1))


def xla(x, w, stride):
    return lax.conv_general_dilated(x, w, (stride, stride), PADDING, dimension_numbers=("NHWC", "HWIO", "NHWC"))


def taps(x, w, stride):
    x = jnp.pad(x, ((0, 0),) + PADDING + ((0, 0),))
    out = (x.shape[1] - 3) // stride + 1
    span = (out - 1) * stride + 1
    y = None
    for i, j in np.ndindex(3, 3):
        window = x[:, i : i + span : stride, j : j + span : stride, :]
        term = jnp.einsum("nhwc,co->nhwo", window, w[i, j])
        y = term if y is None else y + term
    return y


def concat(x, w, stride):
    x = jnp.pad(x, ((0, 0),) + PADDING + ((0, 0),))
    out = (x.shape[1] - 3) // stride + 1
    span = (out - 1) * stride + 1
    windows = [x[:, i : i + span : stride, j : j + span : stride, :] for i, j in np.ndindex(3, 3)]
    return jnp.einsum("nhwc,co->nhwo", jnp.concatenate(windows, axis=-1), jnp.reshape(w, (-1, w.shape[-1])))


def im2col(x, w, stride):
    return _conv_im2col(x, w, (stride, stride), PADDING)


def winograd(x, w, stride):
    return _conv_winograd(x, w, PADDING)  # stride 1 only: main() skips the strided layers


FORMS = {"xla": xla, "taps": taps, "concat": concat, "im2col": im2col, "winograd": winograd}
COLUMNS = (*FORMS, "ort")


def _ort_layer(w: np.ndarray, b: np.ndarray, size: int, stride: int) -> ort.InferenceSession:
    """onnxruntime session of Conv (OIHW weight, NCHW input) + Relu, one thread."""
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], strides=[stride, stride]),
        helper.make_node("Relu", ["c"], ["y"]),
    ]
    return ort_graph_session(
        nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, w.shape[2], size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        {"w": np.ascontiguousarray(w.transpose(3, 2, 0, 1)), "b": b},
    )


def _layer(form, x, w, b, stride):
    return jax.nn.relu(form(x, w, stride) + b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=10, help="calls per timing")
    args = parser.parse_args()
    options = {YNN_FUSION_TYPE: YNN_DOTS_ONLY}
    rng = np.random.default_rng(0)
    compiled = {}
    for label, size, cin, cout, stride in SHAPES:
        x_np = rng.standard_normal((1, size, size, cin)).astype(np.float32)
        w_np = (rng.standard_normal((3, 3, cin, cout)) / np.sqrt(9 * cin)).astype(np.float32)
        b_np = rng.standard_normal(cout).astype(np.float32)
        x, w, b = jnp.asarray(x_np), jnp.asarray(w_np), jnp.asarray(b_np)
        reference = None
        for name, form in FORMS.items():
            if name == "winograd" and stride != 1:
                continue  # F(2x2, 3x3) is a stride-1 form
            fn = jax.jit(functools.partial(_layer, form, w=w, b=b, stride=stride), compiler_options=options)
            y = np.asarray(fn(x))
            if reference is None:
                reference = y
            np.testing.assert_allclose(y, reference, rtol=1e-4, atol=1e-4, err_msg=f"{label} {name}")
            compiled[label, name] = lambda fn=fn, x=x: fn(x).block_until_ready()
        session, x_nchw = _ort_layer(w_np, b_np, size, stride), np.ascontiguousarray(x_np.transpose(0, 3, 1, 2))
        y = session.run(None, {"x": x_nchw})[0]
        np.testing.assert_allclose(y.transpose(0, 2, 3, 1), reference, rtol=1e-4, atol=1e-4, err_msg=f"{label} ort")
        compiled[label, "ort"] = lambda session=session, x=x_nchw: session.run(None, {"x": x})
    times = time_interleaved(compiled, args.rounds, args.calls)
    print(f"jax {jax.__version__}, load average {times.load_range()}, median of {args.rounds} rounds, CPU ms per call")
    print(f"| 3x3 layer | out map | MMAC | {' | '.join(COLUMNS)} | xla GMAC/s | fastest form | fastest / ort |")
    print("|---|---:|---:|" + "---:|" * len(COLUMNS) + "---:|---|---:|")
    for label, size, cin, cout, stride in SHAPES:
        medians = {name: times.median((label, name)) for name in COLUMNS if (label, name) in compiled}
        forms = {name: value for name, value in medians.items() if name != "ort"}
        fastest = min(forms, key=forms.get)
        out = -(-size // stride)
        macs = out * out * cin * cout * 9 / 1e6
        cells = " | ".join(f"{medians[name]:.3f}" if name in medians else "-" for name in COLUMNS)
        print(f"| {label} | {out}x{out} | {macs:.0f} | {cells} | {macs / medians['xla']:.0f} | "
              f"{fastest} | {forms[fastest] / medians['ort']:.2f} |")


if __name__ == "__main__":
    main()
