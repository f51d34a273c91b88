"""What a jitted generated model says when it is called with something that is not an array.

``jax.jit`` answers a string or an object among the arguments with its own ``TypeError`` ("Error
interpreting argument to functools.partial(<function forward ...>) as an abstract array"), which
names JAX's internals, not the model's input. The jitted wrappers (:class:`~workbench.onnx_to_jax.jit_options.OptionsJitted`,
:class:`~workbench.onnx_to_jax.tiered.TieredJitted`) call :func:`refuse_non_arrays` only after such a
failure, so a call on arrays costs nothing more.
"""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Callable
from typing import Any

import numpy as np

from workbench.errors import SpecError


def refuse_non_arrays(args: tuple[Any, ...], kwargs: dict[str, Any], fn: Callable[..., Any] | None = None) -> None:
    """Raise a :class:`~workbench.errors.SpecError` when the arguments do not fit ``fn``'s signature (when given:
    a jitted model's ``jit_forward(forward, params)`` takes the inputs alone, ``jit_forward(forward)`` the params
    first, and Python's own message counts the bound params), or naming the first argument leaf that is not an
    array or a number."""
    import jax

    if fn is not None:
        signature = inspect.signature(fn)
        try:
            signature.bind(*args, **kwargs)
        except TypeError as error:
            raise SpecError(
                f"the jitted model is called as fn{signature}; it got {len(args)} positional argument(s)"
                f"{' and ' + str(sorted(kwargs)) if kwargs else ''} ({error})."
            ) from None

    leaves = jax.tree_util.tree_flatten_with_path((args, kwargs))[0]
    for path, leaf in leaves:
        if isinstance(leaf, (np.ndarray, np.generic, jax.Array, numbers.Number)):
            continue
        kind = "positional argument" if path[0] == jax.tree_util.SequenceKey(0) else "keyword argument"
        where = jax.tree_util.keystr(path[1:])
        raise SpecError(
            f"the jitted model's {kind} {where} is a {type(leaf).__name__} ({leaf!r:.40}), not an array; "
            "call it with the model's inputs as NumPy or JAX arrays (params as the dict wb.to_jax returned)."
        )


__all__ = ["refuse_non_arrays"]
