"""Programs built from the layers Equinox's and Flax NNX's examples use beyond the basics: a diffusion-style
U-Net (GroupNorm, transposed convolution, skip concatenation), an MLP-Mixer, stateful BatchNorm through
``eqx.nn.State``, rotary attention through ``process_heads``, NNX's GroupNorm/RMSNorm/ConvTranspose/Embed/
LinearGeneral/LoRA/Einsum, and ``jax.image.resize`` in its interpolation methods."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from tests.real_programs.catalogue import Built, program

_RNG = np.random.default_rng(12)


def _normal(*shape: int) -> np.ndarray:
    return _RNG.standard_normal(shape).astype(np.float32)


@program("eqx_unet", library="equinox",
         origin="equinox examples/score_based_diffusion (U-Net: Conv2d, GroupNorm, silu, MaxPool2d, ConvTranspose2d, skip concat)")
def _eqx_unet() -> Built:
    import equinox as eqx

    keys = jax.random.split(jax.random.key(0), 5)

    class Block(eqx.Module):
        first: eqx.nn.Conv2d
        second: eqx.nn.Conv2d
        norm: eqx.nn.GroupNorm

        def __init__(self, channels_in: int, channels_out: int, key: jax.Array) -> None:
            a, b = jax.random.split(key)
            self.first = eqx.nn.Conv2d(channels_in, channels_out, 3, padding=1, key=a)
            self.second = eqx.nn.Conv2d(channels_out, channels_out, 3, padding=1, key=b)
            self.norm = eqx.nn.GroupNorm(4, channels_out)

        def __call__(self, x: jax.Array) -> jax.Array:
            return jax.nn.silu(self.second(jax.nn.silu(self.norm(self.first(x)))))

    class UNet(eqx.Module):
        down1: Block
        down2: Block
        pool: eqx.nn.MaxPool2d
        up: eqx.nn.ConvTranspose2d
        up1: Block
        head: eqx.nn.Conv2d

        def __init__(self) -> None:
            self.down1, self.down2 = Block(3, 8, keys[0]), Block(8, 16, keys[1])
            self.pool = eqx.nn.MaxPool2d(2, 2)
            self.up = eqx.nn.ConvTranspose2d(16, 8, 2, stride=2, key=keys[2])
            self.up1 = Block(16, 8, keys[3])
            self.head = eqx.nn.Conv2d(8, 3, 1, key=keys[4])

        def __call__(self, x: jax.Array) -> jax.Array:
            skip = self.down1(x)
            upsampled = self.up(self.down2(self.pool(skip)))
            return self.head(self.up1(jnp.concatenate([upsampled, skip], axis=0)))

    return Built(jax.vmap(UNet()), [("B", 3, 16, 16)], [_normal(2, 3, 16, 16)])


@program("eqx_mlp_mixer", library="equinox", origin="equinox examples/mlp_mixer (patch conv, token and channel MLPs vmapped, LayerNorm)")
def _eqx_mixer() -> Built:
    import equinox as eqx

    keys = jax.random.split(jax.random.key(1), 5)

    class MixerBlock(eqx.Module):
        token_mlp: eqx.nn.MLP
        channel_mlp: eqx.nn.MLP
        norm1: eqx.nn.LayerNorm
        norm2: eqx.nn.LayerNorm

        def __init__(self, patches: int, channels: int, key: jax.Array) -> None:
            a, b = jax.random.split(key)
            self.token_mlp = eqx.nn.MLP(patches, patches, 32, 1, activation=jax.nn.gelu, key=a)
            self.channel_mlp = eqx.nn.MLP(channels, channels, 32, 1, activation=jax.nn.gelu, key=b)
            self.norm1, self.norm2 = eqx.nn.LayerNorm((patches, channels)), eqx.nn.LayerNorm((patches, channels))

        def __call__(self, x: jax.Array) -> jax.Array:  # (patches, channels)
            x = x + jax.vmap(self.token_mlp, in_axes=1, out_axes=1)(self.norm1(x))
            return x + jax.vmap(self.channel_mlp)(self.norm2(x))

    class Mixer(eqx.Module):
        embed: eqx.nn.Conv2d
        blocks: list[MixerBlock]
        head: eqx.nn.Linear

        def __init__(self) -> None:
            self.embed = eqx.nn.Conv2d(3, 16, 4, stride=4, key=keys[0])
            self.blocks = [MixerBlock(16, 16, keys[1]), MixerBlock(16, 16, keys[2])]
            self.head = eqx.nn.Linear(16, 10, key=keys[3])

        def __call__(self, image: jax.Array) -> jax.Array:
            tokens = self.embed(image).reshape(16, -1).T
            for block in self.blocks:
                tokens = block(tokens)
            return self.head(tokens.mean(axis=0))

    return Built(jax.vmap(Mixer()), [("B", 3, 16, 16)], [_normal(2, 3, 16, 16)])


@program("eqx_stateful_batchnorm", library="equinox", origin="equinox examples/stateful (eqx.nn.make_with_state, BatchNorm in inference mode)")
def _eqx_stateful_batchnorm() -> Built:
    import equinox as eqx

    def build() -> eqx.nn.Sequential:
        return eqx.nn.Sequential([eqx.nn.Linear(8, 16, key=jax.random.key(3)), eqx.nn.BatchNorm(16, axis_name="batch", mode="ema"),
                                  eqx.nn.Lambda(jax.nn.relu), eqx.nn.Linear(16, 4, key=jax.random.key(4))])

    model, state = eqx.nn.make_with_state(build)()
    model = eqx.nn.inference_mode(model)
    batched = jax.vmap(model, axis_name="batch", in_axes=(0, None), out_axes=(0, None))

    def forward(x):
        return batched(x, state)[0]

    return Built(forward, [(4, 8)], [_normal(4, 8)])


@program("eqx_rotary_attention", library="equinox",
         origin="equinox eqx.nn.RotaryPositionalEmbedding applied through MultiheadAttention's process_heads, causal mask")
def _eqx_rotary_attention() -> Built:
    import equinox as eqx

    rotary = eqx.nn.RotaryPositionalEmbedding(8)
    attention = eqx.nn.MultiheadAttention(4, 32, key=jax.random.key(5))
    per_head = jax.vmap(rotary, in_axes=1, out_axes=1)  # (seq, heads, dim): each head rotated

    def process_heads(query, key, value):
        return per_head(query), per_head(key), value

    def one(x):
        causal = jnp.tril(jnp.ones((x.shape[0], x.shape[0]), bool))
        return attention(x, x, x, mask=causal, process_heads=process_heads)

    return Built(jax.vmap(one), [("B", 12, 32)], [_normal(2, 12, 32)])


@program("nnx_diffusion_layers", library="flax.nnx",
         origin="flax NNX layers of a diffusion model (Conv, GroupNorm, swish, Embed for the time step, depthwise Conv, "
                "ConvTranspose, jax.image.resize, RMSNorm, LinearGeneral)")
def _nnx_diffusion_layers() -> Built:
    from flax import nnx

    class Net(nnx.Module):
        def __init__(self, rngs: nnx.Rngs) -> None:
            self.conv = nnx.Conv(3, 8, (3, 3), rngs=rngs)
            self.norm = nnx.GroupNorm(8, num_groups=4, rngs=rngs)
            self.depthwise = nnx.Conv(8, 8, (3, 3), feature_group_count=8, rngs=rngs)
            self.up = nnx.ConvTranspose(8, 8, (2, 2), strides=(2, 2), rngs=rngs)
            self.rms = nnx.RMSNorm(8, rngs=rngs)
            self.time = nnx.Embed(10, 8, rngs=rngs)
            self.out = nnx.LinearGeneral(8, (2, 4), rngs=rngs)

        def __call__(self, x: jax.Array, step: jax.Array) -> jax.Array:
            h = nnx.swish(self.norm(self.conv(x))) + self.time(step)[:, None, None, :]
            h = self.up(self.depthwise(h))
            h = jax.image.resize(h, (h.shape[0], 8, 8, 8), "bilinear")
            return self.out(self.rms(h)).reshape(h.shape[0], 8, 8, 8)

    net = Net(nnx.Rngs(0))
    return Built(lambda x, step: net(x, step), [(2, 8, 8, 3), jax.ShapeDtypeStruct((2,), jnp.int32)],
                 [_normal(2, 8, 8, 3), np.array([1, 7], np.int32)])


@program("nnx_lora_einsum", library="flax.nnx", origin="flax NNX nnx.LoRALinear and nnx.Einsum (fine-tuning adapters)")
def _nnx_lora_einsum() -> Built:
    from flax import nnx

    class Net(nnx.Module):
        def __init__(self, rngs: nnx.Rngs) -> None:
            self.lora = nnx.LoRALinear(16, 16, lora_rank=4, rngs=rngs)
            self.heads = nnx.Einsum("bd,dhk->bhk", (16, 2, 8), rngs=rngs)

        def __call__(self, x: jax.Array) -> jax.Array:
            return nnx.softmax(self.heads(nnx.gelu(self.lora(x))), axis=-1)

    net = Net(nnx.Rngs(0))
    return Built(lambda x: net(x), [("B", 16)], [_normal(3, 16)])


@program("jnp_image_resize", library="jax", origin="jax.image.resize (lanczos3 down, cubic up), flip, SAME max pool, argmax")
def _jnp_image_resize() -> Built:
    def forward(image):
        small = jax.image.resize(image, (image.shape[0], 8, 8, 3), "lanczos3")
        large = jax.image.resize(small, (image.shape[0], 20, 20, 3), "cubic")
        pooled = jax.lax.reduce_window(jnp.flip(large, 2), -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, 2, 2, 1), "SAME")
        return jnp.clip(pooled, -1.0, 1.0), jnp.argmax(pooled.reshape(pooled.shape[0], -1), -1)

    return Built(forward, [(2, 16, 16, 3)], [_normal(2, 16, 16, 3)])
