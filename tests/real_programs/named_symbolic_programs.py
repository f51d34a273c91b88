"""Programs from haliax (Levanter's named tensors) and sympy2jax (SymPy expressions as Equinox modules), as their
documentation writes them.

haliax: a GPT-style language model whose blocks are an ``hnn.Stacked`` applied by ``fold`` (scan over layers;
haliax names each layer's carry with ``checkpoint_name``), attention through ``hnn.attention.dot_product_attention``
with a ``causal_mask`` over named position axes, the logits a named ``hax.dot`` with the tied embedding; and a
small image classifier of named ``hnn.Conv`` layers, ``max_pool`` and an ``hnn.MLP``.
sympy2jax: a ``SymbolicModule`` of several SymPy expressions evaluated on a batch (its float constants are
trainable arrays, ``make_array=True``), and the training step of the library's README: an Equinox model that adds
a symbolic expression to an MLP, its gradient taken with ``eqx.filter_value_and_grad`` with respect to the
symbolic constants and the MLP's weights together, and an SGD update.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tests.real_programs.catalogue import Built, program


def _normal(seed: int, *shape: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# ----------------------------------------------------------------------------- haliax
@program("haliax_gpt_stacked_blocks", library="haliax",
         origin="Levanter's GPT-2 in haliax: named axes, blocks stacked by hnn.Stacked.init(Layers, Block) and applied "
                "by fold, hnn.attention.dot_product_attention with causal_mask, LayerNorm/Linear/MLP, tied embedding")
def haliax_gpt_stacked_blocks() -> Built:
    import equinox as eqx
    import haliax as hax
    import haliax.nn as hnn

    embed, heads, head_size = hax.Axis("embed", 32), hax.Axis("heads", 4), hax.Axis("head_size", 8)
    qkv_axis, mlp, vocab, layers = hax.Axis("qkv", 3), hax.Axis("mlp", 64), hax.Axis("vocab", 50), hax.Axis("layers", 2)

    class Block(eqx.Module):
        ln_attention: hnn.LayerNorm
        qkv: hnn.Linear
        out: hnn.Linear
        ln_mlp: hnn.LayerNorm
        mlp: hnn.MLP

        @staticmethod
        def init(*, key: jax.Array) -> Block:
            return Block(key=key)

        def __init__(self, *, key: jax.Array) -> None:
            k_qkv, k_out, k_mlp = jax.random.split(key, 3)
            self.ln_attention = hnn.LayerNorm.init(embed)
            self.qkv = hnn.Linear.init(In=embed, Out=(qkv_axis, heads, head_size), key=k_qkv)
            self.out = hnn.Linear.init(In=(heads, head_size), Out=embed, key=k_out)
            self.ln_mlp = hnn.LayerNorm.init(embed)
            self.mlp = hnn.MLP.init(embed, embed, width=mlp, depth=1, activation=hnn.gelu, key=k_mlp)

        def __call__(self, x: Any, mask: Any) -> Any:
            qkv = self.qkv(self.ln_attention(x))
            q = qkv["qkv", 0]
            k, v = (qkv["qkv", i].rename({"position": "key_position"}) for i in (1, 2))
            x = x + self.out(hnn.attention.dot_product_attention("key_position", head_size, q, k, v, mask=mask))
            return x + self.mlp(self.ln_mlp(x))

    class Gpt(eqx.Module):
        embedding: hnn.Embedding
        blocks: hnn.Stacked
        ln_final: hnn.LayerNorm

        def __init__(self, *, key: jax.Array) -> None:
            k_embed, k_blocks = jax.random.split(key)
            self.embedding = hnn.Embedding.init(vocab, embed, key=k_embed)
            self.blocks = hnn.Stacked.init(layers, Block)(key=jax.random.split(k_blocks, layers.size))
            self.ln_final = hnn.LayerNorm.init(embed)

        def __call__(self, ids: Any) -> Any:
            position = ids.resolve_axis("position")
            mask = hnn.attention.causal_mask(position, position.alias("key_position"))
            x = self.blocks.fold(self.embedding(ids), mask)
            return hax.dot(self.ln_final(x), self.embedding.weight, axis="embed")

    model = Gpt(key=jax.random.key(0))

    def logits(ids: jax.Array) -> jax.Array:
        return model(hax.named(ids, ("batch", "position"))).array

    ids = np.random.default_rng(1).integers(0, vocab.size, (2, 7)).astype(np.int32)
    return Built(logits, [jax.ShapeDtypeStruct(("B", 7), jnp.int32)], [ids])


@program("haliax_conv_classifier", library="haliax",
         origin="haliax's named layers for images: hnn.Conv over named height/width axes, hax.nn.max_pool, "
                "hnn.MLP on the pooled channels, hax.nn.softmax over the named class axis")
def haliax_conv_classifier() -> Built:
    import equinox as eqx
    import haliax as hax
    import haliax.nn as hnn

    height, width = hax.Axis("height", 12), hax.Axis("width", 12)
    channels, hidden, wide, classes = hax.Axis("channels", 3), hax.Axis("hidden", 8), hax.Axis("wide", 16), \
        hax.Axis("classes", 5)

    class Classifier(eqx.Module):
        conv1: hnn.Conv
        conv2: hnn.Conv
        head: hnn.MLP

        def __init__(self, *, key: jax.Array) -> None:
            k1, k2, k3 = jax.random.split(key, 3)
            self.conv1 = hnn.Conv.init((height, width), channels, hidden, kernel_size=3, padding=1, key=k1)
            self.conv2 = hnn.Conv.init((height, width), hidden, wide, kernel_size=3, padding=1, key=k2)
            self.head = hnn.MLP.init(wide, classes, width=32, depth=1, activation=hnn.relu, key=k3)

        def __call__(self, images: Any) -> Any:
            x = hnn.relu(self.conv1(images))
            x = hnn.max_pool((height.resize(2), width.resize(2)), x, stride=2)
            x = hnn.relu(self.conv2(x))  # Spatial axes are matched by name: the pooled 6x6 map
            pooled = hax.mean(x, axis=("height", "width"))
            return hnn.softmax(self.head(pooled), axis="classes")

    model = Classifier(key=jax.random.key(2))

    def classify(images: jax.Array) -> jax.Array:
        return model(hax.named(images, ("batch", "channels", "height", "width"))).array

    return Built(classify, [("B", 3, 12, 12)], [_normal(3, 2, 3, 12, 12)])


# ----------------------------------------------------------------------------- sympy2jax
@program("sympy2jax_expressions_batch", library="sympy2jax",
         origin="sympy2jax's README: SymbolicModule of a list of SymPy expressions (exp, cos, sqrt, powers, "
                "a piecewise Max), called with keyword symbols on a batch, its float constants trainable arrays")
def sympy2jax_expressions_batch() -> Built:
    import sympy
    import sympy2jax

    x, y = sympy.symbols("x y")
    expressions = [x ** 2 + 2.5 * sympy.cos(y), sympy.exp(-0.7 * x * y) + sympy.sqrt(x ** 2 + 1.3),
                   sympy.Max(x, 0.5 * y) - sympy.log(1 + y ** 2)]
    module = sympy2jax.SymbolicModule(expressions)

    def evaluate(xs: jax.Array, ys: jax.Array) -> jax.Array:
        return jnp.stack(module(x=xs, y=ys), axis=-1)

    return Built(evaluate, [("B",), ("B",)], [_normal(4, 6), _normal(5, 6)])


@program("sympy2jax_hybrid_train_step", library="sympy2jax",
         origin="sympy2jax's README training pattern: an Equinox model adding a SymbolicModule expression (its "
                "constants trainable) to an eqx.nn.MLP, eqx.filter_value_and_grad of the MSE, an SGD update")
def sympy2jax_hybrid_train_step() -> Built:
    import equinox as eqx
    import sympy
    import sympy2jax

    x = sympy.symbols("x")

    class Hybrid(eqx.Module):
        physics: sympy2jax.SymbolicModule
        correction: eqx.nn.MLP

        def __init__(self, key: jax.Array) -> None:
            self.physics = sympy2jax.SymbolicModule(1.5 * sympy.sin(0.8 * x) + 0.2 * x ** 2)
            self.correction = eqx.nn.MLP("scalar", "scalar", 16, 2, activation=jnp.tanh, key=key)

        def __call__(self, inputs: jax.Array) -> jax.Array:
            return self.physics(x=inputs) + jax.vmap(self.correction)(inputs)

    model = Hybrid(jax.random.key(6))
    params, static = eqx.partition(model, eqx.is_inexact_array)
    leaves, treedef = jax.tree_util.tree_flatten(params)  # the exported step takes the parameters' arrays

    def train_step(leaves: list[jax.Array], inputs: jax.Array, targets: jax.Array) -> tuple[list[jax.Array], jax.Array]:
        def loss(p: Any) -> jax.Array:
            return jnp.mean((eqx.combine(p, static)(inputs) - targets) ** 2)

        value, grads = eqx.filter_value_and_grad(loss)(jax.tree_util.tree_unflatten(treedef, leaves))
        updated = jax.tree.map(lambda p, g: p - 0.05 * g, jax.tree_util.tree_unflatten(treedef, leaves), grads)
        return jax.tree_util.tree_leaves(updated), value

    inputs = np.linspace(-2.0, 2.0, 8).astype(np.float32)
    targets = (2.0 * np.sin(inputs) + 0.1 * inputs ** 2).astype(np.float32)
    leaves = [np.asarray(leaf) for leaf in leaves]
    return Built(train_step, [leaves, ("B",), ("B",)], [leaves, inputs, targets])
