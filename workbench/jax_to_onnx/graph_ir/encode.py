"""A traced program (ClosedJaxpr, weights, names) → a Graph IR document (a JSON-safe dict).

A graph is ``{"constvars", "invars", "eqns", "outvars"}``. Variables are named ``v0, v1, ...`` in
each graph (nested graphs number their own); a variable's type (``dtype``, ``shape`` with ints and
symbolic expressions, ``weak_type`` when set) is written where it is defined, uses name it.
Literals are ``{"literal": tensor}``; an unused output is named ``_``.
An equation is ``{"primitive", "inputs", "outputs", "params"}`` plus, when known, ``"source"``
(``file``, ``line``, ``function``: the innermost frame outside JAX, library frames allowed; ``cell``
for notebook code, as the notebook names it),
``"user_source"`` (the user's own frame, when it is another one or none) and ``"scope"`` (JAX's name
stack, from which node names and module paths come).
Tensors (weights, jaxpr constants, array parameters) live in the document's ``"tensors"`` table,
referred to by name; equal constants are stored once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.extend import core as jex_core

from workbench.errors import GraphIRError, SourceLocation
from workbench.jax_to_onnx.graph_ir.params import UnencodableParam, encode_param
from workbench.jax_to_onnx.graph_ir.values import dtype_name, encode_array, encode_scalar
from workbench.jax_to_onnx.keys import host_array
from workbench.jax_to_onnx.source import eqn_location, eqn_scope, eqn_user_location

FORMAT = "workbench_graph_ir_v1"


def shape_json(shape: Sequence[Any]) -> list[int | str]:
    """A shape as JSON: ints stay ints, symbolic dimensions become their expression text."""
    return [int(d) if isinstance(d, (int, np.integer)) else str(d) for d in shape]


def aval_json(aval: Any) -> dict[str, Any]:
    if not isinstance(aval, jax.core.ShapedArray):
        raise GraphIRError(f"a value of type {aval} cannot be written to a Graph IR (only arrays can).")
    entry: dict[str, Any] = {"dtype": dtype_name(aval.dtype), "shape": shape_json(aval.shape)}
    if aval.weak_type:
        entry["weak_type"] = True
    return entry


def _source_json(location: SourceLocation) -> dict[str, Any]:
    entry: dict[str, Any] = {"file": location.file, "line": location.line, "function": location.function}
    if location.cell is not None:  # notebook code: the notebook's name for it (``cell [5]``), kept for messages
        entry["cell"] = location.cell
    return entry


class Encoder:
    """Writes one document: graphs, the shared tensor table, and the problems found on the way."""

    def __init__(self) -> None:
        self.tensors: dict[str, dict[str, Any]] = {}
        self._tensor_names: dict[tuple[str, tuple[int, ...], bytes], str] = {}
        self.problems: list[str] = []

    # ------------------------------------------------------------------ tensors
    def tensor(self, array: Any, name: str | None = None) -> str:
        """Store ``array`` under ``name`` (a weight) or under a content-derived ``const_N`` name (shared).
        A PRNG key array is stored as its key data."""
        array = host_array(array)
        if name is not None:
            if name in self.tensors:
                raise GraphIRError(f"two weights are both named {name!r}; weight names must be unique.")
            self.tensors[name] = encode_array(array)
            return name
        key = (array.dtype.str, array.shape, hashlib.sha256(np.ascontiguousarray(array).tobytes()).digest())
        existing = self._tensor_names.get(key)
        if existing is not None:
            return existing
        index = len(self._tensor_names)
        fresh = f"const_{index}"
        while fresh in self.tensors:
            index += 1
            fresh = f"const_{index}"
        self.tensors[fresh] = encode_array(array)
        self._tensor_names[key] = fresh
        return fresh

    # ------------------------------------------------------------------- graphs
    def closed_jaxpr(self, closed: Any) -> dict[str, Any]:
        return {"graph": self.jaxpr(closed.jaxpr), "consts": [self.tensor(c) for c in closed.consts]}

    def jaxpr(self, jaxpr: Any) -> dict[str, Any]:
        names: dict[Any, str] = {}

        def define(var: Any) -> dict[str, Any]:
            if isinstance(var, jex_core.DropVar):
                return {"name": "_", **aval_json(var.aval)}
            name = f"v{len(names)}"
            names[var] = name
            return {"name": name, **aval_json(var.aval)}

        def use(atom: Any) -> Any:
            if isinstance(atom, jex_core.Literal):
                return {"literal": encode_array(np.asarray(atom.val, dtype=atom.aval.dtype), readable=True)}
            return names[atom]

        graph: dict[str, Any] = {
            "constvars": [define(v) for v in jaxpr.constvars],
            "invars": [define(v) for v in jaxpr.invars],
        }
        eqns = []
        for eqn in jaxpr.eqns:
            entry: dict[str, Any] = {
                "primitive": eqn.primitive.name,
                "inputs": [use(a) for a in eqn.invars],
            }
            if eqn.primitive.multiple_results:
                entry["multiple_results"] = True
            entry["params"] = self._params(eqn)
            entry["outputs"] = [define(v) for v in eqn.outvars]
            location = eqn_location(eqn)
            if location is not None:
                entry["source"] = _source_json(location)
            user_location = eqn_user_location(eqn)
            if user_location != location:  # library frames only: the user's own line is another (or none)
                entry["user_source"] = None if user_location is None else _source_json(user_location)
            scope = eqn_scope(eqn)
            if scope:
                entry["scope"] = scope
            if eqn.effects:
                self.problems.append(f"{eqn.primitive.name}: has side effects {sorted(map(str, eqn.effects))}")
            eqns.append(entry)
        graph["eqns"] = eqns
        graph["outvars"] = [use(a) for a in jaxpr.outvars]
        return graph

    def _params(self, eqn: Any) -> dict[str, Any]:
        encoded = {}
        for name, value in sorted(eqn.params.items()):
            try:
                encoded[name] = encode_param(value, self, primitive=eqn.primitive.name, name=name)
            except (UnencodableParam, GraphIRError) as error:
                location = eqn_location(eqn)
                where = f" at {location}" if location else ""
                self.problems.append(f"{eqn.primitive.name}{where}: parameter {name!r} of type {error}")
        return encoded


def encode_program(
    closed_jaxpr: Any,
    *,
    weights: Sequence[Any],
    weight_names: Sequence[str],
    input_names: Sequence[str],
    output_names: Sequence[str],
    name: str,
    kind: str,
    symbols: Sequence[str],
    enable_double_precision: bool,
    producer: dict[str, str],
) -> dict[str, Any]:
    """The Graph IR document of a program; raises GraphIRError listing every parameter it cannot carry."""
    encoder = Encoder()
    for array, weight_name in zip(weights, weight_names, strict=True):
        encoder.tensor(np.asarray(array), name=weight_name)
    graph = encoder.jaxpr(closed_jaxpr.jaxpr)
    consts = [encoder.tensor(c) for c in closed_jaxpr.consts]
    if encoder.problems:
        listed = "\n".join(f"  {p}" for p in encoder.problems)
        raise GraphIRError(
            f"{len(encoder.problems)} equation parameter(s) have no Graph IR form:\n{listed}\n"
            "Add the type to workbench/jax_to_onnx/graph_ir/params.py (ENUMS, RECORDS or DROPPED) if it is data."
        )
    jaxpr = closed_jaxpr.jaxpr
    user_vars = jaxpr.invars[len(weight_names) :]
    return {
        "format": FORMAT,
        "producer": producer,
        "name": name,
        "kind": kind,
        "enable_double_precision": bool(enable_double_precision),
        "symbols": list(symbols),
        "inputs": [{"name": n, **aval_json(v.aval)} for n, v in zip(input_names, user_vars, strict=True)],
        "outputs": [{"name": n, **aval_json(a.aval)} for n, a in zip(output_names, jaxpr.outvars, strict=True)],
        "weights": list(weight_names),
        "consts": consts,
        "graph": graph,
        "tensors": encoder.tensors,
    }


__all__ = ["FORMAT", "Encoder", "aval_json", "encode_program", "encode_scalar", "shape_json"]
