"""Where a jitted corpus model's time goes, kernel kind by kernel kind, next to onnxruntime's own profile.

A script, not a test: it prints two tables per model. The model (the vision corpus's legacy export,
random weights, 96x96 input) runs as ``wb.jit_forward(forward, params)`` (weights folded, the model's
XLA options) and as an onnxruntime session, one thread each, in interleaved calls, while
``jax.profiler`` records XLA's thunks and onnxruntime its nodes (``SessionOptions.enable_profiling``).
Each kernel is put in a kind and the map it writes:

- XLA: read from the compiled HLO, a fusion holding a ``dot`` is a ``dot`` (1x1 convolutions, Gemm,
  the small dense convolutions written as dots, with what YNNPACK fused around them), one holding a
  ``convolution`` a ``conv``, one of four or more slices of one input the ``depthwise`` taps
  (``_depthwise_conv_nhwc``), one whose root is a ``pad`` a ``pad``, one holding a ``reduce`` a
  ``reduce`` (pooling), a ``while`` a ``loop`` (the larger depthwise kernels' tap loop, timed as a
  whole: its body's kernels are not counted apart), the rest
  ``elementwise``/``layout`` (transposes and copies);
- onnxruntime: a ``Conv`` whose weight has one input channel per group is ``depthwise``, a 1x1 one or
  a ``Gemm``/``MatMul`` a ``dot``, other ``Conv`` a ``conv``, its NCHWc reorders ``layout``, pooling
  ``reduce``, the rest ``elementwise``.

Per kind and map: the median over the calls of each kernel's duration, summed over the kernels. The
durations are the profilers' wall-clock spans, so on a loaded machine they include time the thread
was not running: compare the two columns of one run (taken in the same interleaved calls), not runs.
Printed first: each runtime's median process CPU time per call during the profile and the sum of its
kernels; the difference is roughly what runs outside the kernels (dispatch, XLA's thunk executor and
its worker threads, onnxruntime's session), only roughly because it subtracts wall spans from CPU
time. ``--top`` lists the slowest kernels of each.

    WORKBENCH_VISION_CORPUS=1 PYTHONPATH=$PWD /work/venv-o2j/bin/python tests/benchmarks/bench_op_profile.py \\
        --corpus mobilenet_v2,efficientnet_b0 [--calls 40] [--top 12] [--traces DIR]

Findings: docs/onnx_to_jax_corpus.md, "Where the depthwise-separable models' time goes".
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import math
import os
import re
import statistics
import tempfile
import time
from typing import Any

from tests.support.thread_limits import limit_xla_threads


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", required=True, help="comma-separated vision corpus models")
    parser.add_argument("--calls", type=int, default=40, help="profiled calls of each runtime (interleaved)")
    parser.add_argument("--top", type=int, default=12, help="slowest kernels listed per runtime")
    parser.add_argument("--traces", help="keep both profiles under this folder (default: a temporary one, removed)")
    return parser.parse_args()


def _map(shape: list[int]) -> str:
    """The spatial map an XLA value holds: HxW of a channels-last (N, H, W, C) one, sqrt of the rows of a
    2-D (positions, channels) one (a 1x1 convolution's dot)."""
    if len(shape) == 4:
        return f"{shape[1]}x{shape[2]}"
    if len(shape) == 2 and 1 in shape:  # a vector: a pooled value, a squeeze-excitation product
        return "1x1"
    if len(shape) == 2:
        side = math.isqrt(shape[0])
        return f"{side}x{side}" if side * side == shape[0] else f"{shape[0]} rows"
    return "-"


def _ort_kind(event: dict[str, Any]) -> tuple[str, str]:
    args = event["args"]
    op = args["op_name"]
    inputs = [next(iter(t.values())) for t in args["input_type_shape"]]
    output = next(iter(args["output_type_shape"][0].values()))
    if len(output) == 4:  # NCHW
        where = f"{output[2]}x{output[3]}"
    else:  # (rows, features): a Gemm's rows are positions as XLA's 2-D dots' are
        where = _map([output[0], output[-1]]) if len(output) == 2 else "-"
    if op in ("Conv", "FusedConv"):
        weight = inputs[1]
        if weight[1] == 1 and weight[0] > 1 and inputs[0][1] == weight[0]:
            return "depthwise", where
        return ("dot" if weight[2:] == [1, 1] else "conv"), where
    if op in ("Gemm", "MatMul", "FusedMatMul", "FusedGemm"):
        return "dot", where
    if op.startswith("Reorder"):
        return "layout", where
    if "Pool" in op or op.startswith("Reduce"):
        return "reduce", where
    return "elementwise", where


def _hlo_kinds(hlo: str) -> dict[str, tuple[str, str]]:
    """Kind and map of each instruction of the entry computation, from the compiled HLO text."""
    bodies: dict[str, str] = {}
    for match in re.finditer(r"\n(?:%?)([\w.\-]+) [^\n]*\{\n(.*?)\n\}", hlo, re.S):
        bodies[match.group(1)] = match.group(2)
    entry = hlo[hlo.index("\nENTRY"):]
    kinds: dict[str, tuple[str, str]] = {}
    for line in entry.splitlines():
        loop = re.match(r"\s+(?:ROOT )?%([\w.\-]+) = .* while\(", line)
        if loop:
            kinds[loop.group(1)] = ("loop", "-")
            continue
        match = re.match(r"\s+(?:ROOT )?%([\w.\-]+) = \w+\[([\d,]*)\]\S* (\w[\w-]*)\(", line)
        if not match:
            continue
        name, dims, op = match.groups()
        shape = [int(d) for d in dims.split(",") if d]
        called = re.search(r"calls=%([\w.\-]+)", line)
        body = bodies.get(called.group(1), "") if called else ""
        if op == "dot" or " dot(" in body:
            kind = "dot"
        elif op == "convolution" or " convolution(" in body:
            kind = "conv"
        elif body.count(" slice(") >= 4:
            kind = "depthwise"
        elif re.search(r"ROOT %\S+ = \S+ pad\(", body) or op == "pad":
            kind = "pad"
        elif op == "reduce" or " reduce(" in body:
            kind = "reduce"
        elif op in ("copy", "transpose") or re.search(r"ROOT %\S+ = \S+ (copy|transpose)\(", body):
            kind = "layout"
        elif op == "fusion":
            kind = "elementwise"
        else:
            continue
        kinds[name] = (kind, _map(shape))
    return kinds


def _table(title: str, rows: dict[tuple[str, str], tuple[float, float]]) -> None:
    print(f"  {title}")
    print(f"  {'kind':12s} {'map':>9s} {'XLA us':>9s} {'ORT us':>9s} {'XLA-ORT':>9s}")
    for (kind, where), (xla, ort) in sorted(rows.items(), key=lambda kv: -(kv[1][0] - kv[1][1])):
        print(f"  {kind:12s} {where:>9s} {xla:9.1f} {ort:9.1f} {xla - ort:+9.1f}")


def profile(name: str, calls: int, top: int, workdir: str) -> None:
    """Profile corpus model ``name`` in both runtimes, writing the profiles under ``workdir``, and print the tables."""
    import jax
    import numpy as np
    import onnxruntime as ort

    import workbench as wb
    from tests.onnx_to_jax.test_corpus_vision import export

    model, feeds = export(name, "legacy")
    os.makedirs(workdir, exist_ok=True)  # onnxruntime writes its profile there but makes no folder
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.enable_profiling = True
    options.profile_file_prefix = os.path.join(workdir, "ort")
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feed = {i.name: x for i, x in zip(session.get_inputs(), feeds)}
    forward, params = wb.to_jax(model)
    jitted = wb.jit_forward(forward, params)
    expected = session.run(None, feed)[0]
    got = jax.block_until_ready(jitted(*feeds))
    got = np.asarray(got[0] if isinstance(got, (tuple, list)) else got)
    warm = 5
    for _ in range(warm):
        jax.block_until_ready(jitted(*feeds))
        session.run(None, feed)
    cpu: dict[str, list[float]] = {"XLA": [], "ORT": []}
    jax.profiler.start_trace(os.path.join(workdir, "jax"))
    for _ in range(calls):
        start = time.process_time()
        jax.block_until_ready(jitted(*feeds))
        cpu["XLA"].append(time.process_time() - start)
        start = time.process_time()
        session.run(None, feed)
        cpu["ORT"].append(time.process_time() - start)
    jax.profiler.stop_trace()
    ort_file = session.end_profiling()

    ort_spans: dict[str, list[float]] = collections.defaultdict(list)
    ort_kind: dict[str, tuple[str, str]] = {}
    with open(ort_file) as handle:
        for event in json.load(handle):
            if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
                ort_spans[event["name"]].append(event["dur"])
                ort_kind[event["name"]] = _ort_kind(event)
    hlo = jitted.lower(*feeds).compile().as_text()
    xla_kind = _hlo_kinds(hlo)
    xla_spans: dict[str, list[float]] = collections.defaultdict(list)
    trace = glob.glob(os.path.join(workdir, "jax", "**", "*.xplane.pb"), recursive=True)[0]
    for plane in jax.profiler.ProfileData.from_file(trace).planes:
        for line in plane.lines:
            # XLA's worker threads ("XLA..." lines), or the calling thread ("python") once JAX runs its
            # thunks there (one thread, synchronous dispatch: tests/support/thread_limits.py)
            for event in line.events:
                if event.name in xla_kind:
                    xla_spans[event.name].append(event.duration_ns / 1e3)

    def medians(spans: dict[str, list[float]], skip: int) -> dict[str, float]:
        return {k: statistics.median(v[skip:] or v) for k, v in spans.items()}

    xla_median = medians(xla_spans, 0)
    ort_median = medians(ort_spans, warm + 1)  # the profile holds the warm-up calls too
    rows: dict[tuple[str, str], list[float]] = collections.defaultdict(lambda: [0.0, 0.0])
    for kernel, us in xla_median.items():
        rows[xla_kind[kernel]][0] += us
    for node, us in ort_median.items():
        rows[ort_kind[node]][1] += us
    error = float(np.max(np.abs(got - expected)))
    print(f"{name}: load average {os.getloadavg()[0]:.1f}, {calls} calls, max |XLA - ORT| {error:.1e}")
    for runtime, kernels in (("XLA", xla_median), ("ORT", ort_median)):
        per_call = statistics.median(cpu[runtime]) * 1e6
        total = sum(kernels.values())
        print(f"  {runtime}: {per_call:8.1f} us CPU per call, kernels {total:8.1f} us ({len(kernels)}), "
              f"outside the kernels {per_call - total:8.1f} us")
    by_kind: dict[tuple[str, str], tuple[float, float]] = collections.defaultdict(lambda: (0.0, 0.0))
    for (kind, _), (xla, ort_us) in rows.items():
        old = by_kind[(kind, "all")]
        by_kind[(kind, "all")] = (old[0] + xla, old[1] + ort_us)
    _table("by kind", dict(by_kind))
    _table("by kind and map", {k: (v[0], v[1]) for k, v in rows.items()})
    for runtime, kernels, kinds in (("XLA", xla_median, xla_kind), ("ORT", ort_median, ort_kind)):
        print(f"  slowest {runtime} kernels:")
        for kernel, us in sorted(kernels.items(), key=lambda kv: -kv[1])[:top]:
            print(f"    {us:8.1f} us  {kinds[kernel][0]:11s} {kinds[kernel][1]:>9s}  {kernel[:70]}")


def main() -> None:
    args = _parse_args()
    limit_xla_threads(1)  # before JAX is imported: XLA reads the flag once
    for name in args.corpus.split(","):
        if args.traces:
            profile(name, args.calls, args.top, os.path.join(args.traces, name))
        else:
            with tempfile.TemporaryDirectory(prefix=f"op_profile_{name}_") as workdir:
                profile(name, args.calls, args.top, workdir)


if __name__ == "__main__":
    main()
