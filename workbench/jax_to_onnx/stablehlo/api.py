"""The StableHLO door: a ``jax.export.Exported`` (object, serialized bytes or file) → ONNX, op by op.

The serialized form (``exported.serialize()``) is a flatbuffer read by ``jax.export.deserialize``
(data only, nothing is unpickled or run); its StableHLO module is a portable artefact parsed with
jaxlib's MLIR bindings. Graph inputs and outputs take the Exported's avals, so its symbolic
dimensions (``B``) become ONNX ``dim_param``s; names come from the argument locations JAX records
(``x``, ``params['w']``) and the output pytree, as ``wb.to_onnx`` names them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import onnx_ir as ir

from workbench.errors import SpecError, StableHLOError
from workbench.jax_to_onnx.builder import GraphBuilder, ModelState
from workbench.jax_to_onnx.precision import Precision
from workbench.jax_to_onnx.program import _name_outputs, _names, _output_names_of_tree, assemble_model, check_distinct_io_names
from workbench.jax_to_onnx.stablehlo import mlir
from workbench.jax_to_onnx.stablehlo.context import Sym
from workbench.jax_to_onnx.stablehlo.walker import Walker, check_all_supported

ExportedSource = Any  # jax.export.Exported | bytes | bytearray | str | os.PathLike[str]


def is_exported_source(value: Any) -> bool:
    """True for what ``to_onnx`` hands to this door: an Exported, its bytes, or a path (not a callable)."""
    if isinstance(value, (jax.export.Exported, bytes, bytearray)):
        return True
    return isinstance(value, (str, os.PathLike)) and not callable(value)


def load_exported(source: ExportedSource) -> jax.export.Exported:
    """The Exported of ``source``: itself, its ``serialize()`` bytes, or a file holding them."""
    if isinstance(source, jax.export.Exported):
        return source
    label = "the given bytes"
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise StableHLOError(f"{path} does not exist (expected a file written from jax.export.Exported.serialize()).")
        label = str(path)
        source = path.read_bytes()
    if not isinstance(source, (bytes, bytearray)):
        raise SpecError(f"expected a jax.export.Exported, its serialized bytes or a file path, got {type(source).__name__}.")
    try:
        return jax.export.deserialize(bytearray(source))
    except Exception as error:  # flatbuffer and version errors come as several types
        raise StableHLOError(
            f"{label} is not a serialized jax.export.Exported ({type(error).__name__}: {error}); write it with "
            "jax.export.export(jax.jit(f))(*specs).serialize()."
        ) from error


def _check_exported(exported: jax.export.Exported) -> None:
    if exported.nr_devices != 1:
        raise StableHLOError(f"the Exported runs on {exported.nr_devices} devices; only single-device exports convert.")
    if exported.ordered_effects or exported.unordered_effects:
        raise StableHLOError("the Exported has side effects (callbacks, debug prints); they have no ONNX form.")


def exported_to_onnx(
    source: ExportedSource,
    *,
    opset: int,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    optimize: bool = True,
    precision: Precision = Precision(),
) -> ir.Model:
    """Convert an Exported to an onnx-ir model; raises UnsupportedStableHLOOpError listing every op
    without a converter."""
    exported = load_exported(source)
    _check_exported(exported)
    context = mlir.new_context()
    with context:
        module = mlir.parse_portable_artifact(context, exported.mlir_module_serialized)
        walker = Walker(module)
        check_all_supported(walker)
        main = walker.function("main")
        arguments = list(main.regions[0].blocks[0].arguments)
        kept = sorted(exported.module_kept_var_idx)
        if len(arguments) != len(kept):
            raise StableHLOError(
                f"@main takes {len(arguments)} arguments but the Exported keeps {len(kept)} of its inputs; "
                "exports with tokens or platform arguments are not supported."
            )
        in_names = _names(input_names, _input_names(walker, exported, kept), "input_names")
        out_names = _names(output_names, _output_names_of_tree(exported.out_tree), "output_names")
        check_distinct_io_names(in_names, out_names)
        state = ModelState(opset=opset)
        state.names.update(out_names)
        builder = GraphBuilder(state)
        inputs = [builder.add_input(name, aval) for name, aval in zip(in_names, exported.in_avals, strict=True)]
        args = [Sym(inputs[index], exported.in_avals[index]) for index in kept]
        results = walker.convert_function(builder, "main", args)
        outputs = _name_outputs(builder, [s.value for s in results], out_names, list(exported.out_avals))
        return assemble_model(
            builder, inputs, outputs, name=exported.fun_name, optimize=optimize, precision=precision,
            doc=f"{exported.fun_name} converted from a jax.export StableHLO module by workbench",
        )


def _input_names(walker: Walker, exported: jax.export.Exported, kept: list[int]) -> list[str]:
    """Names JAX recorded for the arguments (the locations of @main's or of the wrapped main's
    arguments), as dotted paths (``params.w``); ``in_N`` where none is recorded."""
    names = [f"in_{i}" for i in range(len(exported.in_avals))]
    main = walker.function("main")
    arguments = list(main.regions[0].blocks[0].arguments)
    recorded = {index: mlir.name_of_location(argument.location) for index, argument in zip(kept, arguments, strict=True)}
    forwarded = _forwarded_names(walker, main, arguments)
    for index, argument in zip(kept, arguments, strict=True):
        text = recorded[index] or forwarded.get(argument.arg_number)
        if text:
            names[index] = _dotted(text)
    if len(set(names)) != len(names):
        return [f"in_{i}" for i in range(len(names))]
    return names


def _forwarded_names(walker: Walker, main: Any, arguments: list[Any]) -> dict[int, str]:
    """For a shape-polymorphic export, @main passes its arguments to the wrapped main function, whose
    arguments carry the names: main argument number → that name."""
    found: dict[int, str] = {}
    for op in main.regions[0].blocks[0].operations:
        operation = op.operation
        if operation.name != "func.call":
            continue
        callee = walker.function(mlir.symbol_ref(operation.attributes["callee"]))
        callee_arguments = list(callee.regions[0].blocks[0].arguments)
        for operand, callee_argument in zip(operation.operands, callee_arguments, strict=True):
            for argument in arguments:
                if operand == argument:
                    name = mlir.name_of_location(callee_argument.location)
                    if name:
                        found[argument.arg_number] = name
    return found


def _dotted(text: str) -> str:
    """``params['w'][0]`` → ``params.w.0`` (the form wb.to_onnx gives pytree leaves)."""
    for opening, closing in (("['", "']"), ('["', '"]'), ("[", "]")):
        text = text.replace(opening, ".").replace(closing, "")
    return text.strip(".") or "in"


__all__ = ["ExportedSource", "exported_to_onnx", "is_exported_source", "load_exported"]
