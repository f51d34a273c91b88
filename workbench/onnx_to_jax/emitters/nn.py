"""Dense and normalising neural-network ops: MatMul, MatMulInteger, Gemm, the Softmax family, LRN, Dropout,
Einsum (convolutions are in emitters/conv.py, pooling in emitters/pooling.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from workbench.onnx_to_jax.context import NodeContext
from workbench.onnx_to_jax.emitters.rounding import _bfloat16_sum
from workbench.onnx_to_jax.registry import emitter, runtime_helper

@emitter("MatMul", since=(1, 9, 13))
def matmul(ctx: NodeContext) -> str:
    return f"jnp.matmul({ctx.x(0)}, {ctx.x(1)})"


@emitter("MatMulInteger", since=10)
def matmul_integer(ctx: NodeContext) -> str:
    a, b = ctx.x(0), ctx.x(1)
    a_expr = f"jnp.asarray({a}, jnp.int32)"
    b_expr = f"jnp.asarray({b}, jnp.int32)"
    if ctx.has(2):
        zero = ctx.x(2)
        a_expr = f"({a_expr} - jnp.reshape(jnp.asarray({zero}, jnp.int32), (-1, 1) if jnp.ndim({zero}) == 1 else ()))"
    if ctx.has(3):
        b_expr = f"({b_expr} - jnp.asarray({ctx.x(3)}, jnp.int32))"
    return f"jnp.matmul({a_expr}, {b_expr})"


@runtime_helper
def _gemm(a, b, c, alpha, beta, trans_a, trans_b):
    a = jnp.transpose(a) if trans_a else a
    b = jnp.transpose(b) if trans_b else b
    y = jnp.matmul(a, b)
    if alpha != 1.0:
        y = (alpha * y).astype(y.dtype)
    if c is not None:
        y = y + (c if beta == 1.0 else (beta * c).astype(y.dtype))
    return y


@emitter("Gemm", since=(7, 11, 13))
def gemm(ctx: NodeContext) -> str:
    alpha, beta = ctx.fattr("alpha", 1.0), ctx.fattr("beta", 1.0)
    trans_a, trans_b = ctx.attr("transA", 0), ctx.attr("transB", 0)
    if alpha == 1.0 and beta == 1.0 and not trans_a:
        if trans_b and ctx.prepared_weight(1, (1, 0)):
            b = ctx.x(1)  # prepare() gave it the (K, N) layout, once, outside jax.jit
        else:
            b = f"jnp.transpose({ctx.x(1)})" if trans_b else ctx.x(1)
        product = f"jnp.matmul({ctx.x(0)}, {b})"
        return f"{product} + {ctx.x(2)}" if ctx.has(2) else product
    return ctx.call(
        _gemm, ctx.x(0), ctx.x(1), ctx.opt(2), ctx.lit(alpha), ctx.lit(beta),
        ctx.lit(bool(trans_a)), ctx.lit(bool(trans_b)),
    )


@runtime_helper
def _softmax_2d(fn, x, axis):
    """Softmax family before opset 13: flatten to 2-D at ``axis``, normalize rows, reshape back."""
    x = jnp.asarray(x)
    axis = axis % x.ndim if x.ndim else 0
    rows = int(np.prod(x.shape[:axis], dtype=np.int64))
    flat = jnp.reshape(x, (rows, -1))
    return jnp.reshape(fn(flat, axis=1), x.shape)


@runtime_helper
def _softmax(x, axis):
    """``jax.nn.softmax``'s arithmetic, its exponent written ``exp(-(max - x))``: the same values, a cheaper compile.

    ``-(m - x)`` is ``x - m`` exactly (IEEE subtraction rounds symmetrically; only a zero's sign differs,
    and ``exp(-0) == exp(0)``). The extra negation changes what LLVM does with the exponential's loop
    when XLA CPU writes ``exp(x - m)`` in place over ``x`` (an attention score from a YNNPACK dot whose
    buffer dies there): the one-row loop of ``x - m`` and the ``llvm.exp`` call is small enough to be
    fully unrolled before the loop vectorizer, and each of the unrolled exponentials then expands to its
    polynomial: a 49-wide row (Swin's 7x7 windows) became ~370 KB of optimized IR and ~1 CPU s of LLVM
    codegen per distinct shape (docs/onnx_to_jax_corpus.md, "Which kernels cost the compile").
    A bfloat16 row's sum is added as onnx's reference adds it (``rounding.py``).
    """
    x_max = jax.lax.stop_gradient(jnp.max(x, axis=axis, keepdims=True))
    unnormalized = jnp.exp(-(x_max - x))
    if unnormalized.dtype == jnp.bfloat16:
        return unnormalized / _bfloat16_sum(unnormalized, axis)
    return unnormalized / jnp.sum(unnormalized, axis=axis, keepdims=True)


@runtime_helper
def _hardmax(x, axis):
    index = lax.argmax(x, axis % x.ndim, jnp.int32)  # int32: an int64 argmax fails a plain jax.jit (index.py)
    return jax.nn.one_hot(index, x.shape[axis], axis=axis, dtype=x.dtype)


def _softmax_family(fn: str):
    def emit(ctx: NodeContext) -> str:
        if fn == "hardmax":
            name = ctx.helper(_hardmax)
        elif fn == "softmax":
            name = ctx.helper(_softmax)
        else:
            name = f"jax.nn.{fn}"
        if ctx.opset < 13:
            return ctx.call(_softmax_2d, name, ctx.x(0), ctx.lit(ctx.attr("axis", 1)))
        return f"{name}({ctx.x(0)}, axis={ctx.lit(ctx.attr('axis', -1))})"

    return emit


emitter("Softmax", since=(1, 11, 13))(_softmax_family("softmax"))
emitter("LogSoftmax", since=(1, 11, 13))(_softmax_family("log_softmax"))
emitter("Hardmax", since=(1, 11, 13))(_softmax_family("hardmax"))


@runtime_helper
def _lrn(x, size, alpha, beta, bias):
    squared = jnp.square(x)
    before = (size - 1) // 2
    after = size - 1 - before
    padded = jnp.pad(squared, ((0, 0), (before, after)) + ((0, 0),) * (x.ndim - 2))
    window = (1, size) + (1,) * (x.ndim - 2)
    total = lax.reduce_window(padded, np.array(0, x.dtype), lax.add, window, (1,) * x.ndim, "VALID")
    return (x / (bias + alpha / size * total) ** beta).astype(x.dtype)


@emitter("LRN", since=(1, 13))
def lrn(ctx: NodeContext) -> str:
    return ctx.call(
        _lrn, ctx.x(0), ctx.lit(ctx.attr("size")), ctx.lit(ctx.fattr("alpha", 0.0001)),
        ctx.lit(ctx.fattr("beta", 0.75)), ctx.lit(ctx.fattr("bias", 1.0)),
    )


@runtime_helper
def _inference_dropout(x, training, ratio, node):
    """Dropout whose ``training_mode`` (or ratio) is known only at run time (a graph input, as jax2onnx
    exports a ``deterministic`` flag): ``x`` in inference mode and, in training mode, with a ratio of 0
    (every element kept, scaled by 1); otherwise training-mode values are random in ONNX and cannot be
    reproduced: an error raised from a host callback (under ``jax.jit`` too)."""

    def refuse(flag, drop):
        if bool(np.asarray(flag)) and float(np.asarray(drop)) != 0.0:
            raise ValueError(
                f"Dropout node {node!r} ran with training_mode=True and ratio {float(np.asarray(drop))}: "
                "training-mode dropout is random and the generated code computes inference mode (or ratio 0) "
                "only; feed False (or deterministic=True) for this input"
            )

    jax.debug.callback(refuse, training, ratio)
    return x


@emitter("Dropout", since=(7, 10, 12, 13))
def dropout(ctx: NodeContext) -> list[str]:
    x = data = ctx.x(0)
    ratio = ctx.static(1) if ctx.has(1) else None
    no_ratio = ratio is not None and float(np.asarray(ratio).reshape(())) == 0.0
    if ctx.opset >= 12 and ctx.has(2) and not no_ratio:
        training = ctx.static(2)
        if training is None:  # decided at run time: inference mode or ratio 0, or an error at run time
            ratio_expr = ctx.x(1) if ctx.has(1) else "0.5"  # the spec's default ratio
            x = ctx.call(_inference_dropout, x, ctx.x(2), ratio_expr, ctx.lit(ctx.node.name or ctx.node.output[0]))
        elif bool(np.asarray(training).reshape(())):
            raise ctx.unsupported("Dropout in training mode is random; only inference is supported")
    outputs = [x]
    if ctx.has_output(1):
        outputs.append(f"jnp.ones(jnp.shape({data}), dtype=bool)")
    return outputs


@emitter("Einsum", since=12)
def einsum(ctx: NodeContext) -> str:
    equation = ctx.attr("equation")
    return f"jnp.einsum({ctx.lit(equation)}, {', '.join(ctx.xs())})"


__all__ = ["np"]
