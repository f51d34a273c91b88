"""Compile CPU time, kernel count and one-thread run time of channels-last pool forms (issue 21).

Inception v3's 3x3/1 average pools, written as nine taps (emitters/pooling.py ``_pool_taps``), compiled
as one XLA kernel module per tap (each tap's pad + strided slice at its own offset): 48 of Inception's
105 modules at the corpus size. This script compiles each form of the pool sum (or max) of the
model's pool shapes in one program (the average's division by the counts included) and times:

- compile: process CPU s of ``jax.jit(f).lower(x).compile()`` (a new function each round: no cache),
- kernels: distinct kernel modules (``fusion`` computations of XLA's optimized HLO),
- run: median CPU us per call of each shape's own jitted pool, one XLA thread.

Each pool feeds a 1x1 convolution (the generated code's dot) and a Relu, as Inception's branch_pool
does: a sum ending in adds is taken into the dot's YNNPACK fusion, its taps left as kernels of their own.

Usage: ``PYTHONPATH=$PWD .venv/bin/python tests/benchmarks/bench_pool_forms.py [--rounds 5] [--kind avg|max]``
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from support.thread_limits import limit_xla_threads  # noqa: E402

limit_xla_threads(1)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax import lax  # noqa: E402

from workbench.onnx_to_jax.emitters import pooling  # noqa: E402
from workbench.onnx_to_jax.jit_options import supported_options  # noqa: E402

# Inception v3 at the corpus's 128x128 input (NHWC): 3x3/1 pad 1 average pools, 3x3/2 max pools.
AVG_SHAPES = [(1, 13, 13, 192), (1, 13, 13, 256), (1, 13, 13, 288), (1, 6, 6, 768), (1, 2, 2, 1280),
              (1, 2, 2, 2048)]
MAX_SHAPES = [(1, 61, 61, 64), (1, 29, 29, 192), (1, 13, 13, 288), (1, 6, 6, 768)]
OPTIONS = supported_options({"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_DOT"})


def _fill(x, kind):
    if kind == "max":
        return np.array(-np.inf, x.dtype)
    return np.array(0, x.dtype)


def _combine(kind, y, window):
    if y is None:
        return window
    if kind == "max":
        return jnp.where((window > y) | (window != window), window, y)
    return y + window


def taps(x, kind, kernel, strides, padding):
    """Today's form: emitters/pooling.py ``_pool_taps`` (a sum over one more row, sliced off)."""
    return pooling._pool_taps(x, kind, kernel, strides, (1,) * len(kernel), padding)


def _taps_of(xp, kind, kernel, strides, out):
    y = None
    for tap in np.ndindex(*kernel):
        window = xp[(slice(None),) + tuple(
            slice(tap[i], tap[i] + (out[i] - 1) * strides[i] + 1, strides[i]) for i in range(len(kernel))
        ) + (slice(None),)]
        y = _combine(kind, y, window)
    return y


def _out(xp_shape, kernel, strides):
    return [(xp_shape[1 + i] - kernel[i]) // strides[i] + 1 for i in range(len(kernel))]


def barrier(x, kind, kernel, strides, padding):
    """The padded input behind an optimization barrier, then the nine taps of it (no change: XLA drops
    the barrier before fusion)."""
    xp = jnp.pad(x, ((0, 0),) + tuple(padding) + ((0, 0),), constant_values=_fill(x, kind))
    xp = lax.optimization_barrier(xp)
    return _taps_of(xp, kind, kernel, strides, _out(xp.shape, kernel, strides))


def separable(x, kind, kernel, strides, padding, fence=False):
    """One axis at a time: k taps along W, then k along H of that (2k slices)."""
    xp = jnp.pad(x, ((0, 0),) + tuple(padding) + ((0, 0),), constant_values=_fill(x, kind))
    if fence:
        xp = lax.optimization_barrier(xp)
    out = _out(xp.shape, kernel, strides)
    y = xp
    for axis in reversed(range(len(kernel))):
        acc = None
        for t in range(kernel[axis]):
            index = [slice(None)] * y.ndim
            index[1 + axis] = slice(t, t + (out[axis] - 1) * strides[axis] + 1, strides[axis])
            acc = _combine(kind, acc, y[tuple(index)])
        y = acc
        if fence and axis:
            y = lax.optimization_barrier(y)
    return y


def separable_fenced(x, kind, kernel, strides, padding):
    return separable(x, kind, kernel, strides, padding, fence=True)


def reduce_window(x, kind, kernel, strides, padding):
    init = _fill(x, kind)
    op = lax.max if kind == "max" else lax.add
    return lax.reduce_window(x, init, op, (1, *kernel, 1), (1, *strides, 1), ((0, 0), *padding, (0, 0)))


def concat_pad(x, kind, kernel, strides, padding):
    """Padding written as a concatenation with a fill block (one buffer), then the taps."""
    xp = x
    for i, (b, e) in enumerate(padding):
        parts = []
        shape = list(xp.shape)
        if b:
            shape[1 + i] = b
            parts.append(jnp.full(shape, _fill(x, kind), x.dtype))
        parts.append(xp)
        if e:
            shape[1 + i] = e
            parts.append(jnp.full(shape, _fill(x, kind), x.dtype))
        xp = jnp.concatenate(parts, axis=1 + i)
    return _taps_of(xp, kind, kernel, strides, _out(xp.shape, kernel, strides))


def _windows(x, kind, kernel, strides, padding):
    xp = jnp.pad(x, ((0, 0),) + tuple(padding) + ((0, 0),), constant_values=_fill(x, kind))
    out = _out(xp.shape, kernel, strides)
    return [xp[(slice(None),) + tuple(
        slice(tap[i], tap[i] + (out[i] - 1) * strides[i] + 1, strides[i]) for i in range(len(kernel))
    ) + (slice(None),)] for tap in np.ndindex(*kernel)]


def stack_first(x, kind, kernel, strides, padding):
    """The taps stacked on a new leading axis and reduced over it: one reduction, not a chain of adds."""
    stacked = jnp.stack(_windows(x, kind, kernel, strides, padding))
    return stacked.max(axis=0) if kind == "max" else stacked.sum(axis=0)


def stack_last(x, kind, kernel, strides, padding):
    stacked = jnp.stack(_windows(x, kind, kernel, strides, padding), axis=-1)
    return stacked.max(axis=-1) if kind == "max" else stacked.sum(axis=-1)


def separable_stack(x, kind, kernel, strides, padding):
    """One axis at a time, each axis's k taps stacked and reduced."""
    y = jnp.pad(x, ((0, 0),) + tuple(padding) + ((0, 0),), constant_values=_fill(x, kind))
    out = _out(y.shape, kernel, strides)
    for axis in reversed(range(len(kernel))):
        parts = []
        for t in range(kernel[axis]):
            index = [slice(None)] * y.ndim
            index[1 + axis] = slice(t, t + (out[axis] - 1) * strides[axis] + 1, strides[axis])
            parts.append(y[tuple(index)])
        stacked = jnp.stack(parts)
        y = stacked.max(axis=0) if kind == "max" else stacked.sum(axis=0)
    return y


def chain(x, kind, kernel, strides, padding):
    """The form before 2026-12-03 evening: the padded input's taps combined by a chain of adds (maxes)."""
    xp = jnp.pad(x, ((0, 0),) + tuple(padding) + ((0, 0),), constant_values=_fill(x, kind))
    return _taps_of(xp, kind, kernel, strides, _out(xp.shape, kernel, strides))


def chain_reduce_precision(x, kind, kernel, strides, padding):
    """The chain ended by an identity ``reduce_precision`` (float32's own widths): also one kernel."""
    return lax.reduce_precision(chain(x, kind, kernel, strides, padding), 8, 23)


FORMS = {"taps": taps, "chain": chain, "barrier": barrier, "concat_pad": concat_pad, "separable": separable,
         "separable_fenced": separable_fenced, "stack_first": stack_first, "stack_last": stack_last,
         "separable_stack": separable_stack, "chain_reduce_precision": chain_reduce_precision,
         "reduce_window": reduce_window}


def pool(form, kind, shape, consumer=True):
    kernel, strides = (3, 3), ((1, 1) if kind == "avg" else (2, 2))
    padding = [(1, 1), (1, 1)] if kind == "avg" else [(0, 0), (0, 0)]
    counts = None
    if kind == "avg":
        out = shape[1:3]
        counts = pooling._pool_counts(shape[1:3], out, kernel, strides, (1, 1), padding, True)
        counts = np.reshape(counts, counts.shape[2:] + (1,)).astype(np.float32)

    w = np.random.default_rng(1).standard_normal((shape[-1], 192), dtype=np.float32) / np.sqrt(shape[-1])

    def f(x):
        y = FORMS[form](x, kind, kernel, strides, padding)
        y = y if counts is None else y / counts
        if consumer:  # Inception's branch_pool: a 1x1 conv (the generated code's dot) and a Relu
            y = jax.nn.relu(jnp.einsum("nhwc,co->nhwo", y, w))
        return y

    return f


def whole_program(form, kind, shapes):
    fns = [pool(form, kind, s) for s in shapes]

    def f(*xs):
        return [fn(x) for fn, x in zip(fns, xs)]

    return f


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--kind", default="avg", choices=("avg", "max"))
    parser.add_argument("--forms", default=",".join(FORMS))
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    shapes = AVG_SHAPES if args.kind == "avg" else MAX_SHAPES
    forms = args.forms.split(",")
    rng = np.random.default_rng(0)
    xs = [jnp.asarray(rng.standard_normal(s, dtype=np.float32)) for s in shapes]
    reference = None
    compile_s = {f: [] for f in forms}
    run_us = {(f, s): [] for f in forms for s in shapes}
    kernels = {}
    for round_ in range(args.rounds):
        for form in forms:  # interleaved: the load moves every form alike
            fn = whole_program(form, args.kind, shapes)
            lowered = jax.jit(fn).lower(*xs)
            t0 = time.process_time()
            compiled = lowered.compile(OPTIONS)
            compile_s[form].append(time.process_time() - t0)
            if round_ == 0:
                text = compiled.as_text()
                entry = text[text.index("\nENTRY"):]
                kernels[form] = len(set(re.findall(r"fusion\(.*calls=%([\w.\-]+)", entry)))
                got = [np.asarray(v) for v in compiled(*xs)]
                if reference is None:
                    reference = got
                for g, r in zip(got, reference):
                    np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5)
            for s, x in zip(shapes, xs):
                one = jax.jit(pool(form, args.kind, s)).lower(x).compile(OPTIONS)
                one(x).block_until_ready()
                t0 = time.process_time()
                for _ in range(args.calls):
                    out = one(x)
                out.block_until_ready()
                run_us[(form, s)].append((time.process_time() - t0) / args.calls * 1e6)
    print(f"{args.kind} pools, {args.rounds} interleaved rounds; load {os.getloadavg()}")
    print(f"{'form':22} {'compile CPU s (median, min)':28} {'kernels':8} "
          + " ".join(f"{'x'.join(map(str, s[1:])):>13}" for s in shapes))
    for form in forms:
        c = compile_s[form]
        runs = " ".join(f"{statistics.median(run_us[(form, s)]):13.1f}" for s in shapes)
        print(f"{form:22} {statistics.median(c):8.3f} {min(c):8.3f}{'':11} {kernels[form]:8d} {runs}")


if __name__ == "__main__":
    main()
