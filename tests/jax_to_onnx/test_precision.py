"""Half-precision export (issue 19): float16/bfloat16 weights and compute, sensitive ops kept float32.

Every zoo model is exported in float16 and run by onnxruntime, and one model of each kind in
bfloat16 and run by ONNX's reference evaluator (onnxruntime's CPU provider has no bfloat16 kernels
for most ops) and, exported with runtime="onnxruntime-cpu", by onnxruntime: all are
compared with the float32 JAX model by the normwise relative error max|onnx - jax| / max|jax|.
"""

from __future__ import annotations

import jax.numpy as jnp
import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx.reference import ReferenceEvaluator

import workbench as wb
from tests.support.harness import concrete_inputs, run_onnx
from workbench.jax_to_onnx.precision import FLOAT32_OPS
from workbench.zoo import ZOO, nnx_gpt

FLOAT, HALF, BF16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16
# normwise relative error vs float32 JAX: the target for float16; bfloat16 keeps 8 bits of mantissa
MAX_ERROR = {"float16": 1e-2, "bfloat16": 3e-2}
COMPUTE_OPS = {"Gemm", "MatMul", "Conv", "Einsum"}


def _inputs(name: str, built) -> list[np.ndarray]:
    return concrete_inputs(built.inputs, int_high=100, sizes={"B": 2, "T": 6})


def _error(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got.astype(np.float64) - want).max() / np.abs(want).max())


def _types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every named value (inputs, outputs, value_info, initializers)."""
    graph = model.graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*graph.input, *graph.output, *graph.value_info]}
    types.update({t.name: t.data_type for t in graph.initializer})
    return types


# bfloat16 runs in ONNX's reference evaluator (slow on convolutions): one model of each kind
BFLOAT16_MODELS = ("nnx_mlp", "nnx_cnn", "nnx_gpt", "nnx_vit", "nnx_gru")
CASES = [("float16", name) for name in sorted(ZOO)] + [("bfloat16", name) for name in BFLOAT16_MODELS]


@pytest.mark.parametrize("precision, name", CASES)
def test_zoo_in_half_precision(name, precision):
    built = ZOO[name]()
    conversion = wb.convert(built.fn, built.inputs, precision=precision)
    model = conversion.model
    onnx.checker.check_model(model, full_check=True)
    low = HALF if precision == "float16" else BF16
    types = _types(model)
    # inputs and outputs stay float32 (keep_io_types), the weights of the compute ops are half precision
    assert [types[v.name] for v in model.graph.output if types[v.name] in (FLOAT, HALF, BF16)] == [FLOAT] * len(
        [v for v in model.graph.output if types[v.name] in (FLOAT, HALF, BF16)]
    )
    for node in model.graph.node:
        floats = [types.get(i) for i in node.input if types.get(i) in (FLOAT, low)]
        if node.op_type in FLOAT32_OPS:
            assert set(floats) <= {FLOAT}, f"{node.op_type} {node.name} must compute in float32"
        elif node.op_type in COMPUTE_OPS and precision == "float16":
            assert set(floats) == {low}, f"{node.op_type} {node.name} reads {floats}"
    inputs = _inputs(name, built)
    want = np.asarray(built.eval_fn()(*inputs), dtype=np.float64)
    if precision == "float16":
        got = conversion.run(*inputs)[0]
    else:
        feeds = dict(zip(conversion.input_names, inputs, strict=True))
        got = ReferenceEvaluator(model).run(None, feeds)[0]
        # runtime="onnxruntime-cpu" widens the nodes the CPU provider has no bfloat16 kernel for and rounds their
        # results back: onnxruntime then computes the model the evaluator computes, up to the last bits
        runnable = wb.convert(built.fn, built.inputs, precision=precision, runtime="onnxruntime-cpu")
        onnx.checker.check_model(runnable.model, full_check=True)
        on_cpu = runnable.run(*inputs)[0]
        # measured 0 (cnn, gru), 4.5e-3 (mlp), 5.8e-3 (gpt), 1.0e-2 (vit): a rounding that differs early moves later ones
        assert _error(on_cpu, got.astype(np.float64)) <= 2e-2, "onnxruntime and the evaluator disagree on the model"
        assert _error(on_cpu, want) <= MAX_ERROR[precision]
    assert got.dtype == np.float32
    assert _error(got, want) <= MAX_ERROR[precision]


def test_half_precision_halves_the_saved_weights(tmp_path):
    built = nnx_gpt(d_model=128)
    full = wb.convert(built.fn, built.inputs).save(tmp_path / "f32.onnx", external_data_threshold=1024)
    half = wb.convert(built.fn, built.inputs, precision="float16").save(tmp_path / "f16.onnx", external_data_threshold=1024)
    ratio = half.data.stat().st_size / full.data.stat().st_size
    assert 0.5 <= ratio < 0.55  # LayerNorm parameters stay float32


@pytest.mark.parametrize("precision", ["float16", "bfloat16"])
def test_float32_masks_saturate_instead_of_overflowing(precision):
    """A mask value of float32's minimum becomes the half type's minimum, not -inf."""

    def masked(x):
        return jnp.where(x > 0, x * 2.0, jnp.finfo(jnp.float32).min)

    model = wb.to_onnx(masked, [(4,)], precision=precision)
    low = HALF if precision == "float16" else BF16
    values = [onnx.numpy_helper.to_array(t).astype(np.float32) for t in model.graph.initializer if t.data_type == low]
    limit = float(ml_dtypes.finfo(np.float16 if precision == "float16" else ml_dtypes.bfloat16).max)
    assert any(v.size and (v == -limit).all() for v in values)
    x = np.array([1.0, -1.0, 2.0, -3.0], np.float32)
    feeds = {model.graph.input[0].name: x}
    got = (ReferenceEvaluator(model).run(None, feeds) if precision == "bfloat16" else run_onnx(model, [x]))[0]
    np.testing.assert_array_equal(got, np.where(x > 0, x * 2.0, -limit))


def test_keep_io_types_false_makes_inputs_and_outputs_half():
    built = ZOO["nnx_mlp"]()
    conversion = wb.convert(built.fn, built.inputs, precision="float16", keep_io_types=False)
    graph = conversion.model.graph
    assert [v.type.tensor_type.elem_type for v in [*graph.input, *graph.output]] == [HALF, HALF]
    x = concrete_inputs(built.inputs, sizes={"B": 3})[0]
    got = conversion.run(x.astype(np.float16))[0]
    assert got.dtype == np.float16
    assert _error(got, np.asarray(built.eval_fn()(x), dtype=np.float64)) <= MAX_ERROR["float16"]


def test_keep_io_types_false_inside_a_precision_is_taken_as_it_is():
    # 5f239b5 refused keep_io_types=False beside a Precision whose own is True; it also refused the Precision's own
    # keep_io_types=False, since to_onnx's keep_io_types then stood at its default True ('keep_io_types=True given
    # beside a wb.Precision('float16') whose keep_io_types is False; set it in the Precision': it was)
    built = ZOO["nnx_mlp"]()
    model = wb.to_onnx(built.fn, built.inputs, precision=wb.Precision("float16", keep_io_types=False))
    graph = model.graph
    assert [v.type.tensor_type.elem_type for v in [*graph.input, *graph.output]] == [HALF, HALF]
    x = concrete_inputs(built.inputs, sizes={"B": 3})[0]
    got = run_onnx(model, [x.astype(np.float16)])[0]
    assert got.dtype == np.float16
    assert _error(got, np.asarray(built.eval_fn()(x), dtype=np.float64)) <= MAX_ERROR["float16"]


def test_the_float32_op_list_is_a_choice():
    built = nnx_gpt()
    everything_half = wb.Precision("float16", float32_ops=frozenset())
    model = wb.to_onnx(built.fn, built.inputs, precision=everything_half)
    types = _types(model)
    norms = [n for n in model.graph.node if n.op_type == "LayerNormalization"]
    assert norms and all(types[n.input[0]] == HALF for n in norms)
    default = wb.to_onnx(built.fn, built.inputs, precision="float16")
    assert sum(n.op_type == "Cast" for n in model.graph.node) < sum(n.op_type == "Cast" for n in default.graph.node)


def test_parity_tolerances_follow_the_precision():
    built = nnx_gpt()
    report = wb.convert(built.fn, built.inputs, precision="float16").parity(samples=2)
    assert report.ok
    assert {(r.comparison.rtol, r.comparison.atol) for r in report.results} == {(1e-2, 1e-2)}
    full = wb.convert(built.fn, built.inputs).parity(samples=1)
    assert {(r.comparison.rtol, r.comparison.atol) for r in full.results} == {(1e-4, 1e-5)}


def test_bad_precision_arguments():
    # SpecErrors (WorkbenchErrors that are ValueErrors), as runtime= is refused beside them
    with pytest.raises(wb.SpecError, match="'float32', 'float16', 'bfloat16'"):
        wb.to_onnx(lambda x: x + 1, [(3,)], precision="int8")
    with pytest.raises(wb.SpecError, match="a dtype name or a wb.Precision"):
        wb.to_onnx(lambda x: x + 1, [(3,)], precision=16)  # type: ignore[arg-type]
    with pytest.raises(wb.SpecError, match="keep_io_types"):
        wb.to_onnx(lambda x: x + 1, [(3,)], precision="float16", keep_io_types="yes")  # type: ignore[arg-type]

