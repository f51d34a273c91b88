"""Depthwise convolution forms for XLA CPU: compile time and latency of the three ways to write one.

A script, not a test: it prints a table. For MobileNet-style (3x3) and ConvNeXt-style (7x7) layer
shapes, six depthwise convolutions chained in one ``jax.jit`` (as in a network) written as

- ``grouped``: ``lax.conv_general_dilated`` with ``feature_group_count`` = channels;
- ``unrolled``: the sum of the k^2 shifted products written out (the generator's previous form);
- ``looped``: the same sum as a ``lax.fori_loop`` over the taps (``_depthwise_conv``, what the
  generated code calls for convolutions on ONNX's NCHW axes: 1-D and 3-D ones);
- ``channels_last``: ``_depthwise_conv_nhwc``, what the generated code calls for 2-D networks, which
  it runs channels-last (workbench/onnx_to_jax/layout.py): the taps written out up to 3x3, a loop
  over them for larger kernels. The chain transposes to NHWC once before its first layer and back
  after its last, as a network does at its input and output.

Chained directly, XLA fuses each written-out layer into the next and recomputes its taps, so the
``unrolled`` and 3x3 ``channels_last`` rows are pessimistic: in a network a 1x1 convolution separates the
depthwise layers (docs/onnx_to_jax_corpus.md has the whole-network comparison that chose the form).

Latency is the median over interleaved rounds (machine load hits every form alike); compile is
``jit(...).lower(...).compile()`` once per form. The max error is against ``grouped``.

    PYTHONPATH=$PWD python tests/benchmarks/bench_depthwise.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from workbench.onnx_to_jax.emitters.conv import _depthwise_conv, _depthwise_conv_nhwc

CHAIN = 6
SHAPES = [((1, 32, 112, 112), 3), ((1, 144, 28, 28), 3), ((1, 576, 7, 7), 3), ((1, 96, 56, 56), 7),
          ((1, 384, 14, 14), 7)]  # fmt: skip


def grouped(x, w):
    pad = w.shape[2] // 2
    return lax.conv_general_dilated(x, w, (1, 1), ((pad, pad), (pad, pad)), feature_group_count=x.shape[1])


def unrolled(x, w):
    pad, kernel = w.shape[2] // 2, w.shape[2]
    x = jnp.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    height, width = x.shape[2] - kernel + 1, x.shape[3] - kernel + 1
    y = None
    for i, j in np.ndindex(kernel, kernel):
        term = x[:, :, i : i + height, j : j + width] * jnp.reshape(w[:, 0, i, j], (1, -1, 1, 1))
        y = term if y is None else y + term
    return y


def looped(x, w):
    pad = w.shape[2] // 2
    return _depthwise_conv(x, w, (1, 1), ((pad, pad), (pad, pad)), (1, 1))


def channels_last(x, w):  # x is NHWC here (see chain)
    pad = w.shape[2] // 2
    return _depthwise_conv_nhwc(x, w, (1, 1), ((pad, pad), (pad, pad)), (1, 1))


FORMS = {"grouped": grouped, "unrolled": unrolled, "looped": looped, "channels_last": channels_last}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"| layer (N, C, H, W), k | form | compile (s) | latency x{CHAIN} (ms) | vs grouped | max error |")
    print("|---|---|---:|---:|---:|---:|")
    for shape, kernel in SHAPES:
        x = rng.standard_normal(shape).astype(np.float32)
        w = (rng.standard_normal((shape[1], 1, kernel, kernel)) / kernel).astype(np.float32)
        compiled, compile_s, results = {}, {}, {}
        for name, form in FORMS.items():
            def chain(x, w, form=form, nhwc=name == "channels_last"):
                x = jnp.transpose(x, (0, 2, 3, 1)) if nhwc else x
                for _ in range(CHAIN):
                    x = form(x, w)
                return jnp.transpose(x, (0, 3, 1, 2)) if nhwc else x

            start = time.perf_counter()
            compiled[name] = jax.jit(chain).lower(x, w).compile()
            compile_s[name] = time.perf_counter() - start
            results[name] = np.asarray(compiled[name](x, w))
        times: dict[str, list[float]] = {name: [] for name in FORMS}
        for _ in range(args.rounds):
            for name, run in compiled.items():
                start = time.perf_counter()
                run(x, w).block_until_ready()
                times[name].append(time.perf_counter() - start)
        base = statistics.median(times["grouped"])
        scale = float(np.max(np.abs(results["grouped"])))
        for name in FORMS:
            median = statistics.median(times[name])
            error = float(np.max(np.abs(results[name] - results["grouped"]))) / max(scale, 1.0)
            print(f"| {shape}, {kernel}x{kernel} | {name} | {compile_s[name]:.2f} | {median * 1e3:.2f} | "
                  f"{median / base:.2f}x | {error:.1e} |", flush=True)


if __name__ == "__main__":
    main()
