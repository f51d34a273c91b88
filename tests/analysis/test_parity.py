"""wb.parity: generated inputs, per-output errors against onnxruntime, verdicts, figures, bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import onnx
import pytest
from jax.interpreters import mlir
from onnx import numpy_helper

import workbench as wb
from tests.support.analysis_models import W1, copy_model, mlp, scale_initializer, swap_op, two_outputs
from workbench.analysis.inputs import index_bounds, plan_inputs
from workbench.jax_to_onnx.registry import REGISTRY
from workbench.jax_to_onnx.tracing import trace
from workbench.specs import TensorSpec


@pytest.fixture(scope="module")
def mlp_model():
    return wb.to_onnx(mlp, [("B", 4)])


def test_parity_passes_with_several_batch_sizes(mlp_model):
    report = wb.parity(mlp, mlp_model, samples=3)
    assert report.ok, repr(report)
    batch_sizes = [sizes["B"] for sizes in report.sizes]
    assert len(set(batch_sizes)) == 3 and 1 not in batch_sizes
    assert [x.shape[0] for x in (s[0] for s in report.inputs)] == batch_sizes
    frame = report.to_pandas()
    assert len(frame) == 3 and frame["ok"].all()
    assert (frame["rtol"] == 1e-4).all() and (frame["max_abs_error"] < 1e-4).all()
    # the numbers are real: JAX recomputed here agrees with what the report kept
    first = report.results[0]
    np.testing.assert_allclose(first.jax_value, np.asarray(mlp(report.inputs[0][0])), rtol=1e-6)
    assert "PASS" in repr(report) and "<table" in report._repr_html_()


def test_parity_multiple_outputs_and_given_arrays():
    x = np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)
    model = wb.to_onnx(two_outputs, [x, x])
    report = wb.parity(two_outputs, model, [x, x * 2], optimize=False)
    assert report.ok and not report.optimized
    assert [r.output for r in report.results] == [o.name for o in model.graph.output]
    assert len(report.inputs) == 1 and np.array_equal(report.inputs[0][1], x * 2)


def test_parity_flags_a_tampered_model(mlp_model):
    broken, _ = swap_op(mlp_model, "Sigmoid", "Tanh")
    report = wb.parity(mlp, broken)
    assert not report.ok
    assert all(r.verdict.startswith("FAIL") for r in report.results)
    assert all(0 < r.comparison.mismatch_fraction <= 1 for r in report.results)
    assert "FAIL" in repr(report)
    assert report.summary().startswith("Parity FAIL (3 of 3 comparisons): mlp in JAX vs the ONNX model (in memory), 3 samples, ")


def test_explicit_tolerance_overrides_dtype_default(mlp_model):
    scaled, _, _ = scale_initializer(mlp_model, lambda a: a.shape == W1.shape, 1.0 + 1e-3)
    assert not wb.parity(mlp, scaled, samples=1).ok
    loose = wb.parity(mlp, scaled, samples=1, rtol=0.5, atol=0.5)
    assert loose.ok and loose.results[0].comparison.rtol == 0.5


def test_figure_has_scatter_per_output_and_histogram(mlp_model):
    figure = wb.parity(mlp, mlp_model, samples=2).figure()
    kinds = [trace.type for trace in figure.data]
    assert kinds.count("scattergl") == 2 and kinds.count("histogram") == 1


def test_integer_index_inputs_stay_inside_the_table():
    table = jnp.arange(40, dtype=jnp.float32).reshape(10, 4)

    def embed(tokens, x):
        return table[tokens] * x[:, None, :]

    specs = [jax.ShapeDtypeStruct(("B", 6), jnp.int32), ("B", 4)]
    traced = trace(embed, specs)
    assert index_bounds(traced.closed_jaxpr, traced.num_params) == {0: 10}
    plans = plan_inputs(traced, ["tokens", "x"])
    assert plans[0].int_high == 10 and plans[1].int_high is None
    if REGISTRY.get("gather") is None:
        pytest.skip("gather has no handler yet in this checkout (index family); input planning was checked above")
    model = wb.to_onnx(embed, specs)
    report = wb.parity(embed, model, samples=3)
    assert report.ok, repr(report)
    assert all(s[0].max() < 10 for s in report.inputs)


def test_symbolic_slice_of_a_fixed_table_does_not_stop_parity():
    """``mask[:T, :T]`` of a fixed causal mask (HF Flax GPT-2 does this) is a gather whose slice size is symbolic:
    input planning found no bound in it and raised JAX's InconclusiveDimensionOperation instead."""
    mask = jnp.tril(jnp.ones((64, 64), bool))

    def causal_mix(x):
        t = x.shape[0]
        return jnp.where(mask[:t, :t], 1.0, 0.0) @ x

    conversion = wb.convert(causal_mix, [("T", 4)], constraints=["T <= 64"])
    report = wb.parity(conversion)
    assert report.ok, repr(report)
    first = report.inputs[0][0]
    np.testing.assert_allclose(report.results[0].jax_value, np.tril(np.ones((len(first),) * 2)) @ first, rtol=1e-5, atol=1e-5)


def test_the_jax_side_is_compiled_once_per_sample_size(count_compilations):
    """Run op by op, JAX compiled each operation at each new shape (a Keras EfficientNetB0: 609 programs, 24 of
    parity's 29 CPU seconds); the whole function is compiled once per sample size instead."""
    w = np.linspace(-1, 1, 13 * 13, dtype=np.float32).reshape(13, 13)

    def layers(x):
        for _ in range(4):
            x = jnp.tanh(x @ w) * jax.nn.sigmoid(x) + jnp.sin(x) - jnp.exp(-(x**2))
        return jnp.cumsum(x, axis=-1) / jnp.linalg.norm(x, axis=-1, keepdims=True)

    conversion = wb.convert(layers, [("B", 13)])
    report, compiles = count_compilations(lambda: wb.parity(conversion, samples=3))
    assert report.ok, repr(report)
    assert len({sizes["B"] for sizes in report.sizes}) == 3
    assert compiles <= 3, f"{compiles} XLA compilations for 3 sample sizes"
    x = report.inputs[1][0]
    np.testing.assert_allclose(report.results[1].jax_value, np.asarray(layers(x)), rtol=1e-5, atol=1e-6)


def test_a_primitive_without_xla_lowering_still_runs_on_the_jax_side(softsign_without_lowering):
    """A library primitive with an impl but no lowering runs eagerly, not under jax.jit: parity falls back to that."""
    softsign_p = softsign_without_lowering
    conversion = wb.convert(lambda x: softsign_p.bind(x) * 2.0, [("B", 5)])
    report = wb.parity(conversion, samples=2)
    assert report.ok, repr(report)
    x = report.inputs[0][0]
    np.testing.assert_allclose(report.results[0].jax_value, 2 * x / (1 + np.abs(x)), rtol=1e-6)


def test_a_function_that_does_not_compile_whole_is_tried_once_per_parity_call(softsign_without_lowering):
    """The JAX side caught the compiled run's failure and ran op by op, but tried the compile again on every sample
    (3 samples, 3 sizes: 3 failing lowerings) and the locator once more: the failure is remembered per parity call."""
    softsign_p = softsign_without_lowering
    attempts: list[tuple[int, ...]] = []

    def refuse(ctx, x):
        attempts.append(tuple(ctx.avals_in[0].shape))
        raise NotImplementedError("no XLA lowering for this test primitive")

    mlir.register_lowering(softsign_p, refuse)
    conversion = wb.convert(lambda x: softsign_p.bind(x) * 2.0, [("B", 5)])
    report = wb.parity(conversion, samples=3)
    assert report.ok, repr(report)
    assert len({sizes["B"] for sizes in report.sizes}) == 3
    assert len(attempts) == 1, f"the whole-function compile was tried {len(attempts)} times: {attempts}"
    assert report.subject.whole_compile.failure == "NotImplementedError: no XLA lowering for this test primitive"
    for sample, x in enumerate(report.inputs):
        np.testing.assert_allclose(report.results[sample].jax_value, 2 * x[0] / (1 + np.abs(x[0])), rtol=1e-6)
    divergence = report.locate(sample=1)  # the locator learns it from parity and runs op by op at once
    assert len(attempts) == 1 and divergence.first_divergent is None, repr(divergence)


def test_outputs_that_are_nan_on_both_sides_are_not_called_a_plain_pass():
    """NumPyro's log density on generated inputs (a negative scale) is NaN in JAX and in onnxruntime: parity said
    'PASS ... max abs 0' for all samples. It still matches, but the report says the comparison proved nothing."""

    def log_density(scale, x):
        return jnp.sum(-0.5 * (x / scale) ** 2 - jnp.log(scale) - jnp.sqrt(scale - 10.0), axis=-1), x * 2.0

    conversion = wb.convert(log_density, [(), ("N", 3)])
    report = wb.parity(conversion, samples=2)
    assert report.ok
    density, doubled = [r for r in report.results if r.sample == 0]
    assert np.isnan(density.jax_value).all() and np.isnan(density.onnx_value).all()
    assert density.verdict == "ok, but no finite value (NaN/inf in both)" and doubled.verdict == "ok"
    assert report.vacuous == [r for r in report.results if r.output == density.output]
    assert "but 2 of 4 comparisons had no finite value" in report.summary() and "pass inputs=[...]" in report.summary()
    given = wb.parity(conversion, inputs=[np.float32(20.0), np.ones((2, 3), np.float32)])
    assert given.ok and given.vacuous == [] and "no finite value" not in given.summary()
    np.testing.assert_allclose(given.results[0].jax_value, np.full(2, 3 * (-0.5 / 400 - np.log(20.0) - np.sqrt(10.0))), rtol=1e-5)


def test_sizes_override_fixes_a_symbol(mlp_model):
    report = wb.parity(mlp, mlp_model, samples=2, sizes={"B": 7})
    assert [s["B"] for s in report.sizes] == [7, 7]


# ----------------------------------------------------------------------------- bad input
def test_input_count_mismatch(mlp_model):
    with pytest.raises(wb.WorkbenchError, match="has 1 input.*takes 2 flat input"):
        wb.parity(two_outputs, mlp_model, [(2, 4), (2, 4)])


def test_input_dtype_mismatch():
    model = wb.to_onnx(lambda i: i * 2, [jax.ShapeDtypeStruct((3,), jnp.int32)])
    with pytest.raises(wb.WorkbenchError, match="is int32 but .* gets float32"):
        wb.parity(lambda x: x * 2, model, [(3,)])


def test_input_rank_mismatch(mlp_model):
    with pytest.raises(wb.WorkbenchError, match="has rank 2 .* gets rank 3"):
        wb.parity(lambda x: mlp(x[0]), mlp_model, [(1, 2, 4)])


def test_output_count_mismatch(mlp_model):
    with pytest.raises(wb.WorkbenchError, match="1 output.* returns 2 flat output"):
        wb.parity(lambda x: (mlp(x), x), mlp_model)


def test_path_that_is_not_onnx(tmp_path):
    bogus = tmp_path / "notes.onnx"
    bogus.write_text("this is not a protobuf, just text\n" * 3)
    with pytest.raises(wb.OnnxModelError, match="notes.onnx is not an ONNX file"):
        wb.parity(mlp, bogus)
    with pytest.raises(wb.OnnxModelError, match="does not exist"):
        wb.parity(mlp, tmp_path / "missing.onnx")


def test_function_failing_on_generated_inputs(mlp_model):
    def picky(x):
        if x.shape[0] == 5:  # symbolic B is not provably 5 while tracing, so only a concrete run fails
            raise ValueError("batches of five are not supported")
        return mlp(x)

    with pytest.raises(wb.WorkbenchError, match=r"picky failed on the generated inputs \['float32\[5, 4\]'\].*five"):
        wb.parity(picky, mlp_model, samples=3)


def test_onnxruntime_load_error_names_path_and_node(tmp_path, mlp_model):
    broken, node_name = swap_op(mlp_model, "Sigmoid", "NoSuchOp")
    path = tmp_path / "broken.onnx"
    onnx.save_model(broken, path)
    with pytest.raises(wb.OnnxModelError) as info:
        wb.parity(mlp, path)
    message = str(info.value)
    assert str(path) in message and node_name in message


def test_samples_must_be_positive(mlp_model):
    with pytest.raises(ValueError, match="samples"):
        wb.parity(mlp, copy_model(mlp_model), samples=0)


def test_a_bfloat16_network_holds_its_bfloat16_outputs_as_loosely_as_its_float32_ones():
    # a bfloat16 array is NumPy kind 'V': its outputs were held to one bfloat16 rounding (rtol 2e-2, atol 1e-2)
    # while the same network's float32 outputs got the network's compute tolerance (5e-2, 5e-2); a Flax Linen
    # block in bfloat16 failed parity on a 1-ulp difference at a residual sum that cancelled to ~0 (ux51)
    weights = jnp.asarray(np.random.default_rng(3).standard_normal((16, 16)), jnp.bfloat16)

    def layer(x):
        h = jnp.tanh(x @ weights)
        return h, h.astype(jnp.float32)

    report = wb.parity(layer, wb.to_onnx(layer, [TensorSpec(("B", 16), "bfloat16")]))
    assert report.ok, report.summary()
    by_output = {r.dtype: (r.comparison.rtol, r.comparison.atol) for r in report.results}
    assert by_output == {"bfloat16": (5e-2, 5e-2), "float32": (5e-2, 5e-2)}
    assert all(r.comparison.max_abs_error <= 2 ** -7 for r in report.results)  # tanh in [-1, 1]: within 1 ulp


def test_a_bfloat16_network_with_small_outputs_is_not_passed_by_the_absolute_floor():
    # the compute tolerance's atol (5e-2) is absolute: a bfloat16 model whose outputs are of magnitude 1e-2 passed
    # parity with a negated weight (every output's sign flipped, max abs error 0.02 < 0.05). The floor's atol now
    # shrinks with an output whose largest magnitude is below 1; outputs of magnitude 1 and above keep it
    weights = jnp.asarray(np.random.default_rng(0).standard_normal((16, 16)), jnp.bfloat16)
    x = np.random.default_rng(1).standard_normal((4, 16)).astype(jnp.bfloat16)
    for scale in (0.01, 4.0):
        def fn(x, scale=scale):
            return jnp.tanh(x @ weights) * jnp.bfloat16(scale)

        model = wb.to_onnx(fn, [x])
        assert wb.parity(fn, model, [x]).ok
        kernel = next(t for t in model.graph.initializer if tuple(t.dims) == (16, 16))
        kernel.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(kernel), kernel.name))
        report = wb.parity(fn, model, [x])
        assert not report.ok, (scale, report.summary())
        comparison = report.results[0].comparison
        assert comparison.rtol == 5e-2 and comparison.atol == (1e-2 if scale < 1 else 5e-2)  # bfloat16's own atol
        assert comparison.max_abs_error == pytest.approx(2 * np.abs(np.asarray(fn(x), np.float32)).max(), rel=2e-2)


def test_max_rel_is_taken_where_the_relative_tolerance_decides():
    # a JAX zero made 'max rel 1.76e+305' in a row that passed (|diff| / float64 tiny); below atol an element
    # is judged by its absolute error, so it is left out of the relative one
    def fn(x):
        return x * 3.0

    shifted = wb.to_onnx(lambda x: x * 3.0 + 1e-7, [(4,)])  # within atol of fn everywhere
    x = np.array([0.0, -1.0, 2.0, 0.5], np.float32)
    report = wb.parity(fn, shifted, [x])
    assert report.ok, report.summary()
    comparison = report.results[0].comparison
    want = np.asarray(fn(x), np.float64)
    got = np.asarray(report.results[0].onnx_value, np.float64)
    above = np.abs(want) > comparison.atol
    assert comparison.max_rel_error == pytest.approx(np.max(np.abs(got - want)[above] / np.abs(want[above])))
    assert 0 < comparison.max_rel_error < 1e-6 and 0 < comparison.max_abs_error < comparison.atol


def test_the_error_histogram_counts_exact_matches_instead_of_drawing_them_at_1e_minus_12():
    # a bfloat16 block's plot showed 2,880 of 6,144 errors as a tall bar at log10 = -12 (ux51): those were exact
    shift = np.float32(1e-6)

    def fn(x):
        return jnp.maximum(x, 0.0) * 2.0

    model = wb.to_onnx(lambda x: jnp.maximum(x, 0.0) * 2.0 + jnp.where(x > 1.0, shift, 0.0), [(8,)])
    x = np.array([-2.0, -1.0, 0.0, 0.5, 1.5, 2.0, 3.0, -0.5], np.float32)
    report = wb.parity(fn, model, [x])
    errors = np.abs(report.results[0].onnx_value.astype(np.float64) - np.asarray(fn(x), np.float64))
    assert report.ok and np.count_nonzero(errors == 0) == 5 and np.count_nonzero(errors) == 3
    figure = report.figure()
    histogram = next(trace for trace in figure.data if trace.type == "histogram")
    np.testing.assert_allclose(np.sort(histogram.x), np.sort(np.log10(errors[errors > 0])))
    assert figure.layout.annotations[-1].text.endswith("<sup>5 of 8 values exact, not drawn</sup>")
    assert figure.layout.title.text.startswith("Parity PASS: fn in JAX vs") and "<br><sup>1 sample," in figure.layout.title.text


def test_sizes_beside_concrete_inputs_are_refused_not_ignored(mlp_model):
    # sizes= fixes symbolic dimensions of generated inputs; beside concrete inputs it was ignored, and the report
    # compared inputs of other sizes than the caller asked for without a word
    x = np.ones((2, 4), np.float32)
    calls = (
        lambda: wb.parity(mlp, mlp_model, [x], sizes={"B": 8}),
        lambda: wb.locate_divergence(mlp, mlp_model, [x], sizes={"B": 8}),
        lambda: wb.locate_divergence(mlp_model, None, [x], sizes={"B": 8}),  # the ONNX -> JAX direction
    )
    for call in calls:
        with pytest.raises(wb.SpecError, match=r"sizes=\{'B': 8\}: sizes are for generated inputs, and the inputs given fix"):
            call()
    report = wb.parity(mlp, mlp_model, sizes={"B": 8})  # generated: the size asked for
    assert report.ok and report.results[0].shape[0] == 8
    assert wb.parity(mlp, mlp_model, [x]).ok and wb.parity(mlp, mlp_model, [x], sizes={}).ok
