"""Reading the small bodies JAX gives reductions, scatters and sorts, structurally (nothing is evaluated).

ONNX has no "reduce with this function": a body is recognised as one of the forms JAX emits, and the
op becomes the matching ONNX reduction (through the lax primitive's handler). A body in any other
form is refused by the converter's ``check`` and reported with the other unsupported ops.

- binary bodies: ``return op(%a, %b)`` (add, maximum, minimum, multiply, and, or, xor) or ``return %b``
  (a scatter that replaces);
- argmax/argmin reducers: the two-operand reducer lax.argmax/argmin lower to (value comparison GT/LT
  with NaN winning, ties to the lower index);
- sort comparators: ``compare LT|GT`` of operand 0's pair, each side optionally canonicalised
  the way lax.sort does (``-0.0`` → ``0.0``, every NaN → one NaN) before a TOTALORDER comparison.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from workbench.jax_to_onnx.stablehlo import mlir

COMBINERS = frozenset(
    {"stablehlo.add", "stablehlo.maximum", "stablehlo.minimum", "stablehlo.multiply", "stablehlo.and", "stablehlo.or", "stablehlo.xor"}
)
REPLACE = "replace"


def _block(op: Any, region: int) -> Any:
    return op.regions[region].blocks[0]


def _ops(block: Any) -> list[Any]:
    return [o.operation for o in block.operations]


def _is_block(owner: Any) -> bool:
    from jaxlib.mlir import ir

    return isinstance(owner, ir.Block)


def binary_body(op: Any, region: int = 0) -> str | None:
    """The combiner of an op's two-argument body (``stablehlo.add``...), ``"replace"``, or None."""
    return binary_body_of_region(op.regions[region])


def binary_body_of_region(region: Any) -> str | None:
    block = region.blocks[0]
    args = list(block.arguments)
    ops = _ops(block)
    if len(args) != 2:
        return None
    if len(ops) == 1 and len(ops[0].operands) == 1 and ops[0].operands[0] == args[1]:
        return REPLACE
    if len(ops) != 2 or ops[0].name not in (*COMBINERS, "stablehlo.subtract") or len(ops[1].operands) != 1:
        return None
    combine = ops[0]
    operands = list(combine.operands)
    if ops[1].operands[0] != combine.results[0] or len(operands) != 2:
        return None
    if combine.name == "stablehlo.subtract":  # not commutative: current value minus the update only
        return combine.name if operands[0] == args[0] and operands[1] == args[1] else None
    if not ((operands[0] == args[0] and operands[1] == args[1]) or (operands[0] == args[1] and operands[1] == args[0])):
        return None
    return combine.name


@dataclass(frozen=True)
class ArgReducer:
    """A recognised argmax/argmin reducer."""

    kind: str  # "argmax" | "argmin"


def arg_reducer(op: Any) -> ArgReducer | None:
    """The lax.argmax/argmin reducer: returns (select(p, a, b), select(q, i, j)) with p = a GT|LT b (or a is NaN)
    and q = p or (a == b and i < j)."""
    block = _block(op, 0)
    args = list(block.arguments)
    if len(args) != 4:
        return None
    value_a, value_b, index_a, index_b = args[0], args[2], args[1], args[3]
    ops = _ops(block)
    terminator = ops[-1]
    if len(terminator.operands) != 2:
        return None
    chosen_value = terminator.operands[0].owner
    chosen_index = terminator.operands[1].owner
    if not (_named(chosen_value, "stablehlo.select") and _named(chosen_index, "stablehlo.select")):
        return None
    if chosen_value.operands[1] != value_a or chosen_value.operands[2] != value_b:
        return None
    if chosen_index.operands[1] != index_a or chosen_index.operands[2] != index_b:
        return None
    wins = chosen_value.operands[0].owner
    strict = _strict_comparison(wins, value_a, value_b)
    if strict is None:
        return None
    tie_break = chosen_index.operands[0].owner
    if not (_named(tie_break, "stablehlo.or") and tie_break.operands[0].owner == wins):
        return None
    equal_and_lower = tie_break.operands[1].owner
    if not _named(equal_and_lower, "stablehlo.and"):
        return None
    equal, lower = equal_and_lower.operands[0].owner, equal_and_lower.operands[1].owner
    if not (_compares(equal, "EQ", value_a, value_b) and _compares(lower, "LT", index_a, index_b)):
        return None
    return ArgReducer("argmax" if strict == "GT" else "argmin")


def _strict_comparison(op: Any, a: Any, b: Any) -> str | None:
    """GT/LT of a vs b, alone (integers) or ``or``-ed with ``a != a`` (floats: NaN wins)."""
    if _named(op, "stablehlo.or"):
        first, second = op.operands[0].owner, op.operands[1].owner
        if not _compares(second, "NE", a, a):
            return None
        op = first
    for direction in ("GT", "LT"):
        if _compares(op, direction, a, b):
            return direction
    return None


def _named(op: Any, name: str) -> bool:
    return not _is_block(op) and op.name == name


def _compares(op: Any, direction: str, a: Any, b: Any) -> bool:
    return (
        _named(op, "stablehlo.compare")
        and mlir.comparison(op)[0] == direction
        and op.operands[0] == a
        and op.operands[1] == b
    )


@dataclass(frozen=True)
class Comparator:
    """A recognised sort comparator: ascending on the first ``num_keys`` operands, or descending on operand 0."""

    num_keys: int
    descending: bool


def sort_comparator(op: Any) -> Comparator | None:
    """lax.sort's comparator: ``LT`` of key 0, or lexicographic ``or(LT_0, and(EQ_0, <keys 1..>))``, each
    side a block argument or its canonical form; or a single ``GT`` of operand 0 (descending)."""
    block = _block(op, 0)
    args = list(block.arguments)
    ops = _ops(block)
    if len(args) < 2 or len(ops[-1].operands) != 1:
        return None
    result = ops[-1].operands[0]
    if _key_compare(result.owner, "GT", args, 0):
        return Comparator(num_keys=1, descending=True)
    count = _lexicographic(result, args, 0)
    return None if count is None else Comparator(num_keys=count, descending=False)


def _lexicographic(value: Any, args: list[Any], key: int) -> int | None:
    """How many keys ``value`` compares lexicographically from ``key`` on (None when it is not that form)."""
    op = value.owner
    if _key_compare(op, "LT", args, key):
        return key + 1
    if not _named(op, "stablehlo.or"):
        return None
    first, rest = op.operands[0].owner, op.operands[1].owner
    if not (_key_compare(first, "LT", args, key) and _named(rest, "stablehlo.and")):
        return None
    equal = rest.operands[0].owner
    if not _key_compare(equal, "EQ", args, key):
        return None
    return _lexicographic(rest.operands[1], args, key + 1)


def _key_compare(op: Any, direction: str, args: list[Any], key: int) -> bool:
    if 2 * key + 1 >= len(args) or not _named(op, "stablehlo.compare") or mlir.comparison(op)[0] != direction:
        return False
    return _canonical_of(op.operands[0], args[2 * key]) and _canonical_of(op.operands[1], args[2 * key + 1])


def _canonical_of(value: Any, arg: Any) -> bool:
    """``value`` is ``arg``, or lax.sort's canonicalisation of it:
    select(arg != arg, NaN, select(arg == 0, 0, arg))."""
    if value == arg:
        return True
    outer = value.owner
    if not _named(outer, "stablehlo.select"):
        return False
    is_nan = outer.operands[0].owner
    if not _compares(is_nan, "NE", arg, arg):
        return False
    inner = outer.operands[2].owner
    if not _named(inner, "stablehlo.select") or inner.operands[2] != arg:
        return False
    is_zero = inner.operands[0].owner
    return _named(is_zero, "stablehlo.compare") and mlir.comparison(is_zero)[0] == "EQ" and is_zero.operands[0] == arg
