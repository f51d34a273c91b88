"""How clean the exported graphs are: workbench vs jax2onnx (and torch.onnx for the ResNet twin).

For every zoo model (``workbench/zoo.py``): nodes, Transposes, initializer bytes and onnxruntime
latency at 1 thread and at onnxruntime's default thread count, for

- workbench (``wb.to_onnx``; image models also with ``input_layout="NCHW"``),
- jax2onnx 0.17 (run in its own virtualenv, default ``/work/venv-jax2onnx``, ``--jax2onnx-python``),
- torch.onnx (``dynamo=True, optimize=True``) for ``nnx_resnet``, whose PyTorch twin is written below.

Latency: every model's sessions are timed in interleaved rounds (each round runs each tool's
session ``--runs`` times and keeps the median), so load changes on the shared machine hit all
tools alike; the table shows the median over rounds. Prints a Markdown table.

    python tests/benchmarks/bench_graphs.py [--models nnx_resnet,nnx_cnn] [--rounds 5] [--runs 50]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

SIZES = {"B": 8, "T": 16}
IMAGE_MODELS = ("nnx_cnn", "nnx_resnet", "linen_cnn", "eqx_cnn", "nnx_vit")

_JAX2ONNX_SCRIPT = """
import sys, jax2onnx
sys.path.insert(0, {root!r})
from workbench import zoo
built = zoo.ZOO[{name!r}]()
model = jax2onnx.to_onnx(built.eval_fn(), built.inputs, opset=21)
open({path!r}, "wb").write(model.SerializeToString())
"""


@dataclass
class Row:
    model: str
    tool: str
    proto: onnx.ModelProto | None
    channels_first: bool = False
    error: str = ""
    latency_1: list[float] = field(default_factory=list)
    latency_n: list[float] = field(default_factory=list)


def _workbench(name: str, channels_first: bool) -> onnx.ModelProto:
    import workbench as wb
    from workbench import zoo

    built = zoo.ZOO[name]()
    return wb.to_onnx(built.fn, built.inputs, input_layout="NCHW" if channels_first else None)


def _jax2onnx(name: str, python: str) -> onnx.ModelProto:
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.onnx")
        script = _JAX2ONNX_SCRIPT.format(root=ROOT, name=name, path=path)
        done = subprocess.run([python, "-c", script], capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            errors = [line for line in done.stderr.splitlines() if "Error" in line and not line.startswith(" ")]
            raise RuntimeError(errors[-1] if errors else "failed")
        return onnx.load(path)


def _torch_resnet(channels: int = 16, blocks: int = 4, classes: int = 10) -> onnx.ModelProto:
    """The PyTorch twin of ``zoo.nnx_resnet`` (same layers, NCHW), exported with torch.onnx's dynamo exporter."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(channels)
            self.c2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(channels)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = torch.relu(self.bn1(self.c1(x)))
            return torch.relu(x + self.bn2(self.c2(h)))

    class ResNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(3, channels, 3, padding=1, bias=False)
            self.stem_bn = nn.BatchNorm2d(channels)
            self.blocks = nn.Sequential(*[Block() for _ in range(blocks)])
            self.head = nn.Linear(channels, classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = torch.max_pool2d(torch.relu(self.stem_bn(self.stem(x))), 2)
            return self.head(self.blocks(x).mean(dim=(2, 3)))

    model = ResNet().eval()
    example = torch.randn(2, 3, 32, 32)
    batch = torch.export.Dim("B", min=1, max=1024)
    program = torch.onnx.export(model, (example,), dynamo=True, optimize=True, dynamic_shapes=({0: batch},),
                                verbose=False)
    return program.model_proto


def _inputs(proto: onnx.ModelProto) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    feeds = {}
    initializers = {t.name for t in proto.graph.initializer}
    for value in proto.graph.input:
        if value.name in initializers:
            continue
        tensor = value.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else SIZES.get(d.dim_param, 8) for d in tensor.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type)
        if np.issubdtype(dtype, np.integer):
            feeds[value.name] = rng.integers(0, 50, shape).astype(dtype)
        else:
            feeds[value.name] = rng.standard_normal(shape).astype(dtype)
    return feeds


def _session(proto: onnx.ModelProto, threads: int | None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads is not None:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _time(session: Any, feeds: dict[str, np.ndarray], runs: int) -> float:
    session.run(None, feeds)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _stats(proto: onnx.ModelProto) -> tuple[int, int, int]:
    nodes = len(proto.graph.node)
    transposes = sum(node.op_type == "Transpose" for node in proto.graph.node)
    size = sum(int(np.prod(t.dims, dtype=np.int64)) * onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
               for t in proto.graph.initializer)
    return nodes, transposes, size


def _collect(models: list[str], python: str) -> list[Row]:
    rows: list[Row] = []
    for name in models:
        variants = [False, True] if name in IMAGE_MODELS else [False]
        for channels_first in variants:
            rows.append(Row(name, "workbench" + (" (NCHW input)" if channels_first else ""),
                            _workbench(name, channels_first), channels_first))
        try:
            rows.append(Row(name, "jax2onnx 0.17", _jax2onnx(name, python)))
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as error:
            rows.append(Row(name, "jax2onnx 0.17", None, error=str(error)[:100].replace('|', '/')))
        if name == "nnx_resnet":
            rows.append(Row(name, "torch.onnx (PyTorch twin)", _torch_resnet(), True))
    return rows


def _measure(rows: list[Row], rounds: int, runs: int) -> None:
    by_model: dict[str, list[Row]] = {}
    for row in rows:
        if row.proto is not None:
            by_model.setdefault(row.model, []).append(row)
    for group in by_model.values():
        prepared = [(row, _session(row.proto, 1), _session(row.proto, None), _inputs(row.proto)) for row in group]
        for _ in range(rounds):
            for row, single, default, feeds in prepared:
                row.latency_1.append(_time(single, feeds, runs))
                row.latency_n.append(_time(default, feeds, runs))


def _table(rows: list[Row]) -> str:
    lines = [
        "| model | exporter | nodes | Transposes | initializer bytes | ORT 1 thread (ms) | ORT default threads (ms) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        if row.proto is None:
            lines.append(f"| {row.model} | {row.tool} | failed: {row.error} | | | | |")
            continue
        nodes, transposes, size = _stats(row.proto)
        one = statistics.median(row.latency_1) * 1e3 if row.latency_1 else float("nan")
        many = statistics.median(row.latency_n) * 1e3 if row.latency_n else float("nan")
        lines.append(f"| {row.model} | {row.tool} | {nodes} | {transposes} | {size:,} | {one:.3f} | {many:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="", help="comma-separated zoo names (default: all)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--jax2onnx-python", default="/work/venv-jax2onnx/bin/python")
    parser.add_argument("--json", default="", help="also write the figures to this JSON file")
    args = parser.parse_args()
    from workbench import zoo

    models = [m for m in args.models.split(",") if m] or list(zoo.ZOO)
    rows = _collect(models, args.jax2onnx_python)
    _measure(rows, args.rounds, args.runs)
    print(f"batch {SIZES['B']}, sequence {SIZES['T']}; median of {args.rounds} interleaved rounds x {args.runs} runs")
    print(_table(rows))
    if args.json:
        payload = [
            {"model": r.model, "tool": r.tool, "stats": _stats(r.proto) if r.proto else None,
             "ms_1": r.latency_1, "ms_default": r.latency_n, "error": r.error}
            for r in rows
        ]
        with open(args.json, "w") as handle:
            json.dump(payload, handle, indent=1)


if __name__ == "__main__":
    main()
