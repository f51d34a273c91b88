"""Each analysis report on the zoo models: check says supported, parity passes, the locator finds
nothing on the clean export and names the tampered node on a broken one."""

from __future__ import annotations

import pytest

import workbench as wb
from tests.support.analysis_models import swap_op
from workbench.zoo import ZOO, nnx_gpt

# zoo models the analysis tests cannot use yet, with the reason (kept visible here, not skipped silently)
EXPECTED_FAILURES: dict[str, str] = {}


# parity and the locator run every model twice in JAX and onnxruntime: a few small, varied ones here
# (NNX, Linen, Equinox; dense, scan); the GPT has its own tamper test below, `check` covers the whole zoo
NUMERIC_MODELS = ("nnx_mlp", "linen_cnn", "eqx_mlp", "nnx_gru")


# the three CNN builders took 95-165 s each for `check` on the shared 2-core machine (tracing the
# conv stacks); they are left to the converter's own zoo tests to keep this file near two minutes
CHECK_MODELS = sorted(name for name in ZOO if not name.endswith("_cnn"))


@pytest.mark.parametrize("name", CHECK_MODELS)
def test_check_reports_every_zoo_model_supported(name):
    zoo_model = ZOO[name]()
    report = wb.check(zoo_model.fn, zoo_model.inputs)
    assert report.supported, repr(report)
    assert sum(p.count for p in report.primitives) == report.num_equations > 0
    frame = report.to_pandas()
    assert frame["supported"].all() and len(frame) == len(report.primitives)


@pytest.fixture(scope="module", params=NUMERIC_MODELS)
def zoo_case(request):
    name = request.param
    if name in EXPECTED_FAILURES:
        pytest.xfail(EXPECTED_FAILURES[name])
    zoo_model = ZOO[name]()
    return name, zoo_model, wb.to_onnx(zoo_model.fn, zoo_model.inputs)


def test_parity_passes_on_every_zoo_model(zoo_case):
    name, zoo_model, model = zoo_case
    report = wb.parity(zoo_model.fn, model, samples=2)
    assert report.ok, repr(report)
    assert len(report.results) == 2 * len(model.graph.output)


def test_locator_finds_no_divergence_on_clean_zoo_exports(zoo_case):
    name, zoo_model, model = zoo_case
    report = wb.locate_divergence(zoo_model.fn, model)
    assert report.ok, repr(report)
    assert sum(n.compared for n in report.nodes) >= 0.5 * len(report.nodes)


def test_locator_names_a_tampered_node_deep_in_the_gpt():
    zoo_model = nnx_gpt()
    model = wb.to_onnx(zoo_model.fn, zoo_model.inputs)
    softmax_nodes = [n for n in model.graph.node if n.op_type == "Softmax"]
    assert len(softmax_nodes) >= 2  # the attention softmax of each block (fused by the export passes)
    broken, node_name = swap_op(model, "Softmax", "LogSoftmax", occurrence=len(softmax_nodes) - 1)
    parity = wb.parity(zoo_model.fn, broken, samples=1)
    assert not parity.ok
    report = parity.locate()
    # The attention layout rules leave the softmax in a heads-major layout that has no JAX counterpart
    # to compare with; the locator then names the first compared node it feeds (the output projection)
    # and lists the tampered Softmax among the handler-internal nodes feeding it.
    first = report.first_divergent
    assert first.node == node_name or (node_name in report.suspects and first.node.startswith("blocks.1.")), repr(report)
    position = first.index
    assert position > len(model.graph.node) // 2
    assert all(n.ok for n in report.nodes[:position] if n.compared)
