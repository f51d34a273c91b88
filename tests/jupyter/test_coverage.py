"""``wb.coverage()``: the catalogue is generated from the registries, runs for real, and the widget drives it.

The widget is driven through its traitlets (``value``, ``index``) and ``click()``, as a user would.
Rows are run for real: a conversion compared against onnxruntime, or node cases through the
generated JAX code; a handler registered here with a wrong lowering must come out as ``fail``.
"""

from __future__ import annotations

from collections.abc import Iterator

import jax
import jax.numpy as jnp
import pytest
from jax import lax
from jax.extend.core import Primitive

import workbench as wb
from workbench.analysis import coverage as cov
from workbench.onnx_to_jax.registry import registered
from workbench.jax_to_onnx.registry import REGISTRY, Testcase, handler
from workbench.jupyter.coverage import CoverageExplorer
from workbench.jupyter.widget_bundle import WIDGET_MIMETYPE
from workbench.zoo import ZOO

pytestmark = pytest.mark.usefixtures("no_server_extension")


@pytest.fixture(scope="module", autouse=True)
def own_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """This module's worker processes, with their JAX compilation cache in a temporary folder."""
    import os

    saved = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if cov._workers is not None:
        cov._workers.close()
        cov._workers = None
    if saved is None:
        del os.environ["XDG_CACHE_HOME"]
    else:
        os.environ["XDG_CACHE_HOME"] = saved


@pytest.fixture(autouse=True)
def fresh_outcomes() -> Iterator[None]:
    cov.forget_outcomes()
    yield
    cov.forget_outcomes()


def test_catalogue_is_generated_from_every_registry() -> None:
    entries = cov.catalogue()
    handler_rows = [e for e in entries if e.direction == "JAX → ONNX" and not e.key.startswith("zoo:")]
    assert len(handler_rows) == sum(len(info.testcases) for info in REGISTRY.all())
    assert {e.subject for e in entries if e.key.startswith("zoo:")} == set(ZOO)
    emitter_ops = {e.subject for e in entries if e.direction == "ONNX → JAX"}
    assert emitter_ops == {op if not domain else f"{domain}::{op}" for domain, op in registered()}
    assert len({e.key for e in entries}) == len(entries), "row keys must be unique"
    assert {e.area for e in entries} == set(cov.AREAS)  # every area has rows


def test_api_area_reads_which_api_a_testcase_calls() -> None:
    assert cov.api_area(lambda x: lax.sin(x)) == "lax"
    assert cov.api_area(lambda x: jnp.sin(x)) == "jnp"
    assert cov.api_area(lambda x: jax.nn.gelu(jnp.tanh(x))) == "nn"

    def helper(x):
        return jnp.cumsum(x)

    assert cov.api_area(lambda x: helper(x)) == "jnp"  # followed into the helper it calls


def test_frame_lists_every_row_as_not_run_until_run() -> None:
    frame = wb.coverage(as_frame=True)
    assert list(frame.columns) == list(cov.COLUMNS)
    assert len(frame) == len(cov.catalogue())
    assert set(frame["status"]) == {"not run"}


def test_explorer_filters_runs_and_shows_statuses() -> None:
    explorer = CoverageExplorer()
    total = len(explorer.shown)
    explorer.search.value = "cumsum"
    assert 0 < len(explorer.shown) < total
    assert all("cumsum" in (e.subject + e.testcase + " ".join(e.onnx_ops)).lower() for e in explorer.shown)
    explorer.area.value = "jnp"
    assert explorer.shown and all(e.area == "jnp" for e in explorer.shown)
    assert len(explorer.rows.options) == len(explorer.shown)

    explorer.run_button.click()
    [bar] = explorer.progress.children  # tqdm's notebook bar, inside the explorer
    assert bar.children[1].value == bar.children[1].max == len(explorer.shown)
    frame = explorer.frame()
    assert set(frame["status"]) == {"pass"}, frame[["testcase", "detail"]].to_string()
    # each row's verdict names its testcase ('Parity PASS: <lambda> in JAX vs ...' before, ux51)
    assert all(d.startswith(f"Parity PASS: {t} in JAX vs ") for t, d in zip(frame["testcase"], frame["detail"], strict=True))
    assert frame["max_abs_error"].notna().all() and (frame["seconds"] > 0).all()
    assert all(label.startswith("✔") for label, _ in explorer.rows.options)

    explorer.search.value = ""
    explorer.area.value = "(all)"
    explorer.status.value = "pass"
    assert {e.key for e in explorer.shown} == {e.key for e in cov.catalogue() if "cumsum" in e.key and e.area == "jnp"}


def test_a_jax_function_name_finds_the_rows_of_the_primitives_it_binds() -> None:
    """Searching 'jnp.cumsum', 'jax.nn.gelu' or 'jnp.matmul' (what a user types) showed 0 rows: only bare primitive,
    testcase and ONNX op names matched. (In JupyterLab 'jnp.matmul' then listed cholesky rows, which mention
    MatMul, before dot_general's: the function's own primitives come first.)"""
    from workbench.analysis.coverage_search import search_terms

    explorer = CoverageExplorer()
    rows = cov.catalogue()

    def primitive_rows(name: str) -> set[str]:
        return {e.key for e in rows if e.direction == "JAX → ONNX" and e.subject == name}

    for typed, primitives, bare in [("jnp.cumsum", {"cumsum"}, "cumsum"), ("jax.numpy.matmul", {"dot_general"}, "matmul"),
                                    ("jax.nn.gelu", {"tanh", "integer_pow"}, None), ("lax.top_k", {"top_k"}, "top_k")]:  # fmt: skip
        explorer.search.value = typed
        shown = {e.key for e in explorer.shown}
        for primitive in primitives:
            assert primitive_rows(primitive) and primitive_rows(primitive) <= shown, (typed, primitive)
        if bare is not None:  # the rows naming the function itself too (MatMul's ONNX → JAX emitter for matmul)
            assert {e.key for e in rows if bare in (e.subject + " " + " ".join(e.onnx_ops)).lower()} <= shown
        bound = set(search_terms(typed).primitives)
        first = explorer.shown[: len(set().union(*map(primitive_rows, bound)))]  # all its primitives' rows first
        assert {e.subject for e in first} <= bound and {e.direction for e in first} == {"JAX → ONNX"}, typed
        full = typed.replace("jnp.", "jax.numpy.").replace("lax.", "jax.lax.")
        assert f"; {full} binds " in explorer.summary() and f"; {full} binds " in explorer.counts.value
    explorer.search.value = "jnp.einsum("  # needs its subscripts: searched by its bare name
    assert {e.key for e in explorer.shown} == {e.key for e in cov.filter_entries(rows, text="einsum")}
    assert "jax.numpy.einsum: not traced with plain array arguments; searched by its name" in explorer.summary()
    explorer.search.value = "os.system"  # only names under jax are resolved
    assert explorer.shown == [] and "binds" not in explorer.summary()


def test_a_search_never_calls_jax_functions_outside_the_array_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    """The search traces the function a text names: only jax.numpy/lax/nn/scipy/random/image array functions,
    never jax's other public callables or the file functions jnp re-exports (a search box must not run them)."""
    from workbench.analysis.coverage_search import search_terms

    called: list[str] = []
    monkeypatch.setattr(jax, "clear_caches", lambda *a, **k: called.append("clear_caches"))
    monkeypatch.setattr(jnp, "save", lambda *a, **k: called.append("save"))
    for text in ("jax.clear_caches", "jnp.save", "jax.numpy.save"):
        search_terms.cache_clear()
        terms = search_terms(text)
        assert terms.function is None and terms.primitives == (), text
    assert called == []
    assert search_terms("jax.random.normal").function == "jax.random.normal"


def test_a_wrong_handler_is_reported_as_failing() -> None:
    doubled_p = Primitive("workbench_test_doubled")
    doubled_p.def_impl(lambda x: x * 2)
    doubled_p.def_abstract_eval(lambda x: x)

    def use(x):
        return doubled_p.bind(x) + 1.0

    @handler("workbench_test_doubled", onnx_ops=("Identity",), testcases=[Testcase("doubled", use, [(3,)])])
    def _wrong(ctx, x):  # forgets the doubling
        return ctx.op("Identity", x)

    try:
        explorer = CoverageExplorer()
        explorer.search.value = "workbench_test_doubled"
        [entry] = explorer.shown
        explorer.run_shown()
        outcome = cov.last_outcome(entry.key)
        assert outcome is not None and outcome.status == "fail" and outcome.max_abs_error > 0.1
        explorer.status.value = "fail"
        assert [e.key for e in explorer.shown] == [entry.key]
    finally:
        REGISTRY.unregister("workbench_test_doubled")


def test_selecting_a_row_shows_its_graph_in_the_viewer() -> None:
    explorer = CoverageExplorer()
    explorer.search.value = "cumsum"
    explorer.select(0)
    entry = explorer.shown[0]
    assert entry.subject in explorer.detail.value and "not run yet" in explorer.detail.value
    handle = explorer.selected_graph
    assert handle is not None and any(node.op_type == "CumSum" for node in handle.model.graph.node)
    [shown] = explorer.output.outputs
    assert "CumSum" in shown["data"]["text/html"]  # the viewer's static node table travels with the iframe


def test_zoo_and_onnx_to_jax_rows_run_for_real_and_report_as_they_finish() -> None:
    from workbench.onnx_to_jax import node_suite

    entries = {e.key: e for e in cov.catalogue()}
    zoo_row, relu_row, dropout_row = entries["zoo:eqx_mlp"], entries["onnx:::Relu"], entries["onnx:::Dropout"]
    assert relu_row.node_suite_op == "Relu" and zoo_row.node_suite_op is None
    built_here = node_suite.collect_cases.cache_info().misses
    reported: list[str] = []
    outcomes = cov.run_entries(
        [relu_row, zoo_row, dropout_row], on_result=lambda entry, _: reported.append(entry.key), workers=True
    )  # on 2 cores workers are off by default (they lose there); here they run for the test
    assert sorted(reported) == sorted([relu_row.key, zoo_row.key, dropout_row.key])
    assert [o.status for o in outcomes] == [cov.last_outcome(k).status for k in (relu_row.key, zoo_row.key, dropout_row.key)]
    zoo_outcome, relu_outcome = cov.last_outcome(zoo_row.key), cov.last_outcome(relu_row.key)
    assert zoo_outcome.status == "pass", zoo_outcome.detail
    assert relu_outcome.status == "pass" and "node cases pass" in relu_outcome.detail, relu_outcome.detail
    # Dropout's training-mode cases are random: listed as expected failures, so a known failure, not a fail
    dropout = cov.last_outcome(dropout_row.key)
    assert dropout.status == cov.KNOWN_FAILURE, dropout.detail
    assert {name for name, _ in dropout.known_failures} >= {"test_training_dropout", "test_training_dropout_mask"}
    assert "Dropout in training mode is random" in dropout.detail and "regression" not in dropout.detail
    # the suite was built in the worker process, not here
    assert node_suite.collect_cases.cache_info().misses == built_here
    model = dropout_row.graph()  # the first case's model, from the worker
    assert [node.op_type for node in model.graph.node] == ["Dropout"]


def test_warm_row_workers_take_rows_and_keep_compiled_programs() -> None:
    import os

    pool = cov.coverage_workers()
    pool.start_row_workers(1)  # a long run on 4+ cores starts them; this test hands one a short run once warm
    assert pool.rows and pool.rows[0].warm.result(timeout=300) == len(cov.catalogue())
    rows = [e for e in cov.catalogue() if e.subject == "cumsum" and e.area == "jnp"]
    assert len(rows) >= 2 and all(e.importable for e in rows)
    outcomes = cov.run_entries(rows, workers=True)
    assert [o.status for o in outcomes] == ["pass"] * len(rows)
    worker_row = rows[0]  # workers take rows from the front, the kernel from the back
    assert pool.rows[0].busy is not None and pool.rows[0].busy.done()
    model = worker_row.graph()  # the model the worker exported came back with its outcome
    assert any(node.op_type == "CumSum" for node in model.graph.node)
    cache = os.path.join(os.environ["XDG_CACHE_HOME"], "workbench", "jax")
    assert os.listdir(cache), "the worker's JAX programs are kept for the next session"


def test_listed_failures_are_known_failures_and_unlisted_ones_regressions() -> None:
    from workbench.onnx_to_jax.expected_failures import EXPECTED_FAILURES
    from workbench.onnx_to_jax.node_suite import CaseResult

    listed = "test_training_dropout"
    ok = CaseResult("test_dropout_default", ("Dropout",), True, "")
    known = CaseResult(listed, ("Dropout",), False, "AssertionError: values differ")
    new = CaseResult("test_dropout_default_ratio", ("Dropout",), False, "AssertionError: shape")
    assert cov.emitter_outcome("Dropout", [ok], 1.0).status == "pass"
    outcome = cov.emitter_outcome("Dropout", [ok, known], 1.0)
    assert outcome.status == cov.KNOWN_FAILURE and outcome.known_failures == ((listed, EXPECTED_FAILURES[listed]),)
    assert outcome.detail.startswith("1/2 node cases pass; 1 known failure(s), listed with their reason: test_training_dropout (")
    outcome = cov.emitter_outcome("Dropout", [ok, known, new], 1.0)
    assert outcome.status == "fail" and "not listed as expected (a regression): test_dropout_default_ratio" in outcome.detail


def test_explorer_counts_known_failures_apart() -> None:
    explorer = CoverageExplorer()
    explorer.search.value = "Dropout"
    explorer.area.value = "ONNX → JAX"
    [entry] = explorer.shown
    explorer.use_workers = True
    explorer.run_shown()  # for real, in the node-suite worker
    assert explorer.summary() == f"1 of {len(explorer.entries)} rows shown (1 known failure)"
    assert explorer.rows.options[0][0].startswith("◐")
    explorer.status.value = cov.KNOWN_FAILURE
    assert [e.key for e in explorer.shown] == [entry.key]
    explorer.status.value = "fail"
    assert explorer.shown == []
    explorer.status.value = cov.KNOWN_FAILURE
    explorer.select(0)
    assert "known failure(s), listed with their reason" in explorer.detail.value


def test_explorer_display_bundle_has_a_static_fallback() -> None:
    explorer = CoverageExplorer()
    bundle = explorer._repr_mimebundle_()
    assert WIDGET_MIMETYPE in bundle
    assert "rows shown" in bundle["text/plain"] and "ONNX → JAX" in bundle["text/plain"]
    assert "<table" in bundle["text/html"]


def test_node_cases_are_found_by_domain_and_op(monkeypatch: pytest.MonkeyPatch) -> None:
    """com.microsoft::Attention is not ONNX's Attention: a row of one never runs the other's node cases."""
    import types

    from onnx import helper

    from workbench.onnx_to_jax import node_suite

    def case(name: str, op: str, domain: str) -> types.SimpleNamespace:
        node = helper.make_node(op, ["x"], ["y"], domain=domain)
        return types.SimpleNamespace(name=name, model=helper.make_model(helper.make_graph([node], "g", [], [])))

    fake = (case("test_attention", "Attention", ""), case("test_attention_ai_onnx", "Attention", "ai.onnx"),
            case("test_ai_onnx_ml_binarizer", "Binarizer", "ai.onnx.ml"), case("ms", "Attention", "com.microsoft"))
    monkeypatch.setattr(node_suite, "collect_cases", lambda: fake)
    node_suite.cases_by_op.cache_clear()
    try:
        grouped = node_suite.cases_by_op()
        assert [c.name for c in grouped[("", "Attention")]] == ["test_attention", "test_attention_ai_onnx"]
        assert [c.name for c in grouped[("ai.onnx.ml", "Binarizer")]] == ["test_ai_onnx_ml_binarizer"]
        assert ("", "Binarizer") not in grouped
        results, _ = cov._run_node_cases("Binarizer", "")
        assert results == [] and cov.emitter_outcome("Binarizer", results, 0.0).status == cov.NO_CASE
    finally:
        node_suite.cases_by_op.cache_clear()


def test_com_microsoft_rows_run_their_own_cases_against_onnxruntime() -> None:
    """No com.microsoft row reports ONNX-domain cases; every one with a built-in case passes against
    onnxruntime (run here, as the explorer runs them), and its graph is its first case's model."""
    from workbench.onnx_to_jax import contrib_cases

    rows = [e for e in cov.catalogue() if e.subject.startswith("com.microsoft::")]
    assert len(rows) == sum(domain == "com.microsoft" for domain, _ in registered())
    assert all(e.node_suite_op is None and e.testcase != "ONNX node suite" for e in rows)
    with_cases = [e for e in rows if contrib_cases.has_cases("com.microsoft", e.onnx_ops[0])]
    assert len(with_cases) == len(rows)  # tests/onnx_to_jax/test_contrib_cases.py: every one has a case
    outcomes = cov.run_entries(with_cases, workers=False)
    failing = {e.subject: o.detail for e, o in zip(with_cases, outcomes) if o.status != "pass"}
    assert not failing, failing
    attention = next(e for e in with_cases if e.subject == "com.microsoft::Attention")
    n = len(contrib_cases.cases("com.microsoft", "Attention"))
    assert cov.last_outcome(attention.key).detail == f"{n}/{n} cases match onnxruntime"
    assert [(node.domain, node.op_type) for node in attention.graph().graph.node] == [("com.microsoft", "Attention")]


def test_an_emitter_without_any_case_is_no_case_not_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    """With this onnx every emitter has a node case or a built-in one; an onnx without GlobalAveragePool's
    node cases (simulated) makes its row "no case", saying so, not "fail"."""
    from workbench.onnx_to_jax import node_suite

    outcome = cov.no_case_outcome("ai.onnx.ml", "Imputer")
    assert outcome.status == cov.NO_CASE and "test_domains.py" in outcome.detail
    assert cov.NO_CASE in cov.STATUSES and cov.filter_entries([], statuses=[cov.NO_CASE]) == []
    explorer = CoverageExplorer()
    explorer.search.value = "GlobalAveragePool"
    explorer.area.value = "ONNX → JAX"
    [entry] = [e for e in explorer.shown if e.subject == "GlobalAveragePool"]
    explorer.use_workers = False
    monkeypatch.setattr(node_suite, "cases_by_op", lambda: {})
    explorer.run_shown()
    assert cov.status_of(entry.key) == cov.NO_CASE, cov.last_outcome(entry.key)
    assert "no node cases for GlobalAveragePool" in cov.last_outcome(entry.key).detail


def test_a_jax_function_search_says_what_its_export_is() -> None:
    """'jax.nn.gelu' listed the rows of integer_pow, mul, add and tanh and nothing said the export fuses them into
    one Gelu node (ux51): the counts line now gives the export's nodes, counted on a real conversion."""
    from collections import Counter

    import numpy as np

    explorer = CoverageExplorer()
    x = jax.ShapeDtypeStruct((3, 3), np.float32)
    for typed, function, arguments in [("jax.nn.gelu", jax.nn.gelu, [x]), ("jnp.matmul", jnp.matmul, [x, x]),
                                       ("jax.nn.dot_product_attention", jax.nn.dot_product_attention, [x, x, x])]:  # fmt: skip
        explorer.search.value = typed
        ops = Counter(node.op_type for node in wb.to_onnx(function, arguments).graph.node)
        nodes = sum(ops.values())
        said = explorer.summary().rsplit("; ", 1)[1]
        if nodes == 1:
            assert said == f"exports as {next(iter(ops))}", said
        else:
            assert said.startswith(f"exports as {nodes} nodes: "), said
            for op, number in ops.most_common(6):
                assert (op if number == 1 else f"{op} ×{number}") in said, (op, said)
    explorer.search.value = "jax.nn.gelu"
    assert explorer.summary().endswith("jax.nn.gelu binds integer_pow, mul, add, tanh; exports as Gelu")


def test_a_layer_class_search_with_no_rows_says_what_rows_are() -> None:
    """'nnx.Conv', 'eqx.nn.Linear', 'flax.linen.LayerNorm' (what a Flax/Equinox user types) showed
    '0 of 1037 rows shown (none)' and nothing else (ux51)."""
    explorer = CoverageExplorer()
    for typed in ("nnx.Conv", "eqx.nn.Linear", "flax.linen.LayerNorm"):
        explorer.search.value = typed
        assert explorer.shown == [] and "not layer classes: convert a small instance" in explorer.summary(), typed
    explorer.search.value = "nothing_matches_this"  # plain text with no rows: no lecture
    assert explorer.summary().endswith("rows shown (none)")
    explorer.search.value = "jnp.cumsum"  # a function found: its own line
    assert "not layer classes" not in explorer.summary()
