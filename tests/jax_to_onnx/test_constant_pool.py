"""The exact constant pool: equal arrays found, arrays differing anywhere (not only in the sample) kept apart."""

from __future__ import annotations

import numpy as np

from workbench.jax_to_onnx.constant_pool import ArrayKey, ConstantPool


def test_equal_arrays_are_found_whatever_their_memory_layout() -> None:
    pool: ConstantPool[str] = ConstantPool()
    weights = np.random.default_rng(0).standard_normal((64, 32)).astype(np.float32)
    pool.add(weights, "first")
    assert pool.find(weights.copy()) == "first"
    assert pool.find(np.ascontiguousarray(weights.T).T) == "first"  # the same values, Fortran-ordered
    assert pool.find(weights.astype(np.float64)) is None  # another dtype
    assert pool.find(weights.reshape(32, 64)) is None  # another shape


def test_arrays_differing_outside_the_sampled_elements_stay_apart() -> None:
    pool: ConstantPool[str] = ConstantPool()
    zeros = np.zeros(4096, np.float32)
    pool.add(zeros, "zeros")
    nearly = zeros.copy()
    nearly[1000] = 1.0  # not at the start, middle or end
    assert pool.find_or_add(nearly, "nearly") == "nearly"
    assert pool.find(zeros.copy()) == "zeros"
    assert pool.find(nearly.copy()) == "nearly"
    negative_zero = zeros.copy()
    negative_zero[1000] = -0.0  # equal as numbers, not as bytes: an initializer must keep its bits
    assert pool.find(negative_zero) is None


def test_small_arrays_are_keyed_by_content() -> None:
    pool: ConstantPool[str] = ConstantPool()
    pool.add(np.array([1, 2, 3], np.int64), "small")
    assert pool.find(np.array([1, 2, 3], np.int64)) == "small"
    assert pool.find(np.array([1, 2, 4], np.int64)) is None
    assert pool.find(np.array(5.0, np.float32)) is None


def test_array_keys_are_equal_exactly_when_the_bytes_are() -> None:
    zeros = np.zeros(4096, np.float32)
    nearly = zeros.copy()
    nearly[1000] = 1.0  # shares the sampled fingerprint with zeros
    cache = {ArrayKey(zeros): "zeros", ArrayKey(nearly): "nearly"}
    assert len(cache) == 2
    assert cache[ArrayKey(zeros.copy())] == "zeros"
    assert cache[ArrayKey(nearly.copy())] == "nearly"
    square = nearly.reshape(64, 64)
    assert ArrayKey(np.asfortranarray(square)) == ArrayKey(square)  # memory layout does not matter
    assert ArrayKey(np.zeros(3, np.float32)) != ArrayKey(np.zeros(3, np.int32))
    assert ArrayKey(np.zeros((2, 3), np.float32)) != ArrayKey(np.zeros((3, 2), np.float32))
