"""XLA CPU's process-wide runtime settings side by side: interleaved A/B across separate processes.

Some settings that decide how XLA's CPU runtime runs a compiled program are read once per process,
when JAX creates its CPU client: the size of its two thread pools (``PJRT_NPROC``, else the number of
schedulable cores), whether calls are dispatched to a pool thread (``jax_cpu_enable_async_dispatch``)
and ``XLA_FLAGS``. They cannot be compared inside one process, so this script starts one worker
process per variant and model, lets each compile the model's generated code (``wb.jit_forward`` with
the weights folded, the default for inference), and then has the workers take turns: each turn runs a
block of calls of the jitted model and of a one-thread onnxruntime session of the same model, in the
same worker. The workers not on turn wait on a pipe (no CPU), so a load spike on the shared machine
hits the variants alike. Printed per variant: process CPU time and wall time per call (medians over
the turns) for JAX and onnxruntime, the medians of the turns' ratios, and the CPU time per call of each
kind of thread during the JAX calls (``main``: the calling thread; XLA's "XLAPjRtCpuClient" pool threads
show as ``python``: their name is too long for Linux's 15 characters). The inputs are 64-byte aligned, as
torch's are: JAX copies unaligned numpy inputs and waits for the copy on a pool thread.

    WORKBENCH_VISION_CORPUS=1 PYTHONPATH=$PWD /work/venv-o2j/bin/python tests/benchmarks/bench_runtime_threads.py \\
        --corpus mobilenet_v2,resnet18 --blocks 9 --calls 10 \\
        --variant "before=XLA_FLAGS=--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" \\
        --variant nproc1=PJRT_NPROC=1 --variant limits

``--variant NAME=VAR=value,VAR=value`` sets environment variables of that variant's worker; names that
start with ``jax_`` are JAX options instead (``jax.config.update`` in the worker before JAX creates its
backend; ``true``/``false`` become booleans). ``NAME=`` is JAX's defaults; ``limits`` is the benchmarks'
thread limits (``limit_xla_threads(1)``, tests/support/thread_limits.py). Before 2026-12-03 those
limits were the ``before`` variant above.
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tests.support.thread_limits import limit_xla_threads, ort_session


def _parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", help="comma-separated models of tests/onnx_to_jax/test_corpus_vision.py")
    parser.add_argument("--variant", action="append", help="NAME=VAR=value,... (environment of the worker)")
    parser.add_argument("--blocks", type=int, default=9, help="turns per worker")
    parser.add_argument("--calls", type=int, default=20, help="calls of each runtime per turn")
    parser.add_argument("--ort-threads", type=int, default=1, help="onnxruntime's intra-op threads (0: its default)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: the saved model's folder
    parser.add_argument("--jax-config", default="", help=argparse.SUPPRESS)  # internal: jax_x=v,...
    parser.add_argument("--limits", action="store_true", help=argparse.SUPPRESS)  # internal
    args = parser.parse_args(argv)
    if args.worker is None and (not args.corpus or not args.variant):
        parser.error("--corpus and at least one --variant are required")
    return args


def _settings(text: str) -> dict[str, str]:
    pairs = (item.partition("=") for item in filter(None, text.split(",")))
    return {name: value for name, _, value in pairs}


def _thread_ticks() -> dict[str, int]:
    """CPU clock ticks of this process's threads, summed per thread name (the calling thread: ``main``)."""
    ticks: dict[str, int] = collections.Counter()
    for tid in os.listdir("/proc/self/task"):
        try:
            name = "main" if int(tid) == os.getpid() else Path(f"/proc/self/task/{tid}/comm").read_text().strip()
            fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended
            continue
        ticks[name] += int(fields[11]) + int(fields[12])  # utime + stime
    return ticks


def _aligned(array: np.ndarray) -> np.ndarray:
    """``array`` copied to a 64-byte-aligned buffer, as torch's and numpy's large allocations are.

    JAX runs a call with a numpy input in place only if the input is aligned; otherwise it copies the
    input first and the call waits for that copy on the CPU client's pool thread (an ``np.load`` of an
    ``.npz`` gives arrays at any offset).
    """
    buffer = np.empty(array.nbytes + 64, np.uint8)
    start = -buffer.ctypes.data % 64
    aligned = buffer[start : start + array.nbytes].view(array.dtype).reshape(array.shape)
    aligned[...] = array
    return aligned


def worker(folder: Path, calls: int, jax_config: dict[str, str], limits: bool, ort_threads: int) -> None:
    """Compile the saved model, then run one block of calls per line read from stdin."""
    if limits:
        limit_xla_threads(1)  # before JAX is imported
    import jax
    import onnx

    import workbench as wb

    for option, value in jax_config.items():  # before the backend exists
        jax.config.update(option, {"true": True, "false": False}.get(value, value))

    model = onnx.load(folder / "model.onnx")
    with np.load(folder / "feeds.npz") as saved:
        feeds = [_aligned(saved[f"arr_{i}"]) for i in range(len(saved.files))]
    forward, params = wb.to_jax(model)
    jitted = wb.jit_forward(forward, params)
    session = ort_session(model, ort_threads)
    feed = {i.name: x for i, x in zip(session.get_inputs(), feeds)}
    expected = session.run(None, feed)[0]
    got = jax.block_until_ready(jitted(*feeds))
    if hasattr(jitted, "wait"):  # a tiered jit (many weights): time the folded program, not the first tier
        jitted.wait()
    got = got[0] if isinstance(got, (tuple, list)) else got
    error = float(np.max(np.abs(np.asarray(got) - expected)))
    for _ in range(3):  # warm both
        jax.block_until_ready(jitted(*feeds))
        session.run(None, feed)
    print(f"ready {error:.1e} {jax.config.read('jax_cpu_enable_async_dispatch')}", flush=True)
    for _ in sys.stdin:
        ticks = _thread_ticks()
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(calls):
            jax.block_until_ready(jitted(*feeds))
        jax_cpu, jax_wall = time.process_time() - cpu, time.perf_counter() - wall
        after = _thread_ticks()
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(calls):
            session.run(None, feed)
        ort_cpu, ort_wall = time.process_time() - cpu, time.perf_counter() - wall
        threads = " ".join(f"{name.replace(' ', '_')}:{after[name] - ticks.get(name, 0)}" for name in after)
        print(f"{jax_cpu / calls} {jax_wall / calls} {ort_cpu / calls} {ort_wall / calls} {threads}", flush=True)


def _save(name: str, folder: Path) -> None:
    import onnx

    from tests.onnx_to_jax.test_corpus_vision import export

    model, feeds = export(name, "legacy")
    onnx.save(model, folder / "model.onnx")
    np.savez(folder / "feeds.npz", *feeds)


def compare(name: str, variants: list[str], blocks: int, calls: int, ort_threads: int) -> None:
    """Print the interleaved A/B of ``variants`` on corpus model ``name``."""
    with tempfile.TemporaryDirectory() as tmp:
        _save(name, Path(tmp))
        workers: dict[str, subprocess.Popen] = {}
        for variant in variants:
            label, _, text = variant.partition("=")
            settings = _settings(text)
            env = {**os.environ, **{k: v for k, v in settings.items() if not k.startswith("jax_")}}
            jax_config = ",".join(f"{k}={v}" for k, v in settings.items() if k.startswith("jax_"))
            command = [sys.executable, "-m", "tests.benchmarks.bench_runtime_threads", "--worker", tmp,
                       "--calls", str(calls), "--jax-config", jax_config, "--ort-threads", str(ort_threads)] + (["--limits"] if variant == "limits" else [])
            workers[label] = subprocess.Popen(command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                              text=True, cwd=Path(__file__).resolve().parents[2])
            ready = workers[label].stdout.readline().split()  # compile one at a time
            if not ready or ready[0] != "ready":
                raise RuntimeError(f"worker {label} failed on {name}: {ready}")
            print(f"{name} {label}: max |JAX - ORT| {ready[1]}, async dispatch {ready[2]}", flush=True)
        rows: dict[str, list[list[float]]] = {label: [] for label in workers}
        threads: dict[str, collections.Counter] = {label: collections.Counter() for label in workers}
        for _ in range(blocks):
            for label, process in workers.items():  # one turn each
                process.stdin.write("go\n")
                process.stdin.flush()
                fields = process.stdout.readline().split()
                rows[label].append([float(x) for x in fields[:4]])
                for item in fields[4:]:
                    thread, _, ticks = item.rpartition(":")
                    threads[label][thread] += int(ticks)
        for process in workers.values():
            process.stdin.close()
            process.wait()
    tick = os.sysconf("SC_CLK_TCK")
    print(f"{name}: medians of {blocks} turns x {calls} calls, ms per call (ratios: medians of the turns' "
          f"JAX / ORT); onnxruntime on {ort_threads or 'its default'} thread(s); load average {os.getloadavg()[0]:.1f}")
    for label, values in rows.items():
        jax_cpu, jax_wall, ort_cpu, ort_wall = (statistics.median(column) * 1000 for column in zip(*values))
        cpu_ratio = statistics.median(row[0] / row[2] for row in values)
        wall_ratio = statistics.median(row[1] / row[3] for row in values)
        per_thread = ", ".join(f"{thread} {ticks / tick / (blocks * calls) * 1000:.2f}"
                               for thread, ticks in threads[label].most_common() if ticks)
        print(f"  {label:10s} JAX CPU {jax_cpu:7.2f} wall {jax_wall:7.2f} | ORT CPU {ort_cpu:7.2f} wall {ort_wall:7.2f} | "
              f"ratio CPU {cpu_ratio:.2f}x wall {wall_ratio:.2f}x | JAX threads: {per_thread}", flush=True)


def main() -> None:
    args = _parse_args()
    if args.worker is not None:
        worker(Path(args.worker), args.calls, _settings(args.jax_config), args.limits, args.ort_threads)
        return
    for name in args.corpus.split(","):
        compare(name, args.variant, args.blocks, args.calls, args.ort_threads)


if __name__ == "__main__":
    main()
