"""Conversion benchmark against jax2onnx: cold start, warm GPT conversion, scaling with depth.

A script, not a test: it prints a table. jax2onnx runs in its own interpreter (``--jax2onnx-python``,
e.g. a venv made only for this benchmark) so its versions never touch ours; every measurement that
involves an import runs in a fresh process.

    PYTHONPATH=$PWD /work/venv/bin/python tests/benchmarks/bench_convert.py \
        --jax2onnx-python /work/venv-j2o/bin/python [--latency-only]

Targets (issue 2): cold start <= 1.25x the floor (import jax+flax, build the MLP, make_jaxpr);
warm 12-layer GPT <= 0.5x jax2onnx's time with no more nodes and no slower onnxruntime latency;
48 layers <= 4.5x 12 layers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GPT = {"d_model": 256, "heads": 8, "seq": 64, "vocab": 1000}

# ---------------------------------------------------------------- code run in fresh processes
_MLP = """
import jax
from workbench.zoo import nnx_mlp
built = nnx_mlp()
model = built.fn
"""

COLD_FLOOR = _MLP + """
jax.make_jaxpr(built.eval_fn())(jax.ShapeDtypeStruct((1, 30), 'float32'))
"""
COLD_OURS = _MLP.replace("import jax\n", "import jax\nimport workbench as wb\n") + """
wb.to_onnx(model, [("B", 30)])
"""
COLD_JAX2ONNX = _MLP.replace("import jax\n", "import jax\nfrom jax2onnx import to_onnx\n") + """
to_onnx(model, [("B", 30)])
"""

WARM = """
import json, sys, time
import jax, jax.numpy as jnp
from workbench.zoo import nnx_gpt
tool, layers, repeats, out_path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
cfg = json.loads(sys.argv[5])
built = nnx_gpt(layers=layers, symbolic_seq=False, **cfg)
spec = jax.ShapeDtypeStruct((1, cfg["seq"]), jnp.int32)
if tool == "ours":
    import workbench as wb
    convert = lambda: wb.to_onnx(built.fn, [spec])
elif tool == "jax2onnx":
    from jax2onnx import to_onnx
    convert = lambda: to_onnx(built.fn, [spec])
else:
    model = built.eval_fn()
    convert = lambda: jax.make_jaxpr(lambda t: model(t))(spec)
convert()  # warm-up: imports, plugin loading, jit caches
times = []
for _ in range(repeats):
    start = time.perf_counter()
    result = convert()
    times.append(time.perf_counter() - start)
nodes = None
if tool != "jaxpr":
    import onnx
    onnx.save(result, out_path)
    nodes = len(result.graph.node)
print(json.dumps({"seconds": min(times), "nodes": nodes}))
"""


def _run(python: str, code: str, *args: str) -> tuple[float, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}
    start = time.perf_counter()
    done = subprocess.run([python, "-c", code, *args], env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{python} failed:\n{done.stderr[-3000:]}")
    return elapsed, done.stdout


def cold_start(python: str, code: str, repeats: int) -> float:
    return min(_run(python, code)[0] for _ in range(repeats))


def warm(python: str, tool: str, layers: int, repeats: int, out_path: str) -> dict:
    _, stdout = _run(python, WARM, tool, str(layers), str(repeats), out_path, json.dumps(GPT))
    return json.loads(stdout.strip().splitlines()[-1])


# a warm converter that converts once per line read from stdin and prints the seconds it took
WARM_SERVER = WARM.replace(
    """times = []
for _ in range(repeats):""",
    """print("ready", flush=True)
times = []
for _ in sys.stdin:""",
).replace(
    """    times.append(time.perf_counter() - start)
""",
    """    times.append(time.perf_counter() - start)
    print(times[-1], flush=True)
""",
)


def warm_lockstep(tools: dict[str, str], layers: int, rounds: int) -> dict[str, list[float]]:
    """Warm conversion times of each tool ({name: python}) in ``rounds`` interleaved rounds.

    Each tool runs in its own warmed-up process; a round converts once with each, one after the
    other, so a load change on a shared machine hits both tools alike instead of one whole run.
    """
    env = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}
    procs = {
        name: subprocess.Popen([python, "-c", WARM_SERVER, name, str(layers), "0", os.devnull, json.dumps(GPT)],
                               env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True)  # errors: the plain warm run before this one shows them
        for name, python in tools.items()
    }
    try:
        for name, proc in procs.items():
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError(f"the {name} converter did not start")
        times: dict[str, list[float]] = {name: [] for name in procs}
        for _ in range(rounds):
            for name, proc in procs.items():
                proc.stdin.write("go\n")
                proc.stdin.flush()
                times[name].append(float(proc.stdout.readline()))
        return times
    finally:
        for proc in procs.values():
            proc.stdin.close()
            proc.wait(timeout=120)


def ort_latencies(paths: list[str], *, threads: int, rounds: int, runs: int) -> list[float]:
    """Median onnxruntime latency (s) of each model, measured in interleaved rounds (A, B, A, B, ...).

    With one intra-op thread onnxruntime runs on the calling thread, so its CPU time is measured
    (time.thread_time): it leaves out the time the process waits for a core on a shared machine.
    With more threads (0 = onnxruntime's default, one per core) wall time is measured.
    """
    import numpy as np
    import onnxruntime as ort

    tokens = np.random.default_rng(0).integers(0, GPT["vocab"], (1, GPT["seq"])).astype(np.int32)
    sessions = []
    for path in paths:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3  # jax2onnx's models carry unused initializers onnxruntime warns about
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: tokens}
        for _ in range(5):
            session.run(None, feed)
        sessions.append((session, feed))
    clock = time.thread_time if threads == 1 else time.perf_counter
    times: list[list[float]] = [[] for _ in paths]
    for _ in range(rounds):
        for index, (session, feed) in enumerate(sessions):
            for _ in range(runs):
                start = clock()
                session.run(None, feed)
                times[index].append(clock() - start)
    return [float(np.median(samples)) for samples in times]


def latency_rows(ours: str, theirs: str | None, label: str, rounds: int, runs: int) -> list[str]:
    """Table rows: onnxruntime latency of our model and jax2onnx's, 1 thread and default threads."""
    rows = []
    for threads, name in ((1, "1 thread, CPU ms"), (0, "default threads, ms")):
        paths = [ours] + ([theirs] if theirs else [])
        medians = [seconds * 1e3 for seconds in ort_latencies(paths, threads=threads, rounds=rounds, runs=runs)]
        other = medians[1] if theirs else "-"
        ratio = f"{medians[0] / medians[1]:.2f}x" if theirs else "-"
        rows.append(_row(f"{label} ORT {name}", medians[0], other, ratio, "<= 1x"))
    return rows


def _row(label: str, ours: float | str, other: float | str, ratio: str, target: str) -> str:
    def fmt(v: float | str) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    return f"| {label:<38} | {fmt(ours):>10} | {fmt(other):>10} | {ratio:>10} | {target:<22} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jax2onnx-python", default="/work/venv-j2o/bin/python",
                        help="interpreter with jax2onnx installed (its own venv); '' skips jax2onnx")
    parser.add_argument("--layers", default="12,24,48", help="layer counts for the scaling run")
    parser.add_argument("--cold-repeats", type=int, default=3)
    parser.add_argument("--warm-repeats", type=int, default=3)
    parser.add_argument("--ort-rounds", type=int, default=10, help="interleaved latency rounds (ours, theirs, ...)")
    parser.add_argument("--ort-runs", type=int, default=20, help="runs of each model per round")
    parser.add_argument("--latency-only", action="store_true",
                        help="only convert the first GPT with both tools and measure onnxruntime latency")
    parser.add_argument("--only", choices=("all", "warm"), default="all",
                        help="'warm': only the warm conversion rows (first layer count: time, nodes, ORT latency)")
    parser.add_argument("--warm-rounds", type=int, default=0,
                        help="also time the first GPT in this many interleaved rounds (ours, jax2onnx, ours, ...)")
    args = parser.parse_args()
    ours_python = sys.executable
    j2o = args.jax2onnx_python or None
    layer_counts = [int(n) for n in args.layers.split(",")]
    if args.only == "warm":
        layer_counts = layer_counts[:1]
    lines = [_row("measure", "workbench", "jax2onnx" if j2o else "-", "ratio", "target"),
             "|" + "|".join("-" * n for n in (40, 12, 12, 12, 24)) + "|"]
    if args.latency_only:
        base = layer_counts[0]
        with tempfile.TemporaryDirectory() as tmp:
            ours = warm(ours_python, "ours", base, 1, f"{tmp}/ours.onnx")
            theirs = warm(j2o, "jax2onnx", base, 1, f"{tmp}/j2o.onnx") if j2o else None
            lines.append(_row(f"GPT-{base} nodes", str(ours["nodes"]), str(theirs["nodes"]) if theirs else "-",
                              f"{ours['nodes'] / theirs['nodes']:.2f}x" if theirs else "-", "<= 1x"))
            lines += latency_rows(f"{tmp}/ours.onnx", f"{tmp}/j2o.onnx" if theirs else None, f"GPT-{base}",
                                  args.ort_rounds, args.ort_runs)
        print("\n".join(lines))
        return

    if args.only == "all":
        floor = cold_start(ours_python, COLD_FLOOR, args.cold_repeats)
        ours_cold = cold_start(ours_python, COLD_OURS, args.cold_repeats)
        j2o_cold = cold_start(j2o, COLD_JAX2ONNX, args.cold_repeats) if j2o else "-"
        lines.append(_row("cold start MLP, s (floor %.2f s)" % floor, ours_cold, j2o_cold,
                          f"{ours_cold / floor:.2f}x fl", "<= 1.25x floor"))

    with tempfile.TemporaryDirectory() as tmp:
        scaling: dict[int, dict[str, dict]] = {}
        for layers in layer_counts:
            row = {"ours": warm(ours_python, "ours", layers, args.warm_repeats, f"{tmp}/ours{layers}.onnx"),
                   "jaxpr": warm(ours_python, "jaxpr", layers, args.warm_repeats, "")}
            if j2o:
                row["jax2onnx"] = warm(j2o, "jax2onnx", layers, args.warm_repeats, f"{tmp}/j2o{layers}.onnx")
            scaling[layers] = row
        base = layer_counts[0]
        first = scaling[base]
        j2o_first = first.get("jax2onnx")
        lines.append(_row(f"warm GPT-{base} convert, s", first["ours"]["seconds"],
                          j2o_first["seconds"] if j2o_first else "-",
                          f"{first['ours']['seconds'] / j2o_first['seconds']:.2f}x" if j2o_first else "-", "<= 0.5x"))
        if args.warm_rounds and j2o:
            rounds = warm_lockstep({"ours": ours_python, "jax2onnx": j2o}, base, args.warm_rounds)
            per_round = sorted(o / t for o, t in zip(rounds["ours"], rounds["jax2onnx"], strict=True))
            lines.append(_row(f"warm GPT-{base}, {args.warm_rounds} lockstep rounds, s", min(rounds["ours"]),
                              min(rounds["jax2onnx"]), f"{min(rounds['ours']) / min(rounds['jax2onnx']):.2f}x",
                              "<= 0.5x"))
            lines.append(_row("  per-round ratio median (min-max)", "", "",
                              f"{per_round[len(per_round) // 2]:.2f}x", f"{per_round[0]:.2f}-{per_round[-1]:.2f}x"))
        lines.append(_row(f"GPT-{base} nodes", str(first["ours"]["nodes"]),
                          str(j2o_first["nodes"]) if j2o_first else "-",
                          f"{first['ours']['nodes'] / j2o_first['nodes']:.2f}x" if j2o_first else "-", "<= 1x"))
        lines += latency_rows(f"{tmp}/ours{base}.onnx", f"{tmp}/j2o{base}.onnx" if j2o_first else None,
                              f"GPT-{base}", args.ort_rounds, args.ort_runs)
        for layers in layer_counts:
            row = scaling[layers]
            other = row.get("jax2onnx")
            lines.append(_row(f"GPT-{layers} convert, s (make_jaxpr {row['jaxpr']['seconds']:.2f})",
                              row["ours"]["seconds"], other["seconds"] if other else "-",
                              f"{row['ours']['seconds'] / other['seconds']:.2f}x" if other else "-", ""))
        last = layer_counts[-1]
        if last == base:
            print("\n".join(lines))
            return
        ours_growth = scaling[last]["ours"]["seconds"] / first["ours"]["seconds"]
        j2o_growth = (scaling[last]["jax2onnx"]["seconds"] / j2o_first["seconds"]) if j2o_first else None
        lines.append(_row(f"scaling {last}/{base} layers", f"{ours_growth:.2f}x",
                          f"{j2o_growth:.2f}x" if j2o_growth else "-", "", f"<= {last / base * 1.125:.2f}x"))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
