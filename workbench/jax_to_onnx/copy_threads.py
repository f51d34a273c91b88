"""Large weight copies (kernel transposes, BatchNorm scaling) split across a few threads.

NumPy releases the GIL while it copies or multiplies an array of a plain dtype, so a copy cut into
chunks runs on as many cores as there are threads. A conversion's weight work is such copies: a Haiku
ResNet-18 lays out 46 MB of convolution kernels HWIO -> OIHW (~37 ms CPU on one core) and scales them by
its BatchNorms. Split in two, its wall time about halves on a 2-core machine; the CPU time stays the
same (docs/performance.md, "The CNNs' weight path"). Results are the same bytes: each chunk writes its
own part of the output with the same NumPy operation.

Threads: one per core this process may run on, at most :data:`MAX_THREADS` (the calling thread takes
a chunk itself); ``WORKBENCH_COPY_THREADS=1`` keeps every copy on the calling thread. Hand-written
because NumPy has no multi-threaded copy; the pool is :mod:`concurrent.futures`'.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

# more threads than this gain nothing on a memory-bound copy
MAX_THREADS = 4
# arrays below this many bytes are copied by the calling thread alone (handing work over costs ~50 µs)
MIN_PARALLEL_BYTES = 1 << 20
ENV_VAR = "WORKBENCH_COPY_THREADS"

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def copy_threads() -> int:
    """How many threads a large copy is split across (1: the calling thread only)."""
    setting = os.environ.get(ENV_VAR, "").strip()
    if setting:
        try:
            return max(1, min(int(setting), MAX_THREADS))
        except ValueError:
            raise ValueError(f"{ENV_VAR}={setting!r}: expected a whole number of threads (1 turns threading off).") from None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, MAX_THREADS))


def run_chunked(count: int, work: Callable[[int, int], None], nbytes: int) -> None:
    """Call ``work(start, stop)`` over ``range(count)`` cut into one contiguous chunk per thread.

    Chunks run on the pool and the calling thread; small jobs (``nbytes`` under
    :data:`MIN_PARALLEL_BYTES`) or a single thread run ``work(0, count)`` directly. The chunks must
    write disjoint parts of their output. Exceptions of any chunk are raised here.
    """
    if nbytes < MIN_PARALLEL_BYTES:  # decided before copy_threads(), which reads the environment and the affinity
        work(0, count)
        return
    threads = min(copy_threads(), count)
    if threads <= 1:
        work(0, count)
        return
    bounds = [count * i // threads for i in range(threads + 1)]
    futures = [_executor().submit(work, bounds[i], bounds[i + 1]) for i in range(1, threads)]
    try:
        work(bounds[0], bounds[1])
    finally:
        for future in futures:
            future.result()


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(MAX_THREADS - 1, thread_name_prefix="workbench-copy")
        return _pool


def _forget_pool_in_child() -> None:
    """A forked child has none of the parent's threads: it makes its own pool on first use."""
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_in_child)

__all__ = ["MAX_THREADS", "MIN_PARALLEL_BYTES", "copy_threads", "run_chunked"]
