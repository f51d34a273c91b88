"""The complex-number convention of exported models: a trailing axis of size 2 (real, imaginary).

ONNX has complex tensor types, but onnxruntime runs almost no operator on them; its DFT operator
instead carries complex values as real tensors with a last axis of size 2, real part first. The
exported models use that layout everywhere: a JAX ``complex64[3, 4]`` is an ONNX ``float[3, 4, 2]``
(``complex128`` → ``double``) for graph inputs, outputs and every intermediate value, so complex
arithmetic, FFTs and real-valued ops mix freely in one graph.

For the caller this means: feed ``to_pairs(z)`` for a complex input and read a complex output
back with ``from_pairs(y)``; graph inputs and outputs that carry complex values say so in their
ONNX ``doc_string``.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

COMPLEX_DOC = "complex values as {real}[..., 2] (real, imaginary): the exported model's complex convention"


def is_complex(dtype: Any) -> bool:
    """Whether ``dtype`` is complex (JAX's extended dtypes, such as PRNG key types, are not)."""
    try:
        return _is_complex(dtype)
    except TypeError:  # unhashable: not a dtype the lowering meets, answered without the cache
        return _is_complex.__wrapped__(dtype)


@functools.lru_cache(maxsize=256)
def _is_complex(dtype: Any) -> bool:
    # cached: asked for every operand of every equation, and np.issubdtype is slow for what it does
    try:
        return np.issubdtype(np.dtype(dtype), np.complexfloating)
    except TypeError:  # an extended dtype (key<fry>) that NumPy cannot interpret
        return False


def real_dtype(dtype: Any) -> np.dtype:
    """The real type of a complex type's parts (complex64 → float32, complex128 → float64); others unchanged."""
    dtype = np.dtype(dtype)
    return np.dtype(dtype.char.lower()) if is_complex(dtype) else dtype


def storage_shape(shape: tuple[Any, ...], dtype: Any) -> tuple[Any, ...]:
    """The shape a value of ``dtype`` has in the exported graph (a trailing 2 for complex)."""
    return (*shape, 2) if is_complex(dtype) else tuple(shape)


def storage_aval(aval: Any) -> Any:
    """The real ``ShapedArray`` an aval is stored as (itself unless complex)."""
    if not is_complex(aval.dtype):
        return aval
    from jax.core import ShapedArray

    return ShapedArray(storage_shape(tuple(aval.shape), aval.dtype), real_dtype(aval.dtype))


def touches_complex(eqn: Any) -> bool:
    """Whether an equation reads or writes complex values (then its complex handler lowers it)."""
    # asked twice for every equation (the support check and the lowering): NumPy's dtype kind "c" is what
    # np.issubdtype(dtype, complexfloating) tests, read without a call; JAX's extended dtypes (PRNG keys)
    # are not NumPy dtypes, and tokens' avals have no dtype
    for atoms in (eqn.invars, eqn.outvars):
        for atom in atoms:
            dtype = getattr(atom.aval, "dtype", None)
            if isinstance(dtype, np.dtype) and dtype.kind == "c":
                return True
    return False


def to_pairs(array: Any) -> np.ndarray:
    """A complex array as the exported model takes it: real array with a trailing (real, imag) axis.

    Real arrays are returned unchanged, so every input of a model can go through this function.
    """
    array = np.asarray(array)
    if not is_complex(array.dtype):
        return array
    return np.stack([array.real, array.imag], axis=-1).astype(real_dtype(array.dtype))


def from_pairs(array: Any) -> np.ndarray:
    """A complex output of an exported model ([..., 2] real) back as a complex NumPy array."""
    array = np.asarray(array)
    if array.shape[-1:] != (2,):
        raise ValueError(f"from_pairs: expected a trailing axis of size 2 (real, imaginary), got shape {array.shape}.")
    complex_type = np.complex64 if array.dtype == np.float32 else np.complex128
    return (array[..., 0] + 1j * array[..., 1]).astype(complex_type)
