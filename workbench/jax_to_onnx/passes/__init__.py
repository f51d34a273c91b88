"""Graph clean-up and fusion after lowering, then shape annotation: the pass pipeline.

- unused nodes and initializers are removed (:mod:`.unused`), common subexpressions merged and unused
  functions and opsets dropped (onnx-ir passes);
- constant subgraphs are folded (:mod:`.folding`), broadcasts to symbolic shapes moved to where they
  cost nothing (:mod:`.broadcasts`), reshape round trips dropped (:mod:`.reshapes`);
- common patterns become the ONNX op that says what they are (:mod:`.fusions`, applied by
  :mod:`.scheduler` through onnxscript's pattern rewriter), every spelling of a norm layer
  LayerNormalization or RMSNormalization (:mod:`.norms`);
- attention is laid out the way onnxruntime runs it fastest (:mod:`.attention_layout`);
- a zero Pad before a MaxPool is given a form onnxruntime's PadFusion cannot mis-fold (:mod:`.padded_pools`);
- value names are made unique across nested scopes (:mod:`.value_names`);
- the values whose type the lowering did not set itself (handler decompositions) are typed by ONNX's
  inference of their node (or of the whole graph when that is not enough), so every edge shows a
  shape, and the ONNX checker validates the model (:mod:`.shapes`);
- a half-precision export retypes the graph and casts where float32 ops meet it (:mod:`..precision`).

The model stays an onnx-ir model throughout: its weights are the arrays the lowering was given,
never copied (a ModelProto is made only when one is asked for, see :mod:`..conversion`).
"""

from __future__ import annotations

import onnx_ir as ir
from onnx_ir.passes import common as common_passes

from workbench.jax_to_onnx.provenance import unique_node_names
from workbench.jax_to_onnx.passes.folding import fold_constants, fold_weight_layouts
from workbench.jax_to_onnx.passes.affine import fold_affine_chains
from workbench.jax_to_onnx.passes.broadcasts import simplify_broadcasts
from workbench.jax_to_onnx.passes.layout import drop_identities, sink_channel_transposes
from workbench.jax_to_onnx.passes.norm_parameters import store_parameters_in_place
from workbench.jax_to_onnx.passes.norms import fuse_norms
from workbench.jax_to_onnx.passes.padded_pools import guard_padded_max_pools
from workbench.jax_to_onnx.passes.reshapes import drop_no_op_reshape_chains
from workbench.jax_to_onnx.passes.scheduler import fuse_patterns, rewrite_layouts
from workbench.jax_to_onnx.passes.shapes import infer_shapes
from workbench.jax_to_onnx.passes.unused import remove_unused_nodes
from workbench.jax_to_onnx.passes.value_names import unique_value_names
from workbench.jax_to_onnx.precision import Precision, convert_precision, needs_rewrite

__all__ = ["run_passes", "fuse_patterns", "rewrite_layouts", "fold_constants", "fold_weight_layouts", "infer_shapes"]


def run_passes(
    model: ir.Model,
    *,
    optimize: bool = True,
    weights: frozenset[str] = frozenset(),
    precision: Precision = Precision(),
) -> ir.Model:
    """Clean up, fold constants and fuse patterns (``optimize``), annotate shapes, then compute in
    ``precision`` (:mod:`..precision`), in place; returns ``model``.

    ``weights`` names the initializers that hold the model's parameters: they keep their names and shapes.
    """
    remove_unused_nodes(model)
    if optimize:
        common_passes.CommonSubexpressionEliminationPass()(model)
        fold_constants(model, weights)
        simplify_broadcasts(model.graph)
        drop_no_op_reshape_chains(model.graph)
        sink_channel_transposes(model.graph)
        fuse_patterns(model)
        fuse_norms(model)
        store_parameters_in_place(model.graph, weights)
        drop_identities(model.graph)
        fold_affine_chains(model.graph)
        rewrite_layouts(model)
        fold_weight_layouts(model.graph, weights)
    guard_padded_max_pools(model.graph)  # correctness under onnxruntime's PadFusion, optimized or not
    remove_unused_nodes(model)
    # both passes walk every node; with no local function and only the default domain imported (which the second
    # always keeps) there is nothing either could remove
    if model.functions or set(model.graph.opset_imports) - {""}:
        common_passes.RemoveUnusedFunctionsPass()(model)
        common_passes.RemoveUnusedOpsetsPass()(model)
    for graph in (model.graph, *model.functions.values()):
        unique_node_names(graph)
        unique_value_names(graph)
    infer_shapes(model)
    if needs_rewrite(model, precision):
        convert_precision(model, precision)  # reads the types inferred above
        for graph in (model.graph, *model.functions.values()):
            unique_value_names(graph)  # the casts it added in subgraphs
        infer_shapes(model)  # the casts' types, and the checker on the rewritten graph
    return model
