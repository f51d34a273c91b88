"""Elementwise ops: arithmetic, math functions, comparisons, logic, bitwise, activations, Cast.

Binary ops use numpy-style (multidirectional) broadcasting, which ONNX has from
opset 7; the older ``broadcast``/``axis`` attributes are rejected loudly.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from workbench.onnx_to_jax.context import NodeContext
from workbench.onnx_to_jax.registry import emitter, runtime_helper


def _no_legacy_broadcast(ctx: NodeContext) -> None:
    if ctx.has_attr("broadcast") or ctx.has_attr("axis") and ctx.node.op_type in ("Add", "Sub", "Mul", "Div"):
        raise ctx.unsupported("the pre-opset-7 'broadcast'/'axis' attributes are not supported; upgrade the model")


def _unary(template: str):
    def emit(ctx: NodeContext) -> str:
        return template.format(x=ctx.x(0))

    return emit


_UNARY: list[tuple[str, int, str]] = [
    ("Abs", 1, "jnp.abs({x})"),
    ("Neg", 1, "jnp.negative({x})"),
    ("Exp", 1, "jnp.exp({x})"),
    ("Log", 1, "jnp.log({x})"),
    ("Sqrt", 1, "jnp.sqrt({x})"),
    ("Reciprocal", 1, "jnp.reciprocal({x})"),
    ("Floor", 1, "jnp.floor({x})"),
    ("Ceil", 1, "jnp.ceil({x})"),
    ("Round", 11, "jnp.round({x})"),
    ("Sin", 7, "jnp.sin({x})"),
    ("Cos", 7, "jnp.cos({x})"),
    ("Tan", 7, "jnp.tan({x})"),
    ("Asin", 7, "jnp.arcsin({x})"),
    ("Acos", 7, "jnp.arccos({x})"),
    ("Atan", 7, "jnp.arctan({x})"),
    ("Sinh", 9, "jnp.sinh({x})"),
    ("Cosh", 9, "jnp.cosh({x})"),
    ("Asinh", 9, "jnp.arcsinh({x})"),
    ("Acosh", 9, "jnp.arccosh({x})"),
    ("Atanh", 9, "jnp.arctanh({x})"),
    ("Tanh", 1, "jnp.tanh({x})"),
    ("Sigmoid", 1, "jax.nn.sigmoid({x})"),
    ("Erf", 9, "lax.erf({x})"),
    ("Sign", 9, "jnp.sign({x})"),
    ("IsNaN", 9, "jnp.isnan({x})"),
    ("BitwiseNot", 18, "jnp.bitwise_not({x})"),
    ("Relu", 1, "jax.nn.relu({x})"),
    ("Softsign", 1, "jax.nn.soft_sign({x})"),
    ("Softplus", 1, "jax.nn.softplus({x})"),
]
for _op, _since, _template in _UNARY:
    emitter(_op, since=_since)(_unary(_template))


@emitter("Identity", since=1)
def identity(ctx: NodeContext) -> str:
    """The input itself; a string tensor (a numpy array of ``str``) is read with ``ctx.host``, so the node is
    a host step like the string ops, not an argument of a jitted part (JAX has no string type)."""
    from workbench.onnx_to_jax.emitters.strings import is_string

    return ctx.host(0) if is_string(ctx, 0) else ctx.x(0)


@emitter("Not", since=1)
def logical_not(ctx: NodeContext) -> str:
    return ctx.call("jnp.logical_not", ctx.x(0))


def _binary_op(fn_name: str):
    def emit(ctx: NodeContext) -> str:
        _no_legacy_broadcast(ctx)
        return ctx.call(fn_name, ctx.x(0), ctx.x(1))

    return emit


_BINARY: list[tuple[str, int, str]] = [
    ("Add", 7, "jnp.add"),
    ("Sub", 7, "jnp.subtract"),
    ("Mul", 7, "jnp.multiply"),
    ("Less", 7, "jnp.less"),
    ("Greater", 7, "jnp.greater"),
    ("LessOrEqual", 12, "jnp.less_equal"),
    ("GreaterOrEqual", 12, "jnp.greater_equal"),
    ("And", 7, "jnp.logical_and"),
    ("Or", 7, "jnp.logical_or"),
    ("Xor", 7, "jnp.logical_xor"),
    ("BitwiseAnd", 18, "jnp.bitwise_and"),
    ("BitwiseOr", 18, "jnp.bitwise_or"),
    ("BitwiseXor", 18, "jnp.bitwise_xor"),
]
for _op, _since, _fn in _BINARY:
    emitter(_op, since=_since)(_binary_op(_fn))


@emitter("Equal", since=7)
def equal(ctx: NodeContext) -> str:
    from workbench.onnx_to_jax.emitters.strings import equal_strings, is_string

    if is_string(ctx, 0):  # opset 19: string tensors, compared on the host
        return equal_strings(ctx)
    _no_legacy_broadcast(ctx)
    return ctx.call("jnp.equal", ctx.x(0), ctx.x(1))


@runtime_helper
def _div(a, b):
    """ONNX Div: true division for floats, truncation toward zero for integers."""
    a, b = jnp.asarray(a), jnp.asarray(b)
    if jnp.issubdtype(a.dtype, jnp.integer):
        a, b = jnp.broadcast_arrays(a, b)
        return lax.div(a, b.astype(a.dtype))
    return jnp.divide(a, b)


@emitter("Div", since=7)
def div(ctx: NodeContext) -> str:
    _no_legacy_broadcast(ctx)
    dtype = ctx.dtype(0)
    if dtype is not None and dtype.kind == "f":
        return f"jnp.divide({ctx.x(0)}, {ctx.x(1)})"
    return ctx.call(_div, ctx.x(0), ctx.x(1))


@runtime_helper
def _pow(a, b):
    """ONNX Pow: the result has the base's dtype."""
    a = jnp.asarray(a)
    b = jnp.asarray(b)
    if jnp.issubdtype(a.dtype, jnp.integer) and jnp.issubdtype(b.dtype, jnp.integer):
        return jnp.power(a, b.astype(a.dtype))
    return jnp.power(a.astype(jnp.result_type(a, b)), b).astype(a.dtype)


@emitter("Pow", since=7)
def pow_(ctx: NodeContext) -> str:
    return ctx.call(_pow, ctx.x(0), ctx.x(1))


@emitter("Mod", since=10)
def mod(ctx: NodeContext) -> str:
    fn = "jnp.fmod" if ctx.attr("fmod", 0) else "jnp.mod"
    return f"{fn}({ctx.x(0)}, {ctx.x(1)})"


@emitter("BitShift", since=11)
def bit_shift(ctx: NodeContext) -> str:
    direction = ctx.attr("direction")
    if direction not in ("LEFT", "RIGHT"):
        raise ctx.error(f"direction must be 'LEFT' or 'RIGHT', got {direction!r}")
    fn = "jnp.left_shift" if direction == "LEFT" else "jnp.right_shift"
    return f"{fn}({ctx.x(0)}, {ctx.x(1)})"


def _variadic(fn_name: str):
    def emit(ctx: NodeContext) -> str:
        args = ctx.xs()
        expr = args[0]
        for arg in args[1:]:
            expr = ctx.call(fn_name, expr, arg)
        return expr

    return emit


for _op, _fn in (("Max", "jnp.maximum"), ("Min", "jnp.minimum"), ("Sum", "jnp.add")):
    emitter(_op, since=8)(_variadic(_fn))


@emitter("Mean", since=8)
def mean(ctx: NodeContext) -> str:
    args = ctx.xs()
    total = _variadic("jnp.add")(ctx)
    return f"jnp.divide({total}, {len(args)})" if len(args) > 1 else total


@emitter("Where", since=9)
def where(ctx: NodeContext) -> str:
    return ctx.call("jnp.where", ctx.x(0), ctx.x(1), ctx.x(2))


@emitter("IsInf", since=10)
def is_inf(ctx: NodeContext) -> str:
    neg, pos = ctx.attr("detect_negative", 1), ctx.attr("detect_positive", 1)
    x = ctx.x(0)
    if neg and pos:
        return f"jnp.isinf({x})"
    if pos:
        return f"jnp.isposinf({x})"
    if neg:
        return f"jnp.isneginf({x})"
    return f"jnp.zeros(jnp.shape({x}), dtype=bool)"


# ---- activations with attributes --------------------------------------------------------
@emitter("LeakyRelu", since=6)
def leaky_relu(ctx: NodeContext) -> str:
    return f"jax.nn.leaky_relu({ctx.x(0)}, negative_slope={ctx.lit(ctx.fattr('alpha', 0.01))})"


@emitter("Elu", since=6)
def elu(ctx: NodeContext) -> str:
    return f"jax.nn.elu({ctx.x(0)}, alpha={ctx.lit(ctx.fattr('alpha', 1.0))})"


@emitter("Celu", since=12)
def celu(ctx: NodeContext) -> str:
    return f"jax.nn.celu({ctx.x(0)}, alpha={ctx.lit(ctx.fattr('alpha', 1.0))})"


@runtime_helper
def _selu(x, alpha, gamma):
    return gamma * jnp.where(x > 0, x, alpha * jnp.expm1(x)).astype(x.dtype)


@emitter("Selu", since=6)
def selu(ctx: NodeContext) -> str:
    alpha = ctx.fattr("alpha", 1.67326319217681884765625)
    gamma = ctx.fattr("gamma", 1.05070102214813232421875)
    return ctx.call(_selu, ctx.x(0), alpha=ctx.lit(alpha), gamma=ctx.lit(gamma))


@runtime_helper
def _hard_sigmoid(x, alpha, beta):
    return jnp.clip(alpha * x + beta, 0, 1).astype(x.dtype)


@emitter("HardSigmoid", since=6)
def hard_sigmoid(ctx: NodeContext) -> str:
    alpha, beta = ctx.fattr("alpha", 0.2), ctx.fattr("beta", 0.5)
    return ctx.call(_hard_sigmoid, ctx.x(0), alpha=ctx.lit(alpha), beta=ctx.lit(beta))


@emitter("HardSwish", since=14)
def hard_swish(ctx: NodeContext) -> str:
    x = ctx.x(0)
    return f"{x} * {ctx.call(_hard_sigmoid, x, alpha=ctx.lit(1 / 6), beta='0.5')}"


@emitter("ThresholdedRelu", since=10)
def thresholded_relu(ctx: NodeContext) -> str:
    x = ctx.x(0)
    return f"jnp.where({x} > {ctx.lit(ctx.fattr('alpha', 1.0))}, {x}, 0).astype({x}.dtype)"


@emitter("Mish", since=18)
def mish(ctx: NodeContext) -> str:
    x = ctx.x(0)
    return f"{x} * jnp.tanh(jax.nn.softplus({x}))"


@emitter("Gelu", since=20)
def gelu(ctx: NodeContext) -> str:
    approximate = ctx.attr("approximate", "none")
    if approximate not in ("none", "tanh"):
        raise ctx.error(f"approximate must be 'none' or 'tanh', got {approximate!r}")
    return f"jax.nn.gelu({ctx.x(0)}, approximate={approximate == 'tanh'!r})"


@emitter("Swish", since=24)
def swish(ctx: NodeContext) -> str:
    x = ctx.x(0)
    return f"{x} * jax.nn.sigmoid({ctx.lit(ctx.fattr('alpha', 1.0))} * {x})"


@emitter("PRelu", since=7)
def prelu(ctx: NodeContext) -> str:
    x, slope = ctx.x(0), ctx.x(1)
    return ctx.call("jnp.where", f"{x} < 0", f"{x} * {slope}", x)


@emitter("Shrink", since=9)
def shrink(ctx: NodeContext) -> str:
    x = ctx.x(0)
    bias, lambd = ctx.lit(ctx.fattr("bias", 0.0)), ctx.lit(ctx.fattr("lambd", 0.5))
    return (
        f"jnp.where({x} < -{lambd}, {x} + {bias}, jnp.where({x} > {lambd}, {x} - {bias}, 0))"
        f".astype({x}.dtype)"
    )


@runtime_helper
def _clip(x, lo, hi):
    if lo is not None:
        x = jnp.maximum(x, jnp.asarray(lo, dtype=x.dtype))
    if hi is not None:
        x = jnp.minimum(x, jnp.asarray(hi, dtype=x.dtype))
    return x


@emitter("Clip", since=(6, 11))
def clip(ctx: NodeContext) -> str:
    if ctx.opset < 11:
        lo = ctx.lit(ctx.fattr("min", -3.4028234663852886e38))
        hi = ctx.lit(ctx.fattr("max", 3.4028234663852886e38))
        return ctx.call(_clip, ctx.x(0), lo, hi)
    return ctx.call(_clip, ctx.x(0), ctx.opt(1), ctx.opt(2))


# ---- casts ------------------------------------------------------------------------------
# ONNX Cast by the specification (operator doc, Cast-6 to Cast-25, and docs/technical/float4.md),
# not by what numpy or ml_dtypes happen to do; docs/codegen.md "Cast" has the same table.
#   float -> float          IEEE rounding, +-inf when out of range                      astype
#   integer -> integer      keep the low bits (two's complement wrap): int16 200 -> int8 -56   astype
#   integer -> float        +-inf when out of range                                     astype
#   bool -> number          1 / 0                                                       astype
#   number -> bool          zero (+-0.0) is False, everything else (NaN too) is True   x != 0
#   -> float8, saturate=1   (the default) +-inf and [x] beyond the range become +-max: clipped first
#   -> float8, saturate=0   the spec's second table (e4m3fn: NaN, e5m2: +-inf, *fnuz: NaN, -0 -> 0),
#                           which XLA's conversion follows
#   -> float8e8m0           the exponent bits, rounded as round_mode says (_cast_e8m0)
#   -> float4e2m1           round to nearest even, beyond +-6 and +-inf -> +-6, NaN -> 6 (float4.md)
# The spec leaves float -> integer undefined when the value does not fit (NaN, +-inf, or a value
# whose truncation lies outside the type, e.g. -9.0 -> int4). The generated code then truncates
# toward zero and saturates to the type's range, NaN -> 0: -9.0 -> int4 gives -8, 300.0 -> uint8 255.
# It is written out (_float_to_int) instead of left to astype, whose float -> int result JAX calls
# implementation dependent, so it is the same on every backend; onnxruntime on x86 differs there
# (it wraps through int32: 300.0 -> int8 gives 44), and so do ml_dtypes' versions for int4/int2.
@runtime_helper
def _float_to_int(x, dtype):
    """float -> integer: truncate toward zero; beyond the type's range saturate, NaN -> 0 (spec: undefined)."""
    target = jax.dtypes.canonicalize_dtype(dtype)
    info = jnp.iinfo(target)
    if jnp.finfo(x.dtype).bits < 32:
        x = x.astype(jnp.float32)  # every float16/bfloat16/float8/float4 value is exact in float32
    converted = x.astype(target)  # truncation toward zero wherever the value fits
    # max + 1 is a power of two (exact in any float type), so `>=` finds exactly the values that do not
    # fit; min - 1 may round to min, which then maps to min either way
    converted = jnp.where(x >= float(info.max) + 1.0, jnp.array(info.max, target), converted)
    converted = jnp.where(x <= float(info.min) - 1.0, jnp.array(info.min, target), converted)
    return jnp.where(jnp.isnan(x), jnp.array(0, target), converted)


@runtime_helper
def _cast_e8m0(x, saturate, round_mode):
    """ONNX Cast to float8_e8m0fnu: keep the float32 exponent bits, rounded as ``round_mode`` asks."""
    bits = lax.bitcast_convert_type(jnp.asarray(x, jnp.float32), jnp.uint32)
    exponent = ((bits >> 23) & 0xFF).astype(jnp.uint32)
    special = exponent == 0xFF
    if round_mode == "up":
        round_up = (bits & 0x7FFFFF) > 0
    elif round_mode == "nearest":
        guard, rest = (bits & 0x400000) > 0, (bits & 0x3FFFFF) > 0
        round_up = guard & (rest | (exponent > 0))
    else:  # "down": truncate the mantissa
        round_up = jnp.zeros(jnp.shape(bits), bool)
    if saturate:
        round_up = round_up & (exponent != 0xFE)
    exponent = jnp.where(special, 0xFF, (exponent + round_up.astype(jnp.uint32)) & 0xFF)
    return lax.bitcast_convert_type(exponent.astype(jnp.uint8), jnp.float8_e8m0fnu)


@runtime_helper
def _cast(x, dtype, saturate=True, round_mode="up"):
    """ONNX Cast where ``astype`` alone does not give the specified result (the table above)."""
    x = jnp.asarray(x)
    target = jnp.dtype(dtype)
    from_float = jnp.issubdtype(x.dtype, jnp.floating)
    if target == jnp.bool_:
        return x != 0
    if target.name == "float8_e8m0fnu":
        return _cast_e8m0(x, saturate, round_mode)
    if jnp.issubdtype(target, jnp.integer) and from_float:
        return _float_to_int(x, target)
    if target.name.startswith("float8") and saturate:
        limit = float(jnp.finfo(target).max)
        return jnp.clip(x if from_float else x.astype(jnp.float32), -limit, limit).astype(target)
    if target.name == "float4_e2m1fn":
        x = x if from_float else x.astype(jnp.float32)
        return jnp.clip(jnp.where(jnp.isnan(x), 6.0, x), -6.0, 6.0).astype(target)
    return x.astype(target)


def _needs_helper(source: np.dtype | None, target: np.dtype) -> bool:
    """Whether a cast from ``source`` (None: known only when the code runs) to ``target`` needs :func:`_cast`."""
    if source is None or target == np.bool_ or target.name.startswith(("float8", "float4")):
        return True
    return bool(jnp.issubdtype(source, jnp.floating) and jnp.issubdtype(target, jnp.integer))


def _cast_expr(ctx: NodeContext, value: str, source: np.dtype | None, target: np.dtype, target_code: str) -> str:
    if not _needs_helper(source, target):
        return ctx.call("jnp.asarray", value).astype(target_code)
    round_mode = ctx.choice("round_mode", ROUND_MODES, "up")
    args = [value, target_code, ctx.lit(bool(ctx.attr("saturate", 1)))]
    if target.name == "float8_e8m0fnu":
        args.append(ctx.lit(round_mode))
    return ctx.call(_cast, *args)


# Cast's rounding to float8_e8m0fnu (opset 24)
ROUND_MODES = ("up", "down", "nearest")


@emitter("Cast", since=(6, 19))
def cast(ctx: NodeContext) -> str:
    ctx.choice("round_mode", ROUND_MODES, "up")
    dtype = ctx.onnx_np_dtype(ctx.attr("to"))
    if ctx.dtype(0) is not None and ctx.dtype(0) == dtype:
        return ctx.x(0)
    return _cast_expr(ctx, ctx.x(0), ctx.dtype(0), dtype, ctx.dt(dtype))


@emitter("CastLike", since=(15, 19))
def cast_like(ctx: NodeContext) -> str:
    dtype = ctx.dtype(1)
    if dtype is not None:
        return _cast_expr(ctx, ctx.x(0), ctx.dtype(0), dtype, ctx.dt(dtype))
    # the target type is known only when the code runs: the helper decides then
    return ctx.call(_cast, ctx.x(0), f"jnp.asarray({ctx.x(1)}).dtype", ctx.lit(bool(ctx.attr("saturate", 1))),
                    ctx.lit(ctx.choice("round_mode", ROUND_MODES, "up")))


__all__ = ["jax", "np", "lax"]


@emitter("SwiGLU", since=28)
def swiglu(ctx: NodeContext) -> str:
    a, b = ctx.x(0), ctx.x(1)
    alpha = ctx.fattr("alpha", 1.0)
    gate = f"jax.nn.sigmoid({ctx.lit(alpha)} * {a})" if alpha != 1.0 else f"jax.nn.sigmoid({a})"
    return f"({a} * {gate} * {b}).astype({a}.dtype)"
