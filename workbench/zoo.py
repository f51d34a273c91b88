"""A zoo of small models built in code (random init, nothing downloaded) for tests, demos and benchmarks.

Each builder returns ``ZooModel(fn, inputs)``: the callable exactly as a user would hand it to
``wb.to_onnx`` (a Flax NNX module, ``functools.partial(linen_model.apply, variables)`` or an
Equinox module) and its input specs with symbolic batch (``"B"``) and sequence (``"T"``) dims.

The models are the ones issue 2 names: the README MLP (Linear → BatchNorm → gelu → Dropout →
Linear), a CNN, a ResNet-style CNN, a pre-LN GPT with ``nnx.MultiHeadAttention`` and a weight-tied head, a ViT, GRU
and LSTM cells unrolled with ``lax.scan``, and the MLP and CNN again in Linen and Equinox.
Flax and Equinox are imported inside the builders so importing this module stays cheap.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

BATCH = "B"
SEQ = "T"


@dataclass(frozen=True)
class ZooModel:
    """A callable and the input specs to convert it with."""

    fn: Callable[..., Any]
    inputs: list[Any]

    def eval_fn(self) -> Callable[..., Any]:
        """The callable in inference mode (what the export computes), for comparing outputs in JAX.

        NNX modules are cloned and switched to eval (Dropout off, BatchNorm on running statistics)
        so calling them does not update the zoo model's statistics; Equinox modules get
        ``inference_mode``; Linen partials are already deterministic.
        """
        if _derives_from(self.fn, "flax"):
            from flax import nnx

            if isinstance(self.fn, nnx.Module):
                clone = nnx.clone(self.fn)
                clone.eval()
                return clone
        if _derives_from(self.fn, "equinox"):
            import equinox as eqx

            return eqx.nn.inference_mode(self.fn, value=True)
        return self.fn


def _derives_from(value: Any, package: str) -> bool:
    return any(cls.__module__.split(".")[0] == package for cls in type(value).__mro__)


# ----------------------------------------------------------------------------- Flax NNX
def nnx_mlp(seed: int = 0) -> ZooModel:
    """The README example: Linear(30,20) → BatchNorm → gelu → Dropout → Linear(20,10), input (B, 30)."""
    from flax import nnx

    class MLP(nnx.Module):
        def __init__(self, rngs: nnx.Rngs) -> None:
            self.linear1 = nnx.Linear(30, 20, rngs=rngs)
            self.bn = nnx.BatchNorm(20, rngs=rngs)
            self.dropout = nnx.Dropout(0.1, rngs=rngs)
            self.linear2 = nnx.Linear(20, 10, rngs=rngs)

        def __call__(self, x: jax.Array) -> jax.Array:
            x = nnx.gelu(self.bn(self.linear1(x)))
            return self.linear2(self.dropout(x))

    model = MLP(nnx.Rngs(seed))
    _randomize_batch_stats_nnx(model, seed)
    return ZooModel(model, [(BATCH, 30)])


def _randomize_batch_stats_nnx(model: Any, seed: int) -> None:
    """Give BatchNorm non-trivial running statistics so parity tests see them used."""
    from flax import nnx

    key = jax.random.key(seed + 1)
    for _, module in model.iter_modules():
        if isinstance(module, nnx.BatchNorm):
            key, k1, k2 = jax.random.split(key, 3)
            shape = module.mean.value.shape
            module.mean.value = 0.1 * jax.random.normal(k1, shape)
            module.var.value = 1.0 + 0.5 * jax.random.uniform(k2, shape)


def nnx_cnn(seed: int = 0) -> ZooModel:
    """Conv → BatchNorm → relu → max pool → Conv → BatchNorm → relu → avg pool → Linear, NHWC (B, 16, 16, 3)."""
    from flax import nnx

    class CNN(nnx.Module):
        def __init__(self, rngs: nnx.Rngs) -> None:
            self.conv1 = nnx.Conv(3, 8, kernel_size=(3, 3), rngs=rngs)
            self.bn1 = nnx.BatchNorm(8, rngs=rngs)
            self.conv2 = nnx.Conv(8, 16, kernel_size=(3, 3), strides=(1, 1), padding="VALID", rngs=rngs)
            self.bn2 = nnx.BatchNorm(16, rngs=rngs)
            self.head = nnx.Linear(16 * 3 * 3, 10, rngs=rngs)

        def __call__(self, x: jax.Array) -> jax.Array:
            x = nnx.relu(self.bn1(self.conv1(x)))
            x = nnx.max_pool(x, window_shape=(2, 2), strides=(2, 2))
            x = nnx.relu(self.bn2(self.conv2(x)))
            x = nnx.avg_pool(x, window_shape=(2, 2), strides=(2, 2))
            return self.head(x.reshape(x.shape[0], -1))

    model = CNN(nnx.Rngs(seed))
    _randomize_batch_stats_nnx(model, seed)
    return ZooModel(model, [(BATCH, 16, 16, 3)])


def nnx_resnet(channels: int = 16, blocks: int = 4, image: int = 32, classes: int = 10, seed: int = 0) -> ZooModel:
    """A ResNet-style CNN: 3x3 stem Conv → BatchNorm → relu → max pool, ``blocks`` residual blocks
    (Conv → BN → relu → Conv → BN, + input, relu), global average pool, Linear; NHWC (B, 32, 32, 3).

    With the defaults: 9 convolutions, 9 BatchNorms, as in issue 15's comparison with torch.onnx.
    """
    from flax import nnx

    class ResidualBlock(nnx.Module):
        def __init__(self, rngs: nnx.Rngs) -> None:
            self.c1 = nnx.Conv(channels, channels, (3, 3), use_bias=False, rngs=rngs)
            self.bn1 = nnx.BatchNorm(channels, rngs=rngs)
            self.c2 = nnx.Conv(channels, channels, (3, 3), use_bias=False, rngs=rngs)
            self.bn2 = nnx.BatchNorm(channels, rngs=rngs)

        def __call__(self, x: jax.Array) -> jax.Array:
            h = nnx.relu(self.bn1(self.c1(x)))
            return nnx.relu(x + self.bn2(self.c2(h)))

    class ResNet(nnx.Module):
        def __init__(self, rngs: nnx.Rngs) -> None:
            self.stem = nnx.Conv(3, channels, (3, 3), use_bias=False, rngs=rngs)
            self.stem_bn = nnx.BatchNorm(channels, rngs=rngs)
            self.blocks = nnx.List([ResidualBlock(rngs) for _ in range(blocks)])
            self.head = nnx.Linear(channels, classes, rngs=rngs)

        def __call__(self, x: jax.Array) -> jax.Array:
            x = nnx.relu(self.stem_bn(self.stem(x)))
            x = nnx.max_pool(x, window_shape=(2, 2), strides=(2, 2))
            for block in self.blocks:
                x = block(x)
            return self.head(x.mean(axis=(1, 2)))

    model = ResNet(nnx.Rngs(seed))
    _randomize_batch_stats_nnx(model, seed)
    return ZooModel(model, [(BATCH, image, image, 3)])


def _nnx_transformer_block(d_model: int, heads: int, rngs: Any, *, causal: bool) -> Any:
    from flax import nnx

    class Block(nnx.Module):
        """Pre-LN block: x + attn(ln1(x)), then x + mlp(ln2(x))."""

        def __init__(self) -> None:
            self.ln1 = nnx.LayerNorm(d_model, rngs=rngs)
            self.attn = nnx.MultiHeadAttention(
                num_heads=heads, in_features=d_model, decode=False, dropout_rate=0.0, rngs=rngs
            )
            self.ln2 = nnx.LayerNorm(d_model, rngs=rngs)
            self.mlp_in = nnx.Linear(d_model, 4 * d_model, rngs=rngs)
            self.mlp_out = nnx.Linear(4 * d_model, d_model, rngs=rngs)

        def __call__(self, x: jax.Array) -> jax.Array:
            mask = nnx.make_causal_mask(x[..., 0]) if causal else None
            x = x + self.attn(self.ln1(x), mask=mask)
            return x + self.mlp_out(nnx.gelu(self.mlp_in(self.ln2(x))))

    return Block()


def nnx_gpt(
    layers: int = 2, d_model: int = 64, heads: int = 4, seq: int = 16, vocab: int = 100, seed: int = 0,
    *, symbolic_seq: bool = True,
) -> ZooModel:
    """Pre-LN GPT: token + position Embed, causal MultiHeadAttention blocks, LayerNorm, tied head.

    Input: int32 token ids (B, T) with T ≤ ``seq`` (or exactly ``seq`` with ``symbolic_seq=False``).
    Output: logits (B, T, vocab) from ``embed.attend`` (the head shares the embedding matrix).
    """
    from flax import nnx

    class GPT(nnx.Module):
        def __init__(self, rngs: nnx.Rngs) -> None:
            self.embed = nnx.Embed(vocab, d_model, rngs=rngs)
            self.pos_embed = nnx.Embed(seq, d_model, rngs=rngs)
            self.blocks = nnx.List([_nnx_transformer_block(d_model, heads, rngs, causal=True) for _ in range(layers)])
            self.ln_f = nnx.LayerNorm(d_model, rngs=rngs)

        def __call__(self, tokens: jax.Array) -> jax.Array:
            positions = jnp.arange(tokens.shape[1])
            x = self.embed(tokens) + self.pos_embed(positions)[None]
            for block in self.blocks:
                x = block(x)
            return self.embed.attend(self.ln_f(x))

    model = GPT(nnx.Rngs(seed))
    length = SEQ if symbolic_seq else seq
    return ZooModel(model, [jax.ShapeDtypeStruct((BATCH, length), jnp.int32)])


def nnx_vit(
    image: int = 16, patch: int = 4, channels: int = 3, d_model: int = 32, heads: int = 4, layers: int = 2,
    classes: int = 10, seed: int = 0,
) -> ZooModel:
    """ViT: Conv patch embedding (kernel = stride = patch), class token, learned positions, encoder, head."""
    from flax import nnx

    patches = (image // patch) ** 2

    class ViT(nnx.Module):
        def __init__(self, rngs: nnx.Rngs) -> None:
            self.patch_embed = nnx.Conv(
                channels, d_model, kernel_size=(patch, patch), strides=(patch, patch), padding="VALID", rngs=rngs
            )
            self.cls_token = nnx.Param(0.02 * jax.random.normal(rngs.params(), (1, 1, d_model)))
            self.pos_embed = nnx.Param(0.02 * jax.random.normal(rngs.params(), (1, patches + 1, d_model)))
            self.blocks = nnx.List([_nnx_transformer_block(d_model, heads, rngs, causal=False) for _ in range(layers)])
            self.ln = nnx.LayerNorm(d_model, rngs=rngs)
            self.head = nnx.Linear(d_model, classes, rngs=rngs)

        def __call__(self, images: jax.Array) -> jax.Array:
            x = self.patch_embed(images)
            x = x.reshape(x.shape[0], -1, d_model)
            cls = jnp.broadcast_to(self.cls_token[...], (x.shape[0], 1, d_model))
            x = jnp.concatenate([cls, x], axis=1) + self.pos_embed[...]
            for block in self.blocks:
                x = block(x)
            return self.head(self.ln(x[:, 0]))

    return ZooModel(ViT(nnx.Rngs(seed)), [(BATCH, image, image, channels)])


def _scan_cell(cell: Any, xs: jax.Array, carry: Any) -> tuple[Any, jax.Array]:
    """Run a Flax recurrent cell over the time axis of (B, T, F) with lax.scan; returns (carry, (B, T, H))."""
    carry, ys = lax.scan(cell, carry, jnp.swapaxes(xs, 0, 1))
    return carry, jnp.swapaxes(ys, 0, 1)


def nnx_gru(features: int = 8, hidden: int = 16, seed: int = 0) -> ZooModel:
    """A GRUCell unrolled over time with lax.scan, then a Linear on the final state; input (B, T, 8)."""
    from flax import nnx

    class GRU(nnx.Module):
        def __init__(self, rngs: nnx.Rngs) -> None:
            self.cell = nnx.GRUCell(features, hidden, rngs=rngs)
            self.head = nnx.Linear(hidden, 4, rngs=rngs)

        def __call__(self, xs: jax.Array) -> jax.Array:
            carry = jnp.zeros((xs.shape[0], hidden), xs.dtype)
            last, _ = _scan_cell(self.cell, xs, carry)
            return self.head(last)

    return ZooModel(GRU(nnx.Rngs(seed)), [(BATCH, SEQ, features)])


def nnx_lstm(features: int = 8, hidden: int = 16, seed: int = 0) -> ZooModel:
    """An LSTMCell unrolled over time with lax.scan, then a Linear on every step; input (B, T, 8)."""
    from flax import nnx

    class LSTM(nnx.Module):
        def __init__(self, rngs: nnx.Rngs) -> None:
            self.cell = nnx.LSTMCell(features, hidden, rngs=rngs)
            self.head = nnx.Linear(hidden, 4, rngs=rngs)

        def __call__(self, xs: jax.Array) -> jax.Array:
            zeros = jnp.zeros((xs.shape[0], hidden), xs.dtype)
            _, ys = _scan_cell(self.cell, xs, (zeros, zeros))
            return self.head(ys)

    return ZooModel(LSTM(nnx.Rngs(seed)), [(BATCH, SEQ, features)])


# ----------------------------------------------------------------------------- Flax Linen
def _randomize_batch_stats_linen(variables: dict[str, Any], seed: int) -> dict[str, Any]:
    if "batch_stats" not in variables:
        return variables
    leaves, treedef = jax.tree_util.tree_flatten_with_path(variables["batch_stats"])
    key = jax.random.key(seed + 1)
    new_leaves = []
    for path, leaf in leaves:
        key, sub = jax.random.split(key)
        is_var = jax.tree_util.keystr(path).endswith("'var']")
        noise = jax.random.uniform(sub, leaf.shape)
        new_leaves.append(1.0 + 0.5 * noise if is_var else 0.1 * (noise - 0.5))
    return {**variables, "batch_stats": jax.tree_util.tree_unflatten(treedef, new_leaves)}


def _linen_variables(model: Any, seed: int, example: jax.Array) -> dict[str, Any]:
    """``model.init`` with random BatchNorm statistics, as one compiled program.

    ``init`` runs the model's forward pass; eagerly, each of its operations (and each initializer)
    is compiled on its own, which made building a Linen model twice as slow.
    """

    def init() -> dict[str, Any]:
        return _randomize_batch_stats_linen(model.init(jax.random.key(seed), example), seed)

    return jax.jit(init)()


def linen_mlp(seed: int = 0) -> ZooModel:
    """The README MLP in Linen, as ``functools.partial(model.apply, variables)``."""
    import flax.linen as nn

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x: jax.Array) -> jax.Array:
            x = nn.Dense(20, name="linear1")(x)
            x = nn.BatchNorm(use_running_average=True, name="bn")(x)
            x = nn.Dropout(0.1, deterministic=True, name="dropout")(nn.gelu(x))
            return nn.Dense(10, name="linear2")(x)

    model = MLP()
    variables = _linen_variables(model, seed, jnp.zeros((1, 30)))
    return ZooModel(functools.partial(model.apply, variables), [(BATCH, 30)])


def linen_cnn(seed: int = 0) -> ZooModel:
    """The NNX CNN in Linen (Conv, BatchNorm, max/avg pooling, Dense), NHWC (B, 16, 16, 3)."""
    import flax.linen as nn

    class CNN(nn.Module):
        @nn.compact
        def __call__(self, x: jax.Array) -> jax.Array:
            x = nn.relu(nn.BatchNorm(use_running_average=True, name="bn1")(nn.Conv(8, (3, 3), name="conv1")(x)))
            x = nn.max_pool(x, (2, 2), strides=(2, 2))
            x = nn.Conv(16, (3, 3), padding="VALID", name="conv2")(x)
            x = nn.relu(nn.BatchNorm(use_running_average=True, name="bn2")(x))
            x = nn.avg_pool(x, (2, 2), strides=(2, 2))
            return nn.Dense(10, name="head")(x.reshape(x.shape[0], -1))

    model = CNN()
    variables = _linen_variables(model, seed, jnp.zeros((1, 16, 16, 3)))
    return ZooModel(functools.partial(model.apply, variables), [(BATCH, 16, 16, 3)])


# ----------------------------------------------------------------------------- Equinox
def _eqx_frozen_batch_norm() -> type:
    """BatchNorm over the last axis with its running statistics as module fields.

    ``eqx.nn.BatchNorm`` keeps its statistics in a separate ``eqx.nn.State`` that must be passed
    at every call; an exported (inference) model holds them as plain arrays, which also gives
    the initializers readable names (``bn.mean``) instead of State's flattened indices.
    """
    import equinox as eqx

    class FrozenBatchNorm(eqx.Module):
        weight: jax.Array
        bias: jax.Array
        mean: jax.Array
        var: jax.Array
        eps: float = eqx.field(static=True, default=1e-5)

        def __call__(self, x: jax.Array) -> jax.Array:
            return (x - self.mean) * lax.rsqrt(self.var + self.eps) * self.weight + self.bias

    return FrozenBatchNorm


def _eqx_batch_norm(size: int, key: jax.Array) -> Any:
    k1, k2, k3 = jax.random.split(key, 3)
    return _eqx_frozen_batch_norm()(
        weight=1.0 + 0.1 * jax.random.normal(k1, (size,)),
        bias=0.1 * jax.random.normal(k2, (size,)),
        mean=0.1 * jax.random.normal(k3, (size,)),
        var=1.0 + 0.5 * jax.random.uniform(k3, (size,)),
    )


def eqx_mlp(seed: int = 0) -> ZooModel:
    """The README MLP in Equinox; per-example layers mapped over the batch with ``jax.vmap``."""
    import equinox as eqx

    keys = jax.random.split(jax.random.key(seed), 3)

    class MLP(eqx.Module):
        linear1: eqx.nn.Linear
        bn: Any
        dropout: eqx.nn.Dropout
        linear2: eqx.nn.Linear

        def __call__(self, x: jax.Array) -> jax.Array:
            def one(example: jax.Array) -> jax.Array:
                hidden = jax.nn.gelu(self.bn(self.linear1(example)))
                return self.linear2(self.dropout(hidden))

            return jax.vmap(one)(x)

    model = MLP(
        eqx.nn.Linear(30, 20, key=keys[0]), _eqx_batch_norm(20, keys[1]), eqx.nn.Dropout(0.1),
        eqx.nn.Linear(20, 10, key=keys[2]),
    )
    return ZooModel(model, [(BATCH, 30)])


def eqx_cnn(seed: int = 0) -> ZooModel:
    """The CNN in Equinox (Conv2d, BatchNorm, MaxPool2d, AvgPool2d, Linear); input NHWC (B, 16, 16, 3)."""
    import equinox as eqx

    keys = jax.random.split(jax.random.key(seed), 5)

    class CNN(eqx.Module):
        conv1: eqx.nn.Conv2d
        bn1: Any
        conv2: eqx.nn.Conv2d
        bn2: Any
        head: eqx.nn.Linear

        def __call__(self, x: jax.Array) -> jax.Array:
            def one(image: jax.Array) -> jax.Array:
                h = jnp.transpose(image, (2, 0, 1))  # Equinox convolutions are channels-first
                h = self.bn1(jnp.moveaxis(self.conv1(h), 0, -1))  # statistics over the channel axis
                h = eqx.nn.MaxPool2d(2, stride=2)(jnp.moveaxis(jax.nn.relu(h), -1, 0))
                h = self.bn2(jnp.moveaxis(self.conv2(h), 0, -1))
                h = eqx.nn.AvgPool2d(2, stride=2)(jnp.moveaxis(jax.nn.relu(h), -1, 0))
                return self.head(jnp.transpose(h, (1, 2, 0)).reshape(-1))

            return jax.vmap(one)(x)

    model = CNN(
        eqx.nn.Conv2d(3, 8, 3, padding=1, key=keys[0]), _eqx_batch_norm(8, keys[1]),
        eqx.nn.Conv2d(8, 16, 3, key=keys[2]), _eqx_batch_norm(16, keys[3]),
        eqx.nn.Linear(16 * 3 * 3, 10, key=keys[4]),
    )
    return ZooModel(model, [(BATCH, 16, 16, 3)])


# ----------------------------------------------------------------------------- large models (GB of weights)
def fill_parameters(module: Any, seed: int = 0) -> Any:
    """Give every parameter of an NNX module built with ``nnx.eval_shape`` (no memory yet) seeded values.

    NumPy draws them one parameter at a time (much cheaper than JAX's PRNG for GB of weights):
    matrices normal with standard deviation 1/sqrt(fan-in), norm scales one, biases zero.
    Returns the module.
    """
    import numpy as np
    from flax import nnx

    rng = np.random.default_rng(seed)
    for path, param in nnx.iter_graph(module):
        if not isinstance(param, nnx.Param):
            continue
        shape, name = tuple(param.get_value().shape), str(path[-1])
        if name == "scale":
            values = np.ones(shape, np.float32)
        elif len(shape) < 2:
            values = np.zeros(shape, np.float32)
        else:
            values = rng.standard_normal(shape, dtype=np.float32)
            values *= np.float32(1 / np.sqrt(shape[-2] if name != "embedding" else 1))
        param.set_value(jnp.asarray(values))
    return module


def nnx_wide_mlp(layers: int = 9, width: int = 8192, seed: int = 0) -> ZooModel:
    """A plain MLP of ``layers`` Linear(width, width) with relu between: 9 x 8192² float32 = 2.42 GB of
    weights by default (issue 19's model); input (B, width). Weights from :func:`fill_parameters`."""
    from flax import nnx

    class WideMLP(nnx.Module):
        def __init__(self, rngs: nnx.Rngs) -> None:
            self.layers = nnx.List([nnx.Linear(width, width, rngs=rngs) for _ in range(layers)])

        def __call__(self, x: jax.Array) -> jax.Array:
            for index, layer in enumerate(self.layers):
                x = layer(x) if index == layers - 1 else jax.nn.relu(layer(x))
            return x

    model = fill_parameters(nnx.eval_shape(lambda: WideMLP(nnx.Rngs(seed))), seed)
    return ZooModel(model, [(BATCH, width)])


def nnx_large_gpt(
    layers: int = 14, d_model: int = 2048, heads: int = 16, seq: int = 128, vocab: int = 16000, seed: int = 0,
    *, symbolic_seq: bool = True,
) -> ZooModel:
    """:func:`nnx_gpt` at scale: by default 14 blocks of width 2048 and a 16,000-token vocabulary,
    about 2.9 GB of float32 weights, filled by :func:`fill_parameters` (no JAX PRNG over GB)."""
    from flax import nnx

    small = nnx_gpt  # the same architecture, built abstractly first
    abstract = nnx.eval_shape(
        lambda: small(layers=layers, d_model=d_model, heads=heads, seq=seq, vocab=vocab, seed=seed).fn
    )
    model = fill_parameters(abstract, seed)
    return ZooModel(model, [jax.ShapeDtypeStruct((BATCH, SEQ if symbolic_seq else seq), jnp.int32)])


ZOO: dict[str, Callable[[], ZooModel]] = {
    "nnx_mlp": nnx_mlp,
    "nnx_cnn": nnx_cnn,
    "nnx_resnet": nnx_resnet,
    "nnx_gpt": nnx_gpt,
    "nnx_vit": nnx_vit,
    "nnx_gru": nnx_gru,
    "nnx_lstm": nnx_lstm,
    "linen_mlp": linen_mlp,
    "linen_cnn": linen_cnn,
    "eqx_mlp": eqx_mlp,
    "eqx_cnn": eqx_cnn,
}
"""Every zoo model by name, each builder called with its defaults."""
