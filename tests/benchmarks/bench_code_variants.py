"""Hand-edited forms of a corpus model's generated code side by side: in-process steady-state A/B against onnxruntime.

A script, not a test. Before building a code form into the generator, write the model's generated module
once (``--write-source PATH``), edit a copy by hand (or with a script) into the form to try, and time the
copies against the generated code as it is::

    WORKBENCH_VISION_CORPUS=1 PYTHONPATH=$PWD /work/venv-o2j/bin/python tests/benchmarks/bench_code_variants.py \\
        --corpus efficientnet_b0 --write-source /tmp/eff.py
    WORKBENCH_VISION_CORPUS=1 PYTHONPATH=$PWD /work/venv-o2j/bin/python tests/benchmarks/bench_code_variants.py \\
        --corpus efficientnet_b0 --variant se=/tmp/eff_se.py [--variant ...] [--rounds 21] [--block 5] \\
        [--ynn-fusion LIBRARY_FUSION_TYPE_DOT]

Every variant, and the tree's own generated code ("main", loaded ``--copies`` times as separate modules),
is jitted with ``wb.jit_forward(forward, params)`` (weights folded, the module's XLA options; ``NAME=PATH@FUSION``
overrides YNNPACK's fusion type for that variant) and checked against a one-thread onnxruntime session on the
same file. The timing is the steady state of ``bench_first_jit.py --block``: ``--rounds`` rounds of ``--block``
consecutive calls of each variant and of onnxruntime, the order reversed every other round, the first call of
each block dropped (it follows another program), the median process CPU time per call kept. One thread each.

The copies of main set the noise floor: two copies of the same code in one process differed by 1-7% at a load
of 4-9 (docs/onnx_to_jax_corpus.md, "The worst steady-state ratios, new forms and options tried"), so a variant
counts as faster only when it beats every copy of main by more than they differ from each other. Corpus models
have random weights: where a form's gain could rest on XLA dropping zeros (SqueezeNet's convolution biases are
all zero there), check it on a file with nonzero ones too.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from tests.support.thread_limits import limit_xla_threads, ort_session


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", required=True, help="one model of tests/onnx_to_jax/test_corpus_vision.py")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=PATH[@FUSION]",
                        help="an edited generated module (repeatable)")
    parser.add_argument("--write-source", metavar="PATH", help="write the generated module to PATH and stop")
    parser.add_argument("--copies", type=int, default=2, help="copies of the tree's own generated code")
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--block", type=int, default=5, help="consecutive calls per runtime and round (>= 2)")
    parser.add_argument("--ynn-fusion", help="YNNPACK fusion type for main's copies (default: the module's)")
    return parser.parse_args()


def _module_from_source(source: str, label: str) -> Any:
    """The generated module ``source`` as a fresh module object named ``label``."""
    spec = importlib.util.spec_from_loader(label, loader=None)
    module = importlib.util.module_from_spec(spec)
    exec(compile(source, f"<{label}>", "exec"), module.__dict__)  # noqa: S102 - the generator's own output
    return module


def main() -> None:
    args = _parse_args()
    if args.block < 2:
        raise SystemExit("--block must be at least 2: the first call of each block is dropped")
    limit_xla_threads(1)  # before JAX's CPU backend starts
    import numpy as np

    import workbench as wb
    from tests.onnx_to_jax.test_corpus_vision import export

    model, feeds = export(args.corpus, "legacy")
    source = wb.to_jax_source(model)
    if args.write_source:
        with open(args.write_source, "w", encoding="utf-8") as handle:
            handle.write(source)
        print(f"wrote {args.write_source}: edit a copy and pass it as --variant NAME=PATH")
        return
    _, params = wb.to_jax(model)
    session = ort_session(model, 1)
    feed = {i.name: x for i, x in zip(session.get_inputs(), feeds)}
    expected = session.run(None, feed)[0]

    texts: list[tuple[str, str, str | None]] = [
        (f"main{k + 1}", source, args.ynn_fusion) for k in range(args.copies)
    ]
    for item in args.variant:
        name, _, rest = item.partition("=")
        path, _, fusion = rest.partition("@")
        with open(path, encoding="utf-8") as handle:
            texts.append((name, handle.read(), fusion if "@" in rest else None))
    calls: dict[str, Callable[[], Any]] = {}
    for index, (name, text, fusion) in enumerate(texts):
        module = _module_from_source(text, f"variant_{index}")
        options = {} if fusion is None else {"compiler_options": {"xla_cpu_experimental_ynn_fusion_type": fusion}}
        start = time.process_time()
        jitted = wb.jit_forward(module.forward, params, **options)
        got = np.asarray(jitted(*feeds))
        print(f"{name}: first call {time.process_time() - start:.2f} CPU s, max |JAX - ORT| "
              f"{float(np.max(np.abs(got - expected))):.2e}", flush=True)
        calls[name] = lambda jitted=jitted: jitted(*feeds).block_until_ready()
    calls["onnxruntime"] = lambda: session.run(None, feed)

    times: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    for round_index in range(args.rounds):
        for name in names if round_index % 2 == 0 else names[::-1]:
            for call_index in range(args.block):
                start = time.process_time()
                calls[name]()
                if call_index:
                    times[name].append(time.process_time() - start)
    median = {name: statistics.median(values) * 1000 for name, values in times.items()}
    print(f"{args.corpus}, load average {os.getloadavg()[0]:.1f}, {args.rounds} rounds of {args.block} calls, "
          "median CPU ms per call after a call of the same code:")
    for name, ms in median.items():
        print(f"  {name:16s} {ms:8.3f}  {ms / median['onnxruntime']:.2f}x onnxruntime")


if __name__ == "__main__":
    main()
