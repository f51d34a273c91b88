"""Matrix products of the vision corpus at batch 1: XLA CPU's dot kernels against onnxruntime's MatMul.

A script, not a test: it prints a table. The jitted latency of the corpus's dense CNNs and ViTs is
mostly matrix products once their convolutions run as dots (docs/onnx_to_jax_corpus.md, "What bounds
the jitted latency"), so the ratio to onnxruntime is bounded by how fast each runtime multiplies the
same matrices. This times the products those models run, one (M, K) activation times a constant
(K, N) weight (folded into the jitted function, as the fastest corpus forms have it), with

- ``ynn``: XLA with YNNPACK fusing dots (``xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_DOT``,
  what ``wb.jit_forward`` gives models of 10 M weights and more);
- ``xla``: XLA with YNNPACK fusing nothing (XLA's own dot, Eigen's contraction);
- ``ort``: an onnxruntime session of one MatMul with the weight as an initializer (MLAS, weights packed
  once at session creation);
- ``numpy``: ``a @ w`` (the BLAS numpy was built with), a reference for the machine's bandwidth;

one thread each, calls interleaved in rounds, median process CPU time per call. The shapes: the
im2col products of ResNet-18's 3x3 layers at the corpus's 96x96 input (positions x 9*in by out
channels), ViT-B/16's at 64x64 (17 tokens: QKV, projection, MLP in and out), and the classifier GEMV.

    PYTHONPATH=$PWD python tests/benchmarks/bench_dot_kernels.py [--rounds 9]
"""

from __future__ import annotations

import argparse
import os

from tests.support.kernel_bench import ort_graph_session, time_interleaved
from tests.support.thread_limits import limit_xla_threads

# one thread for XLA and BLAS, as the corpus benchmark times (before JAX and numpy are imported)
limit_xla_threads(1)
for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import jax  # noqa: E402 - after XLA_FLAGS: XLA reads them once
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402

from workbench.onnx_to_jax.jit_options import YNN_DOTS_ONLY, YNN_FUSION_TYPE  # noqa: E402

# (label, M, K, N)
SHAPES = [
    ("r18 3x3 64 @24 (im2col)", 576, 576, 64),
    ("r18 3x3 128 @12 (im2col)", 144, 1152, 128),
    ("r18 3x3 256 @6 (im2col)", 36, 2304, 256),
    ("r18 3x3 512 @3 (im2col)", 9, 4608, 512),
    ("vit_b_16 QKV", 17, 768, 2304),
    ("vit_b_16 attention out", 17, 768, 768),
    ("vit_b_16 MLP in", 17, 768, 3072),
    ("vit_b_16 MLP out", 17, 3072, 768),
    ("classifier GEMV", 1, 512, 1000),
]
KERNELS = ("ynn", "xla", "ort", "numpy")


def _ort_matmul(w: np.ndarray, m: int) -> ort.InferenceSession:
    return ort_graph_session(
        [helper.make_node("MatMul", ["a", "w"], ["y"])],
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [m, w.shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, w.shape[1]])],
        {"w": w},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--calls", type=int, default=10, help="calls per timing")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    calls = {}
    for label, m, k, n in SHAPES:
        a = rng.standard_normal((m, k), np.float32)
        w = (rng.standard_normal((k, n)) / np.sqrt(k)).astype(np.float32)
        expected = a.astype(np.float64) @ w
        a_jax, w_jax = jnp.asarray(a), jnp.asarray(w)
        for name, fusion in (("ynn", YNN_DOTS_ONLY), ("xla", "")):
            fn = jax.jit(lambda x, w=w_jax: x @ w, compiler_options={YNN_FUSION_TYPE: fusion})
            calls[label, name] = lambda fn=fn, x=a_jax: fn(x).block_until_ready()
        session = _ort_matmul(w, m)
        calls[label, "ort"] = lambda session=session, a=a: session.run(None, {"a": a})[0]
        calls[label, "numpy"] = lambda a=a, w=w: a @ w
        for name in KERNELS:  # every kernel computes the same product
            got = np.asarray(calls[label, name]())
            np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4, err_msg=f"{label} {name}")
    times = time_interleaved(calls, args.rounds, args.calls)
    print(f"jax {jax.__version__}, onnxruntime {ort.__version__}, load average {times.load_range()}, "
          f"median of {args.rounds} rounds, CPU ms per call (GMAC/s)")
    print(f"| product (M x K x N) | {' | '.join(KERNELS)} | ynn / ort |")
    print("|---|" + "---:|" * (len(KERNELS) + 1))
    for label, m, k, n in SHAPES:
        medians = {name: times.median((label, name)) for name in KERNELS}
        macs = m * k * n / 1e6
        cells = " | ".join(f"{medians[name]:.3f} ({macs / medians[name]:.0f})" for name in KERNELS)
        print(f"| {label} ({m}x{k}x{n}) | {cells} | {medians['ynn'] / medians['ort']:.2f} |")


if __name__ == "__main__":
    main()
