"""Exact deduplication of constant arrays without hashing their bytes.

A model's closed-over weights (Haiku, Equinox) reach the export as anonymous constants, and equal
ones (the same causal mask in every block, zero biases) should be stored once. Hashing every array
whole cost a copy and a SHA-256 of all weight bytes per conversion (a fifth of a Haiku ResNet-18's
warm conversion). Here an array is bucketed by dtype, shape and a few elements sampled at its start,
middle and end; only arrays in the same bucket are compared, byte for byte, so the answer is exact
and distinct weights (which differ in their first bytes) are never read whole.

Hand-written because it is a dictionary keyed by a cheap fingerprint with an exact comparison on
collision; no library does this for numpy arrays without hashing the full buffer.
"""

from __future__ import annotations

from typing import Generic, TypeVar

import numpy as np

T = TypeVar("T")

# arrays up to this many bytes are keyed by their whole content
_WHOLE_BYTES = 256
# elements sampled at each of the start, middle and end of larger arrays
_SAMPLE_ELEMENTS = 8


def fingerprint(array: np.ndarray) -> tuple[str, tuple[int, ...], bytes]:
    """Dtype, shape and content (small arrays) or sampled elements (larger ones): equal arrays share it.

    The sample is taken by index, so a non-contiguous array (a transposed kernel) is not copied.
    """
    if array.nbytes <= _WHOLE_BYTES:
        return (array.dtype.str, array.shape, array.tobytes())
    size = array.size
    middle = size // 2
    if array.flags.c_contiguous:
        flat = array.reshape(-1)
        parts = (flat[:_SAMPLE_ELEMENTS], flat[middle : middle + _SAMPLE_ELEMENTS], flat[-_SAMPLE_ELEMENTS:])
        return (array.dtype.str, array.shape, b"".join(part.tobytes() for part in parts))
    flat_index = np.r_[0:_SAMPLE_ELEMENTS, middle : middle + _SAMPLE_ELEMENTS, size - _SAMPLE_ELEMENTS : size]
    sample = array[np.unravel_index(np.minimum(flat_index, size - 1), array.shape)]
    return (array.dtype.str, array.shape, sample.tobytes())


def same_bytes(first: np.ndarray, second: np.ndarray) -> bool:
    """Whether two arrays of the same dtype and shape hold the same bytes (NaNs and -0.0 compared as bits)."""
    if first.dtype != second.dtype or first.shape != second.shape:
        return False
    as_bytes = [np.ascontiguousarray(array).reshape(-1).view(np.uint8) for array in (first, second)]
    return bool(np.array_equal(*as_bytes))


class ArrayKey:
    """An array as a dictionary key: hashed by its fingerprint, equal to another only if the bytes are equal.

    For keys that hold weights (the ONNX-function cache keys calls by their closed-over constants):
    exact like hashing the whole buffer, but an array is read whole only when another one shares its
    fingerprint.
    """

    __slots__ = ("array", "_fingerprint")

    def __init__(self, array: np.ndarray) -> None:
        self.array = array
        self._fingerprint = fingerprint(array)

    def __hash__(self) -> int:
        return hash(self._fingerprint)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ArrayKey):
            return NotImplemented
        return self._fingerprint == other._fingerprint and (
            self.array.nbytes <= _WHOLE_BYTES or same_bytes(self.array, other.array)
        )


class ConstantPool(Generic[T]):
    """Maps arrays to the item (an ir.Value) first stored for an equal array."""

    def __init__(self) -> None:
        self._buckets: dict[tuple[str, tuple[int, ...], bytes], list[tuple[np.ndarray, T]]] = {}

    def find(self, array: np.ndarray) -> T | None:
        """The item stored for an array equal to ``array`` (same dtype, shape and bytes), or None."""
        for candidate, item in self._buckets.get(fingerprint(array), ()):
            if array.nbytes <= _WHOLE_BYTES or same_bytes(candidate, array):
                return item
        return None

    def add(self, array: np.ndarray, item: T) -> None:
        """Remember ``item`` for ``array`` (which must not be modified afterwards)."""
        self._buckets.setdefault(fingerprint(array), []).append((array, item))

    def find_or_add(self, array: np.ndarray, item: T) -> T:
        """The item of an equal array already stored, else ``item`` (stored for ``array``)."""
        found = self.find(array)
        if found is not None:
            return found
        self.add(array, item)
        return item
