"""Thread limits the benchmarks share, so that XLA and onnxruntime are timed on equal terms.

XLA reads ``XLA_FLAGS`` once, when JAX creates its CPU client, so :func:`limit_xla_threads` must run
before ``import jax`` (this module imports neither JAX nor onnxruntime at import time). A thread count
of 0 or less leaves the runtime's default.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnx
    import onnxruntime


def limit_xla_threads(threads: int = 1) -> None:
    """Run XLA's CPU kernels on ``threads`` intra-op threads (Eigen's own thread pool off)."""
    if threads <= 0:
        return
    flags = f"--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads={threads}"
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flags}".strip()


def ort_session(model: onnx.ModelProto, threads: int = 1) -> onnxruntime.InferenceSession:
    """An onnxruntime CPU session of ``model`` on ``threads`` intra-op threads and one inter-op thread."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads > 0:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
