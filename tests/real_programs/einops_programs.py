"""Programs written the way einops users write them: a ViT, an MLP-Mixer, a U-Net and a Perceiver-style
cross-attention in Flax, with einops' rearrange / repeat / reduce / einsum / pack / unpack and its Flax
layers (``einops.layers.flax``: Rearrange, Reduce, EinMix) doing every reshape, transpose and pooling.

Each model is built from Flax Linen modules with seeded random weights; the batch ``B`` is symbolic, so
einops' patterns are traced over a symbolic axis (its shape arithmetic on jax.export's dimensions).
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from tests.real_programs.catalogue import Built, program

_RNG = np.random.default_rng(4848)


def _normal(*shape: int) -> np.ndarray:
    return _RNG.standard_normal(shape).astype(np.float32)


def _seeded(module: nn.Module, spec: tuple[int | str, ...], example: np.ndarray) -> Built:
    """The program ``module.apply`` on one input of ``spec``, bound to seeded random parameters of the shapes
    ``module.init`` makes on ``example``: kernels normal with deviation 1/sqrt(fan-in), norm scales
    1 + 0.1 * normal, other vectors 0.1 * normal.

    Drawn with NumPy: Flax's own initialisation of the U-Net (threefry keys and truncated normals per
    parameter) took 15 CPU s to compile, eagerly or jitted; the forward pass compiles in under 1 s.
    """
    rng = np.random.default_rng(48)

    def draw(path: tuple[Any, ...], leaf: jax.ShapeDtypeStruct) -> np.ndarray:
        shape = leaf.shape
        if len(shape) >= 2:
            values = rng.standard_normal(shape) / np.sqrt(np.prod(shape[:-1]))
        elif jax.tree_util.keystr(path[-1:]) == "['scale']":
            values = 1.0 + 0.1 * rng.standard_normal(shape)
        else:
            values = 0.1 * rng.standard_normal(shape)
        return values.astype(leaf.dtype)

    shapes = jax.eval_shape(module.init, jax.random.key(0), example)
    return Built(functools.partial(module.apply, jax.tree_util.tree_map_with_path(draw, shapes)), [spec], [example])


# ----------------------------------------------------------------------------- ViT
class _Attention(nn.Module):
    """Multi-head self-attention, heads split and merged with rearrange, scores by einops.einsum."""

    heads: int
    dim_head: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        from einops import einsum, rearrange

        qkv = nn.Dense(3 * self.heads * self.dim_head, use_bias=False)(nn.LayerNorm()(x))
        q, k, v = (rearrange(t, "b n (h d) -> b h n d", h=self.heads) for t in jnp.split(qkv, 3, axis=-1))
        scores = einsum(q, k, "b h i d, b h j d -> b h i j") * self.dim_head**-0.5
        out = einsum(jax.nn.softmax(scores, axis=-1), v, "b h i j, b h j d -> b h i d")
        return nn.Dense(x.shape[-1])(rearrange(out, "b h n d -> b n (h d)"))


class _ViT(nn.Module):
    patch: int = 8
    dim: int = 32
    depth: int = 2
    heads: int = 4
    classes: int = 10

    @nn.compact
    def __call__(self, images: jax.Array) -> jax.Array:
        from einops import rearrange, repeat

        x = rearrange(images, "b (h p1) (w p2) c -> b (h w) (p1 p2 c)", p1=self.patch, p2=self.patch)
        x = nn.LayerNorm()(nn.Dense(self.dim)(nn.LayerNorm()(x)))
        cls = self.param("cls", nn.initializers.normal(1.0), (1, 1, self.dim))
        x = jnp.concatenate([repeat(cls, "1 1 d -> b 1 d", b=x.shape[0]), x], axis=1)
        x = x + self.param("pos", nn.initializers.normal(1.0), (1, x.shape[1], self.dim))
        for _ in range(self.depth):
            x = x + _Attention(self.heads, self.dim // self.heads)(x)
            hidden = nn.gelu(nn.Dense(2 * self.dim)(nn.LayerNorm()(x)))
            x = x + nn.Dense(self.dim)(hidden)
        return nn.Dense(self.classes)(nn.LayerNorm()(x[:, 0]))


@program("einops_vit", library="einops",
         origin="einops-style ViT in Flax: patches by rearrange, class token by repeat, heads and scores by einsum")
def einops_vit() -> Built:
    return _seeded(_ViT(), ("B", 32, 32, 3), _normal(2, 32, 32, 3))


# ----------------------------------------------------------------------------- MLP-Mixer
class _MixerBlock(nn.Module):
    """Token mixing across patches with EinMix (a linear map over the patch axis), channel mixing by Dense."""

    patches: int
    token_hidden: int
    channels: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        from einops.layers.flax import EinMix

        sizes = {"n": self.patches, "t": self.token_hidden}
        y = nn.LayerNorm()(x)
        y = EinMix("b n c -> b t c", weight_shape="n t", bias_shape="t", sizes=sizes)(y)
        y = EinMix("b t c -> b n c", weight_shape="t n", bias_shape="n", sizes=sizes)(nn.gelu(y))
        x = x + y
        y = nn.Dense(self.channels)(nn.gelu(nn.Dense(2 * self.channels)(nn.LayerNorm()(x))))
        return x + y


class _Mixer(nn.Module):
    @nn.compact
    def __call__(self, images: jax.Array) -> jax.Array:
        from einops.layers.flax import Rearrange, Reduce

        patch, channels, patches = 4, 24, (16 // 4) ** 2
        x = Rearrange("b (h p1) (w p2) c -> b (h w) (p1 p2 c)", sizes={"p1": patch, "p2": patch})(images)
        x = nn.Dense(channels)(x)
        for _ in range(2):
            x = _MixerBlock(patches, 32, channels)(x)
        x = Reduce("b n c -> b c", "mean")(nn.LayerNorm()(x))
        return nn.Dense(10)(x)


@program("einops_mlp_mixer", library="einops",
         origin="einops' MLP-Mixer recipe in Flax: Rearrange into patches, EinMix token mixing, Reduce mean pooling")
def einops_mlp_mixer() -> Built:
    return _seeded(_Mixer(), ("B", 16, 16, 3), _normal(2, 16, 16, 3))


# ----------------------------------------------------------------------------- U-Net
class _UNet(nn.Module):
    """Two levels down by max-pooling with reduce, up by nearest-neighbour repeat, skip connections concatenated;
    the bottleneck mixes in a space-to-depth rearrange and back."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        from einops import rearrange, reduce, repeat

        def block(y: jax.Array, features: int) -> jax.Array:
            y = nn.relu(nn.GroupNorm(num_groups=4)(nn.Conv(features, (3, 3))(y)))
            return nn.relu(nn.GroupNorm(num_groups=4)(nn.Conv(features, (3, 3))(y)))

        skip1 = block(x, 8)
        skip2 = block(reduce(skip1, "b (h 2) (w 2) c -> b h w c", "max"), 16)
        bottom = reduce(skip2, "b (h 2) (w 2) c -> b h w c", "max")
        bottom = rearrange(bottom, "b (h p) (w q) c -> b h w (p q c)", p=2, q=2)
        bottom = nn.Dense(64)(bottom)
        bottom = rearrange(bottom, "b h w (p q c) -> b (h p) (w q) c", p=2, q=2)
        up2 = block(jnp.concatenate([repeat(bottom, "b h w c -> b (h 2) (w 2) c"), skip2], axis=-1), 16)
        up1 = block(jnp.concatenate([repeat(up2, "b h w c -> b (h 2) (w 2) c"), skip1], axis=-1), 8)
        return nn.Conv(2, (1, 1))(up1)


@program("einops_unet", library="einops",
         origin="einops-style U-Net in Flax: reduce max-pooling, repeat upsampling, space-to-depth by rearrange")
def einops_unet() -> Built:
    return _seeded(_UNet(), ("B", 16, 16, 3), _normal(2, 16, 16, 3))


# ----------------------------------------------------------------------------- Perceiver-style cross-attention
class _Perceiver(nn.Module):
    """Learned latents attend to a batch of token sets; latents and inputs packed into one sequence with
    einops.pack for a joint self-attention, then split back with unpack."""

    latents: int = 6
    dim: int = 16
    heads: int = 2

    @nn.compact
    def __call__(self, tokens: jax.Array) -> tuple[jax.Array, jax.Array]:
        from einops import einsum, pack, rearrange, reduce, repeat, unpack

        latents = self.param("latents", nn.initializers.normal(1.0), (self.latents, self.dim))
        z = repeat(latents, "n d -> b n d", b=tokens.shape[0])
        x = nn.Dense(self.dim)(tokens)
        q = rearrange(nn.Dense(self.dim)(z), "b n (h d) -> b h n d", h=self.heads)
        k, v = (rearrange(nn.Dense(self.dim)(x), "b m (h d) -> b h m d", h=self.heads) for _ in range(2))
        weights = jax.nn.softmax(einsum(q, k, "b h n d, b h m d -> b h n m") / np.sqrt(self.dim // self.heads), -1)
        z = z + rearrange(einsum(weights, v, "b h n m, b h m d -> b h n d"), "b h n d -> b n (h d)")
        joint, packed_shapes = pack([z, x], "b * d")
        joint = joint + _Attention(self.heads, self.dim // self.heads)(joint)
        z, x = unpack(joint, packed_shapes, "b * d")
        return nn.Dense(3)(reduce(z, "b n d -> b d", "mean")), x


@program("einops_perceiver_pack", library="einops",
         origin="einops-style Perceiver cross-attention in Flax: latents by repeat, einsum attention, pack/unpack")
def einops_perceiver_pack() -> Built:
    return _seeded(_Perceiver(), ("B", "T", 5), _normal(2, 10, 5))
