"""Trace a normalized callable to a ClosedJaxpr with symbolic shapes, wrapping JAX's errors."""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np

from workbench.errors import SpecError, TraceError, warn
from workbench.jax_to_onnx.dead_code import prune_dead_code
from workbench.jax_to_onnx.functions import exporting
from workbench.jax_to_onnx.nnx_merge import MergeCheck, MergeSpecError, checked_merges
from workbench.jax_to_onnx.normalize import NormalizedCallable, normalize_callable, train_mode_warning
from workbench.jax_to_onnx.structure import InputIndex, structure_error
from workbench.specs import InputSpecs, parse_input_specs


@dataclass(frozen=True)
class Traced:
    """The result of tracing: the jaxpr, the callable it came from and the input/output structure."""

    closed_jaxpr: Any
    callable: NormalizedCallable
    specs: InputSpecs
    out_tree: Any
    out_avals: tuple[Any, ...]
    arg_names: tuple[str, ...]

    @property
    def num_params(self) -> int:
        return len(self.callable.param_names)


def _argument_names(fn: Any, count: int) -> list[str]:
    """Positional parameter names of ``fn`` (``x``, ``tokens``) when it has a plain signature."""
    target = fn
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return [f"in_{i}" for i in range(count)]
    names = [
        p.name
        for p in signature.parameters.values()
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    if len(names) < count and any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in signature.parameters.values()):
        names += [f"in_{i}" for i in range(len(names), count)]
    return names[:count] if len(names) >= count else [f"in_{i}" for i in range(count)]


def _check_arity(fn: Any, specs: tuple[Any, ...], display_name: str) -> None:
    """Refuse a number of input specs ``fn``'s signature cannot take, naming its parameters."""
    count = len(specs)
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return
    try:
        signature.bind(*range(count))
    except TypeError as error:
        positional = [p.name for p in signature.parameters.values()
                      if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        takes = f"takes {len(positional)} positional argument(s) ({', '.join(positional)})" if positional else \
            "takes no positional argument"
        hint = ""
        if count == 1 and isinstance(specs[0], (list, tuple)) and len(specs[0]) == len(positional) > 1:
            hint = (f" inputs[0] is a {type(specs[0]).__name__} of {len(specs[0])} specs, one per argument: pass "
                    "them as the list itself, inputs=[spec_0, spec_1, ...], not nested in one spec.")
        raise SpecError(
            f"inputs: {display_name} {takes}, and inputs gives {count} spec(s) ({error}); give one input spec per "
            f"positional argument (a pytree argument takes one spec: a dict, list or tuple of specs).{hint}"
        ) from None


def trace(fn: Any, inputs: Any, *, enable_double_precision: bool = False, constraints: Sequence[str] = ()) -> Traced:
    """Normalize ``fn``, parse ``inputs`` (symbols bounded by ``constraints``), run ``jax.make_jaxpr`` with
    symbolic shapes, drop dead code."""
    normalized = normalize_callable(fn)
    specs = parse_input_specs(inputs, constraints)
    _check_arity(fn, specs.args, normalized.display_name)
    if not enable_double_precision:
        _warn_double_precision_specs(specs.args)
    out_tree_box: list[Any] = []
    inputs_box: list[InputIndex] = []  # what the function was called with, to name an input of the wrong structure

    def flat_pure(params: list[Any], *args: Any) -> Any:
        inputs_box[:] = [InputIndex.of(args)]
        result = normalized.pure(params, *args)
        leaves, tree = jax.tree_util.tree_flatten(result)
        out_tree_box.append(tree)
        _check_output_leaves(result)
        return leaves

    context = jax.enable_x64(True) if enable_double_precision else contextlib.nullcontext()
    merges = MergeCheck(lambda: inputs_box[0] if inputs_box else None, normalized.display_name,
                        _argument_names(fn, len(specs.args)))  # fmt: skip
    with context, exporting(), checked_merges(merges):
        for _attempt in range(_MAX_CONCRETE_PARAMS + 1):
            try:
                closed = jax.make_jaxpr(flat_pure)(list(normalized.params), *specs.args)
                break
            except MergeSpecError as error:  # an nnx.merge of an input state with other key paths (names the input)
                raise SpecError(str(error)) from None
            except Exception as error:  # user code and JAX shape checks raise many types; all are tracing failures
                needed = _param_needed_concrete(error, len(normalized.params))
                if needed is None or _attempt == _MAX_CONCRETE_PARAMS:
                    names = _argument_names(fn, len(specs.args))
                    wrong = structure_error(error, inputs_box[0] if inputs_box else None, normalized.display_name, names)
                    if wrong is None and normalized.kind == "function":
                        wrong = _structure_inside_jit(fn, specs, normalized.display_name, names)
                    raise (wrong or _trace_failure(error, normalized.display_name, specs, names)) from error
                # the module reads this weight with NumPy or Python (np.asarray(self.periods)): keep its value
                normalized = _with_concrete_param(normalized, needed)
                out_tree_box.clear()
    _check_no_leaked_tracer(closed, normalized.display_name)
    train_mode = train_mode_warning(normalized)
    if train_mode is not None:
        warn(train_mode)
    if not closed.jaxpr.outvars:
        raise TraceError(
            f"{normalized.display_name} returned {out_tree_box[-1]}, which holds no array: an ONNX model needs at least "
            "one output. Return the array(s) to export."
        )
    pruned = prune_dead_code(closed)
    _warn_unread_entries(pruned, len(normalized.params), specs, normalized.display_name, _argument_names(fn, len(specs.args)))
    return Traced(
        closed_jaxpr=pruned,
        callable=normalized,
        specs=specs,
        out_tree=out_tree_box[-1],
        out_avals=tuple(v.aval for v in closed.jaxpr.outvars),
        arg_names=tuple(_argument_names(fn, len(specs.args))),
    )


def _warn_unread_entries(closed: Any, param_count: int, specs: InputSpecs, display_name: str, names: list[str]) -> None:
    """Say when an entry of a dict/list/tuple input spec is never read (an extra key, a parameter the model does not
    have): the ONNX model keeps every input, so it would ask for a value nothing uses. Whole arguments are not
    reported (a function may ignore one on purpose), nor entries with symbolic dimensions (they may give a size)."""
    jaxpr = closed.jaxpr
    read = {id(v) for eqn in jaxpr.eqns for v in eqn.invars} | {id(v) for v in jaxpr.outvars}
    unread = []
    leaves = jax.tree_util.tree_flatten_with_path(specs.args)[0]
    for var, (path, spec) in zip(jaxpr.invars[param_count:], leaves, strict=True):
        static = all(isinstance(d, int) for d in spec.shape)
        if len(path) > 1 and static and id(var) not in read:
            argument = path[0].idx
            unread.append(f"inputs{jax.tree_util.keystr(path)}" + (f" ({names[argument]!r})" if argument < len(names) else ""))
    if unread:
        listed = ", ".join(unread[:5]) + (f" and {len(unread) - 5} more" if len(unread) > 5 else "")
        warn(f"{listed}: never read by {display_name}, but the ONNX model keeps every input, so it will ask for a "
             "value nothing uses; remove the entry from the input spec if it is not the function's (an extra key, a "
             "parameter the model does not have).")


def _structure_inside_jit(fn: Any, specs: InputSpecs, display_name: str, names: list[str]) -> SpecError | None:
    """For a ``jax.jit`` function (any wrapper keeping ``__wrapped__``): trace the Python function itself once more,
    where the inputs it reads are the objects it was called with, and translate a failure of the wrong input
    structure (jit rebuilds its arguments, so the first trace cannot tell which input failed)."""
    inner = inspect.unwrap(fn)
    if inner is fn:
        return None
    box: list[InputIndex] = []

    def call(*args: Any) -> Any:
        box[:] = [InputIndex.of(args)]
        return inner(*args)

    try:
        jax.make_jaxpr(call)(*specs.args)
    except Exception as error:  # noqa: BLE001 - only structure_error's own failures are translated; else the TraceError stands
        return structure_error(error, box[0] if box else None, display_name, names)
    return None


_DOUBLE = (np.dtype(np.float64), np.dtype(np.complex128))


def _warn_double_precision_specs(args: tuple[Any, ...]) -> None:
    """Say when a float64/complex128 input spec is traced in 32 bits (JAX without x64 narrows it silently,
    and the model's input is then float32: feeding it the float64 data the spec described fails)."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(args)[0]:
        if isinstance(leaf, jax.ShapeDtypeStruct) and leaf.dtype in _DOUBLE:
            narrow = "float32" if leaf.dtype == np.float64 else "complex64"
            warn(f"inputs{jax.tree_util.keystr(path)} is {leaf.dtype.name}, traced as {narrow} (the model's input is "
                 f"{narrow}); pass enable_double_precision=True to keep 64 bits, or give a {narrow} spec to silence this.")
            return


_ARRAY_LEAVES = (jax.Array, np.ndarray, np.generic, int, float, complex, bool)


def _check_output_leaves(result: Any) -> None:
    """Every leaf of the function's result is an array or a number (a string, say, names its place in the result)."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(result)[0]:
        if not isinstance(leaf, _ARRAY_LEAVES):
            where = jax.tree_util.keystr(path)
            raise TypeError(f"the output{where} is a {type(leaf).__name__} ({str(leaf)[:40]!r}), not an array or a number")


def _check_no_leaked_tracer(closed: Any, display_name: str) -> None:
    """Refuse a trace that captured a tracer of another, finished transformation as a constant.

    A function reading a value that an earlier ``jax.jit``/``grad``/``vmap`` trace stored away (in a
    global, a list, an object) traces without complaint, and the tracer only fails later, when the
    converter reads the constant's value.
    """
    leaked = [c for c in closed.consts if isinstance(c, jax.core.Tracer)]
    if leaked:
        aval = leaked[0].aval
        raise TraceError(
            f"{display_name} reads a value traced by another JAX transformation (a leaked tracer, {aval.str_short()}): "
            f"an earlier jax.jit, grad or vmap trace stored it (in a global, a list or an object) and {display_name} "
            "uses it after that trace ended. Compute the value inside the function, or pass it as an argument or "
            "a concrete array."
        )


# A module may read some of its arrays as concrete values (``np.asarray(self.periods)``, ``int(self.size)``),
# which works under ``jax.jit`` because the module is closed over, but fails once its arrays are lifted into
# traced ``params`` for naming. JAX's error then names the argument; that array is put back as a constant
# (an unnamed initializer) and tracing is retried, at most this many times.
_MAX_CONCRETE_PARAMS = 64
# the errors by which JAX says a traced value was needed as a concrete one
_CONCRETIZATION_ERRORS = (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError,
                          jax.errors.TracerIntegerConversionError, jax.errors.TracerBoolConversionError)
_PARAM_IN_ERROR = re.compile(r"depends on the value of the argument params\[(\d+)\]")


def _param_needed_concrete(error: Exception, count: int) -> int | None:
    """The position of the lifted parameter whose value ``error`` says was needed concretely, if any."""
    if not isinstance(error, _CONCRETIZATION_ERRORS):
        return None
    match = _PARAM_IN_ERROR.search(str(error))
    if match is None or int(match.group(1)) >= count:
        return None
    return int(match.group(1))


def _with_concrete_param(normalized: NormalizedCallable, position: int) -> NormalizedCallable:
    """``normalized`` with its parameter ``position`` closed over as a constant instead of traced."""
    value = normalized.params[position]
    pure = normalized.pure

    def with_constant(params: list[Any], *args: Any) -> Any:
        return pure([*params[:position], value, *params[position:]], *args)

    return dataclasses.replace(
        normalized,
        pure=with_constant,
        params=[p for i, p in enumerate(normalized.params) if i != position],
        param_names=tuple(n for i, n in enumerate(normalized.param_names) if i != position),
    )


_INPUT_IN_ERROR = re.compile(r"depends on the value of the argument args\[(\d+)\]")
# JAX's sentence naming the function it traced: here always this module's wrapper, which means nothing to users
_TRACED_WRAPPER = re.compile(r"The error occurred while tracing the function flat_pure at \S+ for jit\. ?")


def _trace_failure(error: Exception, display_name: str, specs: InputSpecs, names: list[str]) -> TraceError:
    """The TraceError for ``error``; a function that needs the value of an input is told how to give it."""
    inputs = [_describe(a) for a in specs.args]
    detail = _TRACED_WRAPPER.sub("", str(error))
    prefix = f"tracing {display_name} with inputs {inputs} failed: "
    if not isinstance(error, _CONCRETIZATION_ERRORS):
        return TraceError(f"{prefix}{type(error).__name__}: {detail}")
    match = _INPUT_IN_ERROR.search(detail)
    if match is not None and int(match.group(1)) < len(inputs):
        index = int(match.group(1))
        culprit = f"the value of input {index} ({names[index]!r}, {inputs[index]})"
    else:
        culprit = "a value computed from the inputs (see the line below)"
    return TraceError(
        f"{prefix}{display_name} needs {culprit} as a concrete Python/NumPy value, but inputs are traced as "
        "abstract arrays whose values are only known when the ONNX model runs (so they cannot choose a shape, "
        "e.g. jnp.arange's bounds or jnp.compress's condition, nor drive Python if/while, int() or np.asarray). "
        "Pass such a value as a constant instead: close over it or bind it with functools.partial "
        "(lambda x: f(x, stop=5)) and give input specs only for the array inputs; keep a shape-changing "
        f"computation out of the exported function.\n{type(error).__name__}: {detail}"
    )


def _describe(arg: Any) -> str:
    return str(jax.tree_util.tree_map(lambda s: f"{s.dtype}{list(s.shape)}", arg))


