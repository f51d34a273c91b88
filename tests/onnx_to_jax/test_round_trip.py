"""Round trip over the whole model zoo: JAX -> ONNX (``wb.to_onnx``) -> JAX source (``wb.to_jax``) -> run.

The reference is always the ORIGINAL JAX callable (in inference mode), never onnxruntime: the
generated code must compute what the user's model computes. Each zoo model is converted once,
in one test that runs every check on that conversion.

Checked per model: the generated module parses and reads every float weight from ``params`` under
its ONNX initializer name; ``forward(params, *inputs)`` under ``jax.jit`` matches the original
(jitted too) at two batch sizes through one compiled function (the symbolic batch dim survives),
and eagerly for one model per family; gradients of the generated code w.r.t. a float input match
``jax.grad`` of the original. One model is also
saved with ``wb.save_jax`` and run in a fresh interpreter that cannot import workbench.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import onnx
import pytest

import workbench as wb
from tests.support.harness import concrete_inputs
from tests.support.zoo_exports import reference, zoo_export
from workbench import zoo

# Token ids must stay below the GPT's vocabulary; sequence T must not exceed its position table.
INT_HIGH = 100
SIZES = {"B": 3, "T": 5}
OTHER_SIZES = {"B": 2, "T": 4}  # a second concrete size for the symbolic dims
RTOL = ATOL = 1e-4  # float32 through two converters; observed errors are <= 2e-6
GRAD_RTOL, GRAD_ATOL = 1e-3, 1e-4

# Expected failures, all in one place (strict: delete an entry when the model starts passing).
EXPECTED_FAILURES: dict[str, str] = {}
# Models without a float input have no input gradient to compare (listed here, checked otherwise).
NO_INPUT_GRADIENT: dict[str, str] = {"nnx_gpt": "its only input is int32 token ids"}
SAVED_MODEL = "nnx_gru"  # lax.scan -> ONNX Scan -> lax.scan, and shape arithmetic on the symbolic batch
# Eager (un-jitted) runs dispatch op by op and cost tens of seconds for the bigger models on a
# 2-core CI machine, so eagerly only one model per family (dense, conv/pool, scan, attention) runs;
# every model runs under jax.jit.
EAGER_MODELS = ("nnx_mlp", "linen_cnn", "nnx_lstm", "nnx_vit")


def _zoo_params() -> list[Any]:
    params = []
    for name in zoo.ZOO:
        marks = []
        if name in EXPECTED_FAILURES:
            marks.append(pytest.mark.xfail(strict=True, reason=EXPECTED_FAILURES[name]))
        params.append(pytest.param(name, id=name, marks=marks))
    return params


@dataclass(frozen=True)
class RoundTrip:
    name: str
    original: Callable[..., Any]  # jitted: the reference, computed the way a user would run it
    specs: list[Any]
    onnx_model: onnx.ModelProto
    source: str
    forward: Callable[..., Any]
    params: dict[str, Any]


ZOO_PARAMS = _zoo_params()


def convert(name: str) -> RoundTrip:
    """Convert one zoo model JAX -> ONNX -> JAX (once: every check of the model runs on it)."""
    export = zoo_export(name)  # the export test_model_zoo.py and test_export_graphs.py check too
    onnx_model = export.model
    source = wb.to_jax_source(onnx_model)
    forward, params = wb.to_jax(onnx_model)
    return RoundTrip(name, reference(name), export.built.inputs, onnx_model, source, forward, params)


def _outputs(value: Any) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(value)]


def _assert_same(got: Any, expected: Any, *, what: str, rtol: float = RTOL, atol: float = ATOL) -> None:
    got_leaves, expected_leaves = _outputs(got), _outputs(expected)
    assert len(got_leaves) == len(expected_leaves), f"{what}: {len(got_leaves)} outputs vs {len(expected_leaves)}"
    for index, (g, e) in enumerate(zip(got_leaves, expected_leaves, strict=True)):
        assert g.shape == e.shape, f"{what}, output {index}: shape {g.shape} vs original {e.shape}"
        assert g.dtype == e.dtype, f"{what}, output {index}: dtype {g.dtype} vs original {e.dtype}"
        np.testing.assert_allclose(g, e, rtol=rtol, atol=atol, err_msg=f"{what}, output {index}")


def _inputs(trip: RoundTrip, sizes: dict[str, int], seed: int = 0) -> list[Any]:
    return concrete_inputs(trip.specs, seed=seed, int_high=INT_HIGH, sizes=sizes)


def test_every_listed_model_exists():
    assert set(EXPECTED_FAILURES) <= set(zoo.ZOO)
    assert set(NO_INPUT_GRADIENT) <= set(zoo.ZOO)
    assert SAVED_MODEL in zoo.ZOO
    assert set(EAGER_MODELS) <= set(zoo.ZOO)


def check_source_parses_and_names_params_after_initializers(trip: RoundTrip) -> None:
    tree = ast.parse(trip.source)
    functions = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
    assert "forward" in functions
    initializers = {t.name for t in trip.onnx_model.graph.initializer}
    float_initializers = {
        t.name for t in trip.onnx_model.graph.initializer
        if onnx.helper.tensor_dtype_to_np_dtype(t.data_type).kind == "f"
    }
    assert float_initializers, "a zoo model without weights?"
    assert float_initializers <= set(trip.params) <= initializers
    for name in float_initializers:
        assert f"params[{name!r}]" in trip.source, f"weight {name!r} is not read from params"


def check_matches_the_original_under_jit_at_two_batch_sizes(trip: RoundTrip) -> None:
    jitted = jax.jit(trip.forward)  # one compiled function: the batch dim stayed symbolic
    for seed, sizes in enumerate((SIZES, OTHER_SIZES)):
        args = _inputs(trip, sizes, seed=seed)
        _assert_same(jitted(trip.params, *args), trip.original(*args), what=f"{trip.name} (jit, sizes {sizes})")
    if trip.name in EAGER_MODELS:
        args = _inputs(trip, SIZES)
        _assert_same(trip.forward(trip.params, *args), trip.original(*args), what=f"{trip.name} (eager)")


def check_input_gradient_matches_the_original(trip: RoundTrip) -> None:
    args = _inputs(trip, SIZES, seed=2)
    weights = np.random.default_rng(3).standard_normal(_outputs(trip.original(*args))[0].shape).astype(np.float32)

    def loss_of(fn: Callable[..., Any]) -> Callable[[jax.Array], jax.Array]:
        # a weighted sum, so every output element contributes a different cotangent
        return lambda x: jnp.sum(jax.tree_util.tree_leaves(fn(x, *args[1:]))[0] * weights)

    got = jax.jit(jax.grad(loss_of(lambda *a: trip.forward(trip.params, *a))))(args[0])
    expected = jax.jit(jax.grad(loss_of(trip.original)))(args[0])
    assert np.abs(np.asarray(expected)).max() > 0, "the reference gradient is all zeros; the test would be vacuous"
    _assert_same(got, expected, what=f"{trip.name} d(loss)/d(input)", rtol=GRAD_RTOL, atol=GRAD_ATOL)


@pytest.mark.parametrize("name", ZOO_PARAMS)
def test_round_trip_matches_the_original_jax_function(name):
    # One test per model, all checks on one conversion: separate tests sharing a fixture could
    # convert a model on both xdist workers.
    trip = convert(name)
    check_source_parses_and_names_params_after_initializers(trip)
    check_matches_the_original_under_jit_at_two_batch_sizes(trip)
    if name not in NO_INPUT_GRADIENT:  # listed with the reason at the top of the module
        check_input_gradient_matches_the_original(trip)


def test_save_jax_output_runs_without_workbench(tmp_path):
    model = zoo.ZOO[SAVED_MODEL]()
    onnx_model = wb.to_onnx(model.fn, model.inputs)
    out = wb.save_jax(onnx_model, tmp_path / "saved")
    args = concrete_inputs(model.inputs, seed=4, int_high=INT_HIGH, sizes=SIZES)
    for index, arg in enumerate(args):
        np.save(tmp_path / f"in{index}.npy", np.asarray(arg))
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["workbench"] = None  # importing workbench now fails: the saved code must not need it
        sys.path.insert(0, {str(out)!r})
        import jax
        import numpy as np
        from load import load
        forward, params = load()
        args = [np.load({str(tmp_path)!r} + f"/in{{i}}.npy") for i in range({len(args)})]
        np.save({str(tmp_path / 'out.npy')!r}, np.asarray(jax.jit(forward)(params, *args)))
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=tmp_path, timeout=300, capture_output=True, text=True
    )
    assert done.returncode == 0, f"the saved model failed in a fresh interpreter:\n{done.stderr[-3000:]}"
    _assert_same(np.load(tmp_path / "out.npy"), model.eval_fn()(*args), what=f"{SAVED_MODEL} saved with save_jax")
