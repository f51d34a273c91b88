"""Size budgets that keep an untrusted model or a mistyped spec from exhausting memory or the stack.

Each limit is far above what a real model needs and far below what takes a machine down; the
checks that apply them name the value at fault and the limit.
"""

from __future__ import annotations

#: The largest tensor a model or an input spec may declare (1 TiB): more than any host or
#: accelerator holds, so a larger declared shape is a mistake or an attack, never a model to run.
MAX_TENSOR_BYTES = 1 << 40

#: protobuf stops decoding at 100 message levels; a graph nested in a node attribute costs three
#: (node, attribute, graph) and a typed value inside a graph five more, so 31 levels of If/Loop/Scan
#: bodies are what onnx, onnxruntime and the workbench can all read.
MAX_SUBGRAPH_DEPTH = 31

#: protobuf cannot decode a serialized message over 2 GiB; larger models keep weights in external data.
MAX_MODEL_FILE_BYTES = (1 << 31) - 1

#: How deeply input specs (nested lists, tuples and dicts) may nest; Python's own recursion limit is 1,000.
MAX_SPEC_DEPTH = 100

#: ONNX shape inference with data propagation represents every 1-D value of known length n by n
#: dimension entries (about 70 bytes each) per node that reads it; above this many entries in a
#: model it is run without data propagation (shapes computed from values then stay symbolic).
MAX_DATA_PROPAGATION_ENTRIES = 1 << 20

#: Values the ONNX -> JAX generator computes at generation time (constant folding) hold at most this
#: many elements, checked before a node is evaluated: larger results become code that runs later.
MAX_FOLDED_ELEMENTS = 4096

__all__ = [
    "MAX_DATA_PROPAGATION_ENTRIES",
    "MAX_FOLDED_ELEMENTS",
    "MAX_MODEL_FILE_BYTES",
    "MAX_SPEC_DEPTH",
    "MAX_SUBGRAPH_DEPTH",
    "MAX_TENSOR_BYTES",
]
