"""Benchmark of the analysis tools on the zoo's 12-layer GPT (d=256, 8 heads, seq 64, vocab 1000).

Prints one table: the time of one conversion, of ``wb.check``, ``wb.parity`` (3 samples) and
``wb.locate_divergence``, next to one onnxruntime run and one JAX run of the same model, and the
locator's cost in units of (one onnxruntime run + one JAX run), cold (session creation / jit
compilation included) and warm. Run: ``PYTHONPATH=$PWD python tests/benchmarks/bench_analysis.py``.

``--subject conversion`` runs parity and the locator on the ``Conversion`` (``wb.parity(conversion)``:
nothing traced or converted again) instead of on ``fn`` + model; run each in its own process (JAX
caches op-by-op compilations, so a second analysis in one process is faster whatever it is given).
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

LAYERS, D_MODEL, HEADS, SEQ, VOCAB, BATCH = 12, 256, 8, 64, 1000, 1


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subject", choices=("fn", "conversion"), default="fn",
                        help="what parity and the locator are given: fn + model, or the Conversion")
    args = parser.parse_args()
    import onnxruntime as ort

    import workbench as wb

    from workbench.zoo import nnx_gpt

    fn = nnx_gpt(layers=LAYERS, d_model=D_MODEL, heads=HEADS, seq=SEQ, vocab=VOCAB, symbolic_seq=False).fn
    spec = [jax.ShapeDtypeStruct((BATCH, SEQ), jnp.int32)]
    tokens = np.random.default_rng(1).integers(0, VOCAB, (BATCH, SEQ)).astype(np.int32)

    report, t_check = _timed(wb.check, fn, spec)
    if not report.supported:
        print(report)
        raise SystemExit("the GPT uses primitives without handlers in this checkout; see the report above")
    conversion, t_convert = _timed(wb.convert, fn, spec)
    model = conversion.model
    print(f"GPT: {len(model.graph.node)} ONNX nodes, {report.num_equations} jaxpr equations")

    options = ort.SessionOptions()
    options.log_severity_level = 3
    start = time.perf_counter()
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feeds = {model.graph.input[0].name: tokens}
    session.run(None, feeds)
    t_ort_cold = time.perf_counter() - start
    _, t_ort_warm = _timed(session.run, None, feeds)

    from flax import nnx

    fn.eval()
    jitted = nnx.jit(lambda model, t: model(t))
    start = time.perf_counter()
    jax.block_until_ready(jitted(fn, tokens))
    t_jax_cold = time.perf_counter() - start
    _, t_jax_warm = _timed(lambda: jax.block_until_ready(jitted(fn, tokens)))

    subject = (fn, model) if args.subject == "fn" else (conversion,)
    parity_report, t_parity = _timed(wb.parity, *subject, samples=3)
    located, t_locate = _timed(wb.locate_divergence, *subject, inputs=[tokens])
    print(f"parity and locator given: {'fn + model' if args.subject == 'fn' else 'the Conversion'}")

    rows = [
        ("one conversion (wb.convert)", t_convert),
        ("wb.check", t_check),
        ("wb.parity, 3 samples", t_parity),
        ("wb.locate_divergence", t_locate),
        ("  of which re-conversion", located.seconds["convert"]),
        ("  of which JAX, every equation", located.seconds["jax"]),
        ("  of which onnxruntime, all values exposed", located.seconds["onnxruntime"]),
        ("  of which comparison", located.seconds["compare"]),
        ("onnxruntime run, cold (session + run)", t_ort_cold),
        ("onnxruntime run, warm", t_ort_warm),
        ("JAX run, cold (jit compile + run)", t_jax_cold),
        ("JAX run, warm", t_jax_warm),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"{'step':<{width}}  seconds  × conversion")
    for name, seconds in rows:
        print(f"{name:<{width}}  {seconds:7.3f}  {seconds / t_convert:6.2f}")
    cold = t_ort_cold + t_jax_cold
    warm = t_ort_warm + t_jax_warm
    print(f"locate / (ORT + JAX run), cold: {t_locate / cold:.2f}×  (target ≤ 5×)")
    print(f"locate / (ORT + JAX run), warm: {t_locate / warm:.1f}×")
    print(f"parity ok: {parity_report.ok}; locator: {located.summary()}")


if __name__ == "__main__":
    main()
