"""Bad arguments to the public API: a ValueError/WorkbenchError naming the argument, never a raw traceback.

Each case once gave a raw TypeError, NotADirectoryError, RecursionError or std::bad_alloc, or
silently did something else (an input renamed because an output took its name).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from onnx import TensorProto, helper

import workbench as wb
from workbench.files import WriteError
from workbench.onnx_io import ExternalData, write_model


def _double(x):
    return x * 2


def _tiny_model():
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("threshold", ["x", -1, 1.5, True, [1024]])
def test_a_bad_external_data_threshold_is_named(tmp_path, threshold):
    with pytest.raises(wb.SpecError, match=r"external_data_threshold: expected an int >= 0 \(bytes\) or None, got "):
        wb.to_onnx(_double, [(3,)], path=tmp_path / "m.onnx", external_data_threshold=threshold)
    with pytest.raises(ValueError, match=r"external data threshold tensor_bytes: expected an int >= 0"):
        ExternalData(tensor_bytes=threshold)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_a_path_through_a_regular_file_is_named(tmp_path):
    regular = tmp_path / "notes.txt"
    regular.write_text("a file, not a folder")
    with pytest.raises(WriteError, match=r"cannot write the ONNX model to .*notes\.txt: .*notes\.txt is a file, not a folder"):
        wb.to_onnx(_double, [(3,)], path=regular / "m.onnx")
    with pytest.raises(WriteError, match=r"notes\.txt is a file, not a folder"):
        write_model(_tiny_model(), regular / "sub" / "m.onnx")
    with pytest.raises(WriteError, match=r"cannot write the JAX model into .*notes\.txt: .*notes\.txt is a file, not a folder"):
        wb.save_jax(_tiny_model(), regular / "out")
    with pytest.raises(wb.WorkbenchError, match=r"cannot save the JAX model to .*notes\.txt: it is a file"):
        wb.save_jax(_tiny_model(), regular)
    with pytest.raises(wb.WorkbenchError, match=r"it is a directory; give a file path"):
        wb.to_onnx(_double, [(3,)], path=tmp_path)
    with pytest.raises(wb.SpecError, match=r"path: expected a file path \(str or os\.PathLike\), got int"):
        wb.to_onnx(_double, [(3,)], path=42)  # type: ignore[arg-type]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"] and regular.read_text() == "a file, not a folder"


def test_a_spec_nested_5000_deep_is_named_not_a_recursion_error():
    spec: object = (3,)
    for _ in range(5000):
        spec = [spec]
    with pytest.raises(wb.SpecError, match=r"inputs\[0\]\[0\]\[0\].*: input specs nest more than 100 levels deep"):
        wb.to_onnx(lambda x: x, [spec])


def test_a_spec_of_4_tb_is_refused_and_a_long_symbolic_one_converts():
    with pytest.raises(wb.SpecError, match=r"inputs\[0\]: shape \(1000000000000,\) of float32 is 4,000,000,000,000 bytes, "
                                           r"over the limit of 1,099,511,627,776"):  # fmt: skip
        wb.to_onnx(_double, [(10**12,)])
    model = wb.to_onnx(_double, [("N",)])
    assert [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim] == ["N"]


_LONG_SPEC = """
import resource
resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))
import workbench as wb
model = wb.to_onnx(lambda x: x * 2, [(10**8,)])
print("converted", [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim])
"""


def test_a_long_1d_spec_converts_without_spelling_it_out():
    """(10**8,) is a valid 400 MB input; onnx's data propagation used to spell it out (7 GB, std::bad_alloc)."""
    result = subprocess.run([sys.executable, "-c", _LONG_SPEC], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})  # fmt: skip
    assert "converted [100000000]" in result.stdout, result.stdout + result.stderr


def test_input_names_equal_to_output_names_are_refused():
    with pytest.raises(wb.SpecError, match=r"input_names and output_names share 'a': an ONNX value has one name"):
        wb.to_onnx(_double, [(3,)], input_names=["a"], output_names=["a"])
    model = wb.to_onnx(_double, [(3,)], input_names=["a"], output_names=["b"])
    assert [i.name for i in model.graph.input] == ["a"] and [o.name for o in model.graph.output] == ["b"]
    exported = jax.export.export(jax.jit(_double))(jax.ShapeDtypeStruct((3,), np.float32))  # the jax.export door
    with pytest.raises(wb.SpecError, match=r"input_names and output_names share 'a'"):
        wb.to_onnx(exported, None, input_names=["a"], output_names=["a"])


def test_names_and_arrays_still_work():
    model = wb.to_onnx(lambda x: jnp.tanh(x), [np.zeros((2, 3), np.float32)], input_names=["x"], output_names=["y"])
    assert [i.name for i in model.graph.input] == ["x"]


def test_external_data_write_errors_do_not_leave_files(tmp_path: Path):
    with pytest.raises(wb.SpecError, match=r"external_data: expected an ExternalData or None, got int"):
        write_model(_tiny_model(), tmp_path / "m.onnx", external_data=1024)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []
