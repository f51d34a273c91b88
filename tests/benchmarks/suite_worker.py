"""One converter, one model of the benchmark set, in a process of its own: driven by bench_suite.py.

    python suite_worker.py TOOL MODEL OUT_PATH      (TOOL: workbench | jax2onnx | torch)

Builds the model (tests/support/benchmark_set.py), converts it once (warm-up: imports, plugin loading,
JAX's caches), writes that ONNX file to OUT_PATH and prints one JSON line (nodes, build and first
conversion seconds). Then, for each line read from stdin: ``convert`` converts again, ``jaxpr`` runs
``jax.make_jaxpr`` of the same callable; each prints one JSON line with its wall and CPU seconds (and for
the workbench the split of ``Conversion.timings`` and the ModelProto's serialisation). Failures print ``{"error": ...}`` and exit 0, so the
table can show them. ``torch`` exports the model's PyTorch twin with ``torch.onnx.export`` once.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("KERAS_BACKEND", "jax")


# The protocol's own channel: a copy of the original stdout. File descriptor 1 itself is pointed at
# stderr in main(), so whatever the libraries print (torch.onnx's export report) cannot corrupt it.
_PROTOCOL = os.fdopen(os.dup(1), "w", buffering=1)


def _emit(**fields: Any) -> None:
    _PROTOCOL.write(json.dumps(fields) + "\n")
    _PROTOCOL.flush()


def _eval_callable(fn: Any) -> Any:
    """What the exporters compute: an NNX module cloned and switched to eval mode, else ``fn`` itself."""
    from workbench.zoo import ZooModel

    return ZooModel(fn, []).eval_fn()


def _timed(action: Any) -> dict[str, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = action()
    return {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu, "result": result}


def _export_torch(model: Any, out_path: str) -> None:
    import onnx
    import torch

    if model.torch_twin is None:
        _emit(error="no PyTorch twin")
        return
    net, example = model.torch_twin()
    start = time.perf_counter()
    with torch.no_grad():
        torch.onnx.export(net, example, out_path, dynamo=True, optimize=True, external_data=False)
    seconds = time.perf_counter() - start
    _emit(nodes=len(onnx.load(out_path).graph.node), first=seconds, build=0.0)


def main() -> None:
    tool, name, out_path = sys.argv[1:4]
    sys.stdout.flush()
    os.dup2(2, 1)
    import jax

    from tests.support.benchmark_set import SET

    start = time.perf_counter()
    model = SET[name]("bench")
    build = time.perf_counter() - start
    if tool == "torch":
        _export_torch(model, out_path)
        return
    if tool == "workbench":
        import workbench as wb

        def convert() -> Any:
            # the ModelProto is made on first use of .model: made here, as jax2onnx returns one
            conversion = wb.convert(model.fn, model.specs)
            started = time.perf_counter()
            proto = conversion.model
            return proto, {**conversion.timings, "serialise": time.perf_counter() - started}

        def proto_of(result: Any) -> Any:
            return result[0]
    else:
        from jax2onnx import to_onnx

        def convert() -> Any:
            return to_onnx(model.fn, model.specs)

        def proto_of(result: Any) -> Any:
            return result

    first = _timed(convert)
    proto = proto_of(first["result"])
    import onnx

    onnx.save(proto, out_path, save_as_external_data=False)
    evaluated = _eval_callable(model.fn)
    _emit(nodes=len(proto.graph.node), build=build, first=first["wall"])
    for line in sys.stdin:
        command = line.strip()
        if command == "convert":
            done = _timed(convert)
            result = done.pop("result")
            timings = result[1] if tool == "workbench" else {}
            _emit(**done, **{f"split_{key}": value for key, value in timings.items()})
        elif command == "jaxpr":
            done = _timed(lambda: jax.make_jaxpr(lambda *args: evaluated(*args))(*model.specs))
            done.pop("result")
            _emit(**done)
        elif command:
            _emit(error=f"unknown command {command!r}")


if __name__ == "__main__":
    try:
        main()
    except Exception as error:  # noqa: BLE001 - reported in the table, with the traceback on stderr
        traceback.print_exc()
        _emit(error=f"{type(error).__name__}: {str(error).splitlines()[0][:200] if str(error) else ''}")
