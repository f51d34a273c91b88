"""Dead code is dropped before the support check; PRNG keys (constants, inputs, arrays of keys) export;
primitives that cannot be exported say why."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from flax import nnx

import workbench as wb
from tests.support.harness import assert_graph_quality, assert_matches_jax
from workbench.errors import UnsupportedPrimitive, UnsupportedPrimitiveError
from workbench.jax_to_onnx.lowering import iter_eqns
from workbench.jax_to_onnx.tracing import trace


def _primitives(fn, inputs) -> set[str]:
    return {eqn.primitive.name for eqn in iter_eqns(trace(fn, inputs).closed_jaxpr.jaxpr)}


def test_unused_key_plumbing_is_removed_before_the_support_check():
    wobble = jax.extend.core.Primitive("wb_test_never_supported")
    wobble.def_abstract_eval(lambda x: x)
    wobble.def_impl(lambda x: x)

    def fn(x):
        wobble.bind(x)  # computed, never used
        _ = jax.random.split(jax.random.key(0), 3)
        return x * 2

    assert _primitives(fn, [(3,)]) == {"mul"}
    model = wb.to_onnx(fn, [(3,)])
    assert_matches_jax(fn, model, [np.arange(3, dtype=np.float32)])


def test_a_typed_key_captured_as_a_constant_converts_and_matches_bit_for_bit():
    key = jax.random.key(7)

    def fn(x):
        return x + jax.random.normal(key, x.shape)

    model = wb.to_onnx(fn, [(2, 3)])
    assert_graph_quality(model)
    assert_matches_jax(fn, model, [np.zeros((2, 3), np.float32)], rtol=1e-6, atol=1e-6)


def test_nnx_dropout_in_training_mode_draws_the_same_mask_as_jax():
    class Net(nnx.Module):
        def __init__(self, rngs: nnx.Rngs):
            self.linear = nnx.Linear(4, 8, rngs=rngs)
            self.dropout = nnx.Dropout(0.5, deterministic=False, rngs=rngs)

    net = Net(nnx.Rngs(0, dropout=3))
    graphdef, state = nnx.split(net)

    def fn(x):  # a pure function of the state: the dropout key is a constant of the jaxpr
        model = nnx.merge(graphdef, jax.tree.map(lambda leaf: leaf, state))
        return model.dropout(model.linear(x))

    model = wb.to_onnx(fn, [(5, 4)])
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    assert_matches_jax(fn, model, [x], rtol=1e-5, atol=1e-6)
    dropped = np.asarray(fn(x)) == 0
    assert 0 < dropped.sum() < dropped.size


def test_keys_as_graph_inputs_are_their_uint32_key_data():
    def fn(keys, x):
        return jax.vmap(lambda k: jax.random.uniform(k, x.shape) * x)(keys)

    keys = jax.random.split(jax.random.key(1), 3)
    model = wb.to_onnx(fn, [keys, (4,)])
    (key_input, _) = model.graph.input
    assert key_input.type.tensor_type.elem_type == 12  # uint32
    assert [d.dim_value for d in key_input.type.tensor_type.shape.dim] == [3, 2]
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.ones(4, np.float32)
    (got,) = session.run(None, {key_input.name: np.asarray(jax.random.key_data(keys)), model.graph.input[1].name: x})
    np.testing.assert_array_equal(got, np.asarray(fn(keys, x)))


def test_other_prng_implementations_are_refused_with_the_reason():
    def fn(x):
        return x + jax.random.uniform(jax.random.key(0, impl="rbg"), x.shape)

    with pytest.raises(UnsupportedPrimitiveError, match="only JAX's default threefry2x32"):
        wb.to_onnx(fn, [(3,)])
    report = wb.check(fn, [(3,)])
    assert not report.supported
    assert any("threefry2x32" in usage.suggestion for usage in report.unsupported)


def test_a_pure_callback_names_the_line_and_what_to_do():
    def fn(x):
        return jax.pure_callback(np.sin, jax.ShapeDtypeStruct(x.shape, x.dtype), x) + 1  # callback-line

    with pytest.raises(UnsupportedPrimitiveError) as info:
        wb.to_onnx(fn, [(3,)])
    (entry,) = info.value.primitives
    assert isinstance(entry, UnsupportedPrimitive) and entry.name == "pure_callback"
    assert "host callback" in entry.reason
    assert entry.locations and entry.locations[0].line == _line_of(fn, "callback-line")


def test_equinox_error_checks_point_to_the_environment_switch():
    import equinox as eqx

    def fn(x):
        return eqx.error_if(x, x > 100.0, "too large") * 2

    with pytest.raises(UnsupportedPrimitiveError, match="EQX_ON_ERROR=nan"):
        wb.to_onnx(fn, [(3,)])


def _line_of(fn, marker: str) -> int:
    import inspect

    lines, start = inspect.getsourcelines(fn)
    return start + next(i for i, line in enumerate(lines) if marker in line)


def test_equinox_error_check_is_reported_at_the_users_line_not_inside_equinox():
    import equinox as eqx

    @eqx.filter_jit
    def checked(x):
        return eqx.error_if(x, x > 100.0, "too large")  # error-line

    def fn(x):
        return checked(x) * 2

    with pytest.raises(UnsupportedPrimitiveError) as info:
        wb.to_onnx(fn, [(3,)])
    (entry,) = info.value.primitives
    # the callback's own traceback ends inside equinox; the line is found through the enclosing equations
    assert [loc.line for loc in entry.locations] == [_line_of(checked, "error-line")]
