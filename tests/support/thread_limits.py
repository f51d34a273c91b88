"""Thread limits the benchmarks share, so that XLA and onnxruntime are timed on equal terms.

JAX's CPU client reads its settings once, when it is created (the first JAX computation), so
:func:`limit_xla_threads` must run before any (best before ``import jax``; this module imports neither
JAX nor onnxruntime at import time). A thread count of 0 or less leaves the runtimes' defaults.

What one thread means for XLA (jax 0.10): the CPU client has two thread pools, both sized by the
``PJRT_NPROC`` environment variable, else by the number of schedulable cores: "XLAEigen", across which
YNNPACK's fusions and XLA's own kernels split their work (the executable's intra-op pool), and
"XLAPjRtCpuClient", to which each call is dispatched when asynchronous dispatch is on (JAX's default:
the Python thread only waits). ``XLA_FLAGS`` cannot size either (``intra_op_parallelism_threads=1``, which
these benchmarks used to set there, is a TensorFlow session option that XLA ignores), so until
2026-12-03 the "one-thread" JAX figures ran on both cores' worth of threads, with the handoffs and the
idle workers' spinning counted in the process's CPU time. With ``PJRT_NPROC=1`` and asynchronous
dispatch off, the whole call runs on the calling thread, as ``session.run`` of a one-thread
onnxruntime session does, when XLA runs the program's thunks as one chain (a branching program still
hands ready thunks to the single XLAEigen thread) (docs/onnx_to_jax_corpus.md, "JAX's CPU runtime threads"). Two side
effects: XLA then compiles on one thread too (its compiles use the same client pool), and a numpy input
that is not 64-byte aligned still sends the call to the pool thread (JAX copies it first and the call
waits for the copy); inputs made by torch or by numpy's large allocations are aligned.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnx
    import onnxruntime


def limit_xla_threads(threads: int = 1) -> None:
    """Run JAX's CPU computations on ``threads`` threads (with 1: on the calling thread alone).

    Sets ``PJRT_NPROC`` (both of the CPU client's thread pools), keeps Eigen's own thread pool off
    (``--xla_cpu_multi_thread_eigen=false`` in ``XLA_FLAGS``) and, for one thread, turns JAX's
    asynchronous CPU dispatch off (``jax_cpu_enable_async_dispatch``: the call then runs where it is made
    instead of being handed to a pool thread). Raises RuntimeError if JAX's CPU backend already exists:
    it would ignore all three.
    """
    if threads <= 0:
        return
    import sys

    if "jax" in sys.modules:
        from workbench.compat import jax_backends_initialized

        if jax_backends_initialized():
            raise RuntimeError(
                "limit_xla_threads: JAX's backends already exist and would ignore the thread limits; "
                "call it before the first JAX computation (best before importing jax)."
            )
    os.environ["PJRT_NPROC"] = str(threads)
    flags = "--xla_cpu_multi_thread_eigen=false"
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flags}".strip()
    if threads == 1:
        import jax

        jax.config.update("jax_cpu_enable_async_dispatch", False)


def ort_session(model: onnx.ModelProto, threads: int = 1) -> onnxruntime.InferenceSession:
    """An onnxruntime CPU session of ``model`` on ``threads`` intra-op threads and one inter-op thread."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads > 0:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
