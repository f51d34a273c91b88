"""Which (op, dtype) kernels onnxruntime-web's wasm build lacks that onnxruntime in Python has.

Builds one single-node model per op and input dtype (elementwise arithmetic, comparisons, bitwise ops,
``Where``, ``Concat``, reductions, ``ArgMax``, unary math, ``Cast`` between every pair: 564 cases), opens
each with onnxruntime-web (the pinned release in the workbench cache, its Node entry ``ort.node.min.mjs``,
the same wasm kernels as the browser's) and with onnxruntime in Python, and prints the cases the
Python runtime accepts and the web build refuses. Its output is :data:`workbench.web.compat.WASM_KERNEL_GAPS`
(measured with onnxruntime-web 1.30.0 against onnxruntime 1.31.1: ``Where`` on int8 and on uint32)::

    PYTHONPATH=$PWD python -m tests.benchmarks.probe_web_kernels        # needs node and `workbench web setup`
"""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import onnx
from onnx import TensorProto, helper

DTYPES: dict[str, int] = {
    "float32": TensorProto.FLOAT, "float64": TensorProto.DOUBLE, "float16": TensorProto.FLOAT16,
    "int8": TensorProto.INT8, "uint8": TensorProto.UINT8, "int16": TensorProto.INT16, "uint16": TensorProto.UINT16,
    "int32": TensorProto.INT32, "uint32": TensorProto.UINT32, "int64": TensorProto.INT64,
    "uint64": TensorProto.UINT64, "bool": TensorProto.BOOL,
}  # fmt: skip
BINARY = ("Add", "Sub", "Mul", "Div", "Mod", "Max", "Min", "BitwiseAnd", "BitwiseOr", "BitwiseXor", "Pow")
COMPARISONS = ("Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual")
UNARY = ("Neg", "Abs", "Sign", "BitwiseNot", "Identity", "Not", "Floor", "Sqrt", "Exp", "Erf", "IsNaN", "IsInf")

# Node's side: open every model with onnxruntime-web's wasm backend, record "ok" or the error.
_PROBE_JS = """
import * as ort from %(entry)s;
import fs from 'fs';
ort.env.wasm.numThreads = 1;
const index = JSON.parse(fs.readFileSync('index.json'));
const result = {};
for (const [key, path] of Object.entries(index)) {
  try {
    const session = await ort.InferenceSession.create(fs.readFileSync(path), { executionProviders: ['wasm'] });
    await session.release();
    result[key] = 'ok';
  } catch (e) { result[key] = String(e.message || e).slice(0, 300); }
}
fs.writeFileSync('result.json', JSON.stringify(result));
"""


def _model(op: str, dtype: str, inputs: int = 2, out_dtype: str | None = None, **attrs: object) -> onnx.ModelProto:
    names = [f"x{i}" for i in range(inputs)]
    values = [helper.make_tensor_value_info(n, DTYPES[dtype], [3]) for n in names]
    if op == "Where":
        names = ["c", *names]
        values = [helper.make_tensor_value_info("c", TensorProto.BOOL, [3]), *values]
    graph = helper.make_graph([helper.make_node(op, names, ["y"], **attrs)], "probe", values,
                              [helper.make_tensor_value_info("y", DTYPES[out_dtype or dtype], None)])  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)


def cases() -> dict[str, onnx.ModelProto]:
    """The probe's models, by ``op:dtype`` (``Cast:from->to``)."""
    found: dict[str, onnx.ModelProto] = {}
    for op, dtype in itertools.product(BINARY, DTYPES):
        found[f"{op}:{dtype}"] = _model(op, dtype)
    for op, dtype in itertools.product(COMPARISONS, DTYPES):
        found[f"{op}:{dtype}"] = _model(op, dtype, out_dtype="bool")
    for dtype in DTYPES:
        found[f"Where:{dtype}"] = _model("Where", dtype)
        found[f"Concat:{dtype}"] = _model("Concat", dtype, axis=0)
        found[f"BitShift:{dtype}"] = _model("BitShift", dtype, direction="LEFT")
        for op in UNARY:
            found[f"{op}:{dtype}"] = _model(op, dtype, 1, "bool" if op in ("IsNaN", "IsInf") else None)
        for op in ("ReduceMax", "ReduceMin", "ReduceSum"):
            found[f"{op}:{dtype}"] = _model(op, dtype, 1, keepdims=0)
        found[f"ArgMax:{dtype}"] = _model("ArgMax", dtype, 1, "int64")
        for to in DTYPES:
            found[f"Cast:{dtype}->{to}"] = _model("Cast", dtype, 1, to, to=DTYPES[to])
    return found


def probe() -> dict[str, tuple[bool, str]]:
    """``op:dtype`` -> (onnxruntime in Python accepts it, onnxruntime-web's answer: "ok" or its error)."""
    import onnxruntime as ort

    from workbench.web import runtime

    node = shutil.which("node")
    if node is None:
        raise SystemExit("node is not on PATH: the probe runs onnxruntime-web in Node")
    entry = runtime.runtime_dist_dir() / "ort.node.min.mjs"
    models = cases()
    options = ort.SessionOptions()
    options.log_severity_level = 4
    with tempfile.TemporaryDirectory(prefix="web_kernels_") as tmp:
        root = Path(tmp)
        index: dict[str, str] = {}
        for number, (key, model) in enumerate(models.items()):
            path = root / f"{number}.onnx"
            path.write_bytes(model.SerializeToString())
            index[key] = path.name
        (root / "index.json").write_text(json.dumps(index))
        (root / "probe.mjs").write_text(_PROBE_JS % {"entry": json.dumps(str(entry))})
        subprocess.run([node, "probe.mjs"], cwd=root, check=True, timeout=600)
        web = json.loads((root / "result.json").read_text())
        answers: dict[str, tuple[bool, str]] = {}
        for key, name in index.items():
            try:
                ort.InferenceSession(str(root / name), options, providers=["CPUExecutionProvider"])
                python_ok = True
            except Exception:  # noqa: BLE001 - any refusal: the op is invalid for that type in ONNX too
                python_ok = False
            answers[key] = (python_ok, web[key])
    return answers


def main() -> int:
    import onnxruntime as ort

    from workbench.web import runtime

    answers = probe()
    gaps = {key: web for key, (python_ok, web) in answers.items() if python_ok and web != "ok"}
    print(f"{len(answers)} (op, dtype) cases; onnxruntime {ort.__version__} runs "
          f"{sum(ok for ok, _ in answers.values())}, onnxruntime-web {runtime.ORT_WEB_VERSION} wasm lacks {len(gaps)}:")  # fmt: skip
    for key, error in gaps.items():
        print(f"  {key}: {error.splitlines()[0][:160]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
