"""The Graph IR's JSON Schema (draft 2020-12), shipped beside this module, and validation against it."""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

from workbench.errors import GraphIRError

SCHEMA_FILE = "workbench_graph_ir_v1.schema.json"
# A document with many problems lists this many; the rest are counted.
_SHOWN_PROBLEMS = 20


@functools.cache
def graph_ir_schema() -> dict[str, Any]:
    """The JSON Schema of format ``workbench_graph_ir_v1`` (a fresh copy is not made: do not modify it)."""
    text = resources.files("workbench.jax_to_onnx.graph_ir").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
    return json.loads(text)


@functools.cache
def _validator() -> Any:
    import jsonschema

    return jsonschema.Draft202012Validator(graph_ir_schema())


def validate_graph_ir(document: Any) -> None:
    """Raise GraphIRError listing every place where ``document`` breaks the schema."""
    if isinstance(document, dict) and document.get("format") not in (None, "workbench_graph_ir_v1"):
        raise GraphIRError(
            f"format {document.get('format')!r} is not supported; this workbench reads 'workbench_graph_ir_v1'."
        )
    errors = sorted(_validator().iter_errors(document), key=lambda e: list(e.absolute_path))
    if not errors:
        return
    lines = [f"  at /{'/'.join(str(p) for p in error.absolute_path)}: {_short(error.message)}" for error in errors[:_SHOWN_PROBLEMS]]
    more = f"\n  ... and {len(errors) - _SHOWN_PROBLEMS} more" if len(errors) > _SHOWN_PROBLEMS else ""
    raise GraphIRError(f"the document is not a valid workbench_graph_ir_v1 Graph IR ({len(errors)} problem(s)):\n"
                       + "\n".join(lines) + more)


def _short(message: str, limit: int = 200) -> str:
    return message if len(message) <= limit else message[: limit - 3] + "..."
