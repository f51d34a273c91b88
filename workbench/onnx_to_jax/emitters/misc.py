"""Constants and everything without a better family: Constant, Bernoulli..."""

from __future__ import annotations

import numpy as np

from workbench.onnx_to_jax.context import NodeContext
from workbench.onnx_to_jax.registry import emitter


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


@emitter("Det", since=11)
def det(ctx: NodeContext) -> str:
    return f"jnp.linalg.det({ctx.x(0)})"


@emitter("BitCast", since=26)
def bit_cast(ctx: NodeContext) -> str:
    target = ctx.onnx_np_dtype(ctx.attr("to"))
    source = ctx.dtype(0)
    if source is None or source.itemsize != target.itemsize:
        raise ctx.unsupported("BitCast between types of different sizes is not supported")
    if source == np.bool_ or target == np.bool_:  # XLA bitcasts no bools; a bool byte holds 0 or 1
        if source == target:
            return ctx.x(0)
        return ctx.call("jnp.asarray", ctx.x(0)).astype(ctx.dt(target)) if source == np.bool_ else f"({ctx.x(0)} != 0)"
    return f"lax.bitcast_convert_type({ctx.x(0)}, {ctx.dt(target)})"


def _window(kind: str):
    # cosine-sum window coefficients, as the ONNX spec defines each window
    coefficients = {"hann": (0.5, 0.5, 0.0), "hamming": (25 / 46, 21 / 46, 0.0), "blackman": (0.42, 0.5, 0.08)}[kind]

    def emit(ctx: NodeContext) -> str:
        a0, a1, a2 = (ctx.lit(c) for c in coefficients)
        dtype = ctx.onnx_dt(ctx.attr("output_datatype", 1))
        periodic = bool(ctx.attr("periodic", 1))
        size = f"int(np.asarray({ctx.host(0)}).reshape(()))"
        n = f"jnp.arange({size}, dtype=jnp.float64)"
        denominator = size if periodic else f"({size} - 1)"
        phase = f"2 * np.pi * {n} / {denominator}"
        return f"({a0} - {a1} * jnp.cos({phase}) + {a2} * jnp.cos(2 * {phase})).astype({dtype})"

    return emit


emitter("HannWindow", since=17)(_window("hann"))
emitter("HammingWindow", since=17)(_window("hamming"))
emitter("BlackmanWindow", since=17)(_window("blackman"))
