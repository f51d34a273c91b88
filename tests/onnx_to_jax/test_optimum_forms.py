"""Forms Hugging Face Optimum writes that no other exporter in the corpus did
(tests/onnx_to_jax/test_corpus_optimum.py, opt-in: CI has no optimum).

Each case is a small graph built with onnx.helper in the form Optimum writes it, run by onnxruntime; the
generated JAX code must give the same outputs, eagerly and under ``wb.jit_forward``.
"""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import workbench as wb
from tests.support.harness import assert_generated_matches_onnxruntime, run_onnx


def _merged_if() -> onnx.ModelProto:
    """An If whose two branches give one inner name two types, as ``optimum.onnx.merge_decoders`` writes a
    merged decoder: each branch is a whole exported decoder, and torch.onnx numbered their nodes alike, so
    T5's ``/decoder/Cast_3_output_0`` is a bool mask in one branch and a float in the other."""
    zero = helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])
    then_branch = helper.make_graph(
        [helper.make_node("Cast", ["x"], ["c"], to=TensorProto.BOOL),
         helper.make_node("Where", ["c", "x", "zero"], ["t"])],
        "use_cache", [], [helper.make_tensor_value_info("t", TensorProto.FLOAT, ["n", 3])])
    else_branch = helper.make_graph(
        [helper.make_node("Cast", ["x"], ["c"], to=TensorProto.FLOAT), helper.make_node("Neg", ["c"], ["e"])],
        "no_cache", [], [helper.make_tensor_value_info("e", TensorProto.FLOAT, ["n", 3])])
    node = helper.make_node("If", ["use_cache_branch"], ["y"], then_branch=then_branch, else_branch=else_branch)
    graph = helper.make_graph(
        [node], "merged",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3]),
         helper.make_tensor_value_info("use_cache_branch", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])], initializer=[zero])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)  # valid ONNX: whole-model inference accepts it
    return model


@pytest.mark.parametrize("use_cache", [True, False])
def test_merged_decoder_branches_reuse_names_with_other_types(use_cache):
    """ONNX's inference of the If node alone (the generator's shape refinement) raised a ValidationError on
    such branches ("X typestr: T, has unsupported type: tensor(bool)"; T5's merged decoder: "B has
    inconsistent type tensor(float)") and code generation failed; the refinement now gives up there."""
    x = np.random.default_rng(0).normal(size=(2, 3)).astype(np.float32)
    assert_generated_matches_onnxruntime(_merged_if(), [x, np.array(use_cache)])


def _branches_propagating_one_name() -> onnx.ModelProto:
    """An If whose two branches both compute ``s = Shape(x)`` and a Range over one of its entries (Whisper's
    merged decoder: both decoders compute ``/model/decoder/Shape_2_output_0`` and build positions from it)."""
    def branch(name: str, op_type: str) -> onnx.GraphProto:
        nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Gather", ["s", "zero"], ["n"]),
                 helper.make_node("Range", ["zero", "n", "one"], ["r"]),
                 helper.make_node("Cast", ["r"], ["f"], to=TensorProto.FLOAT), helper.make_node(op_type, ["f"], [name])]
        # every value's type stated, as Optimum's files do: the reader then infers with data propagation at once
        stated = [helper.make_tensor_value_info("s", TensorProto.INT64, [2]),
                  helper.make_tensor_value_info("n", TensorProto.INT64, []),
                  helper.make_tensor_value_info("r", TensorProto.INT64, ["m"]),
                  helper.make_tensor_value_info("f", TensorProto.FLOAT, ["m"])]
        return helper.make_graph(nodes, name, [], [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["m"])],
                                 value_info=stated)

    node = helper.make_node("If", ["use_cache_branch"], ["y"], then_branch=branch("t", "Neg"),
                            else_branch=branch("e", "Sqrt"))
    graph = helper.make_graph(
        [node], "merged",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3]),
         helper.make_tensor_value_info("use_cache_branch", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["m"])],
        initializer=[helper.make_tensor("zero", TensorProto.INT64, [], [0]),
                     helper.make_tensor("one", TensorProto.INT64, [], [1])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.mark.parametrize("use_cache", [True, False])
def test_merged_decoder_branches_propagate_one_name(use_cache):
    """onnx's shape inference with data propagation refused such a model ("Data for input 0 already exists":
    one table of propagated values for both branches): the reader warned that the file's stated shapes
    contradict the graph and dropped them, and with Whisper's merged decoder reported the model as rejected.
    Inference without data propagation accepts it, and the reader now falls back to that, silently."""
    model = _branches_propagating_one_name()
    with pytest.raises(onnx.shape_inference.InferenceError, match="already exists"):
        onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    x = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", wb.WorkbenchWarning)  # the stated shapes are right: no warning
        assert_generated_matches_onnxruntime(model, [x, np.array(use_cache)])


def _branches_of_other_lengths() -> onnx.ModelProto:
    """An If on a bool input whose branches give outputs of different lengths under one declared shape, as a
    merged decoder's no-cache branch (new tokens) and cache branch (past + new) do."""
    then_branch = helper.make_graph([helper.make_node("Concat", ["past", "x"], ["t"], axis=0)], "use_cache", [],
                                    [helper.make_tensor_value_info("t", TensorProto.FLOAT, ["total", 3])])
    else_branch = helper.make_graph([helper.make_node("Identity", ["x"], ["e"])], "no_cache", [],
                                    [helper.make_tensor_value_info("e", TensorProto.FLOAT, ["total", 3])])
    node = helper.make_node("If", ["use_cache_branch"], ["present"], then_branch=then_branch,
                            else_branch=else_branch)
    graph = helper.make_graph(
        [node], "merged",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3]),
         helper.make_tensor_value_info("past", TensorProto.FLOAT, ["p", 3]),
         helper.make_tensor_value_info("use_cache_branch", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("present", TensorProto.FLOAT, ["total", 3])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_merged_decoder_condition_static_under_jit():
    """A traced condition cannot choose between outputs of different shapes: wb.jit_forward's call fails with
    an error that says to pass the condition as static; with ``static_argnums`` each branch matches onnxruntime."""
    model = _branches_of_other_lengths()
    rng = np.random.default_rng(0)
    x, past = rng.normal(size=(2, 3)).astype(np.float32), rng.normal(size=(4, 3)).astype(np.float32)
    forward, params = wb.to_jax(model)
    with pytest.raises(wb.WorkbenchError, match="static_argnums"):
        wb.jit_forward(forward, params)(x, past, np.array(True))
    run = wb.jit_forward(forward, params, static_argnums=(2,))
    for use_cache in (True, False):
        want = run_onnx(model, [x, past, np.array(use_cache)])[0]
        np.testing.assert_array_equal(np.asarray(run(x, past, use_cache)), want)
