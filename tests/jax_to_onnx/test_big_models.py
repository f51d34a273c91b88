"""Models above protobuf's 2 GB (issue 19): saved, run, checked and drawn without a copy of their weights.

What makes a model "large" here is decided in three places, each by a byte count: the conversion
returns the saved proto without its weights (``api.PROTOBUF_LIMIT``), a session hands the weights to
onnxruntime in memory (``session._PROTOBUF_LIMIT``) and the viewer drops the weights' bytes
(``viewer.VIEWER_WEIGHT_BYTES``). The CI tests lower those limits to a few KB so a model of a few
hundred KB takes exactly the code path of a model of several GB; the one test with a real
model above 2 GB is opt-in (:data:`SKIPPED_BY_DEFAULT`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import numpy_helper

import workbench as wb
from workbench.errors import OnnxModelError
from workbench.jax_to_onnx import api
from workbench.jupyter import viewer
from workbench.onnx_io import load_memory_mapped, load_model, open_session, session
from workbench.zoo import nnx_wide_mlp

#: Tests skipped unless asked for, with why (pytest -ra lists them with this reason).
SKIPPED_BY_DEFAULT = {
    "test_a_model_over_2gb_end_to_end": (
        "converts, saves, runs parity on and draws an MLP with 2.15 GB of float32 weights: 5 GB of memory at "
        "its peak (the weights in JAX plus onnxruntime's own copy during parity) and a minute or more of a "
        "loaded disk, too heavy beside the two xdist workers of the main suite: .ci/run runs it alone, as its own step "
        "after the suite (WORKBENCH_BIG_MODELS=1; about 40 s, 4.8 GB peak on an idle 2-core machine)"
    ),
}
BIG = os.environ.get("WORKBENCH_BIG_MODELS") == "1"

LAYERS, WIDTH = 3, 512  # 3 x 1 MiB kernels: large tensors (weights.LARGE_TENSOR_BYTES), a "large" model once the limits are lowered
SMALL_LIMIT = 4096


@pytest.fixture
def small_limits(monkeypatch):
    """Every "too large for one protobuf" decision taken at 4 KB instead of 2 GB."""
    monkeypatch.setattr(api, "PROTOBUF_LIMIT", SMALL_LIMIT)
    monkeypatch.setattr(session, "_PROTOBUF_LIMIT", SMALL_LIMIT)
    monkeypatch.setattr(viewer, "VIEWER_WEIGHT_BYTES", SMALL_LIMIT)


@pytest.fixture(scope="module")
def mlp():
    return nnx_wide_mlp(layers=LAYERS, width=WIDTH)


def _kernels(built) -> list[np.ndarray]:
    return [np.asarray(layer.kernel.get_value()) for layer in built.fn.layers]


def _x(rows: int = 3) -> np.ndarray:
    return np.random.default_rng(1).standard_normal((rows, WIDTH)).astype(np.float32)


def test_the_conversion_holds_the_traced_arrays_and_saves_them_as_they_are(tmp_path, mlp):
    conversion = wb.convert(mlp.fn, mlp.inputs)
    tensors = [v.const_value for v in conversion.ir_model.graph.initializers.values()]
    kernels = _kernels(mlp)
    # the model's weights are views of the arrays the function was traced with
    assert sum(any(np.shares_memory(t.numpy(), k) for k in kernels) for t in tensors) == LAYERS
    written = conversion.save(tmp_path / "mlp.onnx")
    assert written.data is not None and written.data.stat().st_size >= sum(k.nbytes for k in kernels)
    on_disk = load_model(written.model, external_data=False).proto
    external = [t for t in on_disk.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    assert len(external) == LAYERS and written.model.stat().st_size < 20_000  # the graph only
    loaded = {t.name: numpy_helper.to_array(t) for t in load_model(written.model).proto.graph.initializer}
    assert all(any(np.array_equal(k, w) for w in loaded.values()) for k in kernels)


def test_to_onnx_returns_the_saved_model_without_its_weights_when_they_are_too_large(tmp_path, mlp, small_limits):
    model = wb.to_onnx(mlp.fn, mlp.inputs, path=tmp_path / "mlp.onnx", external_data_threshold=1024)
    kinds = {t.data_location for t in model.graph.initializer if t.dims and np.prod(t.dims) >= 256}
    assert kinds == {onnx.TensorProto.EXTERNAL}
    assert model.ByteSize() < 20_000
    got = open_session(tmp_path / "mlp.onnx").run({"x": _x()})[0]
    np.testing.assert_allclose(got, np.asarray(mlp.eval_fn()(_x())), rtol=1e-4, atol=1e-5)


def test_a_proto_too_large_to_serialize_runs_with_its_weights_in_memory(mlp, small_limits):
    proto = wb.to_onnx(mlp.fn, mlp.inputs)
    assert proto.ByteSize() > SMALL_LIMIT
    opened = open_session(proto)
    assert len(opened.weights) > 0  # the weights went to onnxruntime as in-memory initializers
    np.testing.assert_allclose(opened.run({"x": _x()})[0], np.asarray(mlp.eval_fn()(_x())), rtol=1e-4, atol=1e-5)


def test_parity_and_locate_from_the_path_read_no_weights_into_a_proto(tmp_path, mlp, small_limits, monkeypatch):
    wb.convert(mlp.fn, mlp.inputs).save(tmp_path / "mlp.onnx")
    from workbench.onnx_io import load as load_module

    def no_weights_read(*args, **kwargs):
        raise AssertionError("the external weights must not be read into a ModelProto")

    monkeypatch.setattr(load_module, "resolve_external_data", no_weights_read)
    report = wb.parity(mlp.fn, tmp_path / "mlp.onnx", samples=2)
    assert report.ok and len(report.results) == 2
    located = wb.locate_divergence(mlp.fn, tmp_path / "mlp.onnx")
    assert located.ok and len(located.nodes) >= LAYERS


def test_parity_notices_changed_weights_in_the_side_file(tmp_path, mlp):
    path = tmp_path / "mlp.onnx"
    side_file = wb.convert(mlp.fn, mlp.inputs).save(path).data
    assert side_file is not None
    data = bytearray(side_file.read_bytes())
    data[:4096] = bytes(4096)  # zero the start of the first weight
    side_file.write_bytes(bytes(data))
    assert not wb.parity(mlp.fn, path, samples=1).ok


def test_the_viewer_draws_large_models_without_their_weights(tmp_path, mlp, small_limits):
    conversion = wb.convert(mlp.fn, mlp.inputs)
    conversion.save(tmp_path / "mlp.onnx")
    for source in (conversion, tmp_path / "mlp.onnx", conversion.model):
        handle = wb.view(source, transport="inline")
        shown = handle.model
        large = [t for t in shown.graph.initializer if t.dims and np.prod(t.dims) >= WIDTH * WIDTH]
        assert len(large) == LAYERS and all(not t.raw_data for t in large)
        assert [n.op_type for n in shown.graph.node] == [n.op_type for n in conversion.model.graph.node]
        assert shown.graph.value_info  # shapes on the edges
    assert all(t.raw_data for t in conversion.model.graph.initializer if t.dims)  # the caller's proto untouched


def test_memory_mapped_loading_reads_weights_lazily_and_only_beside_the_model(tmp_path, mlp):
    path = tmp_path / "mlp.onnx"
    wb.convert(mlp.fn, mlp.inputs).save(path)
    model = load_memory_mapped(path)
    external = [v.const_value for v in model.graph.initializers.values() if isinstance(v.const_value, ir.ExternalTensor)]
    assert len(external) == LAYERS
    assert any(np.array_equal(t.numpy(), _kernels(mlp)[0]) for t in external)
    proto = onnx.load_model(str(path), load_external_data=False)
    for tensor in proto.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../elsewhere.data"
    onnx.save_model(proto, str(path))
    with pytest.raises(OnnxModelError, match=r"'\.\./elsewhere\.data' points outside the directory\. External data must be a regular file inside the model's folder"):
        load_memory_mapped(path)


def test_a_half_precision_model_streams_its_converted_weights(tmp_path, mlp):
    conversion = wb.convert(mlp.fn, mlp.inputs, precision="float16")
    written = conversion.save(tmp_path / "half.onnx", external_data_threshold=4096)  # the half kernels: 512 KiB
    assert written.data is not None
    on_disk = load_model(written.model).proto
    halves = [numpy_helper.to_array(t) for t in on_disk.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16]
    assert len(halves) >= LAYERS
    kernels = _kernels(mlp)
    assert all(any(np.array_equal(k.astype(np.float16), h) for h in halves) for k in kernels)
    # the half-precision weights are made one at a time while they are written, never all held at once
    halved = [v.const_value for v in conversion.ir_model.graph.initializers.values()
              if v.const_value is not None and v.const_value.dtype == ir.DataType.FLOAT16]  # fmt: skip
    assert len(halved) >= LAYERS and all(isinstance(t, ir.LazyTensor) for t in halved)


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


@pytest.mark.slow
@pytest.mark.skipif(not BIG, reason=SKIPPED_BY_DEFAULT["test_a_model_over_2gb_end_to_end"])
def test_a_model_over_2gb_end_to_end(tmp_path, record_property):
    built = nnx_wide_mlp(layers=8, width=8192)  # 8 x 8192² float32 + biases = 2.148 GB > 2**31 - 1
    weights = sum(k.nbytes for k in _kernels(built)) + sum(layer.bias.get_value().nbytes for layer in built.fn.layers)
    assert weights > 2**31 - 1  # more than protobuf can serialize
    baseline = _status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) starts again from here
    start = time.perf_counter()
    conversion = wb.convert(built.fn, built.inputs)
    written = conversion.save(tmp_path / "big.onnx")
    seconds = time.perf_counter() - start
    extra = _status("VmHWM") - baseline
    record_property("convert_and_save_seconds", round(seconds, 1))
    record_property("extra_peak_over_weights", round(extra / weights, 3))
    print(f"\nconvert + save of {weights / 1e9:.2f} GB: {seconds:.1f} s, extra peak {extra / 1e9:.2f} GB "
          f"({extra / weights:.2f}x the weights)")
    assert extra <= 0.5 * weights  # issue 19's budget: no second copy of the weights
    assert written.data is not None and written.data.stat().st_size >= sum(k.nbytes for k in _kernels(built))
    del conversion
    start = time.perf_counter()
    report = wb.parity(built.fn, written.model, samples=1, sizes={"B": 2})
    print(f"parity from the path: {time.perf_counter() - start:.1f} s, {report.summary()}")
    assert report.ok
    handle = wb.view(written.model, transport="inline")
    assert handle.summary.parameter_count >= weights // 4
    x = np.ones((1, 8192), np.float32)
    got = open_session(written.model).run({"x": x})[0]
    np.testing.assert_allclose(got, np.asarray(built.eval_fn()(jnp.asarray(x))), rtol=1e-3, atol=1e-3)
