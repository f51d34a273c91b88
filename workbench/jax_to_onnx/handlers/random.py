"""Random numbers: JAX's threefry2x32 PRNG in ONNX integer ops, bit-exact with JAX for the same key.

Keys are carried by their ``uint32`` key data (see ``jax_to_onnx/keys.py``). The key primitives
(``random_seed``, ``random_split``, ``random_fold_in``, ``random_bits``) are lowered by tracing
the PRNG implementation's own functions on that data (``impl.seed``, ``impl.split``...) into a
jaxpr and lowering it inline, exactly as JAX's XLA lowering does. So the counters, the
partitionable/original layout (``jax_threefry_partitionable``) and the bit manipulations are
JAX's, and only their building blocks need handlers here: ``threefry2x32`` (the 20-round
Threefry-2x32 hash, on uint32 ``Add``/``BitShift``/``BitwiseOr``/``BitwiseXor``, which
onnxruntime runs with wrap-around) and ``iota_2x32_shape`` (the 64-bit counter as two uint32
halves). ``jax.random.uniform/normal/bernoulli/categorical/randint/permutation`` are built from
these plus ``bitcast_convert_type`` and ordinary arithmetic, and reproduce JAX's numbers.

Other PRNG implementations (``rbg``, ``unsafe_rbg``: XLA's RngBitGenerator; philox) are reported
as unsupported with that reason; so are ``rng_bit_generator`` and ``rng_uniform`` (XLA's own
generators, whose bits are backend-defined; see ``jax_to_onnx/unsupported.py``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import onnx_ir as ir

from workbench.compat import iota_2x32_shape, iterated_vmap_binary_bcast, iterated_vmap_unary, prng_impl
from workbench.jax_to_onnx.keys import physical_aval
from workbench.jax_to_onnx.lowering import LoweringContext
from workbench.jax_to_onnx.registry import Testcase, handler

_THREEFRY = "threefry2x32"
_KEY = jax.random.key(42)
_RANDOM_DOC = "https://docs.jax.dev/en/latest/jax.random.html"
# the Threefry-2x32 rotation constants (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", 2011)
_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = 0x1BD11BDA


# ----------------------------------------------------------------------------- which implementation
def _impl_of(eqn: Any) -> Any:
    """The PRNG implementation an equation uses (a parameter of seed/wrap, the key type otherwise)."""
    impl = eqn.params.get("impl")
    if impl is not None:
        return impl
    return prng_impl(eqn.invars[0].aval.dtype)


def _non_threefry_reason(eqn: Any, opset: int | None) -> str:
    del opset  # the same at every opset the handler supports
    impl = _impl_of(eqn)
    if impl.name == _THREEFRY:
        return ""
    return (
        f"PRNG keys of the {impl.name!r} implementation cannot be exported: only JAX's default threefry2x32 "
        "is reproduced bit-exactly in ONNX (rbg/unsafe_rbg use XLA's RngBitGenerator, whose bits are "
        "backend-defined). Create the keys with jax.random.key(seed) (impl='threefry2x32')."
    )


# ----------------------------------------------------------------------------- lowering the impl
def _spec(aval: Any) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(aval.shape, aval.dtype)


def _needs_x64(avals: Sequence[Any]) -> bool:
    return any(np.dtype(aval.dtype).itemsize == 8 for aval in avals)


@functools.lru_cache(maxsize=256)
def _impl_jaxpr(build: Callable[[], Callable[..., Any]], specs: tuple[jax.ShapeDtypeStruct, ...], x64: bool) -> Any:
    with jax.enable_x64(x64):
        return jax.make_jaxpr(build())(*specs)


def _lower_impl(ctx: LoweringContext, build: Callable[[], Callable[..., Any]], operands: Sequence[ir.Value]) -> Any:
    """Trace ``build()`` (a function of the physical operands) and lower its jaxpr in place."""
    avals = [physical_aval(aval) for aval in ctx.avals_in]
    out_avals = [physical_aval(aval) for aval in ctx.avals_out]
    closed = _impl_jaxpr(build, tuple(_spec(a) for a in avals), _needs_x64([*avals, *out_avals]))
    outputs = ctx.lower_inline(closed, operands)
    return outputs[0] if len(outputs) == 1 else tuple(outputs)


class _Build:
    """A hashable recipe for the impl function of one equation (so traced jaxprs are cached)."""

    def __init__(self, kind: str, impl: Any, ndim: int, params: tuple[Any, ...]) -> None:
        self.kind, self.impl, self.ndim, self.params = kind, impl, ndim, params

    def _key(self) -> tuple[Any, ...]:
        return (self.kind, self.impl.name, self.ndim, self.params)

    def __hash__(self) -> int:
        return hash(self._key())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Build) and self._key() == other._key()

    def __call__(self) -> Callable[..., Any]:
        impl, ndim = self.impl, self.ndim
        if self.kind == "seed":
            return iterated_vmap_unary(ndim, impl.seed)
        if self.kind == "split":
            (shape,) = self.params
            return iterated_vmap_unary(ndim, lambda k: impl.split(k, shape))
        if self.kind == "bits":
            bit_width, shape = self.params
            return iterated_vmap_unary(ndim, lambda k: impl.random_bits(k, bit_width, shape))
        keys_shape, msgs_shape = self.params
        return iterated_vmap_binary_bcast(keys_shape, msgs_shape, impl.fold_in)


# ----------------------------------------------------------------------------- key primitives
def _uniform_from_seed(seed: jax.Array, x: jax.Array) -> jax.Array:
    return x + jax.random.uniform(jax.random.key(seed), x.shape)


def _normal_split(key_data: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    key = jax.random.wrap_key_data(key_data)
    first, second = jax.random.split(key)
    return jax.random.normal(first, x.shape) * x, jax.random.key_data(second)


def _legacy_keys(seed: jax.Array, x: jax.Array) -> tuple[jax.Array, ...]:
    key = jax.random.PRNGKey(seed)
    noisy = jnp.where(jax.random.bernoulli(key, 0.3, x.shape), x, 0.0)
    ints = jax.random.randint(jax.random.fold_in(key, 7), x.shape, -5, 17)
    return noisy, ints, jax.random.split(key, 3)


def _batched_keys(seed: jax.Array) -> tuple[jax.Array, jax.Array]:
    keys = jax.random.split(jax.random.key(seed), 4)
    folded = jax.vmap(jax.random.fold_in)(keys, jnp.arange(4))
    return jax.random.key_data(folded), jax.vmap(lambda k: jax.random.uniform(k, (3,)))(keys)


_SEED = np.array(1234, np.int32)


@handler("random_seed", onnx_ops=("BitShift", "Concat", "Cast"), doc=_RANDOM_DOC, area="jax.random", min_opset=18,
         unsupported_reason=_non_threefry_reason, testcases=[
    Testcase("random_seed_uniform", _uniform_from_seed, [_SEED, (5, 3)]),
    Testcase("random_seed_negative", _uniform_from_seed, [np.array(-7, np.int32), (4,)]),
    Testcase("random_seed_int64", _uniform_from_seed, [np.array(2**40 + 5, np.int64), (4,)], x64=True, rtol=0, atol=0),
])
def _random_seed(ctx: LoweringContext, seeds: ir.Value, *, impl: Any) -> ir.Value:
    return _lower_impl(ctx, _Build("seed", impl, len(ctx.avals_in[0].shape), ()), [seeds])


@handler("random_split", onnx_ops=("Add", "BitShift", "BitwiseXor"), doc=_RANDOM_DOC, area="jax.random", min_opset=18,
         unsupported_reason=_non_threefry_reason, testcases=[
    Testcase("random_split_normal", _normal_split, [np.array([0, 42], np.uint32), (2, 3)], rtol=1e-6, atol=1e-6),
    Testcase("random_split_batched_keys", _batched_keys, [_SEED], rtol=0, atol=0),
])
def _random_split(ctx: LoweringContext, keys: ir.Value, *, shape: tuple[int, ...]) -> ir.Value:
    impl = _impl_of(ctx.eqn)
    return _lower_impl(ctx, _Build("split", impl, len(ctx.avals_in[0].shape), (tuple(shape),)), [keys])


@handler("random_fold_in", onnx_ops=("Add", "BitShift", "BitwiseXor"), doc=_RANDOM_DOC, area="jax.random", min_opset=18,
         unsupported_reason=_non_threefry_reason, testcases=[
    Testcase("random_fold_in_randint", _legacy_keys, [_SEED, (3, 4)]),
])
def _random_fold_in(ctx: LoweringContext, keys: ir.Value, messages: ir.Value) -> ir.Value:
    impl = _impl_of(ctx.eqn)
    shapes = (tuple(ctx.avals_in[0].shape), tuple(ctx.avals_in[1].shape))
    return _lower_impl(ctx, _Build("fold_in", impl, 0, shapes), [keys, messages])


@handler("random_bits", onnx_ops=("Add", "BitShift", "BitwiseXor", "Range"), doc=_RANDOM_DOC, area="jax.random",
         min_opset=18, unsupported_reason=_non_threefry_reason, testcases=[
    Testcase("random_bits_u32", lambda k: jax.random.bits(jax.random.wrap_key_data(k), (5, 7)),
             [np.array([3, 99], np.uint32)]),
    Testcase("random_bits_u8", lambda k: jax.random.bits(jax.random.wrap_key_data(k), (9,), jnp.uint8),
             [np.array([3, 99], np.uint32)]),
    Testcase("random_bits_u64", lambda k: jax.random.bits(jax.random.wrap_key_data(k), (3,), jnp.uint64),
             [np.array([3, 99], np.uint32)], x64=True),
    Testcase("random_bits_odd_size", lambda k: jax.random.bits(jax.random.wrap_key_data(k), (3, 5)),
             [np.array([7, 1], np.uint32)]),
])
def _random_bits(ctx: LoweringContext, keys: ir.Value, *, bit_width: int, shape: tuple[int, ...]) -> ir.Value:
    impl = _impl_of(ctx.eqn)
    return _lower_impl(ctx, _Build("bits", impl, len(ctx.avals_in[0].shape), (bit_width, tuple(shape))), [keys])


def _same_data(ctx: LoweringContext, value: ir.Value, *, impl: Any = None) -> ir.Value:
    """A key array and its key data are the same tensor in the ONNX graph (``impl``: random_wrap's
    implementation, checked by ``_non_threefry_reason`` before lowering)."""
    del ctx, impl
    return value


handler("random_wrap", onnx_ops=(), doc=_RANDOM_DOC, area="jax.random", unsupported_reason=_non_threefry_reason,
        testcases=[Testcase("random_wrap_unwrap", _normal_split, [np.array([5, 6], np.uint32), (4,)])])(_same_data)
handler("random_unwrap", onnx_ops=(), doc=_RANDOM_DOC, area="jax.random", unsupported_reason=_non_threefry_reason,
        testcases=[Testcase("random_unwrap_key_data", lambda s: jax.random.key_data(jax.random.key(s)), [_SEED])])(_same_data)
handler("random_clone", onnx_ops=(), doc=_RANDOM_DOC, area="jax.random", unsupported_reason=_non_threefry_reason,
        testcases=[Testcase("random_clone", lambda s, x: x * jax.random.normal(jax.random.clone(jax.random.key(s)), x.shape),
                            [_SEED, (3,)], rtol=1e-6, atol=1e-6)])(_same_data)


# ----------------------------------------------------------------------------- building blocks
def _rotate_left(ctx: LoweringContext, x: ir.Value, distance: int) -> ir.Value:
    left = ctx.op("BitShift", x, ctx.scalar(distance, np.uint32), direction="LEFT")
    right = ctx.op("BitShift", x, ctx.scalar(32 - distance, np.uint32), direction="RIGHT")
    return ctx.op("BitwiseOr", left, right)


def _threefry_reference(k1: jax.Array, k2: jax.Array, x1: jax.Array, x2: jax.Array) -> tuple[jax.Array, jax.Array]:
    from jax.extend.random import threefry2x32_p  # the primitive itself, bound directly

    return tuple(threefry2x32_p.bind(k1, k2, x1, x2))


_U32 = np.array([0, 1, 2**31, 2**32 - 1, 123456789, 987654321], np.uint32)


@handler("threefry2x32", onnx_ops=("Add", "BitShift", "BitwiseOr", "BitwiseXor"), doc=_RANDOM_DOC,
         area="jax.random", min_opset=18, testcases=[
    Testcase("threefry2x32_vectors", _threefry_reference,
             [np.uint32(0x12345678), np.uint32(0x9ABCDEF0), _U32, _U32[::-1].copy()]),
    Testcase("threefry2x32_broadcast_key", _threefry_reference,
             [np.uint32(0), np.uint32(0), np.zeros((2, 3), np.uint32), np.arange(6, dtype=np.uint32).reshape(2, 3)]),
])
def _threefry2x32(ctx: LoweringContext, key1: ir.Value, key2: ir.Value, x1: ir.Value, x2: ir.Value) -> tuple[ir.Value, ir.Value]:
    """The 20-round Threefry-2x32 hash (5 blocks of 4 rounds, a key injection after each block).

    uint32 Add wraps around modulo 2**32 in onnxruntime, as the algorithm requires.
    """
    out_shape = ctx.avals_out[0].shape
    x = [x1, x2]
    for index in (0, 1):
        if tuple(ctx.avals_in[2 + index].shape) != tuple(out_shape):
            x[index] = ctx.op("Expand", x[index], ctx.shape_value(out_shape))
    keys = [key1, key2, ctx.op("BitwiseXor", ctx.op("BitwiseXor", key1, key2), ctx.scalar(_PARITY, np.uint32))]
    x = [ctx.op("Add", x[0], keys[0]), ctx.op("Add", x[1], keys[1])]
    for block in range(5):
        for distance in _ROTATIONS[block % 2]:
            x[0] = ctx.op("Add", x[0], x[1])
            x[1] = ctx.op("BitwiseXor", x[0], _rotate_left(ctx, x[1], distance))
        x[0] = ctx.op("Add", x[0], keys[(block + 1) % 3])
        injected = ctx.op("Add", keys[(block + 2) % 3], ctx.scalar(block + 1, np.uint32))
        x[1] = ctx.op("Add", x[1], injected)
    return x[0], x[1]


def _iota_reference(shape: tuple[int, ...]) -> Callable[[jax.Array], tuple[jax.Array, jax.Array]]:
    def fn(x: jax.Array) -> tuple[jax.Array, jax.Array]:
        hi, lo = iota_2x32_shape(shape)
        return hi + x, lo + x

    return fn


@handler("iota_2x32_shape", onnx_ops=("Range", "Reshape", "Cast"), doc=_RANDOM_DOC, area="jax.random", testcases=[
    Testcase("iota_2x32_shape", _iota_reference((3, 4, 2)), [np.uint32(7)]),
])
def _iota_2x32_shape(ctx: LoweringContext, *, shape: tuple[Any, ...]) -> tuple[ir.Value, ir.Value]:
    """The row-major position of each element as a 64-bit count split into (high, low) uint32 halves.

    Counts stay below 2**63 (an int64 Range), so the high half is the count shifted right by 32.
    """
    size = ctx.op("Squeeze", ctx.dim_value(math.prod(shape)), ctx.i64([0]))
    counts = ctx.op("Range", ctx.const(np.asarray(0, np.int64)), size, ctx.const(np.asarray(1, np.int64)))
    counts = ctx.op("Reshape", counts, ctx.shape_value(shape))
    low = ctx.op("Cast", ctx.op("BitwiseAnd", counts, ctx.scalar(0xFFFFFFFF, np.int64)), to=ir.DataType.UINT32)
    high = ctx.op("Cast", ctx.op("BitShift", ctx.op("Cast", counts, to=ir.DataType.UINT64),
                                 ctx.scalar(32, np.uint64), direction="RIGHT"), to=ir.DataType.UINT32)
    return high, low


# ----------------------------------------------------------------------------- gamma variates
@functools.lru_cache(maxsize=8)
def _gamma_sampler(primitive: Any, log_space: bool) -> Callable[[], Callable[..., Any]]:
    """The recipe for ``random_gamma``'s implementation on (key data, alpha), one object per primitive and
    ``log_space`` (so :func:`_impl_jaxpr` caches its traces)."""

    def build() -> Callable[..., Any]:
        def sample(key_data: jax.Array, alpha: jax.Array) -> jax.Array:
            keys = jax.random.wrap_key_data(key_data)
            # what XLA compiles: JAX lowers the primitive with use_vmap=True for threefry keys (one batched
            # rejection loop over all elements)
            return primitive.impl(keys, alpha, log_space=log_space, use_vmap=True)

        return sample

    return build


def _gamma_draws(key_data: jax.Array, alpha: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    key = jax.random.wrap_key_data(key_data)
    k1, k2, k3 = jax.random.split(key, 3)
    return (jax.random.gamma(k1, alpha), jax.random.dirichlet(k2, alpha, (2,)),
            jax.random.beta(k3, alpha, alpha[::-1]))


def _loggamma_draws(key_data: jax.Array, alpha: jax.Array) -> jax.Array:
    return jax.random.loggamma(jax.random.wrap_key_data(key_data), alpha, (3, alpha.shape[0]))


_ALPHA = np.array([0.3, 1.0, 2.5, 7.0], np.float32)


@handler("random_gamma", onnx_ops=("Loop", "Log", "Sqrt"), doc=_RANDOM_DOC, area="jax.random", min_opset=18,
         unsupported_reason=_non_threefry_reason, testcases=[
    Testcase("random_gamma_dirichlet_beta", _gamma_draws, [np.array([0, 46], np.uint32), _ALPHA]),
    Testcase("random_loggamma", _loggamma_draws, [np.array([5, 3], np.uint32), _ALPHA]),
])
def _random_gamma(ctx: LoweringContext, keys: ir.Value, alpha: ir.Value, *, log_space: bool) -> ir.Value:
    """Gamma variates (Marsaglia and Tsang's rejection sampler, a while loop per element, batched) by
    tracing JAX's own implementation on the key data: the same threefry draws and the same acceptance
    tests as XLA's lowering of the primitive, so the same numbers."""
    return _lower_impl(ctx, _gamma_sampler(ctx.eqn.primitive, bool(log_space)), [keys, alpha])
