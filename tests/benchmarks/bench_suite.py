"""Conversion benchmark on models written by others: workbench against jax2onnx (and torch.onnx).

A script, not a test: it prints Markdown tables. The set (``tests/support/benchmark_set.py``): GPT-2,
BERT and ViT from transformers' Flax models, Haiku's ResNet-18, an Equinox transformer, Keras 3's
MobileNetV2, a GPT written with ``nnx.MultiHeadAttention``, and the zoo's GPT-12 and ResNet (random
weights, static shapes, batch 1). For each model:

- warm conversion, in lockstep rounds: a workbench process and a jax2onnx process (its own virtualenv,
  ``--jax2onnx-python``), each warmed up, convert in turn (workbench, make_jaxpr, jax2onnx, ...), so a
  load change on the shared machine hits both; the workbench process also times ``jax.make_jaxpr`` of the
  same callable. Reported: medians of CPU seconds (process time: what the conversion computes, without the
  waits of a loaded machine) and of wall seconds, and the ratios ``workbench / make_jaxpr`` (target <= 2x)
  and ``workbench / jax2onnx`` (target <= 0.5x), each the median of the per-round ratios;
- nodes of each export (target: no more than jax2onnx's);
- onnxruntime latency of each export (workbench, jax2onnx, torch.onnx of the PyTorch twin where the set
  has one), in interleaved rounds, at 1 intra-op thread (CPU time of the calling thread) and at
  onnxruntime's default threads (wall); target: no slower than the faster of the others;
- the split of the workbench's conversion (trace / lower / passes including shape inference and the checker,
  ``Conversion.timings``; serialise: making the ModelProto);
- ``--cold``: cold start, a fresh process importing and converting the README MLP, against the floor
  (a fresh process importing jax and flax and running ``make_jaxpr`` of it), in alternating runs, after
  compiling the package's bytecode (as an installed package has it); target <= 1.1x.

    PYTHONPATH=$PWD python tests/benchmarks/bench_suite.py --jax2onnx-python /work/venv-jax2onnx/bin/python \\
        [--models hf_gpt2,hf_bert] [--rounds 7] [--ort-rounds 7] [--cold 7] [--save results.jsonl]
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).resolve().parent / "suite_worker.py"
sys.path.insert(0, str(REPO))

from tests.support.benchmark_set import SET  # noqa: E402 - after the path is set


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu", "KERAS_BACKEND": "jax",
            "TF_CPP_MIN_LOG_LEVEL": "3", "TRANSFORMERS_VERBOSITY": "error"}


class Worker:
    """A suite_worker.py process: one tool, one model, converting on request."""

    def __init__(self, python: str, tool: str, model: str, out_path: str) -> None:
        self.tool = tool
        self.out_path = out_path
        self.proc = subprocess.Popen([python, str(WORKER), tool, model, out_path], env=_env(), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.info: dict[str, Any] = {}

    def ready(self) -> dict[str, Any]:
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        self.info = json.loads(line) if line.strip() else {"error": f"{self.tool} worker exited without a result"}
        return self.info

    def ask(self, command: str) -> dict[str, Any]:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@dataclass
class Result:
    """Everything measured for one model."""

    name: str
    nodes: dict[str, int | None] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # tool -> why it did not convert
    ort_errors: dict[str, str] = field(default_factory=dict)  # tool -> why onnxruntime could not run its export
    times: dict[str, list[dict[str, float]]] = field(default_factory=dict)  # tool -> per-round timings
    latency: dict[str, dict[str, float]] = field(default_factory=dict)  # "1"/"0" threads -> tool -> seconds


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def measure_model(name: str, j2o: str | None, rounds: int, torch: bool, tmp: str, ort_rounds: int, ort_runs: int) -> Result:
    result = Result(name)
    tools = {"workbench": sys.executable}
    if j2o:
        tools["jax2onnx"] = j2o
    workers = {tool: Worker(python, tool, name, f"{tmp}/{name}.{tool}.onnx") for tool, python in tools.items()}
    try:
        for tool, worker in workers.items():
            info = worker.ready()
            if "error" in info:
                result.errors[tool] = info["error"]
            else:
                result.nodes[tool] = info["nodes"]
        live = {tool: worker for tool, worker in workers.items() if tool not in result.errors}
        result.times = {tool: [] for tool in live} | ({"make_jaxpr": []} if "workbench" in live else {})
        for _ in range(rounds):
            for tool, worker in live.items():
                result.times[tool].append(worker.ask("convert"))
                if tool == "workbench":
                    result.times["make_jaxpr"].append(worker.ask("jaxpr"))
    finally:
        for worker in workers.values():
            worker.close()
    paths = {tool: worker.out_path for tool, worker in workers.items() if tool not in result.errors}
    if torch and SET[name]("bench").torch_twin is not None:
        twin = Worker(sys.executable, "torch", name, f"{tmp}/{name}.torch.onnx")
        info = twin.ready()
        twin.close()
        if "error" in info:
            result.errors["torch.onnx"] = info["error"]
        else:
            result.nodes["torch.onnx"] = info["nodes"]
            paths["torch.onnx"] = twin.out_path
    if paths:
        inputs = SET[name]("bench").inputs
        for threads in (1, 0):
            result.latency[str(threads)] = ort_latencies(paths, inputs, result.ort_errors, threads=threads, rounds=ort_rounds,
                                                         runs=ort_runs)
    return result


def ort_latencies(
    paths: dict[str, str], inputs: list[np.ndarray], failures: dict[str, str], *, threads: int, rounds: int, runs: int
) -> dict[str, float]:
    """Median onnxruntime latency (s) of each model, in interleaved rounds (A, B, C, A, B, C, ...).

    At 1 intra-op thread, onnxruntime runs the graph on the calling thread: its CPU time is measured,
    leaving out waits for a core on a shared machine, with every tool's session alive at once. At the
    default thread count, wall time, with one session alive at a time (made, warmed and dropped in each
    round): each session's thread pool spins for a while after a run, and on two cores the pools of the
    other tools' live sessions slowed whichever ran next by up to 2x (the Equinox encoder: 8.05 / 8.18 ms
    for the workbench's / jax2onnx's export with both alive, 3.58 / 3.96 ms each alone; 2026-12-05).
    """
    import onnxruntime as ort

    def open_session(path: str) -> tuple[Any, dict[str, np.ndarray]]:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 4
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        feed = {}
        for spec, array in zip(session.get_inputs(), inputs, strict=True):
            wanted = np.int64 if spec.type == "tensor(int64)" else np.int32 if spec.type == "tensor(int32)" else None
            feed[spec.name] = array.astype(wanted) if wanted is not None else array
        for _ in range(3):
            session.run(None, feed)
        return session, feed

    sessions: dict[str, tuple[Any, dict[str, np.ndarray]]] = {}
    for tool, path in paths.items():
        try:
            sessions[tool] = open_session(path)
        except Exception as error:  # noqa: BLE001 - an export onnxruntime cannot run is a result: shown in the table
            failures[tool] = f"onnxruntime: {str(error).splitlines()[0][-120:]}"
    one_alive = threads != 1
    samples: dict[str, list[float]] = {tool: [] for tool in sessions}
    if one_alive:
        sessions.clear()  # each is reopened alone in every round
    clock = time.thread_time if threads == 1 else time.perf_counter
    for _ in range(rounds):
        for tool in samples:
            session, feed = open_session(paths[tool]) if one_alive else sessions[tool]
            for _ in range(runs):
                start = clock()
                session.run(None, feed)
                samples[tool].append(clock() - start)
            del session
    return {tool: float(np.median(values)) for tool, values in samples.items()}


# ----------------------------------------------------------------------------- cold start
_COLD_MLP = "import jax\nfrom workbench.zoo import nnx_mlp\nbuilt = nnx_mlp()\n"
COLD = {
    "floor": _COLD_MLP + "jax.make_jaxpr(built.eval_fn())(jax.ShapeDtypeStruct((1, 30), 'float32'))\n",
    "workbench": _COLD_MLP + "import workbench as wb\nwb.to_onnx(built.fn, [('B', 30)])\n",
    "jax2onnx": _COLD_MLP + "from jax2onnx import to_onnx\nto_onnx(built.fn, [('B', 30)])\n",
}


def _run_fresh(python: str, code: str) -> tuple[float, float]:
    """Wall and CPU (user + sys of the child) seconds of one fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([python, "-c", code], env=_env(), capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{python} failed:\n{done.stderr[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def cold_start(j2o: str | None, repeats: int) -> dict[str, list[tuple[float, float]]]:
    """Alternating fresh-process runs of the floor, the workbench and jax2onnx (after a warm-up run of each)."""
    compileall.compile_dir(str(REPO / "workbench"), quiet=1)  # an installed package has its bytecode
    pythons = {"floor": sys.executable, "workbench": sys.executable} | ({"jax2onnx": j2o} if j2o else {})
    for tool, python in pythons.items():
        _run_fresh(python, COLD[tool])
    runs: dict[str, list[tuple[float, float]]] = {tool: [] for tool in pythons}
    for _ in range(repeats):
        for tool, python in pythons.items():
            runs[tool].append(_run_fresh(python, COLD[tool]))
    return runs


# ----------------------------------------------------------------------------- tables
def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None or value != value else f"{value:.{digits}f}"


def _ratio(values: list[float] | None) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    return f"{_median(ordered):.2f}x ({ordered[0]:.2f}-{ordered[-1]:.2f})"


def conversion_table(results: list[Result]) -> list[str]:
    lines = ["| model | make_jaxpr CPU s | workbench CPU s (wall) | / make_jaxpr | jax2onnx CPU s (wall) | workbench / jax2onnx |",
             "|---|---|---|---|---|---|"]
    for r in results:
        wb, jx, j2o = r.times.get("workbench", []), r.times.get("make_jaxpr", []), r.times.get("jax2onnx", [])
        per_jaxpr = [w["cpu"] / j["cpu"] for w, j in zip(wb, jx, strict=False)]
        per_j2o = [w["cpu"] / t["cpu"] for w, t in zip(wb, j2o, strict=False)]

        def cell(samples: list[dict[str, float]], tool: str) -> str:
            if tool in r.errors:
                return f"fails: {r.errors[tool][:60]}"
            return f"{_fmt(_median([s['cpu'] for s in samples]))} ({_fmt(_median([s['wall'] for s in samples]))})"

        lines.append(f"| {r.name} | {_fmt(_median([s['cpu'] for s in jx]))} | {cell(wb, 'workbench')} | "
                     f"{_ratio(per_jaxpr)} | {cell(j2o, 'jax2onnx')} | {_ratio(per_j2o)} |")
    return lines


def graph_table(results: list[Result]) -> list[str]:
    tools = ("workbench", "jax2onnx", "torch.onnx")
    lines = ["| model | nodes wb / jax2onnx / torch | ORT 1 thread CPU ms wb / jax2onnx / torch | wb / best other | "
             "ORT default threads ms wb / jax2onnx / torch | wb / best other |", "|---|---|---|---|---|---|"]
    for r in results:
        nodes = " / ".join(str(r.nodes.get(t, "-")) for t in tools)
        cells = []
        for threads in ("1", "0"):
            lat = r.latency.get(threads, {})
            cells.append(" / ".join(_fmt(lat[t] * 1e3, 2) if t in lat else "fails" if t in r.ort_errors else "-"
                                    for t in tools))
            others = [lat[t] for t in tools[1:] if t in lat]
            cells.append(f"{lat['workbench'] / min(others):.2f}x" if others and "workbench" in lat else "-")
        lines.append(f"| {r.name} | {nodes} | {' | '.join(cells)} |")
    return lines


def split_table(results: list[Result]) -> list[str]:
    """Where the workbench's conversion goes (``Conversion.timings``, wall seconds: medians and shares)."""
    phases = ("trace", "lower", "passes", "serialise")
    lines = ["| model | " + " | ".join(f"{p} s (share)" for p in phases) + " |", "|---" * (len(phases) + 1) + "|"]
    for r in results:
        samples = r.times.get("workbench", [])
        if not samples:
            continue
        medians = [_median([s.get(f"split_{p}", float("nan")) for s in samples]) for p in phases]
        total = sum(medians)
        cells = [f"{_fmt(m)} ({m / total:.0%})" for m in medians]
        lines.append(f"| {r.name} | {' | '.join(cells)} |")
    return lines


def cold_table(runs: dict[str, list[tuple[float, float]]]) -> list[str]:
    floor = runs["floor"]
    lines = ["| cold start (README MLP) | wall s median | CPU s median | / floor (CPU, per run pair: median, range) |",
             "|---|---|---|---|"]
    for tool, samples in runs.items():
        ratios = [s[1] / f[1] for s, f in zip(samples, floor, strict=True)]
        lines.append(f"| {tool} | {_fmt(_median([s[0] for s in samples]))} | {_fmt(_median([s[1] for s in samples]))} | "
                     f"{'-' if tool == 'floor' else _ratio(ratios)} |")
    return lines


def _print_failures(results: list[Result]) -> None:
    for r in results:
        for tool, why in {**r.errors, **r.ort_errors}.items():
            print(f"\n- {r.name}, {tool}: {why}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jax2onnx-python", default="/work/venv-jax2onnx/bin/python",
                        help="interpreter with jax2onnx installed (its own venv); '' leaves jax2onnx out")
    parser.add_argument("--models", default=",".join(SET), help="comma-separated names from benchmark_set.SET")
    parser.add_argument("--rounds", type=int, default=7, help="lockstep conversion rounds per model")
    parser.add_argument("--ort-rounds", type=int, default=7, help="interleaved onnxruntime rounds")
    parser.add_argument("--ort-runs", type=int, default=20, help="runs of each model per onnxruntime round")
    parser.add_argument("--no-torch", action="store_true", help="leave torch.onnx out")
    parser.add_argument("--cold", type=int, default=0, help="also measure cold start with this many alternating runs")
    parser.add_argument("--save", type=Path, help="append each model's measurements to this JSON-lines file as it "
                        "finishes (a long run interrupted keeps what it measured)")
    parser.add_argument("--load", type=Path, help="print the tables of a --save file instead of measuring")
    args = parser.parse_args()
    j2o = args.jax2onnx_python or None
    if args.load:
        results = [Result(**json.loads(line)) for line in args.load.read_text().splitlines() if line.strip()]
        print("\n".join(conversion_table(results)) + "\n")
        print("\n".join(graph_table(results)) + "\n")
        print("\n".join(split_table(results)))
        _print_failures(results)
        return
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in filter(None, args.models.split(",")):
            started = time.perf_counter()
            results.append(measure_model(name, j2o, args.rounds, not args.no_torch, tmp, args.ort_rounds, args.ort_runs))
            print(f"[{name}: {time.perf_counter() - started:.0f} s]", file=sys.stderr, flush=True)
            if args.save:
                with args.save.open("a") as saved:
                    saved.write(json.dumps(asdict(results[-1])) + "\n")
    load = os.getloadavg()
    print(f"Load average while measuring (1/5/15 min): {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}\n")
    print("\n".join(conversion_table(results)) + "\n")
    print("\n".join(graph_table(results)) + "\n")
    print("\n".join(split_table(results)))
    _print_failures(results)
    if args.cold:
        print()
        print("\n".join(cold_table(cold_start(j2o, args.cold))))


if __name__ == "__main__":
    main()
