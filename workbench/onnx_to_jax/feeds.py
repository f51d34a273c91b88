"""Inputs handed to a prepared model, checked against the model's declared inputs as onnxruntime does.

A float32 model called with int32 or float64 arrays, or with an array of the wrong shape, fails
here with a :class:`~workbench.errors.SpecError` naming the input, the expected type or dimension
and what was given, instead of running with silently converted values or dying inside JAX.
Symbolic dimensions accept any size; inputs whose type the model leaves open are not checked.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from workbench.errors import SpecError
from workbench.onnx_io import ValueDescription


def _shape_text(shape: Sequence[int | str | None]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def check_feeds(inputs: Sequence[Any], declared: Sequence[ValueDescription]) -> list[Any]:
    """``inputs`` (one per declared input, in order) after the checks; tensors come back as arrays.

    Arrays of JAX or NumPy are passed through; other values (lists, scalars) are converted with
    ``np.asarray`` first, so a Python float is a float64 and must match a float64 input.
    """
    if len(inputs) < len(declared):
        missing = [value.name for value in declared[len(inputs) :]]
        raise SpecError(
            f"the model has {len(declared)} input(s) and {len(inputs)} were given; missing: {', '.join(map(repr, missing))}."
        )
    import jax

    checked = []
    for value, given in zip(declared, inputs):
        if not value.is_tensor:  # sequences (lists) and optionals (None) are checked by the generated code
            checked.append(given)
            continue
        array = given if isinstance(given, (np.ndarray, np.generic, jax.Array)) else np.asarray(given)
        expected_dtype = value.dtype
        if expected_dtype is not None and np.dtype(array.dtype) != expected_dtype:
            raise SpecError(
                f"input {value.name!r}: unexpected data type {np.dtype(array.dtype).name}; the model declares "
                f"tensor({value.type_name}) ({expected_dtype.name}). Convert it with .astype({expected_dtype.name!r})."
            )
        if value.shape is not None:
            shape = tuple(int(d) for d in array.shape)
            if len(shape) != len(value.shape):
                raise SpecError(
                    f"input {value.name!r}: got {len(shape)} dimension(s) {list(shape)}, the model declares "
                    f"{len(value.shape)}: {_shape_text(value.shape)}."
                )
            for axis, (got, want) in enumerate(zip(shape, value.shape)):
                if isinstance(want, int) and got != want:
                    raise SpecError(
                        f"input {value.name!r}: invalid dimension {axis}: got {got}, expected {want} "
                        f"(shape {list(shape)}, the model declares {_shape_text(value.shape)})."
                    )
        checked.append(array)
    return checked


__all__ = ["check_feeds"]
