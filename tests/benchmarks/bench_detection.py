"""Detection models (value-dependent shapes) as generated JAX vs onnxruntime: first call, warm latency, where the time goes.

A script, not a test: it prints a table. The models are the detectors of the vision corpus
(tests/onnx_to_jax/test_corpus_vision.py: SSDlite, Faster R-CNN, RetinaNet; torchvision, random
weights, TorchScript exporter), which need an interpreter with torchvision (/work/venv-o2j)::

    WORKBENCH_VISION_CORPUS=1 PYTHONPATH=$PWD /work/venv-o2j/bin/python tests/benchmarks/bench_detection.py \
        [--models ssdlite320_mobilenet_v3_large,...] [--rounds 5] [--cache /tmp/detectors]

``--cache`` keeps the exported ONNX files (exporting takes a minute a model). Per model: onnxruntime's
session creation and first run, ``wb.to_jax`` (generation), the generated code's first call
(``forward_prepared(prepare(params), image)``: its jitted parts compile on it) and the warm latencies of
both runtimes, medians of interleaved rounds, each as wall and process CPU seconds (one thread per
runtime, so CPU time is the work of the call; the machine is shared). Then where the first call went:
the number of part calls and of distinct compiled parts, XLA's tracing / lowering / compile seconds
(``jax.monitoring``'s duration events) and the time spent outside the parts (the value-dependent steps
on concrete arrays, which run the same on warm calls). The outputs are compared with onnxruntime's
(corpus tolerance) so a figure never comes from a wrong result.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from tests.support.thread_limits import limit_xla_threads, ort_session

DETECTORS = ("ssdlite320_mobilenet_v3_large", "fasterrcnn_mobilenet_v3_large_320_fpn", "retinanet_resnet50_fpn")


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(DETECTORS), help="comma-separated detectors of the corpus")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved warm rounds")
    parser.add_argument("--cache", default=None, help="folder keeping the exported ONNX models and inputs")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads for onnxruntime and XLA (0: defaults)")
    return parser.parse_args()


ARGS = _parse_args() if __name__ == "__main__" else None
if ARGS is not None:  # before JAX is imported: XLA reads the flag once
    limit_xla_threads(ARGS.threads)

import jax  # noqa: E402
import jax.monitoring  # noqa: E402
import numpy as np  # noqa: E402
import onnx  # noqa: E402


def _exported(name: str, cache: str | None) -> tuple[onnx.ModelProto, list[np.ndarray]]:
    if cache is not None:
        path = Path(cache) / f"{name}.onnx"
        if path.exists():
            return onnx.load(path), [np.load(path.with_suffix(".npy"))]
    from tests.onnx_to_jax.test_corpus_vision import export

    model, feeds = export(name, "legacy")
    if cache is not None:
        Path(cache).mkdir(parents=True, exist_ok=True)
        onnx.save(model, path)
        np.save(path.with_suffix(".npy"), feeds[0])
    return model, feeds


class _Clock:
    """Wall and process CPU seconds of a block."""

    def __enter__(self) -> "_Clock":
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


class _PartCounter:
    """Wraps the generated module's ``_segment`` to count and time part calls (what the first call did;
    each part is waited for, so its compute is counted inside it, not in the next host step)."""

    def __init__(self, namespace: dict[str, Any]) -> None:
        self.namespace = namespace
        self.original = namespace["_segment"]
        self.calls = 0
        self.seconds = 0.0  # wall
        self.cpu = 0.0
        self.shapes: set[tuple] = set()
        self.depth = 0
        namespace["_segment"] = self

    def __call__(self, part, params, dynamic, static):
        self.calls += 1
        self.shapes.add((part.__name__, tuple((np.shape(v), str(np.asarray(v).dtype)) for v in dynamic),
                         tuple(np.asarray(v).tobytes() for v in static)))
        start, start_cpu = time.perf_counter(), time.process_time()
        try:
            return jax.block_until_ready(self.original(part, params, dynamic, static))
        finally:
            self.seconds += time.perf_counter() - start
            self.cpu += time.process_time() - start_cpu

    def restore(self) -> None:
        self.namespace["_segment"] = self.original


def measure(name: str, rounds: int, threads: int, cache: str | None) -> dict[str, Any]:

    from tests.support.corpus import assert_outputs_match
    from workbench.onnx_to_jax.api import generate_module

    model, feeds = _exported(name, cache)
    with _Clock() as session_clock:
        session = ort_session(model, threads)
    feed = {i.name: x for i, x in zip(session.get_inputs(), feeds)}
    with _Clock() as ort_first:
        expected = session.run(None, feed)

    with _Clock() as generate:
        generated = generate_module(model)
        params = {k: (jax.device_put(v) if v.dtype.kind in "fc" else v) for k, v in generated.params.items()}
    jax.block_until_ready(jax.jit(lambda a: a + 1)(np.zeros(2, np.float32)))  # JAX's one-time setup
    prepared = generated.prepare(params)  # the convolution weights in the kernels' layout, once
    run = generated.forward_prepared
    namespace = run.__globals__
    compile_events: dict[str, list[float]] = defaultdict(list)

    def listener(event: str, seconds: float, **_: Any) -> None:
        compile_events[event].append(seconds)

    jax.monitoring.register_event_duration_secs_listener(listener)
    counter = _PartCounter(namespace)
    try:
        with _Clock() as first:
            got = jax.block_until_ready(run(prepared, *feeds))
    finally:
        counter.restore()
        jax.monitoring.unregister_event_duration_listener(listener)
    got = got if isinstance(got, tuple) else (got,)
    error = max(assert_outputs_match(model, expected, got), default=0.0)

    times: dict[str, list[tuple[float, float]]] = {"jax": [], "ort": []}
    for _ in range(rounds):  # interleaved, so load spikes hit both runtimes alike
        with _Clock() as c:
            jax.block_until_ready(run(prepared, *feeds))
        times["jax"].append((c.wall, c.cpu))
        with _Clock() as c:
            session.run(None, feed)
        times["ort"].append((c.wall, c.cpu))
    warm = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in times.items()}
    events = {k.rsplit("/", 1)[-1]: (len(v), sum(v)) for k, v in compile_events.items()}
    return {
        "name": name, "nodes": len(model.graph.node), "barriers": len(namespace.get("VALUE_DEPENDENT_NODES", ())),
        "options": namespace.get("XLA_COMPILER_OPTIONS"), "ort_session": session_clock, "ort_first": ort_first,
        "generate": generate, "first": first, "warm": warm, "error": error,
        "part_calls": counter.calls, "part_shapes": len(counter.shapes),
        "part_functions": len(Counter(s[0] for s in counter.shapes)), "in_parts": counter.seconds,
        "in_parts_cpu": counter.cpu,
        "events": events,
    }


def main() -> None:
    import onnxruntime as ort

    args = ARGS
    print(f"jax {jax.__version__}, onnxruntime {ort.__version__}, threads {args.threads or 'defaults'}, "
          f"load average {os.getloadavg()[0]:.1f}; warm: medians of {args.rounds} interleaved rounds")
    print()
    print("| model | ORT session + first run (s) | to_jax (s) | JAX first call (s) | ORT warm (ms) | JAX warm (ms) "
          "| JAX / ORT warm (CPU) | max error / tolerance |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    rows = []
    for name in args.models.split(","):
        row = measure(name, args.rounds, args.threads, args.cache)
        rows.append(row)
        (ow, oc), (jw, jc) = row["warm"]["ort"], row["warm"]["jax"]
        print(f"| {name} | {row['ort_session'].wall + row['ort_first'].wall:.2f} "
              f"({row['ort_session'].cpu + row['ort_first'].cpu:.2f}) | {row['generate'].wall:.2f} | "
              f"{row['first'].wall:.2f} ({row['first'].cpu:.2f}) | {ow * 1e3:.0f} ({oc * 1e3:.0f}) | "
              f"{jw * 1e3:.0f} ({jc * 1e3:.0f}) | {jc / oc:.2f} | {row['error']:.3f} |", flush=True)
    print()
    print("wall seconds (process CPU seconds in parentheses); the error column is what the row checks")
    print()
    print("Where the first call went:")
    print()
    print("| model | value-dependent nodes | part calls | distinct compiled parts (function, shapes) | functions "
          "| in parts (s) | outside parts (s) | trace (n, s) | lower (n, s) | XLA compile (n, s) | options |")
    print("|---|---:|---:|---:|---:|---:|---:|---|---|---|---|")
    for row in rows:
        ev = row["events"]

        def event(key: str) -> str:
            n, s = ev.get(key, (0, 0.0))
            return f"{n}, {s:.2f}"

        print(f"| {row['name']} | {row['barriers']} | {row['part_calls']} | {row['part_shapes']} | "
              f"{row['part_functions']} | {row['in_parts']:.2f} ({row['in_parts_cpu']:.2f}) | "
              f"{row['first'].wall - row['in_parts']:.2f} ({row['first'].cpu - row['in_parts_cpu']:.2f}) | "
              f"{event('jaxpr_trace_duration')} | {event('jaxpr_to_mlir_module_duration')} | "
              f"{event('backend_compile_duration')} | {row['options'] or 'XLA defaults'} |")


if __name__ == "__main__":
    main()
