"""Where each ONNX node came from: its module path, the user's ``file:line`` and the JAX primitive.

Every node the lowering emits carries these as ``metadata_props`` (the convention torch.onnx uses,
under our own key prefix) and is named ``<module path>/<primitive>`` (``block2.c1/conv_general_dilated``);
the nodes that rewrite passes create inherit them from the node they replace and are named
``<module path>/<OpType>`` (``ln1/LayerNormalization``). Netron shows both; the divergence locator
reports them.
"""

from __future__ import annotations

from collections.abc import Iterable

import onnx_ir as ir

MODULE_KEY = "pkg.workbench.module"
SOURCE_KEY = "pkg.workbench.source"
PRIMITIVE_KEY = "pkg.workbench.primitive"
KEYS = (MODULE_KEY, SOURCE_KEY, PRIMITIVE_KEY)


def inherit(nodes: Iterable[ir.Node], origin: ir.Node) -> None:
    """Give rewrite-created ``nodes`` the provenance of the ``origin`` node they replace.

    Names may repeat here; :func:`unique_node_names` makes them unique once the passes are done.
    """
    metadata = {key: origin.metadata_props[key] for key in KEYS if key in origin.metadata_props}
    if not metadata:  # a node from elsewhere (a model built by hand): names stay as the rewriter made them
        return
    module = metadata.get(MODULE_KEY, "")
    for node in nodes:
        if PRIMITIVE_KEY in node.metadata_props:
            continue
        node.metadata_props.update(metadata)
        node.name = f"{module}/{node.op_type}" if module else node.op_type
        if origin.doc_string and not node.doc_string:
            node.doc_string = origin.doc_string


def unique_node_names(graph: ir.Graph | ir.Function) -> None:
    """Suffix repeated node names (``head/Gemm``, ``head/Gemm_1``) in place, in graph order (subgraphs too)."""
    seen: set[str] = set()
    counts: dict[str, int] = {}

    for node in ir.traversal.RecursiveGraphIterator(graph):
        base = node.name or node.op_type
        name = base
        while name in seen:
            counts[base] = counts.get(base, 0) + 1
            name = f"{base}_{counts[base]}"
        seen.add(name)
        node.name = name
