"""Why some primitives can never be exported, and what to do instead (reported with their source line).

These have no handler on purpose: what they compute is not defined by the jaxpr (Python callbacks,
XLA's backend-specific random bit generators). The reason travels in the
``UnsupportedPrimitiveError`` and in ``wb.check``'s report.
"""

from __future__ import annotations

from typing import Any

_EQUINOX_ERRORS_FILE = "equinox/_errors.py"

_XLA_RANDOM = (
    "XLA's RngBitGenerator/RngUniform produce backend-defined bits that ONNX cannot reproduce; use jax.random "
    "with a threefry2x32 key (exported bit-exactly) or pass the random numbers as an input"
)
_CALLBACK = "a host callback runs Python, which an ONNX graph cannot; move it out of the exported function"

REASONS: dict[str, str] = {
    "rng_bit_generator": _XLA_RANDOM,
    "rng_uniform": _XLA_RANDOM,
    "io_callback": _CALLBACK,
    "pure_callback": _CALLBACK,
    "debug_callback": "jax.debug.print / jax.debug.callback run Python; remove them from the exported function",
    "debug_print": "jax.debug.print runs Python; remove it from the exported function",
}


def _from_equinox_error_check(eqn: Any) -> bool:
    traceback = eqn.source_info.traceback
    if traceback is None:
        return False
    codes, _ = traceback.raw_frames()
    return any(code.co_filename.replace("\\", "/").endswith(_EQUINOX_ERRORS_FILE) for code in codes)


def reason_without_handler(eqn: Any) -> str:
    """What to tell the user about a primitive without a handler ("" when there is nothing specific)."""
    name = eqn.primitive.name
    if name == "pure_callback" and _from_equinox_error_check(eqn):
        return (
            "this pure_callback is equinox's runtime error check (eqx.error_if / branched_error_if, used inside "
            "equinox, diffrax, optimistix and lineax); set the environment variable EQX_ON_ERROR=nan before "
            "equinox is imported (failed checks then give NaN outputs instead of raising) and export again"
        )
    return REASONS.get(name, "")
