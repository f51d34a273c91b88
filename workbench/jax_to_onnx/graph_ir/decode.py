"""A Graph IR document → the :class:`Program` the lowering takes (a ClosedJaxpr rebuilt with JAX's core API).

The document is data: primitives are looked up by name among JAX's public primitive objects
(``jax.extend.core.primitives``) or stand in by name for the ones JAX keeps private, and must have a
registered handler; parameters go through the tables of params.py; dtypes through values.DTYPES;
symbolic dimensions through ``jax.export.symbolic_shape``. Nothing is imported, evaluated or
unpickled because a document says so. The caller validates the document against the schema first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax import export as jax_export
from jax.extend import core as jex_core
from jax.extend.core import primitives as jax_primitives

from workbench.compat import jax_internal_primitives
from workbench.errors import GraphIRError, SourceLocation
from workbench.jax_to_onnx.program import Program, RecordedSourceInfo
from workbench.jax_to_onnx.graph_ir.params import DROPPED, decode_param
from workbench.jax_to_onnx.graph_ir.values import decode_array, dtype_from_name

# JAX's primitive objects by name (the public table, and JAX's own others through compat); primitives
# outside these tables (a library's own) get a stand-in of that name.
_PUBLIC_PRIMITIVES: dict[str, Any] = {
    **jax_internal_primitives(),
    **{value.name: value for value in vars(jax_primitives).values() if isinstance(value, jex_core.Primitive)},
}

ExternalReader = Callable[[str, str, np.dtype, tuple[int, ...]], np.ndarray]


def _primitive(name: str, multiple_results: bool) -> Any:
    known = _PUBLIC_PRIMITIVES.get(name)
    if known is not None and known.multiple_results == multiple_results:
        return known
    stand_in = jex_core.Primitive(name)
    stand_in.multiple_results = multiple_results

    def no_code(*args: Any, **params: Any) -> Any:
        del args, params
        raise GraphIRError(
            f"primitive {name!r} is not one of JAX's public primitives, and its handler needs the primitive's "
            "own Python implementation, which a Graph IR does not carry (it is data); convert the function itself."
        )

    stand_in.def_impl(no_code)
    return stand_in


class Decoder:
    """Rebuilds the jaxprs of one document; tensors are decoded once and shared."""

    def __init__(self, document: dict[str, Any], external: ExternalReader | None) -> None:
        self.document = document
        self.external = external
        self.scope = jax_export.SymbolicScope()
        self._tensors: dict[str, np.ndarray] = {}
        self._dims: dict[str, Any] = {}
        self.recorded = RecordedSourceInfo()
        for symbol in document["symbols"]:  # in the order the trace met them, as to_onnx's scope did
            self.dim(symbol, "symbols")

    # ---------------------------------------------------------------- leaves
    def tensor(self, name: str, where: str) -> np.ndarray:
        cached = self._tensors.get(name)
        if cached is not None:
            return cached
        entry = self.document["tensors"].get(name)
        if entry is None:
            raise GraphIRError(f"{where}: no tensor named {name!r} in the document's tensors.")
        array = decode_array(entry, f"tensors[{name!r}]", external=self.external)
        self._tensors[name] = array
        return array

    def dim(self, text: str, where: str) -> Any:
        cached = self._dims.get(text)
        if cached is not None:
            return cached
        try:
            (dim,) = jax_export.symbolic_shape(text, scope=self.scope)
        except Exception as error:  # jax raises several types with parser details
            raise GraphIRError(f"{where}: {text!r} is not a symbolic dimension expression: {error}") from error
        self._dims[text] = dim
        return dim

    def aval(self, entry: dict[str, Any], where: str) -> Any:
        shape = tuple(d if isinstance(d, int) else self.dim(d, where) for d in entry["shape"])
        return jax.core.ShapedArray(shape, dtype_from_name(entry["dtype"], where), weak_type=entry.get("weak_type", False))

    # ---------------------------------------------------------------- graphs
    def closed_jaxpr(self, item: dict[str, Any], where: str) -> Any:
        jaxpr = self.jaxpr(item["graph"], f"{where}.graph")
        consts = [self.tensor(name, f"{where}.consts[{i}]") for i, name in enumerate(item["consts"])]
        if len(consts) != len(jaxpr.constvars):
            raise GraphIRError(f"{where}: {len(consts)} constants for {len(jaxpr.constvars)} constvars.")
        return jex_core.ClosedJaxpr(jaxpr, consts)

    def jaxpr(self, graph: dict[str, Any], where: str) -> Any:
        env: dict[str, Any] = {}

        def define(entry: dict[str, Any], at: str) -> Any:
            aval = self.aval(entry, at)
            if entry["name"] == "_":
                return jex_core.DropVar(aval)
            if entry["name"] in env:
                raise GraphIRError(f"{at}: variable {entry['name']!r} is defined twice.")
            var = jex_core.Var(aval)
            env[entry["name"]] = var
            return var

        def use(atom: Any, at: str) -> Any:
            if isinstance(atom, dict):
                literal = atom["literal"]
                value = decode_array(literal, at)
                return jex_core.Literal(value, self.aval(literal, at))
            try:
                return env[atom]
            except KeyError:
                raise GraphIRError(f"{at}: variable {atom!r} is used before it is defined.") from None

        constvars = [define(e, f"{where}.constvars[{i}]") for i, e in enumerate(graph["constvars"])]
        invars = [define(e, f"{where}.invars[{i}]") for i, e in enumerate(graph["invars"])]
        eqns = []
        for index, entry in enumerate(graph["eqns"]):
            at = f"{where}.eqns[{index}]({entry['primitive']})"
            inputs = [use(a, f"{at}.inputs[{i}]") for i, a in enumerate(entry["inputs"])]
            name = entry["primitive"]
            params = {
                key: decode_param(value, self, primitive=name, name=key, where=f"{at}.params.{key}")
                for key, value in entry["params"].items()
            }
            outputs = [define(e, f"{at}.outputs[{i}]") for i, e in enumerate(entry["outputs"])]
            eqn = jex_core.new_jaxpr_eqn(
                inputs, outputs, _primitive(name, entry.get("multiple_results", False)), params, jex_core.no_effects
            )
            _check_shape_rule(eqn, at)
            location = _location(entry.get("source"))
            if location is not None:
                self.recorded.locations[id(eqn)] = location
            user_location = _location(entry["user_source"]) if "user_source" in entry else location
            if user_location is not None:
                self.recorded.user_locations[id(eqn)] = user_location
            self.recorded.scopes[id(eqn)] = entry.get("scope", "")
            eqns.append(eqn)
        outvars = [use(a, f"{where}.outvars[{i}]") for i, a in enumerate(graph["outvars"])]
        debug_info = jex_core.DebugInfo(
            "workbench Graph IR", f"{self.document['name']} ({where})",
            tuple(e["name"] for e in graph["invars"]), tuple(f"outvars[{i}]" for i in range(len(outvars))),
        )
        return jex_core.Jaxpr(constvars, invars, outvars, eqns, debug_info=debug_info)


def _check_shape_rule(eqn: Any, at: str) -> None:
    """JAX's own shape rule for a public primitive (its abstract evaluation: shapes and dtypes only, nothing is
    computed) takes the equation's inputs and parameters and gives the outputs the document declares.

    An edited or foreign document could hold an equation JAX never writes: a parameter missing or of the wrong
    kind (a fusion recogniser or handler then met a bare ``KeyError``), or outputs whose shapes do not follow
    from the inputs (converted silently into a model onnxruntime refuses). Primitives with parameters the
    Graph IR drops (shardings, JVP/VJP rules) and stand-ins without JAX's rules are left to the lowering.
    """
    primitive = eqn.primitive
    if _PUBLIC_PRIMITIVES.get(primitive.name) is not primitive or primitive.name in DROPPED:
        return
    try:
        result, _ = primitive.abstract_eval(*(atom.aval for atom in eqn.invars), **eqn.params)
    except Exception as error:  # noqa: BLE001 - JAX's shape rules raise TypeError, ValueError, KeyError...
        raise GraphIRError(
            f"{at}: JAX's shape rule for {primitive.name!r} refuses the equation's inputs "
            f"{[atom.aval.str_short() for atom in eqn.invars]} and params {sorted(eqn.params)} "
            f"({type(error).__name__}: {error}). JAX does not write this equation: export the function again with "
            "wb.export_graph_ir instead of editing the document."
        ) from error
    produced = list(result) if primitive.multiple_results else [result]
    declared = [var.aval for var in eqn.outvars]
    if len(produced) != len(declared) or any(
        tuple(got.shape) != tuple(want.shape) or got.dtype != want.dtype for got, want in zip(produced, declared, strict=False)
    ):
        raise GraphIRError(
            f"{at}: the document declares outputs {[aval.str_short() for aval in declared]}, but {primitive.name!r} of "
            f"inputs {[atom.aval.str_short() for atom in eqn.invars]} gives {[aval.str_short() for aval in produced]}; "
            "export the function again with wb.export_graph_ir instead of editing the document."
        )


def _location(source: dict[str, Any] | None) -> SourceLocation | None:
    if source is None:
        return None
    return SourceLocation(source["file"], source["line"], source["function"], cell=source.get("cell"))


def decode_program(document: dict[str, Any], *, external: ExternalReader | None = None) -> Program:
    """The Program of a schema-valid document (GraphIRError for an inconsistent one). Primitives without
    a handler are rebuilt too: the lowering reports them all at once, with the document's source lines."""
    decoder = Decoder(document, external)
    with jax.enable_x64(document["enable_double_precision"]):
        jaxpr = decoder.jaxpr(document["graph"], "graph")
        consts = [decoder.tensor(name, f"consts[{i}]") for i, name in enumerate(document["consts"])]
        weights = [decoder.tensor(name, f"weights[{i}]") for i, name in enumerate(document["weights"])]
    if len(consts) != len(jaxpr.constvars):
        raise GraphIRError(f"consts: {len(consts)} tensors for {len(jaxpr.constvars)} constvars of the graph.")
    inputs, outputs = document["inputs"], document["outputs"]
    if len(weights) + len(inputs) != len(jaxpr.invars):
        raise GraphIRError(
            f"the graph has {len(jaxpr.invars)} invars but the document names {len(weights)} weights "
            f"and {len(inputs)} inputs."
        )
    if len(outputs) != len(jaxpr.outvars):
        raise GraphIRError(f"the graph has {len(jaxpr.outvars)} outvars but the document names {len(outputs)} outputs.")
    for i, (weight, var) in enumerate(zip(weights, jaxpr.invars, strict=False)):
        if tuple(weight.shape) != tuple(var.aval.shape) or weight.dtype != var.aval.dtype:
            raise GraphIRError(
                f"weights[{i}] ({document['weights'][i]!r}): the tensor is {weight.dtype}{list(weight.shape)} "
                f"but the graph reads {var.aval.str_short()}."
            )
    return Program(
        closed_jaxpr=jex_core.ClosedJaxpr(jaxpr, consts),
        weights=weights,
        weight_names=list(document["weights"]),
        input_names=[entry["name"] for entry in inputs],
        output_names=[entry["name"] for entry in outputs],
        name=document["name"],
        x64=document["enable_double_precision"],
        drop_root_scope=document["kind"] == "linen",
        recorded=decoder.recorded,
    )
