"""What one jitted call costs outside its kernels: per thunk, per call, and in Python, against onnxruntime.

A script, not a test: it prints tables and asserts no timing. JAX runs under ``limit_xla_threads(1)``
(the whole call on the calling thread) and onnxruntime in a one-thread session, as in every latency
benchmark here; all figures are per-call process CPU µs, medians of ``--rounds`` interleaved rounds of
``--calls`` consecutive calls of each runner.

1. **Per thunk, per node, per constant.** Chains of N kernels too small to cost anything, which neither
   runtime can merge, all compiled first and timed in the same rounds: for XLA, N reductions of an f32[8]
   input, each adding the previous sum (XLA CPU makes each a loop fusion of its own, one kernel thunk;
   ``lax.optimization_barrier`` would not do: XLA CPU removes it before fusing), N (8, 8) products by a
   constant weight each with YNNPACK fusing nothing (dot thunks: Eigen's contraction, as the depthwise
   models' products run), the same by one shared weight (the difference of the two slopes is the cost of
   a constant: XLA CPU wraps each in a buffer object on every call), and N products under XLA's defaults
   (a YNNPACK fusion each); for onnxruntime, N Relu nodes on an f32[8] input and N (8, 8) MatMuls. The
   thunks of each compiled program are counted from its optimized HLO (the entry computation's
   instructions other than parameters, constants, bitcasts and tuples), and the slope of CPU time against
   that count is the cost per thunk (per node for onnxruntime), the intercept the cost of a call.
2. **The call itself**, on the one-reduction program and a one-Relu session: ``jax.jit``'s call against
   the compiled executable's (``jitted.lower(x).compile()``, what ``bench_first_jit.py`` times), each with
   a numpy input (JAX wraps it in a device buffer per call) and with a device array made once
   (``jax.device_put``), with and without ``jax.block_until_ready`` and ``np.asarray`` of the output;
   onnxruntime's ``session.run`` with a numpy feed against ``run_with_iobinding`` with the input and
   the output bound once (what a deployment calling one model in a loop can do).
3. **The account of a corpus model** (``--corpus``): its folded program (``wb.jit_forward(forward,
   params)``, device inputs) and a one-thread session, timed in blocks of ``--block`` consecutive calls
   (the steady state of ``bench_first_jit.py --block``), its thunks counted by kind, its constants (XLA
   CPU wraps each in a buffer on every call) and the nodes onnxruntime ran (from its profile); the
   runtime's share is estimated with part 1's fits (per call, per kernel thunk, per dot thunk, per
   YNNPACK fusion, per constant), against onnxruntime's per call plus nodes times the mean of its Relu
   and MatMul slopes. ``--variant NAME=opt=value,...``
   (repeatable) adds the model compiled with these XLA options on top of its chosen ones, in the same
   rounds; ``--variant NAME=`` is a second copy of the chosen program (the noise floor).

    PYTHONPATH=$PWD /work/venv-o2j/bin/python tests/benchmarks/bench_thunk_cost.py [--lengths 1,25,50,100,200]
    WORKBENCH_VISION_CORPUS=1 PYTHONPATH=$PWD /work/venv-o2j/bin/python tests/benchmarks/bench_thunk_cost.py \\
        --lengths 1,50,200 --skip-call-forms --corpus mnasnet0_5 [--variant memopt=xla_cpu_scheduler_type=...]

Findings: docs/onnx_to_jax_corpus.md, "The call outside the kernels: per thunk, per constant, per call".
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from tests.benchmarks.hlo_kernels import computations
from tests.support.thread_limits import limit_xla_threads, ort_session
from workbench.onnx_to_jax.jit_options import YNN_FUSION_TYPE, YNN_NONE

# instructions of an optimized entry computation that XLA CPU runs no thunk for
NO_THUNK = frozenset({"parameter", "constant", "bitcast", "tuple", "get-tuple-element"})
SIZE = 8  # the chains' vectors and matrices: too small for their kernels to cost anything


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", default="1,25,50,100,200", help="comma-separated chain lengths N")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds")
    parser.add_argument("--calls", type=int, default=200, help="consecutive calls per round and runner")
    parser.add_argument("--skip-call-forms", action="store_true", help="leave out part 2 (the call forms)")
    parser.add_argument("--corpus", default="", help="comma-separated vision corpus models to account for (part 3)")
    parser.add_argument("--block", type=int, default=5, help="part 3: consecutive calls per runner and round")
    parser.add_argument("--model-rounds", type=int, default=15, help="part 3: rounds of blocks")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=opt=value,...",
                        help="part 3: the model also compiled with these XLA options added (repeatable)")
    return parser.parse_args()


def thunk_count(hlo: str) -> dict[str, int]:
    """{instruction kind: count} of the thunks an optimized HLO module's entry computation runs."""
    found, entry = computations(hlo)
    counts: dict[str, int] = {}
    for line in found[entry]:
        parts = line.split("=", 1)
        if len(parts) < 2:
            continue
        words = parts[1].split("(", 1)[0].split()
        kind = words[-1] if words else ""
        if kind == "fusion" and "kind=kCustom" in line:
            kind = "library-fusion"  # YNNPACK's (priced at the ynn-dot chain's rate in part 3)
        if kind and kind not in NO_THUNK:
            counts[kind] = counts.get(kind, 0) + 1
    return counts


def constant_count(hlo: str) -> int:
    """The constants of an optimized HLO module's entry computation (buffers XLA CPU wraps on every call)."""
    found, entry = computations(hlo)
    return sum(1 for line in found[entry] if " constant(" in line)


def time_rounds(runners: dict[Any, Callable[[], object]], rounds: int, calls: int) -> dict[Any, float]:
    """Median process CPU µs per call of each runner over interleaved rounds of ``calls`` consecutive calls."""
    times: dict[Any, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            run()  # the first call after another runner is not timed
            start = time.process_time()
            for _ in range(calls):
                run()
            times[name].append((time.process_time() - start) / calls * 1e6)
    return {name: statistics.median(values) for name, values in times.items()}


def fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    """(intercept, slope) of the least-squares line through ``points`` (x, y)."""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    slope = sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x in xs)
    return my - slope * mx, slope


def _onnx_chain(op: str, n: int):
    """An ONNX model of ``n`` ``op`` nodes in a chain (Relu on f32[SIZE], or MatMul by a constant (SIZE, SIZE))."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    shape = [SIZE] if op == "Relu" else [SIZE, SIZE]
    nodes, inits, previous = [], [], "x"
    for i in range(n):
        if op == "Relu":
            nodes.append(helper.make_node("Relu", [previous], [f"y{i}"]))
        else:
            weight = np.eye(SIZE) + 0.01 * np.random.default_rng(i).standard_normal((SIZE, SIZE))
            inits.append(numpy_helper.from_array(weight.astype(np.float32), f"w{i}"))
            nodes.append(helper.make_node("MatMul", [previous, f"w{i}"], [f"y{i}"]))
        previous = f"y{i}"
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info(previous, TensorProto.FLOAT, shape)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _jax_chain(kind: str, n: int) -> tuple[Callable, dict[str, str]]:
    """A function of ``n`` chained kernels of ``kind`` and the compiler options that make them that kind:
    reductions of an f32[SIZE] (``kernel``: one XLA kernel thunk each), (SIZE, SIZE) products by a constant
    weight of their own with YNNPACK fusing nothing (``eigen-dot``: dot thunks, Eigen's contraction, as the
    depthwise models' products run), the same by one shared constant (``eigen-dot-shared``), or by weights
    of their own with XLA's defaults (``ynn-dot``: one YNNPACK fusion each)."""
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.default_rng(0)
    # one constant per product, as a model's folded weights are (XLA would share one repeated constant)
    weights = [(np.eye(SIZE) + 0.01 * rng.standard_normal((SIZE, SIZE))).astype(np.float32) for _ in range(n)]
    if kind == "eigen-dot-shared":  # one constant for every product: the difference is the cost per constant
        weights = [weights[0]] * n

    def reductions(a):
        s = jnp.float32(0)
        for _ in range(n):
            s = jnp.sum((a + s) * 0.125)
        return s

    def products(a):
        for weight in weights:
            a = a @ weight
        return a

    if kind == "kernel":
        return reductions, {}
    return products, ({} if kind == "ynn-dot" else {YNN_FUSION_TYPE: YNN_NONE})


def chains(lengths: list[int], rounds: int, calls: int) -> dict[str, tuple[float, float, float, float]]:
    """Part 1: CPU µs per call against the number of thunks / nodes, and the fitted per-thunk cost.
    Every chain of every kind is compiled first and all are timed in the same interleaved rounds, so a
    change of the machine's load hits them alike. Returns {JAX kind: (JAX per call, per thunk,
    onnxruntime per call, per node)} in µs."""
    import jax
    import numpy as np

    pairs = {"kernel": ("Relu", (SIZE,)), "eigen-dot": ("MatMul", (SIZE, SIZE)),
             "eigen-dot-shared": ("MatMul", (SIZE, SIZE)), "ynn-dot": ("MatMul", (SIZE, SIZE))}
    runners: dict[tuple[str, str, int], Callable[[], object]] = {}
    counts: dict[tuple[str, int], dict[str, int]] = {}
    for jax_kind, (onnx_op, shape) in pairs.items():
        x = jax.device_put(np.ones(shape, np.float32))
        feed = {"x": np.ones(shape, np.float32)}
        for n in lengths:
            function, options = _jax_chain(jax_kind, n)
            compiled = jax.jit(function, compiler_options=options or None).lower(x).compile()
            hlo = compiled.as_text()
            counts[jax_kind, n] = {**thunk_count(hlo), "constants": constant_count(hlo)}
            out = np.asarray(compiled(x))
            if not np.all(np.isfinite(out)):
                raise RuntimeError(f"the {jax_kind} chain of {n} computed {out}")
            runners["jax", jax_kind, n] = functools.partial(lambda c, a: jax.block_until_ready(c(a)), compiled, x)
            if ("ort", onnx_op, n) not in runners:
                session = ort_session(_onnx_chain(onnx_op, n), 1)
                runners["ort", onnx_op, n] = functools.partial(session.run, None, feed)
    medians = time_rounds(runners, rounds, calls)
    fits = {}
    for jax_kind, (onnx_op, _) in pairs.items():
        print(f"\nchains of {jax_kind} thunks (JAX, device input) and {onnx_op} nodes (onnxruntime, session.run)")
        print(f"{'N':>5} {'JAX thunks':>11} {'JAX us':>9} {'ORT us':>9}  thunk kinds")
        jax_points, ort_points = [], []
        for n in lengths:
            thunks = sum(counts[jax_kind, n].values()) - counts[jax_kind, n]["constants"]
            jax_us, ort_us = medians["jax", jax_kind, n], medians["ort", onnx_op, n]
            jax_points.append((thunks, jax_us))
            ort_points.append((n, ort_us))
            print(f"{n:>5} {thunks:>11} {jax_us:>9.2f} {ort_us:>9.2f}  {counts[jax_kind, n]}")
        (j0, j1), (o0, o1) = fit(jax_points), fit(ort_points)
        fits[jax_kind] = (j0, j1, o0, o1)
        print(f"fit: JAX {j0:.2f} us per call + {j1:.3f} us per thunk; onnxruntime {o0:.2f} us per call + "
              f"{o1:.3f} us per node")
    print(f"per constant (eigen-dot's slope less eigen-dot-shared's): "
          f"{fits['eigen-dot'][1] - fits['eigen-dot-shared'][1]:.3f} us; load average {os.getloadavg()[0]:.1f}",
          flush=True)
    return fits


def call_forms(rounds: int, calls: int) -> None:
    """Part 2: the same one-kernel program called the ways a benchmark or a deployment can call it."""
    import jax
    import numpy as np
    import onnxruntime as ort

    x_np = np.ones((SIZE,), np.float32)
    x_dev = jax.device_put(x_np)
    jitted = jax.jit(_jax_chain("kernel", 1)[0])
    compiled = jitted.lower(x_dev).compile()
    identity = jax.jit(lambda a: a).lower(x_dev).compile()
    session = ort_session(_onnx_chain("Relu", 1), 1)
    binding = session.io_binding()
    out = np.empty((SIZE,), np.float32)
    binding.bind_ortvalue_input("x", ort.OrtValue.ortvalue_from_numpy(x_np))
    binding.bind_ortvalue_output("y0", ort.OrtValue.ortvalue_from_numpy(out))
    feed = {"x": x_np}
    runners: dict[str, Callable[[], object]] = {
        "jax.jit, numpy input, block_until_ready": lambda: jax.block_until_ready(jitted(x_np)),
        "jax.jit, device input, block_until_ready": lambda: jax.block_until_ready(jitted(x_dev)),
        "jax.jit, device input, np.asarray(output)": lambda: np.asarray(jitted(x_dev)),
        "jax.jit, device input, no wait": lambda: jitted(x_dev),
        "compiled, numpy input, block_until_ready": lambda: jax.block_until_ready(compiled(x_np)),
        "compiled, device input, block_until_ready": lambda: jax.block_until_ready(compiled(x_dev)),
        "compiled, device input, no wait": lambda: compiled(x_dev),
        "compiled identity (no thunk), device input": lambda: jax.block_until_ready(identity(x_dev)),
        "onnxruntime session.run, numpy feed": lambda: session.run(None, feed),
        "onnxruntime run_with_iobinding, bound once": lambda: session.run_with_iobinding(binding),
    }
    medians = time_rounds(runners, rounds, calls)
    print(f"\none reduction (JAX) / one Relu (onnxruntime), CPU us per call; load average {os.getloadavg()[0]:.1f}")
    for name, value in medians.items():
        print(f"  {name:48s} {value:8.2f}")


def ort_nodes(model, feeds: list) -> dict[str, int]:
    """{op type: count} of the nodes a one-thread onnxruntime session of ``model`` runs (its profile of one call)."""
    import json
    import tempfile

    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
    options.log_severity_level = 3
    options.enable_profiling = True
    with tempfile.TemporaryDirectory() as folder:
        options.profile_file_prefix = os.path.join(folder, "profile")
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        session.run(None, {i.name: x for i, x in zip(session.get_inputs(), feeds)})
        with open(session.end_profiling(), encoding="utf-8") as trace:
            events = json.load(trace)
    counts: dict[str, int] = {}
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            op = event["args"].get("op_name", "?")
            counts[op] = counts.get(op, 0) + 1
    return counts


def _variant_options(text: str) -> dict[str, str | bool]:
    """XLA options from ``opt=value,opt=value`` (``true``/``false`` become booleans)."""
    options: dict[str, str | bool] = {}
    for item in filter(None, text.split(",")):
        name, _, value = item.partition("=")
        options[name] = {"true": True, "false": False}.get(value, value)
    return options


def time_blocks(runners: dict[str, Callable[[], object]], rounds: int, block: int) -> dict[str, float]:
    """Median CPU µs of the calls made right after a call of the same runner: rounds of ``block`` consecutive
    calls each, the runners' order rotated every round, the first call of each block not counted."""
    names = list(runners)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(rounds):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            runners[name]()
            for _ in range(block - 1):
                start = time.process_time()
                runners[name]()
                times[name].append((time.process_time() - start) * 1e6)
    return {name: statistics.median(values) for name, values in times.items()}


def account(names: list[str], variants: list[str], fits: dict[str, tuple[float, float, float, float]],
            rounds: int, block: int) -> None:
    """Part 3: each corpus model's steady-state latency beside what part 1's fits say its calls cost outside
    the kernels, in JAX (thunks) and in onnxruntime (nodes); with ``variants``, the model under more options."""
    import jax
    import numpy as np

    import workbench as wb
    from tests.onnx_to_jax.test_corpus_vision import export
    from workbench.onnx_to_jax.api import generate_module

    for name in names:
        model, feeds = export(name, "legacy")
        generated = generate_module(model)
        params = {k: (jax.device_put(v) if v.dtype.kind in "fc" else v) for k, v in generated.params.items()}
        inputs = [jax.device_put(x) for x in feeds]
        session = ort_session(model, 1)
        feed = {i.name: x for i, x in zip(session.get_inputs(), feeds)}
        expected = session.run(None, feed)[0]
        runners: dict[str, Callable[[], object]] = {}
        print(f"\n{name}: {len(model.graph.node)} ONNX nodes; onnxruntime runs {ort_nodes(model, feeds)}")
        for variant in ["chosen=", *variants]:
            label, _, text = variant.partition("=")
            jitted = wb.jit_forward(generated.forward, params, compiler_options=_variant_options(text) or None)
            compiled = jitted.lower(*inputs).compile()
            hlo = compiled.as_text()
            out = jax.block_until_ready(compiled(*inputs))
            error = float(np.max(np.abs(np.asarray(out[0] if isinstance(out, tuple) else out) - expected)))
            counts = thunk_count(hlo)
            constants = constant_count(hlo)
            print(f"  {label}: {sum(counts.values())} thunks {counts}, {constants} constants, "
                  f"max |JAX - ORT| {error:.1e}", flush=True)
            runners[label] = functools.partial(lambda c: jax.block_until_ready(c(*inputs)), compiled)
            if label == "chosen":
                kernel_call, kernel_thunk = fits["kernel"][:2]
                dot_thunk = fits["eigen-dot-shared"][1]
                per_constant = fits["eigen-dot"][1] - dot_thunk
                dots, library = counts.get("dot", 0), counts.get("library-fusion", 0)
                others = sum(counts.values()) - dots - library
                library_thunk = fits["ynn-dot"][1]
                jax_outside = (kernel_call + others * kernel_thunk + dots * dot_thunk + library * library_thunk
                               + constants * per_constant)
                print(f"    outside the kernels by part 1's fits: {kernel_call:.0f} per call + {others} x "
                      f"{kernel_thunk:.2f} + {dots} dots x {dot_thunk:.2f} + {library} library fusions x "
                      f"{library_thunk:.2f} + {constants} constants x {per_constant:.2f} = {jax_outside:.0f} us")
        runners["onnxruntime"] = lambda: session.run(None, feed)
        medians = time_blocks(runners, rounds, block)
        ort_count = sum(ort_nodes(model, feeds).values())
        ort_outside = fits["kernel"][2] + ort_count * statistics.fmean([fits["kernel"][3], fits["eigen-dot"][3]])
        print("  steady state, CPU us per call: " + ", ".join(f"{k} {v:.0f}" for k, v in medians.items())
              + f"; load average {os.getloadavg()[0]:.1f}")
        gap = medians["chosen"] - medians["onnxruntime"]
        print(f"  gap {gap:.0f} us ({medians['chosen'] / medians['onnxruntime']:.2f}x); outside the kernels by "
              f"part 1's fits: JAX {jax_outside:.0f} us, onnxruntime {ort_outside:.0f} us, difference "
              f"{jax_outside - ort_outside:.0f} us = {(jax_outside - ort_outside) / gap:.0%} of the gap", flush=True)


def main() -> None:
    args = _parse_args()
    limit_xla_threads(1)  # before JAX starts
    lengths = [int(n) for n in args.lengths.split(",")]
    fits = chains(lengths, args.rounds, args.calls)
    if not args.skip_call_forms:
        call_forms(args.rounds, args.calls)
    if args.corpus:
        account(args.corpus.split(","), args.variant, fits, args.model_rounds, args.block)


if __name__ == "__main__":
    main()
