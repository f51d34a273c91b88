"""The rule scheduler: applies onnxscript rewrite rules indexed by root op type, in rounds.

onnxscript's ``RewriteRuleSet`` tries every rule on every node, which costs about as much as the rest
of a conversion for a 1,000-node graph. Indexing the rules by the op type of their root (and of the
root's direct producers), testing cheap necessary conditions before the matcher, and retrying only
the nodes near the previous round's rewrites keeps the passes proportional to the graph.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import onnx_ir as ir
from onnxscript.rewriter import RewriteRule

from workbench.compat import release_match_state, rule_required_ops, rule_root
from workbench.jax_to_onnx.bias import droppable_bias
from workbench.jax_to_onnx.dims import dims_of
from workbench.jax_to_onnx.ir_values import is_broadcast_zero, is_uniform_condition, register_unique
from workbench.jax_to_onnx.provenance import inherit
from workbench.jax_to_onnx.passes import attention_layout
from workbench.jax_to_onnx.passes.fusions import rule_phases
from workbench.jax_to_onnx.passes.layout import drop_identities

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


@dataclass(frozen=True)
class _IndexedRule:
    """A rule with the op types its root node and the root's direct producers must have.

    Checking those few op types first rejects almost every node without entering onnxscript's
    matcher (a full match attempt costs ~100x more).
    """

    rule: RewriteRule
    root_op: str | None
    producer_ops: tuple[tuple[int, str], ...]
    # the op types the graph must contain for the pattern to match anywhere (its nodes outside alternatives)
    required_ops: frozenset[str] = frozenset()
    # a cheap necessary condition on the root node, for single-node rules tried on every node of their op type
    guard: Callable[[ir.Node], bool] | None = None

    @classmethod
    def of(cls, rule: RewriteRule) -> _IndexedRule:
        root = rule_root(rule)
        required = rule_required_ops(rule)
        if root is None:
            return cls(rule, None, (), required)
        return cls(rule, root.op_type, root.producer_ops, required, _ROOT_GUARDS.get(rule.name))

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


def _may_drop_unit_axes(node: ir.Node) -> bool:
    """What :class:`.attention_layout.TransposeDropUnitAxes` checks first: a ``perm`` and a transposed value
    of known shape with a unit axis (attention lowered in that layout already transposes 4-D values
    without one: its query, key and value transposes then stay out of the matcher)."""
    dims = dims_of(node.inputs[0]) if node.inputs and node.inputs[0] is not None else None
    return dims is not None and 1 in dims and node.attributes.get("perm") is not None


def _subtracts_broadcast_zero(node: ir.Node) -> bool:
    """What :class:`.norms.SubtractBroadcastZero` checks of its subtrahend."""
    return len(node.inputs) == 2 and is_broadcast_zero(node.inputs[1])


def _has_uniform_condition(node: ir.Node) -> bool:
    """What :class:`.fusions.ConstantConditionWhere` checks first: a constant condition, all true or all false."""
    return bool(node.inputs) and is_uniform_condition(node.inputs[0])


# rule name → a condition its check requires, tested before entering onnxscript's matcher (a failed
# match costs ~100x more); for the rules tried, and mostly failing, on every node of a common op type
_ROOT_GUARDS: dict[str, Callable[[ir.Node], bool]] = {
    "TransposeIdentity": _is_identity_transpose,
    "AddReshapedBias": _may_drop_bias_reshape,
    "SubReshapedBias": _may_drop_bias_reshape,
    "MulReshapedBias": _may_drop_bias_reshape,
    "MatMulAddToGemm": _may_become_gemm,
    "SubtractBroadcastZero": _subtracts_broadcast_zero,
    "ConstantConditionWhere": _has_uniform_condition,
    **{f"TransposeDropUnitAxes{suffix}": _may_drop_unit_axes for suffix in ("", "Squeeze", "Unsqueeze")},
}


_NO_RULES: list[_IndexedRule] = []


def _apply_rules(
    model: ir.Model,
    graph: ir.Graph | ir.Function,
    rules_by_root: dict[str | None, list[_IndexedRule]],
    *,
    only: set[ir.Node] | None = None,
    touched: set[ir.Node] | None = None,
    present: set[str] | None = None,
) -> int:
    """Try the rules whose root op is each node's op type; onnxscript matches and replaces.

    ``only`` restricts the roots tried to those nodes (plus every node holding a subgraph, whose
    body is searched whole); ``touched`` collects the nodes whose match may have changed through
    this call's rewrites (see :func:`_note_rewrite_neighbourhood`). ``present``, the op types the
    graph may contain (:func:`op_types`: a superset, kept one as rewrites add nodes), skips the rules
    whose pattern needs an op type outside it: they cannot match.

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
        rules = rules_by_root.get(node.op_type, _NO_RULES)
        for indexed in (rules + catch_all) if catch_all else rules:
            if present is not None and not indexed.required_ops <= present:
                continue
            if not indexed.may_match(node):
                continue
            delta = indexed.rule.try_rewrite(model, graph, node)
            if delta is None or _reads_removed_value(delta.new_nodes, delta.match.nodes):
                continue
            if delta.new_initializers:
                if not isinstance(graph, ir.Graph):
                    continue  # a function body has no initializers: leave this match alone
                for initializer in delta.new_initializers:
                    register_unique(graph, initializer)
            upstream = [value.producer() for matched in delta.match.nodes for value in matched.inputs if value is not None]
            ir.convenience.replace_nodes_and_values(
                graph, node, delta.match.nodes, delta.new_nodes, delta.match.outputs, delta.new_outputs
            )
            inherit(delta.new_nodes, node)
            if present is not None:
                present |= op_types(delta.new_nodes)
            if touched is not None:
                _note_rewrite_neighbourhood([*delta.new_nodes, *upstream], touched)
            count += 1
            break
        else:
            for subgraph in subgraphs:
                count += _apply_rules(model, subgraph, rules_by_root, present=present)
    return count


def _reads_removed_value(new_nodes: Sequence[ir.Node], matched: Sequence[ir.Node]) -> bool:
    """Whether a replacement node reads a value that a matched (removed) node produces.

    A pattern variable can bind to a value computed inside the match: ``Mul(x, Reshape(b, s))`` matches
    ``jnp.square(Reshape(b, s))`` with ``x`` the Reshape's own output. The replacement ``Mul(x, b)`` would
    then read the output of the Reshape it removes (onnx_ir refuses the removal), so such a match is
    left alone.
    """
    removed = {value for node in matched for value in node.outputs}
    return any(value in removed for node in new_nodes for value in node.inputs if value is not None)


def op_types(nodes: Iterable[ir.Node]) -> set[str]:
    """The op types of ``nodes`` and of every node in their subgraphs: one walk."""
    types: set[str] = set()
    for node in nodes:
        types.add(node.op_type)
        if node.domain != "" or node.op_type in _CONTROL_FLOW_OPS:
            for subgraph in _subgraphs(node):
                types |= op_types(subgraph)
    return types


def _may_rewrite(rules_by_root: dict[str | None, list[_IndexedRule]], present: set[str]) -> bool:
    """Whether any rule's pattern can match in a graph whose op types are (at most) ``present``."""
    return any(indexed.required_ops <= present for indexed_rules in rules_by_root.values() for indexed in indexed_rules)


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




# the rule phases at an opset: a list of phases, each a list of (rule, try both operand orders)
_Phases = Callable[[int], list[list[tuple[RewriteRule, bool]]]]


def fuse_patterns(model: ir.Model, *, phases: _Phases = rule_phases) -> int:
    """Apply the fusion rules (``phases(opset)``: :func:`.fusions.rule_phases` unless told) to the main
    graph, its subgraphs and the local functions, in place. Returns how many rewrites happened.
    """
    graphs: list[ir.Graph | ir.Function] = [model.graph, *model.functions.values()]
    for graph in graphs:
        canonicalize_constant_operands(graph)
    count = 0
    indexed_phases = _indexed_phases(model.opset_imports.get("", 0), phases)
    # each graph's op types, from one walk, grown by the rewrites: a phase none of whose rules can
    # match (a norm's phases in a CNN) is skipped without visiting a node
    present = [op_types(graph) for graph in graphs]
    try:
        for rules_by_root in indexed_phases:
            for graph, ops in zip(graphs, present, strict=True):
                if _may_rewrite(rules_by_root, ops):
                    count += _apply_rules(model, graph, rules_by_root, present=ops)
                # rules that cancel (Transpose∘Transpose) leave an Identity, which would hide the
                # producer from the next phase's patterns (MatMul → Identity → Add is no Gemm)
                if "Identity" in ops:
                    drop_identities(graph)
    finally:
        _release(indexed_phases)
    return count


def _release(indexed_phases: tuple[dict[str | None, list[_IndexedRule]], ...]) -> None:
    """Make the (cached) rules forget the graph they last matched, so it is freed with its conversion."""
    for rules_by_root in indexed_phases:
        for indexed_rules in rules_by_root.values():
            for indexed in indexed_rules:
                release_match_state(indexed.rule)


# Rules are built once per thread: a rule object holds the state of the match it is trying (onnxscript's
# matcher keeps its MatchResult in the rule, and class-based rules keep what check() found for
# rewrite() in their instance), so two threads converting at once must not share one. Compiling the
# patterns takes a while, hence the cache instead of fresh rules per conversion. The phase functions
# build new rule objects on every call (never onnxscript's shared module-level ones, which other
# libraries match with too: see workbench.compat.new_common_rules), so a thread's rules are its own.
_thread_rules = threading.local()


def _indexed_phases(opset: int, phases: _Phases) -> tuple[dict[str | None, list[_IndexedRule]], ...]:
    """The rule phases indexed by root op, built once per opset (and list of phases) in each thread."""
    cache: dict[tuple[_Phases, int], tuple[dict[str | None, list[_IndexedRule]], ...]] = vars(_thread_rules).setdefault(
        "phases", {}
    )
    if (phases, opset) not in cache:
        cache[phases, opset] = _build_indexed_phases(opset, phases)
    return cache[phases, opset]


def _build_indexed_phases(opset: int, rule_phases: _Phases) -> tuple[dict[str | None, list[_IndexedRule]], ...]:
    phases = []
    for phase in rule_phases(opset):
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
    """Apply :mod:`workbench.jax_to_onnx.passes.attention_layout` to the main graph until nothing changes; returns the count."""
    (rules_by_root,) = _indexed_layout_rules()
    attention_layout.annotate_shapes(model.graph)
    total = 0
    only: set[ir.Node] | None = None  # the first round tries every node, later ones what the last changed
    present = op_types(model.graph)
    try:
        for _ in range(_LAYOUT_ROUNDS):
            if not _may_rewrite(rules_by_root, present):
                break
            touched: set[ir.Node] = set()
            count = _apply_rules(model, model.graph, rules_by_root, only=only, touched=touched, present=present)
            total += count
            if count == 0:
                break
            only = touched
    finally:
        _release((rules_by_root,))
    if total:
        total += attention_layout.drop_no_op_reshapes(model.graph)
    return total


def _indexed_layout_rules() -> tuple[dict[str | None, list[_IndexedRule]]]:
    """The layout rules indexed by root op, built once in each thread (see :data:`_thread_rules`)."""
    cached = vars(_thread_rules).get("layout")
    if cached is None:
        rules_by_root: dict[str | None, list[_IndexedRule]] = {}
        for rule in attention_layout.layout_rules():
            indexed = _IndexedRule.of(rule)
            rules_by_root.setdefault(indexed.root_op, []).append(indexed)
        cached = _thread_rules.layout = (rules_by_root,)
    return cached


# ------------------------------------------------------------------------- constant folding
# onnxscript folds nodes whose inputs are all constants up to this many elements each (its default,
# 8192, leaves e.g. a causal mask broadcast over 8 heads of 64x64 in the graph)
