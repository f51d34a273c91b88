"""Shared by the ONNX -> JAX corpus tests: telling a quantization step at a rounding boundary from a wrong result.

A dynamically quantized model rounds each activation to an integer: ``DynamicQuantizeLinear`` computes
``round(x / scale) + zero_point`` with ``scale = (max(x, 0) - min(x, 0)) / 255``. Two correct float32
implementations of the layers before it (onnxruntime's kernels, XLA's) differ by a unit of rounding or two, and
where ``x / scale`` lies within that distance of a half-integer they round to neighbouring integers: one int8
step, which the next ``MatMulInteger`` multiplies by a whole weight row and the rest of the network carries on
(measured: quantized Whisper's encoder, 1 of 96,000 attention values at x / scale = -9.4999978 in onnxruntime
and -9.4999999 in XLA, 2 float32 units apart, gives 32 of 96,000 outputs 2.4e-2 apart).

:func:`assert_matches_up_to_boundary_steps` shows that this is all there is, and fails otherwise. It runs the
generated code and onnxruntime (graph optimizations off, every node as written) on a copy of the model that
also returns every ``DynamicQuantizeLinear``'s input and outputs, and walks these nodes in graph order. At the
first one whose quantized output differs from the generated code's, it requires:

- onnxruntime's own kernel, given the generated code's input, gives the generated code's quantized values,
  scale and zero point bit for bit (the quantizer is right; only its input differs);
- that input is within the corpus tolerance of onnxruntime's (float32 rounding, not a wrong value);
- the quantized values differ by one step, in at most ``MAX_FLIPPED_FRACTION`` of the elements.

It then *pins* the node: onnxruntime runs again with the node removed and its three outputs fed from the
generated code's, and the walk goes on, up to ``MAX_PINS`` nodes. Last, the model's outputs must match the
pinned onnxruntime run within the usual tolerance (tests/support/corpus.py): once both sides quantize alike at
the boundary elements, everything else agrees as closely as in the float models.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import helper

from tests.support.corpus import assert_outputs_match, tolerance

# at most this many DynamicQuantizeLinear nodes may be pinned before the walk gives up
MAX_PINS = 8
# a pinned node may flip at most this fraction of its elements (at least one element)
MAX_FLIPPED_FRACTION = 0.01


@dataclass(frozen=True)
class Pin:
    """One DynamicQuantizeLinear whose quantized output the two implementations round differently.

    ``flipped``: elements one step apart, of ``size``; ``input_error``: the largest distance between the two
    inputs; ``boundary_distance``: the largest distance of onnxruntime's ``x / scale`` from a half-integer at the
    flipped elements (how close to the rounding boundary they sit)."""

    node: str
    flipped: int
    size: int
    input_error: float
    boundary_distance: float


def _exposed(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[onnx.NodeProto]]:
    """A copy of ``model`` that also returns each DynamicQuantizeLinear's input and outputs, and those nodes."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    nodes = [node for node in copy.graph.node if node.op_type == "DynamicQuantizeLinear"]
    present = {value.name for value in copy.graph.output}
    for node in nodes:
        for name, elem_type in zip([node.input[0], *node.output], [onnx.TensorProto.FLOAT, onnx.TensorProto.UINT8,
                                                                    onnx.TensorProto.FLOAT, onnx.TensorProto.UINT8]):
            if name not in present:
                copy.graph.output.append(helper.make_tensor_value_info(name, elem_type, None))
                present.add(name)
    return copy, nodes


def _onnxruntime(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every graph output of ``model`` by name, run by onnxruntime with its graph optimizations off."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [value.name for value in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds), strict=True))


def _pinned(model: onnx.ModelProto, pins: Sequence[onnx.NodeProto]) -> onnx.ModelProto:
    """``model`` without the ``pins`` nodes, whose outputs become graph inputs (and are no longer outputs)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    fed = [name for node in pins for name in node.output]
    kept = [node for node in copy.graph.node if not (node.op_type == "DynamicQuantizeLinear" and node.output[0] in fed)]
    del copy.graph.node[:]
    copy.graph.node.extend(kept)
    outputs = [value for value in copy.graph.output if value.name not in fed]
    del copy.graph.output[:]
    copy.graph.output.extend(outputs)
    for node in pins:
        y, scale, zero_point = node.output
        copy.graph.input.extend([helper.make_tensor_value_info(y, onnx.TensorProto.UINT8, None),
                                 helper.make_tensor_value_info(scale, onnx.TensorProto.FLOAT, []),
                                 helper.make_tensor_value_info(zero_point, onnx.TensorProto.UINT8, [])])
    return copy


def _check_boundary_flip(model: onnx.ModelProto, node: onnx.NodeProto, generated: dict[str, np.ndarray],
                         reference: dict[str, np.ndarray], opset: int) -> Pin:
    """The checks of the module docstring on one node whose quantized outputs differ; its :class:`Pin`."""
    x, (y, scale, zero_point) = node.input[0], node.output
    single = helper.make_model(
        helper.make_graph([helper.make_node("DynamicQuantizeLinear", ["x"], ["y", "s", "z"])], "one",
                          [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, None)],
                          [helper.make_tensor_value_info("y", onnx.TensorProto.UINT8, None),
                           helper.make_tensor_value_info("s", onnx.TensorProto.FLOAT, []),
                           helper.make_tensor_value_info("z", onnx.TensorProto.UINT8, [])]),
        opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    own = _onnxruntime(single, {"x": generated[x]})
    for mine, theirs in ((y, "y"), (scale, "s"), (zero_point, "z")):
        np.testing.assert_array_equal(generated[mine], own[theirs], err_msg=(
            f"{node.name}: onnxruntime's DynamicQuantizeLinear, given the generated code's input, gives another "
            f"{theirs}: the quantizer itself differs"))
    error = float(np.max(np.abs(generated[x] - reference[x]), initial=0.0))
    allowed = tolerance(model, reference[x])
    assert error <= allowed, f"{node.name}: input {error:.3g} from onnxruntime's, over the tolerance {allowed:.3g}"
    steps = np.abs(generated[y].astype(np.int32) - reference[y].astype(np.int32))
    flipped = int(np.count_nonzero(steps))
    assert steps.max() <= 1, f"{node.name}: quantized values {steps.max()} steps apart"
    assert flipped <= max(1, MAX_FLIPPED_FRACTION * steps.size), f"{node.name}: {flipped} of {steps.size} flipped"
    ratio = reference[x][steps > 0].astype(np.float64) / float(reference[scale])
    return Pin(node.name, flipped, int(steps.size), error, float(np.max(np.abs(ratio - np.floor(ratio) - 0.5))))


def assert_matches_up_to_boundary_steps(model: onnx.ModelProto, inputs: Sequence[np.ndarray],
                                        runner: Callable[[onnx.ModelProto], Callable[..., Any]]) -> list[Pin]:
    """The generated code matches onnxruntime on ``model`` once both take the same side at the elements of
    DynamicQuantizeLinear nodes that sit on a rounding boundary (module docstring); the pinned nodes.

    ``runner(model)`` gives the generated code of ``model`` as a function of the inputs (eager or jitted)."""
    exposed, quantizers = _exposed(model)
    names = [value.name for value in exposed.graph.output]
    got = runner(exposed)(*inputs)
    generated = {name: np.asarray(value) for name, value in zip(names, got if isinstance(got, tuple) else (got,),
                                                                  strict=True)}
    feeds = dict(zip([value.name for value in model.graph.input], inputs, strict=True))
    opset = next(entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx"))
    pins: list[onnx.NodeProto] = []
    found: list[Pin] = []
    while True:
        pinned = _pinned(exposed, pins)
        reference = _onnxruntime(pinned, {**feeds, **{name: generated[name] for node in pins for name in node.output}})
        pinned_outputs = {node.output[0] for node in pins}
        differing = next((node for node in quantizers if node.output[0] not in pinned_outputs
                          and not np.array_equal(generated[node.output[0]], reference[node.output[0]])), None)
        if differing is None:
            break
        assert len(pins) < MAX_PINS, f"more than {MAX_PINS} DynamicQuantizeLinear nodes flip: {[p.node for p in found]}"
        found.append(_check_boundary_flip(model, differing, generated, reference, opset))
        pins.append(differing)
    outputs = [value.name for value in model.graph.output]
    assert_outputs_match(model, [reference[name] for name in outputs], [generated[name] for name in outputs])
    return found
