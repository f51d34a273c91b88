"""Weight copies split across threads: every chunk runs once, errors surface, results equal the one-thread copy."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from workbench.jax_to_onnx import copy_threads
from workbench.jax_to_onnx.copy_threads import MAX_THREADS, copy_threads as thread_count, run_chunked
from workbench.jax_to_onnx.ir_values import transposed_copy


@pytest.mark.parametrize("threads", ["1", "2", "3"])
def test_chunks_cover_the_range_once(monkeypatch: pytest.MonkeyPatch, threads: str) -> None:
    monkeypatch.setenv(copy_threads.ENV_VAR, threads)
    seen: list[tuple[int, int]] = []
    names: set[str] = set()
    lock = threading.Lock()

    def work(first: int, stop: int) -> None:
        with lock:
            seen.append((first, stop))
            names.add(threading.current_thread().name)

    run_chunked(10, work, nbytes=copy_threads.MIN_PARALLEL_BYTES)
    covered = sorted(i for first, stop in seen for i in range(first, stop))
    assert covered == list(range(10))
    assert len(seen) == int(threads)
    # the calling thread takes a chunk; the others go to the pool (whose threads may take several)
    assert threading.current_thread().name in names
    assert len(names) == (1 if threads == "1" else 2) or len(names) == int(threads)


def test_small_jobs_stay_on_the_calling_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(copy_threads.ENV_VAR, "4")
    calls: list[tuple[int, int, str]] = []
    run_chunked(8, lambda a, b: calls.append((a, b, threading.current_thread().name)), nbytes=1000)
    assert calls == [(0, 8, threading.current_thread().name)]


def test_an_error_in_a_pool_chunk_is_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(copy_threads.ENV_VAR, "2")

    def work(first: int, stop: int) -> None:
        if first > 0:
            raise RuntimeError(f"chunk {first}-{stop} failed")

    with pytest.raises(RuntimeError, match="chunk 5-10 failed"):
        run_chunked(10, work, nbytes=copy_threads.MIN_PARALLEL_BYTES)


def test_thread_count_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(copy_threads.ENV_VAR, "64")
    assert thread_count() == MAX_THREADS
    monkeypatch.setenv(copy_threads.ENV_VAR, "0")
    assert thread_count() == 1
    monkeypatch.delenv(copy_threads.ENV_VAR)
    assert 1 <= thread_count() <= MAX_THREADS
    monkeypatch.setenv(copy_threads.ENV_VAR, "two")
    with pytest.raises(ValueError, match="WORKBENCH_COPY_THREADS='two'.*whole number"):
        thread_count()


@pytest.mark.parametrize("threads", ["2", "4"])
def test_threaded_transpose_equals_one_thread(monkeypatch: pytest.MonkeyPatch, threads: str) -> None:
    array = np.random.default_rng(1).standard_normal((3, 3, 256, 200)).astype(np.float32)  # 1.8 MB
    monkeypatch.setenv(copy_threads.ENV_VAR, "1")
    single = transposed_copy(array, (3, 2, 0, 1))
    monkeypatch.setenv(copy_threads.ENV_VAR, threads)
    threaded = transposed_copy(array, (3, 2, 0, 1))
    assert threaded.tobytes() == single.tobytes()
    np.testing.assert_array_equal(threaded, np.transpose(array, (3, 2, 0, 1)))
