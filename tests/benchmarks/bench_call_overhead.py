"""What a jitted call costs besides its kernels, against onnxruntime: a fixed part and a part per op.

A script, not a test. It builds chains of ``n`` (size, size) MatMul + Tanh pairs with constant weights
(an ONNX graph for onnxruntime, the same computation for ``jax.jit``: XLA cannot fuse a product into
the next one, so each pair is its own thunks), and times both runtimes on one thread each in
interleaved rounds, per-call process CPU time. The cost at ``n = 1`` is mostly the fixed cost of a call
(Python, dispatch, buffers); the slope between the chain lengths is the cost per pair of ops, kernels
included, which at this size are a small part. docs/onnx_to_jax_corpus.md, "JAX's CPU runtime threads"::

    PYTHONPATH=$PWD /work/venv-o2j/bin/python tests/benchmarks/bench_call_overhead.py [--old-limits]

``--old-limits`` runs JAX as the benchmarks did before 2026-12-03 (``XLA_FLAGS`` only: two intra-op
threads on this machine and asynchronous dispatch) instead of ``limit_xla_threads(1)``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from tests.support.thread_limits import limit_xla_threads, ort_session

OLD_XLA_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", default="1,64", help="comma-separated chain lengths (pairs of ops)")
    parser.add_argument("--size", type=int, default=16, help="the matrices' size")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=200, help="calls per round and runtime")
    parser.add_argument("--old-limits", action="store_true", help="JAX as the benchmarks ran it before 2026-12-03")
    return parser.parse_args()


def main() -> None:
    args = _parse_args()
    if args.old_limits:
        os.environ["XLA_FLAGS"] = OLD_XLA_FLAGS
    else:
        limit_xla_threads(1)  # before JAX starts
    import jax
    import jax.numpy as jnp
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    # a 64-byte-aligned input, as torch's are (JAX copies unaligned numpy inputs first)
    buffer = np.empty(args.size * args.size * 4 + 64, np.uint8)
    start = -buffer.ctypes.data % 64
    x = buffer[start : start + args.size * args.size * 4].view(np.float32).reshape(args.size, args.size)
    x[...] = 0.1
    for n in (int(length) for length in args.lengths.split(",")):
        weights = [(0.3 * rng.standard_normal((args.size, args.size))).astype(np.float32) for _ in range(n)]
        nodes, previous = [], "x"
        for i in range(n):
            nodes += [helper.make_node("MatMul", [previous, f"w{i}"], [f"m{i}"]),
                      helper.make_node("Tanh", [f"m{i}"], [f"t{i}"])]
            previous = f"t{i}"
        value = lambda name: helper.make_tensor_value_info(name, TensorProto.FLOAT, [args.size, args.size])  # noqa: E731
        graph = helper.make_graph(nodes, "chain", [value("x")], [value(previous)],
                                  [numpy_helper.from_array(w, f"w{i}") for i, w in enumerate(weights)])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
        session = ort_session(model, 1)
        constants = [jnp.asarray(w) for w in weights]

        def chain(a):
            for w in constants:
                a = jnp.tanh(a @ w)
            return a

        jitted = jax.jit(chain)
        expected = session.run(None, {"x": x})[0]
        error = float(np.max(np.abs(np.asarray(jitted(x)) - expected)))
        times: dict[str, list[float]] = {"jax": [], "ort": []}
        for _ in range(args.rounds):  # interleaved
            begin = time.process_time()
            for _ in range(args.calls):
                jitted(x).block_until_ready()
            times["jax"].append((time.process_time() - begin) / args.calls)
            begin = time.process_time()
            for _ in range(args.calls):
                session.run(None, {"x": x})
            times["ort"].append((time.process_time() - begin) / args.calls)
        jax_us, ort_us = (statistics.median(times[k]) * 1e6 for k in ("jax", "ort"))
        print(f"{n} MatMul+Tanh pairs ({args.size}x{args.size}), {'old limits' if args.old_limits else 'one thread'}: "
              f"JAX {jax_us:.1f} us, onnxruntime {ort_us:.1f} us CPU per call (max |diff| {error:.1e}); "
              f"load average {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
