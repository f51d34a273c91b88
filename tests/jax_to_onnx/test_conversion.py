"""wb.convert's result (issue 19): the model held without copying weights, saved, run and checked from it."""

from __future__ import annotations

import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import workbench as wb
from tests.support.harness import concrete_inputs
from workbench.onnx_io import load_model
from workbench.zoo import nnx_gpt, nnx_mlp

W = np.random.default_rng(0).standard_normal((64, 512)).astype(np.float32)  # 128 KiB
B = np.random.default_rng(1).standard_normal((512,)).astype(np.float32)


def affine(x):
    return jnp.tanh(x @ W + B)


@pytest.fixture(scope="module")
def gpt():
    return nnx_gpt()


@pytest.fixture(scope="module")
def gpt_conversion(gpt):
    return wb.convert(gpt.fn, gpt.inputs)


def test_weights_are_the_traced_arrays_not_copies():
    conversion = wb.convert(affine, [("B", 64)])
    tensors = {v.name: v.const_value for v in conversion.ir_model.graph.initializers.values()}
    shared = [name for name, tensor in tensors.items() if np.shares_memory(tensor.numpy(), W)]
    assert len(shared) == 1  # the weight lives once, in the caller's array
    assert conversion.weight_bytes == W.nbytes + B.nbytes
    assert conversion._proto is None  # no ModelProto until one is asked for
    model = conversion.model
    assert conversion.model is model  # made once
    onnx.checker.check_model(model, full_check=True)
    assert {v.name for v in model.graph.value_info}.isdisjoint(t.name for t in model.graph.initializer)


def test_model_matches_to_onnx(gpt, gpt_conversion):
    assert gpt_conversion.model.graph.node == wb.to_onnx(gpt.fn, gpt.inputs).graph.node


def test_run_matches_jax(gpt, gpt_conversion):
    tokens = concrete_inputs(gpt.inputs, int_high=100, sizes={"B": 2, "T": 7})[0]
    got = gpt_conversion.run(tokens)
    assert len(got) == 1
    np.testing.assert_allclose(got[0], np.asarray(gpt.eval_fn()(tokens)), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="takes 1 input array"):
        gpt_conversion.run(tokens, tokens)


@pytest.mark.parametrize(
    "options, side_file",
    [({}, False), ({"external_data_threshold": 1024}, True), ({"external_data": False, "external_data_threshold": 1024}, False)],
)
def test_save_writes_what_the_policy_says(tmp_path, options, side_file):
    conversion = wb.convert(affine, [("B", 64)])
    written = conversion.save(tmp_path / "affine.onnx", **options)
    side_files = [p for p in tmp_path.iterdir() if p.name.startswith("affine.onnx.") and p.name.endswith(".data")]
    assert (written.data is not None) == side_file == bool(side_files)
    assert side_files == ([written.data] if side_file else [])
    assert conversion.path == tmp_path / "affine.onnx"
    loaded = load_model(tmp_path / "affine.onnx").proto
    weights = {t.name: numpy_helper.to_array(t) for t in loaded.graph.initializer}
    assert any(np.array_equal(w, W) for w in weights.values())
    x = np.random.default_rng(2).standard_normal((3, 64)).astype(np.float32)
    session = wb.convert(affine, [("B", 64)]).session()
    np.testing.assert_allclose(session.run({"x": x})[0], np.asarray(affine(x)), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="external_data"):
        conversion.save(tmp_path / "x.onnx", external_data="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="external_data_threshold"):
        conversion.save(tmp_path / "x.onnx", external_data_threshold=1.5)  # type: ignore[arg-type]


def test_to_onnx_with_path_returns_the_model_and_writes_the_side_file(tmp_path):
    model = wb.to_onnx(affine, [("B", 64)], path=tmp_path / "a.onnx", external_data_threshold=1024)
    names = sorted(os.listdir(tmp_path))
    assert names[0] == "a.onnx" and len(names) == 2 and re.fullmatch(r"a\.onnx\.[0-9a-f]{16}\.data", names[1])
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in model.graph.initializer)  # weights in memory


def test_check_parity_and_locate_reuse_the_conversion(gpt, gpt_conversion, monkeypatch):
    from workbench.analysis import subject

    def no_second_trace(*args, **kwargs):
        raise AssertionError("the conversion's own trace should be reused")

    monkeypatch.setattr(subject, "trace", no_second_trace)
    report = gpt_conversion.check()
    assert report.supported and report.num_equations > 0
    parity = gpt_conversion.parity(samples=2)
    assert parity.ok and len(parity.results) == 2
    assert parity.model_source == "<Conversion>"
    located = parity.locate()
    assert located.ok and located.changed_initializers == []


def test_parity_of_another_function_against_a_conversion_fails(gpt_conversion):
    other = nnx_gpt(seed=1)
    assert not wb.parity(other.fn, gpt_conversion, samples=1).ok


def test_optimize_runs_the_passes_skipped_at_conversion():
    built = nnx_mlp()
    plain = wb.convert(built.fn, built.inputs, optimize=False)
    before = len(plain.model.graph.node)
    optimized = plain.optimize()
    assert optimized is not plain and optimized.optimized and not plain.optimized
    assert optimized.traced is plain.traced  # lowered again from the same trace
    assert optimized.optimize() is optimized
    after = optimized.model.graph.node
    assert len(after) < before
    assert [n.op_type for n in after] == [n.op_type for n in wb.to_onnx(built.fn, built.inputs).graph.node]
    x = concrete_inputs(built.inputs, sizes={"B": 4})[0]
    np.testing.assert_allclose(optimized.run(x)[0], np.asarray(built.eval_fn()(x)), rtol=1e-4, atol=1e-5)


def test_to_jax_round_trips(gpt, gpt_conversion):
    forward, params = gpt_conversion.to_jax()
    tokens = concrete_inputs(gpt.inputs, int_high=100, sizes={"B": 2, "T": 5})[0]
    np.testing.assert_allclose(
        np.asarray(forward(params, tokens)), np.asarray(gpt.eval_fn()(tokens)), rtol=1e-4, atol=1e-5
    )


def test_run_takes_pytree_arguments():
    def f(inputs):
        return inputs["a"] * 2 + inputs["b"]

    conversion = wb.convert(f, [{"a": (3,), "b": (3,)}])
    a, b = np.arange(3, dtype=np.float32), np.ones(3, np.float32)
    np.testing.assert_array_equal(conversion.run({"a": a, "b": b})[0], a * 2 + b)
    assert jax.tree_util.tree_leaves({"a": a, "b": b})[0] is a  # the order the conversion used


def _mixed_sizes(x):
    """Initializers below and above the shape step's size limit, interleaved: a weight, a small constant, another weight."""
    return jnp.tanh((x @ W + B) * jnp.arange(512, dtype=jnp.float32)) @ W.T + jnp.ones(64, jnp.float32)


@pytest.mark.parametrize(
    "make, options",
    [
        (lambda: (_mixed_sizes, [("B", 64)]), {}),
        (lambda: (nnx_gpt().fn, nnx_gpt().inputs), {}),
        (lambda: (nnx_gpt().fn, nnx_gpt().inputs), {"precision": "float16"}),
        (lambda: (nnx_mlp().fn, nnx_mlp().inputs), {"optimize": False}),
    ],
    ids=["mixed-sizes", "gpt", "gpt-float16", "mlp-unoptimized"],
)
def test_model_from_the_checked_graph_equals_serializing_the_model(make, options):
    """``.model`` is made from what the shape step serialized for the checker: equal, byte for byte, to
    serializing the model whole (the weights moved back among the initializers in their order)."""
    fn, inputs = make()
    conversion = wb.convert(fn, inputs, **options)
    whole = wb.jax_to_onnx.conversion.to_proto(conversion.ir_model).SerializeToString(deterministic=True)
    assert conversion._checked is not None  # every edge was typed: the checker's graph is reused
    assert conversion.model.SerializeToString(deterministic=True) == whole
    assert conversion._checked is None  # taken over by the first read
    assert len(conversion.model.graph.initializer) == len(conversion.ir_model.graph.initializers)
    onnx.checker.check_model(conversion.model, full_check=True)


def test_model_after_changing_the_ir_model_is_the_model_as_converted():
    conversion = wb.convert(affine, [("B", 64)])
    converted = wb.jax_to_onnx.conversion.to_proto(conversion.ir_model).SerializeToString(deterministic=True)
    conversion.ir_model.graph.name = "renamed"
    assert conversion.model.SerializeToString(deterministic=True) == converted  # as documented on Conversion.model
