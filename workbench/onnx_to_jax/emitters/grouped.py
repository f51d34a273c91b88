"""Grouped convolutions of a few channels per group (RegNet's 8) with their groups merged.

YNNPACK runs a grouped convolution of 8 channels per group at ~5 GMAC/s and a
dense one at ~50: RegNetY-400MF's 6-group layer (48 channels, 48x48 -> 24x24) took 0.39 ms grouped and
0.22 ms as the dense convolution of its block-diagonal weight, six times the multiply-adds
(onnxruntime 0.22-0.28 ms). ``_conv`` (emitters/conv.py) asks ``_group_merge`` how many neighbouring
groups become one and convolves with ``_merged_group_weight``'s block-diagonal weight
(docs/onnx_to_jax_corpus.md, "RegNet's grouped convolutions merged").
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from workbench.onnx_to_jax.registry import runtime_helper


@runtime_helper
def _group_merge(group, in_per_group):
    """How many neighbouring groups of a channels-last grouped 2-D convolution run as one, in a model
    whose convolutions YNNPACK runs (XLA's default fusion, or each convolution alone): all of them (a
    dense convolution) for 8 groups or fewer, pairs for an even number of more groups, else 1
    (unchanged); only for groups of 2 to 8 input channels (depthwise convolutions have their own form,
    ``_depthwise_conv_nhwc``).

    Measured per layer of RegNetY-400MF at 96x96 (8 channels per group, 3x3, CPU ms per call, one
    thread; tests/benchmarks/bench_grouped_conv.py): 6 groups at 24x24 0.39 grouped, 0.21-0.23 dense,
    0.30 as 3 groups of 16; 13 groups at 12x12 0.19-0.21 grouped, 0.26-0.29 dense; 26 groups at 6x6
    0.11-0.12 grouped, 0.09-0.10 as 13 groups of 16, 0.34 as 2 of 104, 0.43 dense; 55 groups at 3x3
    (odd: unchanged) 0.08 grouped, 0.16 as 11 groups of 40. The whole model ran 6-10% faster, its
    first jit as long (docs/onnx_to_jax_corpus.md, "RegNet's grouped convolutions merged").
    """
    if group <= 1 or not 2 <= in_per_group <= 8:
        return 1
    if group <= 8:
        return group
    return 2 if group % 2 == 0 else 1


@runtime_helper
def _merged_group_weight(w, group, merge):
    """The HWIO weight (kh, kw, I / group, O) of a grouped convolution as that of ``group / merge``
    groups of ``merge`` times the channels: (kh, kw, merge * I / group, O), block-diagonal within each
    merged group (each output channel reads its own group's inputs, zeros for the other groups').

    A concrete weight (folded into the jitted function, or an eager call) is built with numpy, so XLA
    gets the merged weight as a constant; a traced one (weights as jit arguments, gradients) with jnp.
    """
    out_channels = w.shape[-1]
    slot = (np.arange(out_channels) // (out_channels // group)) % merge  # each output's group within its merged one
    xp = jnp if isinstance(w, jax.core.Tracer) else np
    w = w if xp is jnp else np.asarray(w)
    zero = xp.zeros((), w.dtype)
    return xp.concatenate([xp.where(slot == j, w, zero) for j in range(merge)], axis=2)
