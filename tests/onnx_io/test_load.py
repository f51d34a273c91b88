"""workbench.onnx_io.load: one loader for paths, bytes and ModelProtos, external data from the model's folder."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import workbench as wb
from tests.support.codegen_models import mlp, run_onnxruntime
from workbench.onnx_io import check_model, load_model
from workbench.onnx_io.load import (
    BYTES_LABEL,
    PROTO_LABEL,
    external_tensors,
    resolve_external_data,
)


def _initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def test_path_bytes_and_proto_load_the_same_model(tmp_path):
    model = mlp()
    path = tmp_path / "mlp.onnx"
    path.write_bytes(model.SerializeToString())
    from_path = load_model(path)
    from_str_path = load_model(str(path))
    from_bytes = load_model(model.SerializeToString())
    from_proto = load_model(model)
    for loaded in (from_path, from_str_path, from_bytes, from_proto):
        assert loaded.proto == model
        assert loaded.opset == 17
    assert (from_path.label, from_path.folder) == (str(path), tmp_path)
    assert (from_bytes.label, from_bytes.folder) == (BYTES_LABEL, None)
    assert (from_proto.label, from_proto.folder) == (PROTO_LABEL, None)


def test_a_proto_is_used_as_is_unless_a_copy_is_asked_for():
    model = mlp()
    assert load_model(model).proto is model
    private = load_model(model, copy=True).proto
    assert private is not model and private == model
    private.graph.node[0].op_type = "Changed"
    assert model.graph.node[0].op_type == "MatMul"


def _if_with_constant_in_branch() -> onnx.ModelProto:
    """An If whose then-branch holds a Constant (an attribute tensor inside a subgraph) and a weight outside."""
    constant = numpy_helper.from_array(np.arange(64, dtype=np.float32), "branch_constant")
    then_graph = helper.make_graph(
        [helper.make_node("Constant", [], ["c"], value=constant), helper.make_node("Add", ["x", "c"], ["then_out"])],
        "then_branch", [], [helper.make_tensor_value_info("then_out", TensorProto.FLOAT, [64])],
    )  # fmt: skip
    else_graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "w"], ["else_out"])],
        "else_branch", [], [helper.make_tensor_value_info("else_out", TensorProto.FLOAT, [64])],
    )  # fmt: skip
    graph = helper.make_graph(
        [helper.make_node("If", ["flag"], ["y"], then_branch=then_graph, else_branch=else_graph)],
        "branchy",
        [helper.make_tensor_value_info("flag", TensorProto.BOOL, []),
         helper.make_tensor_value_info("x", TensorProto.FLOAT, [64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [64])],
        [numpy_helper.from_array(np.linspace(-1, 1, 64, dtype=np.float32), "w")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def test_external_data_of_every_tensor_is_read_from_the_model_folder(tmp_path):
    model = _if_with_constant_in_branch()
    path = tmp_path / "branchy.onnx"
    # onnx's own writer moves the weight and the Constant inside the branch to the side file
    onnx.save_model(onnx.ModelProto.FromString(model.SerializeToString()), str(path), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="branchy.onnx.data", size_threshold=0,
                    convert_attribute=True)  # fmt: skip
    on_disk = onnx.load_model(str(path), load_external_data=False)
    assert len(list(external_tensors(on_disk))) == 2  # the initializer and the Constant in the branch
    loaded = load_model(path)
    assert list(external_tensors(loaded.proto)) == []
    x = np.arange(64, dtype=np.float32)
    for flag in (np.array(True), np.array(False)):
        np.testing.assert_array_equal(
            run_onnxruntime(loaded.proto, flag, x)[0], run_onnxruntime(model, flag, x)[0]
        )
    # without it the external references stay, and bytes have no folder to resolve them from
    kept = load_model(path, external_data=False)
    assert len(list(external_tensors(kept.proto))) == 2
    with pytest.raises(wb.OnnxModelError, match=r"<bytes> keeps 2 tensor\(s\) in external data.*load it from its path"):
        load_model(path.read_bytes())
    from_bytes = load_model(path.read_bytes(), external_data=False)
    with pytest.raises(wb.OnnxModelError, match=r"<bytes> keeps 2 tensor\(s\) in external data.*base_dir="):
        resolve_external_data(from_bytes)
    # with the folder named, bytes and a ModelProto load like the file (the caller's proto stays as it was)
    assert load_model(path.read_bytes(), base_dir=tmp_path).proto == loaded.proto
    assert load_model(on_disk, base_dir=tmp_path).proto == loaded.proto
    assert len(list(external_tensors(on_disk))) == 2


def test_missing_external_data_names_the_tensor(tmp_path):
    model = _if_with_constant_in_branch()
    path = tmp_path / "branchy.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, location="weights.bin", size_threshold=0)
    (tmp_path / "weights.bin").unlink()
    with pytest.raises(wb.OnnxModelError, match=r"branchy\.onnx: cannot load the external data of tensor 'w'"):
        load_model(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", r"empty\.onnx is empty \(0 bytes\)"),
        (b"\xff\xfe not protobuf \x00\x01" * 10, r"empty\.onnx is not an ONNX file: protobuf decoding failed"),
        (b"\x08\x07", r"empty\.onnx is not an ONNX file: it decodes to a model without a graph"),  # ir_version only
    ],
    ids=["empty", "corrupt", "no_graph"],
)
def test_files_that_are_not_models(tmp_path, content, message):
    path = tmp_path / "empty.onnx"
    path.write_bytes(content)
    with pytest.raises(wb.OnnxModelError, match=message):
        load_model(path)


def test_missing_file_and_wrong_type(tmp_path):
    with pytest.raises(wb.OnnxModelError, match=r"nope\.onnx not found: it does not exist"):
        load_model(tmp_path / "nope.onnx")
    with pytest.raises(wb.OnnxModelError, match="not found"):
        load_model(tmp_path)  # a folder is not a model file
    for wrong in (42, None, [mlp()]):
        with pytest.raises(TypeError, match="expected an onnx.ModelProto, a path"):
            load_model(wrong)  # type: ignore[arg-type]
        with pytest.raises(wb.SpecError):  # the same error, for callers that catch the workbench's own
            load_model(wrong)  # type: ignore[arg-type]


def test_check_model_names_the_model_and_the_complaint(tmp_path):
    model = mlp()
    model.graph.node[0].input[0] = "nowhere"  # an input no one produces
    path = tmp_path / "broken.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(wb.OnnxModelError, match=r"broken\.onnx does not pass onnx\.checker: .*nowhere"):
        check_model(load_model(path))
    check_model(load_model(mlp()))  # a valid model passes
