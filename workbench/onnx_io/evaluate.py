"""One constant evaluator for ONNX nodes: onnx's reference implementation, one node at a time.

Both directions fold small constant computations, and both go through :func:`evaluate_node`:

- JAX -> ONNX: the index handlers fold index arithmetic on literals while the graph is being built
  (``jax_to_onnx/handlers/index.py``), so ``x[..., :4]`` stays one Slice;
- ONNX -> JAX: the generator folds shape arithmetic whose inputs are known into literals
  (``onnx_to_jax/generator.py``).

The graph-wide folding pass of the JAX -> ONNX direction (onnxscript's optimizer,
``jax_to_onnx/passes/folding.py``) evaluates nodes with the same onnx.reference operators, and
equations whose operands are all constants are computed by JAX itself before they become nodes
(``jax_to_onnx/constant_eval.py``). No ONNX op is evaluated by code of our own.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from onnx.reference.op_run import OpRun


@functools.lru_cache(maxsize=4096)
def _node(
    domain: str, op_type: str, opset: int, n_inputs: int, n_outputs: int, attributes: tuple[tuple[str, Any, str], ...]
) -> OpRun | None:
    """The reference operator for one node signature, made once: building it (a NodeProto, its attributes
    read against the schema) costs several times what running it on small index arrays does."""
    # ~0.3 s to import: only when something is folded
    from onnx.reference.ops import load_op

    try:
        operator = load_op("" if domain == "ai.onnx" else domain, op_type, opset)
        return operator.create(n_inputs, n_outputs, **{name: value for name, value, _ in attributes})
    except Exception:  # noqa: BLE001 - onnx raises several types for an op or attribute it does not know
        return None


def evaluate_node(
    op_type: str,
    inputs: Sequence[np.ndarray | None],
    attributes: Mapping[str, Any],
    opset: int,
    *,
    domain: str = "",
    n_outputs: int = 1,
) -> list[np.ndarray] | None:
    """The outputs of one ONNX node computed from constant ``inputs`` (``None`` for an omitted optional one).

    ``attributes`` are Python values (ints, floats, lists, TensorProto, an ``onnx_ir.DataType`` for
    ``to``); ``n_outputs`` is how many outputs the node has (Split). Returns None when the node cannot
    be evaluated now (no reference implementation, or an input combination the implementation
    rejects): folding is an optimisation, the node is then kept in the graph or written as code,
    where a real error surfaces with its context.
    """
    # the type names keep 1 and 1.0 (INT and FLOAT attributes) apart in the cache
    converted = tuple(sorted((name, _attribute(value), type(value).__name__) for name, value in attributes.items()))
    try:
        node = _node(domain, op_type, opset, len(inputs), n_outputs, converted)
    except TypeError:  # an unhashable attribute value (a TensorProto): made for this call only
        node = _node.__wrapped__(domain, op_type, opset, len(inputs), n_outputs, converted)
    if node is None:
        return None
    try:
        results = node.run(*inputs)
    except Exception:  # noqa: BLE001 - not evaluable here; see the docstring
        return None
    outputs = [np.asarray(result) for result in results]
    if any(output.dtype == object for output in outputs):
        return None  # sequences or strings: not a constant tensor
    return outputs


def _attribute(value: Any) -> Any:
    """An attribute value as ``onnx.helper.make_attribute`` takes it and as a cache key: plain ints (not
    onnx_ir's DataType enum or NumPy integers), tuples for lists."""
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (list, tuple)):
        return tuple(_attribute(item) for item in value)
    return value
