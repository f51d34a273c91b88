"""Constants and everything without a better family: Constant, Bernoulli..."""

from __future__ import annotations

import numpy as np

from workbench.codegen.context import NodeContext
from workbench.codegen.registry import emitter


@emitter("Constant", since=(1, 9, 11, 12, 13, 19))
def constant(ctx: NodeContext) -> str:
    if ctx.has_attr("value"):
        value = np.asarray(ctx.attr("value"))
    elif ctx.has_attr("value_float"):
        value = np.array(ctx.attr("value_float"), dtype=np.float32)
    elif ctx.has_attr("value_floats"):
        value = np.array(ctx.attr("value_floats"), dtype=np.float32)
    elif ctx.has_attr("value_int"):
        value = np.array(ctx.attr("value_int"), dtype=np.int64)
    elif ctx.has_attr("value_ints"):
        value = np.array(ctx.attr("value_ints"), dtype=np.int64)
    elif ctx.has_attr("sparse_value"):
        raise ctx.unsupported("sparse constants are not supported")
    else:
        raise ctx.unsupported("string constants have no JAX equivalent")
    return ctx.bind_constant(value)
