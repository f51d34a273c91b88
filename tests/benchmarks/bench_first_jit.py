"""Where the first ``jax.jit`` call of generated code spends its time, per corpus model and jit form.

A script, not a test: it prints one block per model. For each form it splits the first call into
tracing + lowering to StableHLO (``jitted.lower``), XLA's compile (``.compile()``) and the first run
of the compiled program, each in wall and process CPU seconds, checks the output against
onnxruntime, and then times the forms and onnxruntime in interleaved rounds (per-call process CPU
time, one thread each: robust to other processes on a shared machine). Issue 21's target: first
``jax.jit`` <= 5 s for every corpus model, without giving up jitted latency. One XLA thread also means
one compile thread (XLA compiles on the CPU client's pool, which ``PJRT_NPROC`` sizes too), so for the
first-jit figures as a user with XLA's defaults sees them, pass ``--xla-threads 0`` (its latencies are
then those of two intra-op threads, their CPU time summed).

    WORKBENCH_VISION_CORPUS=1 PYTHONPATH=$PWD /work/venv-o2j/bin/python tests/benchmarks/bench_first_jit.py \\
        --corpus vit_b_16,swin_t [--forms folded,bound] [--rounds 9]

Forms (all with the XLA compiler options the generator chose for the model):

- ``folded``: ``wb.jit_forward(forward, params)``, the default for inference (``prepare(params)``
  folded into ``forward_prepared`` as constants; making it, with the prepare, is timed with the lowering;
  for a model with many weights that is a tiered jit, whose ``lower`` is this folded program: tiered.py);
- ``bound``: ``wb.jit_forward(forward_prepared)`` called on ``prepare(params)`` kept outside the jit
  (the same call for the user as the folded form if wrapped, but the weights are arguments: no literals);
- ``onnx-layout``: ``params`` folded in ONNX's layouts (what ``jit_forward`` folded before it prepared);
- ``mixed``: weights of at most ``--mixed-bytes`` bytes folded, the larger ones bound as arguments.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time

from tests.support.thread_limits import limit_xla_threads, ort_session

FORMS = ("folded", "bound", "onnx-layout", "mixed")


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", required=True, help="comma-separated vision corpus models")
    parser.add_argument("--forms", default="folded,bound", help=f"comma-separated, of {', '.join(FORMS)}")
    parser.add_argument("--rounds", type=int, default=9, help="interleaved latency rounds")
    parser.add_argument("--mixed-bytes", type=int, default=65536, help="the mixed form folds weights up to this size")
    parser.add_argument("--xla-threads", type=int, default=1,
                        help="XLA's threads (tests/support/thread_limits.py); 0: JAX's defaults, whose compiles "
                        "use every core (the first-jit figures before 2026-12-03 were measured so)")
    args = parser.parse_args()
    unknown = sorted(set(args.forms.split(",")) - set(FORMS))
    if unknown:
        parser.error(f"--forms: unknown form(s) {', '.join(unknown)}; choose from {', '.join(FORMS)}")
    return args


ARGS = _parse_args() if __name__ == "__main__" else None
if ARGS is not None:  # before JAX is imported: JAX's CPU client reads the limits once
    limit_xla_threads(ARGS.xla_threads)


def _clocks() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def model_block(name: str, forms: list[str], rounds: int, mixed_bytes: int) -> None:
    """Print the first-call split and the latencies of ``forms`` for corpus model ``name``."""
    import jax
    import numpy as np

    import workbench as wb
    from tests.onnx_to_jax.test_corpus_vision import export
    from workbench.onnx_to_jax.api import generate_module
    from workbench.onnx_to_jax.jit_options import generated_options, supported_options

    model, feeds = export(name, "legacy")
    start = time.perf_counter()
    generated = generate_module(model)
    generate = time.perf_counter() - start
    params = {k: (jax.device_put(v) if v.dtype.kind in "fc" else v) for k, v in generated.params.items()}
    prepared = generated.prepare(params)
    options = supported_options(generated_options(generated.forward)) or None

    def make(form: str):
        """(jitted function, the arguments before the inputs)."""
        if form == "folded":
            return wb.jit_forward(generated.forward, params), ()
        if form == "bound":
            return wb.jit_forward(generated.forward_prepared), (prepared,)
        if form == "onnx-layout":
            return jax.jit(functools.partial(generated.forward, params), compiler_options=options), ()
        small = {k: v for k, v in prepared.items() if getattr(v, "nbytes", 0) <= mixed_bytes}
        large = {k: v for k, v in prepared.items() if k not in small}
        folded_small = functools.partial(lambda s, big, *xs: generated.forward_prepared({**s, **big}, *xs), small)
        return jax.jit(folded_small, compiler_options=options), (large,)

    jax.block_until_ready(jax.jit(lambda a: a + 1)(np.zeros(2, np.float32)))  # JAX's one-time setup
    print(f"{name}: {len(model.graph.node)} nodes, generated in {generate:.2f} s, XLA options {options or '{}'}, "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    session = ort_session(model, 1)
    feed = {i.name: x for i, x in zip(session.get_inputs(), feeds)}
    expected = session.run(None, feed)
    compiled = {}
    for form in forms:
        t0 = _clocks()
        fn, lead = make(form)
        lowered = fn.lower(*lead, *feeds)
        t1 = _clocks()
        executable = lowered.compile()
        t2 = _clocks()
        out = jax.block_until_ready(executable(*lead, *feeds))
        t3 = _clocks()
        outs = out if isinstance(out, tuple) else (out,)
        error = max(float(np.max(np.abs(np.asarray(a) - b))) for a, b in zip(outs, expected))
        print(f"  {form:12s} first jit {t3[0] - t0[0]:6.2f} s ({t3[1] - t0[1]:5.2f} CPU s): trace+lower "
              f"{t1[0] - t0[0]:.2f} ({t1[1] - t0[1]:.2f}), XLA compile {t2[0] - t1[0]:.2f} ({t2[1] - t1[1]:.2f}), "
              f"first run {t3[0] - t2[0]:.2f} ({t3[1] - t2[1]:.2f}); max |JAX - ORT| {error:.1e}", flush=True)
        compiled[form] = (executable, lead)
    times: dict[str, list[float]] = {form: [] for form in [*compiled, "ort"]}
    for _ in range(rounds):  # interleaved, so load spikes hit all alike
        for form, (executable, lead) in compiled.items():
            start = time.process_time()
            jax.block_until_ready(executable(*lead, *feeds))
            times[form].append(time.process_time() - start)
        start = time.process_time()
        session.run(None, feed)
        times["ort"].append(time.process_time() - start)
    median = {form: statistics.median(values) for form, values in times.items()}
    print("  latency (median CPU ms per call): " + ", ".join(
        f"{form} {m * 1000:.2f} ({m / median['ort']:.2f}x ORT)" for form, m in median.items() if form != "ort")
        + f", onnxruntime {median['ort'] * 1000:.2f}; load average {os.getloadavg()[0]:.1f}", flush=True)


def main() -> None:
    args = ARGS
    forms = [form for form in FORMS if form in args.forms.split(",")]
    for name in args.corpus.split(","):
        model_block(name, forms, args.rounds, args.mixed_bytes)


if __name__ == "__main__":
    main()
