"""What the kernel-level benchmark scripts share: a one-thread onnxruntime session of a few nodes, and
interleaved timing of many calls in process CPU time.

``tests/benchmarks/bench_dot_kernels.py``, ``bench_conv_forms.py`` and ``bench_wide_conv.py`` each time a
handful of XLA forms of one layer against onnxruntime running the same layer. They build the same kind of
tiny ONNX model for onnxruntime and time every call in the same interleaved rounds (so a load spike from
another process hits every form alike); both live here once. Importing this module imports neither JAX
nor onnxruntime, so a script can still limit XLA's threads first (``tests/support/thread_limits.py``).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import TYPE_CHECKING

from tests.support.thread_limits import ort_session

if TYPE_CHECKING:
    import numpy as np
    import onnx
    import onnxruntime

OPSET = 17
IR_VERSION = 8  # old enough for any onnxruntime the project supports


def ort_graph_session(
    nodes: Sequence[onnx.NodeProto],
    inputs: Sequence[onnx.ValueInfoProto],
    outputs: Sequence[onnx.ValueInfoProto],
    initializers: Mapping[str, np.ndarray],
) -> onnxruntime.InferenceSession:
    """A one-thread onnxruntime session of ``nodes`` (default domain, opset 17), the weights as initializers."""
    from onnx import helper, numpy_helper

    graph = helper.make_graph(
        list(nodes), "layer", list(inputs), list(outputs),
        [numpy_helper.from_array(value, name) for name, value in initializers.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    return ort_session(model, 1)


class InterleavedTimes:
    """CPU milliseconds per call of every timed call, round by round, and the load average of each round."""

    def __init__(self, keys: Sequence[Hashable]) -> None:
        self.milliseconds: dict[Hashable, list[float]] = {key: [] for key in keys}
        self.loads: list[float] = []

    def median(self, key: Hashable) -> float:
        return statistics.median(self.milliseconds[key])

    def load_range(self) -> str:
        return f"{min(self.loads):.1f}-{max(self.loads):.1f}"


def time_interleaved(calls: Mapping[Hashable, Callable[[], object]], rounds: int, calls_per_timing: int) -> InterleavedTimes:
    """Time every call ``calls_per_timing`` times per round, all of them in each of ``rounds`` rounds.

    Process CPU time, not wall time: the machine is shared, and CPU time is what another process's load
    moves least. Each call must block until its result is ready (``block_until_ready`` for JAX).
    """
    times = InterleavedTimes(list(calls))
    for _ in range(rounds):
        with open("/proc/loadavg") as loadavg:
            times.loads.append(float(loadavg.read().split()[0]))
        for key, call in calls.items():
            start = time.process_time()
            for _ in range(calls_per_timing):
                call()
            times.milliseconds[key].append((time.process_time() - start) / calls_per_timing * 1e3)
    return times
