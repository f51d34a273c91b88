"""A zero ``Pad`` read by ``MaxPool`` → ``MaxPool`` with the pads, then ``Max`` with a constant border.

onnxruntime's ``PadFusion`` (basic level, on by default) folds a constant ``Pad`` of value 0 into the
``MaxPool`` after it by adding the pads to the pool's ``pads``. A pool's padding is ignored (it acts as
-inf), so every window that reads the padding and sees only negative values gives its maximum instead of
0: Keras' ResNet50V2 (``ZeroPadding2D`` then ``MaxPooling2D`` on the stem convolution's signed output)
differs by 1.1 in its logits, and a 3x3 stride-2 pool after a 1-pixel zero pad by up to 2 on a random
map. The layout pass puts such a Pad right before the pool (it pads in NCHW), and a channels-first
program (Equinox, PyTorch-style code) writes the pair directly.

The exact form onnxruntime cannot mis-fold: the pool takes the Pad's pads itself (so its windows stay
where they were), and ``Max`` with a constant ``(1, 1, *spatial_out)`` border that holds 0 at the outputs
whose window reads the zero padding and -inf elsewhere puts the zeros back. Same node count as before.
Applied when the Pad is a constant-mode Pad of value 0 on the spatial axes only, read by that pool alone,
and the input's spatial sizes are static (the border is a constant); otherwise the pair stays: with symbolic
spatial sizes onnxruntime's default session mis-folds it, and with a pad of at least the kernel size it
makes a MaxPool its own kernel refuses (both exact without its optimizations).
"""

from __future__ import annotations

import itertools

import numpy as np
import onnx_ir as ir

from workbench.jax_to_onnx.ir_values import constant_array, new_initializer
from workbench.jax_to_onnx.provenance import inherit

_FLOATS = (ir.DataType.FLOAT, ir.DataType.FLOAT16, ir.DataType.DOUBLE, ir.DataType.BFLOAT16)


def guard_padded_max_pools(graph: ir.Graph) -> int:
    """Rewrite every zero ``Pad`` → ``MaxPool`` pair of ``graph`` (see the module docstring); returns how many."""
    count = 0
    for pool in list(graph):
        if pool.op_type == "MaxPool" and pool.domain == "" and _rewrite(graph, pool):
            count += 1
    return count


def _int_attribute(node: ir.Node, name: str, default: int) -> int:
    attribute = node.attributes.get(name)
    return default if attribute is None else attribute.as_int()


def _ints_attribute(node: ir.Node, name: str, default: list[int]) -> list[int]:
    attribute = node.attributes.get(name)
    return default if attribute is None else list(attribute.as_ints())


def _zero_spatial_pads(pad: ir.Node, rank: int) -> list[int] | None:
    """The Pad's (begins..., ends...) pads of the spatial axes, when it is a constant Pad of value 0 that pads
    only those (by non-negative amounts); else None."""
    mode = pad.attributes.get("mode")
    if mode is not None and mode.as_string() != "constant":
        return None
    if len(pad.inputs) > 3 and pad.inputs[3] is not None:
        return None  # an axes input: left alone
    pads = constant_array(pad.inputs[1])
    value = constant_array(pad.inputs[2]) if len(pad.inputs) > 2 and pad.inputs[2] is not None else np.zeros(())
    if pads is None or value is None or value.size != 1 or float(value.reshape(())) != 0.0:
        return None
    pads = [int(p) for p in pads.reshape(-1)]
    if len(pads) != 2 * rank or any(pads[a] != 0 or pads[rank + a] != 0 for a in (0, 1)) or min(pads) < 0:
        return None
    return pads[2:rank] + pads[rank + 2:]


def _rewrite(graph: ir.Graph, pool: ir.Node) -> bool:
    padded = pool.inputs[0]
    pad = padded.producer()
    if pad is None or pad.op_type != "Pad" or pad.domain != "" or pad.graph is not graph or len(padded.uses()) != 1:
        return False
    if len(pool.outputs) > 1 and pool.outputs[1].uses():
        return False  # the indices output counts positions in the padded input
    x = pad.inputs[0]
    if x.shape is None or x.dtype not in _FLOATS or len(x.shape) < 3:
        return False
    rank = len(x.shape)
    spatial = list(x.shape)[2:]
    if not all(isinstance(d, int) for d in spatial):
        return False
    auto_pad = pool.attributes.get("auto_pad")
    if (auto_pad is not None and auto_pad.as_string() != "NOTSET") or _int_attribute(pool, "ceil_mode", 0) != 0:
        return False
    zero_pads = _zero_spatial_pads(pad, rank)
    if zero_pads is None:
        return False
    count = rank - 2
    kernel = _ints_attribute(pool, "kernel_shape", [])
    strides = _ints_attribute(pool, "strides", [1] * count)
    dilations = _ints_attribute(pool, "dilations", [1] * count)
    own_pads = _ints_attribute(pool, "pads", [0] * (2 * count))
    pads = [a + b for a, b in zip(zero_pads, own_pads, strict=True)]
    if len(kernel) != count or any(pads[a] >= kernel[a] or pads[count + a] >= kernel[a] for a in range(count)):
        return False  # onnxruntime's MaxPool wants each pad below the kernel size
    border = _border(spatial, zero_pads, own_pads, kernel, strides, dilations)
    dtype = x.dtype.numpy()
    guarded = ir.Node("", "MaxPool", [x], attributes=[
        ir.AttrInt64s("kernel_shape", kernel), ir.AttrInt64s("strides", strides),
        ir.AttrInt64s("dilations", dilations), ir.AttrInt64s("pads", pads),
    ])
    new_nodes = [guarded]
    result = guarded.outputs[0]
    if border.any():
        values = np.where(border, np.array(0, dtype), np.array(-np.inf, dtype)).astype(dtype)
        constant = new_initializer(graph, values.reshape((1, 1, *values.shape)), f"{pool.outputs[0].name}/zero_border")
        new_nodes.append(ir.Node("", "Max", [result, constant]))
        result = new_nodes[-1].outputs[0]
    old = pool.outputs[0]
    for value in (guarded.outputs[0], result):
        value.type, value.shape = old.type, old.shape
    ir.convenience.replace_nodes_and_values(graph, pool, [pad, pool], new_nodes, [old], [result])
    inherit(new_nodes, pool)
    return True


def _border(
    spatial: list[int], zero_pads: list[int], own_pads: list[int], kernel: list[int], strides: list[int], dilations: list[int]
) -> np.ndarray:
    """Per pooled output position: does its window read a position the zero Pad added?"""
    count = len(spatial)
    added = np.ones([s + zero_pads[a] + zero_pads[count + a] for a, s in enumerate(spatial)], bool)
    added[tuple(slice(zero_pads[a], zero_pads[a] + s) for a, s in enumerate(spatial))] = False
    added = np.pad(added, [(own_pads[a], own_pads[count + a]) for a in range(count)])  # the pool's own: ignored
    out = [(added.shape[a] - (kernel[a] - 1) * dilations[a] - 1) // strides[a] + 1 for a in range(count)]
    border = np.zeros(out, bool)
    for offset in itertools.product(*(range(k) for k in kernel)):
        window = tuple(
            slice(o * d, o * d + (n - 1) * s + 1, s) for o, d, n, s in zip(offset, dilations, out, strides, strict=True)
        )
        border |= added[window]
    return border
