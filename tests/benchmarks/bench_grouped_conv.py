"""Forms of RegNetY-400MF's grouped 3x3 convolutions (8 channels per group) on XLA CPU: latency per layer shape.

A script, not a test: it prints a table. Each grouped convolution shape of torchvision's
regnet_y_400mf at the vision corpus's 96x96 input (channels-last, batch 1, bias and ReLU after it,
weights folded into the jitted function as ``wb.jit_forward`` has them, one XLA thread), written as

- ``xla``: ``lax.conv_general_dilated`` with ``feature_group_count`` (what the generated code ran
  before), compiled with XLA's default YNNPACK fusion (RegNet's options: YNNPACK's convolution) and as
  ``xla-off`` with YNNPACK fusing nothing (XLA's own grouped kernel);
- ``blockdiag``: a dense convolution (``lax.conv``) of the block-diagonal weight: groups x the
  multiply-adds, one YNNPACK convolution;
- ``gbmm``: the 9*8 columns of each group gathered (``_conv_im2col``'s positions) and one batched dot
  of (groups, positions, 72) by (groups, 72, 8);
- ``taps``: nine batched dots, one per tap, of (groups, positions, 8) by (groups, 8, 8);
- ``rot``: the 72 products written out elementwise (a depthwise sum of 9 taps x 8 channel rotations:
  rotation k multiplies input channel g*8 + (d + k) % 8 into output channel g*8 + d), one fused kernel;
- ``bdcol``: the block-diagonal dense weight as one dot over gathered windows (``_conv_im2col``);
- ``rgK``: every K neighbouring groups merged into one (block-diagonal inside), a grouped convolution
  of groups / K groups (``xla`` where K does not divide the groups);
- ``generated``: what the generated code runs (``_group_merge``: dense for 8 groups or fewer, pairs of
  groups merged for an even number of more, else ``xla``);
- ``mulred``: the gathered columns times the weight broadcast, summed over the 72 (a reduce);

and ``ort``: onnxruntime's grouped Conv + Relu of the same layer (NCHW, one thread). Latency is the
median over interleaved rounds of process CPU time per call; compile is not included. Every form is
checked against onnxruntime first. ``--forms`` picks columns.

    PYTHONPATH=$PWD /work/venv-o2j/bin/python tests/benchmarks/bench_grouped_conv.py [--rounds 15]

``--whole`` times the whole model instead (the vision corpus's legacy export, folded weights, one
thread): one generated module per variant, whose grouped convolutions (not the depthwise ones) are
replaced by the variant's forms, in interleaved calls with onnxruntime. A variant is
``name=rule``, where the rule names one form for every grouped convolution, or a per-layer choice:
``mix`` (the layer table's fastest per shape), ``bd8`` / ``bd13`` (dense at 8 / 13 groups or fewer,
else ``xla``), ``taps6`` (``taps`` on the 6x6 maps), ``merged`` (what ``_group_merge`` says), ``rotr``
(``rot`` as a reduce), ``padded`` (``merged``, an odd number of groups padded by a zero group and
paired); ``as-is`` runs the generated code unchanged, ``off`` with YNNPACK fusing nothing, ``iconv``
with YNNPACK running each convolution alone and nothing else (``LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION``),
``stem-dot`` with the stem as one dot (``_conv_as_stem_dot``); ``FORM+off`` / ``FORM+iconv``: a form
under those options. Findings: docs/onnx_to_jax_corpus.md, "RegNet's grouped convolutions merged".


    WORKBENCH_VISION_CORPUS=1 PYTHONPATH=$PWD /work/venv-o2j/bin/python tests/benchmarks/bench_grouped_conv.py \\
        --whole --variants base=xla,new=as-is,base2=xla,new2=as-is --rounds 41
"""

from __future__ import annotations

import argparse
import functools
import time

from tests.support.kernel_bench import ort_graph_session, time_interleaved
from tests.support.thread_limits import limit_xla_threads, ort_session

limit_xla_threads(1)

import jax  # noqa: E402 - after XLA_FLAGS: XLA reads them once
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax import lax  # noqa: E402

import onnxruntime as ort  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402

from workbench.onnx_to_jax.jit_options import LLVM_LEVEL, LLVM_LEVEL_CHOSEN, YNN_FUSION_TYPE, YNN_NONE  # noqa: E402

# the generated code (unchanged) compiled with other YNNPACK fusion types (``--whole``'s option rules)
OPTION_RULES = {"off": YNN_NONE, "iconv": "LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION"}

WIDTH = 8  # channels per group
# (label, input map, channels, stride): regnet_y_400mf's b.0 convolutions at 96x96
SHAPES = [
    ("48 s2 @48 (x1)", 48, 48, 2),
    ("104 s2 @24 (x1)", 24, 104, 2),
    ("104 @12 (x2)", 12, 104, 1),
    ("208 s2 @12 (x1)", 12, 208, 2),
    ("208 @6 (x5)", 6, 208, 1),
    ("440 s2 @6 (x1)", 6, 440, 2),
    ("440 @3 (x5)", 3, 440, 1),
]
PADDING = ((1, 1), (1, 1))


def xla(x, w, stride):
    return lax.conv_general_dilated(
        x, w, (stride, stride), PADDING, dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=x.shape[-1] // WIDTH,
    )


def _dense_weight(w):
    """The grouped HWIO weight (3, 3, 8, C) as the dense block-diagonal (3, 3, C, C) one (numpy)."""
    channels = w.shape[-1]
    groups = channels // WIDTH
    w5 = np.reshape(np.asarray(w), (3, 3, WIDTH, groups, WIDTH))
    dense = np.zeros((3, 3, groups, WIDTH, groups, WIDTH), np.asarray(w).dtype)
    for g in range(groups):
        dense[:, :, g, :, g, :] = w5[:, :, :, g, :]
    return np.reshape(dense, (3, 3, channels, channels))


def blockdiag(x, w, stride):
    return lax.conv_general_dilated(
        x, jnp.asarray(_dense_weight(w)), (stride, stride), PADDING, dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


def regroup(x, w, stride, k):
    """Every ``k`` neighbouring groups merged into one of 8 * k channels (block-diagonal inside): a grouped
    convolution of groups / k groups, k x the multiply-adds; ``xla`` where k does not divide the groups."""
    channels = x.shape[-1]
    groups = channels // WIDTH
    if groups % k:
        return xla(x, w, stride)
    merged = np.stack([_dense_weight(chunk) for chunk in np.split(np.asarray(w), groups // k, axis=-1)], axis=-2)
    merged = np.reshape(merged, (3, 3, WIDTH * k, channels))  # (3, 3, 8k, chunks * 8k)
    return lax.conv_general_dilated(
        x, jnp.asarray(merged), (stride, stride), PADDING, dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=groups // k,
    )


def bdcol(x, w, stride):
    from workbench.onnx_to_jax.emitters.conv import _conv_im2col

    return _conv_im2col(x, jnp.asarray(_dense_weight(w)), (stride, stride), PADDING)


def _columns(x, stride):
    """(N, H', W', groups, 72) columns: each group's 3x3x8 window, (i, j, c) order."""
    x = jnp.pad(x, ((0, 0),) + PADDING + ((0, 0),))
    batch, height, width, channels = x.shape
    out = [(height - 3) // stride + 1, (width - 3) // stride + 1]
    rows = np.arange(out[0])[:, None, None, None] * stride + np.arange(3)[None, None, :, None]
    cols = np.arange(out[1])[None, :, None, None] * stride + np.arange(3)[None, None, None, :]
    positions = np.reshape(rows * width + cols, -1).astype(np.int32)
    columns = jnp.reshape(x, (batch, height * width, channels))[:, positions]
    columns = jnp.reshape(columns, (batch, out[0], out[1], 3, 3, channels // WIDTH, WIDTH))
    columns = jnp.transpose(columns, (0, 1, 2, 5, 3, 4, 6))
    return jnp.reshape(columns, (batch, out[0], out[1], channels // WIDTH, 9 * WIDTH))


def _group_weight(w):
    """(groups, 72, 8): group g's (i, j, c) rows by its 8 outputs."""
    groups = w.shape[-1] // WIDTH
    w5 = np.reshape(np.asarray(w), (3, 3, WIDTH, groups, WIDTH))
    return jnp.asarray(np.reshape(np.transpose(w5, (3, 0, 1, 2, 4)), (groups, 9 * WIDTH, WIDTH)))


def gbmm(x, w, stride):
    y = jnp.einsum("nhwgk,gkd->nhwgd", _columns(x, stride), _group_weight(w))
    return jnp.reshape(y, y.shape[:3] + (-1,))


def mulred(x, w, stride):
    y = jnp.sum(_columns(x, stride)[..., None] * _group_weight(w), axis=-2)
    return jnp.reshape(y, y.shape[:3] + (-1,))


def taps(x, w, stride):
    x = jnp.pad(x, ((0, 0),) + PADDING + ((0, 0),))
    out = (x.shape[1] - 3) // stride + 1
    span = (out - 1) * stride + 1
    groups = x.shape[-1] // WIDTH
    w5 = jnp.asarray(np.transpose(np.reshape(np.asarray(w), (3, 3, WIDTH, groups, WIDTH)), (0, 1, 3, 2, 4)))
    y = None
    for i, j in np.ndindex(3, 3):
        window = x[:, i : i + span : stride, j : j + span : stride, :]
        window = jnp.reshape(window, window.shape[:3] + (groups, WIDTH))
        term = jnp.einsum("nhwgc,gcd->nhwgd", window, w5[i, j])
        y = term if y is None else y + term
    return jnp.reshape(y, y.shape[:3] + (-1,))


def _rotation_partials(x, w, stride):
    """Per channel rotation k, the sum over the 9 taps of the rotated window times its per-channel weight."""
    x = jnp.pad(x, ((0, 0),) + PADDING + ((0, 0),))
    span = ((x.shape[1] - 3) // stride) * stride + 1
    channels = x.shape[-1]
    outputs = np.arange(channels)
    w = np.asarray(w)
    partials = []
    for k in range(WIDTH):
        groups = jnp.reshape(x, x.shape[:-1] + (channels // WIDTH, WIDTH))
        rotated = jnp.reshape(jnp.concatenate([groups[..., k:], groups[..., :k]], axis=-1), x.shape)
        weight = w[:, :, (outputs % WIDTH + k) % WIDTH, outputs]
        partial = None
        for i, j in np.ndindex(3, 3):
            term = rotated[:, i : i + span : stride, j : j + span : stride] * weight[i, j]
            partial = term if partial is None else partial + term
        partials.append(partial)
    return partials


def rot(x, w, stride):
    partials = _rotation_partials(x, w, stride)
    y = partials[0]
    for partial in partials[1:]:
        y = y + partial
    return y


def rotr(x, w, stride):
    """``rot`` with the eight rotations' partial sums stacked and reduced (a reduce, which XLA does not
    duplicate into each consumer as it may an elementwise kernel)."""
    return jnp.sum(jnp.stack(_rotation_partials(x, w, stride)), axis=0)


def generated(x, w, stride):
    """What the generated code runs (``_conv``'s ``merge_groups``: workbench/onnx_to_jax/emitters/grouped.py)."""
    from workbench.onnx_to_jax.emitters.grouped import _group_merge, _merged_group_weight

    groups = x.shape[-1] // WIDTH
    merge = _group_merge(groups, WIDTH)
    return lax.conv_general_dilated(
        x, _merged_group_weight(w, groups, merge), (stride, stride), PADDING,
        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=groups // merge,
    )


def _small_blockdiag(x, w, stride, most=8):
    return blockdiag(x, w, stride) if x.shape[-1] // WIDTH <= most else xla(x, w, stride)


def _merged(x, w, stride):
    """Dense (block-diagonal) at 8 groups or fewer, else pairs of groups merged where the groups are even."""
    groups = x.shape[-1] // WIDTH
    if groups <= 8:
        return blockdiag(x, w, stride)
    return regroup(x, w, stride, 2) if groups % 2 == 0 else xla(x, w, stride)


def _padded_pairs(x, w, stride):
    """``_merged`` with an odd number of more than 8 groups padded by one zero group, then paired
    (the output's extra channels cropped)."""
    groups = x.shape[-1] // WIDTH
    if groups <= 8 or groups % 2 == 0:
        return _merged(x, w, stride)
    x = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (0, WIDTH)))
    w = np.concatenate([np.asarray(w), np.zeros((3, 3, WIDTH, WIDTH), np.asarray(w).dtype)], axis=-1)
    return regroup(x, w, stride, 2)[..., : groups * WIDTH]


def _taps6(x, w, stride):
    return taps(x, w, stride) if x.shape[1] == 6 else xla(x, w, stride)


FORMS = {
    "xla": xla, "xla-off": xla, "generated": generated, "blockdiag": blockdiag, "bdcol": bdcol,
    **{f"rg{k}": functools.partial(regroup, k=k) for k in (2, 3, 5, 11, 13)},
    "gbmm": gbmm, "taps": taps, "rot": rot, "mulred": mulred,
}


def _ort_layer(w: np.ndarray, b: np.ndarray, size: int, stride: int) -> ort.InferenceSession:
    """onnxruntime session of a grouped Conv (OIHW weight, NCHW input) + Relu, one thread."""
    groups = w.shape[-1] // WIDTH
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], strides=[stride, stride], group=groups),
        helper.make_node("Relu", ["c"], ["y"]),
    ]
    return ort_graph_session(
        nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, w.shape[-1], size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        {"w": np.ascontiguousarray(w.transpose(3, 2, 0, 1)), "b": b},
    )


def _layer(form, x, w, b, stride):
    return jax.nn.relu(form(x, w, stride) + b)


def _mix(x, w, stride):
    """The layer table's fastest form per shape (2026-12-04, load 8)."""
    groups, size = x.shape[-1] // WIDTH, x.shape[1]
    if groups <= 8:
        return blockdiag(x, w, stride)
    if size == 6 or (size == 12 and stride == 2):
        return taps(x, w, stride)
    if stride == 1:
        return rot(x, w, stride)
    return xla(x, w, stride)


def _variant_conv(original, form):
    """``_conv`` of the generated code with its grouped (not depthwise) 3x3 convolutions run as ``form``."""

    def conv(x, w, b, strides, pads, dilations, group, auto_pad, channels_last=False, hwio=False, **options):
        grouped = 1 < group < x.shape[-1] and channels_last and hwio and w.shape[2] == WIDTH
        if not grouped or tuple(pads) != (1, 1, 1, 1) or w.shape[:2] != (3, 3):
            return original(x, w, b, strides, pads, dilations, group, auto_pad, channels_last, hwio, **options)
        return form(x, w, strides[0]) + b

    return conv


def whole(variants: dict[str, str], rounds: int) -> None:
    """The whole model per variant, interleaved with onnxruntime (``--whole``)."""
    import workbench as wb
    from tests.onnx_to_jax.test_corpus_vision import export
    from workbench.onnx_to_jax.api import generate_module

    model, feeds = export("regnet_y_400mf", "legacy")
    session = ort_session(model, 1)
    feed = {session.get_inputs()[0].name: feeds[0]}
    expected = session.run(None, feed)[0]
    forms = {
        **FORMS, "mix": _mix, "rotr": rotr, "bd8": _small_blockdiag,
        "bd13": functools.partial(_small_blockdiag, most=13), "taps6": _taps6, "merged": _merged,
        "padded": _padded_pairs,
    }
    calls = {}
    for name, variant in variants.items():
        rule, _, option_rule = variant.partition("+")  # FORM+OPTIONS: a form compiled with OPTION_RULES' options
        option_rule = option_rule or (rule if rule in OPTION_RULES else "")
        generated = generate_module(model)
        namespace = generated.forward.__globals__
        if rule == "stem-dot":  # the generated code with the stem as one dot (_conv_as_stem_dot)
            namespace["_conv"] = functools.partial(namespace["_conv"], stem_as_dot=True)
        elif rule != "as-is" and rule not in OPTION_RULES:
            namespace["_conv"] = _variant_conv(namespace["_conv"], forms[rule])
        params = {k: jax.device_put(v) for k, v in generated.params.items()}
        start = time.process_time()
        if option_rule:
            fn = jax.jit(functools.partial(generated.forward_prepared, generated.prepare(params)),
                         compiler_options={YNN_FUSION_TYPE: OPTION_RULES[option_rule], LLVM_LEVEL: LLVM_LEVEL_CHOSEN})
        else:
            fn = wb.jit_forward(generated.forward, params)
        y = np.asarray(fn(*feeds))
        first = time.process_time() - start
        print(f"{name}: first call {first:.2f} CPU s, max |JAX - ORT| {np.max(np.abs(y - expected)):.1e}", flush=True)
        calls[name] = lambda fn=fn: jax.block_until_ready(fn(*feeds))
    calls["ort"] = lambda: session.run(None, feed)
    times = time_interleaved(calls, rounds, 1)
    medians = {key: times.median(key) for key in calls}
    print(f"load average {times.load_range()}, median of {rounds} rounds, CPU ms per call: "
          + ", ".join(f"{key} {m:.2f} ({m / medians['ort']:.2f}x)" for key, m in medians.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=20, help="calls per timing")
    parser.add_argument("--forms", default=",".join(FORMS), help="comma-separated forms")
    parser.add_argument("--whole", action="store_true", help="time the whole model per variant instead")
    parser.add_argument("--variants", default="base=xla,new=as-is,base2=xla,new2=as-is")
    args = parser.parse_args()
    if args.whole:
        whole(dict(item.split("=") for item in args.variants.split(",")), args.rounds)
        return
    forms = {name: FORMS[name] for name in args.forms.split(",")}
    columns = (*forms, "ort")
    rng = np.random.default_rng(0)
    compiled = {}
    for label, size, channels, stride in SHAPES:
        x_np = rng.standard_normal((1, size, size, channels)).astype(np.float32)
        w_np = (rng.standard_normal((3, 3, WIDTH, channels)) / np.sqrt(9 * WIDTH)).astype(np.float32)
        b_np = rng.standard_normal(channels).astype(np.float32)
        x, w, b = jnp.asarray(x_np), jnp.asarray(w_np), jnp.asarray(b_np)
        session, x_nchw = _ort_layer(w_np, b_np, size, stride), np.ascontiguousarray(x_np.transpose(0, 3, 1, 2))
        reference = session.run(None, {"x": x_nchw})[0].transpose(0, 2, 3, 1)
        for name, form in forms.items():
            options = {YNN_FUSION_TYPE: YNN_NONE} if name.endswith("-off") else {}
            fn = jax.jit(functools.partial(_layer, form, w=w, b=b, stride=stride), compiler_options=options)
            y = np.asarray(fn(x))
            np.testing.assert_allclose(y, reference, rtol=1e-4, atol=1e-4, err_msg=f"{label} {name}")
            compiled[label, name] = lambda fn=fn, x=x: fn(x).block_until_ready()
        compiled[label, "ort"] = lambda session=session, x=x_nchw: session.run(None, {"x": x})
    times = time_interleaved(compiled, args.rounds, args.calls)
    print(f"jax {jax.__version__}, load average {times.load_range()}, median of {args.rounds} rounds, CPU ms per call")
    print(f"| grouped 3x3 layer | out map | MMAC | {' | '.join(columns)} | fastest form | fastest / ort |")
    print("|---|---:|---:|" + "---:|" * len(columns) + "---|---:|")
    for label, size, channels, stride in SHAPES:
        medians = {name: times.median((label, name)) for name in columns}
        candidates = {name: value for name, value in medians.items() if name != "ort"}
        fastest = min(candidates, key=candidates.get)
        out = -(-size // stride)
        macs = out * out * channels * WIDTH * 9 / 1e6
        cells = " | ".join(f"{medians[name]:.3f}" for name in columns)
        ratio = candidates[fastest] / medians["ort"]
        print(f"| {label} | {out}x{out} | {macs:.2f} | {cells} | {fastest} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
