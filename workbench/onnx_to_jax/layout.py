"""Channels-last values in the generated code of 2-D convolutional networks.

ONNX images are NCHW; XLA CPU convolves NHWC (its convolution kernels, and the depthwise tap loop,
read channels as the contiguous axis). Written NCHW, every convolution gets a transpose of its
input and of its output, each a full pass over the activation and a kernel XLA compiles on its
own. So the generator holds the outputs of 2-D convolutions channels-last and keeps them so
through the ops that work on any layout (activations, BatchNormalization, pooling, Concat over
channels, residual Adds...); the first op that needs the ONNX axes (Reshape, MatMul, a graph
output...) reads the value through one ``jnp.transpose`` back to NCHW. What the user sees does not
change: ``params`` holds every initializer under its ONNX name in its ONNX layout (the convolution
takes OIHW weights, which XLA transposes once at compile time when the weights are folded), and
the inputs and outputs of ``forward`` keep the model's axes. Design: docs/codegen.md ("Channels-last
convolution networks"); measured: docs/onnx_to_jax_corpus.md ("Jitted latency of the CNNs").

This module decides, node by node, whether a node runs channels-last (a :class:`LayoutPlan`) and
writes the expressions that present an input in that layout; emitters that run channels-last ask
``ctx.channels_last``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import onnx

TO_NCHW = (0, 3, 1, 2)
TO_NHWC = (0, 2, 3, 1)
# where each ONNX (NCHW) axis is in a channels-last value: N 0, C 3, H 1, W 2
NHWC_AXIS = (0, 3, 1, 2)

# Ops whose code is the same in any layout as long as every input is presented in it: elementwise
# ops (their broadcasting is per axis, so permuting every operand alike permutes the result) whose
# emitters read nothing but the inputs' values.
ELEMENTWISE = frozenset(
    "Relu Clip Sigmoid HardSigmoid HardSwish LeakyRelu Elu Celu Selu Tanh Erf Neg Abs Exp Sqrt Softplus "
    "Softsign Mish Gelu Swish Identity Add Sub Mul Div Max Min Sum PRelu".split()
)
# Ops whose emitters have a channels-last form (they read ``ctx.channels_last``)
_POOLS = frozenset({"MaxPool", "AveragePool"})
_GLOBAL_POOLS = frozenset({"GlobalAveragePool", "GlobalMaxPool"})
_REDUCES = frozenset(
    "ReduceSum ReduceMean ReduceMax ReduceMin ReduceProd ReduceL1 ReduceL2 ReduceSumSquare ReduceLogSum "
    "ReduceLogSumExp".split()
)
_FLOATS = frozenset({np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)})


class ShapeSource(Protocol):
    """What the plan reads of the graph being generated (the generator's ``GraphEmitter``)."""

    def shape_of(self, onnx_name: str) -> tuple[int | None, ...] | None: ...

    def dtype_of(self, onnx_name: str) -> np.dtype | None: ...

    def static_of(self, onnx_name: str) -> np.ndarray | None: ...


@dataclass(frozen=True)
class LayoutPlan:
    """How one node runs: the inputs its emitter reads channels-last, and whether its outputs are."""

    nhwc_inputs: frozenset[int]
    holds_outputs: bool
    # a reduction's axes on its channels-last input (ONNX's axes mapped by NHWC_AXIS), for its emitter
    nhwc_axes: tuple[int, ...] | None = None


class ChannelsLast:
    """The values of one graph held channels-last, and the plan of each node."""

    def __init__(self, held: set[str] | None = None) -> None:
        self.held: set[str] = set(held or ())

    def child(self) -> ChannelsLast:
        """The state a subgraph starts from (it reads the outer values as they are held)."""
        return ChannelsLast(self.held)

    def plan(self, node: onnx.NodeProto, opset: int, graph: ShapeSource) -> LayoutPlan | None:
        """Whether ``node`` runs channels-last, or None to run it on ONNX's axes."""
        if node.domain not in ("", "ai.onnx"):
            return None
        op = node.op_type
        inputs = list(node.input)
        present = [i for i, name in enumerate(inputs) if name]
        data = inputs[0] if inputs else ""
        if op == "Conv":
            if self._is_image(data, graph) and _rank(graph, inputs[1]) == 4:
                return LayoutPlan(frozenset({0}), True)
            return None
        if data not in self.held:
            if op == "Transpose" and _perm(node) == TO_NCHW and self._is_image(data, graph):
                # an NHWC image turned NCHW (the first node of graphs exported from JAX or TensorFlow): held
                # channels-last, the output is the input itself, and the convolutions after read it as it is
                return LayoutPlan(frozenset(), True)
            return self._elementwise_plan(node, present, graph) if op in ELEMENTWISE else None
        outputs = [name for name in node.output if name]
        if op in _POOLS and len(outputs) == 1 and node.output[0]:
            return LayoutPlan(frozenset({0}), True)
        if op in _GLOBAL_POOLS:
            return LayoutPlan(frozenset({0}), True)
        if op == "BatchNormalization":
            training = opset >= 14 and any(a.name == "training_mode" and a.i for a in node.attribute)
            if not training and outputs == [node.output[0]]:
                return LayoutPlan(frozenset({0}), True)
            return None
        if op == "Concat":
            axis = next((a.i for a in node.attribute if a.name == "axis"), None)
            if axis in (1, -3) and all(_rank(graph, inputs[i]) == 4 for i in present):
                return LayoutPlan(frozenset(present), True)
            return None
        if op == "Flatten":
            # (N, C, 1, 1) and (N, 1, 1, C) flatten alike: the classifier head after a global pool
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            shape = graph.shape_of(data)
            if axis == 1 and shape is not None and len(shape) == 4 and shape[2:] == (1, 1):
                return LayoutPlan(frozenset({0}), False)
            return None
        if op == "Transpose":  # the emitter composes ``perm`` with the input's layout: one transpose at most
            return LayoutPlan(frozenset({0}), False)
        if op in _REDUCES:
            return _reduce_plan(node, graph)
        if op in ELEMENTWISE:
            return self._elementwise_plan(node, present, graph)
        return None

    def _elementwise_plan(self, node: onnx.NodeProto, present: list[int], graph: ShapeSource) -> LayoutPlan | None:
        """Channels-last when an input is held so and every other one can be presented so."""
        names = [node.input[i] for i in present]
        if not any(name in self.held for name in names):
            return None
        for name in names:
            if name in self.held:
                continue
            shape = graph.shape_of(name)
            if shape is None or len(shape) > 4 or any(d is None for d in shape):
                return None
        return LayoutPlan(frozenset(present), True)

    @staticmethod
    def _is_image(name: str, graph: ShapeSource) -> bool:
        return _rank(graph, name) == 4 and graph.dtype_of(name) in _FLOATS

    def nhwc_expr(self, name: str, ident: str, graph: ShapeSource) -> str:
        """The expression of ``name`` channels-last, from its identifier (or params expression)."""
        if name in self.held:
            return ident
        shape = graph.shape_of(name)
        if shape is None or len(shape) == 4:
            return f"jnp.transpose({ident}, {TO_NHWC})"
        if int(np.prod([d for d in shape if d is not None])) == 1 and None not in shape:
            return ident  # a scalar or single value broadcasts alike in any layout
        # a lower-rank operand broadcasts against the trailing NCHW axes: give it all four first
        full = (1,) * (4 - len(shape)) + tuple(shape)
        return f"jnp.transpose(jnp.reshape({ident}, {full}), {TO_NHWC})"

    def nchw_expr(self, name: str, ident: str) -> str:
        """The expression of ``name`` on ONNX's axes."""
        return f"jnp.transpose({ident}, {TO_NCHW})" if name in self.held else ident


def _perm(node: onnx.NodeProto) -> tuple[int, ...] | None:
    return next((tuple(a.ints) for a in node.attribute if a.name == "perm"), None)


def _reduce_plan(node: onnx.NodeProto, graph: ShapeSource) -> LayoutPlan | None:
    """A reduction of a channels-last value over static axes: run on it with the axes mapped. With
    ``keepdims`` the result is held channels-last too; without, only when the axes it keeps come out in
    the same order either way ((N, C) after pooling H and W: not C with H or W)."""
    attribute = next((a for a in node.attribute if a.name == "axes"), None)
    if attribute is not None:  # the axes attribute (before ReduceSum 13 / the others 18), else the input
        axes = tuple(attribute.ints)
    elif len(node.input) > 1 and node.input[1]:
        value = graph.static_of(node.input[1])
        if value is None:
            return None
        axes = tuple(int(a) for a in np.asarray(value).reshape(-1))
    else:
        axes = ()
    noop = any(a.name == "noop_with_empty_axes" and a.i for a in node.attribute)
    if not axes and noop:
        return None
    reduced = {a % 4 for a in axes} if axes else set(range(4))
    nhwc_axes = tuple(sorted(NHWC_AXIS[a] for a in reduced))
    keepdims = next((a.i for a in node.attribute if a.name == "keepdims"), 1)
    if keepdims:
        return LayoutPlan(frozenset({0}), True, nhwc_axes)
    kept = [NHWC_AXIS[a] for a in range(4) if a not in reduced]
    if kept != sorted(kept):
        return None
    return LayoutPlan(frozenset({0}), False, nhwc_axes)


def _rank(graph: ShapeSource, name: str) -> int | None:
    shape = graph.shape_of(name) if name else None
    return None if shape is None else len(shape)
