"""Operators onnxruntime defines although onnx.defs does not: the emitters' registry, the reader's checks and wb.for_onnxruntime_cpu's need the list.

Checked against onnxruntime's own schemas by tests/onnx_to_jax/test_domains.py, not at import
time (which would import onnxruntime with the first generated model).
"""

from __future__ import annotations

# Operator sets that onnxruntime defines (onnx.defs does not know them).
RUNTIME_DOMAINS = frozenset({"com.microsoft"})
# onnxruntime ops it registers in the ONNX domain itself (its optimizer writes them into models of any
# opset): (op, since) pairs onnx.defs rejects
RUNTIME_ONNX_OPS = frozenset({("LayerNormalization", 1), ("SimplifiedLayerNormalization", 1)})

__all__ = ["RUNTIME_DOMAINS", "RUNTIME_ONNX_OPS"]
