"""%%to_onnx and %onnx_view, driven headless through an IPython InteractiveShell.

Conversions go through the real converter (``workbench.jax_to_onnx.api.to_onnx``, what ``wb.to_onnx``
is); ``converter`` only wraps it to record what the magic passed. Unsupported primitives come from a primitive this test defines, so
no future handler can make that test moot.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np
import onnx
import onnxruntime
import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import CapturedIO, capture_output

from workbench.errors import SpecError
from workbench.specs import TensorSpec
from workbench.jupyter.magics import defined_names, parse_input_spec
from workbench.jupyter.result import OnnxResult


@dataclass
class RecordingConverter:
    """The real converter, recording each call's arguments."""

    real: Any
    calls: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, fn: Any, inputs: list[Any], **options: Any) -> onnx.ModelProto:
        self.calls.append({"fn": fn, "inputs": inputs, **options})
        return self.real(fn, inputs, **options)


@pytest.fixture
def converter(monkeypatch: pytest.MonkeyPatch, no_server_extension: None) -> RecordingConverter:
    from workbench.jax_to_onnx import api

    recording = RecordingConverter(api.to_onnx)
    monkeypatch.setattr(api, "to_onnx", recording)  # the magic looks it up when it runs
    return recording


MLP_CELL = """\
import jax, jax.numpy as jnp, numpy as np
rng = np.random.default_rng(0)
w1 = jnp.asarray(rng.standard_normal((30, 20)), jnp.float32)
w2 = jnp.asarray(rng.standard_normal((20, 10)), jnp.float32)
def g(x):
    return jax.nn.relu(x)
def f(x):
    return g(x @ w1) @ w2
y = 3
"""


@pytest.fixture
def shell() -> Iterator[InteractiveShell]:
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "workbench")
    yield ip
    ip.run_line_magic("unload_ext", "workbench")
    for name in ("f", "g", "h", "_onnx", "result", "model", "Scale", "scale", "y", "MLP", "w1", "w2"):
        ip.user_ns.pop(name, None)


def run(shell: InteractiveShell, source: str) -> tuple[Any, CapturedIO]:
    with capture_output() as captured:
        execution = shell.run_cell(source)
    return execution, captured


def test_load_and_unload_register_the_magics() -> None:
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "workbench")
    assert ip.find_cell_magic("to_onnx") is not None and ip.find_line_magic("onnx_view") is not None
    ip.run_line_magic("unload_ext", "workbench")
    assert ip.find_cell_magic("to_onnx") is None and ip.find_line_magic("onnx_view") is None


def test_to_onnx_runs_cell_converts_last_function_and_displays_one_bundle(shell, converter, tmp_path) -> None:
    out = tmp_path / "mlp.onnx"
    execution, captured = run(shell, f"%%to_onnx -i B,30 --out {out} --opset 20\n" + MLP_CELL)
    assert execution.success, captured.stderr
    assert shell.user_ns["y"] == 3 and callable(shell.user_ns["g"])  # the cell ran in the user namespace
    [call] = converter.calls
    assert call["fn"] is shell.user_ns["f"]  # the last callable; y = 3 is not callable
    assert call["inputs"] == [TensorSpec(("B", 30), np.dtype("float32"))] and call["path"] == str(out) and call["opset"] == 20
    result = shell.user_ns["_onnx"]
    assert isinstance(result, OnnxResult) and result.ok
    # the written file is the model, and it computes what the cell's function computes
    written = onnx.load(out)
    onnx.checker.check_model(written)
    x = np.random.default_rng(1).standard_normal((5, 30)).astype(np.float32)
    session = onnxruntime.InferenceSession(out.read_bytes(), providers=["CPUExecutionProvider"])
    [got] = session.run(None, {session.get_inputs()[0].name: x})
    np.testing.assert_allclose(got, np.asarray(shell.user_ns["f"](x)), rtol=1e-5, atol=1e-5)
    [output] = captured.outputs
    assert set(output.data) == {"text/html", "text/plain"}
    page = output.data["text/html"]
    assert "<iframe" in page and "127.0.0.1" in page
    assert "<details" in page and "float32[B×20]" in page  # static fallback with intermediate shapes
    text = output.data["text/plain"]
    nodes = len(written.graph.node)
    parameters = sum(int(np.prod(init.dims)) for init in written.graph.initializer)
    assert parameters >= 800  # w1 and w2, plus any scalar constants
    assert text.startswith(f"f → ONNX: {nodes} nodes, {parameters} parameters, ") and f"opset 20, written to {out}" in text
    assert ": float32[B×30]" in text and "127.0.0.1" not in text and " s)" not in text


def test_fn_option_name_option_and_dtype_specs(shell, converter) -> None:
    execution, captured = run(
        shell,
        "%%to_onnx --fn model.apply -i 2,64:int32 -i :int32 --name result --no-view\n"
        "class MLP:\n    def apply(self, x, s):\n        return x * s\n"
        "model = MLP()\n"
        "def h(x):\n    return x\n",
    )
    assert execution.success, captured.stderr
    [call] = converter.calls
    assert call["fn"] == shell.user_ns["model"].apply
    assert call["inputs"] == [TensorSpec((2, 64), np.dtype("int32")), TensorSpec((), np.dtype("int32"))]
    result = shell.user_ns["result"]
    assert "_onnx" not in shell.user_ns and result.viewer is None
    assert [i.type.tensor_type.elem_type for i in result.model.graph.input] == [onnx.TensorProto.INT32] * 2
    [output] = captured.outputs
    assert "<iframe" not in output.data["text/html"] and "<details" in output.data["text/html"]


def test_last_callable_object_is_chosen_and_classes_are_skipped(shell, converter) -> None:
    execution, captured = run(
        shell,
        "%%to_onnx -i 4,30\n"
        "class Scale:\n    def __call__(self, x):\n        return 2 * x\n"
        "scale = Scale()\n"
        "class MLP:\n    pass\n",
    )
    assert execution.success, captured.stderr
    assert converter.calls[0]["fn"] is shell.user_ns["scale"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("-i B,,30", "--input 'B,,30': input spec 'B,,30': empty dimension"),
        ("-i B,3.5", "dimension '3.5'"),
        ("-i 2,2:floaty", "unknown dtype 'floaty'"),
        ("", "Give one --input/-i SPEC"),
        ("-i B,30 --opset 0", "--opset 0"),
        ("-i B,30 --opset x", "invalid int value"),
        ("-i B,30 --name 1x", "--name '1x'"),
        ("-i B,30 --bogus", "unrecognized arguments: --bogus"),
        ("-i B,30 --fn nothere", "'nothere' is not defined"),
        ("-i B,30 --fn y", "is a int, not a function"),
    ],
)
def test_usage_errors_are_one_line_and_convert_nothing(shell, converter, line: str, message: str) -> None:
    execution, captured = run(shell, f"%%to_onnx {line}\ny = 3\n")
    assert not execution.success
    assert "UsageError" in captured.stderr and message in captured.stderr
    assert "Traceback" not in captured.stdout + captured.stderr
    assert converter.calls == [] and "_onnx" not in shell.user_ns


def test_cell_without_callable_asks_for_fn(shell, converter) -> None:
    execution, captured = run(shell, "%%to_onnx -i B,30\ny = 3\n")
    assert not execution.success and "name one with --fn NAME" in captured.stderr
    assert shell.user_ns["y"] == 3


def test_failing_cell_shows_its_traceback_and_converts_nothing(shell, converter) -> None:
    execution, captured = run(shell, "%%to_onnx -i B,30\ndef f(x):\n    return x\nraise KeyError('boom')\n")
    assert not execution.success
    assert "KeyError" in captured.stdout and "boom" in captured.stdout  # the cell's own traceback
    assert "nothing was converted" in captured.stderr
    assert converter.calls == [] and "_onnx" not in shell.user_ns


UNSUPPORTED_CELL = """\
from jax.extend.core import Primitive
wobble_p = Primitive("workbench_test_wobble")
wobble_p.def_impl(lambda x: x)
wobble_p.def_abstract_eval(lambda x: x)
def f(x):
    return wobble_p.bind(x) * 2
"""


def test_unsupported_primitives_show_the_table_and_no_viewer(shell, converter) -> None:
    execution, captured = run(shell, "%%to_onnx -i B,30\n" + UNSUPPORTED_CELL)
    assert execution.success, captured.stderr
    result = shell.user_ns["_onnx"]
    assert not result.ok and [p.name for p in result.unsupported] == ["workbench_test_wobble"]
    [output] = captured.outputs
    page = output.data["text/html"]
    assert "<iframe" not in page and "<th>primitive</th>" in page and "workbench_test_wobble" in page
    assert ":6 (f)" in page  # the cell line that used it
    assert "not converted, 1 unsupported primitive(s)" in output.data["text/plain"]


def test_unsupported_table_widget_shows_source_and_handler_stub(shell, converter) -> None:
    execution, captured = run(shell, "%%to_onnx -i B,30\n" + UNSUPPORTED_CELL)
    assert execution.success, captured.stderr
    table = shell.user_ns["_onnx"].unsupported_table
    assert [row.name for row in table.rows] == ["workbench_test_wobble"]
    [location_button] = table.location_buttons["workbench_test_wobble"]
    assert location_button.description.endswith(":6 (f)")
    location_button.click()  # the source line from the cell, read back through linecache
    assert "→    6 |     return wobble_p.bind(x) * 2" in table.last_excerpt
    table.stub_buttons["workbench_test_wobble"].click()
    compile(table.last_stub, "<stub>", "exec")  # the stub is valid Python
    assert "@handler('workbench_test_wobble'" in table.last_stub
    shown = [out["data"]["text/plain"] for out in table.output.outputs]
    assert any("def _workbench_test_wobble(" in text for text in shown)


def test_to_jax_writes_source_that_computes_the_same(shell, converter, tmp_path) -> None:
    from workbench.onnx_to_jax.api import compile_source, generate

    target = tmp_path / "gen" / "mlp_jax.py"
    execution, captured = run(shell, f"%%to_onnx -i B,30 --no-view --to-jax {target}\n" + MLP_CELL)
    assert execution.success, captured.stderr
    result = shell.user_ns["_onnx"]
    source = target.read_text()
    assert source == result.jax_source and result.jax_path == str(target)
    assert f"JAX source written to {target}" in captured.outputs[0].data["text/plain"]
    forward = compile_source(source)
    _, params = generate(result.model)
    x = np.random.default_rng(2).standard_normal((3, 30)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(forward(params, x)), np.asarray(shell.user_ns["f"](x)), rtol=1e-5, atol=1e-5)


def test_to_jax_without_path_shows_the_source(shell, converter) -> None:
    execution, captured = run(shell, "%%to_onnx -i B,30 --no-view --to-jax\n" + MLP_CELL)
    assert execution.success, captured.stderr
    header, code = captured.outputs
    assert "def forward(" in shell.user_ns["_onnx"].jax_source
    assert "def forward(" in code.data["text/plain"] or "forward" in code.data.get("text/html", "")


def test_parity_shows_report_and_plot(shell, converter) -> None:
    execution, captured = run(shell, "%%to_onnx -i B,30 --no-view --parity\n" + MLP_CELL)
    assert execution.success, captured.stderr
    report = shell.user_ns["_onnx"].parity
    assert report.ok, repr(report)
    header, table, *figure = captured.outputs  # plotly may add a renderer-setup output before the figure
    assert "Parity PASS" in table.data["text/html"]
    assert any("application/vnd.plotly.v1+json" in output.data for output in figure)


def test_help_lists_every_option(shell) -> None:
    doc = shell.find_cell_magic("to_onnx").__doc__
    for option in ("--fn", "--input", "--out", "--opset", "--no-view", "--parity", "--to-jax", "--name"):
        assert option in doc


def test_onnx_view_shows_files_variables_and_results(shell, converter, tmp_path, mlp_model) -> None:
    path = tmp_path / "net.onnx"
    onnx.save(mlp_model, path)
    shell.user_ns["model"] = mlp_model
    for source in (str(path), "model", "_onnx"):
        if source == "_onnx":
            run(shell, "%%to_onnx -i B,30 --no-view\n" + MLP_CELL)
        execution, captured = run(shell, f"%onnx_view {source}")
        assert execution.success, captured.stderr
        assert "float32[B×20]" in execution.result._repr_mimebundle_()["text/html"]


@pytest.mark.parametrize(
    ("source", "message"),
    [("missing_var", "neither an existing file nor a variable"), ("y", "is a int, not an ONNX model")],
)
def test_onnx_view_bad_sources(shell, source: str, message: str) -> None:
    shell.user_ns["y"] = 3
    execution, captured = run(shell, f"%onnx_view {source}")
    assert not execution.success and message in captured.stderr


def test_parse_input_spec() -> None:
    assert parse_input_spec("B,30") == TensorSpec(("B", 30), np.dtype("float32"))
    assert parse_input_spec("") == TensorSpec((), np.dtype("float32"))
    assert parse_input_spec("2,64:bfloat16") == TensorSpec((2, 64), np.dtype(jax.numpy.bfloat16))
    with pytest.raises(SpecError, match="'-1,3'.*dimension -1 is negative"):
        parse_input_spec("-1,3")


def test_defined_names_in_order() -> None:
    source = "import os\nx = 1\ndef f():\n    inner = 2\nclass C: pass\na, (b, c) = 1, (2, 3)\nn: int = 4\n"
    assert defined_names(source) == ["x", "f", "C", "a", "b", "c", "n"]


def test_ir_option_writes_the_graph_ir_beside_the_model(shell, converter, tmp_path) -> None:
    ir_path = tmp_path / "mlp.json"
    execution, captured = run(shell, f"%%to_onnx -i B,30 --no-view --ir {ir_path}\n" + MLP_CELL)
    assert execution.success, captured.stderr
    result = shell.user_ns["_onnx"]
    assert result.ir_path == str(ir_path) and f"Graph IR written to {ir_path}" in result.header_text()
    assert (tmp_path / "mlp.safetensors").is_file()  # the weights, beside the JSON
    from workbench.jax_to_onnx.graph_ir.api import graph_ir_to_onnx

    rebuilt = graph_ir_to_onnx(ir_path)
    assert rebuilt.SerializeToString() == result.model.SerializeToString()
