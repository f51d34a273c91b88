"""The element types an ONNX op's schema allows for each input and output of one node.

A rewrite that retypes nodes (the half-precision pass, the widening of nodes ONNX or onnxruntime does
not take in a narrow type) asks the same question of the schema: which type variable does the node's
i-th input or output bind (a variadic last parameter takes the rest), and which tensor types may that
variable be. A type string that names no variable (a fixed ``tensor(float)``: Resize's scales) allows itself alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx
import onnx_ir as ir


@dataclass(frozen=True)
class SchemaTypes:
    """The type string bound to each actual input and output of a node, and the tensor types each variable allows."""

    inputs: tuple[str | None, ...]  # None: the schema has no formal input for it
    outputs: tuple[str | None, ...]
    allowed: dict[str, frozenset[str]]

    def takes(self, type_str: str | None, dtype: ir.DataType) -> bool:
        """Whether ``type_str`` (one of :attr:`inputs`/:attr:`outputs`) may be a tensor of ``dtype``."""
        if type_str is None:
            return True
        wanted = f"tensor({onnx.TensorProto.DataType.Name(int(dtype)).lower()})"  # tensor(float), tensor(bfloat16)...
        return wanted in self.allowed.get(type_str, frozenset({type_str}))


def schema_types(node: ir.Node, opset: int) -> SchemaTypes | None:
    """The default-domain schema's types for ``node`` at ``opset``; None when the op has no schema there
    (a model-local function, an op of a later opset)."""
    try:
        schema = onnx.defs.get_schema(node.op_type, opset, "")
    except onnx.defs.SchemaError:
        return None
    return SchemaTypes(
        inputs=tuple(_bound(schema.inputs, index) for index in range(len(node.inputs))),
        outputs=tuple(_bound(schema.outputs, index) for index in range(len(node.outputs))),
        allowed={c.type_param_str: frozenset(c.allowed_type_strs) for c in schema.type_constraints},
    )


def _bound(formals: list[onnx.defs.OpSchema.FormalParameter], index: int) -> str | None:
    """The type string of actual input/output ``index`` (a variadic last parameter takes the rest)."""
    return formals[min(index, len(formals) - 1)].type_str if formals else None


__all__ = ["SchemaTypes", "schema_types"]
