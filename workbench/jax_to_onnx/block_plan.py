"""Which equations of a jaxpr are lowered as recognised blocks: the recognisers of :mod:`.blocks`,
:mod:`.attention_blocks`, :mod:`.conv_blocks` and :mod:`.head_blocks`, each keyed by the primitive it starts from,
applied in one scan."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from workbench.jax_to_onnx.attention_blocks import attention_scores, head_projection
from workbench.jax_to_onnx.conv_blocks import conv_affine
from workbench.jax_to_onnx.head_blocks import MEAN_MIN_OPSET, dense, mean
from workbench.jax_to_onnx.blocks import (
    GELU_MIN_OPSET,
    LAYER_NORMALIZATION_MIN_OPSET,
    SOFTMAX_MIN_OPSET,
    Block,
    _any_layer_norm,
    _gelu_erf,
    _gelu_tanh,
    _Index,
    _relu,
    _softmax,
)

# primitive → (the lowest opset of the op the block becomes, the recogniser started from its equation), tried in order
_RECOGNISERS: dict[str, tuple[tuple[int, Callable[[_Index, Any], Block | None]], ...]] = {
    "rsqrt": ((LAYER_NORMALIZATION_MIN_OPSET, _any_layer_norm),),
    "erfc": ((GELU_MIN_OPSET, _gelu_erf),),
    "tanh": ((GELU_MIN_OPSET, _gelu_tanh),),
    "reduce_max": ((SOFTMAX_MIN_OPSET, _softmax),),
    "add": ((0, head_projection), (0, dense)),  # an attention's per-head projection, else a dense layer's bias
    "dot_general": ((SOFTMAX_MIN_OPSET, attention_scores),),  # the attention's scores: it emits a Softmax
    "conv_general_dilated": ((0, conv_affine),),  # a convolution, a per-channel affine of constants, a relu
}
# recognised in a second scan, on the equations no block above took: a relu and a mean are also parts of larger
# blocks (a convolution's relu; a LayerNorm's mean, which comes before its rsqrt), as the rules fuse them last
_LAST: dict[str, tuple[tuple[int, Callable[[_Index, Any], Block | None]], ...]] = {
    "custom_jvp_call": ((0, _relu),),  # jax.nn.relu
    "reduce_sum": ((MEAN_MIN_OPSET, mean),),  # jnp.mean
}
# primitives that only one kind of block contains: a jaxpr without any has nothing to recognise
# (an attention projection's or a dense layer's ``add`` needs a ``dot_general``)
_TRIGGERS = frozenset({"rsqrt", "erfc", "tanh", "reduce_max", "dot_general", "conv_general_dilated", "custom_jvp_call",
                       "reduce_sum"})


def plan_blocks(jaxpr: Any, opset: int) -> dict[int, Block]:
    """The blocks of ``jaxpr`` (its own equations, not nested ones) to lower fused, by the index of their last equation.

    Blocks never overlap: an equation belongs to the first block found that contains it (the attention's
    scores path, started from its first ``dot_general``, takes its softmax before the softmax recogniser
    reaches the ``reduce_max``; the recognisers of ``_LAST`` come after all the others).
    """
    if not any(eqn.primitive.name in _TRIGGERS for eqn in jaxpr.eqns):
        return {}
    index = _Index(jaxpr)
    blocks: dict[int, Block] = {}
    taken: set[int] = set()
    for recognisers in (_RECOGNISERS, _LAST):
        for eqn in jaxpr.eqns:
            for min_opset, recognise in recognisers.get(eqn.primitive.name, ()):
                block = None if opset < min_opset else recognise(index, eqn)
                if block is None or taken.intersection(block.members):
                    continue
                blocks[block.root] = block
                taken.update(block.members)
                break
    return blocks


__all__ = ["plan_blocks"]
