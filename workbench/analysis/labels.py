"""How the analysis reports name the two sides they compare, in words a reader follows.

A report keeps the model's label as data (``report.model_source``: a path, ``"<ModelProto>"``,
``"<Conversion>"``); its summary line says what that is: "mlp in JAX vs its ONNX conversion",
not "<Conversion> vs mlp".
"""

from __future__ import annotations

from workbench.jax_to_onnx.conversion import CONVERSION_LABEL
from workbench.onnx_io.load import BYTES_LABEL, PROTO_LABEL

_IN_MEMORY = {
    CONVERSION_LABEL: "its ONNX conversion",
    PROTO_LABEL: "the ONNX model (in memory)",
    BYTES_LABEL: "the ONNX model (bytes)",
}


def model_phrase(label: str) -> str:
    """``"its ONNX conversion"``, ``"the ONNX model (in memory)"`` or ``"ONNX file <path>"``."""
    return _IN_MEMORY.get(label, f"ONNX file {label}")


def sides(function: str, model_label: str) -> str:
    """``"<function> in JAX vs <model phrase>"``: the two sides of a parity or divergence report."""
    return f"{function} in JAX vs {model_phrase(model_label)}"


def count(number: int, noun: str) -> str:
    """``"1 sample"``, ``"3 samples"``."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


__all__ = ["count", "model_phrase", "sides"]
