"""Graph clean-up and fusion after lowering, then shape annotation.

- common patterns become the ONNX op that says what they are, through onnxscript's pattern
  rewriter (each rule checks the constants it relies on, so numerics are preserved):
  a 1-D bias reshaped to ``(1, ..., 1, N)`` before a broadcasting Add/Mul/Sub is used as is
  (ONNX broadcasts numpy-style); ``MatMul`` + ``Add`` on 2-D inputs → ``Gemm``; the arithmetic
  of ``jax.nn.softmax`` → ``Softmax``; both forms of ``jax.nn.gelu`` (tanh approximation and
  exact erf) → ``Gelu`` at opset 20+ (kept decomposed below);
- unused nodes, initializers and functions are removed (onnx-ir passes);
- common subexpressions (repeated Shape/Gather of the same dim, equal constants) are merged;
- ONNX shape inference fills ``value_info`` for values whose type the lowering did not set
  itself (handler decompositions, fused ops), so every edge shows a shape.

Why hand-written rules: the patterns are those JAX's own decompositions produce (e.g. softmax
with its ``max(-inf, reduce_max)`` guard, gelu's ``x * x * x``), which the generic fusions of
onnxscript do not recognise; the matching and the graph surgery are onnxscript's.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx
import onnx_ir as ir
from onnx_ir.passes import common as common_passes
from onnxscript import optimizer as onnxscript_optimizer
from onnxscript.rewriter._basics import MatchResult
from onnxscript.rewriter._pattern_ir import NodeOutputPattern
from onnxscript.rewriter._rewrite_rule import RewriteRule, RewriteRuleClassBase
from onnxscript.rewriter.rules import common as common_rules
from onnxscript.rewriter.rules.common._matmul_add_to_gemm import MatMulAddToGemm

from workbench.errors import ConversionError
from workbench.export import layout_rules
from workbench.export.bias import bias_reshape_problem, droppable_bias
from workbench.export.ir_values import constant_array

GELU_MIN_OPSET = 20


def _is_scalar(value: ir.Value | None, expected: float, *, rtol: float = 1e-6) -> bool:
    array = constant_array(value)
    if array is None or array.size != 1:
        return False
    actual = float(array.reshape(()))
    if math.isinf(expected):
        return actual == expected
    return math.isclose(actual, expected, rel_tol=rtol, abs_tol=0.0)


def _rank(value: ir.Value) -> int | None:
    return None if value.shape is None else len(value.shape)


# ------------------------------------------------------------------------------------ bias
class _BiasReshapeBase(RewriteRuleClassBase):
    """``Op(x, Reshape(b, [1, ..., 1, *b.shape]))`` → ``Op(x, b)`` (numpy broadcasting adds the leading 1s)."""

    op_type = "Add"

    def pattern(self, op, x, bias, shape):  # noqa: ANN001, ANN201 - onnxscript pattern builder
        return getattr(op, self.op_type)(x, op.Reshape(bias, shape))

    def check(self, context, x, bias, shape) -> MatchResult:  # noqa: ANN001
        del context
        result = MatchResult()
        problem = bias_reshape_problem(x, bias, shape)
        return result.fail(problem) if problem else result

    def rewrite(self, op, x, bias, shape):  # noqa: ANN001, ANN201
        del shape
        return getattr(op, self.op_type)(x, bias)


class AddReshapedBias(_BiasReshapeBase):
    op_type = "Add"


class MulReshapedBias(_BiasReshapeBase):
    op_type = "Mul"


class SubReshapedBias(_BiasReshapeBase):
    op_type = "Sub"


# --------------------------------------------------------------------------------- softmax
class SoftmaxFusion(RewriteRuleClassBase):
    """jax.nn.softmax: ``e = Exp(x - Unsqueeze(Max(ReduceMax(x, a), -inf), a))``, ``e / Unsqueeze(ReduceSum(e, a), a)``."""

    def pattern(self, op, x, floor, axes_max, axes_unsq1, axes_sum, axes_unsq2):  # noqa: ANN001, ANN201
        reduced = op.ReduceMax(x, axes_max, keepdims=0)
        shifted = op.Sub(x, op.Unsqueeze(op.Max(reduced, floor), axes_unsq1))
        exp = op.Exp(shifted)
        total = op.Unsqueeze(op.ReduceSum(exp, axes_sum, keepdims=0), axes_unsq2)
        return op.Div(exp, total)

    def check(self, context, x, floor, axes_max, axes_unsq1, axes_sum, axes_unsq2) -> MatchResult:  # noqa: ANN001
        del context
        result = MatchResult()
        if not _is_scalar(floor, -math.inf):
            return result.fail("the max guard is not -inf")
        axes = [constant_array(a) for a in (axes_max, axes_unsq1, axes_sum, axes_unsq2)]
        rank = _rank(x)
        if rank is None or any(a is None or a.size != 1 for a in axes):
            return result.fail("softmax over one constant axis only")
        normalized = {int(a.reshape(())) % rank for a in axes}
        if len(normalized) != 1:
            return result.fail("reduction and unsqueeze axes differ")
        return result

    def rewrite(self, op, x, floor, axes_max, axes_unsq1, axes_sum, axes_unsq2):  # noqa: ANN001, ANN201
        del floor, axes_unsq1, axes_sum, axes_unsq2
        return op.Softmax(x, axis=int(constant_array(axes_max).reshape(())))


# ------------------------------------------------------------------------------------ gelu
_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)


class GeluTanhFusion(RewriteRuleClassBase):
    """jax.nn.gelu(approximate=True): ``x * ((1 + tanh((x + x*x*x * 0.044715) * sqrt(2/pi))) * 0.5)``."""

    def pattern(self, op, x, c_cube, c_scale, one, half):  # noqa: ANN001, ANN201
        cube = op.Mul(x, op.Mul(x, x))
        inner = op.Mul(op.Add(x, op.Mul(cube, c_cube)), c_scale)
        return op.Mul(x, op.Mul(op.Add(op.Tanh(inner), one), half))

    def check(self, context, x, c_cube, c_scale, one, half) -> MatchResult:  # noqa: ANN001
        del context, x
        result = MatchResult()
        if not (
            _is_scalar(c_cube, 0.044715, rtol=1e-5)
            and _is_scalar(c_scale, _SQRT_2_OVER_PI, rtol=1e-5)
            and _is_scalar(one, 1.0)
            and _is_scalar(half, 0.5)
        ):
            return result.fail("constants are not those of the tanh gelu")
        return result

    def rewrite(self, op, x, c_cube, c_scale, one, half):  # noqa: ANN001, ANN201
        del c_cube, c_scale, one, half
        return op.Gelu(x, approximate="tanh")


class GeluErfFusion(RewriteRuleClassBase):
    """jax.nn.gelu(approximate=False): ``(x * 0.5) * (1 - erf(-x * (1/sqrt 2)))``."""

    def pattern(self, op, x, half, inv_sqrt2, one):  # noqa: ANN001, ANN201
        return op.Mul(op.Mul(x, half), op.Sub(one, op.Erf(op.Mul(op.Neg(x), inv_sqrt2))))

    def check(self, context, x, half, inv_sqrt2, one) -> MatchResult:  # noqa: ANN001
        del context, x
        result = MatchResult()
        if not (_is_scalar(half, 0.5) and _is_scalar(inv_sqrt2, 1 / math.sqrt(2), rtol=1e-5) and _is_scalar(one, 1.0)):
            return result.fail("constants are not those of the erf gelu")
        return result

    def rewrite(self, op, x, half, inv_sqrt2, one):  # noqa: ANN001, ANN201
        del half, inv_sqrt2, one
        return op.Gelu(x)


# ------------------------------------------------------------------------------ layer norm
class LayerNormFusion(RewriteRuleClassBase):
    """flax ``LayerNorm`` (fast variance): mean and E[x²] over the trailing axes, ``var = max(E[x²] - mean², 0)``,
    ``(x - mean) * (rsqrt(var + eps) * scale) + bias`` → ``LayerNormalization``.

    The variance form differs from ONNX's ``E[(x - mean)²]`` only by rounding (ONNX's is the more
    accurate one); the rule checks every constant and shape it relies on: the axes are the trailing
    ones, the divisor is their size, the guard is 0, the re-shaped statistics keep x's other dims.
    """

    def __init__(self, *, with_scale: bool, with_bias: bool) -> None:
        super().__init__(name=f"LayerNorm{'Scale' if with_scale else ''}{'Bias' if with_bias else ''}")
        self.with_scale = with_scale
        self.with_bias = with_bias

    def pattern(self, op, x, axes, axes2, count, count2, zero, mean_shape, var_shape, eps, scale, bias):  # noqa: ANN001, ANN201
        mean = op.Div(op.ReduceSum(x, axes, keepdims=0), count)
        mean_sq = op.Div(op.ReduceSum(op.Mul(x, x), axes2, keepdims=0), count2)
        var = op.Max(op.Sub(mean_sq, op.Mul(mean, mean)), zero)
        centered = op.Sub(x, op.Reshape(mean, mean_shape))
        inv_std = op.Reciprocal(op.Sqrt(op.Add(op.Reshape(var, var_shape), eps)))
        normalized = op.Mul(centered, op.Mul(inv_std, scale) if self.with_scale else inv_std)
        return op.Add(normalized, bias) if self.with_bias else normalized

    def check(self, context, x, axes, axes2, count, count2, zero, mean_shape, var_shape, eps, scale=None, bias=None) -> MatchResult:  # noqa: ANN001
        del context, mean_shape, var_shape
        result = MatchResult()
        if x.dtype != ir.DataType.FLOAT or x.shape is None:
            return result.fail("fused for float32 inputs of known rank only (LayerNormalization stashes float32)")
        rank = len(x.shape)
        axes_array, axes2_array = constant_array(axes), constant_array(axes2)
        if axes_array is None or axes2_array is None:
            return result.fail("reduction axes are not constant")
        normalized = sorted({int(a) % rank for a in axes_array.reshape(-1)})
        if sorted({int(a) % rank for a in axes2_array.reshape(-1)}) != normalized or not normalized:
            return result.fail("the two means reduce different axes")
        if normalized != list(range(normalized[0], rank)):
            return result.fail("LayerNormalization normalizes trailing axes only")
        trailing = [x.shape[a] for a in normalized]
        if not all(isinstance(d, int) for d in trailing):
            return result.fail("normalized axes must be static")
        size = float(math.prod(trailing))
        if not (_is_scalar(count, size) and _is_scalar(count2, size) and _is_scalar(zero, 0.0)):
            return result.fail("divisors are not the normalized size or the variance guard is not 0")
        eps_array = constant_array(eps)
        if eps_array is None or eps_array.size != 1 or not float(eps_array.reshape(())) >= 0.0:
            return result.fail("epsilon is not a non-negative constant")
        for value in (scale, bias) if self.with_scale else (bias,):
            if value is None:
                continue
            if value.shape is None or list(value.shape) != trailing:
                return result.fail("scale and bias must have exactly the normalized shape")
        return result

    def rewrite(self, op, x, axes, axes2, count, count2, zero, mean_shape, var_shape, eps, scale=None, bias=None):  # noqa: ANN001, ANN201
        del axes2, count, count2, zero, mean_shape, var_shape
        rank = len(x.shape)
        first_axis = min(int(a) % rank for a in constant_array(axes).reshape(-1))
        epsilon = float(constant_array(eps).reshape(()))
        trailing = [int(d) for d in x.shape[first_axis:]]
        if not self.with_scale:
            scale = op.Constant(value=ir.tensor(np.ones(trailing, np.float32)))
        inputs = [x, scale] + ([bias] if self.with_bias else [])
        return op.LayerNormalization(*inputs, axis=first_axis, epsilon=epsilon)


# ------------------------------------------------------------------------------- the driver
# commutative binary ops whose constant operand is moved to the right before matching, so that one
# pattern orientation covers ``0.5 * x`` and ``x * 0.5``
_COMMUTATIVE = frozenset({"Add", "Mul", "Max", "Min", "And", "Or", "Xor", "Equal", "BitwiseAnd", "BitwiseOr"})


def canonicalize_constant_operands(graph: ir.Graph | ir.Function) -> None:
    """``Op(constant, x)`` → ``Op(x, constant)`` for commutative binary ops, in place (subgraphs too)."""
    for node in graph:
        if node.op_type in _COMMUTATIVE and node.domain == "" and len(node.inputs) == 2:
            left, right = node.inputs
            if _constant_producer(left) and not _constant_producer(right):
                node.replace_input_with(0, right)
                node.replace_input_with(1, left)
        for subgraph in _subgraphs(node):
            canonicalize_constant_operands(subgraph)


def _constant_producer(value: ir.Value | None) -> bool:
    if value is None:
        return False
    if value.const_value is not None:
        return True
    producer = value.producer()
    return producer is not None and producer.op_type == "Constant" and producer.domain == ""


# the standard ops with graph attributes (bodies and branches)
_CONTROL_FLOW_OPS = frozenset({"If", "Loop", "Scan", "SequenceMap"})


def _subgraphs(node: ir.Node) -> list[ir.Graph]:
    if node.domain == "" and node.op_type not in _CONTROL_FLOW_OPS:
        return []
    graphs: list[ir.Graph] = []
    for attr in node.attributes.values():
        if attr.type == ir.AttributeType.GRAPH:
            graphs.append(attr.value)
        elif attr.type == ir.AttributeType.GRAPHS:
            graphs.extend(attr.value)
    return graphs


def _rule_phases(opset: int) -> list[list[tuple[RewriteRule, bool]]]:
    """The rules that apply at ``opset`` as (rule, try both operand orders), phase by phase.

    Chains of layout ops that cancel or combine (Transpose∘Transpose, Reshape∘Reshape, no-op
    Transpose/Expand/Cast: onnxscript's own rules) and bias reshapes go first so the larger
    patterns see plain 1-D biases and scales; the
    LayerNorm forms without a bias go last (they are part of the forms with one). The larger
    patterns match the canonical operand order only (see :func:`canonicalize_constant_operands`):
    onnxscript's ``commute`` expands each of them into 2^(commutative ops) variants (128 for gelu),
    which made the rewriter the slowest step of a conversion.
    """
    layout = [(rule, False) for rule in (
        common_rules.transpose_transpose_rule,
        common_rules.no_op_transpose_rule,
        common_rules.reshape_reshape_rule,
        common_rules.unsqueeze_unsqueeze_rule,
        common_rules.no_op_expand_rule,
        common_rules.no_op_cast_rule,
    )]
    bias = [(AddReshapedBias.rule(), True), (MulReshapedBias.rule(), True), (SubReshapedBias.rule(), True)]
    fusions = [(MatMulAddToGemm.rule(), True), (SoftmaxFusion.rule(), False)]
    fusions += [(LayerNormFusion.rule(with_scale=scale, with_bias=True), False) for scale in (True, False)]
    if opset >= GELU_MIN_OPSET:
        fusions += [(GeluTanhFusion.rule(), False), (GeluErfFusion.rule(), False)]
    # a LayerNorm without bias is a prefix of one with bias: only tried once those have been fused
    unbiased = [(LayerNormFusion.rule(with_scale=scale, with_bias=False), False) for scale in (True, False)]
    return [layout + bias, fusions, unbiased]


def fusion_rules(opset: int) -> list[RewriteRule]:
    """Every rewrite rule (with its commuted variants) that applies at ``opset``, in application order."""
    rules: list[RewriteRule] = []
    for phase in _rule_phases(opset):
        for rule, commute in phase:
            rules.extend(rule.commute() if commute else [rule])
    return rules


@dataclass(frozen=True)
class _IndexedRule:
    """A rule with the op types its root node and the root's direct producers must have.

    Checking those few op types first rejects almost every node without entering onnxscript's
    matcher (a full match attempt costs ~100x more).
    """

    rule: RewriteRule
    root_op: str | None
    producer_ops: tuple[tuple[int, str], ...]
    # a cheap necessary condition on the root node, for single-node rules tried on every node of their op type
    guard: Callable[[ir.Node], bool] | None = None

    @classmethod
    def of(cls, rule: RewriteRule) -> _IndexedRule:
        pattern = rule._target_pattern  # noqa: SLF001 - onnxscript keeps the compiled pattern private
        if not pattern.has_single_output_node:
            return cls(rule, None, ())
        root = pattern.output_node
        producers = tuple(
            (index, value.producer().op_type)
            for index, value in enumerate(root.inputs)
            if isinstance(value, NodeOutputPattern)
        )
        return cls(rule, root.op_type, producers, _ROOT_GUARDS.get(rule.name))

    def may_match(self, node: ir.Node) -> bool:
        if self.guard is not None and not self.guard(node):
            return False
        for index, op_type in self.producer_ops:
            if index >= len(node.inputs):
                return False
            value = node.inputs[index]
            producer = None if value is None else value.producer()
            if producer is None or producer.op_type != op_type:
                return False
        return True


def _is_identity_transpose(node: ir.Node) -> bool:
    """What onnxscript's ``TransposeIdentity`` checks: a ``perm`` attribute of ints in order."""
    perm = node.attributes.get("perm")
    return perm is not None and perm.type == ir.AttributeType.INTS and list(perm.as_ints()) == list(range(len(perm.as_ints())))


def _may_drop_bias_reshape(node: ir.Node) -> bool:
    """What the ``*ReshapedBias`` rules check, for either operand order."""
    if len(node.inputs) != 2:
        return False
    left, right = node.inputs
    return any(
        x is not None and operand is not None and droppable_bias(x, operand) is not None
        for x, operand in ((left, right), (right, left))
    )


def _may_become_gemm(node: ir.Node) -> bool:
    """What onnxscript's ``MatMulAddToGemm`` checks first: an added MatMul of two 2-D inputs."""
    for value in node.inputs:
        producer = None if value is None else value.producer()
        if producer is not None and producer.op_type == "MatMul" and all(
            operand is not None and operand.shape is not None and len(operand.shape) == 2 for operand in producer.inputs
        ):
            return True
    return False


# rule name → a condition its check requires, tested before entering onnxscript's matcher (a failed
# match costs ~100x more); for the rules tried, and mostly failing, on every node of a common op type
_ROOT_GUARDS: dict[str, Callable[[ir.Node], bool]] = {
    "TransposeIdentity": _is_identity_transpose,
    "AddReshapedBias": _may_drop_bias_reshape,
    "SubReshapedBias": _may_drop_bias_reshape,
    "MulReshapedBias": _may_drop_bias_reshape,
    "MatMulAddToGemm": _may_become_gemm,
}


def _apply_rules(
    model: ir.Model,
    graph: ir.Graph | ir.Function,
    rules_by_root: dict[str | None, list[_IndexedRule]],
    *,
    only: set[ir.Node] | None = None,
    touched: set[ir.Node] | None = None,
) -> int:
    """Try the rules whose root op is each node's op type; onnxscript matches and replaces.

    ``only`` restricts the roots tried to those nodes (plus every node holding a subgraph, whose
    body is searched whole); ``touched`` collects the nodes whose match may have changed through
    this call's rewrites (see :func:`_note_rewrite_neighbourhood`).

    (onnxscript's ``RewriteRuleSet`` tries every rule on every node, which costs about as much as the
    rest of the conversion for a 1,000-node graph; indexing the rules by root op type avoids that.)
    """
    count = 0
    catch_all = rules_by_root.get(None, [])
    for node in list(graph):
        if node.graph is None:  # removed by an earlier rewrite
            continue
        subgraphs = _subgraphs(node)
        if only is not None and node not in only and not subgraphs:
            continue
        for indexed in rules_by_root.get(node.op_type, []) + catch_all:
            if not indexed.may_match(node):
                continue
            delta = indexed.rule.try_rewrite(model, graph, node)
            if delta is None:
                continue
            if delta.new_initializers:
                if not isinstance(graph, ir.Graph):
                    continue  # a function body has no initializers: leave this match alone
                for initializer in delta.new_initializers:
                    _register_initializer(graph, initializer)
            upstream = [value.producer() for matched in delta.match.nodes for value in matched.inputs if value is not None]
            ir.convenience.replace_nodes_and_values(
                graph, node, delta.match.nodes, delta.new_nodes, delta.match.outputs, delta.new_outputs
            )
            if touched is not None:
                _note_rewrite_neighbourhood([*delta.new_nodes, *upstream], touched)
            count += 1
            break
        else:
            for subgraph in subgraphs:
                count += _apply_rules(model, subgraph, rules_by_root)
    return count


# how far below a rewrite a pattern root can be and still have seen the change: the layout rules'
# patterns reach at most two nodes up from their root (``Add(Reshape(MatMul(..)))``), one more for margin
_PATTERN_REACH = 3


def _note_rewrite_neighbourhood(seeds: list[ir.Node | None], touched: set[ir.Node]) -> None:
    """Add to ``touched`` every node a pattern rooted at which may match differently after a rewrite.

    A pattern looks upwards from its root through the producers of its inputs, and onnxscript refuses
    a match whose inner values have uses outside it. So the roots that can see a rewrite are the new
    nodes and the nodes a few steps below them or below the producers that fed the replaced nodes (one
    of their uses went away). Every other node would fail exactly as it failed in the previous round.
    """
    frontier = {node for node in seeds if node is not None and node.graph is not None}
    for _ in range(_PATTERN_REACH):
        touched |= frontier
        frontier = {use.node for node in frontier for output in node.outputs for use in output.uses()} - touched
    touched |= frontier


def _register_initializer(graph: ir.Graph, initializer: ir.Value) -> None:
    """Add a rule's new initializer, renamed when another value already has its name.

    (Rules name their constants after the value they rewrite, e.g. ``reshape_179/shape``; a second
    rewrite of the same value would otherwise point its node at an unregistered twin.)
    """
    existing = graph.initializers.get(initializer.name)
    if existing is initializer:
        return
    if existing is not None:
        base, suffix = initializer.name, 1
        while f"{base}_{suffix}" in graph.initializers:
            suffix += 1
        initializer.name = f"{base}_{suffix}"
    graph.register_initializer(initializer)


def fuse_patterns(model: ir.Model) -> int:
    """Apply the fusion rules to the main graph, its subgraphs and the local functions, in place.

    Returns how many rewrites happened.
    """
    graphs: list[ir.Graph | ir.Function] = [model.graph, *model.functions.values()]
    for graph in graphs:
        canonicalize_constant_operands(graph)
    count = 0
    for rules_by_root in _indexed_phases(model.opset_imports.get("", 0)):
        for graph in graphs:
            count += _apply_rules(model, graph, rules_by_root)
    return count


@functools.lru_cache(maxsize=None)
def _indexed_phases(opset: int) -> tuple[dict[str | None, list[_IndexedRule]], ...]:
    """The rule phases indexed by root op, built once per opset (compiling patterns takes a while)."""
    phases = []
    for phase in _rule_phases(opset):
        rules_by_root: dict[str | None, list[_IndexedRule]] = {}
        for rule, commute in phase:
            for variant in rule.commute() if commute else [rule]:
                indexed = _IndexedRule.of(variant)
                rules_by_root.setdefault(indexed.root_op, []).append(indexed)
        phases.append(rules_by_root)
    return tuple(phases)


# rounds of the layout rules at most: each round moves a reshape one op further out, the GPT's
# attention needs three
_LAYOUT_ROUNDS = 6


def rewrite_layouts(model: ir.Model) -> int:
    """Apply :mod:`workbench.export.layout_rules` to the main graph until nothing changes; returns the count."""
    (rules_by_root,) = _indexed_layout_rules()
    layout_rules.annotate_shapes(model.graph)
    total = 0
    only: set[ir.Node] | None = None  # the first round tries every node, later ones what the last changed
    for _ in range(_LAYOUT_ROUNDS):
        touched: set[ir.Node] = set()
        count = _apply_rules(model, model.graph, rules_by_root, only=only, touched=touched)
        total += count
        if count == 0:
            break
        only = touched
    if total:
        total += layout_rules.drop_no_op_reshapes(model.graph)
    return total


@functools.lru_cache(maxsize=1)
def _indexed_layout_rules() -> tuple[dict[str | None, list[_IndexedRule]]]:
    rules_by_root: dict[str | None, list[_IndexedRule]] = {}
    for rule in layout_rules.layout_rules():
        indexed = _IndexedRule.of(rule)
        rules_by_root.setdefault(indexed.root_op, []).append(indexed)
    return (rules_by_root,)


# ------------------------------------------------------------------------- constant folding
# onnxscript folds nodes whose inputs are all constants up to this many elements each (its default,
# 8192, leaves e.g. a causal mask broadcast over 8 heads of 64x64 in the graph)
FOLD_INPUT_LIMIT = 1 << 16


def fold_constants(model: ir.Model, weights: frozenset[str]) -> None:
    """Evaluate constant subgraphs (masks, iotas, index arithmetic) with onnxscript's folder, in place.

    Nodes reading a weight are left alone: folding ``Reshape(bias)`` would replace the initializer
    named after the module path by an anonymous copy. Equal folded constants (the same causal mask
    in every block) are then stored once.
    """

    def should_fold(node: ir.Node) -> bool | None:
        if any(value is not None and value.name in weights for value in node.inputs):
            return False
        return None

    onnxscript_optimizer.fold_constants(model, input_size_limit=FOLD_INPUT_LIMIT, should_fold=should_fold)
    _share_equal_constants(model.graph, weights)


def _share_equal_constants(graph: ir.Graph, weights: frozenset[str]) -> None:
    """Point every use of an anonymous initializer at the first one with the same dtype, shape and bytes."""
    seen: dict[tuple[ir.DataType, tuple[int, ...], bytes], ir.Value] = {}
    for value in list(graph.initializers.values()):
        tensor = value.const_value
        if tensor is None or value.name in weights or value.is_graph_input() or value.is_graph_output():
            continue
        key = (tensor.dtype, tuple(tensor.shape), hashlib.sha256(tensor.tobytes()).digest())
        first = seen.setdefault(key, value)
        if first is not value:
            value.replace_all_uses_with(first)


def fold_weight_layouts(graph: ir.Graph, weights: frozenset[str]) -> int:
    """``MatMul(x, Reshape/Transpose(W))`` with W a weight used only there → ``MatMul(x, W')``, in place;
    likewise a bias ``Add(y, Reshape(b))`` (attention's per-head bias (8, 32) added as (256,)).

    W' is stored under W's own name (so weights stay named after their module path) in the layout
    the MatMul wants (e.g. an attention kernel (256, 8, 32) as (256, 256)). Returns how many folded.
    """
    count = 0
    for node in list(graph):
        if node.op_type not in ("Reshape", "Transpose") or node.domain != "" or node.graph is None:
            continue
        weight, output = node.inputs[0], node.outputs[0]
        if weight is None or weight.name not in weights or weight.const_value is None or len(weight.uses()) != 1:
            continue
        if output.is_graph_output() or not all(_takes_weight_layout(use) for use in output.uses()):
            continue
        array = weight.const_value.numpy()
        if node.op_type == "Transpose":
            perm = node.attributes.get("perm")
            array = np.transpose(array, None if perm is None else list(perm.as_ints()))
        else:
            target = constant_array(node.inputs[1])
            if target is None or 0 in target or node.attributes.get_int("allowzero", 0):
                continue
            array = array.reshape([int(d) for d in target])
        weight.const_value = ir.Tensor(np.ascontiguousarray(array), name=weight.name)
        weight.shape = ir.Shape(array.shape)
        output.replace_all_uses_with(weight)
        graph.remove(node, safe=True)
        count += 1
    return count


def _takes_weight_layout(use: ir.Usage) -> bool:
    """Whether a use of a re-laid-out weight can read the weight stored in that layout instead."""
    return (use.node.op_type == "MatMul" and use.idx == 1) or use.node.op_type == "Add"


def run_passes(model: ir.Model, *, optimize: bool = True, weights: frozenset[str] = frozenset()) -> onnx.ModelProto:
    """Clean up, fold constants and fuse patterns (``optimize``), then annotate shapes; returns the proto.

    ``weights`` names the initializers that hold the model's parameters: they keep their names and shapes.
    """
    passes: list[ir.passes.PassBase] = [common_passes.RemoveUnusedNodesPass()]
    if optimize:
        passes.append(common_passes.CommonSubexpressionEliminationPass())
    manager = ir.passes.PassManager(passes)
    manager(model)
    if optimize:
        fold_constants(model, weights)
        fuse_patterns(model)
        rewrite_layouts(model)
        fold_weight_layouts(model.graph, weights)
    cleanup = ir.passes.PassManager(
        [
            common_passes.RemoveUnusedNodesPass(),
            common_passes.RemoveUnusedFunctionsPass(),
            common_passes.RemoveUnusedOpsetsPass(),
        ]
    )
    cleanup(model)
    return infer_shapes(model)


# initializers above this size are left out of the model that ONNX shape inference sees: it only
# needs their types, while copying megabytes of weights through it twice costs more than the inference
_SHAPE_INFERENCE_TENSOR_LIMIT = 4096


def infer_shapes(model: ir.Model) -> onnx.ModelProto:
    """Serialize ``model`` with ``value_info`` filled in by ONNX shape inference (strict, with data propagation).

    Large initializers are passed to the inference as typed graph inputs without data and put back
    (in their original order) afterwards, so the weights are serialized once and never copied.
    """
    graph = model.graph
    order = list(graph.initializers)
    large = [
        value
        for value in graph.initializers.values()
        if value.const_value is not None and value.const_value.nbytes > _SHAPE_INFERENCE_TENSOR_LIMIT
    ]
    tensors = {value.name: value.const_value for value in large}
    original_inputs = len(graph.inputs)
    for value in large:
        graph.initializers.pop(value.name)
        value.const_value = None
        graph.inputs.append(value)
    try:
        light = ir.serde.serialize_model(model)
    finally:
        del graph.inputs[original_inputs:]
        for value in large:
            value.const_value = tensors[value.name]
            graph.register_initializer(value)
    try:
        proto = onnx.shape_inference.infer_shapes(light, strict_mode=True, data_prop=True)
    except onnx.shape_inference.InferenceError as error:
        raise ConversionError(f"the exported graph failed ONNX shape inference: {error}") from error
    del proto.graph.input[original_inputs:]
    small = {tensor.name: onnx.TensorProto.FromString(tensor.SerializeToString()) for tensor in proto.graph.initializer}
    del proto.graph.initializer[:]
    for name in order:
        if name in small:
            proto.graph.initializer.add().CopyFrom(small[name])
        else:  # written straight into the model proto: no copy of the weights
            ir.serde.serialize_tensor_into(proto.graph.initializer.add(), tensors[name])
    return proto
