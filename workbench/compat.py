"""Every use of a private API of JAX or onnxscript, in one place.

The workbench reaches into a library's internals only where no public API does the job; each such
use is named and explained here, so a library upgrade that breaks one breaks this module and
nothing else. ``tests/test_compat.py`` keeps every other module off private imports.
Public aliases are used wherever they exist (``jax.extend.core.Literal``/``DropVar``,
``jax.extend.linear_util.WrappedFun``, ``jax.lax.GatherScatterMode``,
``jax.extend.core.primitives.*_to_p``, ``jax.extend.random.threefry2x32_p``,
``onnxscript.rewriter.RewriteRule``/``RewriteRuleClassBase``/``MatchResult``, symbolic dims'
``get_vars()``).

JAX's internals are loaded by ``import jax`` anyway, so they are imported here at once;
onnxscript's are imported inside the function that needs them (importing onnxscript costs time that
the ONNX -> JAX direction and the analysis never need).
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx_ir as ir

from jax._src import core as _jax_core
from jax._src import source_info_util as _source_info_util
from jax._src.interpreters import partial_eval as _partial_eval
from jax._src.lax import special as _lax_special
from jax._src.lax.control_flow import solves as _solves
from jax._src.random import prng as _prng

# ----------------------------------------------------------------------------- JAX
#: ``f(ndim, fn)``: ``fn`` of one key, mapped over ``ndim`` leading key-array axes (how JAX's PRNG
#: primitives apply an implementation's seed/split/random_bits to key arrays).
iterated_vmap_unary: Callable[..., Any] = _prng.iterated_vmap_unary
#: ``f(keys_shape, msgs_shape, fn)``: the same for fold_in's (key, message) pairs, with broadcasting.
iterated_vmap_binary_bcast: Callable[..., Any] = _prng.iterated_vmap_binary_bcast
#: ``f(shape)``: the (hi, lo) uint32 counters JAX's threefry random_bits hashes.
iota_2x32_shape: Callable[..., Any] = _prng.iota_2x32_shape


#: The NamedTuple type of custom_linear_solve's ``const_lengths`` and ``jaxprs`` parameters, which the
#: Graph IR writes as a record (jax.lax has no public alias for it).
LinearSolveTuple: type = _solves._LinearSolveTuple  # noqa: SLF001

#: The enum of the ``memory_space`` parameter (``empty2``, the placeholder residual of a differentiated
#: ``cond``), which the Graph IR writes as an enum member (JAX has no public alias for it).
MemorySpace: type = _jax_core.MemorySpace


def jax_internal_primitives() -> dict[str, Any]:
    """JAX's own primitive objects that ``jax.extend.core.primitives`` does not list, by name.

    A jaxpr rebuilt from a Graph IR takes its primitive objects by name (the real ones: the lowering's
    constant evaluation binds them); the public table misses these.
    """
    from jax._src.export import shape_poly
    from jax._src.lax import lax, linalg, slicing
    from jax._src.lax.control_flow import conditionals
    from jax._src.random import core as random_core

    objects = (
        linalg.cholesky_update_p, shape_poly.dim_as_value_p, linalg.geqrf_p, _prng.iota_2x32_shape_p,
        linalg.lu_pivots_to_permutation_p, lax.optimization_barrier_p, linalg.ormqr_p, conditionals.platform_index_p,
        random_core.random_clone_p, _prng.random_unwrap_p, _prng.random_wrap_p, slicing.scatter_sub_p, lax.split_p,
        lax.stack_p, linalg.symmetric_product_p, lax.tile_p, lax.unstack_p,
    )
    return {primitive.name: primitive for primitive in objects}


def register_jax_dialects(registry: Any) -> None:
    """Add the MLIR dialects a jax.export module uses (func, sdy, ...) to an MLIR ``DialectRegistry``:
    jaxlib's extension does it for JAX's own contexts; the StableHLO frontend reads modules with it."""
    from jaxlib.mlir._mlir_libs import _jax_mlir_ext

    _jax_mlir_ext.register_dialects(registry)


def jax_backends_initialized() -> bool:
    """Whether JAX has created its backends (its CPU client), after which it ignores ``PJRT_NPROC`` and
    ``XLA_FLAGS`` (the benchmarks' thread limits check this: jax has no public query)."""
    from jax._src import xla_bridge

    return bool(xla_bridge.backends_are_initialized())


def physical_aval(aval: Any) -> Any:
    """The ShapedArray holding a key array's raw data (``uint32``, the key shape appended)."""
    return _jax_core.physical_aval(aval)


def prng_impl(key_dtype: Any) -> Any:
    """The PRNG implementation (``PRNGImpl``: name, seed, split, random_bits...) of a key dtype."""
    return key_dtype._impl  # noqa: SLF001 - KeyTy keeps it private; JAX's own code reads it the same way


def dce_jaxpr_consts(jaxpr: Any, used_outputs: Sequence[bool], instantiate: Sequence[bool]) -> tuple[Any, list[bool], list[bool]]:
    """JAX's dead-code elimination of a jaxpr: ``(pruned jaxpr, used constvars, used invars)``."""
    return _partial_eval.dce_jaxpr_consts(jaxpr, used_outputs=list(used_outputs), instantiate=list(instantiate))


def has_dce_rule(primitive: Any) -> bool:
    """Whether JAX's dead-code elimination has a rule of its own for ``primitive`` (a call, a loop, a custom
    derivative): one that may rewrite its equation, where the default rule only keeps or drops it whole."""
    return primitive in _partial_eval.dce_rules


def special_function_expansion(primitive: str) -> Callable[..., Any]:
    """JAX's lax-level expansion of a special-function primitive, the one its MLIR lowering traces.

    ``bessel_i0e``, ``igamma``, ``igammac``, ``igamma_grad_a`` and ``regularized_incomplete_beta`` are
    lowered by JAX through these Python functions (Cephes' series, continued fractions with their
    while loops); the public API only binds the primitives. Each takes the primitive's operands.
    """
    broadcast = _lax_special._up_and_broadcast  # noqa: SLF001 - upcasts f16/bf16 and broadcasts, as JAX's lowering does
    expansions: dict[str, Callable[..., Any]] = {
        "bessel_i0e": _lax_special.bessel_i0e_impl,
        "igamma": broadcast(_lax_special.igamma_impl),
        "igammac": broadcast(_lax_special.igammac_impl),
        "igamma_grad_a": broadcast(_lax_special.igamma_grad_a_impl),
        "regularized_incomplete_beta": broadcast(_lax_special.regularized_incomplete_beta_impl),
    }
    return expansions[primitive]


def evaluate_dim(dim: Any, env: Mapping[str, Any]) -> Any:
    """A symbolic dimension expression (``2*B+1``) evaluated with its symbols bound to ``env``'s values.

    The values may be ints or any objects with integer arithmetic (the builder evaluates with
    graph values); JAX's own evaluator does the arithmetic.
    """
    return dim._evaluate(dict(env))  # noqa: SLF001 - JAX has no public evaluator of dimension expressions


def affine_in_one_symbol(dim: Any) -> tuple[str, int, int] | None:
    """``(symbol, scale, offset)`` when the symbolic dimension ``dim`` is ``scale * symbol + offset`` with an
    integer ``scale >= 1`` (an input spec's ``8*h`` or ``2*T+1``), else None.

    The candidate is read off by evaluating ``dim`` at 0 and 1, then confirmed by JAX's own comparison of
    dimension expressions (so ``floordiv(h, 2)`` or ``h*h`` are never taken for affine).
    """
    import jax

    symbols = dim.get_vars()
    if len(symbols) != 1:
        return None
    (symbol,) = symbols
    offset = int(evaluate_dim(dim, {symbol: 0}))
    scale = int(evaluate_dim(dim, {symbol: 1})) - offset
    if scale < 1:
        return None
    (bare,) = jax.export.symbolic_shape(symbol, scope=dim.scope)
    return (symbol, scale, offset) if dim == scale * bare + offset else None


def is_user_filename(file_name: str) -> bool:
    """Whether JAX considers a traceback frame's file user code (not JAX's own)."""
    return _source_info_util.is_user_filename(file_name)


@dataclass(frozen=True)
class Frame:
    """A decoded traceback frame."""

    file_name: str
    start_line: int
    function_name: str


def decode_frame(code: types.CodeType, lasti: int) -> Frame:
    """The file, line and function of one raw traceback frame (``eqn.source_info.traceback.raw_frames()``)."""
    frame = _source_info_util.raw_frame_to_frame(code, lasti)
    return Frame(frame.file_name, frame.start_line, frame.function_name)


# ----------------------------------------------------------------------------- onnxscript
@dataclass(frozen=True)
class RuleRoot:
    """What a rewrite rule's pattern requires of the node it is tried on.

    ``op_type``: the op of the pattern's single output node; ``producer_ops``: for each input of
    that node that the pattern produces by another node, ``(input index, that node's op)``.
    """

    op_type: str
    producer_ops: tuple[tuple[int, str], ...]


def rule_root(rule: Any) -> RuleRoot | None:
    """The root node a ``RewriteRule`` matches, or ``None`` when its pattern has several outputs.

    onnxscript keeps a rule's compiled pattern (``_target_pattern``) and the pattern classes
    (``_pattern_ir``) private; the rule scheduler reads them to try a rule only on nodes it can match.
    """
    from onnxscript.rewriter._pattern_ir import NodeOutputPattern

    pattern = rule._target_pattern  # noqa: SLF001 - see the docstring
    if not pattern.has_single_output_node:
        return None
    root = pattern.output_node
    producers = tuple(
        (index, value.producer().op_type)
        for index, value in enumerate(root.inputs)
        if isinstance(value, NodeOutputPattern)
    )
    return RuleRoot(root.op_type, producers)


def rule_required_ops(rule: Any) -> frozenset[str]:
    """The op types a graph must contain for ``rule``'s pattern to match anywhere in it.

    Every node of the pattern reached from its output nodes through inputs that another pattern node
    computes (``NodeOutputPattern``) has to be matched by a node of that op type; the nodes behind an
    alternative (``OrValue``) are optional and left out, as is a node whose op is not one string
    (a prefix pattern). Reads the rule's private compiled pattern, as :func:`rule_root` does.
    """
    from onnxscript.rewriter._pattern_ir import NodeOutputPattern

    pattern = rule._target_pattern  # noqa: SLF001 - see rule_root
    required: set[str] = set()
    seen: set[int] = set()
    stack = list(pattern.output_nodes)
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        identifier = node.op_identifier()
        if identifier is not None:
            required.add(identifier[1])
        stack.extend(value.producer() for value in node.inputs if isinstance(value, NodeOutputPattern))
    return frozenset(required)


# the attributes in which onnxscript's pattern matcher keeps the match it last tried (the graph, the
# MatchResult with its nodes and bindings, the node under the cursor, the tracer)
_MATCHER_STATE = ("_graph", "_match", "_current_node", "_tracer")


def release_match_state(rule: Any) -> None:
    """Make a ``RewriteRule`` forget the graph it last matched against.

    onnxscript's matcher keeps its last match in private attributes of the rule's matcher (the
    graph, the matched nodes and their bindings) until the rule is tried again. A rule kept for reuse
    (the rule scheduler builds its rules once per thread) would otherwise keep the last converted graph,
    with every weight the conversion made (transposed and BatchNorm-folded kernels), alive after the
    conversion was dropped. Unknown attributes are left alone, so a newer onnxscript that keeps the
    state elsewhere costs memory, not correctness.
    """
    matcher = getattr(rule, "_matcher", None)  # noqa: SLF001 - see the docstring
    if matcher is None:
        return
    state = vars(matcher)
    for name in _MATCHER_STATE:
        if name in state:
            state[name] = None


@dataclass(frozen=True)
class CommonRules:
    """New instances of onnxscript's basic rewrite rules the fusion passes use."""

    transpose_transpose: Any
    no_op_transpose: Any
    reshape_reshape: Any
    unsqueeze_unsqueeze: Any
    no_op_expand: Any
    no_op_cast: Any
    max_min_to_clip: Any
    min_max_to_clip: Any
    matmul_add_to_gemm: Any


def new_common_rules() -> CommonRules:
    """onnxscript's basic rules (``onnxscript.rewriter.rules.common``), built afresh from their classes.

    The public ``common.*_rule`` objects are module-level singletons that every user of onnxscript
    shares (torch.onnx's exporter optimizes its graphs with them): a rule keeps its last match (nodes
    of whatever graph it last saw), so it can neither be used by two threads at once nor copied (a
    deep copy drags the other graph along: torch's fake tensors, onnxscript's uncopyable Opsets).
    The classes that build them live in onnxscript's private modules.
    """
    from onnxscript.rewriter.rules.common import (
        _basic_rules,
        _matmul_add_to_gemm,
        _min_max_to_clip,
    )

    return CommonRules(
        transpose_transpose=_basic_rules.TransposeTranspose.rule(),
        no_op_transpose=_basic_rules.TransposeIdentity.rule(),
        reshape_reshape=_basic_rules.ReshapeReshape.rule(),
        unsqueeze_unsqueeze=_basic_rules.UnsqueezeUnsqueeze.rule(),
        no_op_expand=_basic_rules.ExpandIdentity.rule(),
        no_op_cast=_basic_rules.CastIdentity.rule(),
        max_min_to_clip=_clip_rule_class(_min_max_to_clip.FuseMaxMinToClip, lower_first=True).rule(),
        min_max_to_clip=_clip_rule_class(_min_max_to_clip.FuseMinMaxToClip, lower_first=False).rule(),
        matmul_add_to_gemm=_matmul_add_to_gemm.MatMulAddToGemm.rule(),
    )


def _clip_rule_class(base: type, *, lower_first: bool) -> type:
    """onnxscript's Min/Max → Clip rule class ``base`` with its bounds made as ``ir.Tensor`` directly.

    The bounds are the largest constant of the ``Max`` node and the smallest of the ``Min`` node
    (``lower_first``: the pattern's inner node, ``first_node``, is the ``Max``), named after the
    clipped input as onnxscript names them. onnxscript builds each with ``ir.tensor``, which for a
    NumPy scalar makes exactly this ``ir.Tensor`` after runtime ``Protocol`` checks (~40 against ~3 us;
    70 bounds in Keras's MobileNetV2, whose 35 relu6 become Clips). The bytes exported are the same.
    """

    def compute_constants(self: Any, first_node: ir.Node, second_node: ir.Node, input_name: str = "") -> list[tuple[ir.Tensor, str]]:
        max_node, min_node = (first_node, second_node) if lower_first else (second_node, first_node)
        lower = np.max([value.const_value.numpy() for value in max_node.inputs[1:]])
        upper = np.min([value.const_value.numpy() for value in min_node.inputs[1:]])
        return [(ir.Tensor(lower), f"{input_name}_min"), (ir.Tensor(upper), f"{input_name}_max")]

    return type(base.__name__, (base,), {"compute_constants": compute_constants, "__doc__": base.__doc__})


@dataclass(frozen=True)
class NormFusionClasses:
    """onnxscript's norm fusion rule classes, which :mod:`workbench.jax_to_onnx.passes.norms` subclasses."""

    layer_norm: type
    layer_norm_bias: type
    rms_norm: type


def norm_fusion_classes() -> NormFusionClasses:
    """onnxscript's ``LayerNormFusion``, ``LayerNormBiasFusion`` and ``RmsNormFusion``.

    They are exported only as ready-made rules (``onnxscript.rewriter.rules.fusion``); the norm pass
    subclasses them to add the shape checks they lack, and the classes live in private modules.
    """
    from onnxscript.rewriter.rules.fusion import _layer_norm, _rms_normalization

    return NormFusionClasses(
        layer_norm=_layer_norm.LayerNormFusion,
        layer_norm_bias=_layer_norm.LayerNormBiasFusion,
        rms_norm=_rms_normalization.RmsNormFusion,
    )


# ----------------------------------------------------------------------------- onnx
def open_onnx_external_data(folder: str, location: str, tensor_name: str) -> int:
    """A read-only descriptor of the external data file ``location`` of ``tensor_name``, opened by onnx itself.

    onnx's C++ opener applies its containment rules (a relative path inside ``folder``, no ``..``
    leading out, no symbolic link, a regular file) and raises onnx.checker.ValidationError (or
    OSError) otherwise. onnx has no public function that checks without reading the whole tensor,
    which a memory-mapped model must not do.
    """
    from onnx.external_data_helper import _open_external_data_fd

    return _open_external_data_fd(folder, location, tensor_name, True)


def onnx_reference_attention(*inputs: Any, **attributes: Any) -> tuple[Any, ...]:
    """onnx's reference computation of ``Attention`` called directly (the node suite's expected values come
    from it), for the tests that hold the bfloat16 emitter to it bit for bit. Its ReferenceEvaluator hands
    the ``softcap`` attribute over as a numpy float32, which promotes a bfloat16 softcap and softmax to
    float32; called directly with a Python float it computes in the inputs' type, as the spec says."""
    from onnx.reference.ops.op_attention import _compute_attention

    return _compute_attention(*inputs, **attributes)


__all__ = [
    "CommonRules",
    "Frame",
    "LinearSolveTuple",
    "MemorySpace",
    "NormFusionClasses",
    "RuleRoot",
    "dce_jaxpr_consts",
    "decode_frame",
    "evaluate_dim",
    "iota_2x32_shape",
    "is_user_filename",
    "iterated_vmap_binary_bcast",
    "iterated_vmap_unary",
    "jax_internal_primitives",
    "new_common_rules",
    "norm_fusion_classes",
    "onnx_reference_attention",
    "open_onnx_external_data",
    "physical_aval",
    "prng_impl",
    "register_jax_dialects",
    "release_match_state",
    "rule_root",
]
