"""Forms jax2onnx writes that the reader got wrong (tests/benchmarks/jax2onnx_catalogue.py ``--tools to_jax``,
tests/onnx_to_jax/test_corpus_jax2onnx.py).

Each case is a small graph built with onnx.helper in the form jax2onnx 0.17.1 writes it (CI has no jax2onnx),
run by onnxruntime; the generated JAX code must give the same outputs, eagerly and under ``wb.jit_forward``.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import workbench as wb
from tests.support.harness import assert_generated_matches_onnxruntime, run_onnx
from workbench.onnx_to_jax.api import generate_module


def _model(nodes, inputs, outputs, *, opset: int = 23, inits=()) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)


def _check(model: onnx.ModelProto, inputs: list[np.ndarray]) -> None:
    assert_generated_matches_onnxruntime(model, inputs)


def _dropout_with_flag(mask: bool) -> onnx.ModelProto:
    """``eqx.nn.Dropout`` / ``nnx.Dropout`` exported with its ``inference`` (``deterministic``) flag as a
    graph input (jax2onnx's ``input_params``): ``Dropout(x, ratio, Not(inference))``, training mode known
    only at run time."""
    nodes = [helper.make_node("Not", ["inference"], ["training"]),
             helper.make_node("Dropout", ["x", "ratio", "training"], ["y", "mask"] if mask else ["y"])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 5])]
    if mask:
        outputs.append(helper.make_tensor_value_info("mask", TensorProto.BOOL, [3, 5]))
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 5]),
                          helper.make_tensor_value_info("inference", TensorProto.BOOL, [])], outputs,
                  inits=[helper.make_tensor("ratio", TensorProto.FLOAT, [], [0.5])])


@pytest.mark.parametrize("mask", [False, True])
def test_dropout_training_mode_from_an_input(mask):
    """Dropout whose training_mode is a graph input: the reader refused it as random training-mode dropout;
    in inference mode (the flag fed True) it is the identity, as onnxruntime computes."""
    x = np.random.default_rng(0).normal(size=(3, 5)).astype(np.float32)
    _check(_dropout_with_flag(mask), [x, np.array(True)])


def test_dropout_training_mode_at_run_time_is_refused_at_run_time():
    """Fed training mode (random in ONNX), the generated code raises, eagerly and under jax.jit, naming the
    node and the input to change, instead of returning the inference values."""
    forward, params = wb.to_jax(_dropout_with_flag(False))
    x = np.ones((3, 5), np.float32)
    with pytest.raises(wb.WorkbenchError, match="ran with training_mode=True"):  # ModelRunError naming the node
        forward(params, x, np.array(False))
    with pytest.raises(Exception, match="ran with training_mode=True"):  # jax.jit wraps it in its runtime error
        np.asarray(wb.jit_forward(forward, params)(x, np.array(False)))


def _dropout_with_ratio_input() -> onnx.ModelProto:
    """Dropout whose ratio and training_mode are both graph inputs (the node suite's training cases)."""
    node = helper.make_node("Dropout", ["x", "ratio", "training"], ["y", "mask"], seed=0)
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 5]),
              helper.make_tensor_value_info("ratio", TensorProto.FLOAT, []),
              helper.make_tensor_value_info("training", TensorProto.BOOL, [])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 5]),
               helper.make_tensor_value_info("mask", TensorProto.BOOL, [3, 5])]
    return _model([node], inputs, outputs)


def test_training_dropout_with_a_zero_ratio_fed_at_run_time_is_the_identity():
    """Training mode with ratio 0 keeps every element, scaled by 1: not random, so computed (as onnxruntime
    does, eagerly and under jax.jit); a non-zero ratio fed with training mode is still refused."""
    x = np.random.default_rng(0).normal(size=(3, 5)).astype(np.float32)
    _check(_dropout_with_ratio_input(), [x, np.array(0.0, np.float32), np.array(True)])
    forward, params = wb.to_jax(_dropout_with_ratio_input())
    with pytest.raises(wb.WorkbenchError, match="ran with training_mode=True and ratio 0.25"):
        forward(params, x, np.array(0.25, np.float32), np.array(True))


def test_while_loop_with_int64_maximum_trip_count_jits():
    """``lax.while_loop`` (jnp.gcd) as jax2onnx writes it: a Loop whose trip count is int64's maximum, ended by
    the condition the body computes. Under jax.jit with x64 off the limit became int32's -1 and the loop never
    ran (gcd(12, 8) gave 12, eagerly 4)."""
    body = helper.make_graph(
        [helper.make_node("Equal", ["b_in", "zero"], ["b_zero"]),
         helper.make_node("Not", ["b_zero"], ["b_nonzero"]),
         helper.make_node("Where", ["b_nonzero", "b_in", "a_in"], ["a_next"]),
         helper.make_node("Div", ["a_in", "b_in"], ["quotient"]),
         helper.make_node("Mul", ["quotient", "b_in"], ["product"]),
         helper.make_node("Sub", ["a_in", "product"], ["remainder"]),
         helper.make_node("Where", ["b_nonzero", "remainder", "zero"], ["b_next"]),
         helper.make_node("Equal", ["b_next", "zero"], ["done"]),
         helper.make_node("Not", ["done"], ["cond_out"])],
        "while_body",
        [helper.make_tensor_value_info("iteration", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("a_in", TensorProto.INT32, []),
         helper.make_tensor_value_info("b_in", TensorProto.INT32, [])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("a_next", TensorProto.INT32, []),
         helper.make_tensor_value_info("b_next", TensorProto.INT32, [])],
        initializer=[helper.make_tensor("zero", TensorProto.INT32, [], [0])])
    nodes = [helper.make_node("Abs", ["a"], ["a_abs"]), helper.make_node("Abs", ["b"], ["b_abs"]),
             helper.make_node("Equal", ["b_abs", "zero"], ["b_is_zero"]), helper.make_node("Not", ["b_is_zero"], ["go"]),
             helper.make_node("Loop", ["trip_count", "go", "a_abs", "b_abs"], ["gcd", "rest"], body=body)]
    model = _model(nodes, [helper.make_tensor_value_info("a", TensorProto.INT32, []),
                           helper.make_tensor_value_info("b", TensorProto.INT32, [])],
                   [helper.make_tensor_value_info("gcd", TensorProto.INT32, [])],
                   inits=[helper.make_tensor("zero", TensorProto.INT32, [], [0]),
                          helper.make_tensor("trip_count", TensorProto.INT64, [], [np.iinfo(np.int64).max])])
    for a, b in [(12, 8), (-35, 21), (7, 0), (0, 9)]:
        _check(model, [np.array(a, np.int32), np.array(b, np.int32)])


def _with_local_function(function_domain_version: int, default_version: int = 23) -> onnx.ModelProto:
    """An NNX/Equinox module as jax2onnx writes it: a model-local function in a domain of its own
    (``custom.MultiHeadAttention.1``), which the model imports at version 1 and the function itself imports
    at ``function_domain_version`` (jax2onnx: 23) without any node of it using that domain."""
    domain = "custom.Attention.1"
    function = helper.make_function(
        domain, "Attention", ["f_in"], ["f_out"],
        [helper.make_node("MatMul", ["f_in", "f_in_t"], ["scores"]),
         helper.make_node("Transpose", ["f_in"], ["f_in_t"], perm=[0, 2, 1]),
         helper.make_node("Softmax", ["scores"], ["weights"], axis=-1),
         helper.make_node("MatMul", ["weights", "f_in"], ["f_out"])],
        opset_imports=[helper.make_opsetid("", default_version), helper.make_opsetid(domain, function_domain_version)])
    function.node.sort(key=lambda node: node.op_type != "Transpose")  # in topological order
    graph = helper.make_graph([helper.make_node("Attention", ["x"], ["y"], domain=domain)], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4, 8])])
    return helper.make_model(graph, functions=[function], ir_version=10,
                             opset_imports=[helper.make_opsetid("", 23), helper.make_opsetid(domain, 1)])


def test_local_function_importing_its_own_domain_at_another_version():
    """onnx's inliner left the call in place, silently, because the function's unused import of its own domain
    (23) differs from the model's (1); the reader reported 'no JAX emitter' for every Equinox DINO block."""
    _check(_with_local_function(23), [np.random.default_rng(0).normal(size=(2, 4, 8)).astype(np.float32)])


def test_local_function_the_inliner_leaves_is_named():
    """A function whose nodes use ONNX ops at another opset than the model's is left in place by onnx's inliner
    (the reader's checker refuses such a file first, naming the op): the inlining step says which function
    and which versions, never passes the call on as an op without an emitter."""
    from workbench.onnx_to_jax.local_functions import inline_functions

    with pytest.raises(wb.WorkbenchError, match=r"custom.Attention.1::Attention imports ai.onnx 17 \(the model: 23\)"):
        inline_functions(_with_local_function(1, default_version=17), "model.onnx")
    with pytest.raises(wb.WorkbenchError, match="Opset import for domain  in function op Transpose"):
        wb.to_jax(_with_local_function(1, default_version=17))


def test_nested_local_functions_importing_each_others_domains_at_another_version():
    """An Equinox DINO block as jax2onnx writes it: a function (``Block``) calling other model-local functions
    (``Scale``), importing their domains at 23 where the model imports them at 1. Model-local functions have
    no versions; the inliner left every such call in place."""
    scale = helper.make_function(
        "custom.Scale.1", "Scale", ["s_in"], ["s_out"], [helper.make_node("Mul", ["s_in", "s_gamma"], ["s_out"]),
                                                         helper.make_node("Constant", [], ["s_gamma"], value_float=0.5)],
        opset_imports=[helper.make_opsetid("", 23), helper.make_opsetid("custom.Scale.1", 23)])
    scale.node.sort(key=lambda node: node.op_type != "Constant")
    block = helper.make_function(
        "custom.Block.1", "Block", ["b_in"], ["b_out"],
        [helper.make_node("Tanh", ["b_in"], ["b_tanh"]),
         helper.make_node("Scale", ["b_tanh"], ["b_scaled"], domain="custom.Scale.1"),
         helper.make_node("Add", ["b_in", "b_scaled"], ["b_out"])],
        opset_imports=[helper.make_opsetid("", 23), helper.make_opsetid("custom.Block.1", 23),
                       helper.make_opsetid("custom.Scale.1", 23)])
    graph = helper.make_graph([helper.make_node("Block", ["x"], ["h"], domain="custom.Block.1"),
                               helper.make_node("Block", ["h"], ["y"], domain="custom.Block.1")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 4])])
    model = helper.make_model(graph, functions=[scale, block], ir_version=10,
                              opset_imports=[helper.make_opsetid("", 23), helper.make_opsetid("custom.Block.1", 1),
                                             helper.make_opsetid("custom.Scale.1", 1)])
    _check(model, [np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)])


@pytest.mark.parametrize("axis", [0, 1, None])
def test_compress_with_a_constant_condition_jits(axis):
    """``jnp.compress(mask, x, axis)`` with a constant mask: Compress whose condition is an initializer (shorter
    than the axis for axis 1, as ONNX allows). Its output shape is known at generation time, so the module jits;
    it ran eagerly only, between jitted parts, as if the condition were computed."""
    condition = np.array([True, False, True] if axis != 1 else [False, True, True])
    node = helper.make_node("Compress", ["x", "condition"], ["y"], **({} if axis is None else {"axis": axis}))
    count = int(condition.sum())
    out_shape = {0: [count, 4], 1: [3, count], None: [count]}[axis]
    model = _model([node], [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
                   inits=[onnx.numpy_helper.from_array(condition, "condition")])
    assert generate_module(model).value_dependent_nodes == ()
    _check(model, [np.arange(12, dtype=np.float32).reshape(3, 4)])


def test_compress_with_a_condition_from_an_input_runs_between_jitted_parts():
    """A condition fed at run time still decides the output's shape: the module names the node as
    value-dependent and its eager call matches onnxruntime."""
    node = helper.make_node("Compress", ["x", "condition"], ["y"], axis=0)
    model = _model([node], [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4]),
                            helper.make_tensor_value_info("condition", TensorProto.BOOL, [3])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["K", 4])])
    assert generate_module(model).value_dependent_nodes != ()
    forward, params = wb.to_jax(model)
    x, condition = np.arange(12, dtype=np.float32).reshape(3, 4), np.array([False, True, True])
    expected = run_onnx(model, [x, condition])[0]
    np.testing.assert_array_equal(np.asarray(forward(params, x, condition)), expected)
