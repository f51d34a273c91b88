"""``bench_first_jit.py --processes``: one model per fresh process, summarised over the processes.

Swin-T's jitted latency depends on the process as well as the code (docs/onnx_to_jax_corpus.md,
"Latency modes per process"), so the corpus figures come from several processes. These checks cover the
harness's own parts without exporting a model: the child's command line, reading its result line (and
failing loudly when there is none), the launch prefixes and the min / median / max summary.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time

import pytest

from tests.benchmarks.bench_first_jit import RESULT_PREFIX, Launch, _child_command, other_threads_cpu, run_child, summarise


def _result(ratio: float, latency: float, first_jit: float) -> dict:
    return {"model": "m", "first_jit": {"folded": first_jit}, "first_jit_cpu": {"folded": first_jit / 2},
            "latency_ms": {"folded": latency, "ort": latency / ratio}, "ratio": {"folded": ratio}, "load": [1.0, 1.5],
            "other_threads_ms": latency / 10}


def test_launch_prefixes():
    assert Launch.parse("plain=") == Launch("plain", ())
    assert Launch.parse("no-aslr=setarch -R") == Launch("no-aslr", ("setarch", "-R"))
    assert Launch.parse("flags=env XLA_FLAGS='--a=1 --b=2'") == Launch("flags", ("env", "XLA_FLAGS=--a=1 --b=2"))


def test_child_command_runs_one_model_under_the_prefix():
    args = argparse.Namespace(forms="folded,bound", rounds=5, mixed_bytes=1024, xla_threads=1)
    command = _child_command(args, "swin_t", Launch.parse("cpu0=taskset -c 0"))
    assert command[:3] == ["taskset", "-c", "0"]
    assert command[3] == sys.executable and command[4].endswith("bench_first_jit.py")
    assert command[command.index("--corpus") + 1] == "swin_t"
    assert command[command.index("--rounds") + 1] == "5"
    assert command[command.index("--xla-threads") + 1] == "1"
    assert command[-1] == "--result-line"


def test_run_child_reads_the_result_line_and_counts_its_cpu():
    result = _result(0.8, 27.0, 3.0)
    program = (f"import json, time\nend = time.process_time() + 0.05\nwhile time.process_time() < end: pass\n"
               f"print('a block line')\nprint({RESULT_PREFIX!r} + json.dumps({result!r}))")
    got, cpu = run_child([sys.executable, "-c", program], quiet=True)
    assert got == json.loads(json.dumps(result))
    assert cpu >= 0.05


@pytest.mark.parametrize("program", ["print('no result')", "import sys; sys.exit(3)"])
def test_run_child_fails_loudly(program):
    with pytest.raises(RuntimeError, match="result lines"):
        run_child([sys.executable, "-c", program], quiet=True)


def test_summary_gives_min_median_max_over_processes():
    results = [_result(0.82, 27.0, 3.0), _result(1.12, 36.0, 4.0), _result(0.80, 26.5, 5.0)]
    text = summarise("swin_t", "plain", results, ["folded"])
    assert "swin_t [plain], 3 processes" in text
    assert "ratio min/median/max 0.80 / 0.82 / 1.12x" in text
    assert "sorted: 0.80 0.82 1.12" in text
    assert "latency ms 26.50 / 27.00 / 36.00" in text
    assert "first jit s 3.00 / 4.00 / 5.00 (CPU s 1.50 / 2.00 / 2.50)" in text
    assert "other threads, CPU ms per round 2.6 / 2.7 / 3.6" in text


def test_other_threads_cpu_counts_a_busy_thread_not_the_caller():
    def spin():
        end = time.thread_time() + 0.3
        while time.thread_time() < end:
            pass

    spun, done = threading.Event(), threading.Event()

    def worker_body():  # a pool thread lives on: a thread that ended leaves /proc/self/task with its clock
        spin()
        spun.set()
        done.wait()

    before = other_threads_cpu()
    spin()  # on the calling thread: not counted
    assert other_threads_cpu() - before < 0.1
    worker = threading.Thread(target=worker_body)
    worker.start()
    spun.wait()
    try:
        assert other_threads_cpu() - before >= 0.2
    finally:
        done.set()
        worker.join()
