"""Handlers name the JAX parameters they take, so a parameter a JAX release adds fails loudly.

``rule(ctx, *operands, **eqn.params)`` calls a handler with every parameter of the equation as a
keyword; the walker checks them against the handler's signature first and raises a ConversionError
naming the primitive and the parameter. Only rules that forward the parameters to another rule or to
JAX (which check them in turn) may take ``**params``; they are listed here with why.
"""

from __future__ import annotations

import functools

import jax
import numpy as np
import onnx_ir as ir
import pytest
from jax.extend.core import Primitive

import workbench as wb
from tests.support.harness import run_onnx
from workbench.jax_to_onnx.lowering import LoweringContext
from workbench.jax_to_onnx.registry import REGISTRY, HandlerInfo, keyword_parameters

# rule -> what it forwards its parameters to
FORWARDING_RULES = {
    "complex_ops._dot_general": "the real dot_general handler (on the real and imaginary planes)",
    "complex_ops._conv_general_dilated": "the real conv_general_dilated handler (on the real and imaginary planes)",
    "complex_ops._per_plane": "the real handler of the primitive, once per plane",
    "complex_ops._with_pair_axis": "the real handler of the primitive, with the pair axis added",
    "complex_ops._scatter_mul": "the real scatter-mul and scatter-add handlers (on the factors' moduli and angles)",
    "equinox._lower_python_impl": "the primitive's own Python implementation (JAX binds it)",
}

_scale_p = Primitive("workbench_test_scale")
_scale_p.def_abstract_eval(lambda x, *, factor, **extra: x)
_scale_p.def_impl(lambda x, *, factor, **extra: x * factor)


def _scale_rule(ctx: LoweringContext, x: ir.Value, *, factor: float) -> ir.Value:
    return ctx.op("Mul", x, ctx.scalar(factor, ctx.avals_in[0].dtype))


@pytest.fixture
def scale_handler():
    REGISTRY.register(HandlerInfo("workbench_test_scale", _scale_rule, ("Mul",), "", (), "lax", __name__))
    yield
    REGISTRY.unregister("workbench_test_scale")


def test_named_parameters_reach_the_handler(scale_handler):
    model = wb.to_onnx(lambda x: _scale_p.bind(x, factor=2.5), [(3,)])
    x = np.arange(3, dtype=np.float32)
    np.testing.assert_allclose(run_onnx(model, [x])[0], x * 2.5)


def test_an_unknown_parameter_fails_naming_primitive_and_parameter(scale_handler):
    with pytest.raises(wb.ConversionError) as info:
        wb.to_onnx(lambda x: _scale_p.bind(x, factor=2.5, rounding="up"), [(3,)])
    message = str(info.value)
    assert "primitive 'workbench_test_scale'" in message and "rounding='up'" in message
    assert "test_handler_params._scale_rule does not take" in message and "test_handler_params.py" in message


def _rule_name(info: HandlerInfo) -> str:
    rule = info.rule.func if isinstance(info.rule, functools.partial) else info.rule
    return f"{rule.__module__.rpartition('.')[2]}.{rule.__qualname__}"


def test_only_forwarding_rules_take_any_parameter():
    taking_all = {_rule_name(info) for info in REGISTRY.all() if keyword_parameters(info.rule) is None}
    assert taking_all == set(FORWARDING_RULES), (
        "handlers taking **params (name the JAX parameters instead, as keyword-only arguments): "
        f"{sorted(taking_all - set(FORWARDING_RULES))}; no longer forwarding: {sorted(set(FORWARDING_RULES) - taking_all)}"
    )


def test_jax_parameters_of_a_real_primitive_are_named():
    """dot_general's handler names every parameter this JAX binds, so its equation converts."""
    jaxpr = jax.make_jaxpr(lambda a, b: a @ b)(np.ones((2, 3), np.float32), np.ones((3, 4), np.float32))
    [eqn] = jaxpr.eqns
    known = keyword_parameters(REGISTRY.get("dot_general").rule)
    assert known is not None and set(eqn.params) <= known
