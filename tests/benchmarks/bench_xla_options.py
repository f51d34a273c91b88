"""XLA compiler options side by side on one corpus model: in-process A/B against onnxruntime.

Each named variant is the model's generated code jitted with its weights folded in and a set of XLA
compiler options (``jax.jit(...).lower(...).compile(compiler_options=...)``); the variants and
onnxruntime are called in interleaved rounds in one process, one thread each, and timed by the
process's CPU time per call, so a shared machine's load hits all of them alike (comparing separate
benchmark processes at a load of 6-10 moved ResNet-50's ratio by 15% between runs). This is how the
options of ``workbench/onnx_to_jax/jit_options.py`` were chosen (docs/onnx_to_jax_corpus.md, "XLA
compiler options per model")::

    WORKBENCH_VISION_CORPUS=1 PYTHONPATH=$PWD /work/venv-o2j/bin/python tests/benchmarks/bench_xla_options.py \\
        --corpus resnet18 --rounds 15 \\
        --variant default= --variant dots=xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_DOT

``--variant NAME=`` is XLA's defaults; ``NAME=opt=value,opt=value`` sets options (values ``true``/``false``
become booleans). ``--variant chosen`` is what ``wb.jit_forward`` applies to the model. Printed per
variant: compile time, the largest difference from onnxruntime's first output, the number of custom
(library) fusions in the compiled HLO, and the median latency with its ratio to onnxruntime's.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time
from typing import Any

from tests.support.thread_limits import limit_xla_threads, ort_session


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", required=True, help="one model of tests/onnx_to_jax/test_corpus_vision.py")
    parser.add_argument("--variant", action="append", required=True, help="NAME=opt=value,... or 'chosen'")
    parser.add_argument("--rounds", type=int, default=15)
    return parser.parse_args()


def _options(text: str) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for item in filter(None, text.split(",")):
        name, _, value = item.partition("=")
        options[name] = {"true": True, "false": False}.get(value, value)
    return options


def main() -> None:
    args = _parse_args()
    limit_xla_threads(1)  # before JAX is imported: one thread, as bench_to_jax.py
    import jax
    import numpy as np

    import workbench as wb
    from tests.onnx_to_jax.test_corpus_vision import export
    from workbench.onnx_to_jax.jit_options import generated_options

    model, feeds = export(args.corpus, "legacy")
    forward, params = wb.to_jax(model)
    session = ort_session(model, 1)
    feed = {i.name: x for i, x in zip(session.get_inputs(), feeds)}
    expected = session.run(None, feed)[0]
    calls: dict[str, Any] = {}
    for variant in args.variant:
        name, _, text = variant.partition("=")
        options = generated_options(forward) if variant == "chosen" else _options(text)
        start = time.process_time()
        compiled = jax.jit(functools.partial(forward, params)).lower(*feeds).compile(compiler_options=options or None)
        got = jax.block_until_ready(compiled(*feeds))
        got = got[0] if isinstance(got, tuple) else got
        error = float(np.max(np.abs(np.asarray(got) - expected)))
        custom = compiled.as_text().count("kind=kCustom")
        print(f"{name} {options}: compile {time.process_time() - start:.2f} s CPU, max |diff| {error:.2e}, "
              f"{custom} library fusions", flush=True)
        calls[name] = compiled
    calls["onnxruntime"] = lambda *_: session.run(None, feed)
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(args.rounds):  # interleaved
        for name, call in calls.items():
            start = time.process_time()
            jax.block_until_ready(call(*feeds))
            times[name].append(time.process_time() - start)
    median = {name: statistics.median(values) * 1000 for name, values in times.items()}
    print(f"{args.corpus}, load average {os.getloadavg()[0]:.1f}, medians of {args.rounds} rounds (CPU ms per call): "
          + "; ".join(f"{n} {ms:.2f} ({ms / median['onnxruntime']:.2f}x)" for n, ms in median.items()))


if __name__ == "__main__":
    main()
