"""Big-model benchmark against jax2onnx: conversion + save of GB of weights, peak memory, files, parity.

A script, not a test: it prints a table. Two models, random weights drawn by NumPy (cheap; nothing
downloaded): the plain 9-layer MLP of issue 19 (9 x 8192² float32 = 2.42 GB) and a GPT
(``workbench.zoo.nnx_large_gpt``: 14 blocks of width 2048, about 2.9 GB). Every measurement runs in
its own fresh process, one after the other: the process builds the model, notes its resident memory
(which then holds the weights), resets the kernel's peak-RSS counter (``/proc/self/clear_refs``)
and converts and saves; the extra peak is VmHWM minus that baseline. jax2onnx runs in its own
interpreter (``--jax2onnx-python``) with ``return_mode="file"`` (its own external-data writer).
Then ``wb.parity`` checks each saved model against the JAX function, in a process of its own. The
``write-only`` row is the floor every tool pays: the weights' bytes written to one file by NumPy.

    PYTHONPATH=$PWD .venv/bin/python tests/benchmarks/bench_big.py \\
        --jax2onnx-python /work/venv-jax2onnx/bin/python [--models mlp,gpt] [--tools ours,to_onnx,jax2onnx]

Targets (issue 19): extra peak of conversion + save <= 0.5 x the weights' bytes; the 2.4 GB MLP
converted and saved in < 10 s; parity works on the saved > 2 GB models.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GB = 1e9

_COMMON = r"""
import json, sys, time
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)
model_name, out_path, config = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
from workbench import zoo
built = {"mlp": zoo.nnx_wide_mlp, "gpt": zoo.nnx_large_gpt}[model_name](**config)
from flax import nnx
weights = sum(p.get_value().nbytes for _, p in nnx.iter_graph(built.fn) if isinstance(p, nnx.Param))
"""

CONVERT = _COMMON + r"""
tool = sys.argv[4]
if tool == "write-only":  # the floor: the weights' bytes written to one file, nothing else
    import numpy as np
    def convert():
        with open(out_path + ".data", "wb") as f:
            for _, p in nnx.iter_graph(built.fn):
                if isinstance(p, nnx.Param):
                    np.asarray(p.get_value()).tofile(f)
elif tool == "jax2onnx":
    from jax2onnx import to_onnx
    convert = lambda: to_onnx(built.fn, built.inputs, return_mode="file", output_path=out_path)
else:
    import workbench as wb
    from workbench.jax_to_onnx import api  # noqa: F401 - imported before the baseline, as jax2onnx is
    if tool == "ours":
        convert = lambda: wb.convert(built.fn, built.inputs).save(out_path)
    else:  # the ModelProto API
        convert = lambda: wb.to_onnx(built.fn, built.inputs, path=out_path)
baseline = status("VmRSS")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset VmHWM to the current RSS
start = time.perf_counter()
convert()
seconds = time.perf_counter() - start
print(json.dumps({"weights": weights, "baseline": baseline, "peak": status("VmHWM"), "seconds": seconds}))
"""

PARITY = _COMMON + r"""
import workbench as wb
baseline = status("VmRSS")
start = time.perf_counter()
# float32 sums over thousands of terms differ by ~1e-4 relative between XLA and onnxruntime: 1e-3
report = wb.parity(built.fn, out_path, samples=1, sizes={"B": 1, "T": 16}, rtol=1e-3, atol=1e-3)
seconds = time.perf_counter() - start
print(json.dumps({"ok": report.ok, "max_abs": max(r.comparison.max_abs_error for r in report.results),
                  "seconds": seconds, "baseline": baseline, "peak": status("VmHWM")}))
"""

MODELS = {"mlp": {}, "gpt": {"symbolic_seq": False}}  # jax2onnx cannot trace the GPT with a symbolic length
# --small: the same models at about a twentieth of the size, to try the script on a busy machine
SMALL = {"mlp": {"width": 2048}, "gpt": {"symbolic_seq": False, "layers": 2, "d_model": 1024}}
LABELS = {"mlp": "MLP 9 x {width}²", "gpt": "GPT {layers} x {d_model}"}
DEFAULTS = {"mlp": {"width": 8192}, "gpt": {"layers": 14, "d_model": 2048}}


class LowMemory(RuntimeError):
    """The machine ran low on memory while a measurement ran: it was stopped, not measured."""


def _available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise KeyError("MemAvailable")


def _run(python: str, code: str, *args: str, min_free: float) -> dict[str, float]:
    """Run one measurement in its own interpreter; stop it (this child only) when the machine's
    available memory falls under ``min_free`` bytes, so a shared machine never reaches its OOM killer."""
    env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu")
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen([python, "-c", code, *args], stdout=out, stderr=err, text=True, env=env)
        while child.poll() is None:
            if _available() < min_free:
                child.kill()
                child.wait()
                raise LowMemory(f"{args[:1]} stopped: less than {min_free / GB:.1f} GB of memory left on the machine")
            time.sleep(0.1)
        out.seek(0)
        err.seek(0)
        if child.returncode != 0:
            raise RuntimeError(f"{python} {args}: exit {child.returncode}\n{err.read()[-3000:]}")
        return json.loads(out.read().strip().splitlines()[-1])


def _file_sizes(folder: Path) -> tuple[int, int]:
    """(bytes of the .onnx files, bytes of everything else: the external data)."""
    model = sum(p.stat().st_size for p in folder.iterdir() if p.suffix == ".onnx")
    data = sum(p.stat().st_size for p in folder.iterdir() if p.suffix != ".onnx")
    return model, data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jax2onnx-python", help="interpreter with jax2onnx installed (its own venv)")
    parser.add_argument("--models", default="mlp,gpt")
    parser.add_argument("--tools", default="write-only,ours,to_onnx,jax2onnx",
                        help="write-only: the floor, writing the weights' bytes with numpy and nothing else")
    parser.add_argument("--no-parity", action="store_true")
    parser.add_argument("--small", action="store_true", help="the models at about 1/20 of their size")
    parser.add_argument("--min-free-gb", type=float, default=1.0,
                        help="stop a measurement when the machine has less memory available than this")
    parser.add_argument("--work-dir", default=None,
                        help="where the models are written (default: a temp dir; /dev/shm/... takes the disk out)")
    args = parser.parse_args()
    tools = [t for t in args.tools.split(",") if t and (t != "jax2onnx" or args.jax2onnx_python)]
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="bench_big."))
    rows = []
    try:
        for model in [m for m in args.models.split(",") if m]:
            config = json.dumps((SMALL if args.small else MODELS)[model])
            for tool in tools:
                folder = work / f"{model}-{tool}"
                shutil.rmtree(folder, ignore_errors=True)
                folder.mkdir(parents=True)
                path = folder / "model.onnx"
                python = args.jax2onnx_python if tool == "jax2onnx" else sys.executable
                print(f"converting {model} with {tool} ...", file=sys.stderr, flush=True)
                label = LABELS[model].format(**{**DEFAULTS[model], **json.loads(config)})
                try:
                    measured = _run(python, CONVERT, model, str(path), config, tool, min_free=args.min_free_gb * GB)
                except LowMemory as stopped:
                    rows.append({"model": label, "tool": tool, "stopped": str(stopped)})
                    print(stopped, file=sys.stderr, flush=True)
                    continue
                model_bytes, data_bytes = _file_sizes(folder)
                row = {"model": label, "tool": tool, **measured, "onnx_bytes": model_bytes, "data_bytes": data_bytes}
                if not args.no_parity and tool != "write-only":
                    print(f"parity of {model} ({tool}) ...", file=sys.stderr, flush=True)
                    try:
                        row["parity"] = _run(sys.executable, PARITY, model, str(path), config,
                                             min_free=args.min_free_gb * GB)
                    except LowMemory as stopped:
                        row["parity"] = {"stopped": str(stopped)}
                shutil.rmtree(folder, ignore_errors=True)  # GB per model: one on disk at a time
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    _print_table(rows)


def _print_table(rows: list[dict]) -> None:
    print("| model | tool | weights GB | convert + save s | extra peak GB | extra / weights | .onnx MB | data GB "
          "| parity (rtol = atol = 1e-3) | parity s | parity peak GB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        if "stopped" in row:
            print(f"| {row['model']} | {row['tool']} | stopped: the machine ran low on memory | | | | | | | | |")
            continue
        extra = row["peak"] - row["baseline"]
        parity = row.get("parity")
        if parity is None:
            parity_cells = "- | - | -"
        elif "stopped" in parity:
            parity_cells = "stopped: the machine ran low on memory | - | -"
        else:
            parity_cells = (f"{'ok' if parity['ok'] else 'FAIL'} (max abs {parity['max_abs']:.2g}) | {parity['seconds']:.1f} "
                            f"| {parity['peak'] / GB:.2f}")
        print(
            f"| {row['model']} | {row['tool']} | {row['weights'] / GB:.2f} | {row['seconds']:.1f} "
            f"| {extra / GB:.2f} | {extra / row['weights']:.2f}x | {row['onnx_bytes'] / 1e6:.2f} "
            f"| {row['data_bytes'] / GB:.2f} | {parity_cells} |"
        )


if __name__ == "__main__":
    main()
