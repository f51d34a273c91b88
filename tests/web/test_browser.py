"""The web harness in real headless Chromium (Debian's /usr/bin/chromium) with onnxruntime-web.

Needs `apt-get install -y chromium` and `workbench web setup` (the pinned onnxruntime-web in
the npm cache). This machine has no GPU, so every page must fall back from WebGPU to wasm.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import onnxruntime as ort
import pytest

from tests.support import web_models
from workbench.errors import WorkbenchError
from workbench.web import cli, runtime
from workbench.web.harness import GreedyGeneration, HarnessInfo, export_web_harness
from workbench.web.smoke import DEFAULT_BROWSER, SmokeReport, smoke_test_web_harness, smoke_test_web_harnesses

pytestmark = [
    pytest.mark.browser,
    pytest.mark.xdist_group("web_browser"),  # one worker shares the module's exports and reports
    pytest.mark.skipif(not Path(DEFAULT_BROWSER).is_file(),
                       reason=f"Debian's chromium is not installed at {DEFAULT_BROWSER} (apt-get install -y chromium)"),
]  # fmt: skip

GPT_PROMPT = [3, 14, 15]
GPT_STEPS = 6


def test_the_module_runs_on_one_xdist_worker(request: pytest.FixtureRequest):
    # under `--dist loadgroup` (.ci/run) xdist suffixes a grouped test's id with its group; pytest 9.2 stores ids
    # where xdist 3.8 cannot, and each worker then built this module's exports and Chromium pages (pyproject pins <9.2)
    if request.config.getoption("loadgroup", default=False):
        assert request.node.nodeid.endswith("@web_browser"), request.node.nodeid


@pytest.fixture(scope="module")
def harnesses(tmp_path_factory: pytest.TempPathFactory) -> dict[str, HarnessInfo]:
    try:
        runtime.runtime_dist_dir()
    except WorkbenchError as e:
        pytest.fail(f"onnxruntime-web is not set up for the browser tests: {e}")
    root = tmp_path_factory.mktemp("web")
    return {
        "mlp": export_web_harness(web_models.mlp(), root / "mlp"),
        "cnn": export_web_harness(web_models.cnn(), root / "cnn"),
        "gpt": export_web_harness(web_models.tiny_gpt(), root / "gpt",
                                  generate=GreedyGeneration(prompt=GPT_PROMPT, steps=GPT_STEPS)),
        "unsupported": export_web_harness(web_models.unsupported_op_model(), root / "unsupported"),
        "jax_mlp": export_web_harness(_jax_mlp_conversion(), root / "jax_mlp"),
        "dtypes": export_web_harness(_dtypes_model(), root / "dtypes", inputs=DTYPE_INPUTS, providers=("wasm",)),
        # Where on uint32 (jax.random's counters): the wasm build has no kernel; rewritten by default
        "where": export_web_harness(_where_uint32(), root / "where", inputs=WHERE_INPUTS, providers=("wasm",)),
        "where_raw": export_web_harness(_where_uint32(), root / "where_raw", inputs=WHERE_INPUTS,
                                        providers=("wasm",), web_rewrite=False),
        # an output of 21x512x512 = 5.5 M elements (over 2^20): compared in the page, against a file
        "segmentation": export_web_harness(_segmentation_head(), root / "segmentation", providers=("wasm",)),
        "segmentation_off": _with_one_expected_value_off(
            export_web_harness(_segmentation_head(), root / "segmentation_off", providers=("wasm",))),
        # a float16 output of 1024x1100 (over 2^20) compared in the page, in a browser with Float16Array and without
        "half": export_web_harness(_half_gate(), root / "half", inputs=HALF_INPUTS, providers=("wasm",)),
        "half_no16": _without_float16array(
            export_web_harness(_half_gate(), root / "half_no16", inputs=HALF_INPUTS, providers=("wasm",))),
        "half_off": _with_one_half_value_off(
            export_web_harness(_half_gate(), root / "half_off", inputs=HALF_INPUTS, providers=("wasm",))),
        # value names that are properties of every JavaScript object
        "object_keys": export_web_harness(_object_keys(), root / "object_keys", inputs=OBJECT_KEY_INPUTS, providers=("wasm",)),
        # float16 inputs the page rounds from JSON doubles itself (ties, subnormals, overflow), with and without
        "half_rounding": _with_unrounded_inputs(
            export_web_harness(_half_identity(), root / "half_rounding", inputs=HALF_ROUNDED, providers=("wasm",))),
        "half_rounding_no16": _without_float16array(_with_unrounded_inputs(
            export_web_harness(_half_identity(), root / "half_rounding_no16", inputs=HALF_ROUNDED, providers=("wasm",)))),
        # a harness written before the manifest recorded its example inputs' digest
        "old_manifest": _without_inputs_digest(export_web_harness(web_models.mlp(), root / "old_manifest", providers=("wasm",))),
    }  # fmt: skip


def _without_inputs_digest(info: HarnessInfo) -> HarnessInfo:
    """The harness's manifest as it was written before ``example_inputs_sha256`` existed."""
    import json

    manifest = json.loads(info.manifest_path.read_text())
    del manifest["example_inputs_sha256"]
    info.manifest_path.write_text(json.dumps(manifest))
    return info


SEGMENTATION_CLASSES = 21


def _segmentation_logits(x):
    """A segmentation head as DeepLab ends: 1x1 convolution to 21 class maps at 1/8 resolution, bilinear
    upsampling to the 512x512 image: x [1, 64, 64, 8] -> logits [1, 21, 512, 512]."""
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(7)
    kernel = rng.standard_normal((8, SEGMENTATION_CLASSES)).astype(np.float32)
    bias = rng.standard_normal(SEGMENTATION_CLASSES).astype(np.float32)
    maps = jnp.transpose(jnp.einsum("bhwc,ck->bhwk", x, kernel) + bias, (0, 3, 1, 2))
    return jax.image.resize(maps, (1, SEGMENTATION_CLASSES, 512, 512), "bilinear")


def _segmentation_head():
    import workbench as wb

    return wb.to_onnx(_segmentation_logits, [(1, 64, 64, 8)])


OFF_AT = (0, 13, 300, 7)  # where _with_one_expected_value_off changes the expected output


def _with_one_expected_value_off(info: HarnessInfo) -> HarnessInfo:
    """The harness with one expected value raised by 0.5 (file and manifest digest updated): its report must fail
    there, which shows the page's comparison can fail."""
    import hashlib
    import json

    manifest = json.loads(info.manifest_path.read_text())
    (entry,) = manifest["expected_outputs"].values()
    path = info.out_dir / entry["file"]
    values = np.fromfile(path, np.float32).reshape(entry["shape"])
    values[OFF_AT] += 0.5
    values.tofile(path)
    entry["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    info.manifest_path.write_text(json.dumps(manifest))
    return info


HALF_ROWS, HALF_COLUMNS = 1024, 1100  # 1,126,400 elements: over 2^20, compared in the page
HALF_INPUTS = {"x": np.random.default_rng(3).standard_normal((1, HALF_COLUMNS)).astype(np.float32)}
HALF_WEIGHTS = np.random.default_rng(4).standard_normal((HALF_ROWS, 1)).astype(np.float16)


def _half_gate():
    """y = sigmoid(float16(x) * w + 0.25) in float16: x float32 [1, 1100], w a float16 [1024, 1] initializer, so the
    page needs float16 only for the output (a browser without Float16Array gets its bits)."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("Cast", ["x"], ["xh"], to=TensorProto.FLOAT16), helper.make_node("Mul", ["xh", "w"], ["p"]),
             helper.make_node("Add", ["p", "b"], ["q"]), helper.make_node("Sigmoid", ["q"], ["y"])]  # fmt: skip
    graph = helper.make_graph(
        nodes, "half_gate", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, HALF_COLUMNS])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT16, [HALF_ROWS, HALF_COLUMNS])],
        initializer=[numpy_helper.from_array(HALF_WEIGHTS, "w"), numpy_helper.from_array(np.array([0.25], np.float16), "b")],
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def _without_float16array(info: HarnessInfo) -> HarnessInfo:
    """The harness as a browser without Float16Array (before Chromium 135) runs it: the page deletes it first."""
    page = info.out_dir / "index.html"
    text = page.read_text()
    assert text.count('<script type="module"') == 1
    page.write_text(text.replace('<script type="module"', '<script>delete globalThis.Float16Array;</script>\n'
                                                          '<script type="module"'))  # fmt: skip
    return info


HALF_OFF_AT = (700, 1000)


def _with_one_half_value_off(info: HarnessInfo) -> HarnessInfo:
    """The float16 harness with one expected value four float16 steps off (file and digest updated)."""
    import hashlib
    import json

    manifest = json.loads(info.manifest_path.read_text())
    (entry,) = manifest["expected_outputs"].values()
    path = info.out_dir / entry["file"]
    values = np.fromfile(path, np.float16).reshape(entry["shape"])
    values.view(np.uint16)[HALF_OFF_AT] -= 4
    values.tofile(path)
    entry["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    info.manifest_path.write_text(json.dumps(manifest))
    return info


# doubles a float16 input cannot hold: ties between two float16 (to even, both ways), just past a tie, the
# largest float16 and past it (to infinity), subnormals and a tie between the two smallest, -0, a tiny negative
HALF_DOUBLES = [1 + 2**-11, 1 + 3 * 2**-11, 1 + 2**-11 + 2**-30, 0.1, -2.7182818284590451, 65519.0, 65520.0, 1e-7,
                3 * 2**-25, 2**-25, -0.0, -1e-9, 2048 + 1, 2048 + 3, 1e-5, 12345.678]  # fmt: skip
with np.errstate(over="ignore"):  # 65520 rounds to infinity, as it should
    HALF_ROUNDED = {"h": np.asarray(HALF_DOUBLES, np.float64).astype(np.float16)}  # to nearest, ties to even


def _half_identity():
    from onnx import TensorProto, helper

    vi = helper.make_tensor_value_info
    graph = helper.make_graph([helper.make_node("Identity", ["h"], ["y"])], "half_identity",
                              [vi("h", TensorProto.FLOAT16, [len(HALF_DOUBLES)])],
                              [vi("y", TensorProto.FLOAT16, [len(HALF_DOUBLES)])])  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def _with_unrounded_inputs(info: HarnessInfo) -> HarnessInfo:
    """The example input as the doubles themselves (the expected output stays numpy's float16 rounding of them;
    the manifest's digest of the inputs file updated)."""
    import hashlib
    import json

    path = info.out_dir / info.manifest["example_inputs"]
    examples = json.loads(path.read_text())
    examples["inputs"]["h"]["data"] = HALF_DOUBLES
    path.write_text(json.dumps(examples))
    manifest = json.loads(info.manifest_path.read_text())
    manifest["example_inputs_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    info.manifest_path.write_text(json.dumps(manifest))
    return info


OBJECT_KEY_INPUTS = {"__proto__": np.array([-1.5, 0.0, 2.0], np.float32)}


def _object_keys():
    """Input '__proto__', outputs 'constructor' and 'toString': names every JavaScript object has as properties."""
    from onnx import TensorProto, helper

    vi = helper.make_tensor_value_info
    nodes = [helper.make_node("Relu", ["__proto__"], ["constructor"]), helper.make_node("Neg", ["__proto__"], ["toString"])]
    graph = helper.make_graph(nodes, "object_keys", [vi("__proto__", TensorProto.FLOAT, [3])],
                              [vi("constructor", TensorProto.FLOAT, [3]), vi("toString", TensorProto.FLOAT, [3])])  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


WHERE_INPUTS = {"c": np.asarray([True, False, True]), "a": np.asarray([0, 2**32 - 1, 5], np.uint32),
                "b": np.asarray([2**32 - 2, 1, 2**31], np.uint32)}  # fmt: skip


def _where_uint32():
    from onnx import TensorProto, helper

    values = [helper.make_tensor_value_info("c", TensorProto.BOOL, [3]),
              helper.make_tensor_value_info("a", TensorProto.UINT32, [3]),
              helper.make_tensor_value_info("b", TensorProto.UINT32, [3])]  # fmt: skip
    graph = helper.make_graph([helper.make_node("Where", ["c", "a", "b"], ["y"])], "where", values,
                              [helper.make_tensor_value_info("y", TensorProto.UINT32, [3])])  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


# one input and output per dtype the page reads, and an int64 a double cannot hold
DTYPE_INPUTS = {
    "h": np.asarray([[0.5, -1.25, 3.0], [65504.0, -0.0, 1e-3]], np.float16),
    "i": np.asarray([-7, 0, 2**30], np.int32),
    "n": np.asarray([2**60 + 3, -(2**53) - 7], np.int64),
    "b": np.asarray([True, False, True]),
    "u": np.asarray([0, 200, 255], np.uint8),
}


def _dtypes_model():
    from onnx import TensorProto, helper

    one = helper.make_tensor("one", TensorProto.INT64, [], [1])
    nodes = [helper.make_node("Mul", ["h", "h"], ["h2"]), helper.make_node("Add", ["i", "i"], ["i2"]),
             helper.make_node("Add", ["n", "one"], ["n1"]), helper.make_node("Not", ["b"], ["nb"]),
             helper.make_node("Identity", ["u"], ["u1"])]  # fmt: skip
    types = {"h": (TensorProto.FLOAT16, [2, 3]), "i": (TensorProto.INT32, [3]), "n": (TensorProto.INT64, [2]),
             "b": (TensorProto.BOOL, [3]), "u": (TensorProto.UINT8, [3])}  # fmt: skip
    outputs = {"h2": "h", "i2": "i", "n1": "n", "nb": "b", "u1": "u"}
    graph = helper.make_graph(
        nodes, "dtypes", [helper.make_tensor_value_info(k, *v) for k, v in types.items()],
        [helper.make_tensor_value_info(out, *types[src]) for out, src in outputs.items()], initializer=[one],
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def _jax_mlp(params: dict, x):
    import jax

    hidden = jax.nn.relu(x @ params["w1"] + params["b1"])
    return jax.nn.softmax(hidden @ params["w2"] + params["b2"])


def _jax_mlp_params() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {"w1": rng.standard_normal((16, 32)).astype(np.float32) * 0.25, "b1": np.zeros(32, np.float32),
            "w2": rng.standard_normal((32, 10)).astype(np.float32) * 0.2, "b2": np.zeros(10, np.float32)}  # fmt: skip


def _jax_mlp_conversion():
    """The README MLP through the JAX -> ONNX converter (weights closed over, batch symbolic)."""
    import functools

    import workbench as wb

    return wb.convert(functools.partial(_jax_mlp, _jax_mlp_params()), [("B", 16)])


@pytest.fixture(scope="module")
def reports(harnesses: dict[str, HarnessInfo]) -> dict[str, SmokeReport]:
    # one Chromium for every page (a fresh context each): a launch costs ~1-2 s under load
    return dict(zip(harnesses, smoke_test_web_harnesses([i.out_dir for i in harnesses.values()], timeout=90),
                    strict=True))  # fmt: skip


@pytest.mark.parametrize("name", ["mlp", "cnn", "gpt", "jax_mlp"])
def test_model_runs_in_chromium_and_matches_onnxruntime(name: str, reports, harnesses):
    report = reports[name]
    assert report.passed, report.summary()
    assert report.telemetry["schema"] == "workbench_web_telemetry_v1"
    assert report.telemetry["status"] == "ok"
    assert report.telemetry["load_ms"] > 0 and report.telemetry["run_ms"] > 0
    assert report.telemetry["ort_version"] == runtime.ORT_WEB_VERSION
    assert report.telemetry["cross_origin_isolated"] is True  # COOP/COEP from our server: wasm threads
    expected = harnesses[name].expected_outputs
    assert [p.name for p in report.parity] == list(expected)
    for item in report.parity:
        assert item.ok and item.max_abs_error <= item.tolerance, report.summary()
        # the browser values themselves, checked independently of the report's arithmetic
        browser = np.asarray(report.telemetry["outputs"][item.name]["data"], np.float64)
        np.testing.assert_allclose(browser.reshape(expected[item.name].shape), expected[item.name],
                                   atol=1e-4, rtol=1e-4)  # fmt: skip


def test_float16_int32_int64_bool_uint8_inputs_and_outputs_round_trip_exactly(reports):
    report = reports["dtypes"]
    assert report.passed, report.summary()
    outputs = report.telemetry["outputs"]
    assert {name: outputs[name]["dtype"] for name in outputs} == {
        "h2": "float16", "i2": "int32", "n1": "int64", "nb": "bool", "u1": "uint8"}  # fmt: skip
    h = DTYPE_INPUTS["h"]
    with np.errstate(over="ignore"):  # 65504^2 overflows float16 to inf, in the browser too
        np.testing.assert_array_equal(np.asarray(outputs["h2"]["data"], np.float16).reshape(2, 3), h * h)
    assert outputs["i2"]["data"] == (DTYPE_INPUTS["i"] * 2).tolist()
    # int64 beyond 2^53 travels as a decimal string both ways and comes back exact (2^60 + 4, not 2^60)
    assert outputs["n1"]["data"] == [str(2**60 + 4), str(-(2**53) - 6)]
    assert outputs["nb"]["data"] == [0, 1, 0]
    assert outputs["u1"]["data"] == [0, 200, 255]
    assert all(p.max_abs_error == 0 for p in report.parity), report.summary()


def test_where_on_uint32_runs_in_the_browser_once_rewritten_and_names_the_op_when_not(reports, harnesses):
    assert reports["where"].passed, reports["where"].summary()
    assert [str(r) for r in harnesses["where"].rewrites] == ["Where '' on uint32 runs on int64 (Cast in and out)"]
    assert reports["where"].telemetry["outputs"]["y"]["data"] == [0, 1, 5]
    raw = reports["where_raw"]
    assert not raw.passed and raw.missing_op == "Where", raw.summary()
    assert "Could not find an implementation for Where" in raw.failure


def test_jax_mlp_in_the_browser_matches_jax(reports, harnesses):
    info = harnesses["jax_mlp"]
    (output,) = info.manifest["outputs"]
    browser = np.asarray(reports["jax_mlp"].telemetry["outputs"][output["name"]]["data"], np.float32)
    want = np.asarray(_jax_mlp(_jax_mlp_params(), info.inputs["x"]))
    np.testing.assert_allclose(browser.reshape(want.shape), want, rtol=1e-4, atol=1e-5)


def test_an_output_over_2_20_elements_is_compared_in_the_page_and_matches_jax(reports, harnesses):
    info, report = harnesses["segmentation"], reports["segmentation"]
    (entry,) = info.manifest["expected_outputs"].values()
    assert entry["shape"] == [1, SEGMENTATION_CLASSES, 512, 512] and entry["file"] == "expected.0.bin"
    assert info.manifest_path.stat().st_size < 1 << 20  # the 22 MB of values are not in the manifest
    assert report.passed, report.summary()
    (parity,) = report.parity
    assert parity.ok and parity.worst_at is not None and parity.max_abs_error <= parity.tolerance
    record = report.telemetry["outputs"][parity.name]
    assert record["data"] is None and record["comparison"]["elements"] == 21 * 512 * 512
    assert "compared in the page" in report.summary()
    # the expected file against JAX itself, and the page's first values against it
    want = np.asarray(_segmentation_logits(info.inputs[info.manifest["inputs"][0]["name"]]))
    np.testing.assert_allclose(info.expected_outputs[parity.name], want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(record["sample"], np.float32), want.reshape(-1)[:8], rtol=1e-4, atol=1e-4)


def test_a_large_output_differing_in_one_element_fails_the_report_naming_where(reports):
    report = reports["segmentation_off"]
    assert not report.passed
    (parity,) = report.parity
    assert parity.worst_at == OFF_AT and parity.differing >= 1
    assert 0.45 < parity.max_abs_error < 0.55, report.summary()
    assert f"the largest at {list(OFF_AT)}" in report.summary() and "outputs differ" in report.failure


@pytest.mark.parametrize("name", ["half", "half_no16"])
def test_a_float16_output_over_2_20_elements_is_compared_in_the_page_with_and_without_float16array(name, reports, harnesses):
    """onnxruntime-web rounds some float16 results one step apart from onnxruntime in Python (40-odd of 1.1 M here):
    within the float16 tolerance; a browser without Float16Array gets the output's bits, which the page decodes."""
    info, report = harnesses[name], reports[name]
    (entry,) = info.manifest["expected_outputs"].values()
    assert entry == {**entry, "dtype": "float16", "shape": [HALF_ROWS, HALF_COLUMNS], "file": "expected.0.bin"}
    assert report.passed, report.summary()
    (parity,) = report.parity
    assert parity.tolerance >= 2**-10 and parity.max_abs_error <= parity.tolerance
    expected = info.expected_outputs[parity.name]
    if parity.worst_at:  # at most one float16 step where they differ most
        assert parity.max_abs_error <= np.spacing(np.abs(expected[parity.worst_at])), report.summary()
    record = report.telemetry["outputs"][parity.name]
    assert record["dtype"] == "float16" and record["comparison"]["elements"] == HALF_ROWS * HALF_COLUMNS
    # the page's first values (decoded) and the expected file against numpy's float32 sigmoid rounded to float16
    x = HALF_INPUTS["x"].astype(np.float16)
    want = (1 / (1 + np.exp(-(x * HALF_WEIGHTS + np.float16(0.25)).astype(np.float32)))).astype(np.float16)
    np.testing.assert_allclose(expected.astype(np.float32), want.astype(np.float32), rtol=0, atol=2**-10)
    np.testing.assert_allclose(np.asarray(record["sample"], np.float32), want.reshape(-1)[:8].astype(np.float32),
                               rtol=0, atol=2**-10)  # fmt: skip


def test_a_float16_output_four_steps_off_fails_naming_where(reports):
    report = reports["half_off"]
    assert not report.passed
    (parity,) = report.parity
    assert parity.worst_at == HALF_OFF_AT and parity.max_abs_error > parity.tolerance, report.summary()


@pytest.mark.parametrize("name", ["half_rounding", "half_rounding_no16"])
def test_float16_inputs_are_rounded_from_json_doubles_as_numpy_rounds(name, reports):
    """With Float16Array (Float16Array.from) and without (the page's own rounding to bits): every value, ties to
    even, subnormals and overflow to infinity included, is numpy's float16 of the double, bit for bit."""
    report = reports[name]
    assert report.passed, report.summary()
    got = np.asarray(report.telemetry["outputs"]["y"]["data"], np.float64).astype(np.float16)
    np.testing.assert_array_equal(got.view(np.uint16), HALF_ROUNDED["h"].view(np.uint16))
    assert np.signbit(got[HALF_DOUBLES.index(-0.0)])


def test_value_names_that_every_javascript_object_has_are_read_as_the_models(reports):
    """Was: an input named '__proto__' set the feeds' prototype (onnxruntime-web: "'feeds' must be an object..."), an
    output named 'constructor' was looked up as Object's constructor (TypeError in the page)."""
    report = reports["object_keys"]
    assert report.passed, report.summary()
    outputs = report.telemetry["outputs"]
    x = OBJECT_KEY_INPUTS["__proto__"]
    assert outputs["constructor"]["data"] == np.maximum(x, 0).tolist() and outputs["toString"]["data"] == (-x).tolist()


def test_webgpu_is_unavailable_here_and_the_page_falls_back_to_wasm(reports):
    telemetry = reports["mlp"].telemetry
    assert telemetry["providers_tried"] == ["webgpu", "wasm"]
    assert telemetry["provider_used"] == "wasm"
    reason = telemetry["fallback_reasons"]["webgpu"]
    assert "navigator.gpu" in reason or "adapter" in reason, reason
    assert "wasm" not in telemetry["fallback_reasons"]


def test_tiny_gpt_generates_the_same_tokens_as_python_onnxruntime(reports):
    report = reports["gpt"]
    session = ort.InferenceSession(web_models.tiny_gpt().SerializeToString(), providers=["CPUExecutionProvider"])
    tokens = list(GPT_PROMPT)
    for _ in range(GPT_STEPS):
        (logits,) = session.run(None, {"input_ids": np.asarray([tokens], np.int64)})
        tokens.append(int(logits[0, -1].argmax()))
    assert report.generated_tokens == tokens[len(GPT_PROMPT):]
    assert report.expected_tokens == tokens[len(GPT_PROMPT):]
    assert report.telemetry["generation"]["ms"] > 0


def test_an_op_missing_from_the_wasm_build_fails_the_report_and_names_it(reports):
    report = reports["unsupported"]
    assert not report.passed
    assert report.missing_op == "Scaler"
    assert "Scaler" in report.failure and "no kernel" in report.failure
    assert report.telemetry["status"] == "error"
    assert report.elapsed_s < 60, "a load failure must be reported, not waited out"
    assert report.parity == []


@pytest.mark.parametrize("name", ["mlp", "cnn", "gpt", "jax_mlp", "unsupported"])
def test_the_page_only_requests_files_from_127_0_0_1(name: str, reports, harnesses):
    report = reports[name]
    assert report.external_requests == []
    assert report.requests, "the request log is empty"
    for url in report.requests:
        parts = urlsplit(url)
        assert parts.scheme in ("http", "data", "blob"), url
        if parts.scheme == "http":
            assert parts.hostname == "127.0.0.1", url
    requested = {urlsplit(u).path.lstrip("/") for u in report.requests}
    runtime_files = set(harnesses[name].manifest["runtime"]["files"])
    assert {"model.onnx", "harness.manifest.json", "inputs.example.json"} | runtime_files <= requested


def test_a_harness_from_before_the_inputs_digest_runs_and_its_report_says_the_inputs_were_not_checked(reports):
    """An old manifest has no example_inputs_sha256: the smoke test skipped the inputs check without a word."""
    old, current = reports["old_manifest"], reports["mlp"]
    assert old.passed, old.summary()
    assert old.parity and all(item.ok for item in old.parity)
    (note,) = old.notes
    assert "no example_inputs_sha256" in note and "inputs.example.json was not checked" in note
    assert "export the harness again" in note and f"  note: {note}" in old.summary() and note in repr(old)
    assert current.notes == [] and "note:" not in current.summary()


def test_timeout_gives_a_failing_report_not_a_hang(harnesses):
    report = smoke_test_web_harness(harnesses["mlp"].out_dir, timeout=0.05)
    assert not report.passed
    assert "within 0.05 s" in report.failure
    assert report.elapsed_s < 30


def test_external_data_and_wasm_only_harness_run_in_chromium(tmp_path: Path):
    info = export_web_harness(web_models.cnn(seed=3), tmp_path / "ext", providers=("wasm",),
                              external_data_threshold=0)  # fmt: skip
    assert info.manifest["model"]["external_data"]
    report = smoke_test_web_harness(info.out_dir, timeout=90)
    assert report.passed, report.summary()
    assert report.telemetry["providers_tried"] == ["wasm"] and report.fallback_reasons == {}
    data_file = info.manifest["model"]["external_data"][0]["file"]
    assert data_file.startswith("model.onnx.") and any(u.endswith("/" + data_file) for u in report.requests)


def test_cli_smoke_exit_codes(harnesses, capsys: pytest.CaptureFixture[str]):
    assert cli.main(["web", "smoke", str(harnesses["mlp"].out_dir), "--timeout", "120"]) == 0
    assert "PASSED" in capsys.readouterr().out
    assert cli.main(["web", "smoke", str(harnesses["unsupported"].out_dir), "--timeout", "120"]) == 1
    assert "Scaler" in capsys.readouterr().out


# Real programs others wrote (tests/real_programs), chosen by bench_web_models.py's op census: together 68 of the
# 77 op types its 30 programs use (while loops, sorting/TopK, convolutions and pools, pgx's control flow, linear
# solves as local functions; jnp_sort_topk_cumsum needs the Where(uint32) rewrite). The whole census:
# `python -m tests.benchmarks.bench_web_models` (docs/web.md, "Real models in the browser").
REAL_PROGRAMS = ("blackjax_nuts_step", "jnp_sort_topk_cumsum", "eqx_sequential_pools", "pgx_connect_four",
                 "jnp_linear_regression_solve")  # fmt: skip


@pytest.fixture(scope="module")
def real_programs(tmp_path_factory: pytest.TempPathFactory):
    from tests.benchmarks.bench_web_models import prepare, program_cases

    root = tmp_path_factory.mktemp("web_real")
    cases = program_cases(REAL_PROGRAMS)
    prepared = {case.name: (case, *prepare(case, root)) for case in cases}
    reports = smoke_test_web_harnesses([info.out_dir for _, _, info, _ in prepared.values()], timeout=120)
    return {name: (*entry, report) for (name, entry), report in zip(prepared.items(), reports, strict=True)}


@pytest.mark.parametrize("name", REAL_PROGRAMS)
def test_real_program_runs_in_chromium_and_matches_onnxruntime_and_jax(name: str, real_programs):
    case, row, info, jax_outputs, report = real_programs[name]
    assert report.passed, report.summary()
    assert report.parity and all(p.ok for p in report.parity), report.summary()
    for spec, want in zip(info.manifest["outputs"], jax_outputs, strict=True):
        got = np.asarray(report.telemetry["outputs"][spec["name"]]["data"], np.float64).reshape(want.shape)
        if want.dtype.kind in "biu":
            np.testing.assert_array_equal(got, want, err_msg=spec["name"])
        else:  # the catalogue's tolerance against JAX, as onnxruntime in Python meets it
            np.testing.assert_allclose(got, want.astype(np.float64), rtol=case.rtol, atol=case.atol, err_msg=spec["name"])
    if name == "jnp_sort_topk_cumsum":  # jnp.floor_divide on uint32 selects with Where: rewritten for the wasm build
        assert info.rewrites and all(r.dtype == "uint32" for r in info.rewrites)
