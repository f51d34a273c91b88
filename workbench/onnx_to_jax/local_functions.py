"""Model-local functions expanded into plain nodes by onnx's inliner, with what it silently refuses named.

onnx's ``inline_local_functions`` leaves a call in place, without a word, when the function's opset imports
name a domain at another version than the model's. jax2onnx 0.17.1 writes every function (one per NNX/Equinox
module) with imports of its own domain and of the domains of the functions it calls at version 23, where the
model imports them at 1: onnxruntime runs such files, the inliner skipped them and the reader then reported the
function call as an op without an emitter. Model-local functions have no versions (a call names the domain and
the function), so a function's import of a domain that model-local functions define takes the model's version,
and imports none of its nodes uses are dropped (they cannot change what it computes); a call the inliner still
leaves is reported with the conflicting versions.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import onnx
import onnx.helper
import onnx.inliner

from workbench.errors import OnnxModelError
from workbench.onnx_io.describe import DEFAULT_DOMAINS


def _nodes(nodes: Iterable[onnx.NodeProto]) -> Iterator[onnx.NodeProto]:
    """``nodes`` and the nodes of their subgraphs (If branches, Loop and Scan bodies), depth first."""
    for node in nodes:
        yield node
        for attribute in node.attribute:
            for graph in [attribute.g] if attribute.type == onnx.AttributeProto.GRAPH else attribute.graphs:
                yield from _nodes(graph.node)


def _domain(name: str) -> str:
    return "" if name in DEFAULT_DOMAINS else name


def _align_imports(model: onnx.ModelProto) -> None:
    """In each function's opset imports (in place): drop the domains none of its nodes uses, and give the
    domains of model-local functions the version the model imports them at."""
    local = {_domain(function.domain) for function in model.functions}
    versions = {_domain(opset.domain): opset.version for opset in model.opset_import}
    for function in model.functions:
        used = {_domain(node.domain) for node in _nodes(function.node)}
        kept = [onnx.helper.make_opsetid(opset.domain, versions[_domain(opset.domain)]
                                         if _domain(opset.domain) in local and _domain(opset.domain) in versions
                                         else opset.version)
                for opset in function.opset_import if _domain(opset.domain) in used]
        del function.opset_import[:]
        function.opset_import.extend(kept)


def inline_functions(model: onnx.ModelProto, label: str) -> onnx.ModelProto:
    """``model`` with every call of a model-local function replaced by the function's nodes.

    ``model`` is the reader's own copy (its functions' opset imports are aligned in place). Raises
    :class:`OnnxModelError` when onnx's inliner fails, or leaves a call because the function's opset imports
    conflict with the model's."""
    _align_imports(model)
    try:
        inlined = onnx.inliner.inline_local_functions(model)
    except Exception as e:  # noqa: BLE001 - the inliner raises several C++-level error types
        raise OnnxModelError(f"{label}: cannot expand the model-local functions: {e}") from e
    functions = {(_domain(f.domain), f.name): f for f in inlined.functions}
    called = sorted({(_domain(n.domain), n.op_type) for n in _nodes(inlined.graph.node)} & set(functions))
    if called:
        versions = {_domain(opset.domain): opset.version for opset in model.opset_import}
        conflicts = "; ".join(
            f"{domain}::{name} imports " + ", ".join(
                f"{opset.domain or 'ai.onnx'} {opset.version} (the model: {versions.get(_domain(opset.domain))})"
                for opset in functions[domain, name].opset_import
                if versions.get(_domain(opset.domain)) != opset.version)
            for domain, name in called)
        raise OnnxModelError(
            f"{label}: onnx's inliner cannot expand the model-local function(s) called here, whose opset imports "
            f"differ from the model's: {conflicts}. Export the model with one version per domain."
        )
    return inlined
