"""The real-program catalogue: models and programs written with other projects' published APIs.

Each :class:`RealProgram` builds, with random weights and no downloads, a callable in the style of a
library's own examples (Flax's NNX and Linen examples, Hugging Face transformers' Flax models, Haiku's
nets, Equinox's examples, diffrax, Keras 3 on the JAX backend, jraph, dm-pix, NumPyro, BlackJAX, mctx,
pgx, OTT-JAX, evosax, e3nn-jax, JAXopt, FlowJAX, Penzai, einops, gymnax, Jumanji, augmax, interpax, quax,
jaxlie, lineax, tinygp, jax-cosmo, flashbax, s2fft, MuJoCo MJX, AQT's int8 quantization, jmp's mixed precision,
optax training steps, jaxkd, esquilax, diffrax's events, SDEs, neural CDEs and dense output, optimistix's
least squares and minimisers, Flax's nnx.bridge, haliax's named tensors, sympy2jax, Jaxley's neuron
simulations, Brax's physics and PPO policies, plain jax.numpy, lax and jax.scipy programs; distrax, TensorFlow Probability, rlax and JAX MD opt-in, see :func:`load_all`), the input
specs to convert it with and concrete arguments for the parity check. ``EXPECTED_FAILURES`` is the one
visible list of programs that do not convert yet, each with its reason; ``FULL_ONLY`` the slowest programs,
which CI leaves to WORKBENCH_REAL_PROGRAMS_FULL=1.

A program with symbolic dimensions (a batch ``B``, a sequence length ``T``) is also run at other sizes of
them with fresh arguments (tests/real_programs/other_sizes.py), as a served model is; ``FIXED_LENGTH`` lists
the sequence programs whose library needs a constant length, with the measured reason.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# Given sizes for every symbolic dimension of a program's specs and a random generator, arguments of those sizes.
ResizeArgs = Callable[[Mapping[str, int], Any], Sequence[Any]]


@dataclass(frozen=True)
class Built:
    """What a program builder returns: the callable, its input specs and concrete arguments.

    A program with symbolic dimensions is also checked at other sizes of them (see ``other_sizes``):
    ``sizes`` gives, per symbol, the sizes to try instead of the generic pair (1 and the built size + 3),
    for a symbol the model bounds (position tables, convolution windows); ``resize`` makes the arguments
    at given sizes where the generic rule (resize the symbolic axes, draw like the built values) is wrong,
    e.g. an attention mask that must start with real tokens. ``constraints`` bound the symbols where the
    library's model needs it (``"T <= 64"`` for a causal mask cut from a table of 64 positions); the sizes
    tried must meet them. ``runtime`` is ``wb.to_onnx``'s, for a program exported for a runtime as its user
    would (``"onnxruntime-cpu"`` for bfloat16 compute, which onnxruntime's CPU provider has few kernels for).
    """

    fn: Callable[..., Any]
    specs: Sequence[Any]
    args: Sequence[Any]
    sizes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    resize: ResizeArgs | None = None
    constraints: tuple[str, ...] = ()
    runtime: str | None = None


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


def load_all(*, include_tfp: bool = False, include_unlocked: bool = False) -> dict[str, RealProgram]:
    """Import every program module (each registers its programs) and return the catalogue.

    ``include_tfp`` adds the distrax and TensorFlow Probability programs (tfp_distrax_programs.py) and rlax's
    (rlax_programs.py, rlax imports distrax): they need tfp-nightly, which the lock cannot pin, so they are
    opt-in (WORKBENCH_REAL_PROGRAMS_TFP=1).
    ``include_unlocked`` adds the programs of libraries the lock leaves out, opt-in too
    (WORKBENCH_REAL_PROGRAMS_UNLOCKED=1, with those libraries installed): JAX MD (jaxmd_programs.py; jax-md
    requires pymatgen, ~25 packages).
    """
    from tests.real_programs import (  # noqa: F401 - registration on import
        augment_interp_programs,
        buffer_programs,
        e3nn_programs,
        einops_programs,
        environment_programs,
        example_models,
        flax_bridge_programs,
        flax_programs,
        flow_penzai_programs,
        game_programs,
        graph_image_programs,
        haiku_equinox_programs,
        hf_composite_programs,
        jaxopt_programs,
        keras_programs,
        layer_programs,
        named_symbolic_programs,
        neuro_physics_programs,
        numeric_corner_programs,
        numpyro_programs,
        other_programs,
        precision_programs,
        quantized_programs,
        quax_lie_programs,
        sampler_programs,
        science_programs,
        solve_gp_programs,
        solver_event_programs,
        spatial_programs,
        transformers_families,
        transport_search_programs,
    )

    if include_tfp:
        from tests.real_programs import rlax_programs, tfp_distrax_programs  # noqa: F401
    if include_unlocked:
        from tests.real_programs import jaxmd_programs  # noqa: F401

    return PROGRAMS


def check_program(entry: RealProgram, *, other_sizes: bool = True) -> None:
    """Convert ``entry``, run the full ONNX checker, and compare onnxruntime with JAX (raises on a mismatch):
    on the built arguments and, for a program with symbolic dimensions (unless ``other_sizes`` is false), on
    fresh arguments at other sizes of them, in the same onnxruntime session."""
    import onnx
    import onnxruntime as ort

    import workbench as wb
    from tests.real_programs.other_sizes import other_arguments

    built = entry.build()
    model = wb.to_onnx(built.fn, built.specs, constraints=built.constraints, runtime=built.runtime)
    onnx.checker.check_model(model, full_check=True)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    _assert_outputs_vary(entry, _compare(entry, built, session, built.args, "built arguments"))
    for sizes, args in other_arguments(entry.name, built) if other_sizes else ():
        _compare(entry, built, session, args, f"sizes {dict(sizes)}")


def _assert_outputs_vary(entry: RealProgram, expected: Sequence[Any]) -> None:
    """A parity check compares something only if the outputs depend on the weights and inputs: every float
    output of two or more elements (``expected``: JAX's, on the built arguments) must take more than one value
    (Haiku's freshly initialised ResNets output exactly 0, whatever the input, and had passed), but the ones
    ``CONSTANT_OUTPUTS`` lists with their reason."""
    import numpy as np

    allowed = CONSTANT_OUTPUTS.get(entry.name, ((), ""))[0]
    for index, values in enumerate(expected):
        if values.dtype.kind != "f" or values.size < 2 or index in allowed:
            continue
        finite = values[np.isfinite(values)]
        assert finite.size and np.ptp(finite) > 0, (
            f"{entry.name}: output {index} {values.shape} is the same value everywhere "
            f"({finite[:1] if finite.size else 'not finite'}): the comparison says nothing about the program; "
            "give the weights or inputs values that reach the output (tests/support/trained_like.py)")


def _compare(entry: RealProgram, built: Built, session: Any, args: Sequence[Any], where: str) -> list[Any]:
    """onnxruntime's outputs (``session``: an ``ort.InferenceSession`` of the model) on ``args`` against JAX's
    (``where`` names the arguments in errors); JAX's outputs, flattened to NumPy arrays."""
    import jax
    import numpy as np

    expected = [np.asarray(x) for x in jax.tree_util.tree_leaves(_reference(built, args))]
    flat = [np.asarray(x) for x in jax.tree_util.tree_leaves(list(args))]
    names = [i.name for i in session.get_inputs()]
    assert len(names) == len(flat), f"model has inputs {names}, got {len(flat)} arrays"
    try:
        got = session.run(None, dict(zip(names, flat, strict=True)))
    except Exception as error:
        raise AssertionError(f"{where}: onnxruntime refused the model: {str(error)[:2000]}") from error
    assert len(got) == len(expected), f"{where}: {len(got)} ONNX outputs vs {len(expected)} JAX outputs"
    for index, (g, e) in enumerate(zip(got, expected, strict=True)):
        assert g.shape == e.shape, f"{where}: output {index}: shape {g.shape} vs JAX {e.shape}"
        assert g.dtype == e.dtype, f"{where}: output {index}: dtype {g.dtype} vs JAX {e.dtype}"
        if e.dtype.kind in "biu":
            np.testing.assert_array_equal(g, e, err_msg=f"{where}: output {index}")
        else:
            np.testing.assert_allclose(g.astype(np.float64), e.astype(np.float64), rtol=entry.rtol, atol=entry.atol,
                                       err_msg=f"{where}: output {index}")
    return expected


# Float outputs that are one value everywhere on the built arguments, by program: (output indices, reason);
# measured 2026-12-06 over the whole catalogue (every other float output of two or more elements varies).
_PGX_REWARDS = ((1,), "the rewards: 0 for every player until a game ends, and the few random legal moves played "
                      "end no game (the observations, legal-action masks and other outputs vary)")
_FEW_STEPS = "the rewards: 0 on every step until a point is scored, and the few random steps score none (the " \
             "observations, episode ends and actions vary)"
CONSTANT_OUTPUTS: dict[str, tuple[tuple[int, ...], str]] = {
    **{name: _PGX_REWARDS for name in (
        "pgx_animal_shogi", "pgx_backgammon", "pgx_chess", "pgx_connect_four", "pgx_gardner_chess", "pgx_go_9x9",
        "pgx_hex", "pgx_othello", "pgx_sparrow_mahjong", "pgx_tic_tac_toe")},
    "gymnax_cartpole_random": ((1,), "the rewards: CartPole pays 1 on every step, by definition"),
    "gymnax_acrobot_random": ((1,), "the rewards: Acrobot pays -1 on every step until the tip swings up, which "
                                    "12 random steps never do"),
    "gymnax_minatar_breakout_mlp_policy": ((1,), _FEW_STEPS),
    "gymnax_minatar_asterix_random": ((1,), _FEW_STEPS),
    "optax_adafactor_accumulated_step": ((19, 20, 21, 22), "the accumulated gradients: MultiSteps' exported step is "
                                                           "the k-th, which applies the update and resets them to 0 "
                                                           "(the parameters, moments and averages vary)"),
    "brax_inverted_pendulum_generalized": ((1, 2), "the rewards and episode ends: the pendulum pays 1 on every step "
                                                   "it stays up and 8 random steps never drop it (the observations vary)"),
    "brax_reacher_positional": ((2,), "the episode ends: Brax's reacher never terminates (episodes are cut by a "
                                      "time-limit wrapper outside the environment)"),
    "brax_hopper_spring": ((2,), "the episode ends: the hopper ends an episode when it falls, which 6 steps from its "
                                 "reset pose never reach"),
    "jumanji_snake_random": ((0,), "the rewards: 0 until the snake eats the fruit, which 12 random moves do not "
                                   "reach (the grids, step types and actions vary)"),
}

# Programs that do not convert yet, or convert without parity, with the reason.
EXPECTED_FAILURES: dict[str, str] = {
    "evosax_cma_es_scan": "converts, but from the second generation on the population differs: CMA-ES samples "
                          "through eigh's eigenvectors, whose signs are only defined up to sign; the exported eigh "
                          "makes each vector's largest component positive (docs/math.md) and LAPACK does not. "
                          "Measured: with JAX's eigh given that same convention (canonical_signs) the model matches "
                          "JAX to 3e-6 over 4 generations; the first generation (C = I) matches bit for bit "
                          "(evosax_cma_es_generation runs)",
    "s2fft_forward_inverse": "s2fft's on-the-fly transforms (method='jax') run their latitudinal step as s2fft's own "
                             "JAX primitives ftm_to_flm / flm_to_ftm (lowered to XLA through mlir.lower_fun of a JAX "
                             "function), which have no ONNX handler: UnsupportedPrimitiveError naming both. Their impl is "
                             "JAX's apply_primitive (the JAX function exists only inside their MLIR lowering rule), so "
                             "no function is there to trace in their place (tried 2026-12-06). The precomputed-kernel "
                             "transforms (s2fft_precomputed_kernels) convert with parity",
}

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
    "pgx_go_9x9",  # 6.7 CPU s; pgx_connect_four runs
    "pgx_chess",  # 15.6 CPU s (load 7-9); pgx_othello, pgx_hex run
    "pgx_animal_shogi",  # 15.5 CPU s
    "pgx_backgammon",  # 10.8 CPU s; pgx_2048 (the other stochastic step) runs
    "pgx_sparrow_mahjong",  # 13.1 CPU s; pgx_leduc_holdem runs
    "pgx_gardner_chess",  # 11.2 CPU s
    "pgx_kuhn_poker",  # pgx_leduc_holdem (the same betting rules, two rounds) runs
    "e3nn_gated_network",  # 5.8 CPU s with its other sizes; e3nn_spherical_harmonics runs
    "flowjax_masked_autoregressive",  # flowjax_coupling runs (the same bijection machinery)
    "penzai_llamalike_transformer",  # the transformer families run; ~20 CPU s with its other sizes
    # CPU s measured 2026-12-06 under load ~6 on 2 cores (CI runs einops_unet/_perceiver_pack/_mlp_mixer,
    # gymnax_cartpole_random/_minatar_breakout_mlp_policy, jumanji_snake/_tsp_random, augmax_image_and_mask,
    # interpax_splines_2d: ~36 CPU s together)
    "einops_vit",  # 4.3; the transformer families' ViTs run, and einops_perceiver_pack's einsum attention
    "gymnax_acrobot_random",  # 6.8; gymnax_cartpole_random runs (the same classic-control rollout)
    "gymnax_minatar_asterix_random",  # 10.2; gymnax_minatar_breakout_mlp_policy runs
    "gymnax_bsuite_catch_random",  # 3.7
    "gymnax_pendulum_mlp_policy",  # 3.2
    "jumanji_game2048_random",  # 5.0; jumanji_snake_random, jumanji_tsp_random run
    "jumanji_maze_random",  # 4.6
    "augmax_chain_batch",  # 14.8; augmax_image_and_mask runs (the same geometric warp)
    "interpax_interp1d_methods",  # 10.4; interpax_splines_2d runs
    # CPU s measured 2026-12-06 under load 7-10 on 2 cores (CI runs quax_lora_mlp/_tridiagonal_matmul/_sparse_bcoo,
    # jaxlie_so3_quaternions, lineax_*, tinygp_*, flashbax_flat_buffer, jax_cosmo_background and the
    # s2fft_forward_inverse xfail: ~41 s wall at -n 0 under load 8, ~30 CPU s)
    "flashbax_prioritised_buffer",  # 4.9 (9.9 s wall under load 9); flashbax_flat_buffer runs
    "quax_lora_transformer_block",  # 5.3; quax_lora_mlp runs (the same LoRA dispatch)
    "jaxlie_se3_kinematic_chain",  # 6.0; jaxlie_so3_quaternions runs
    "jax_cosmo_power_spectra",  # 15.2; jax_cosmo_background runs (the same ODE tables and interpolation)
    "jax_cosmo_lensing_cl",  # 20.3
    "s2fft_precomputed_kernels",  # 10.5; the complex iota / scatter-mul it needed have handler testcases
    "mjx_pendulum_box_rollout",  # 29.4; the only MJX program (collisions and the constraint solver: a large graph)
    # prog50's programs, s wall at -n 0 measured 2026-12-06 under load 4-8 on 2 cores, CPU s (load 8) where
    # given. CI runs their other 12 (~43 CPU s under load 8 with imports already paid: jnp_*/jax_scipy_*,
    # optax_adamw_train_step, the half-precision ones, aqt_flax_mlp_int8_serving, jaxkd, esquilax)
    "hf_flax_vision_encoder_decoder",  # 18.6; hf_flax_vit and hf_flax_gpt2_lm run its two halves
    "hf_flax_blenderbot_small_lm",  # 11.9; hf_flax_bart runs (the same encoder-decoder code)
    "hf_flax_bert2gpt2",  # 33 (14.6 CPU s); hf_flax_bert and hf_flax_gpt2_lm run its halves, hf_flax_bart cross-attention
    "optax_adafactor_accumulated_step",  # 10.9; optax_adamw_train_step runs (the same exported-step pattern)
    "aqt_flax_mlp_fake_quant",  # 13.5; aqt_flax_mlp_int8_serving runs AQT's quantizing dot_general
    "aqt_cnn_int8_serving",  # 15.8 (AQT's Flax init of the CNN op by op); aqt_flax_mlp_int8_serving runs the int8 serving path
    "aqt_quantized_training_step",  # 25 (19.0 CPU s: JAX compiles AQT's gradient at every size checked)
    "jmp_haiku_mlp_half_compute",  # 9.9; nnx_float16_params_mlp runs float16 compute
    # prog51's programs: CPU s at -n 0 measured 2026-12-06 under load 7-8 on 2 cores (CI runs diffrax_event_falling_ball,
    # optimistix_levenberg_marquardt_fit/_bfgs_minimise and the nnx.bridge pair: ~15 CPU s, ~35 s wall)
    "diffrax_neural_cde",  # 11.4 (37 s wall: its own interpreter, EQX_ON_ERROR=nan); diffrax_ode_tsit5 runs Tsit5/PID
    "diffrax_sde_brownian_tree",  # 6.2 (21 s wall: its own interpreter); diffrax_neural_ode runs fixed steps
    "diffrax_dense_output",  # 5.6 with its other sizes; diffrax_event_falling_ball runs Tsit5's interpolation
    "haliax_conv_classifier",  # 6.2; haliax_gpt_stacked_blocks runs haliax's named layers
    "jaxley_synaptic_network",  # 12.3; jaxley_hh_cell_step_current runs the same integrate loop
    "jaxley_gradient_checkpointed",  # 20.2; closed_call's handler testcase runs its checkpointed loop's gradient
    "brax_inverted_pendulum_generalized",  # 14.6 (JAX's own compile of the rollout: 6.1); brax_ppo_policy_inference runs
    "brax_reacher_positional",  # ~18
    "brax_hopper_spring",  # ~19
    "brax_ppo_loss_gradient",  # 7.3 after Brax's imports; brax_ppo_policy_inference runs the same networks
})
# Programs whose check at other sizes is the heaviest (CPU seconds measured under load: the BART-family
# encoder-decoders 3.3-5.5 s each, haiku_resnet18 4.6 s, Keras applications 4.7-8.1 s; the median program
# 1.5 s), each a sibling of one CI checks at other sizes (hf_flax_bart, haiku_norms_convnet,
# keras_app_mobilenetv2): CI checks them on their built arguments only.
SIZES_FULL_ONLY: frozenset[str] = frozenset({
    "hf_flax_blenderbot", "hf_flax_marian", "hf_flax_mbart", "hf_flax_pegasus", "haiku_resnet18",
    "keras_app_convnext_tiny", "keras_app_efficientnetb0", "keras_app_efficientnetv2b0", "keras_app_resnet50v2",
})

# Sequence programs that keep a fixed sequence length (only their batch is symbolic), each with the reason
# measured when it was given a symbolic length T: the library's code needs a constant length there.
FIXED_LENGTH: dict[str, str] = {
    "haiku_char_lstm_lm": "hk.dynamic_unroll's stateful hk.scan calls jax.lax.scan in a way that needs a constant "
                          "length (InconclusiveDimensionOperation: 'T' used in a context that requires a constant; "
                          "equinox's and flax's scans over a symbolic T trace)",
    "haiku_deep_rnn": "hk.dynamic_unroll over a symbolic T: InconclusiveDimensionOperation in hk.scan (as above)",
    "haiku_lstm_unroll": "hk.dynamic_unroll over a symbolic T: InconclusiveDimensionOperation in hk.scan (as above)",
    "eqx_rotary_attention": "eqx.nn.RotaryPositionalEmbedding builds its table with jnp.arange(float(seq_len)) "
                            "(TypeError: float() argument must be ... not '_DimExpr')",
    "jax_nn_dot_product_attention": "jax.nn.dot_product_attention's local window mask is jnp.array(range(T)) "
                                    "(TypeError: '_DimExpr' object cannot be interpreted as an integer)",
    "jnp_lru_associative_scan": "jax.lax.associative_scan over a symbolic length: NotImplementedError 'associative "
                                "scan over axis of non-constant size: T'",
    "haliax_gpt_stacked_blocks": "haliax's broadcast_arrays orders its operands by size (sorted(..., key=size)): with a "
                                 "symbolic T the attention mask's where compares sizes 'T^2' < '4*B*T^2', which JAX "
                                 "cannot decide (InconclusiveDimensionOperation); the batch B alone is decided",
    "hf_flax_whisper": "FlaxWhisperEncoder adds its whole position table (max_source_positions), so it takes exactly "
                       "2 * max_source_positions frames; the decoder's tokens have a symbolic length",
}

FULL_ONLY_REASON = "full catalogue only (WORKBENCH_REAL_PROGRAMS_FULL=1): CI runs the rest (its time budget)"


def _reference(built: Built, args: Sequence[Any]) -> Any:
    """JAX's outputs on ``args``: compiled with jax.jit (op-by-op dispatch of a large model takes minutes), or
    run eagerly for callables that cannot be jitted (an NNX module that updates its own state)."""
    import jax

    try:
        return jax.jit(built.fn)(*args)
    except Exception:  # noqa: BLE001 - not jittable as a whole: the same program, eagerly
        return built.fn(*args)
