"""``wb.jit_forward(forward, params)`` of a model with many weights (tiered.py): the first call runs the
weights as arguments, the folded program compiles in the background and runs from then on.

The threshold is lowered so that a small CNN counts as large; every result is compared with onnxruntime.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import workbench as wb
from tests.onnx_to_jax.test_jit_options import _image, _residual_cnn
from tests.support.harness import run_onnx
from workbench.onnx_to_jax import tiered
from workbench.onnx_to_jax.api import generate_module


@pytest.fixture
def many_weights(monkeypatch):
    """The residual CNN (38 k float weights) counts as a model with many weights."""
    monkeypatch.setattr(tiered, "TIERED_MIN_WEIGHTS", 30_000)


def _check(got, model, x):
    np.testing.assert_allclose(np.asarray(got), run_onnx(model, [x])[0], rtol=1e-4, atol=1e-5)


def test_first_call_runs_the_weights_as_arguments_then_the_folded_program(many_weights):
    model, x = _residual_cnn(), _image()
    forward, params = wb.to_jax(model)
    fn = wb.jit_forward(forward, params)
    assert isinstance(fn, tiered.TieredJitted)
    _check(fn(x), model, x)
    assert fn._bound._cache_size() == 1, "the first call should compile the weights-as-arguments program"
    fn.wait()
    assert fn.folded_ready and fn._folded._cache_size() == 1
    _check(fn(x), model, x)
    assert fn._bound._cache_size() == 1, "once the folded program is compiled the calls run it"
    # the folded program takes the image alone: the weights are constants in it
    main = fn.lower(x).as_text().split("func.func public @main(", 1)[1].split(")", 1)[0]
    assert main.count("%arg") == 1


def test_under_transformations_the_folded_function_is_traced(many_weights):
    model, x = _residual_cnn(), _image()
    generated = generate_module(model)
    forward, params = wb.to_jax(model)
    fn = wb.jit_forward(forward, params)
    reference = functools.partial(generated.forward, generated.params)
    loss = lambda f: lambda v: (f(v) ** 2).sum()  # noqa: E731
    np.testing.assert_allclose(np.asarray(jax.grad(loss(fn))(x)), np.asarray(jax.grad(loss(reference))(x)),
                               rtol=1e-4, atol=1e-5)
    batch = np.stack([x[0], 2 * x[0]])[:, None]
    got = jax.vmap(fn)(batch)
    for i in range(2):
        _check(got[i], model, batch[i])
    assert fn._bound._cache_size() == 0 and not fn.folded_ready, "tracing should not start the background compile"


def test_models_with_fewer_weights_get_the_folded_jit_alone():
    forward, params = wb.to_jax(_residual_cnn())
    fn = wb.jit_forward(forward, params)
    assert not isinstance(fn, tiered.TieredJitted)
    assert tiered.float_elements(params) < tiered.TIERED_MIN_WEIGHTS


def test_float_elements_counts_floating_arrays_of_either_kind():
    params = {"w": jnp.ones((3, 4), jnp.float32), "h": np.ones((5,), np.float16), "c": np.ones(2, np.complex64),
              "shape": np.array([1, 2], np.int64), "mask": jnp.zeros((7,), bool)}
    assert tiered.float_elements(params) == 12 + 5 + 2


def test_jit_arguments_that_count_positions_get_the_folded_jit_alone(many_weights):
    """``donate_argnums``/``static_argnums`` number ``fn``'s inputs; the weights-as-arguments program
    has one argument more, so such a jit is not tiered (the numbers would point at other arguments)."""
    model, x = _residual_cnn(), _image()
    forward, params = wb.to_jax(model)
    assert isinstance(wb.jit_forward(forward, params, compiler_options={}), tiered.TieredJitted)
    fn = wb.jit_forward(forward, params, donate_argnums=())
    assert not isinstance(fn, tiered.TieredJitted)
    _check(fn(x), model, x)


def test_a_failed_background_compile_is_raised_by_wait_and_the_calls_go_on(many_weights):
    model, x = _residual_cnn(), _image()
    forward, params = wb.to_jax(model)
    fn = wb.jit_forward(forward, params)

    class Broken:
        def __call__(self, *inputs):
            raise RuntimeError("no memory for the folded program")

    fn._folded = Broken()
    _check(fn(x), model, x)
    with pytest.raises(RuntimeError, match="no memory"):
        fn.wait()
    assert not fn.folded_ready
    _check(fn(x), model, x)
