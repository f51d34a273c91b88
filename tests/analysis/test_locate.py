"""Divergence locator: clean models show no divergence; a tampered node is named as the first divergent one."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import workbench as wb
from tests.support.analysis_models import W1, mlp, scale_initializer, swap_op, twice_jitted, two_outputs


@pytest.fixture(scope="module")
def mlp_model():
    return wb.to_onnx(mlp, [("B", 4)])


def test_clean_model_has_no_divergence(mlp_model):
    report = wb.locate_divergence(mlp, mlp_model)
    assert report.ok and report.first_divergent is None and report.divergent == []
    compared = [n for n in report.nodes if n.compared]
    assert len(compared) >= 6
    assert [n.index for n in report.nodes] == list(range(len(mlp_model.graph.node)))
    assert all(n.max_abs_error <= n.tolerance for n in compared)
    by_op = {n.op_type: n for n in compared}
    assert by_op["Tanh"].primitive == "tanh" and "analysis_models.py" in by_op["Tanh"].location
    assert by_op["Sigmoid"].primitive == "logistic"
    assert "no node diverges" in repr(report)


# (MatMul + bias Add is fused into Gemm by the export passes, so the MLP has no Add left to swap.)
@pytest.mark.parametrize(("old", "new"), [("Sigmoid", "Tanh"), ("Tanh", "Sigmoid")])
def test_swapped_op_is_named(mlp_model, old, new):
    broken, node_name = swap_op(mlp_model, old, new)
    report = wb.locate_divergence(mlp, broken)
    assert report.first_divergent is not None, repr(report)
    assert report.first_divergent.node == node_name
    assert report.first_divergent.op_type == new
    assert report.first_divergent.max_abs_error > report.first_divergent.tolerance
    assert [n.node for n in report.divergent] == [node_name]
    nodes_before = [n for n in report.nodes if n.index < report.first_divergent.index and n.compared]
    assert all(n.ok for n in nodes_before)


def test_changed_weight_names_its_consumer(mlp_model):
    broken, initializer, consumers = scale_initializer(mlp_model, lambda a: a.shape == W1.shape, 1.01)
    report = wb.locate_divergence(mlp, broken)
    assert report.first_divergent is not None and report.first_divergent.node in consumers
    assert report.first_divergent.op_type in ("MatMul", "Gemm")  # Gemm when the bias Add was fused
    assert report.changed_initializers == [initializer]


def test_changed_scalar_constant_names_its_consumer(mlp_model):
    broken, _, consumers = scale_initializer(mlp_model, lambda a: a.shape == () and a == np.float32(3.0), 2.0)
    assert len(consumers) == 1
    report = wb.locate_divergence(mlp, broken)
    assert report.first_divergent.node == consumers[0]
    assert report.first_divergent.op_type == "Mul" and report.first_divergent.primitive == "mul"


def test_same_jitted_body_inlined_twice_maps_each_call_site():
    model = wb.to_onnx(twice_jitted, [("B", 3)])
    sins = [n for n in model.graph.node if n.op_type == "Sin"]
    assert len(sins) == 2
    clean = wb.locate_divergence(twice_jitted, model)
    assert clean.ok and sum(n.op_type == "Sin" and n.compared for n in clean.nodes) == 2
    # tamper the second call only: the first call's nodes must stay within tolerance
    broken, node_name = swap_op(model, "Sin", "Cos", occurrence=1)
    report = wb.locate_divergence(twice_jitted, broken)
    assert report.first_divergent.node == node_name
    first_sin = next(n for n in report.nodes if n.node == sins[0].name)
    assert first_sin.compared and first_sin.ok


def test_parity_report_locates_its_failing_sample(mlp_model):
    broken, node_name = swap_op(mlp_model, "Sigmoid", "Tanh")
    parity_report = wb.parity(mlp, broken, samples=2)
    assert not parity_report.ok
    located = parity_report.locate()
    assert located.first_divergent.node == node_name
    assert np.array_equal(located.inputs[0], parity_report.inputs[0][0])


def test_model_path_and_given_inputs(tmp_path):
    x = np.linspace(-2, 2, 8, dtype=np.float32).reshape(2, 4)
    model = wb.to_onnx(two_outputs, [("B", 4), ("B", 4)])
    broken, node_name = swap_op(model, "Exp", "Sigmoid")
    path = tmp_path / "two.onnx"
    onnx.save_model(broken, path)
    report = wb.locate_divergence(two_outputs, path, [x, x + 1])
    assert report.first_divergent.node == node_name and report.model_source == str(path)
    assert report.summary().startswith(f"Divergence locator: two_outputs in JAX vs ONNX file {path}, "), report.summary()
    in_memory = wb.locate_divergence(two_outputs, broken, [x, x + 1])
    assert in_memory.summary().startswith("Divergence locator: two_outputs in JAX vs the ONNX model (in memory), ")
    frame = report.to_pandas()
    assert frame["first_divergent"].sum() == 1
    assert frame.loc[frame["first_divergent"], "node"].item() == node_name


def test_figure_marks_the_first_divergent_node(mlp_model):
    broken, node_name = swap_op(mlp_model, "Sigmoid", "Tanh")
    figure = wb.locate_divergence(mlp, broken).figure()
    names = [trace.name for trace in figure.data]
    assert f"first divergent: {node_name}" in names
    assert "<table" in wb.locate_divergence(mlp, broken)._repr_html_()


def test_model_of_another_function_is_refused(mlp_model):
    def other(x):
        return jnp.cos(x).sum(axis=-1, keepdims=True) * jnp.ones((1, 3))

    with pytest.raises(wb.WorkbenchError, match="does not look like an export of other"):
        wb.locate_divergence(other, mlp_model)


def test_node_with_a_body_is_named_when_its_body_is_tampered():
    from tests.support.analysis_models import scanned

    model = wb.to_onnx(scanned, [("T", 4)])
    assert wb.locate_divergence(scanned, model).ok
    broken = onnx.ModelProto()
    broken.CopyFrom(model)
    scan = next(n for n in broken.graph.node if n.op_type == "Scan")
    body = next(a.g for a in scan.attribute if a.name == "body")
    next(n for n in body.node if n.op_type == "Tanh").op_type = "Sigmoid"
    report = wb.locate_divergence(scanned, broken)
    assert report.first_divergent is not None and report.first_divergent.node == scan.name
    assert report.first_divergent.primitive == "scan"


def test_flax_nnx_module_weights_are_compared_by_name():
    from tests.support.analysis_models import make_nnx_net

    net = make_nnx_net()
    model = wb.to_onnx(net, [("B", 4)])
    assert wb.locate_divergence(net, model).ok
    kernel = next(t.name for t in model.graph.initializer if t.name == "l2.kernel")
    from onnx import numpy_helper

    broken = onnx.ModelProto()
    broken.CopyFrom(model)
    tensor = next(t for t in broken.graph.initializer if t.name == kernel)
    tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor) * np.float32(1.1), kernel))
    report = wb.locate_divergence(net, broken)
    assert report.changed_initializers == [kernel]
    assert kernel in next(n for n in broken.graph.node if n.name == report.first_divergent.node).input


def test_html_of_a_big_graph_shows_the_rows_around_the_first_divergent_node():
    """%%to_onnx --parity shows this report in the notebook: a big graph's rows are cut to a window around the
    first divergent node, which stays in it."""
    from workbench.analysis.divergence import MAX_HTML_ROWS

    def deep(x):
        for step in range(MAX_HTML_ROWS + 40):
            x = jnp.sin(x) * (1.0 + step / 1000)
        return x

    model = wb.to_onnx(deep, [("B", 4)])
    sines = [n for n in model.graph.node if n.op_type == "Sin"]
    tampered, name = swap_op(model, "Sin", "Cos", occurrence=len(sines) - 10)
    report = wb.locate_divergence(deep, tampered)
    assert report.first_divergent is not None and report.first_divergent.node == name
    x = report.inputs[0]
    before = x
    for step in range(len(sines) - 10):
        before = np.sin(before) * np.float32(1.0 + step / 1000)
    assert report.first_divergent.max_abs_error == pytest.approx(float(np.abs(np.cos(before) - np.sin(before)).max()), rel=1e-3)
    compared = sum(n.compared for n in report.nodes)
    assert compared > MAX_HTML_ROWS
    page = report._repr_html_()
    assert page.count("<tr>") - 1 == MAX_HTML_ROWS  # the header row, then the window
    assert f"of the {compared} compared nodes, around the first divergent node" in page
    assert f">{name}<" in page and "#ffcdd2" in page  # its row, highlighted


def test_the_jax_side_is_compiled_as_one_program(count_compilations):
    """Evaluated op by op, JAX compiled each primitive at each shape (a Keras EfficientNetB0: 16 CPU seconds of the
    locator's, its conversion 1.5); the jaxpr is compiled whole once, with the same values and the same verdict."""
    import jax

    from workbench.analysis.interpret import record_values, record_values_compiled

    w = np.linspace(-1, 1, 11 * 11, dtype=np.float32).reshape(11, 11)

    def layers(x):
        for _ in range(4):
            x = jnp.tanh(x @ w) * jax.nn.sigmoid(x) + jnp.sin(x) - jnp.exp(-(x**2))
        return jnp.cumsum(x, axis=-1) / jnp.linalg.norm(x, axis=-1, keepdims=True)

    conversion = wb.convert(layers, [("B", 11)])
    broken, node_name = swap_op(conversion.model, "Sin", "Cos", occurrence=2)
    x = np.random.default_rng(0).normal(size=(7, 11)).astype(np.float32)
    report, compiles = count_compilations(lambda: wb.locate_divergence(conversion, broken, inputs=[x]))
    assert compiles <= 2, f"{compiles} XLA compilations for one locator run"
    assert report.first_divergent is not None and report.first_divergent.node == node_name, repr(report)
    assert [n.node for n in report.divergent] == [node_name]
    # the compiled run's values are the eager run's, to float32 rounding
    closed, args = conversion.traced.closed_jaxpr, [*conversion.traced.callable.params, x]
    eager, compiled = record_values(closed, args), record_values_compiled(closed, args)
    assert compiled.keys() == eager.keys() and len(eager) > 40
    for key, value in eager.items():
        np.testing.assert_allclose(compiled[key], value, rtol=1e-6, atol=1e-6, err_msg=str(key))
    np.testing.assert_allclose(compiled[((), closed.jaxpr.outvars[0])], np.asarray(layers(x)), rtol=1e-6, atol=1e-6)


def test_symbolic_scan_values_compiled_equal_the_eager_ones():
    """An equation with a symbolic nested jaxpr goes through jax.export, inside the compiled program too."""
    from tests.support.analysis_models import scanned
    from workbench.analysis.interpret import record_values, record_values_compiled

    conversion = wb.convert(scanned, [("T", 4)])
    x = np.random.default_rng(1).normal(size=(6, 4)).astype(np.float32)
    closed, args = conversion.traced.closed_jaxpr, [*conversion.traced.callable.params, x]
    eager, compiled = record_values(closed, args), record_values_compiled(closed, args)
    assert compiled.keys() == eager.keys()
    for key, value in eager.items():
        np.testing.assert_allclose(compiled[key], value, rtol=1e-6, atol=1e-6, err_msg=str(key))
    carry, total = np.zeros(4, np.float32), np.zeros(4, np.float32)
    for row in x:
        carry = np.tanh(carry + row)
        total += 2 * carry
    np.testing.assert_allclose(compiled[((), closed.jaxpr.outvars[0])], total + carry, rtol=1e-5, atol=1e-6)


def test_a_primitive_without_xla_lowering_is_evaluated_op_by_op(softsign_without_lowering):
    """A library primitive with an impl but no lowering does not compile whole: the locator runs it eagerly."""
    softsign_p = softsign_without_lowering
    conversion = wb.convert(lambda x: jnp.sin(softsign_p.bind(x) * 2.0), [("B", 5)])
    broken, node_name = swap_op(conversion.model, "Sin", "Cos")
    x = np.linspace(-3, 3, 15, dtype=np.float32).reshape(3, 5)
    clean = wb.locate_divergence(conversion, inputs=[x])
    report = wb.locate_divergence(conversion, broken, inputs=[x])
    assert clean.ok, repr(clean)
    softsign_node = next(n for n in clean.nodes if n.op_type == "Softsign")
    assert softsign_node.compared and softsign_node.max_abs_error <= 1e-6
    assert report.first_divergent is not None and report.first_divergent.node == node_name


def _bfloat16_pre_ln_block():
    """A Flax Linen pre-LN block (2 heads, width 32) in bfloat16 and an input: (fn, x)."""
    import flax.linen as nn

    class Block(nn.Module):
        @nn.compact
        def __call__(self, x):
            h = nn.SelfAttention(num_heads=2, dtype=jnp.bfloat16, deterministic=True)(nn.LayerNorm(dtype=jnp.bfloat16)(x))
            x = x + h
            return x + nn.Dense(32, dtype=jnp.bfloat16)(nn.LayerNorm(dtype=jnp.bfloat16)(x))

    block = Block()
    x = np.random.default_rng(0).standard_normal((2, 8, 32)).astype(jnp.bfloat16)
    variables = jax.tree.map(lambda a: a.astype(jnp.bfloat16), block.init(jax.random.key(0), x))
    return (lambda x: block.apply(variables, x)), x


def test_a_bfloat16_block_is_not_said_to_diverge_at_the_float32_cast_of_its_residual_sum():
    # a Flax Linen pre-LN block in bfloat16 (ux51): its second LayerNorm widens the residual sum x + h to
    # float32. That sum is within 1 bfloat16 ulp of JAX's (0.0156 at magnitudes 2-4, held to bfloat16's
    # tolerance), and its exact Cast was held to float32's (4e-4) and named the first divergent node
    fn, x = _bfloat16_pre_ln_block()
    conversion = wb.convert(fn, [x])
    report = wb.locate_divergence(conversion, inputs=[x])
    assert report.first_divergent is None, report.summary()
    casts = [n for n in report.nodes if n.op_type == "Cast" and n.compared and "LayerNorm_1" in n.node]
    assert casts and max(n.max_abs_error for n in casts) <= 2 ** -5  # 1-2 bfloat16 ulps at the sum's scale
    assert all(n.max_abs_error <= n.tolerance for n in report.nodes if n.compared)
    assert wb.parity(conversion, samples=1).ok  # the verdict the locator explains


def test_the_html_table_shows_float32_errors_and_tolerances_with_their_digits(mlp_model):
    # '%%to_onnx --parity' shows this table: with 3 fixed decimals a float32 model's errors (1e-7) and tolerances
    # (1e-4) all read 0.000 (a bfloat16 block's first divergent Cast: error 0.016 > tolerance 0.000), and the
    # error, tolerance and verdict came after the long location column, off the right edge in JupyterLab (ux51)
    broken, node_name = swap_op(mlp_model, "Sigmoid", "Tanh")
    report = wb.locate_divergence(mlp, broken)
    page = report._repr_html_()
    first = report.first_divergent
    assert f">{first.max_abs_error:.3g}<" in page and f">{first.tolerance:.3g}<" in page
    clean = [n for n in report.nodes if n.compared and n.ok and 0 < n.max_abs_error < 1e-3]
    assert clean and all(f">{n.max_abs_error:.3g}<" in page for n in clean)  # '1.19e-07', was '0.000'
    header = page[page.index("<thead>") : page.index("</thead>")]
    order = [header.index(f">{column}<") for column in ("node", "max_abs_error", "tolerance", "ok", "location")]
    assert order == sorted(order) and ">compared<" not in header and ">first_divergent<" not in header
    assert "#ffcdd2" in page  # its row, highlighted


def test_nodes_computed_in_float32_for_onnxruntime_cpu_are_compared_as_the_cast_back_rounds_them():
    # runtime="onnxruntime-cpu" makes a bfloat16 Add compute in float32 under its own name: the locator held the
    # float32 value against JAX's bfloat16 one as a dtype mismatch, 'max abs error 0 > tolerance 0.206', and named
    # it the first divergent node of a model whose parity passed (ux51, %%to_onnx --runtime onnxruntime-cpu)
    import flax.linen as nn

    class Block(nn.Module):
        @nn.compact
        def __call__(self, x):
            return x + nn.SelfAttention(num_heads=2, dtype=jnp.bfloat16, deterministic=True)(nn.LayerNorm(dtype=jnp.bfloat16)(x))

    block = Block()
    x = np.random.default_rng(0).standard_normal((2, 8, 32)).astype(jnp.bfloat16)
    variables = jax.tree.map(lambda a: a.astype(jnp.bfloat16), block.init(jax.random.key(0), x))
    conversion = wb.convert(lambda x: block.apply(variables, x), [x], runtime="onnxruntime-cpu")
    report = wb.locate_divergence(conversion, inputs=[x])
    assert report.first_divergent is None, report.summary()
    widened = [n for n in report.nodes if n.compared and n.op_type in ("Add", "MatMul", "Div")]
    assert widened and all(n.ok and n.max_abs_error <= n.tolerance for n in widened)
    assert conversion.parity(samples=1).ok


@pytest.mark.parametrize("runtime", [None, "onnxruntime-cpu"])
def test_a_bfloat16_block_with_a_slightly_wrong_weight_is_located_where_parity_fails(runtime):
    # the locator's floor for a bfloat16 network's values was its outputs' compute tolerance (5e-2 + 5e-2 of the
    # value's largest magnitude): with the Dense kernel scaled by 1.05 parity failed (0.156 > 0.05 + 0.05 |x|) and
    # every node passed, 'no node diverges'. One bfloat16 rounding (2e-2, 1e-2) names the Dense's MatMul
    fn, x = _bfloat16_pre_ln_block()
    model = wb.to_onnx(fn, [x], **({"runtime": runtime} if runtime else {}))
    dense = next(n for n in model.graph.node if n.name == "Block.Dense_0/dot_general")
    kernel = next(t for t in model.graph.initializer if t.name == dense.input[1].removesuffix(".float32"))
    array = numpy_helper.to_array(kernel)
    kernel.CopyFrom(numpy_helper.from_array((array.astype(np.float32) * 1.05).astype(array.dtype), kernel.name))
    assert not wb.parity(fn, model, [x]).ok
    report = wb.locate_divergence(fn, model, [x])
    assert report.first_divergent is not None and report.first_divergent.node == dense.name, report.summary()
