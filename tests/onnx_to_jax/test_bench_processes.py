"""``bench_first_jit.py --processes``: one model per fresh process, summarised over the processes.

Swin-T's jitted latency depends on the process as well as the code (docs/onnx_to_jax_corpus.md,
"Latency modes per process"), so the corpus figures come from several processes. These checks cover the
harness's own parts without exporting a model: the child's command line, reading its result line (and
failing loudly when there is none), the launch prefixes and the min / median / max summary; and the two
latency measures' call orders (``--block``): interleaved single calls, and blocks of consecutive calls whose
calls are told apart by what ran just before them.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time

import pytest

from tests.benchmarks.bench_first_jit import (
    RESULT_PREFIX,
    Launch,
    _child_command,
    other_threads_cpu,
    run_child,
    summarise,
    time_blocks,
    time_interleaved,
)


def _result(ratio: float, latency: float, first_jit: float) -> dict:
    return {"model": "m", "first_jit": {"folded": first_jit}, "first_jit_cpu": {"folded": first_jit / 2},
            "latency_ms": {"folded": latency, "ort": latency / ratio}, "ratio": {"folded": ratio}, "load": [1.0, 1.5],
            "other_threads_ms": latency / 10}


def test_launch_prefixes():
    assert Launch.parse("plain=") == Launch("plain", ())
    assert Launch.parse("no-aslr=setarch -R") == Launch("no-aslr", ("setarch", "-R"))
    assert Launch.parse("flags=env XLA_FLAGS='--a=1 --b=2'") == Launch("flags", ("env", "XLA_FLAGS=--a=1 --b=2"))


def test_child_command_runs_one_model_under_the_prefix():
    args = argparse.Namespace(forms="folded,bound", rounds=5, block=4, mixed_bytes=1024, xla_threads=1)
    command = _child_command(args, "swin_t", Launch.parse("cpu0=taskset -c 0"))
    assert command[:3] == ["taskset", "-c", "0"]
    assert command[3] == sys.executable and command[4].endswith("bench_first_jit.py")
    assert command[command.index("--corpus") + 1] == "swin_t"
    assert command[command.index("--rounds") + 1] == "5"
    assert command[command.index("--xla-threads") + 1] == "1"
    assert command[command.index("--block") + 1] == "4"
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


def _recorders(names: list[str]) -> tuple[dict, list[str]]:
    """Runners that log their calls, each spending a little CPU (so every timing is > 0)."""
    calls: list[str] = []

    def run(name: str) -> None:
        calls.append(name)
        end = time.process_time() + 0.0005
        while time.process_time() < end:
            pass

    return {name: (lambda n=name: run(n)) for name in names}, calls


def test_interleaved_rounds_call_each_runner_once_per_round():
    runners, calls = _recorders(["folded", "ort"])
    times = time_interleaved(runners, 3)
    assert calls == ["folded", "ort"] * 3
    assert {name: len(values) for name, values in times.items()} == {"folded": 3, "ort": 3}
    assert min(min(values) for values in times.values()) > 0


def test_blocks_alternate_the_order_and_sort_calls_by_their_predecessor():
    runners, calls = _recorders(["folded", "ort"])
    itself, other = time_blocks(runners, 3, 4)
    assert calls == ["folded"] * 4 + ["ort"] * 8 + ["folded"] * 8 + ["ort"] * 4
    # after another program: the first call ever, folded after ort twice, ort after folded twice
    assert {name: len(values) for name, values in other.items()} == {"folded": 2, "ort": 2}
    assert {name: len(values) for name, values in itself.items()} == {"folded": 10, "ort": 10}
    assert all(value > 0 for values in [*itself.values(), *other.values()] for value in values)


def test_blocks_of_two_forms_count_a_form_after_the_other_as_after_another():
    runners, calls = _recorders(["folded", "bound", "ort"])
    itself, other = time_blocks(runners, 2, 2)
    assert calls == ["folded", "folded", "bound", "bound", "ort", "ort", "ort", "ort", "bound", "bound",
                     "folded", "folded"]
    assert {name: len(values) for name, values in other.items()} == {"folded": 2, "bound": 2, "ort": 1}
    assert {name: len(values) for name, values in itself.items()} == {"folded": 2, "bound": 2, "ort": 3}


def test_summary_of_block_results_shows_all_three_measures():
    results = []
    for steady, cold in ((1.50, 1.40), (1.45, 1.30), (1.60, 1.35)):
        result = _result(steady, 2.64, 3.0)
        result.update(block=5, after_other_ms={"folded": 3.67, "ort": 3.67 / cold},
                      after_other_ratio={"folded": cold}, interleaved_ms={"folded": 3.19, "ort": 2.46},
                      interleaved_ratio={"folded": 1.30})
        results.append(result)
    text = summarise("mobilenet_v2", "plain", results, ["folded"])
    assert "latency steady state in blocks of 5" in text
    assert "ratio min/median/max 1.45 / 1.50 / 1.60x" in text
    assert "after another program: folded ratio 1.30 / 1.35 / 1.40x" in text
    assert "interleaved single calls: folded ratio 1.30 / 1.30 / 1.30x, latency ms 3.19 / 3.19 / 3.19" in text
    assert "onnxruntime ms 2.46 / 2.46 / 2.46" in text


def test_summary_of_interleaved_results_says_so():
    text = summarise("m", "plain", [_result(1.2, 3.0, 1.0)], ["folded"])
    assert "latency interleaved:" in text and "after another program" not in text
