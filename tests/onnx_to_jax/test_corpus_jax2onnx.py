"""Corpus: models people write in JAX, exported by jax2onnx, read back to JAX, against onnxruntime.

Opt-in by installation: jax2onnx is not in CI's lock (it pins its own onnx-ir and ml_dtypes ranges), so the
module skips without it (``SKIP_REASONS``). Run it in a side venv::

    python3 -m venv /path/venv-jax2onnx && /path/venv-jax2onnx/bin/pip install jax2onnx -e ".[test]"
    PYTHONPATH=$PWD /path/venv-jax2onnx/bin/python -m pytest tests/onnx_to_jax/test_corpus_jax2onnx.py

``python -m tests.onnx_to_jax.test_corpus_jax2onnx [names]`` prints the table of docs/onnx_to_jax_corpus.md.
Measured with jax2onnx 0.17.1 (onnx-ir 1.1.0) beside the project's lock (jax 0.10.2, onnx 1.23.2, onnxruntime
1.31.1).

The models are the benchmark set's (tests/support/benchmark_set.py, test size: transformers' Flax GPT-2, BERT
and ViT, Haiku's ResNet-18, an Equinox encoder, an NNX GPT, the zoo's GPT and ResNet) and Keras 3's
MobileNetV2 on JAX, each with seeded random weights built in code, exported by jax2onnx at its default opset
(23) with static shapes (batch 1), with a symbolic batch (``B``, run at batch 2) and, for the NHWC image
models, with jax2onnx's ``inputs_as_nchw`` (the file takes NCHW images). Each file is read by
``wb.to_jax`` and compared with onnxruntime on the same file (tests/support/corpus.py's tolerance), eagerly
and under ``wb.jit_forward``. What does not run, each with its measured reason: ``LIMITS`` (jax2onnx cannot
export the model, or onnxruntime refuses its file; the test checks that it still fails).

jax2onnx writes graphs unlike the other exporters': opset 23, NNX/Equinox modules as inlined functions, NHWC
convolutions as Transpose pairs around NCHW Conv (with ``value_info`` that states NHWC shapes for values laid
out NCHW, which the reader ignores with a warning, as onnxruntime does), symbolic dimensions computed with
Shape/Gather/Concat chains, and flags such as ``deterministic`` as graph inputs
(tests/onnx_to_jax/test_jax2onnx_forms.py has the forms the reader got wrong, built with onnx.helper).
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

# every reason these tests do not run, in one place
SKIP_REASONS = {
    "no-jax2onnx": "jax2onnx is not installed: not in CI's lock, install it in a side venv",
    "keras-backend": "keras is imported with another backend than JAX; run this module in a process of its own",
}

jax2onnx = pytest.importorskip("jax2onnx", reason=SKIP_REASONS["no-jax2onnx"])
os.environ.setdefault("KERAS_BACKEND", "jax")  # Keras 3 on JAX, before anything imports keras

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import onnx  # noqa: E402

import workbench as wb  # noqa: E402
from tests.support.benchmark_set import SET, BenchModel  # noqa: E402
from tests.support.corpus import assert_outputs_match, depth, failure_row, table_row  # noqa: E402
from tests.support.harness import run_onnx  # noqa: E402

pytestmark = [pytest.mark.corpus, pytest.mark.slow]

SYMBOLIC_BATCH = 2  # the batch a symbolic-batch export runs at


@dataclass(frozen=True)
class Export:
    """One model as handed to jax2onnx: the callable, its input specs and the inputs it runs on."""

    fn: Callable
    specs: list[jax.ShapeDtypeStruct]
    inputs: list[np.ndarray]  # as the ONNX file takes them (NCHW images for ``nchw``)
    nchw: bool = False


def keras_mobilenet_logits() -> BenchModel:
    """Keras 3's MobileNetV2 (alpha 0.35, 32 x 32, 10 classes) on JAX through ``stateless_call``: logits (its
    softmax over a random network's classes spans less than the tolerance), BatchNorm statistics measured on
    random images (momentum 0, one training-mode call), as after training."""
    import keras

    if keras.backend.backend() != "jax":
        pytest.skip(SKIP_REASONS["keras-backend"])
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=10,
                                           classifier_activation=None)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.0
    trainable = [v.value for v in model.trainable_variables]
    batch = np.random.default_rng(1).uniform(0.0, 1.0, (4, 32, 32, 3)).astype(np.float32)
    _, non_trainable = model.stateless_call(trainable, [v.value for v in model.non_trainable_variables], batch,
                                            training=True)

    def forward(x: jax.Array) -> jax.Array:
        return model.stateless_call(trainable, non_trainable, x, training=False)[0]

    sample = np.random.default_rng(0).uniform(0.0, 1.0, (1, 32, 32, 3)).astype(np.float32)
    return BenchModel(forward, [jax.ShapeDtypeStruct(sample.shape, sample.dtype)], [sample])


def zoo_resnet_eval() -> BenchModel:
    """The zoo's ResNet in evaluation mode (``nnx.Module.eval``: BatchNorm on its randomized moving statistics),
    as one exports it; in training mode jax2onnx exports inference mode anyway, with a warning."""
    from flax import nnx

    model = SET["zoo_resnet"]("test")
    assert isinstance(model.fn, nnx.Module)
    model.fn.eval()
    return model


def nnx_encoder_functions() -> BenchModel:
    """An NNX encoder whose blocks and their attention are jax2onnx ``onnx_function`` s (the file keeps each as a
    model-local function calling the other, in domains of their own), as jax2onnx's DINO and GPT examples
    are written: token and position embeddings, 2 pre-LN blocks (d=32, 4 heads, exact gelu), a final norm."""
    from flax import nnx

    d, heads, seq, vocab = 32, 4, 12, 100

    @jax2onnx.onnx_function
    class Attention(nnx.Module):
        def __init__(self, rngs: nnx.Rngs) -> None:
            self.mha = nnx.MultiHeadAttention(num_heads=heads, in_features=d, decode=False, rngs=rngs)

        def __call__(self, x: jax.Array) -> jax.Array:
            return self.mha(x)

    @jax2onnx.onnx_function
    class Block(nnx.Module):
        def __init__(self, rngs: nnx.Rngs) -> None:
            self.ln1, self.ln2 = nnx.LayerNorm(d, rngs=rngs), nnx.LayerNorm(d, rngs=rngs)
            self.attention = Attention(rngs)
            self.up, self.down = nnx.Linear(d, 4 * d, rngs=rngs), nnx.Linear(4 * d, d, rngs=rngs)

        def __call__(self, x: jax.Array) -> jax.Array:
            x = x + self.attention(self.ln1(x))
            return x + self.down(jax.nn.gelu(self.up(self.ln2(x)), approximate=False))

    class Encoder(nnx.Module):
        def __init__(self, rngs: nnx.Rngs) -> None:
            self.tokens, self.positions = nnx.Embed(vocab, d, rngs=rngs), nnx.Embed(seq, d, rngs=rngs)
            self.blocks = nnx.List([Block(rngs) for _ in range(2)])
            self.norm = nnx.LayerNorm(d, rngs=rngs)

        def __call__(self, ids: jax.Array) -> jax.Array:
            x = self.tokens(ids) + self.positions(jnp.arange(ids.shape[1]))[None]
            for block in self.blocks:
                x = block(x)
            return self.norm(x)

    ids = np.random.default_rng(0).integers(0, vocab, (1, seq)).astype(np.int32)
    return BenchModel(Encoder(nnx.Rngs(0)), [jax.ShapeDtypeStruct(ids.shape, ids.dtype)], [ids])


MODELS: dict[str, Callable[[], BenchModel]] = {
    **{name: (lambda build=build: build("test")) for name, build in SET.items()
       if name not in ("keras_mobilenet", "zoo_resnet")},
    "zoo_resnet": zoo_resnet_eval,
    "keras_mobilenet": keras_mobilenet_logits,
    "nnx_encoder_functions": nnx_encoder_functions,
}
# static: batch 1 as built; batch: a symbolic batch "B", run at SYMBOLIC_BATCH; nchw: jax2onnx's
# ``inputs_as_nchw`` (the file takes NCHW images and transposes them to the model's NHWC), for NHWC image models
VARIANTS = ("static", "batch", "nchw")
NHWC_IMAGES = {"haiku_resnet18", "zoo_resnet", "keras_mobilenet"}
# jax2onnx's failures and onnxruntime's (not the reader's), with the measured reason
LIMITS: dict[tuple[str, str], str] = {
    ("hf_gpt2", "batch"): "jax2onnx 0.17.1's export raises on transformers' Flax GPT-2 with a symbolic batch: "
                          "\"InconclusiveDimensionOperation: Symbolic dimension 'B' used in a context that requires "
                          "a constant\"",
    ("hf_bert", "static"): "jax2onnx 0.17.1 writes the attention mask's product as an Einsum of float and int32 "
                           "operands; onnxruntime: 'Type parameter (T) of Optype (Einsum) bound to different types'",
    ("hf_bert", "batch"): "as GPT-2's: jax2onnx's export raises 'Symbolic dimension 'B' used in a context that "
                          "requires a constant'",
    ("haiku_resnet18", "static"): "jax2onnx 0.17.1 writes Haiku's max_pool (window (1, 3, 3, 1) over NHWC) as a "
                                  "MaxPool with a 4-D kernel over an unsqueezed tensor; onnxruntime: 'Unsupported "
                                  "pooling size' (its CPU MaxPool has at most 3 spatial axes)",
    ("haiku_resnet18", "batch"): "as static: a MaxPool with a 4-D kernel, which onnxruntime refuses",
    ("haiku_resnet18", "nchw"): "as static: a MaxPool with a 4-D kernel, which onnxruntime refuses",
}

CASES = [(name, variant) for name in MODELS for variant in VARIANTS if variant != "nchw" or name in NHWC_IMAGES]


def _batched(array: np.ndarray) -> np.ndarray:
    """``array`` (batch 1) and a second example: the first reversed along its last axis."""
    return np.concatenate([array, np.flip(array, axis=-1)], axis=0)


def export_of(name: str, variant: str) -> Export:
    """The model's callable with static specs (``static``, ``nchw``) or a symbolic batch ``B`` (``batch``)."""
    model = MODELS[name]()
    if variant in ("static", "nchw"):
        specs = [jax.ShapeDtypeStruct(x.shape, x.dtype) for x in model.inputs]
        if variant == "nchw":
            return Export(model.fn, specs, [np.ascontiguousarray(np.transpose(model.inputs[0], (0, 3, 1, 2)))],
                          nchw=True)
        return Export(model.fn, specs, list(model.inputs))
    specs = [jax.ShapeDtypeStruct(("B", *x.shape[1:]), x.dtype) for x in model.inputs]
    return Export(model.fn, specs, [_batched(x) for x in model.inputs])


def convert(name: str, variant: str) -> tuple[onnx.ModelProto, list[np.ndarray]]:
    """jax2onnx's export of the model and the inputs to run it on."""
    export = export_of(name, variant)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # jax2onnx's own deprecation and layout notes
        model = jax2onnx.to_onnx(export.fn, export.specs, inputs_as_nchw=[0] if export.nchw else None)
    return model, export.inputs


def limit_error(name: str, variant: str) -> str:
    """The error of a ``LIMITS`` entry, which must still fail: jax2onnx's export or onnxruntime's run."""
    try:
        model, feeds = convert(name, variant)
        run_onnx(model, feeds)
    except Exception as error:  # noqa: BLE001 - jax2onnx and onnxruntime raise their own exception types
        return f"{type(error).__name__}: {error}"
    raise AssertionError(f"{name} ({variant}) exports and runs in onnxruntime now: remove it from LIMITS")


def check(model: onnx.ModelProto, feeds: list[np.ndarray]) -> dict[str, float]:
    """Generated JAX vs onnxruntime on ``model``, eagerly and under ``wb.jit_forward``; the table's figures."""
    expected = run_onnx(model, feeds)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", wb.WorkbenchWarning)  # jax2onnx's stale NHWC value_info (see above)
        forward, params = wb.to_jax(model)
    eager = forward(params, *feeds)
    ratios = assert_outputs_match(model, expected, eager if isinstance(eager, tuple) else (eager,))
    run = wb.jit_forward(forward, params)
    start = time.perf_counter()
    got = jax.block_until_ready(run(*feeds))
    first = time.perf_counter() - start
    ratios += assert_outputs_match(model, expected, got if isinstance(got, tuple) else (got,))
    return {"nodes": len(model.graph.node), "depth": depth(model), "first_jit_s": first,
            "error_over_tolerance": max(ratios, default=0.0)}


@pytest.mark.parametrize(("name", "variant"), CASES, ids=[f"{n}-{v}" for n, v in CASES])
def test_jax2onnx_model_matches_onnxruntime(name, variant):
    if (name, variant) in LIMITS:
        limit_error(name, variant)
        pytest.skip(LIMITS[name, variant])
    model, feeds = convert(name, variant)
    check(model, feeds)


def main(names: list[str]) -> None:
    """Print the docs' table: one row per model and variant (of the named models, or all)."""
    print("| model | form | nodes | depth | first jit (s) | max error / tolerance |")
    print("|---|---|---:|---:|---:|---:|")
    for name, variant in CASES:
        if names and name not in names:
            continue
        if (name, variant) in LIMITS:
            try:
                limit_error(name, variant)
            except AssertionError as error:
                print(f"| {name} | {variant} | FAILED: {error} ||||")
                continue
            print(f"| {name} | {variant} | limit: {LIMITS[name, variant]} ||||")
            continue
        try:
            model, feeds = convert(name, variant)
            row = check(model, feeds)
        except Exception as error:  # noqa: BLE001 - the table reports a failing model and goes on
            print(failure_row((name, variant), error))
            continue
        print(table_row((name, variant), row), flush=True)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
