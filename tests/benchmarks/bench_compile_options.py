"""XLA compile CPU and jitted latency of corpus models with and without extra XLA compiler options, in one process.

A script, not a test. For each model: the folded form (``wb.jit_forward(forward, params)``) is lowered
once per round and compiled with the generator's options and with those plus ``--extra``, alternating
which goes first, after ``jax.clear_caches()`` and a discarded warm-up compile (a process's first
compile costs more); then both programs and onnxruntime (one thread) are called interleaved. Printed:
the compile CPU seconds of every round and their median, the median CPU ms per call and its ratio to
onnxruntime's, and each program's max |JAX - ORT| on the first output (docs/onnx_to_jax_corpus.md,
"Swin-T's shifted-window masks, LLVM at level 2")::

    WORKBENCH_VISION_CORPUS=1 PYTHONPATH=$PWD /work/venv-o2j/bin/python tests/benchmarks/bench_compile_options.py \\
        --corpus swin_t,resnet50 --extra xla_backend_optimization_level=3 [--rounds 3] [--calls 20]
"""

from __future__ import annotations

import argparse
import statistics
import time


def _option(text: str) -> tuple[str, object]:
    name, _, value = text.partition("=")
    if not value:
        raise argparse.ArgumentTypeError(f"--extra takes name=value, got {text!r}")
    parsed = {"true": True, "false": False}.get(value.lower(), int(value) if value.lstrip("-").isdigit() else value)
    return name, parsed


def model_report(name: str, extra: dict[str, object], rounds: int, calls: int) -> None:
    """Compile ``name``'s folded form ``rounds`` times each way and print the figures."""
    import jax
    import numpy as np

    import workbench as wb
    from tests.onnx_to_jax.test_corpus_vision import export
    from tests.support.thread_limits import ort_session
    from workbench.onnx_to_jax.api import generate_module
    from workbench.onnx_to_jax.jit_options import generated_options

    model, feeds = export(name, "legacy")
    generated = generate_module(model)
    params = {k: (jax.device_put(v) if v.dtype.kind in "fc" else v) for k, v in generated.params.items()}
    chosen = generated_options(generated.forward)
    variants = {"generator's": chosen, "with --extra": {**chosen, **extra}}
    session = ort_session(model)
    named = {i.name: f for i, f in zip(session.get_inputs(), feeds)}
    expected = session.run(None, named)[0]

    def compile_once(options):
        jax.clear_caches()
        lowered = wb.jit_forward(generated.forward, params).lower(*feeds)
        start = time.process_time()
        compiled = lowered.compile(options)
        return time.process_time() - start, compiled

    compile_once(chosen)
    seconds: dict[str, list[float]] = {v: [] for v in variants}
    programs = {}
    for r in range(rounds):
        for v in (list(variants) if r % 2 == 0 else list(variants)[::-1]):
            cpu, programs[v] = compile_once(variants[v])
            seconds[v].append(cpu)
    per_call: dict[str, list[float]] = {v: [] for v in variants}
    ort_times = []
    for program in programs.values():
        jax.block_until_ready(program(*feeds))
    for _ in range(calls):
        for v, program in programs.items():
            start = time.process_time()
            jax.block_until_ready(program(*feeds))
            per_call[v].append(time.process_time() - start)
        start = time.process_time()
        session.run(None, named)
        ort_times.append(time.process_time() - start)
    ort = statistics.median(ort_times)
    with open("/proc/loadavg", encoding="ascii") as load:
        loadavg = load.read().split()[0]
    for v in variants:
        got = programs[v](*feeds)
        got = np.asarray(got[0] if isinstance(got, tuple) else got)
        ms = statistics.median(per_call[v])
        print(f"{name:24s} {v:13s} compile {statistics.median(seconds[v]):.2f} CPU s "
              f"({', '.join(f'{s:.2f}' for s in seconds[v])}); {ms * 1e3:.2f} ms/call ({ms / ort:.2f}x ORT "
              f"{ort * 1e3:.2f}); max |JAX - ORT| {np.abs(got - expected).max():.2e}; load {loadavg}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", required=True, help="comma-separated vision corpus models")
    parser.add_argument("--extra", type=_option, action="append", required=True, help="name=value, repeatable")
    parser.add_argument("--rounds", type=int, default=3, help="compiles of each variant")
    parser.add_argument("--calls", type=int, default=20, help="interleaved latency calls")
    args = parser.parse_args()
    for name in args.corpus.split(","):
        model_report(name, dict(args.extra), args.rounds, args.calls)


if __name__ == "__main__":
    main()
