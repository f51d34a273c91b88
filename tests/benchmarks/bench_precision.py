"""Half-precision exports of the zoo: error against float32 JAX and onnxruntime latency, per precision.

A script, not a test: it prints one table. Every zoo model is converted in float32, float16 and
bfloat16 (``wb.convert(..., precision=...)``, float32 inputs and outputs kept). Each model's error
is the normwise relative error max|onnx - jax| / max|jax| against the float32 JAX model on one
input; float16 runs in onnxruntime (CPU provider), bfloat16 in ONNX's reference evaluator, as the
CPU provider lacks bfloat16 kernels for most ops (its latency is therefore not reported). Latency is
the median of ``--runs`` onnxruntime runs, taken in interleaved rounds (float32, float16, float32,
...) so a machine shared with other work slows both alike; the ratio is float16 / float32.

    PYTHONPATH=$PWD .venv/bin/python tests/benchmarks/bench_precision.py [--runs 50] [--models nnx_gpt,...]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def _error(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got.astype(np.float64) - want).max() / np.abs(want).max())


def main() -> None:
    import onnxruntime as ort
    from onnx.reference import ReferenceEvaluator

    import workbench as wb
    from tests.support.harness import concrete_inputs
    from workbench.zoo import ZOO

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--models", default=",".join(sorted(ZOO)))
    args = parser.parse_args()

    print("| model | float16 error | bfloat16 error | ORT float32 ms | ORT float16 ms | float16 / float32 |")
    print("|---|---|---|---|---|---|")
    for name in args.models.split(","):
        built = ZOO[name]()
        inputs = concrete_inputs(built.inputs, int_high=100, sizes={"B": 8, "T": 16})
        want = np.asarray(built.eval_fn()(*inputs), dtype=np.float64)
        models = {p: wb.convert(built.fn, built.inputs, precision=p) for p in ("float32", "float16", "bfloat16")}
        feeds = dict(zip(models["float32"].input_names, inputs, strict=True))
        options = ort.SessionOptions()
        options.log_severity_level = 3
        sessions = {p: ort.InferenceSession(models[p].model.SerializeToString(), options,
                                            providers=["CPUExecutionProvider"]) for p in ("float32", "float16")}  # fmt: skip
        errors = {"float16": _error(sessions["float16"].run(None, feeds)[0], want)}
        errors["bfloat16"] = _error(ReferenceEvaluator(models["bfloat16"].model).run(None, feeds)[0], want)
        times: dict[str, list[float]] = {"float32": [], "float16": []}
        for _ in range(3):  # warm-up
            for session in sessions.values():
                session.run(None, feeds)
        for _ in range(args.runs):
            for precision, session in sessions.items():
                start = time.perf_counter()
                session.run(None, feeds)
                times[precision].append(time.perf_counter() - start)
        f32, f16 = (statistics.median(times[p]) * 1e3 for p in ("float32", "float16"))
        print(f"| {name} | {errors['float16']:.1e} | {errors['bfloat16']:.1e} | {f32:.3f} | {f16:.3f} | {f16 / f32:.2f}x |",
              flush=True)


if __name__ == "__main__":
    main()
