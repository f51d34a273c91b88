"""Which form the generated code gives a depthwise convolution, read from the ONNX graph.

``_depthwise_conv_nhwc`` (emitters/conv.py) writes the taps of kernels up to 3x3 out and loops over larger
ones; the Conv emitter asks ``_depthwise_taps_written_out`` whether a 5x5 one runs written out
instead (``_conv(..., depthwise_taps=True)``): where XLA computes the taps once, which depends on what reads the
convolution (docs/onnx_to_jax_corpus.md, "5x5 depthwise taps written out where XLA fuses them once").
Kernels of more than 25 taps (ConvNeXt-atto's and ConvMixer's 7x7) run as a loop over the kernel's rows
instead, each row's taps written out (``_depthwise_conv_rows``), where ``_depthwise_rows_form`` says so
(docs/onnx_to_jax_corpus.md, "7x7 depthwise kernels row by row").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnx

    from workbench.onnx_to_jax.context import NodeContext

# activations XLA CPU fuses into each kernel that reads them, recomputing what they read
_FREELY_FUSED = frozenset({"Relu", "Clip", "LeakyRelu"})


def _depthwise_taps_written_out(ctx: NodeContext) -> bool:
    """Whether a Conv is a channels-last depthwise one whose 10-25 taps (a 5x5 kernel) run written out
    (``_depthwise_conv_nhwc``'s ``written_out``) rather than as its loop: undilated, float, and its
    taps computed once. XLA fuses the written-out taps into every kernel that reads them, directly or
    through a Relu or Clip: where two nodes read that value (MobileNet-v3-large's 5x5 layers, a ReLU
    read by squeeze-excitation's mean and by its scaling) it computed the taps twice and LR-ASPP ran
    1.06x slower than with the loop, whose result is written once. SiLU's ``x * sigmoid(x)`` (Sigmoid
    and Mul reading the convolution) is one kernel XLA writes once; so is a HardSwish.
    (docs/onnx_to_jax_corpus.md, "5x5 depthwise taps written out where XLA fuses them once").
    """
    shape, dilations = ctx.shape(1), ctx.attr("dilations", None)
    if not (ctx.channels_last and shape is not None and len(shape) == 4 and None not in shape and shape[1] == 1):
        return False
    channels, group = shape[0], ctx.attr("group", 1)
    if group != channels or ctx.shape(0) is None or ctx.shape(0)[1] != channels:
        return False
    if not 9 < shape[2] * shape[3] <= 25 or any(d != 1 for d in dilations or ()):
        return False
    if ctx.dtype(0) is None or ctx.dtype(0).kind != "f":
        return False
    value = ctx.node.output[0]
    readers = ctx.readers(value)
    if readers is not None and len(readers) == 1 and readers[0].op_type in _FREELY_FUSED:
        value = readers[0].output[0]
        readers = ctx.readers(value)
    return readers is not None and (len(readers) == 1 or _is_swish(value, readers))


def _is_swish(value: str, readers: tuple[onnx.NodeProto, ...]) -> bool:
    """Whether ``readers`` of ``value`` are a Sigmoid of it and a Mul of it by that Sigmoid: SiLU."""
    ops = sorted(readers, key=lambda node: node.op_type)
    if [node.op_type for node in ops] != ["Mul", "Sigmoid"]:
        return False
    mul, sigmoid = ops
    return list(sigmoid.input) == [value] and sorted(mul.input) == sorted([value, sigmoid.output[0]])


def _depthwise_rows_form(ctx: NodeContext) -> bool:
    """Whether a Conv may run as ``_depthwise_conv_rows`` (the Conv emitter's ``_depthwise_rows_padding``
    also asks that every tap reads input somewhere): a channels-last, float, depthwise 2-D convolution of
    more than 25 taps (7x7 and up), stride 1, undilated, in code compiled without YNNPACK's dots
    (``ctx.dots_only``). The loop over the 49 taps of a 7x7 kernel ran a kernel of XLA's per tap; one
    per kernel row, each writing its seven taps out, ran ConvNeXt's and ConvMixer's layers 1.0-1.7x
    faster alone and ConvMixer 10% faster as a whole; ConvNeXt-T (YNNPACK's dots) ran no faster as a
    whole, 1.27x -> 1.39x onnxruntime over three processes each, so it keeps the tap loop
    (docs/onnx_to_jax_corpus.md, "7x7 depthwise kernels row by row").
    """
    shape, x_shape = ctx.shape(1), ctx.shape(0)
    if ctx.dots_only:
        return False
    if not (ctx.channels_last and shape is not None and len(shape) == 4 and None not in shape and shape[1] == 1):
        return False
    if x_shape is None or len(x_shape) != 4 or None in x_shape[2:] or x_shape[1] != shape[0]:
        return False
    if ctx.attr("group", 1) != shape[0] or shape[2] * shape[3] <= 25:
        return False
    if any(s != 1 for s in ctx.attr("strides", None) or ()) or any(d != 1 for d in ctx.attr("dilations", None) or ()):
        return False
    return ctx.dtype(0) is not None and ctx.dtype(0).kind == "f"
