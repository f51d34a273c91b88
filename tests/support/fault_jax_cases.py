"""The JAX -> ONNX side of the fault sweep: seed callables and seeded mutations of how they are called.

A case is data (picklable): the seed's name, the door, and the mutated arguments, with the tokens
``TMPDIR`` (a folder), ``FILE_AS_DIR`` (a path under a regular file) and ``UNWRITABLE`` standing for
paths the worker makes. :func:`resolve` turns a case into the call the worker makes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

TMPDIR, FILE_AS_DIR, UNWRITABLE = "<TMPDIR>", "<FILE_AS_DIR>", "<UNWRITABLE>"


# ------------------------------------------------------------------------------ seed callables
def dense(x):
    """x[B, 4] -> tanh(x @ W + b)[B, 3]."""
    import jax.numpy as jnp

    w = np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3)
    return jnp.tanh(x @ w + 0.5)


def two_inputs(x, y):
    """x * y + 1 (broadcasting)."""
    return x * y + 1


def pytree_sum(tree):
    """A dict argument {'a': [N], 'b': [N]} -> a + 2b."""
    return tree["a"] + 2 * tree["b"]


def raises_value_error(x):
    raise ValueError("the model refuses this input on purpose")


def raises_key_error(x):
    return {"a": x}["missing"]


def returns_string(x):
    return "not an array"


def returns_none(x):
    return None


def returns_dict_of_str(x):
    return {"y": x, "label": "cat"}


def returns_int(x):
    return 3


_LEAKED: list[Any] = []


def closes_over_tracer(x):
    """Uses a tracer leaked from an earlier jax.jit trace (JAX's UnexpectedTracerError)."""
    import jax

    if not _LEAKED:
        jax.jit(lambda v: _LEAKED.append(v) or v)(np.ones(4, np.float32))
    return x + _LEAKED[0]


def nnx_mlp():
    """The zoo's NNX MLP (a module with parameters), built once per worker."""
    from workbench import zoo

    return zoo.nnx_mlp().fn


SEEDS: dict[str, tuple[Callable[..., Any], list[Any]]] = {
    "dense": (dense, [("B", 4)]),
    "two_inputs": (two_inputs, [(2, 3), (3,)]),
    "pytree_sum": (pytree_sum, [{"a": ("N",), "b": ("N",)}]),
}
CALLABLES: dict[str, Callable[..., Any]] = {
    f.__name__: f for f in (raises_value_error, raises_key_error, returns_string, returns_none, returns_dict_of_str,
                            returns_int, closes_over_tracer)  # fmt: skip
}


@dataclass(frozen=True)
class JaxCase:
    """One call: ``seed``'s callable (or ``callable_name``'s) with ``inputs`` and ``kwargs`` through ``door``."""

    door: str  # to_onnx, magic, cli_export
    kind: str
    seed: str
    number: int
    inputs: Any
    kwargs: dict[str, Any] = field(default_factory=dict)
    callable_name: str | None = None
    targets: tuple[str, ...] = ()
    what: str = ""
    magic_line: str | None = None


# ------------------------------------------------------------------------------ mutations
_BAD_DIMS = (-1, 0, 1.5, "", "B+", "-1", "B B", "1e3", "2*", True, None, 1 << 40, "x" * 300, "B-B", "max(B)")
_BAD_DTYPES = ("float128", "nonsense", "str", "object", "complex64", "bool", "int4", "bfloat16", "U8", None, 3)
_BAD_OPSETS = (0, 1, 6, 99, -3, "17", 17.5, True, None)
_BAD_THRESHOLDS = (-5, "1kb", 2.5, 1 << 62, 0)


def _spec_with(spec: tuple, rng: np.random.Generator) -> tuple:
    dims = list(spec) or [1]
    dims[int(rng.integers(len(dims)))] = _BAD_DIMS[int(rng.integers(len(_BAD_DIMS)))]
    return tuple(dims)


def jax_cases(seed_name: str, kind: str, seed: int, count: int) -> list[JaxCase]:
    """``count`` cases of one mutation kind for one seed callable (empty when the kind does not apply)."""
    rng = np.random.default_rng(seed)
    _, inputs = SEEDS[seed_name]
    cases: list[JaxCase] = []
    for number in range(count):
        door = ("to_onnx", "magic", "cli_export")[(number + seed + len(kind)) % 3]
        mutated, kwargs, callable_name, what, targets = list(inputs), {}, None, "", ("input",)
        first = inputs[0]
        if kind == "wrong_rank":
            mutated[0] = (*first, 2) if rng.random() < 0.5 and isinstance(first, tuple) else (first[0],) if isinstance(first, tuple) else (3,)
            what = f"inputs[0] = {mutated[0]!r}"
        elif kind == "wrong_dtype":
            dtype = _BAD_DTYPES[int(rng.integers(len(_BAD_DTYPES)))]
            mutated[0] = ("dtype", first if isinstance(first, tuple) else (3,), dtype)
            what, targets = f"inputs[0] dtype {dtype!r}", (str(dtype), "dtype")
        elif kind == "python_scalar":
            mutated[0] = (3, 2.5, True, 1 + 2j, -7)[int(rng.integers(5))]
            what = f"inputs[0] = {mutated[0]!r}"
        elif kind == "string_leaf":
            mutated[0] = ("abc", "B,3", "", "float32")[int(rng.integers(4))]
            what = f"inputs[0] = {mutated[0]!r}"
        elif kind == "none_leaf":
            mutated[0] = (None, (None, 4), [None], {"a": None})[int(rng.integers(4))]
            what = f"inputs[0] = {mutated[0]!r}"
        elif kind == "nested_pytree":
            mutated[0] = ({"a": (3,), "b": [(2,), ((4,),)]}, [[(3,)]], ((2, 4), {"k": (1,)}))[int(rng.integers(3))]
            what = f"inputs[0] = {mutated[0]!r}"
        elif kind == "zero_size":
            mutated = [tuple(0 for _ in s) if isinstance(s, tuple) else s for s in inputs]
            what = f"inputs = {mutated!r}"
        elif kind == "bad_symbolic":
            mutated[0] = _spec_with(first, rng) if isinstance(first, tuple) else {"a": _spec_with(("N",), rng), "b": ("N",)}
            what = f"inputs[0] = {mutated[0]!r}"
        elif kind == "wrong_count":
            mutated = mutated + [(3,)] if rng.random() < 0.5 else mutated[:-1]
            what = f"{len(mutated)} input specs for {len(inputs)} arguments"
        elif kind == "bad_opset":
            kwargs["opset"] = _BAD_OPSETS[int(rng.integers(len(_BAD_OPSETS)))]
            what, targets = f"opset={kwargs['opset']!r}", ("opset",)
        elif kind == "bad_path":
            kwargs["path"] = (TMPDIR, FILE_AS_DIR, UNWRITABLE, "")[int(rng.integers(4))]
            what, targets = f"path={kwargs['path']!r}", ("path", "onnx", "write")
        elif kind == "bad_threshold":
            kwargs["path"] = "m.onnx"
            kwargs["external_data_threshold"] = _BAD_THRESHOLDS[int(rng.integers(len(_BAD_THRESHOLDS)))]
            what, targets = f"external_data_threshold={kwargs['external_data_threshold']!r}", ("external_data_threshold",)
        elif kind == "bad_callable":
            callable_name = sorted(CALLABLES)[int(rng.integers(len(CALLABLES)))]
            mutated = [(4,)]
            what, targets = f"fn={callable_name}", (callable_name,)
        else:
            raise ValueError(f"unknown JAX mutation kind {kind!r}")
        if door != "to_onnx" and not all(_as_text(spec) for spec in mutated):
            door = "to_onnx"  # the magic and the command line take specs as text: pytrees and None have no text form
        line = _magic_line(mutated, kwargs) if door == "magic" else None
        cases.append(JaxCase(door, kind, seed_name, number, mutated, kwargs, callable_name, targets, what, line))
    return cases


JAX_KINDS = ("wrong_rank", "wrong_dtype", "python_scalar", "string_leaf", "none_leaf", "nested_pytree", "zero_size",
             "bad_symbolic", "wrong_count", "bad_opset", "bad_path", "bad_threshold", "bad_callable")  # fmt: skip


def _as_text(spec: Any) -> bool:
    """Whether ``spec`` has a ``-i``/``--input`` text form (a shape tuple of ints and names, or a dtype triple)."""
    if isinstance(spec, tuple) and len(spec) == 3 and spec[0] == "dtype":
        return True
    return isinstance(spec, tuple) and all(isinstance(d, (int, str)) for d in spec)


def spec_text(spec: Any) -> str:
    """The ``-i``/``--input`` text of a spec (the magic and the CLI take text, not Python values)."""
    if isinstance(spec, tuple) and len(spec) == 3 and spec[0] == "dtype":
        return ",".join(str(d) for d in spec[1]) + f":{spec[2]}"
    if isinstance(spec, tuple):
        return ",".join(str(d) for d in spec)
    return str(spec)


def _magic_line(inputs: list[Any], kwargs: dict[str, Any]) -> str:
    import shlex

    parts = [f"-i {shlex.quote(spec_text(spec))}" for spec in inputs]
    if "opset" in kwargs:
        parts.append(f"--opset {shlex.quote(str(kwargs['opset']))}")
    if "path" in kwargs:
        parts.append(f"--out {shlex.quote(str(kwargs['path']))}")
    return " ".join(parts + ["--no-view"])


def resolve_path(value: Any, folder: Path) -> Any:
    """The tokens TMPDIR / FILE_AS_DIR / UNWRITABLE as real paths under ``folder``; other values unchanged."""
    if value == TMPDIR:
        return folder
    if value == FILE_AS_DIR:
        (folder / "notes.txt").write_text("a file")
        return folder / "notes.txt" / "m.onnx"
    if value == UNWRITABLE:
        return Path("/proc/workbench-fuzz/m.onnx")
    if isinstance(value, str) and value.endswith(".onnx"):
        return folder / value
    return value


def resolve_spec(spec: Any) -> Any:
    """A ``("dtype", shape, dtype)`` triple as a ShapeDtypeStruct-like spec ``wb.to_onnx`` takes; others unchanged."""
    if isinstance(spec, tuple) and len(spec) == 3 and spec[0] == "dtype":
        from workbench.specs import TensorSpec

        return TensorSpec(spec[1], spec[2])
    if isinstance(spec, dict):
        return {k: resolve_spec(v) for k, v in spec.items()}
    if isinstance(spec, list):
        return [resolve_spec(v) for v in spec]
    return spec


__all__ = ["CALLABLES", "JAX_KINDS", "SEEDS", "JaxCase", "jax_cases", "nnx_mlp", "resolve_path", "resolve_spec", "spec_text"]
