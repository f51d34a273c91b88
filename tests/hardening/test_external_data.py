"""Untrusted external data: nothing is read from outside the model's folder, by any entry point.

A model can say that a tensor's bytes live in a file (``location``, ``offset``, ``length``). The
workbench reads every such tensor (initializers, Constant values, other attribute tensors, inside
If/Loop bodies and model-local functions) in one place, relative to the model's own folder, with
onnx's containment rules. A model given as bytes or a ModelProto has no folder: it is refused
unless the caller names one. Before, a Constant naming ``secret.bin`` put the bytes of that file in
the *current directory* into the generated source and weights.npz.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import workbench as wb
from workbench.onnx_io import load_model
from workbench.onnx_io.tensors import tensor_array
from workbench.onnx_to_jax.backend import Backend

SECRET = b"SECRET-BYTES-16!"  # 16 bytes: four float32 values
SECRET_VALUES = np.frombuffer(SECRET, np.float32)


def _external(name: str, location: str, dims=(4,)) -> onnx.TensorProto:
    tensor = onnx.TensorProto(name=name, data_type=TensorProto.FLOAT, dims=list(dims))
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(4 * int(np.prod(dims))))):
        tensor.external_data.add(key=key, value=value)
    return tensor


def _io(nodes, inits=()) -> onnx.GraphProto:
    return helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], list(inits),
    )  # fmt: skip


def _model(graph: onnx.GraphProto, functions=(), extra_opsets=()) -> onnx.ModelProto:
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), *extra_opsets], functions=list(functions)
    )
    model.ir_version = 8
    return model


def constant_in_main_graph(location: str) -> onnx.ModelProto:
    return _model(_io([helper.make_node("Constant", [], ["k"], value=_external("k", location)),
                       helper.make_node("Add", ["x", "k"], ["y"])]))  # fmt: skip


def initializer_in_if_branch(location: str) -> onnx.ModelProto:
    then_graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["t"])], "then", [],
        [helper.make_tensor_value_info("t", TensorProto.FLOAT, [4])], [_external("w", location)],
    )  # fmt: skip
    else_graph = helper.make_graph(
        [helper.make_node("Neg", ["x"], ["e"])], "else", [], [helper.make_tensor_value_info("e", TensorProto.FLOAT, [4])]
    )
    return _model(_io([
        helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(np.array(True), "c")),
        helper.make_node("If", ["c"], ["y"], then_branch=then_graph, else_branch=else_graph),
    ]))  # fmt: skip


def constant_in_loop_body(location: str) -> onnx.ModelProto:
    body = helper.make_graph(
        [helper.make_node("Constant", [], ["k"], value=_external("k", location)),
         helper.make_node("Add", ["acc_in", "k"], ["acc_out"]),
         helper.make_node("Identity", ["cond_in"], ["cond_out"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []), helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, [4])],
    )  # fmt: skip
    trip = numpy_helper.from_array(np.array(1, np.int64), "trip")
    return _model(_io([helper.make_node("Loop", ["trip", "", "x"], ["y"], body=body)], [trip]))


def constant_in_function(location: str) -> onnx.ModelProto:
    function = helper.make_function(
        "local", "AddSecret", ["a"], ["b"],
        [helper.make_node("Constant", [], ["k"], value=_external("k", location)), helper.make_node("Add", ["a", "k"], ["b"])],
        [helper.make_opsetid("", 17)],
    )  # fmt: skip
    graph = _io([helper.make_node("AddSecret", ["x"], ["y"], domain="local")])
    return _model(graph, [function], [helper.make_opsetid("local", 1)])


PLACES = [constant_in_main_graph, initializer_in_if_branch, constant_in_loop_body, constant_in_function]


def _entry_points(tmp_path: Path):
    """Every public way to turn a model into code or weights."""
    return {
        "to_jax_source": wb.to_jax_source,
        "to_jax": wb.to_jax,
        "save_jax": lambda model: wb.save_jax(model, tmp_path / "jax"),
        "Backend.prepare": Backend.prepare,
    }


@pytest.fixture
def secret_in_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A file ``secret.bin`` in the current directory, which a model's external reference must never reach."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "secret.bin").write_bytes(SECRET)
    return tmp_path / "secret.bin"


def _leaked(tmp_path: Path, result) -> bool:
    """Whether the secret's bytes or values appear in what an entry point produced or wrote."""
    texts = [repr(result)]
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.name != "secret.bin":
            texts.append(path.read_bytes().decode("latin-1"))
            if path.suffix == ".npz":
                with np.load(path) as arrays:
                    texts += [arrays[k].tobytes().decode("latin-1") for k in arrays.files]
    values = [repr(float(v)) for v in SECRET_VALUES]
    return any(SECRET.decode("latin-1") in text or any(v in text for v in values) for text in texts)


@pytest.mark.parametrize("place", PLACES, ids=lambda f: f.__name__)
@pytest.mark.parametrize("form", ["proto", "bytes"])
def test_in_memory_models_with_external_references_are_refused(tmp_path, secret_in_cwd, place, form):
    model = place("secret.bin")
    source = model if form == "proto" else model.SerializeToString()
    label = "<ModelProto>" if form == "proto" else "<bytes>"
    for name, entry in _entry_points(tmp_path).items():
        with pytest.raises(wb.OnnxModelError, match=rf"{label} keeps 1 tensor\(s\) in external data files \(first: tensor "
                                                     rf"'(k|w)', .*in 'secret\.bin'\).*base_dir="):  # fmt: skip
            entry(source)
        assert not _leaked(tmp_path, None), name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret.bin"]


@pytest.mark.parametrize("place", PLACES, ids=lambda f: f.__name__)
def test_a_model_file_reads_only_its_own_folder(tmp_path, secret_in_cwd, place):
    folder = tmp_path / "model"
    folder.mkdir()
    path = folder / "m.onnx"
    path.write_bytes(place("secret.bin").SerializeToString())
    # the file exists in the current directory, not beside the model: not found, nothing read
    with pytest.raises(wb.OnnxModelError, match=r"m\.onnx: cannot load the external data of tensor '(k|w)' \(.*\) from 'secret\.bin'"):
        wb.to_jax_source(path)
    # beside the model, it is the model's own data: read, and used
    (folder / "secret.bin").write_bytes(np.arange(4, dtype=np.float32).tobytes())
    forward, params = wb.to_jax(path)
    result = np.asarray(forward(params, np.ones(4, np.float32)))
    np.testing.assert_array_equal(result, [1.0, 2.0, 3.0, 4.0])  # x + the model's own [0, 1, 2, 3]


@pytest.mark.parametrize(
    ("location", "reason"),
    [
        ("../secret.bin", r"points outside the directory"),
        ("/etc/passwd", r"should be a relative path, but it is an absolute path"),
        ("sub/../../secret.bin", r"points outside the directory"),
        ("link.bin", r"is a symbolic link"),
        ("fifo.bin", r"not regular file"),
        ("missing.bin", r"not regular file|No such file|does not exist"),
    ],
    ids=["dotdot", "absolute", "nested_dotdot", "symlink_out", "fifo", "missing"],
)
@pytest.mark.parametrize("place", PLACES, ids=lambda f: f.__name__)
def test_escaping_locations_give_one_clean_error_naming_tensor_and_location(tmp_path, secret_in_cwd, place, location, reason):
    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    os.symlink(secret_in_cwd, folder / "link.bin")
    os.mkfifo(folder / "fifo.bin")
    path = folder / "m.onnx"
    path.write_bytes(place(location).SerializeToString())
    pattern = rf"m\.onnx: cannot load the external data of tensor '(k|w)' \(.*\) from '{re.escape(location)}': .*{reason}"
    with pytest.raises(wb.OnnxModelError, match=pattern):
        wb.to_jax_source(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "secret.bin"]


@pytest.mark.parametrize("place", PLACES, ids=lambda f: f.__name__)
def test_a_location_holding_a_nul_is_refused_not_cut_short(tmp_path, secret_in_cwd, place):
    """Was: 'secret.bin\\x00.txt' read secret.bin (onnx's opener stops at the NUL), a file the model does not name."""
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "secret.bin").write_bytes(SECRET)
    path = folder / "m.onnx"
    path.write_bytes(place("secret.bin\x00.txt").SerializeToString())
    with pytest.raises(wb.OnnxModelError, match=r"m\.onnx: tensor '(k|w)' names its external data file "
                                                r"'secret\.bin\\x00\.txt', which holds a NUL character"):  # fmt: skip
        wb.to_jax_source(path)


def test_base_dir_reads_in_memory_models_from_the_named_folder(tmp_path, secret_in_cwd):
    folder = tmp_path / "data"
    folder.mkdir()
    values = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
    (folder / "weights.bin").write_bytes(values.tobytes())
    model = constant_in_main_graph("weights.bin")
    before = model.SerializeToString()
    for source in (model, model.SerializeToString()):
        forward, params = wb.to_jax(source, base_dir=folder)
        np.testing.assert_array_equal(np.asarray(forward(params, np.zeros(4, np.float32))), values)
    assert model.SerializeToString() == before  # the caller's proto keeps its reference
    with pytest.raises(wb.OnnxModelError, match=r"cannot load the external data of tensor 'k'.*'\.\./secret\.bin'.*outside"):
        wb.to_jax_source(constant_in_main_graph("../secret.bin"), base_dir=folder)
    with pytest.raises(ValueError, match="base_dir .* is not a folder"):
        wb.to_jax_source(model, base_dir=tmp_path / "nope")
    with pytest.raises(ValueError, match="base_dir is for a model given as bytes or a ModelProto"):
        load_model(tmp_path / "m.onnx", base_dir=folder)


def test_the_tensor_decoder_never_reads_a_file(secret_in_cwd):
    tensor = _external("k", "secret.bin")
    assert np.array_equal(onnx.numpy_helper.to_array(tensor), SECRET_VALUES)  # what onnx's helper does: reads the CWD
    with pytest.raises(wb.OnnxModelError, match=r"m: tensor 'k' keeps its data in the external file 'secret\.bin', which was not loaded"):
        tensor_array(tensor, "m")


@pytest.mark.parametrize(
    ("location", "length", "reason"),
    [
        ("../secret.bin", 16, r"points outside the directory"),
        ("/etc/passwd", 16, r"should be a relative path, but it is an absolute path"),
        ("link.bin", 16, r"is a symbolic link"),
        ("fifo.bin", 16, r"not regular file"),
        ("weights.bin", 4096, r"asks for bytes 0 to 4,096 of 'weights\.bin', which holds 16"),
        # was accepted: 12 bytes mapped as the 4 float32 values (the reader's checker refuses it)
        ("weights.bin", 12, r"takes 12 bytes of 'weights\.bin' \(from byte 0\), but its shape \[4\] and type need 16"),
        # was read as weights.bin: onnx's opener stops at the NUL
        ("weights.bin\x00x", 16, r"names its external data file 'weights\.bin\\x00x', which holds a NUL character"),
    ],
    ids=["dotdot", "absolute", "symlink_out", "fifo", "past_the_end", "short", "nul"],
)
def test_the_memory_mapped_loader_applies_the_same_rules(tmp_path, secret_in_cwd, location, length, reason):
    """``load_memory_mapped`` (parity and locate on a path, large models) maps weights instead of reading them."""
    from workbench.onnx_io import load_memory_mapped

    folder = tmp_path / "model"
    folder.mkdir()
    os.symlink(secret_in_cwd, folder / "link.bin")
    os.mkfifo(folder / "fifo.bin")
    values = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
    (folder / "weights.bin").write_bytes(values.tobytes())
    good = _model(_io([helper.make_node("Add", ["x", "w"], ["y"])], [_external("w", "weights.bin")]))
    (folder / "good.onnx").write_bytes(good.SerializeToString())
    mapped = load_memory_mapped(folder / "good.onnx")
    np.testing.assert_array_equal(mapped.graph.initializers["w"].const_value.numpy(), values)
    bad = _model(_io([helper.make_node("Add", ["x", "w"], ["y"])], [_external("w", location)]))
    bad.graph.initializer[0].external_data[2].value = str(length)
    (folder / "bad.onnx").write_bytes(bad.SerializeToString())
    with pytest.raises(wb.OnnxModelError, match=rf"bad\.onnx: .*tensor 'w'.*{reason}"):
        load_memory_mapped(folder / "bad.onnx")
