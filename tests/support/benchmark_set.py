"""The conversion benchmark's model set: models written by others, as their users write them, built in code.

Random weights, nothing downloaded. Each builder takes a ``size`` (``"bench"``: the size the benchmark
measures; ``"test"``: small, for the node-budget tests) and returns a :class:`BenchModel`: the callable as a
user would hand it to a converter, its input specs (static shapes: batch 1; or symbolic batch/sequence
dims where the model allows, for the tests), concrete inputs, and where one exists a PyTorch twin (the
same architecture and configuration in PyTorch, for torch.onnx).

Set: GPT-2, BERT and ViT from Hugging Face transformers' Flax models, Haiku's ResNet-18, an Equinox
transformer encoder, Keras 3's MobileNetV2 (on JAX, through ``stateless_call``), a GPT written with
``nnx.MultiHeadAttention`` differently from the zoo's (separate head, exact gelu, a ``jnp.tril`` mask),
and the zoo's own GPT-12 and ResNet. The libraries are imported inside the builders.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tests.support.trained_like import fill_zero_initialised


@dataclass
class BenchModel:
    """One model of the set: the callable, its specs and inputs, and an optional PyTorch twin."""

    fn: Callable[..., Any]
    specs: list[Any]
    inputs: list[np.ndarray]
    # () -> (torch module, example inputs as torch tensors): the same architecture in PyTorch
    torch_twin: Callable[[], tuple[Any, tuple[Any, ...]]] | None = None
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _tokens(vocab: int, batch: int, seq: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, vocab, (batch, seq)).astype(np.int32)


def _images(batch: int, size: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, size, size, channels)).astype(np.float32)


def _spec(array: np.ndarray, symbolic: dict[int, str] | None = None) -> jax.ShapeDtypeStruct:
    """The spec of ``array``, with the axes in ``symbolic`` named (``{0: "B"}``: a symbolic batch)."""
    shape: list[Any] = list(array.shape)
    for axis, name in (symbolic or {}).items():
        shape[axis] = name
    return jax.ShapeDtypeStruct(tuple(shape), array.dtype)


# ----------------------------------------------------------------------------- Hugging Face transformers
_HF_BENCH = {"vocab": 1000, "hidden": 256, "layers": 12, "heads": 8, "seq": 64}
_HF_TEST = {"vocab": 100, "hidden": 32, "layers": 2, "heads": 4, "seq": 12}


def hf_gpt2(size: str = "bench", *, symbolic: bool = False) -> BenchModel:
    """transformers' FlaxGPT2LMHeadModel (12 layers, d=256, 8 heads, seq 64 at bench size); logits."""
    import transformers

    c = _HF_BENCH if size == "bench" else _HF_TEST
    kwargs = dict(vocab_size=c["vocab"], n_embd=c["hidden"], n_layer=c["layers"], n_head=c["heads"],
                  n_positions=c["seq"], resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    model = transformers.FlaxGPT2LMHeadModel(transformers.GPT2Config(**kwargs), seed=0)
    params = model.params

    def forward(input_ids: jax.Array) -> jax.Array:
        return model(input_ids=input_ids, params=params, train=False).logits

    ids = _tokens(c["vocab"], 1, c["seq"])

    def twin() -> tuple[Any, tuple[Any, ...]]:
        import torch

        torch.manual_seed(0)
        net = transformers.GPT2LMHeadModel(transformers.GPT2Config(**kwargs, use_cache=False)).eval()
        return _LogitsOnly(net), (torch.from_numpy(ids.astype(np.int64)),)

    # symbolic batch only: the model slices its causal mask to min(n_positions, T), which broadcasts with a symbolic T
    # only under wb.to_onnx(..., constraints=["T <= 64"]) (checked at T = 32 and 63, 2026-12-06), an argument the
    # benchmark's peers do not take
    return BenchModel(forward, [_spec(ids, {0: "B"} if symbolic else None)], [ids], twin)


def hf_bert(size: str = "bench", *, symbolic: bool = False) -> BenchModel:
    """transformers' FlaxBertModel (12 layers, d=256, 8 heads, seq 64 at bench size) with an attention mask."""
    import transformers

    c = _HF_BENCH if size == "bench" else _HF_TEST
    kwargs = dict(vocab_size=c["vocab"], hidden_size=c["hidden"], num_hidden_layers=c["layers"],
                  num_attention_heads=c["heads"], intermediate_size=4 * c["hidden"], max_position_embeddings=c["seq"],
                  hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = transformers.FlaxBertModel(transformers.BertConfig(**kwargs), seed=0)
    params = model.params

    def forward(input_ids: jax.Array, attention_mask: jax.Array) -> jax.Array:
        return model(input_ids=input_ids, attention_mask=attention_mask, params=params, train=False).last_hidden_state

    ids = _tokens(c["vocab"], 1, c["seq"])
    mask = np.ones_like(ids)
    mask[:, c["seq"] - 4:] = 0

    def twin() -> tuple[Any, tuple[Any, ...]]:
        import torch

        torch.manual_seed(0)
        net = transformers.BertModel(transformers.BertConfig(**kwargs), add_pooling_layer=False).eval()
        return _HiddenOnly(net), (torch.from_numpy(ids.astype(np.int64)), torch.from_numpy(mask.astype(np.int64)))

    dims = {0: "B", 1: "T"} if symbolic else None
    return BenchModel(forward, [_spec(ids, dims), _spec(mask, dims)], [ids, mask], twin)


def hf_vit(size: str = "bench", *, symbolic: bool = False) -> BenchModel:
    """transformers' FlaxViTModel (image 96, patch 8, 12 layers, d=192, 3 heads at bench size); NHWC pixels."""
    import transformers

    if size == "bench":
        kwargs = dict(image_size=96, patch_size=8, hidden_size=192, num_hidden_layers=12, num_attention_heads=3,
                      intermediate_size=768)
    else:
        kwargs = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=64)
    kwargs.update(num_channels=3, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = transformers.FlaxViTModel(transformers.ViTConfig(**kwargs), seed=0, add_pooling_layer=False)
    params = model.params

    def forward(pixels: jax.Array) -> jax.Array:  # FlaxViT takes NCHW like the PyTorch model and transposes
        return model(pixel_values=pixels, params=params, train=False).last_hidden_state

    pixels = np.transpose(_images(1, kwargs["image_size"]), (0, 3, 1, 2)).copy()

    def twin() -> tuple[Any, tuple[Any, ...]]:
        import torch

        torch.manual_seed(0)
        net = transformers.ViTModel(transformers.ViTConfig(**kwargs), add_pooling_layer=False).eval()
        return _HiddenOnly(net, key="pixel_values"), (torch.from_numpy(pixels),)

    return BenchModel(forward, [_spec(pixels, {0: "B"} if symbolic else None)], [pixels], twin)


def _torch_wrapper(net: Any, attribute: str, key: str | None) -> Any:
    """A torch module returning one tensor of a transformers model's output (torch imported only here)."""
    import torch

    class Wrapper(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, *args: Any) -> Any:
            if key is not None:
                return getattr(self.net(**{key: args[0]}), attribute)
            return getattr(self.net(*args), attribute)

    return Wrapper().eval()


def _LogitsOnly(net: Any) -> Any:  # noqa: N802 - reads as the module it builds
    return _torch_wrapper(net, "logits", None)


def _HiddenOnly(net: Any, key: str | None = None) -> Any:  # noqa: N802
    return _torch_wrapper(net, "last_hidden_state", key)


# ----------------------------------------------------------------------------- Haiku
def haiku_resnet18(size: str = "bench", *, symbolic: bool = False) -> BenchModel:
    """dm-haiku's ``hk.nets.ResNet18`` in inference mode (BatchNorm on its moving statistics); NHWC images."""
    import haiku as hk

    image = 64 if size == "bench" else 32

    def net(x: jax.Array, is_training: bool) -> jax.Array:
        return hk.nets.ResNet18(10, resnet_v2=False)(x, is_training=is_training)

    transformed = hk.transform_with_state(net)
    sample = _images(1, image)
    params, state = transformed.init(jax.random.key(0), sample, is_training=True)
    # Haiku zero-initialises the logits and each block's last BatchNorm scale: fresh, the network outputs 0
    params = fill_zero_initialised(params, seed=2)
    # moving statistics that differ from the initial zeros/ones, as after training
    state = jax.tree_util.tree_map(lambda s: s + 0.1 * jax.random.uniform(jax.random.key(1), s.shape), state)

    def forward(x: jax.Array) -> jax.Array:
        return transformed.apply(params, state, None, x, is_training=False)[0]

    return BenchModel(forward, [_spec(sample, {0: "B"} if symbolic else None)], [sample],
                      notes="no PyTorch twin (torchvision is not a dependency)")


# ----------------------------------------------------------------------------- Equinox
def eqx_transformer(size: str = "bench", *, symbolic: bool = False) -> BenchModel:
    """An Equinox encoder as its docs write one: per-token layers vmapped over the sequence,
    ``eqx.nn.MultiheadAttention``, pre-LN, gelu MLP (6 layers, d=256, 8 heads, seq 64 at bench size)."""
    import equinox as eqx

    layers, d, heads, seq, vocab = (6, 256, 8, 64, 1000) if size == "bench" else (2, 32, 4, 12, 100)

    class Block(eqx.Module):
        attention: eqx.nn.MultiheadAttention
        norm1: eqx.nn.LayerNorm
        norm2: eqx.nn.LayerNorm
        up: eqx.nn.Linear
        down: eqx.nn.Linear

        def __init__(self, key: jax.Array) -> None:
            k1, k2, k3 = jax.random.split(key, 3)
            self.attention = eqx.nn.MultiheadAttention(heads, d, key=k1)
            self.norm1, self.norm2 = eqx.nn.LayerNorm(d), eqx.nn.LayerNorm(d)
            self.up, self.down = eqx.nn.Linear(d, 4 * d, key=k2), eqx.nn.Linear(4 * d, d, key=k3)

        def __call__(self, x: jax.Array) -> jax.Array:
            h = jax.vmap(self.norm1)(x)
            x = x + self.attention(h, h, h)
            h = jax.vmap(self.norm2)(x)
            return x + jax.vmap(lambda t: self.down(jax.nn.gelu(self.up(t))))(h)

    class Encoder(eqx.Module):
        embed: eqx.nn.Embedding
        blocks: list
        norm: eqx.nn.LayerNorm

        def __init__(self, key: jax.Array) -> None:
            keys = jax.random.split(key, layers + 1)
            self.embed = eqx.nn.Embedding(vocab, d, key=keys[0])
            self.blocks = [Block(k) for k in keys[1:]]
            self.norm = eqx.nn.LayerNorm(d)

        def __call__(self, tokens: jax.Array) -> jax.Array:  # one sequence; batched with vmap below
            x = jax.vmap(self.embed)(tokens)
            for block in self.blocks:
                x = block(x)
            return jax.vmap(self.norm)(x)

    encoder = Encoder(jax.random.key(0))

    def forward(tokens: jax.Array) -> jax.Array:
        return jax.vmap(encoder)(tokens)

    ids = _tokens(vocab, 1, seq)
    return BenchModel(forward, [_spec(ids, {0: "B"} if symbolic else None)], [ids],
                      notes="no PyTorch twin (an Equinox-specific model)")


# ----------------------------------------------------------------------------- Keras 3 on JAX
def keras_mobilenet(size: str = "bench", *, symbolic: bool = False) -> BenchModel:
    """Keras 3's ``keras.applications.MobileNetV2`` (alpha 0.5, 96x96 at bench size) called through
    ``stateless_call`` in inference mode, on the JAX backend."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras

    if keras.backend.backend() != "jax":
        raise RuntimeError(f"keras uses the {keras.backend.backend()!r} backend; set KERAS_BACKEND=jax before importing it")
    image, alpha = (96, 0.5) if size == "bench" else (32, 0.35)
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(input_shape=(image, image, 3), alpha=alpha, weights=None, classes=10)
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value + 0.05 if "variance" in v.path or "mean" in v.path else v.value
                     for v in model.non_trainable_variables]

    def forward(x: jax.Array) -> jax.Array:
        outputs, _ = model.stateless_call(trainable, non_trainable, x, training=False)
        return outputs

    sample = _images(1, image)
    return BenchModel(forward, [_spec(sample, {0: "B"} if symbolic else None)], [sample],
                      notes="no PyTorch twin (torchvision is not a dependency)")


# ----------------------------------------------------------------------------- Flax NNX
def nnx_gpt_mha(size: str = "bench", *, symbolic: bool = False) -> BenchModel:
    """A GPT written with ``nnx.MultiHeadAttention`` the way its docs suggest, differently from the zoo's:
    pre-LN, ``jnp.tril`` causal mask passed per call, exact gelu, separate ``lm_head`` (12 layers, d=256)."""
    from flax import nnx

    layers, d, heads, seq, vocab = (12, 256, 8, 64, 1000) if size == "bench" else (2, 32, 4, 12, 100)

    class Block(nnx.Module):
        def __init__(self, rngs: nnx.Rngs) -> None:
            self.ln1 = nnx.LayerNorm(d, rngs=rngs)
            self.attn = nnx.MultiHeadAttention(num_heads=heads, in_features=d, decode=False, rngs=rngs)
            self.ln2 = nnx.LayerNorm(d, rngs=rngs)
            self.fc = nnx.Linear(d, 4 * d, rngs=rngs)
            self.proj = nnx.Linear(4 * d, d, rngs=rngs)

        def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
            x = x + self.attn(self.ln1(x), mask=mask)
            return x + self.proj(jax.nn.gelu(self.fc(self.ln2(x)), approximate=False))

    class GPT(nnx.Module):
        def __init__(self, rngs: nnx.Rngs) -> None:
            self.wte = nnx.Embed(vocab, d, rngs=rngs)
            self.wpe = nnx.Embed(seq, d, rngs=rngs)
            self.blocks = nnx.List([Block(rngs) for _ in range(layers)])
            self.ln_f = nnx.LayerNorm(d, rngs=rngs)
            self.lm_head = nnx.Linear(d, vocab, use_bias=False, rngs=rngs)

        def __call__(self, tokens: jax.Array) -> jax.Array:
            length = tokens.shape[1]
            mask = jnp.tril(jnp.ones((length, length), dtype=bool))[None, None]
            x = self.wte(tokens) + self.wpe(jnp.arange(length))[None]
            for block in self.blocks:
                x = block(x, mask)
            return self.lm_head(self.ln_f(x))

    ids = _tokens(vocab, 1, seq)
    return BenchModel(GPT(nnx.Rngs(0)), [_spec(ids, {0: "B", 1: "T"} if symbolic else None)], [ids],
                      notes="no PyTorch twin")


def zoo_gpt(size: str = "bench", *, symbolic: bool = False) -> BenchModel:
    """The workbench zoo's GPT (tied head; 12 layers, d=256, 8 heads, seq 64 at bench size)."""
    from workbench.zoo import nnx_gpt

    layers, d, heads, seq, vocab = (12, 256, 8, 64, 1000) if size == "bench" else (2, 32, 4, 12, 100)
    built = nnx_gpt(layers=layers, d_model=d, heads=heads, seq=seq, vocab=vocab, symbolic_seq=symbolic)
    ids = _tokens(vocab, 1, seq)
    spec = built.inputs[0] if symbolic else _spec(ids)
    return BenchModel(built.fn, [spec], [ids], notes="the team's own model")


def zoo_resnet(size: str = "bench", *, symbolic: bool = False) -> BenchModel:
    """The workbench zoo's ResNet-style CNN (9 convolutions, 9 BatchNorms; 64x64 at bench size)."""
    from workbench.zoo import nnx_resnet

    image = 64 if size == "bench" else 32
    built = nnx_resnet(channels=32 if size == "bench" else 16, image=image)
    sample = _images(1, image)
    return BenchModel(built.fn, [_spec(sample, {0: "B"} if symbolic else None)], [sample],
                      notes="the team's own model")


SET: dict[str, Callable[..., BenchModel]] = {
    "hf_gpt2": hf_gpt2,
    "hf_bert": hf_bert,
    "hf_vit": hf_vit,
    "haiku_resnet18": haiku_resnet18,
    "eqx_transformer": eqx_transformer,
    "keras_mobilenet": keras_mobilenet,
    "nnx_gpt_mha": nnx_gpt_mha,
    "zoo_gpt": zoo_gpt,
    "zoo_resnet": zoo_resnet,
}
