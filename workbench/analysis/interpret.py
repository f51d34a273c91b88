"""Evaluate a jaxpr equation by equation and keep every intermediate value.

The divergence locator needs the JAX value of every jaxpr variable that became an ONNX value.
Call-like primitives the converter inlines (``jit``, ``custom_jvp_call``, ``custom_vjp_call``,
``remat2``) are entered here too, so their inner variables are recorded under the same key
the converter uses: (equation-index path of the enclosing jaxpr, Var).

Jaxprs traced with symbolic dimensions carry those dimensions in equation parameters
(``broadcast_in_dim[shape=(B, 4)]``); they are replaced by the sizes of the concrete inputs
before each equation is bound. An equation that holds a nested symbolic jaxpr of its own
(``scan``, ``while``, ``cond``) is evaluated through ``jax.export``, which handles the
symbolic shapes for us.

:func:`record_values_compiled` runs that same evaluation under ``jax.jit``, so XLA compiles the
whole jaxpr once and returns the values asked for, instead of compiling every primitive at every
shape as the eager run does (a Keras EfficientNetB0: 16 CPU seconds eagerly). A program computing in
bfloat16 or float16 is compiled with ``xla_allow_excess_precision`` off, so it rounds after every op
as the jaxpr says (and JAX op by op, and the ONNX model, do).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
from jax.extend import core as jex_core

from workbench.compat import evaluate_dim
from workbench.errors import WorkbenchError
from workbench.jax_to_onnx.lowering import sub_jaxprs
from workbench.jax_to_onnx.source import eqn_location
from workbench.specs import HALF_FLOATS

# call-like primitive → the parameter holding the body the converter inlines
CALL_BODIES: dict[str, str] = {"jit": "jaxpr", "custom_jvp_call": "call_jaxpr", "custom_vjp_call": "call_jaxpr", "remat2": "jaxpr"}

ValueKey = tuple[tuple[int, ...], Any]


@dataclass
class WholeCompile:
    """Whether a function compiles whole under ``jax.jit``: learned on its first run, kept for the rest.

    One per parity call, shared with the locator it starts. A function that does not compile (a
    primitive with an impl and no XLA lowering) was traced and lowered again for every sample, each
    attempt failing the same way, and once more by the locator.
    """

    failure: str | None = None  # the first attempt's error, when the function did not compile whole

    @property
    def worth_trying(self) -> bool:
        return self.failure is None

    def note(self, error: Exception) -> None:
        self.failure = f"{type(error).__name__}: {error}"


def symbol_env(jaxpr: Any, args: Sequence[Any]) -> dict[str, int]:
    """Sizes of the bare symbolic dimensions of the jaxpr's inputs, read off the concrete arguments."""
    env: dict[str, int] = {}
    for var, arg in zip(jaxpr.invars, args, strict=True):
        for dim, size in zip(var.aval.shape, np.shape(arg), strict=True):
            if jax.export.is_symbolic_dim(dim) and str(dim).isidentifier():
                env[str(dim)] = int(size)
    return env


def _concrete(value: Any, env: Mapping[str, int]) -> Any:
    if jax.export.is_symbolic_dim(value):
        return int(evaluate_dim(value, env))
    if isinstance(value, tuple) and not hasattr(type(value), "_fields"):
        return tuple(_concrete(v, env) for v in value)
    if isinstance(value, list):
        return [_concrete(v, env) for v in value]
    return value


def _is_symbolic_aval(aval: Any) -> bool:
    return any(jax.export.is_symbolic_dim(d) for d in getattr(aval, "shape", ()))


def _bind(eqn: Any, invals: list[Any], env: Mapping[str, int]) -> Any:
    params = eqn.params
    symbolic = env and any(_is_symbolic_aval(a.aval) for a in (*eqn.invars, *eqn.outvars))
    if symbolic and any(True for _ in sub_jaxprs(eqn)):
        return _bind_via_export(eqn, invals)
    if symbolic:
        params = {key: _concrete(value, env) for key, value in params.items()}
    return eqn.primitive.bind(*invals, **params)


def _bind_via_export(eqn: Any, invals: list[Any]) -> Any:
    def apply(*operands: Any) -> Any:
        return eqn.primitive.bind(*operands, **eqn.params)

    avals = [jax.ShapeDtypeStruct(atom.aval.shape, atom.aval.dtype) for atom in eqn.invars]
    exported = jax.export.export(jax.jit(apply))(*avals)
    return exported.call(*invals)


def record_values(closed_jaxpr: Any, args: Sequence[Any]) -> dict[ValueKey, Any]:
    """Run ``closed_jaxpr`` on ``args``; returns every variable's value keyed like Conversion.origin_vars."""
    env = symbol_env(closed_jaxpr.jaxpr, args)
    values: dict[ValueKey, Any] = {}

    def run(jaxpr: Any, consts: Sequence[Any], inputs: Sequence[Any], path: tuple[int, ...]) -> list[Any]:
        local: dict[Any, Any] = {}

        def read(atom: Any) -> Any:
            return atom.val if isinstance(atom, jex_core.Literal) else local[atom]

        local.update(zip(jaxpr.constvars, consts, strict=True))
        local.update(zip(jaxpr.invars, inputs, strict=True))
        for index, eqn in enumerate(jaxpr.eqns):
            invals = [read(atom) for atom in eqn.invars]
            body_param = CALL_BODIES.get(eqn.primitive.name)
            try:
                if body_param is not None:
                    body = eqn.params[body_param]
                    if isinstance(body, jex_core.ClosedJaxpr):
                        outs = run(body.jaxpr, body.consts, invals, (*path, index))
                    else:
                        outs = run(body, [], invals, (*path, index))
                else:
                    outs = _bind(eqn, invals, env)
                    if not eqn.primitive.multiple_results:
                        outs = [outs]
            except WorkbenchError:
                raise
            except Exception as error:  # a primitive that fails here would fail in the function too
                location = eqn_location(eqn)
                where = f" at {location}" if location else ""
                raise WorkbenchError(
                    f"evaluating {eqn.primitive.name}{where} in JAX failed: {type(error).__name__}: {error}"
                ) from error
            for var, out in zip(eqn.outvars, outs, strict=True):
                if isinstance(var, jex_core.DropVar):
                    continue
                local[var] = out
                values[(path, var)] = out
        return [read(atom) for atom in jaxpr.outvars]

    outputs = run(closed_jaxpr.jaxpr, closed_jaxpr.consts, list(args), ())
    for var, out in zip(closed_jaxpr.jaxpr.outvars, outputs, strict=True):
        if not isinstance(var, jex_core.Literal):
            values.setdefault(((), var), out)
    return values


def record_values_compiled(
    closed_jaxpr: Any,
    args: Sequence[Any],
    wanted: Collection[ValueKey] | None = None,
    whole: WholeCompile | None = None,
) -> dict[ValueKey, Any]:
    """:func:`record_values` compiled as one XLA program; only the ``wanted`` keys (all when ``None``).

    The evaluation is traced once under ``jax.jit`` (the jaxpr's constants are arguments, not
    constants baked into the program) and returns the wanted intermediates as outputs. What does
    not compile whole (a primitive with an impl and no XLA lowering, one that needs concrete
    values) is evaluated op by op instead, as :func:`record_values` does; ``whole`` says whether
    the function compiled whole before (parity's run of it: then it is not tried again) and learns
    the answer.
    """
    keys: list[ValueKey] = []

    def program(consts: list[Any], inputs: list[Any]) -> list[Any]:
        values = record_values(jex_core.ClosedJaxpr(closed_jaxpr.jaxpr, consts), inputs)
        keys[:] = [key for key in values if wanted is None or key in wanted]
        return [values[key] for key in keys]

    if whole is None or whole.worth_trying:
        try:
            consts, inputs = list(closed_jaxpr.consts), list(args)
            if rounds_in_half_precision(closed_jaxpr.jaxpr):
                # XLA's CPU compiler keeps float32 between the fused ops of a bfloat16/float16 program (it
                # may skip roundings); the jaxpr, JAX op by op and the ONNX model round after every op
                lowered = jax.jit(program).lower(consts, inputs)
                outputs = lowered.compile(compiler_options={"xla_allow_excess_precision": False})(consts, inputs)
            else:
                outputs = jax.jit(program)(consts, inputs)
            return dict(zip(keys, outputs, strict=True))
        except Exception as error:  # noqa: BLE001 - e.g. no XLA lowering: op by op (a genuine failure raises there too)
            if whole is not None:
                whole.note(error)
    values = record_values(closed_jaxpr, args)
    return values if wanted is None else {key: value for key, value in values.items() if key in wanted}


def rounds_in_half_precision(jaxpr: Any) -> bool:
    """Whether a value of ``jaxpr`` (or of a jaxpr inside it) is bfloat16 or float16."""
    for eqn in jaxpr.eqns:
        if any(isinstance(v.aval, jax.core.ShapedArray) and v.aval.dtype in HALF_FLOATS for v in eqn.outvars):
            return True
        if any(rounds_in_half_precision(inner) for inner in sub_jaxprs(eqn)):
            return True
    return False


__all__ = ["CALL_BODIES", "WholeCompile", "record_values", "record_values_compiled", "rounds_in_half_precision",
           "symbol_env"]
