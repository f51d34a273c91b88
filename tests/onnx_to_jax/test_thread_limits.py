"""The benchmarks' thread limits (tests/support/thread_limits.py) really run JAX on one thread.

JAX's CPU client reads its thread settings once per process, so each check runs in a fresh Python
process and reports what the running XLA did: how many "XLAEigen" intra-op threads exist and how much
of the CPU time of a loop of jitted calls the calling thread spent itself (Linux's per-thread clocks in
/proc). Before the limits set ``PJRT_NPROC`` and turned asynchronous dispatch off, XLA split the same
calls across its pool threads (one per core) and the calling thread only waited.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# XLA sizes its pools by the cores this process may run on
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1

pytestmark = pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads per-thread clocks from Linux's /proc")

_REPORT = """
import json, os, time
import jax, jax.numpy as jnp
import numpy as np

def ticks(tid):
    fields = open(f"/proc/self/task/{tid}/stat").read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])

def all_ticks():
    return sum(ticks(tid) for tid in os.listdir("/proc/self/task"))

# big enough that XLA neither runs it inline as a cheap computation nor leaves the intra-op pool idle
x = jnp.asarray(np.random.default_rng(0).standard_normal((384, 384), dtype=np.float32))
f = jax.jit(lambda a: jnp.tanh(a @ a) @ a + a)
expected = np.tanh(np.asarray(x, np.float64) @ np.asarray(x, np.float64)) @ np.asarray(x, np.float64) + np.asarray(x)
got = np.asarray(f(x).block_until_ready())
main0, all0, start = ticks(os.getpid()), all_ticks(), time.process_time()
while time.process_time() - start < 0.5:
    f(x).block_until_ready()
names = [open(f"/proc/self/task/{tid}/comm").read().strip() for tid in os.listdir("/proc/self/task")]
print(json.dumps({
    "eigen_threads": names.count("tf_XLAEigen"),
    "async_dispatch": jax.config.read("jax_cpu_enable_async_dispatch"),
    "main_share": (ticks(os.getpid()) - main0) / max(1, all_ticks() - all0),
    "max_error": float(np.max(np.abs(got - expected))),
}))
"""


def _run(prelude: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for name in ("PJRT_NPROC", "NPROC", "XLA_FLAGS"):
        env.pop(name, None)
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(prelude) + _REPORT], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_one_thread_runs_every_call_on_the_calling_thread():
    report = _run("from tests.support.thread_limits import limit_xla_threads\nlimit_xla_threads(1)\n")
    assert report["max_error"] < 1e-2  # float32 products of 384 terms against float64
    assert report["eigen_threads"] == 1
    assert report["async_dispatch"] is False
    # the calling thread did (nearly) all of the work: no pool thread computed or spun
    assert report["main_share"] > 0.9, report


OLD_LIMITS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


@pytest.mark.skipif(CORES < 2, reason="with one core XLA's defaults are one thread too")
@pytest.mark.parametrize("xla_flags", [None, OLD_LIMITS], ids=["defaults", "old-limits"])
def test_without_the_limits_pool_threads_compute(xla_flags):
    # what the limits change: by default the calls are dispatched to XLA's pools, one thread per core;
    # the XLA_FLAGS the benchmarks set before 2026-12-03 changed nothing of that
    report = _run("" if xla_flags is None else f"import os\nos.environ['XLA_FLAGS'] = {xla_flags!r}\n")
    assert report["eigen_threads"] == CORES
    assert report["async_dispatch"] is True
    assert report["main_share"] < 0.5, report


def test_limits_refuse_a_backend_that_already_exists():
    script = textwrap.dedent(
        """
        import jax.numpy as jnp
        from tests.support.thread_limits import limit_xla_threads
        jnp.ones(2).block_until_ready()  # JAX's CPU client exists now, with its default threads
        try:
            limit_xla_threads(1)
        except RuntimeError as error:
            print("refused:", error)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "refused: limit_xla_threads: JAX's backends already exist" in done.stdout


def test_zero_threads_leaves_the_environment_alone(monkeypatch):
    from tests.support.thread_limits import limit_xla_threads

    monkeypatch.delenv("PJRT_NPROC", raising=False)
    monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=/nowhere")
    limit_xla_threads(0)
    assert "PJRT_NPROC" not in os.environ
    assert os.environ["XLA_FLAGS"] == "--xla_dump_to=/nowhere"
