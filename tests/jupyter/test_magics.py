"""%%to_onnx and %onnx_view, driven headless through an IPython InteractiveShell.

Conversions go through the real converter (``workbench.jax_to_onnx.api.convert``, what ``wb.convert``
is); ``converter`` only wraps it to record what the magic passed. Unsupported primitives come from a primitive this test defines, so
no future handler can make that test moot.
"""

from __future__ import annotations

import re
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

import workbench
from workbench.errors import SpecError
from workbench.specs import TensorSpec
from workbench.jupyter.magics import defined_names, parse_input_spec
from workbench.jupyter.result import OnnxResult


@dataclass
class RecordingConverter:
    """The real converter, recording each call's arguments."""

    real: Any
    calls: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, fn: Any, inputs: list[Any], **options: Any) -> Any:
        self.calls.append({"fn": fn, "inputs": inputs, **options})
        return self.real(fn, inputs, **options)


@pytest.fixture
def converter(monkeypatch: pytest.MonkeyPatch, no_server_extension: None) -> RecordingConverter:
    from workbench.jax_to_onnx import api

    recording = RecordingConverter(api.convert)
    monkeypatch.setattr(api, "convert", recording)  # the magic looks it up when it runs
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
    for name in ("f", "g", "h", "_onnx", "result", "model", "Scale", "scale", "y", "MLP", "w1", "w2", "ConvNet",
                 "encoder", "encoder_fn", "variables"):  # fmt: skip
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
    assert call["inputs"] == [TensorSpec(("B", 30), np.dtype("float32"))] and call["opset"] == 20
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
    assert "<svg" in page and "self-contained drawing" in page  # no server extension here: the inline drawing
    assert "<details" in page and "float32[B×20]" in page  # static fallback with intermediate shapes
    text = output.data["text/plain"]
    nodes = len(written.graph.node)
    parameters = sum(int(np.prod(init.dims)) for init in written.graph.initializer)
    assert parameters >= 800  # w1 and w2, plus any scalar constants
    assert text.startswith(f"f → ONNX: {nodes} nodes, {parameters} parameters, ") and f"opset 20, written to {out}" in text
    assert ": float32[B×30]" in text and "127.0.0.1" not in text and " s)" not in text


def test_a_display_walks_and_serializes_the_model_once(shell, converter, monkeypatch) -> None:
    """The header was computed three times per display, each summarizing and serializing the model: a 94 MB
    Haiku ResNet50's display took 1.0 s, 0.9 of it there (its conversion: 0.8 s). One reading per display,
    none kept between displays: the next test edits the model in place."""
    from workbench.jupyter import result as result_module

    execution, captured = run(shell, "%%to_onnx -i B,30 --no-view\n" + MLP_CELL)
    assert execution.success, captured.stderr
    result = shell.user_ns["_onnx"]
    walks: list[onnx.ModelProto] = []
    real_summarize = result_module.summarize

    def counting_summarize(model: onnx.ModelProto) -> Any:
        walks.append(model)
        return real_summarize(model)

    monkeypatch.setattr(result_module, "summarize", counting_summarize)
    first, again = result._repr_mimebundle_(), result._repr_mimebundle_()
    assert walks == [result.model, result.model]
    nodes = len(result.model.graph.node)
    for bundle in (first, again):
        assert bundle["text/plain"].startswith(f"f → ONNX: {nodes} nodes, ")
        assert f"Node table: {nodes} nodes" in bundle["text/html"] and "float32[B×20]" in bundle["text/html"]
    result.model = workbench.to_onnx(lambda x: x * 2.0, [("B", 3)])  # a replaced model is described anew
    assert result.header_text().startswith("f → ONNX: 1 nodes, ") and len(walks) == 3


def test_a_model_edited_in_place_shows_in_the_next_display(shell, converter) -> None:
    """The header was cached by the model's identity: ``_onnx.model`` edited in place (a node removed, the
    opset changed) kept showing the old node count, size and opset."""
    execution, captured = run(shell, "%%to_onnx -i B,30 --no-view\n" + MLP_CELL)
    assert execution.success, captured.stderr
    result = shell.user_ns["_onnx"]
    nodes = len(result.model.graph.node)
    (default,) = [entry for entry in result.model.opset_import if entry.domain in ("", "ai.onnx")]
    opset = default.version
    before = result._repr_mimebundle_()
    assert before["text/plain"].startswith(f"f → ONNX: {nodes} nodes, ") and before["text/plain"].endswith(f"opset {opset}")
    del result.model.graph.node[-1]
    default.version = opset + 1
    after = result._repr_mimebundle_()
    assert after["text/plain"].startswith(f"f → ONNX: {nodes - 1} nodes, "), after["text/plain"]
    assert after["text/plain"].splitlines()[0].endswith(f"opset {opset + 1}") and f"Node table: {nodes - 1} nodes" in after["text/html"]
    assert result.header_text() == after["text/plain"].splitlines()[0]


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
        ("-i B,30 --specs y", "with -i/--input or with --specs NAME, not both"),
        ("-i B,30 --precision int8", "'float32', 'float16', 'bfloat16'"),
        ("-i B,30 --runtime onnxruntime-gpu", "onnxruntime-cpu"),
    ],
)
def test_usage_errors_are_one_line_and_convert_nothing(shell, converter, line: str, message: str) -> None:
    execution, captured = run(shell, f"%%to_onnx {line}\ny = 3\n")
    assert not execution.success
    assert "UsageError" in captured.stderr and message in captured.stderr
    assert "Traceback" not in captured.stdout + captured.stderr
    assert converter.calls == [] and "_onnx" not in shell.user_ns


PYTREE_CELL = """\
import jax.numpy as jnp
def regression(params, x):
    return jnp.tanh(x @ params["w"] + params["b"]) * params["scale"]["gain"]
specs = [{"w": (3,), "b": (), "scale": {"gain": ()}}, ("N", 3)]
"""


def test_specs_variable_gives_pytree_inputs(shell, converter) -> None:
    """A dict argument (NumPyro's params, a transformers batch) cannot be written with -i: --specs names a variable
    holding the specs as wb.to_onnx takes them."""
    execution, captured = run(shell, "%%to_onnx --specs specs --parity --no-view\n" + PYTREE_CELL)
    assert execution.success, captured.stderr
    [call] = converter.calls
    assert call["fn"] is shell.user_ns["regression"] and call["inputs"] == shell.user_ns["specs"]
    result = shell.user_ns["_onnx"]
    assert [i.name for i in result.model.graph.input] == ["params.b", "params.scale.gain", "params.w", "x"]
    assert result.parity.ok, repr(result.parity)
    rng = np.random.default_rng(0)
    params = {"w": rng.standard_normal(3).astype(np.float32), "b": np.float32(0.5), "scale": {"gain": np.float32(2.0)}}
    x = rng.standard_normal((4, 3)).astype(np.float32)
    session = onnxruntime.InferenceSession(result.model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {"params.b": np.asarray(params["b"]), "params.scale.gain": np.asarray(params["scale"]["gain"]),
             "params.w": params["w"], "x": x}  # fmt: skip
    [got] = session.run(None, feeds)
    np.testing.assert_allclose(got, np.asarray(shell.user_ns["regression"](params, x)), rtol=1e-5, atol=1e-6)
    for name in ("regression", "specs"):
        shell.user_ns.pop(name, None)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("--specs nothere", "--specs 'nothere': 'nothere' is not defined"),
        ("--specs y", "--specs 'y': inputs: expected a list with one spec per positional argument"),
        ("--specs specs.x", "--specs 'specs.x': give the name of a variable"),
    ],
)
def test_specs_usage_errors(shell, converter, line: str, message: str) -> None:
    execution, captured = run(shell, f"%%to_onnx {line}\n" + MLP_CELL)
    assert not execution.success and "UsageError" in captured.stderr and message in captured.stderr
    assert converter.calls == [] and "_onnx" not in shell.user_ns


@pytest.mark.parametrize("value", [("B", 30), ["B", 30]], ids=["tuple", "list"])
def test_specs_holding_one_shape_says_to_wrap_it_in_a_list(shell, converter, value) -> None:
    """Was: "inputs[0]: cannot use str as an input spec; give a shape tuple such as ('B', 30)", for ('B', 30)."""
    shell.user_ns["shape"] = value
    try:
        execution, captured = run(shell, "%%to_onnx --specs shape\n" + MLP_CELL)
    finally:
        shell.user_ns.pop("shape", None)
    assert not execution.success and "UsageError" in captured.stderr
    assert f"--specs 'shape': shape = {value!r} is one shape; give the list of specs, one per positional argument: " \
           "shape = [('B', 30)]." in captured.stderr
    assert converter.calls == [] and "_onnx" not in shell.user_ns


def test_failure_with_specs_names_the_option(shell, converter) -> None:
    cell = PYTREE_CELL.replace('"w": (3,)', '"w": (4,)')
    execution, captured = run(shell, "%%to_onnx --specs specs\n" + cell)
    assert not execution.success
    [output] = captured.outputs
    text = output.data["text/plain"]
    assert text.startswith("✘ regression → ONNX failed while converting it with --specs specs\n")
    assert "check that --specs specs gives each input the shape it expects" in text
    for name in ("regression", "specs"):
        shell.user_ns.pop(name, None)


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
    cell = f"cell [{shell.execution_count}]"
    assert f"{cell}, line 7 (f)" in page  # the line of the notebook cell that used it (line 1: %%to_onnx)
    assert "ipykernel" not in page and ".py:" not in page
    assert "not converted, 1 unsupported primitive(s)" in output.data["text/plain"]
    # the advice names what this notebook has: the result variable's stub method
    assert "write a handler: _onnx.stub('workbench_test_wobble') prints one" in output.data["text/plain"]
    assert "report.stub" not in page
    stub = result.stub("workbench_test_wobble")
    assert "@handler('workbench_test_wobble'" in stub


def test_unsupported_table_widget_shows_source_and_handler_stub(shell, converter) -> None:
    execution, captured = run(shell, "%%to_onnx -i B,30\n" + UNSUPPORTED_CELL)
    assert execution.success, captured.stderr
    table = shell.user_ns["_onnx"].unsupported_table
    assert [row.name for row in table.rows] == ["workbench_test_wobble"]
    [location_button] = table.location_buttons["workbench_test_wobble"]
    assert location_button.description == f"cell [{shell.execution_count}], line 7 (f)"
    location_button.click()  # the source line from the cell, read back through linecache
    assert "→    7 |     return wobble_p.bind(x) * 2" in table.last_excerpt
    table.stub_buttons["workbench_test_wobble"].click()
    compile(table.last_stub, "<stub>", "exec")  # the stub is valid Python
    assert "@handler('workbench_test_wobble'" in table.last_stub
    shown = [out["data"]["text/plain"] for out in table.output.outputs]
    assert any("def _workbench_test_wobble(" in text for text in shown)


def test_a_primitive_that_can_have_no_handler_gets_no_stub_button(shell, converter) -> None:
    """An Equinox MLP with a jax.pure_callback: 'what to do' said to move the callback out of the exported function
    (an ONNX graph cannot run Python) and the row still offered a "handler stub" button (ux51)."""
    cell = UNSUPPORTED_CELL.replace("return wobble_p.bind(x) * 2", "return jax.pure_callback(np.sin, jax.ShapeDtypeStruct(x.shape, x.dtype), wobble_p.bind(x))")
    execution, captured = run(shell, "%%to_onnx -i B,30\nimport jax, numpy as np\n" + cell)
    assert execution.success, captured.stderr
    table = shell.user_ns["_onnx"].unsupported_table
    assert {row.name for row in table.rows} == {"workbench_test_wobble", "pure_callback"}
    assert set(table.stub_buttons) == {"workbench_test_wobble"}  # the primitive a handler can be written for
    callback = next(row for row in table.rows if row.name == "pure_callback")
    assert "move it out of the exported function" in callback.suggestion


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


def test_generated_source_as_a_cells_value_shows_as_code(shell, tmp_path) -> None:
    """``wb.to_jax_source(model)`` as a cell's last value showed the quoted repr of a str: the whole module on one
    line with ``\\n`` escapes. It is still a str, and displays as the module."""
    import onnx.helper as oh

    rng = np.random.default_rng(0)
    weights = onnx.numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "conv.weight")
    graph = oh.make_graph(
        [oh.make_node("Conv", ["image", "conv.weight"], ["conv"], pads=[1, 1, 1, 1]), oh.make_node("Relu", ["conv"], ["out"])],
        "conv_relu",
        [oh.make_tensor_value_info("image", onnx.TensorProto.FLOAT, ["B", 3, 8, 8])],
        [oh.make_tensor_value_info("out", onnx.TensorProto.FLOAT, ["B", 4, 8, 8])],
        initializer=[weights],
    )
    path = tmp_path / "conv_relu.onnx"
    onnx.save(oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)], ir_version=8), path)
    execution, captured = run(shell, f"import workbench as wb\nsource = wb.to_jax_source({str(path)!r})\n")
    assert execution.success, captured.stderr
    source = shell.user_ns["source"]
    assert isinstance(source, str) and source.count("\n") > 20
    shown, _ = shell.display_formatter.format(source)  # what a kernel shows for a cell ending in `source`
    assert shown["text/plain"] == source  # the module itself, not "'\"\"\"JAX code generated...\\n..."
    page = shown["text/html"]
    assert "forward" in page and "<details><summary>runtime helpers used above (" in page and " _conv, " in page
    # and it is the code that computes the model
    from workbench.onnx_to_jax.api import compile_source, generate

    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    _, params = generate(onnx.load(path))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(np.asarray(compile_source(source)(params, x)), session.run(None, {"image": x})[0], rtol=1e-5, atol=1e-5)
    shell.user_ns.pop("source", None)


def test_parity_shows_report_and_plot(shell, converter) -> None:
    execution, captured = run(shell, "%%to_onnx -i B,30 --no-view --parity\n" + MLP_CELL)
    assert execution.success, captured.stderr
    report = shell.user_ns["_onnx"].parity
    assert report.ok, repr(report)
    header, table, *figure = captured.outputs  # plotly may add a renderer-setup output before the figure
    assert "Parity PASS" in table.data["text/html"]
    assert any("application/vnd.plotly.v1+json" in output.data for output in figure)


def test_parity_in_a_terminal_ipython_shows_a_line_and_opens_no_browser(shell, converter, monkeypatch) -> None:
    """plotly's default renderer in a terminal IPython is "browser": displaying the figure opened a browser tab per
    plot (here, with none, webbrowser's traceback and the figure's 100-line repr). Now a line says how to get it."""
    import webbrowser

    import plotly.io as pio

    opened: list[str] = []

    def no_browser(using: Any = None) -> Any:
        opened.append(str(using))
        raise webbrowser.Error("could not locate runnable browser")

    monkeypatch.setattr(webbrowser, "get", no_browser)
    monkeypatch.setattr(pio.renderers, "default", "browser")
    execution, captured = run(shell, "%%to_onnx -i B,30 --no-view --parity --name mlp_onnx\n" + MLP_CELL)
    assert execution.success, captured.stderr
    assert opened == [] and "Traceback" not in captured.stdout + captured.stderr
    plots = [output.data for output in captured.outputs if "plot" in output.data.get("text/plain", "")]
    assert [plot["text/plain"] for plot in plots] == ["parity plot (plotly): mlp_onnx.parity.figure()"]
    assert set(plots[0]) == {"text/plain"}  # nothing else to show where plotly would open a browser
    assert shell.user_ns["mlp_onnx"].parity.figure().data  # the figure itself is one call away


DRIFTING_HANDLER_CELL = """\
import jax.numpy as jnp, numpy as np
from jax.extend.core import Primitive
from workbench.jax_to_onnx.registry import handler
softsign_p = Primitive("workbench_test_softsign_drift")
softsign_p.def_impl(lambda x: x / (1 + jnp.abs(x)))
softsign_p.def_abstract_eval(lambda x: x)
@handler("workbench_test_softsign_drift", onnx_ops=("Softplus",))
def softsign(ctx, x):
    return ctx.op("Softplus", x)  # wrong: softsign is ONNX's Softsign
w = np.linspace(-1, 1, 24, dtype=np.float32).reshape(6, 4)
def f(x):
    h = jnp.tanh(x @ w)
    return softsign_p.bind(h) * 2.0
"""


def test_parity_that_fails_names_the_first_node_that_drifts(shell, converter) -> None:
    """A wrong handler written in the notebook: --parity showed FAIL and the error plot, but not where; the
    user had to know about .locate(). Now the locator runs and names the node, its primitive and the line."""
    from workbench.jax_to_onnx.registry import REGISTRY

    try:
        execution, captured = run(shell, "%%to_onnx -i B,6 --parity --no-view\n" + DRIFTING_HANDLER_CELL)
    finally:
        REGISTRY.unregister("workbench_test_softsign_drift")
    assert execution.success, captured.stderr
    result = shell.user_ns["_onnx"]
    assert not result.parity.ok
    first = result.divergence.first_divergent
    assert first.op_type == "Softplus" and first.primitive == "workbench_test_softsign_drift"
    h = np.tanh(result.divergence.inputs[0] @ shell.user_ns["w"])  # the node's input, as JAX computes it
    assert first.max_abs_error == pytest.approx(float(np.abs(np.log1p(np.exp(h)) - h / (1 + np.abs(h))).max()), rel=1e-3)
    shown = "\n".join(output.data.get("text/plain", "") for output in captured.outputs)
    pages = "".join(output.data.get("text/html", "") for output in captured.outputs)
    assert "Parity FAIL" in shown and "first divergent node" in pages
    assert f"{first.node!r} (Softplus from workbench_test_softsign_drift at cell [{shell.execution_count}], line 14 (f))" in shown


def test_parity_that_passes_runs_no_locator(shell, converter) -> None:
    execution, captured = run(shell, "%%to_onnx -i B,30 --parity --no-view\n" + MLP_CELL)
    assert execution.success, captured.stderr
    result = shell.user_ns["_onnx"]
    assert result.parity.ok and result.divergence is None
    assert "first divergent node" not in "".join(output.data.get("text/html", "") for output in captured.outputs)


BFLOAT16_CELL = """\
import jax, jax.numpy as jnp, numpy as np
w = jnp.asarray(np.random.default_rng(0).standard_normal((8, 8)), jnp.bfloat16)
def f(x):
    return jax.nn.relu(x @ w)
"""


def test_runtime_and_precision_options_export_what_onnxruntime_cpu_loads(shell, converter, tmp_path) -> None:
    """A bfloat16 model written with --out did not load in onnxruntime ('Could not find an implementation for
    MatMul(13)'), and the magic had no way to ask for the runnable export wb.to_onnx(runtime=) and the CLI give (ux51)."""
    from workbench.onnx_io.session import open_session

    x = np.random.default_rng(1).standard_normal((3, 8)).astype(jax.numpy.bfloat16)
    plain, runnable = tmp_path / "plain.onnx", tmp_path / "runnable.onnx"
    execution, captured = run(shell, f"%%to_onnx -i B,8:bfloat16 --no-view --out {plain}\n" + BFLOAT16_CELL)
    assert execution.success, captured.stderr
    with pytest.raises(onnxruntime.capi.onnxruntime_pybind11_state.NotImplemented):
        onnxruntime.InferenceSession(str(plain), providers=["CPUExecutionProvider"])
    execution, captured = run(shell, f"%%to_onnx -i B,8:bfloat16 --no-view --runtime onnxruntime-cpu --out {runnable}\n" + BFLOAT16_CELL)
    assert execution.success, captured.stderr
    assert converter.calls[-1]["runtime"] == "onnxruntime-cpu"
    got = open_session(str(runnable)).run({"x": x})[0]
    want = np.asarray(shell.user_ns["f"](x))
    assert got.dtype == want.dtype and np.abs(got.astype(np.float32) - want.astype(np.float32)).max() <= 2 ** -7 * np.abs(want.astype(np.float32)).max()

    execution, captured = run(shell, "%%to_onnx -i B,30 --no-view --precision float16\n" + MLP_CELL)
    assert execution.success, captured.stderr
    model = shell.user_ns["_onnx"].model
    assert converter.calls[-1]["precision"] == "float16"
    assert {t.data_type for t in model.graph.initializer if t.dims} == {onnx.TensorProto.FLOAT16}
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # inputs stay float32
    xs = np.random.default_rng(2).standard_normal((4, 30)).astype(np.float32)
    ours = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {model.graph.input[0].name: xs})[0]
    np.testing.assert_allclose(ours, np.asarray(shell.user_ns["f"](xs)), rtol=2e-2, atol=2e-2)


def test_to_onnx_passes_constraints_on_symbolic_dims(shell, converter) -> None:
    cell = ("import jax.numpy as jnp\n"
            "def f(x):\n"
            "    return x * jnp.tril(jnp.ones((16, 16)))[: x.shape[1], : x.shape[1]].sum(-1)\n")
    execution, captured = run(shell, "%%to_onnx -i B,T -c 'T <= 16' --no-view\n" + cell)
    assert execution.success, captured.stderr
    assert converter.calls[-1]["constraints"] == ("T <= 16",)
    session = onnxruntime.InferenceSession(shell.user_ns["_onnx"].model.SerializeToString(), providers=["CPUExecutionProvider"])
    for shape in ((2, 5), (1, 16)):
        x = np.ones(shape, np.float32)
        (got,) = session.run(None, {session.get_inputs()[0].name: x})
        np.testing.assert_allclose(got, np.arange(1, shape[1] + 1, dtype=np.float32)[None] * x)


def test_help_lists_every_option(shell) -> None:
    doc = shell.find_cell_magic("to_onnx").__doc__
    for option in ("--fn", "--input", "--constraint", "--out", "--opset", "--precision", "--runtime", "--no-view", "--parity",
                   "--to-jax", "--name"):
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
    assert len(list(tmp_path.glob("mlp.*.safetensors"))) == 1  # the weights, beside the JSON
    from workbench.jax_to_onnx.graph_ir.api import graph_ir_to_onnx

    rebuilt = graph_ir_to_onnx(ir_path)
    assert rebuilt.SerializeToString() == result.model.SerializeToString()


def test_ir_option_traces_the_cell_function_once(shell, converter, tmp_path) -> None:
    cell = "traces = []\ndef f(x):\n    traces.append(x.shape)\n    return x * 2.0\n"
    execution, captured = run(shell, f"%%to_onnx -i 3 --no-view --ir {tmp_path / 'f.json'}\n" + cell)
    assert execution.success, captured.stderr
    assert len(shell.user_ns["traces"]) == 1  # the Graph IR comes from the conversion's own trace


# --- what a notebook user reads: cell numbers, line numbers, short failures ----------------------

CONVNET_CELL = """\
from flax import nnx
import jax.numpy as jnp
class ConvNet(nnx.Module):
    def __init__(self, rngs):
        self.conv = nnx.Conv(3, 8, (3, 3), rngs=rngs)
        self.head = nnx.Linear(8, 10, rngs=rngs)
    def __call__(self, x):
        h = nnx.relu(self.conv(x))
        return self.head(h.mean(axis=(1, 2)))
model = ConvNet(nnx.Rngs(0))
"""


def test_failure_inside_the_model_is_one_short_message_naming_the_line_and_the_fix(shell, converter) -> None:
    """A ConvNet given NCHW specs when it expects NHWC (the chained traceback was 113 lines)."""
    prompt = shell.execution_count
    execution, captured = run_stored(shell, "%%to_onnx -i B,3,32,32\n" + CONVNET_CELL)
    assert not execution.success and "model" in shell.user_ns  # the cell ran; the conversion failed
    [summary] = captured.outputs
    lines = summary.data["text/plain"].splitlines()
    assert lines == [
        "✘ model → ONNX failed while converting it with -i B,3,32,32",
        f"  at cell [{prompt}], line 9 in ConvNet.__call__:  h = nnx.relu(self.conv(x))",
        lines[2],
        "  What to change: model traces with -i B,32,32,3: it expects input 1 channels last (NHWC), not channels "
        "first. Convert with that spec (and give the model data in that layout), or transpose the input inside "
        "the function.",
        "  (full traceback: %tb)",
    ]
    assert lines[2].startswith("  ValueError: conv_general_dilated lhs feature dimension size")
    page = summary.data["text/html"]
    assert "<details><summary>full traceback (" in page and "conv_general_dilated" in page.split("<details>")[1]
    # the error output itself is one line, and no traceback is printed
    error_text = captured.stdout + captured.stderr
    assert error_text.strip().splitlines() == [
        "ConversionFailed: model was not converted: ValueError (details above); %tb shows the full traceback"
    ]
    # %tb: the full chained traceback, down to JAX's shape rule, with the cell named as the prompt shows it
    with capture_output() as full:
        shell.run_line_magic("tb", "")
    assert "conv_general_dilated" in full.stdout and "TraceError" in full.stdout
    assert f"Cell In[{prompt}], line 9" in _strip_ansi(full.stdout)
    # the suggested spec really works
    execution, captured = run_stored(shell, "%%to_onnx -i B,32,32,3 --no-view\n" + CONVNET_CELL)
    assert execution.success, captured.stderr


def test_symbolic_dimension_used_as_a_python_int_gets_its_own_advice(shell, converter) -> None:
    execution, captured = run_stored(
        shell, "%%to_onnx -i B,4\nimport jax.numpy as jnp\ndef f(x):\n    return x.reshape(int(x.shape[0]) // 2, 8)\n"
    )
    assert not execution.success
    text = captured.outputs[0].data["text/plain"]
    assert "line 4 in f:  return x.reshape(int(x.shape[0]) // 2, 8)" in text
    assert "needs the actual size of a symbolic dimension of -i B,4" in text


def test_cell_body_is_compiled_under_the_prompt_number(shell) -> None:
    """``Cell In[14]`` under prompt [13] was the bug: the body ran under the next number."""
    prompt = shell.execution_count
    execution, captured = run_stored(shell, "%%to_onnx -i B,30\ny = 3\nraise KeyError('boom')\n")
    assert not execution.success
    assert f"Cell In[{prompt}], line 3" in _strip_ansi(captured.stdout)
    assert shell.execution_count == prompt + 1  # the prompt count moves on as for any cell


def test_parity_title_uses_the_name_given_with_fn(shell, converter) -> None:
    execution, captured = run_stored(
        shell,
        "%%to_onnx --fn encoder_fn -i B,30 --no-view --parity\n"
        "import functools, jax\nfrom flax import linen\n"
        "encoder = linen.Dense(4)\n"
        "variables = encoder.init(jax.random.PRNGKey(0), jax.numpy.ones((1, 30)))\n"
        "encoder_fn = functools.partial(encoder.apply, variables)\n",
    )
    assert execution.success, captured.stderr
    report = shell.user_ns["_onnx"].parity
    assert report.summary().startswith("Parity PASS: encoder_fn in JAX vs its ONNX conversion, ") and "apply" not in report.summary()
    assert "encoder_fn in JAX vs its ONNX conversion" in report.figure().layout.title.text


def run_stored(shell: InteractiveShell, source: str) -> tuple[Any, CapturedIO]:
    """Run a cell as a kernel does (stored in history: the prompt number moves on)."""
    with capture_output() as captured:
        execution = shell.run_cell(source, store_history=True)
    return execution, captured


def _strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def test_locations_name_the_notebook_cell_everywhere(shell) -> None:
    """wb.check's report, the converter's error and the ONNX nodes' doc strings all say ``cell [N], line L``."""
    prompt = shell.execution_count
    execution, captured = run_stored(shell, "import jax.numpy as jnp\n\ndef f(x):\n    return jnp.tanh(x) * 2\n")
    assert execution.success, captured.stderr
    execution, captured = run_stored(shell, UNSUPPORTED_CELL.replace("def f(", "def h("))
    assert execution.success, captured.stderr
    report = workbench.check(shell.user_ns["h"], [("B", 3)])
    [usage] = report.unsupported
    assert [str(location) for location in usage.locations] == [f"cell [{prompt + 1}], line 6 (h)"]
    with pytest.raises(workbench.UnsupportedPrimitiveError, match=rf"cell \[{prompt + 1}\], line 6 \(h\)"):
        workbench.to_onnx(shell.user_ns["h"], [("B", 3)])
    model = workbench.to_onnx(shell.user_ns["f"], [("B", 3)])
    docs = {node.op_type: node.doc_string for node in model.graph.node}
    assert docs["Tanh"] == f"tanh at cell [{prompt}], line 4 (f)"
    from workbench.notebook_cells import cell_label

    assert cell_label(workbench.__file__) is None  # a real file keeps its path


def test_onnx_view_transport_option(shell, tmp_path, mlp_model, no_server_extension) -> None:
    path = tmp_path / "net.onnx"
    onnx.save(mlp_model, path)
    execution, captured = run(shell, f"%onnx_view {path} --transport kernel-server")
    assert execution.success, captured.stderr
    assert execution.result.transport == "kernel-server" and "<iframe" in execution.result._repr_mimebundle_()["text/html"]
    execution, captured = run(shell, f"%onnx_view {path} --transport jupyter-server")
    assert not execution.success and "server extension is not active" in captured.stderr


def test_a_failure_outside_the_users_code_says_so(shell, converter, tmp_path) -> None:
    """A handler that crashes (no line of the user's in the traceback): the message says where it is from."""
    from jax.extend.core import Primitive

    from workbench.jax_to_onnx.registry import REGISTRY, handler

    crash_p = Primitive("workbench_test_crash")
    crash_p.def_impl(lambda x: x)
    crash_p.def_abstract_eval(lambda x: x)
    shell.user_ns["crash_p"] = crash_p

    @handler("workbench_test_crash", onnx_ops=("Identity",), testcases=[])
    def _crashing(ctx, x):
        raise RuntimeError("the handler is broken")

    try:
        execution, captured = run_stored(shell, "%%to_onnx -i 3\ndef f(x):\n    return crash_p.bind(x)\n")
    finally:
        REGISTRY.unregister("workbench_test_crash")
    assert not execution.success
    text = captured.outputs[0].data["text/plain"]
    assert "the handler for primitive 'workbench_test_crash'" in text and "the handler is broken" in text
    assert "in test_a_failure_outside_the_users_code_says_so.<locals>._crashing:" in text  # this file is "user code" here
