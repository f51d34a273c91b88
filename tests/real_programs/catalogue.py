"""The real-program catalogue: models and programs written with other projects' published APIs.

Each :class:`RealProgram` builds, with random weights and no downloads, a callable in the style of a
library's own examples (Flax's NNX and Linen examples, Hugging Face transformers' Flax models, Haiku's
nets, Equinox's examples, diffrax, Keras 3 on the JAX backend, jraph, dm-pix, NumPyro, BlackJAX, mctx,
plain jax.numpy programs; distrax and TensorFlow Probability opt-in, see :func:`load_all`), the input
specs to convert it with and concrete arguments for the parity check. ``EXPECTED_FAILURES`` is the one
visible list of programs that do not convert yet, each with its reason; ``FULL_ONLY`` the slowest programs,
which CI leaves to WORKBENCH_REAL_PROGRAMS_FULL=1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Built:
    """What a program builder returns: the callable, its input specs and concrete arguments."""

    fn: Callable[..., Any]
    specs: Sequence[Any]
    args: Sequence[Any]


@dataclass(frozen=True)
class RealProgram:
    name: str
    library: str
    origin: str  # whose published example or model this follows
    build: Callable[[], Built]
    rtol: float = 1e-4
    atol: float = 1e-5
    # environment variables the program needs before its libraries are imported; such programs run in
    # a fresh interpreter (e.g. EQX_ON_ERROR=nan, which equinox reads once, at import)
    env: tuple[tuple[str, str], ...] = ()


PROGRAMS: dict[str, RealProgram] = {}


def program(
    name: str, *, library: str, origin: str, rtol: float = 1e-4, atol: float = 1e-5, env: dict[str, str] | None = None
) -> Callable[[Callable[[], Built]], Callable[[], Built]]:
    """Register a builder in the catalogue under ``name``."""

    def register(build: Callable[[], Built]) -> Callable[[], Built]:
        if name in PROGRAMS:
            raise ValueError(f"real program {name!r} is registered twice")
        PROGRAMS[name] = RealProgram(name, library, origin, build, rtol, atol, tuple(sorted((env or {}).items())))
        return build

    return register


def load_all(*, include_tfp: bool = False) -> dict[str, RealProgram]:
    """Import every program module (each registers its programs) and return the catalogue.

    ``include_tfp`` adds the distrax and TensorFlow Probability programs (tfp_distrax_programs.py): they
    need tfp-nightly, which the lock cannot pin, so they are opt-in (WORKBENCH_REAL_PROGRAMS_TFP=1).
    """
    from tests.real_programs import (  # noqa: F401 - registration on import
        example_models,
        flax_programs,
        graph_image_programs,
        haiku_equinox_programs,
        keras_programs,
        layer_programs,
        numpyro_programs,
        other_programs,
        sampler_programs,
        transformers_families,
    )

    if include_tfp:
        from tests.real_programs import tfp_distrax_programs  # noqa: F401

    return PROGRAMS


def check_program(entry: RealProgram) -> None:
    """Convert ``entry``, run the full ONNX checker, and compare onnxruntime with JAX (raises on a mismatch)."""
    import jax
    import numpy as np
    import onnx

    import workbench as wb
    from tests.support.harness import run_onnx

    built = entry.build()
    model = wb.to_onnx(built.fn, built.specs)
    onnx.checker.check_model(model, full_check=True)
    expected = [np.asarray(x) for x in jax.tree_util.tree_leaves(_reference(built))]
    got = run_onnx(model, [np.asarray(x) for x in jax.tree_util.tree_leaves(list(built.args))])
    assert len(got) == len(expected), f"{len(got)} ONNX outputs vs {len(expected)} JAX outputs"
    for index, (g, e) in enumerate(zip(got, expected, strict=True)):
        assert g.shape == e.shape, f"output {index}: shape {g.shape} vs JAX {e.shape}"
        assert g.dtype == e.dtype, f"output {index}: dtype {g.dtype} vs JAX {e.dtype}"
        if e.dtype.kind in "biu":
            np.testing.assert_array_equal(g, e, err_msg=f"output {index}")
        else:
            np.testing.assert_allclose(g.astype(np.float64), e.astype(np.float64), rtol=entry.rtol, atol=entry.atol,
                                       err_msg=f"output {index}")


# Programs that do not convert yet, with the reason.
EXPECTED_FAILURES: dict[str, str] = {}

# The slowest programs, each a larger sibling of one CI runs (keras_app_resnet50v2, haiku_resnet18,
# keras_app_efficientnetb0, jraph_graph_network, ...): CI's time budget runs the others; WORKBENCH_REAL_PROGRAMS_FULL=1 runs every
# program. Nothing else is skipped.
FULL_ONLY: frozenset[str] = frozenset({
    "haiku_resnet50",  # 55 s at -n 2 under load (haiku_resnet18 is the same code path)
    "keras_app_efficientnetv2s",  # keras_app_efficientnetv2b0 runs
    "keras_app_densenet121",
    "keras_app_inceptionv3",
    "keras_app_nasnetmobile",
    "keras_app_resnet50",  # keras_app_resnet50v2 runs (the PadFusion case)
    "keras_app_vgg16",
    "keras_app_xception",
    "jraph_padded_interaction_network",  # 4.7 CPU s; jraph_graph_network runs
    "numpyro_lkj_mixture",  # 3.2 CPU s; numpyro_potential_energy runs
    "mctx_gumbel_muzero_policy",  # 3.2 CPU s; mctx_muzero_policy runs
})
FULL_ONLY_REASON = "full catalogue only (WORKBENCH_REAL_PROGRAMS_FULL=1): CI runs the rest (its time budget)"


def _reference(built: Built) -> Any:
    """JAX's outputs: compiled with jax.jit (op-by-op dispatch of a large model takes minutes), or run
    eagerly for callables that cannot be jitted (an NNX module that updates its own state)."""
    import jax

    try:
        return jax.jit(built.fn)(*built.args)
    except Exception:  # noqa: BLE001 - not jittable as a whole: the same program, eagerly
        return built.fn(*built.args)
