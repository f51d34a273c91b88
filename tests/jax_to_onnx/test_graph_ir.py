"""Graph IR: every document the suite produces validates against the schema, and round-trips to the same ONNX.

Equality is byte equality: ``graph_ir_to_onnx(<the IR as JSON text>)`` serializes to exactly the bytes
``to_onnx`` gives for the same function and specs (nodes, names, initializers, value_info, functions,
doc strings with the user's source lines). Generated from the handler registry and the zoo.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import onnx
import pytest
from jax import lax

import workbench as wb
from tests.support.doors import GRAPH_IR_EXPECTED_FAILURES, case_params, unknown_entries, zoo_params
from tests.support.harness import concrete_inputs, run_onnx
from workbench import zoo
from workbench.errors import GraphIRError, UnsupportedPrimitiveError
from workbench.jax_to_onnx.graph_ir import values
from workbench.jax_to_onnx.graph_ir.schema import graph_ir_schema, validate_graph_ir


def _round_trip_bytes(document: dict) -> bytes:
    """The document through JSON text (what a file holds), validated, then converted."""
    text = wb.to_json(document)
    validate_graph_ir(json.loads(text))
    return wb.graph_ir_to_onnx(text).SerializeToString()


def test_expected_failures_name_real_cases():
    assert not unknown_entries(GRAPH_IR_EXPECTED_FAILURES)


@pytest.mark.parametrize("case", case_params(GRAPH_IR_EXPECTED_FAILURES))
def test_handler_testcase_round_trips_byte_equal(case):
    conversion = wb.convert(case.fn, case.inputs, enable_double_precision=case.x64)  # what to_onnx returns
    document = conversion.to_graph_ir()
    assert document["format"] == "workbench_graph_ir_v1"
    assert _round_trip_bytes(document) == conversion.model.SerializeToString()


@pytest.mark.parametrize("name", zoo_params(GRAPH_IR_EXPECTED_FAILURES))
def test_zoo_model_round_trips_byte_equal(name, tmp_path):
    built = zoo.ZOO[name]()
    reference = wb.to_onnx(built.fn, built.inputs)
    document = wb.export_graph_ir(built.fn, built.inputs)
    assert _round_trip_bytes(document) == reference.SerializeToString()
    # the same through files, with the weights in a .safetensors beside the JSON
    path = wb.save_graph_ir(document, tmp_path / f"{name}.json", external_weights=True)
    assert len(list(tmp_path.glob(f"{name}.????????????????.safetensors"))) == 1  # named by its content's digest
    assert path.stat().st_size < len(wb.to_json(document))
    assert wb.graph_ir_to_onnx(path).SerializeToString() == reference.SerializeToString()


# ----------------------------------------------------------------------------- what a document holds
_W = (np.arange(12.0, dtype=np.float32).reshape(4, 3) / 10).astype(np.float32)


def _mlp(x):
    return jnp.tanh(x @ _W)


def test_document_holds_symbolic_shapes_sources_and_weights_by_name():
    built = zoo.nnx_mlp()
    document = wb.export_graph_ir(built.fn, built.inputs)
    assert document["symbols"] == ["B"]
    assert document["inputs"] == [{"name": "x", "dtype": "float32", "shape": ["B", 30]}]
    assert document["outputs"][0]["shape"] == ["B", 10]
    assert "linear1.kernel" in document["weights"] and "linear1.kernel" in document["tensors"]
    assert document["tensors"]["linear1.kernel"]["shape"] == [30, 20]
    first_dot = next(e for e in document["graph"]["eqns"] if e["primitive"] == "dot_general")
    assert first_dot["source"]["file"].endswith(".py") and first_dot["source"]["line"] > 0
    assert first_dot["params"]["dimension_numbers"] == [[[1], [0]], [[], []]]


def test_control_flow_bodies_are_nested_graphs_and_params_are_tagged():
    def f(p, x):
        y = lax.cond(p > 0, lambda v: v * 2.0, lambda v: jnp.sin(v), x)
        return lax.while_loop(lambda c: c[0] < 3, lambda c: (c[0] + 1, c[1] + 1.0), (0, y))[1].astype(jnp.float16)

    document = wb.export_graph_ir(f, [np.float32(1.0), ("B", 4)])
    eqns = {e["primitive"]: e for e in document["graph"]["eqns"]}
    branches = eqns["cond"]["params"]["branches"]
    assert len(branches) == 2 and all("$closed_jaxpr" in b for b in branches)
    assert {e["primitive"] for e in branches[0]["$closed_jaxpr"]["graph"]["eqns"]} == {"sin"}  # the false branch
    assert eqns["convert_element_type"]["params"]["new_dtype"] == {"$dtype": "float16"}
    assert "$closed_jaxpr" in eqns["while"]["params"]["body_jaxpr"]


def test_non_finite_constants_survive_as_json():
    def f(x):
        return jnp.where(jnp.isnan(x), jnp.inf, x) + jnp.array([np.nan, -np.inf, 0.5], np.float32)

    document = wb.export_graph_ir(f, [(3,)])
    text = wb.to_json(document)
    assert "NaN" not in text and "Infinity" not in text  # strict JSON
    assert '"nan"' in text and '"-inf"' in text
    model = wb.graph_ir_to_onnx(text)
    x = np.array([np.nan, 1.0, 2.0], np.float32)
    np.testing.assert_array_equal(run_onnx(model, [x])[0], np.asarray(f(x)))


def test_a_bfloat16_model_with_literals_round_trips_byte_equal(tmp_path):
    # a bfloat16 literal (kind 'V') was written as base64, which the schema refuses for literals: %%to_onnx --ir on a
    # Flax Linen block in bfloat16 failed with 'the document is not a valid workbench_graph_ir_v1 Graph IR (5
    # problem(s)): at /graph/eqns/37/inputs/0: {'literal': {'dtype': 'bfloat16', ... 'base64': 'gP8='}}' (ux51)
    w = jnp.asarray(_W, jnp.bfloat16)

    def block(x):
        h = x @ w
        return jax.nn.gelu(h) * jnp.bfloat16(0.5) + h.max(axis=-1, keepdims=True)

    spec = jax.ShapeDtypeStruct((2, 4), jnp.bfloat16)
    document = wb.export_graph_ir(block, [spec])  # validated against the schema as it is made
    literals = [v["literal"] for eqn in document["graph"]["eqns"] for v in eqn["inputs"] if "literal" in v]
    assert literals and {lit["dtype"] for lit in literals} >= {"bfloat16"}
    assert all("values" in lit["data"] for lit in literals)
    reference = wb.to_onnx(block, [spec])
    assert _round_trip_bytes(document) == reference.SerializeToString()
    path = wb.save_graph_ir(document, tmp_path / "block.json", external_weights=True)
    assert wb.graph_ir_to_onnx(path).SerializeToString() == reference.SerializeToString()


@pytest.mark.parametrize(
    "array",
    [
        np.array([1 + 2j, complex(np.nan, -1.0), complex(0.0, np.inf)], np.complex64),
        np.array([[0.1, -0.0, np.inf]], jnp.bfloat16),
        np.arange(40, dtype=np.float16).reshape(5, 8),
        np.array([True, False]),
        np.array(2**62, np.int64),
        np.array([255, 0], np.uint8),
    ],
    ids=["complex64", "bfloat16", "float16-base64", "bool", "int64", "uint8"],
)
def test_tensors_encode_bit_exactly(array):
    """Finite values bit for bit; non-finite ones as 'nan'/'inf'/'-inf' (a NaN's sign and payload are not kept)."""
    entry = values.encode_array(array)
    decoded = values.decode_array(json.loads(json.dumps(entry, allow_nan=False)), "test")
    assert decoded.dtype == array.dtype and decoded.shape == array.shape
    assert decoded.tobytes() == array.tobytes()


def test_weights_in_a_side_file_are_read_back_and_contained(tmp_path):
    document = wb.export_graph_ir(_mlp, [("B", 4)])
    path = wb.save_graph_ir(document, tmp_path / "mlp.json", external_weights=True, threshold=16)
    stored = json.loads(path.read_text())
    external = [t for t in stored["tensors"].values() if "external" in t["data"]]
    side_files = [p.name for p in tmp_path.glob("mlp.*.safetensors")]
    assert len(side_files) == 1 and external and all(t["data"]["external"]["file"] == side_files[0] for t in external)
    assert wb.load_graph_ir(path) == json.loads(wb.to_json(document))  # weights read back into the document
    # a pointer outside the JSON's folder is refused, never followed
    name = next(iter(n for n, t in stored["tensors"].items() if "external" in t["data"]))
    stored["tensors"][name]["data"]["external"]["file"] = "../elsewhere.safetensors"
    path.write_text(json.dumps(stored))
    with pytest.raises(GraphIRError, match="not valid"):
        wb.graph_ir_to_onnx(path)


def test_onnx_model_as_json_summarizes_weights():
    model = wb.to_onnx(_mlp, [("B", 4)])
    payload = json.loads(wb.to_json(model))
    assert payload["graph"]["input"][0]["name"] == "x"
    tensor = payload["graph"]["initializer"][0]
    assert "raw_data" not in tensor and len(tensor["data_summary"]["sha256"]) == 64
    assert "raw_data" in json.loads(wb.to_json(model, weights=True))["graph"]["initializer"][0]


# ----------------------------------------------------------------------------- bad documents
def _document() -> dict:
    return wb.export_graph_ir(_mlp, [("B", 4)])


def test_schema_is_draft_2020_12_and_versioned():
    schema = graph_ir_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["properties"]["format"]["const"] == "workbench_graph_ir_v1"


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: d.pop("graph"), "'graph' is a required property"),
        (lambda d: d["inputs"][0].update(dtype="float128"), "float128"),
        (lambda d: d["graph"]["eqns"][0]["params"].update(x={"$code": "import os"}), "eqns/0/params/x"),
        (lambda d: d.update(format="workbench_graph_ir_v9"), "'workbench_graph_ir_v9' is not supported"),
    ],
    ids=["missing-graph", "unknown-dtype", "unknown-param-tag", "future-version"],
)
def test_invalid_documents_are_refused_naming_the_place(damage, message):
    document = _document()
    damage(document)
    with pytest.raises(GraphIRError, match=message.replace("(", r"\(")):
        wb.graph_ir_to_onnx(document)


def test_dropped_params_only_where_the_table_allows():
    document = _document()
    eqn = document["graph"]["eqns"][-1]
    eqn["params"]["accuracy"] = {"$dropped": "function"}
    with pytest.raises(GraphIRError, match="only .* may be"):
        wb.graph_ir_to_onnx(document)


def test_unknown_primitives_are_all_listed_with_their_lines():
    document = _document()
    for eqn in document["graph"]["eqns"]:
        eqn["primitive"] = "os.system" if eqn["primitive"] == "dot_general" else eqn["primitive"]
        if eqn["primitive"] == "tanh":
            eqn["primitive"] = "made_up"
    with pytest.raises(UnsupportedPrimitiveError) as raised:
        wb.graph_ir_to_onnx(document)
    names = {p.name for p in raised.value.primitives}
    assert names == {"os.system", "made_up"}
    assert all(p.locations and p.locations[0].file.endswith("test_graph_ir.py") for p in raised.value.primitives)


def test_json_with_nan_literals_is_refused():
    text = wb.to_json(_document()).replace('"v0"', "NaN", 1)
    with pytest.raises(GraphIRError, match="NaN is not JSON"):
        wb.graph_ir_to_onnx(text)


def test_unencodable_params_are_listed_at_export():
    @jax.custom_jvp
    def f(x):
        return jnp.sin(x)

    f.defjvp(lambda primals, tangents: (f(primals[0]), tangents[0]))
    mesh = jax.make_mesh((1,), ("data",))
    replicated = jax.sharding.PartitionSpec()
    g = jax.shard_map(lambda x: f(x) * 2, mesh=mesh, in_specs=(replicated,), out_specs=replicated)
    with pytest.raises(GraphIRError, match="shard_map.*in_specs"):
        wb.export_graph_ir(g, [(3,)])


def test_graph_ir_converts_at_another_opset_and_names():
    document = _document()
    model = wb.graph_ir_to_onnx(document, opset=18, input_names=["features"], output_names=["scores"])
    assert model.opset_import[0].version == 18
    assert [i.name for i in model.graph.input] == ["features"] and [o.name for o in model.graph.output] == ["scores"]
    x = concrete_inputs([(2, 4)])[0]
    np.testing.assert_allclose(run_onnx(model, [x])[0], np.asarray(_mlp(x)), rtol=1e-6)
    onnx.checker.check_model(model, full_check=True)


@pytest.mark.parametrize("precision", ["float16", "bfloat16"])
def test_graph_ir_converts_at_the_precision_to_onnx_would(precision):
    document = _document()
    direct = wb.to_onnx(_mlp, [("B", 4)], precision=precision)
    model = wb.graph_ir_to_onnx(wb.to_json(document), precision=precision)
    assert model.SerializeToString() == direct.SerializeToString()
    half = {"float16": onnx.TensorProto.FLOAT16, "bfloat16": onnx.TensorProto.BFLOAT16}[precision]
    assert {tensor.data_type for tensor in model.graph.initializer} == {half}
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # keep_io_types
    onnx.checker.check_model(model, full_check=True)


def test_graph_ir_converts_for_a_runtime_as_to_onnx_would():
    # runtime= as wb.to_onnx takes it: the bfloat16 MatMul/Add onnxruntime's CPU provider has no kernel for
    # compute in float32 between Casts, and the model loads and runs there
    document = _document()
    direct = wb.to_onnx(_mlp, [("B", 4)], precision="bfloat16", runtime="onnxruntime-cpu")
    model = wb.graph_ir_to_onnx(wb.to_json(document), precision="bfloat16", runtime="onnxruntime-cpu")
    assert model.SerializeToString() == direct.SerializeToString()
    assert any(n.op_type == "Cast" and n.output[0].endswith(".float32") for n in model.graph.node)
    x = concrete_inputs([(2, 4)])[0]
    np.testing.assert_allclose(run_onnx(model, [x])[0], np.asarray(_mlp(x)), rtol=3e-2, atol=3e-2)  # bfloat16 weights
    with pytest.raises(wb.SpecError, match="runtime: expected None"):
        wb.graph_ir_to_onnx(document, runtime="onnxruntime-gpu")
