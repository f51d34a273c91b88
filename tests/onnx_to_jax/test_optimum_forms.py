"""Forms Hugging Face Optimum writes that no other exporter in the corpus did
(tests/onnx_to_jax/test_corpus_optimum.py, opt-in: CI has no optimum).

Each case is a small graph built with onnx.helper in the form Optimum writes it, run by onnxruntime; the
generated JAX code must give the same outputs, eagerly and under ``wb.jit_forward``.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tests.support.harness import assert_generated_matches_onnxruntime


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
