"""wb.parity and wb.locate_divergence on a Conversion: nothing is traced or converted again, same answers."""

from __future__ import annotations

import numpy as np
import pytest

import workbench as wb
from tests.support.analysis_models import mlp, swap_op
from workbench.analysis import subject as subject_module
from workbench.jax_to_onnx import api


@pytest.fixture(scope="module")
def conversion():
    return wb.convert(mlp, [("B", 4)])


@pytest.fixture
def no_tracing(monkeypatch):
    """Any trace or conversion from here on fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("the analysis traced or converted the function again")

    monkeypatch.setattr(subject_module, "trace", refuse)
    for name in ("convert", "convert_traced"):
        monkeypatch.setattr(api, name, refuse)


def test_parity_of_a_conversion_matches_parity_of_fn_and_model(conversion, no_tracing):
    report = wb.parity(conversion, samples=2)
    assert report.ok and report.model_source == "<Conversion>" and report.subject.name == "mlp"
    # the label stays data; the summary says what it is ("Parity PASS: <Conversion> vs mlp, 2 sample(s)" before)
    assert report.summary() == "Parity PASS: mlp in JAX vs its ONNX conversion, 2 samples, onnxruntime optimisations on"
    assert [r.output for r in report.results] == ["output", "output"]
    given = [np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)]
    one = wb.parity(conversion, inputs=given)
    assert len(one.inputs) == 1 and np.array_equal(one.inputs[0][0], given[0])
    assert one.summary().startswith("Parity PASS: mlp in JAX vs its ONNX conversion, 1 sample, ")
    np.testing.assert_allclose(one.results[0].onnx_value, np.asarray(mlp(given[0])), rtol=1e-5, atol=1e-6)


def test_locate_on_a_conversion_and_on_an_edited_model(conversion, no_tracing):
    clean = wb.locate_divergence(conversion)
    assert clean.ok and clean.seconds["convert"] < 0.01
    broken, node_name = swap_op(conversion.model, "Tanh", "Sigmoid")
    report = wb.locate_divergence(conversion, broken)
    assert report.first_divergent is not None and report.first_divergent.node == node_name
    # parity's follow-up uses the same conversion
    assert wb.parity(conversion, broken).locate().first_divergent.node == node_name


def test_specs_with_a_conversion_are_refused(conversion):
    with pytest.raises(wb.SpecError, match="with a Conversion give concrete arrays"):
        wb.parity(conversion, inputs=[(5, 4)])


def test_fn_and_model_without_inputs_trace_once(monkeypatch):
    model = wb.to_onnx(mlp, [("B", 4)])
    traces = []
    real_trace = subject_module.trace
    monkeypatch.setattr(subject_module, "trace", lambda *a, **k: traces.append(a) or real_trace(*a, **k))
    monkeypatch.setattr(api, "trace", lambda *a, **k: traces.append(a) or real_trace(*a, **k))
    report = wb.locate_divergence(mlp, model)
    assert report.ok and len(traces) == 1  # the input check's trace is lowered, not traced again


def test_a_model_is_still_required_without_a_conversion():
    with pytest.raises(wb.SpecError, match="give the ONNX model"):
        wb.parity(mlp)
