"""Dead-code elimination on the traced jaxpr, before anything looks at its primitives.

Real programs compute values they never return: PRNG keys split for a Dropout that is off,
``nnx.Rngs`` counters, RNN cells that receive a key and ignore it, auxiliary outputs of a library
call. Without this pass every primitive of that dead code would have to be supported (and its
constants materialised) for the program to convert. JAX's own DCE (``dce_jaxpr_consts``, through :mod:`workbench.compat`) is used: it
knows the primitives' rules (nested jit/cond/scan/custom_jvp bodies are pruned too) and keeps any
equation with effects. The jaxpr's inputs (weights and user inputs) are always kept, so the
inputs of the ONNX graph do not depend on what the function happens to read; unused constants go.
"""

from __future__ import annotations

from typing import Any

from jax.extend import core as jex_core

from workbench.compat import dce_jaxpr_consts


def prune_dead_code(closed_jaxpr: Any) -> Any:
    """``closed_jaxpr`` without the equations and constants its outputs do not depend on."""
    jaxpr = closed_jaxpr.jaxpr
    if not jaxpr.eqns:
        return closed_jaxpr
    pruned, used_consts, _ = dce_jaxpr_consts(
        jaxpr,
        used_outputs=[True] * len(jaxpr.outvars),
        instantiate=[False] * len(jaxpr.constvars) + [True] * len(jaxpr.invars),
    )
    consts = [const for const, used in zip(closed_jaxpr.consts, used_consts, strict=True) if used]
    return jex_core.ClosedJaxpr(pruned, consts)
