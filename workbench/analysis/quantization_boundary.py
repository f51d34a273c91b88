"""A DynamicQuantizeLinear that diverges by one step at a rounding boundary: not a converter fault.

``DynamicQuantizeLinear`` maps each float to ``round(x / scale) + zero_point`` (round half to even) with
``scale = (max(x, 0) - min(x, 0)) / 255``. Two correct float32 implementations of the layers before it (the
generated JAX code, onnxruntime) differ by a unit of rounding or two, and where ``x / scale`` lies that close to a
half-integer they round to neighbouring integers. The divergence locator then names the quantizer as the first
divergent node (its float input was within tolerance, its integer output is one step off), and every integer
matmul after it multiplies the step by a weight row. Measured on Hugging Face Optimum's quantized Whisper
encoder (docs/onnx_to_jax_corpus.md): 1 of 96,000 attention values at x / scale = -9.4999978 in onnxruntime and
-9.4999999 in XLA made 32 of 96,000 outputs differ by 2.4e-2.

:func:`boundary_step_caveat` recognises that case from the two sides' values alone: each side's quantized
values, scale and zero point are exactly what its own input gives (so neither quantizer is wrong), the zero
points agree, and the outputs differ by one step at a few elements (so the inputs straddle a boundary there).
A quantizer that rounds otherwise (half away from zero, a multiplied reciprocal scale) fails the first test.
"""

from __future__ import annotations

import numpy as np
import onnx

# at most this fraction of a quantizer's elements (and at least one) may sit on a boundary for the caveat
MAX_FLIPPED_FRACTION = 0.01


def dynamic_quantize(x: np.ndarray) -> tuple[np.ndarray, np.float32, np.uint8]:
    """ONNX's DynamicQuantizeLinear in float32 NumPy as onnxruntime computes it: quantized values, scale and
    zero point (an all-zero input, which has no range, gets onnxruntime's scale 1)."""
    x = np.asarray(x, np.float32)
    low, high = np.float32(x.min(initial=0.0)), np.float32(x.max(initial=0.0))  # the range includes 0
    if high == low:
        return np.zeros(x.shape, np.uint8), np.float32(1), np.uint8(0)
    scale = np.float32((high - low) / np.float32(255))
    zero_point = np.float32(np.clip(np.rint(-low / scale), 0, 255))
    values = np.clip(np.rint(x / scale) + zero_point, 0, 255).astype(np.uint8)
    return values, scale, np.uint8(zero_point)


def boundary_step_caveat(node: onnx.NodeProto, generated: tuple[np.ndarray, ...],
                         reference: tuple[np.ndarray, ...]) -> str | None:
    """Why ``node`` diverges without a fault, or None. ``generated`` and ``reference``: each side's
    ``(input, quantized values, scale, zero point)`` of the DynamicQuantizeLinear ``node``."""
    if node.op_type != "DynamicQuantizeLinear" or len(generated) != 4 or len(reference) != 4:
        return None
    sides = []
    for x, values, scale, zero_point in (generated, reference):
        x, values = np.asarray(x), np.asarray(values)
        if x.dtype != np.float32 or x.shape != values.shape or x.size == 0:
            return None
        own = dynamic_quantize(x)
        if not (np.array_equal(own[0], values) and own[1] == np.float32(scale) and own[2] == np.uint8(zero_point)):
            return None  # this side's quantizer does not compute what its input gives: a real fault
        sides.append((x, values.astype(np.int32), np.float32(scale), int(zero_point)))
    (x_gen, y_gen, _, z_gen), (x_ref, y_ref, s_ref, z_ref) = sides
    steps = np.abs(y_gen - y_ref)
    flipped = int(np.count_nonzero(steps))
    if x_gen.shape != x_ref.shape or z_gen != z_ref or flipped == 0 or steps.max() > 1:
        return None
    if flipped > max(1, MAX_FLIPPED_FRACTION * steps.size):
        return None
    ratio = x_ref[steps > 0].astype(np.float64) / float(s_ref)
    distance = float(np.max(np.abs(ratio - np.floor(ratio) - 0.5)))
    apart = float(np.max(np.abs(x_gen.astype(np.float64) - x_ref)))
    return (
        f"DynamicQuantizeLinear {node.name or node.output[0]!r}: {flipped} of {steps.size} quantized values one step "
        f"apart, where x / scale lies {distance:.2g} from a half-integer; its inputs are {apart:.2g} apart and each "
        "side's values, scale and zero point are exactly what its own input gives. Two float32 computations of the "
        "layers before it round differently there, and the quantizer sends the two to neighbouring integers: not a "
        "converter fault. Later nodes carry the step (an integer matmul multiplies it by a weight row)."
    )


__all__ = ["MAX_FLIPPED_FRACTION", "boundary_step_caveat", "dynamic_quantize"]
