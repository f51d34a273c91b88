"""Input specs: what the user writes for ``inputs`` → abstract values JAX can trace.

A spec per positional argument is one of
- a shape tuple whose entries are ints or strings (a string is a symbolic
  dimension such as ``"B"``; equal strings are the same dimension), float32;
- a ``jax.ShapeDtypeStruct`` (its shape may hold strings too);
- a concrete array (NumPy or JAX): its shape and dtype are used;
- a pytree (dict, list, tuple) of the above. In a pytree of values (arrays and ShapeDtypeStructs only,
  e.g. an optimiser's state passed as it is), ``()`` and ``None`` are what JAX's pytrees make them, nodes
  without leaves (optax's ``MultiStepsState.skip_state``), not inputs; among shape tuples ``()`` is the
  shape of a float32 scalar.

All symbolic dimensions of one call share one ``jax.export.SymbolicScope`` so
that ``"B"`` in two inputs is the same dimension. Its constraints (``"T <= 64"``)
bound a symbol where the program needs it: a causal mask sliced from a table of
64 positions has ``min(64, T)`` rows, which is ``T`` only when ``T <= 64``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
from jax import export as jax_export

from workbench.errors import SpecError
from workbench.limits import MAX_SPEC_DEPTH, MAX_TENSOR_BYTES

DEFAULT_DTYPE = np.dtype("float32")
#: The half-precision float dtypes (JAX's bfloat16 is ml_dtypes'): what both conversion directions and the
#: analysis treat as rounding more coarsely than float32.
HALF_FLOATS: frozenset[np.dtype] = frozenset({np.dtype(np.float16), np.dtype(jax.numpy.bfloat16)})
_INT_TEXT = re.compile(r"^[-+]?[0-9]+$")  # '-1' is a (bad) int, not a symbolic expression
_DIM_TEXT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$|^[-+*/%() 0-9A-Za-z_]+$")


@dataclass(frozen=True)
class TensorSpec:
    """An explicit (shape, dtype) spec, e.g. from the command line: ``TensorSpec(("B", 64), "int32")``."""

    shape: tuple[int | str, ...]
    dtype: Any = DEFAULT_DTYPE


@dataclass(frozen=True)
class InputSpecs:
    """The normalized specs: one pytree of ShapeDtypeStruct per positional argument."""

    args: tuple[Any, ...]
    symbols: tuple[str, ...]
    scope: jax_export.SymbolicScope
    constraints: tuple[str, ...] = ()  # the bounds the symbols were traced under ("T <= 64")

    def flat(self) -> list[jax.ShapeDtypeStruct]:
        return jax.tree_util.tree_leaves(self.args)


def _is_shape_tuple(spec: Any) -> bool:
    """A tuple of scalars (ints, names, and mistakes such as floats or None) is a shape, not a pytree."""
    return (
        isinstance(spec, tuple)
        and not _is_namedtuple(spec)
        and all(isinstance(d, (int, str, float, np.integer, np.floating)) or d is None for d in spec)
    )


def _is_namedtuple(value: Any) -> bool:
    return isinstance(value, tuple) and hasattr(type(value), "_fields")


def _is_value_tree(spec: Any, depth: int = 0) -> bool:
    """``spec`` is a pytree holding arrays or ShapeDtypeStructs and no shape tuple other than ``()`` (a model's
    parameters, an optimiser's state as they are): there ``()`` and ``None`` are empty nodes, as in JAX."""
    found: list[bool] = []

    def walk(node: Any, level: int) -> bool:
        if level > MAX_SPEC_DEPTH:
            return False  # convert() reports the depth
        if isinstance(node, (jax.ShapeDtypeStruct, TensorSpec)) or _is_array(node):
            found.append(True)
            return True
        if node is None or node == ():
            return True
        if _is_shape_tuple(node):
            return False
        if isinstance(node, dict):
            return all(walk(value, level + 1) for value in node.values())
        if isinstance(node, (list, tuple)):
            return all(walk(value, level + 1) for value in node)
        return True  # convert() refuses it with its reason

    return walk(spec, depth) and bool(found)


def _is_array(value: Any) -> bool:
    return isinstance(value, (np.ndarray, jax.Array, np.generic))


def _dim_text(dim: Any, where: str) -> str:
    if isinstance(dim, (int, np.integer)) and not isinstance(dim, bool):
        if dim < 0:
            raise SpecError(f"{where}: dimension {dim} is negative; use a non-negative int or a name such as 'B'.")
        return str(int(dim))
    if isinstance(dim, str):
        text = dim.strip()
        if not text or not _DIM_TEXT.match(text):
            raise SpecError(
                f"{where}: symbolic dimension {dim!r} is not a name or expression; use e.g. 'B' or '2*B'."
            )
        return text
    raise SpecError(f"{where}: dimension {dim!r} must be an int or a string such as 'B', not {type(dim).__name__}.")


def parse_input_specs(inputs: Sequence[Any] | None, constraints: Sequence[str] = ()) -> InputSpecs:
    """Normalize ``inputs`` to ShapeDtypeStructs with symbolic dims in one shared scope, bounded by
    ``constraints`` (JAX's symbolic constraints: ``"T <= 64"``, ``"B >= 2"``, ``"S == 2*T"``)."""
    if inputs is None or isinstance(inputs, (str, bytes)) or not isinstance(inputs, Sequence):
        raise SpecError(
            "inputs: expected a list with one spec per positional argument, e.g. [('B', 30)], "
            f"got {type(inputs).__name__}."
        )
    scope = _scope(constraints)
    symbols: dict[str, None] = {}

    def convert(spec: Any, where: str, depth: int = 0, values: bool = False) -> Any:
        if depth > MAX_SPEC_DEPTH:
            raise SpecError(
                f"{where[:80]}...: input specs nest more than {MAX_SPEC_DEPTH} levels deep; flatten the argument "
                "into fewer levels of lists, tuples and dicts."
            )
        if isinstance(spec, (jax.ShapeDtypeStruct, TensorSpec)):
            return _make_struct(spec.shape, spec.dtype, where)
        if _is_array(spec):
            array = np.asarray(spec) if isinstance(spec, np.generic) else spec
            return jax.ShapeDtypeStruct(tuple(array.shape), array.dtype)
        if values and (spec is None or (isinstance(spec, tuple) and not spec)):
            return spec  # an empty node of a pytree of values (optax's skip_state=()): no input
        if _is_shape_tuple(spec):
            return _make_struct(spec, DEFAULT_DTYPE, where)
        values = values or (depth == 0 and _is_value_tree(spec))
        if isinstance(spec, dict):
            return {key: convert(value, f"{where}[{key!r}]", depth + 1, values) for key, value in spec.items()}
        if isinstance(spec, (list, tuple)):
            converted = [convert(value, f"{where}[{i}]", depth + 1, values) for i, value in enumerate(spec)]
            return type(spec)(*converted) if _is_namedtuple(spec) else type(spec)(converted)
        raise SpecError(
            f"{where}: cannot use {type(spec).__name__} as an input spec; give a shape tuple such as ('B', 30), "
            "a jax.ShapeDtypeStruct, an array, or a dict/tuple of those."
        )

    def _make_struct(shape: Sequence[Any], dtype: Any, where: str) -> jax.ShapeDtypeStruct:
        texts = [_dim_text(d, where) for d in shape]
        if dtype is None:  # numpy reads None as float64: a spec that forgot its dtype would trace in double precision
            raise SpecError(f"{where}: dtype None; give a dtype such as 'float32' or 'int32'.")
        try:
            np_dtype = np.dtype(dtype)
        except (TypeError, ValueError, SyntaxError) as error:  # ValueError, SyntaxError: numpy's record-format parser
            raise SpecError(f"{where}: {dtype!r} is not a dtype.") from error
        fixed_bytes = math.prod(int(t) for t in texts if t.isdigit()) * np_dtype.itemsize
        if fixed_bytes > MAX_TENSOR_BYTES:
            raise SpecError(
                f"{where}: shape {tuple(shape)!r} of {np_dtype.name} is {fixed_bytes:,} bytes, over the limit of "
                f"{MAX_TENSOR_BYTES:,} (1 TiB, more than any machine holds); use a symbolic dimension such as 'B' "
                "for a size that varies."
            )
        if all(t.isdigit() for t in texts):
            return jax.ShapeDtypeStruct(tuple(int(t) for t in texts), np_dtype)
        try:
            dims = jax_export.symbolic_shape(", ".join(texts), scope=scope)
        except Exception as error:  # jax raises ValueError/TypeError subclasses with parser details
            raise SpecError(f"{where}: cannot parse shape {tuple(shape)!r} as symbolic dimensions: {error}") from error
        for dim in dims:
            if not isinstance(dim, int):
                for symbol in sorted(dim.get_vars()):
                    symbols[symbol] = None
        return jax.ShapeDtypeStruct(dims, np_dtype)

    args = tuple(convert(spec, f"inputs[{i}]") for i, spec in enumerate(inputs))
    _check_constraint_symbols(constraints, symbols)
    _check_satisfiable(constraints, scope, symbols)
    return InputSpecs(args=args, symbols=tuple(symbols), scope=scope, constraints=tuple(constraints))


def _scope(constraints: Sequence[str]) -> jax_export.SymbolicScope:
    """The shared scope of one call's symbols, with ``constraints`` (each a string such as ``"T <= 64"``)."""
    if isinstance(constraints, (str, bytes)) or not isinstance(constraints, Sequence) or not all(
        isinstance(c, str) for c in constraints
    ):
        raise SpecError(
            f"constraints: expected a list of strings such as ['T <= 64'], got {constraints!r:.80}."
        )
    try:
        return jax_export.SymbolicScope(tuple(constraints))
    except Exception as error:  # jax raises ValueError subclasses with its parser's details
        raise SpecError(
            f"constraints: cannot parse {list(constraints)!r:.120} ({error}); write each as '<dim> <= <dim>', "
            "'>=' or '==', e.g. 'T <= 64'."
        ) from error


# the operators of JAX's dimension expressions, which a constraint may use besides symbols
_DIM_FUNCTIONS = frozenset({"floordiv", "mod", "max", "min", "non_negative"})


def _check_constraint_symbols(constraints: Sequence[str], symbols: dict[str, None]) -> None:
    """Refuse a constraint on a symbol no input spec names (a typo would otherwise bound nothing)."""
    named = {word for text in constraints for word in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text)} - _DIM_FUNCTIONS
    unknown = sorted(named - set(symbols))
    if unknown:
        raise SpecError(
            f"constraints: {', '.join(map(repr, unknown))} is not a dimension of any input spec "
            f"(the specs name {', '.join(map(repr, symbols)) or 'none'}); constrain the symbols the inputs use."
        )


def _check_satisfiable(constraints: Sequence[str], scope: jax_export.SymbolicScope, symbols: dict[str, None]) -> None:
    """Refuse constraints no size satisfies (``B >= 8`` with ``B <= 2``); JAX finds that only at its first comparison,
    which a function without one never makes, and the model would claim bounds no input meets."""
    if not constraints or not symbols:
        return
    try:
        for dim in jax_export.symbolic_shape(",".join(symbols), scope=scope):
            _ = dim >= 1  # the first comparison makes JAX decide the constraints' bounds
    except ValueError as error:
        raise SpecError(
            f"constraints: {list(constraints)!r:.160} cannot all hold ({error}); no input size satisfies them: "
            "drop or correct the contradicting bound."
        ) from error


def _is_array_dtype(dtype: np.dtype) -> bool:
    """Whether JAX arrays hold ``dtype``: bools, ints, floats and complex numbers up to 64/128 bits, and
    ml_dtypes' types (bfloat16, float8, int4); not objects, strings, dates, records or NumPy's float128."""
    if dtype.kind in "biu":
        return True
    if dtype.kind in "fc":
        return dtype.itemsize <= (8 if dtype.kind == "f" else 16)
    return dtype.kind == "V" and dtype.type.__module__ == "ml_dtypes"


def parse_shape_text(text: str) -> tuple[tuple[int | str, ...], np.dtype]:
    """Parse the command-line / magic form ``B,30`` or ``2,64:int32`` into (shape, dtype)."""
    shape_text, colon, dtype_text = text.partition(":")
    dtype = DEFAULT_DTYPE
    if colon and not dtype_text.strip():
        raise SpecError(f"input spec {text!r}: no dtype after ':'; write one (2,64:int32) or leave the ':' out for {DEFAULT_DTYPE}.")
    if dtype_text:
        try:
            dtype = np.dtype(dtype_text.strip())
        except (TypeError, ValueError, SyntaxError) as error:  # numpy reads "a, b" as a record format
            raise SpecError(f"input spec {text!r}: unknown dtype {dtype_text!r}; use e.g. float32 or int32.") from error
        if not _is_array_dtype(dtype):
            raise SpecError(f"input spec {text!r}: {dtype} is not a dtype JAX arrays hold; use e.g. float32, int32, bool or bfloat16.")
    dims: list[int | str] = []
    for part in shape_text.split(","):
        part = part.strip()
        if not part:
            if shape_text.strip():
                raise SpecError(f"input spec {text!r}: empty dimension; write e.g. 'B,30' or '2,64:int32'.")
            continue
        dims.append(int(part) if _INT_TEXT.match(part) else _dim_text(part, f"input spec {text!r}"))
    return tuple(dims), dtype
