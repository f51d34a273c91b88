"""Where the first ``jax.jit`` call of generated code spends its time, per corpus model and jit form.

A script, not a test: it prints one block per model. For each form it splits the first call into
tracing + lowering to StableHLO (``jitted.lower``), XLA's compile (``.compile()``) and the first run
of the compiled program, each in wall and process CPU seconds, checks the output against
onnxruntime, and then times the forms and onnxruntime in interleaved rounds, and with ``--block N`` in
blocks of consecutive calls too (per-call process CPU time, one thread each: robust to other processes on
a shared machine; the two measures are described below). Issue 21's target: first
``jax.jit`` <= 5 s for every corpus model, without giving up jitted latency. One XLA thread also means
one compile thread (XLA compiles on the CPU client's pool, which ``PJRT_NPROC`` sizes too), so for the
first-jit figures as a user with XLA's defaults sees them, pass ``--xla-threads 0`` (its latencies are
then those of two intra-op threads, their CPU time summed).

    WORKBENCH_VISION_CORPUS=1 PYTHONPATH=$PWD /work/venv-o2j/bin/python tests/benchmarks/bench_first_jit.py \\
        --corpus vit_b_16,swin_t [--forms folded,bound] [--rounds 9] [--block 5]

Forms (all with the XLA compiler options the generator chose for the model):

- ``folded``: ``wb.jit_forward(forward, params)``, the default for inference (``prepare(params)``
  folded into ``forward_prepared`` as constants; making it, with the prepare, is timed with the lowering;
  for a model with many weights that is a tiered jit, whose ``lower`` is this folded program: tiered.py);
- ``bound``: ``wb.jit_forward(forward_prepared)`` called on ``prepare(params)`` kept outside the jit
  (the same call for the user as the folded form if wrapped, but the weights are arguments: no literals);
- ``onnx-layout``: ``params`` folded in ONNX's layouts (what ``jit_forward`` folded before it prepared);
- ``mixed``: weights of at most ``--mixed-bytes`` bytes folded, the larger ones bound as arguments.

A process's jitted latency can depend on the process, not the code (Swin-T runs at one of two speeds, by
process: docs/onnx_to_jax_corpus.md, "Latency modes per process"). ``--processes N`` runs every model in N
fresh processes of this script (one model per process, models in turn within each repetition, one process
at a time) and prints, per model and form, the minimum / median / maximum over the processes of the
latency ratio to onnxruntime, the latency and the first jit, with the sorted per-process ratios.
``--launch NAME=PREFIX`` (repeatable) runs those processes under a command prefix, e.g.
``--launch aslr= --launch no-aslr="setarch -R"`` or ``--launch "cpu0=taskset -c 0"``; the launches
alternate within every repetition, so each is compared with the others at the same load.

Two latency measures (both runtimes always timed the same way, every call kept):

- default (``--block 0``), **interleaved**: ``--rounds`` rounds of ONE call of each form then one onnxruntime
  call, so every JAX call runs right after onnxruntime's and every onnxruntime call right after JAX's: the
  latency of a model called once among other work, whose cache the neighbour has just taken. A JAX call made
  after onnxruntime's is much slower than one after another JAX call (MobileNet-v2 2.8-3.1 against 2.3 ms,
  docs/onnx_to_jax_corpus.md, "MobileNet-v2 and MNASNet against onnxruntime"), so the two runtimes' figures
  are cold for both, by amounts that differ per runtime and model.
- ``--block N``, **steady state**: the interleaved rounds as above, then ``--rounds`` rounds of N consecutive
  calls of each form and N of onnxruntime, the order of the runtimes reversed every other round. A call counts
  as "after another program" when the call just before it ran a different runtime or form (the first of a
  block, unless the reversal put its own runtime's block before it), else as "after itself"; the median
  "after itself" is the steady-state latency (a deployment calling one runtime repeatedly), reported as the
  latency and ratio, beside the medians "after another program" and the interleaved ones of the same process.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from tests.support.thread_limits import limit_xla_threads, ort_session

FORMS = ("folded", "bound", "onnx-layout", "mixed")


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", required=True, help="comma-separated vision corpus models")
    parser.add_argument("--forms", default="folded,bound", help=f"comma-separated, of {', '.join(FORMS)}")
    parser.add_argument("--rounds", type=int, default=9, help="interleaved latency rounds (and block rounds)")
    parser.add_argument("--block", type=int, default=0, metavar="N",
                        help="0: latency from --rounds rounds of one call each, JAX after onnxruntime and back "
                        "(interleaved: both cold); N >= 2: also --rounds rounds of N consecutive calls per runtime, "
                        "order reversed every other round, latency = median of the calls made right after a call "
                        "of the same runtime (steady state), the calls after another runtime reported apart")
    parser.add_argument("--mixed-bytes", type=int, default=65536, help="the mixed form folds weights up to this size")
    parser.add_argument("--xla-threads", type=int, default=1,
                        help="XLA's threads (tests/support/thread_limits.py); 0: JAX's defaults, whose compiles "
                        "use every core (the first-jit figures before 2026-12-03 were measured so)")
    parser.add_argument("--processes", type=int, default=0,
                        help="run every model in this many fresh processes and summarise them (0: all in this one)")
    parser.add_argument("--launch", action="append", default=[], metavar="NAME=PREFIX",
                        help="with --processes: a command prefix for the processes (repeatable; alternated)")
    parser.add_argument("--quiet", action="store_true", help="with --processes: hide the processes' own blocks")
    parser.add_argument("--result-line", action="store_true", help=argparse.SUPPRESS)  # a child's JSON line
    args = parser.parse_args()
    if args.block == 1 or args.block < 0:
        parser.error("--block takes 0 (interleaved single calls only) or N >= 2")
    if args.launch and args.processes <= 0:
        parser.error("--launch needs --processes")
    if any("=" not in launch for launch in args.launch):
        parser.error("--launch takes NAME=PREFIX (the prefix may be empty: 'plain=')")
    unknown = sorted(set(args.forms.split(",")) - set(FORMS))
    if unknown:
        parser.error(f"--forms: unknown form(s) {', '.join(unknown)}; choose from {', '.join(FORMS)}")
    return args


ARGS = _parse_args() if __name__ == "__main__" else None
if ARGS is not None and ARGS.processes <= 0:  # before JAX is imported: JAX's CPU client reads the limits once
    limit_xla_threads(ARGS.xla_threads)

RESULT_PREFIX = "RESULT "


def _clocks() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def other_threads_cpu() -> float:
    """CPU seconds so far of this process's threads other than the calling one (Linux; 0.0 elsewhere).

    With one XLA thread, what JAX's thunk executor handed to its intra-op pool thread ("JAX's CPU runtime
    threads"); a one-thread onnxruntime session computes on the calling thread."""
    tasks = "/proc/self/task"
    if not os.path.isdir(tasks):
        return 0.0
    ticks = 0
    for tid in os.listdir(tasks):
        if int(tid) == threading.get_native_id():
            continue
        try:
            with open(f"{tasks}/{tid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except FileNotFoundError:  # a thread that ended meanwhile
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def time_interleaved(runners: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """CPU seconds per call of each runner: ``rounds`` rounds of one call each, in the runners' order."""
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):  # interleaved, so load spikes hit all alike
        for name, run in runners.items():
            start = time.process_time()
            run()
            times[name].append(time.process_time() - start)
    return times


def time_blocks(runners: dict[str, Callable[[], object]], rounds: int, block: int,
                ) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """CPU seconds per call in ``rounds`` rounds of ``block`` consecutive calls of each runner.

    The runners' order is reversed every other round. Returns (after itself, after another): a call goes to
    the first when the call just before it ran the same runner, else (also the very first call) to the second;
    nothing is dropped."""
    itself: dict[str, list[float]] = {name: [] for name in runners}
    other: dict[str, list[float]] = {name: [] for name in runners}
    previous = None
    for index in range(rounds):
        order = list(runners) if index % 2 == 0 else list(runners)[::-1]
        for name in order:
            for _ in range(block):
                start = time.process_time()
                runners[name]()
                (itself if previous == name else other)[name].append(time.process_time() - start)
                previous = name
    return itself, other


def _medians(times: dict[str, list[float]]) -> dict[str, float]:
    """Median per runner in ms (NaN for a runner with no calls)."""
    return {name: statistics.median(values) * 1000 if values else float("nan") for name, values in times.items()}


def _ratios(medians: dict[str, float]) -> dict[str, float]:
    return {name: m / medians["ort"] for name, m in medians.items() if name != "ort"}


def model_block(name: str, forms: list[str], rounds: int, mixed_bytes: int, block: int = 0) -> dict:
    """Print the first-call split and the latencies of ``forms`` for corpus model ``name``.

    Returns the figures as data: ``first_jit`` and ``first_jit_cpu`` (s) per form, ``latency_ms`` per form
    and for ``"ort"`` (median CPU ms per call), ``ratio`` per form (to onnxruntime) and the load averages.
    With ``block`` >= 2 the latency is the steady state (calls after a call of the same runtime), and
    ``interleaved_ms``/``interleaved_ratio`` and ``after_other_ms``/``after_other_ratio`` are added."""
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
    load_before = os.getloadavg()[0]
    print(f"{name}: {len(model.graph.node)} nodes, generated in {generate:.2f} s, XLA options {options or '{}'}, "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    session = ort_session(model, 1)
    feed = {i.name: x for i, x in zip(session.get_inputs(), feeds)}
    expected = session.run(None, feed)
    compiled = {}
    first_jit: dict[str, tuple[float, float]] = {}
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
        first_jit[form] = (t3[0] - t0[0], t3[1] - t0[1])
    runners: dict[str, Callable[[], object]] = {
        form: functools.partial(lambda e, lead: jax.block_until_ready(e(*lead, *feeds)), executable, lead)
        for form, (executable, lead) in compiled.items()}
    runners["ort"] = functools.partial(session.run, None, feed)
    others_before = other_threads_cpu()
    interleaved = _medians(time_interleaved(runners, rounds))
    others_ms = (other_threads_cpu() - others_before) * 1000 / rounds
    print("  latency, interleaved (median CPU ms per call): " + ", ".join(
        f"{form} {m:.2f} ({m / interleaved['ort']:.2f}x ORT)" for form, m in interleaved.items() if form != "ort")
        + f", onnxruntime {interleaved['ort']:.2f}; JAX's other threads {others_ms:.1f} CPU ms per round; "
        f"load average {os.getloadavg()[0]:.1f}", flush=True)
    latency, extra = interleaved, {}
    if block:
        itself, other = (_medians(t) for t in time_blocks(runners, rounds, block))
        print(f"  latency, blocks of {block} (median CPU ms per call after itself / after another program): "
              + ", ".join(f"{form} {itself[form]:.2f} / {other[form]:.2f} ({itself[form] / itself['ort']:.2f}x / "
                          f"{other[form] / other['ort']:.2f}x ORT)" for form in compiled)
              + f", onnxruntime {itself['ort']:.2f} / {other['ort']:.2f}; load average {os.getloadavg()[0]:.1f}",
              flush=True)
        latency = itself
        extra = {"interleaved_ms": interleaved, "interleaved_ratio": _ratios(interleaved),
                 "after_other_ms": other, "after_other_ratio": _ratios(other)}
    return {
        "model": name,
        "first_jit": {form: wall for form, (wall, _) in first_jit.items()},
        "first_jit_cpu": {form: cpu for form, (_, cpu) in first_jit.items()},
        "latency_ms": latency,
        "ratio": _ratios(latency),
        "other_threads_ms": others_ms,
        "load": [load_before, os.getloadavg()[0]],
        "block": block,
        **extra,
    }


@dataclass(frozen=True)
class Launch:
    """A named command prefix the per-model processes run under (empty: run directly)."""

    name: str
    prefix: tuple[str, ...]

    @classmethod
    def parse(cls, spec: str) -> Launch:
        name, _, prefix = spec.partition("=")
        return cls(name, tuple(shlex.split(prefix)))


def _child_command(args: argparse.Namespace, name: str, launch: Launch) -> list[str]:
    """This script on one model, in a process of its own, printing its figures as a result line."""
    return [*launch.prefix, sys.executable, os.path.abspath(__file__), "--corpus", name, "--forms", args.forms,
            "--rounds", str(args.rounds), "--block", str(args.block), "--mixed-bytes", str(args.mixed_bytes),
            "--xla-threads", str(args.xla_threads), "--result-line"]


def run_child(command: list[str], quiet: bool) -> tuple[dict, float]:
    """Run one child to completion; (its result, the CPU seconds it and its children used). Fails loudly."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    lines = completed.stdout.splitlines()
    results = [json.loads(line[len(RESULT_PREFIX):]) for line in lines if line.startswith(RESULT_PREFIX)]
    if completed.returncode != 0 or len(results) != 1:
        raise RuntimeError(f"{shlex.join(command)} exited {completed.returncode} with {len(results)} result lines:\n"
                           f"{completed.stdout[-2000:]}\n{completed.stderr[-4000:]}")
    if not quiet:
        print("\n".join("    " + line for line in lines if not line.startswith(RESULT_PREFIX)), flush=True)
    return results[0], cpu


def _spread(values: list[float], digits: int) -> str:
    return (f"{min(values):.{digits}f} / {statistics.median(values):.{digits}f} / {max(values):.{digits}f}")


def summarise(name: str, launch: str, results: list[dict], forms: list[str]) -> str:
    """Per form: min / median / max over the processes of the ratio, latency and first jit.

    The latency is the steady state for results of ``--block`` runs, whose figures after another program
    and interleaved follow on lines of their own."""
    block = {r.get("block", 0) for r in results}
    measure = "interleaved" if block == {0} else f"steady state in blocks of {'/'.join(map(str, sorted(block)))}"
    lines = [f"{name} [{launch}], {len(results)} processes, load {_spread([r['load'][0] for r in results], 1)}, "
             f"latency {measure}:"]
    ort = [r["latency_ms"]["ort"] for r in results]
    for form in forms:
        ratios = [r["ratio"][form] for r in results]
        lines.append(
            f"  {form:12s} ratio min/median/max {_spread(ratios, 2)}x (per process, sorted: "
            f"{' '.join(f'{x:.2f}' for x in sorted(ratios))}); latency ms {_spread([r['latency_ms'][form] for r in results], 2)}; "
            f"first jit s {_spread([r['first_jit'][form] for r in results], 2)} "
            f"(CPU s {_spread([r['first_jit_cpu'][form] for r in results], 2)})")
    for key, label in (("after_other", "after another program"), ("interleaved", "interleaved single calls")):
        if all(f"{key}_ms" in r for r in results):
            lines.append(f"  {label}: " + "; ".join(
                f"{form} ratio {_spread([r[f'{key}_ratio'][form] for r in results], 2)}x, latency ms "
                f"{_spread([r[f'{key}_ms'][form] for r in results], 2)}" for form in forms)
                + f"; onnxruntime ms {_spread([r[f'{key}_ms']['ort'] for r in results], 2)}")
    lines.append(f"  onnxruntime latency ms {_spread(ort, 2)}; JAX's other threads, CPU ms per round "
                 f"{_spread([r['other_threads_ms'] for r in results], 1)}")
    return "\n".join(lines)


def run_processes(args: argparse.Namespace, names: list[str], forms: list[str]) -> None:
    """Each model in ``args.processes`` fresh processes per launch, launches and models alternating."""
    launches = [Launch.parse(spec) for spec in args.launch] or [Launch("plain", ())]
    results: dict[tuple[str, str], list[dict]] = {(n, l.name): [] for n in names for l in launches}
    total_cpu = 0.0
    for repetition in range(args.processes):
        order = launches if repetition % 2 == 0 else launches[::-1]
        for name in names:
            for launch in order:
                result, cpu = run_child(_child_command(args, name, launch), args.quiet)
                total_cpu += cpu
                results[name, launch.name].append(result)
                print(f"[{repetition + 1}/{args.processes}] {name} [{launch.name}]: " + ", ".join(
                    f"{form} {result['ratio'][form]:.2f}x ({result['latency_ms'][form]:.2f} ms)" for form in forms)
                    + f", onnxruntime {result['latency_ms']['ort']:.2f} ms"
                    + ("" if "interleaved_ratio" not in result else " (steady); interleaved " + ", ".join(
                        f"{form} {result['interleaved_ratio'][form]:.2f}x" for form in forms))
                    + ", other threads "
                    f"{result['other_threads_ms']:.1f} ms per round; process CPU {cpu:.1f} s, "
                    f"load {result['load'][0]:.1f}", flush=True)
    rounds = f"{args.rounds} interleaved rounds" + (f" + {args.rounds} rounds of blocks of {args.block}" if args.block else "")
    print(f"\nSummary ({rounds} per process, medians within a process; "
          f"all processes' CPU {total_cpu:.0f} s):")
    for (name, launch), model_results in results.items():
        print(summarise(name, launch, model_results, forms), flush=True)


def main() -> None:
    args = ARGS
    forms = [form for form in FORMS if form in args.forms.split(",")]
    names = args.corpus.split(",")
    if args.processes > 0:
        run_processes(args, names, forms)
        return
    for name in names:
        result = model_block(name, forms, args.rounds, args.mixed_bytes, args.block)
        if args.result_line:
            print(RESULT_PREFIX + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
