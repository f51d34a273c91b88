"""Common blocks recognised on the jaxpr and lowered as the one ONNX op that says what they are.

Flax's ``LayerNorm`` (its fast-variance form, NNX and Linen), Equinox's ``LayerNorm`` (under ``vmap``),
``jax.nn.gelu`` (exact and tanh) and ``jax.nn.softmax`` reach the jaxpr as 6-18 equations each; the
attention of ``nnx.MultiHeadAttention`` (per-head projections and the scores path) as some 40 a layer,
which the attention layout rules rewrite (recognised in :mod:`.attention_blocks`). Lowered one by one,
each of those equations costs a handler call, a node, and work in every pass after (constant folding,
common subexpressions, unused-node removal), before a rewrite rule (:mod:`.passes.fusions`,
:mod:`.passes.attention_layout`) matches the nodes again and replaces them (onnxscript's matcher and
onnx-ir's node replacement: ~0.25 ms a rewrite). Recognising the block on the jaxpr is cheaper: its
equations are plain Python objects, scanned once, and the fused op is emitted in their place (:func:`.block_plan.plan_blocks`, used by :func:`..lowering.lower_jaxpr`).

Each recogniser checks what the corresponding rewrite rule checks (the constants, the reduced axes,
the dtype, the opset; what can only be checked on the ONNX values, such as a weight's contents, while
lowering: ``Block.declines``) and, in addition, that no value inside the block is read outside it, so the
export is the graph the rules would have made. The half-precision forms (bfloat16/float16 models: statistics
and sums in float32 between ``convert_element_type``s, constants rounded to the half type) are recognised too
(``docs/export_passes.md``, step 0). What is not recognised here (other spellings,
blocks split across nested jaxprs) is still fused by the rules afterwards.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import jax.numpy as jnp
import numpy as np
import onnx_ir as ir
from jax.extend import core as jex_core

from workbench.jax_to_onnx.dims import same_shape
from workbench.jax_to_onnx.relaid import Reader, Relaid
from workbench.specs import HALF_FLOATS

GELU_MIN_OPSET = 20  # the opsets of the rules in passes/fusions.py
LAYER_NORMALIZATION_MIN_OPSET = 17
SOFTMAX_MIN_OPSET = 18

_FLOATS = frozenset({np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64), np.dtype(jnp.bfloat16)})


@dataclass(frozen=True)
class Block:
    """A recognised block: the equations it replaces (``members``, the last one its result) and how to emit it.

    ``emit(builder, read)`` returns the block's result value (or its value held in another layout,
    :class:`.relaid.Relaid`), ``read`` giving the ONNX value of a jaxpr atom defined outside it
    (:class:`.relaid.Reader`).
    """

    kind: str
    members: tuple[int, ...]
    emit: Callable[[Any, Reader], ir.Value | Relaid]
    operand: Any  # the jaxpr atom the block normalizes or activates (a constant one is folded instead)
    # given the builder and ``read``: whether to lower the equations one by one after all (checks of values)
    declines: Callable[[Any, Reader], bool] | None = None
    # every node the block makes is named ``<module>/<OpType>`` (else only the result's)
    name_all: bool = False
    # op type → the member equation (index) whose module, source line and primitive the block's nodes of that
    # type carry, named as that equation's handler names its nodes; the others carry the last equation's
    origins: dict[str, int] = field(default_factory=dict)
    # the block computes element by element on ``operand`` alone: when that is held in another layout
    # (:mod:`.relaid`), it is computed in that layout and its result held alike
    elementwise: bool = False

    @property
    def root(self) -> int:
        return self.members[-1]


class _Index:
    """Who produces and who reads each variable of one jaxpr."""

    def __init__(self, jaxpr: Any) -> None:
        self.eqns = jaxpr.eqns
        self.producer: dict[Any, int] = {}
        self.readers: dict[Any, list[int]] = {}
        for index, eqn in enumerate(jaxpr.eqns):
            for atom in eqn.invars:
                if not isinstance(atom, jex_core.Literal):
                    self.readers.setdefault(atom, []).append(index)
            for var in eqn.outvars:
                self.producer[var] = index
        self.outputs = {atom for atom in jaxpr.outvars if not isinstance(atom, jex_core.Literal)}

    def eqn(self, atom: Any, primitive: str | tuple[str, ...]) -> Any | None:
        """The equation producing ``atom`` when its primitive is ``primitive`` (or one of them), else None."""
        if isinstance(atom, jex_core.Literal):
            return None
        index = self.producer.get(atom)
        if index is None:
            return None
        eqn = self.eqns[index]
        names = (primitive,) if isinstance(primitive, str) else primitive
        return eqn if eqn.primitive.name in names else None

    def index(self, eqn: Any) -> int:
        return self.producer[eqn.outvars[0]]

    def only_reader(self, var: Any) -> Any | None:
        """The one equation reading ``var`` (not an output of the jaxpr), else None."""
        readers = self.readers.get(var, [])
        if len(readers) != 1 or var in self.outputs:
            return None
        return self.eqns[readers[0]]

    def closed(self, members: Sequence[Any]) -> tuple[int, ...] | None:
        """The members' indices in order when no value they compute, the last one's aside, is read elsewhere."""
        indices = sorted({self.index(eqn) for eqn in members})
        inside = set(indices)
        for index in indices[:-1]:
            for var in self.eqns[index].outvars:
                if var in self.outputs or any(reader not in inside for reader in self.readers.get(var, [])):
                    return None
        return tuple(indices)


def _literal(atom: Any) -> float | None:
    """The value of a scalar literal operand, else None."""
    if not isinstance(atom, jex_core.Literal):
        return None
    array = np.asarray(atom.val)
    if array.size != 1 or (array.dtype.kind not in "fiu" and array.dtype != np.dtype(jnp.bfloat16)):  # bfloat16's kind is "V"
        return None
    return float(array.reshape(()))


def _close(actual: float | None, expected: float, rtol: float = 1e-6) -> bool:
    if actual is None:
        return False
    if math.isinf(expected):
        return actual == expected
    return math.isclose(actual, expected, rel_tol=rtol, abs_tol=0.0)


def _split(eqn: Any, constant: float, rtol: float = 1e-6) -> Any | None:
    """For a commutative binary ``eqn`` with the scalar literal ``constant`` on either side: the other operand.

    In bfloat16/float16 the literal may also be ``constant`` rounded to that type (``jax.nn.gelu`` rounds
    its ``sqrt(2/pi)`` and ``0.044715`` to the input's type: 0.796875 and 0.044677734375 in bfloat16).
    """
    left, right = eqn.invars
    dtype = np.dtype(eqn.outvars[0].aval.dtype)
    rounded = float(np.asarray(constant, dtype)) if dtype in HALF_FLOATS else constant
    for literal, other in ((right, left), (left, right)):
        actual = _literal(literal)
        if _close(actual, constant, rtol) or _close(actual, rounded, 1e-6):
            return other
    return None


def _other(eqn: Any, operand: Any) -> Any | None:
    """The operand of binary ``eqn`` that is not ``operand`` (``operand`` must be one of them)."""
    left, right = eqn.invars
    if left is operand:
        return right
    if right is operand:
        return left
    return None


def _is_float(atom: Any) -> bool:
    return np.dtype(atom.aval.dtype) in _FLOATS


def _restores_axes(eqn: Any, x_shape: Sequence[Any], axes: Sequence[int]) -> bool:
    """Whether ``eqn`` (a reshape or broadcast_in_dim) gives a reduced statistic back exactly the reduced axes."""
    expected = tuple(1 if axis in axes else dim for axis, dim in enumerate(x_shape))
    if not same_shape(eqn.outvars[0].aval.shape, expected):
        return False
    if eqn.primitive.name == "broadcast_in_dim":
        kept = [axis for axis in range(len(x_shape)) if axis not in axes]
        return tuple(eqn.params["broadcast_dimensions"]) == tuple(kept)
    return eqn.primitive.name == "reshape" and eqn.params.get("dimensions") is None


# ------------------------------------------------------------------------------- layer norm
def _mean_of(index: _Index, atom: Any) -> tuple[Any, Any, tuple[int, ...], float] | None:
    """``div(reduce_sum[axes](x), n)``: (the div, x, axes, n), else None."""
    div = index.eqn(atom, "div")
    if div is None:
        return None
    total = index.eqn(div.invars[0], "reduce_sum")
    count = _literal(div.invars[1])
    if total is None or count is None:
        return None
    return div, total.invars[0], tuple(int(a) for a in total.params["axes"]), count


def _square_of(index: _Index, atom: Any) -> tuple[Any, Any] | None:
    """``square(x)``, ``integer_pow[y=2](x)`` or ``mul(x, x)``: (the equation, x), else None."""
    eqn = index.eqn(atom, ("square", "integer_pow", "mul"))
    if eqn is None:
        return None
    if eqn.primitive.name == "square" or (eqn.primitive.name == "integer_pow" and eqn.params["y"] == 2):
        return eqn, eqn.invars[0]
    if eqn.primitive.name == "mul" and eqn.invars[0] is eqn.invars[1]:
        return eqn, eqn.invars[0]
    return None


def _static_trailing(shape: tuple[Any, ...], axes: list[int]) -> list[int] | None:
    """The sizes of ``axes`` when they are the trailing axes of ``shape`` and static (what a norm
    normalizes over), else None."""
    if not axes or axes != list(range(axes[0], len(shape))):
        return None
    trailing = [shape[a] for a in axes]
    if not all(isinstance(d, (int, np.integer)) for d in trailing):
        return None
    return [int(d) for d in trailing]


def _layer_norm(index: _Index, rsqrt: Any) -> Block | None:
    """Flax's LayerNorm from its ``rsqrt``: ``(x - mean) * (rsqrt(max(E[x²] - mean², 0) + eps) [* scale]) [+ bias]``.

    The statistics get their reduced axes back through a reshape (NNX) or a broadcast_in_dim (Linen);
    the axes are trailing and static, the divisors their size, the guard 0, epsilon >= 0 (the checks of
    :class:`..passes.fusions.LayerNormFusion`).
    """
    shifted = index.eqn(rsqrt.invars[0], "add")
    if shifted is None:
        return None
    eps_atom = None
    for candidate, other in ((shifted.invars[1], shifted.invars[0]), (shifted.invars[0], shifted.invars[1])):
        if _literal(candidate) is not None and not isinstance(other, jex_core.Literal):
            eps_atom, var_kept = candidate, other
            break
    if eps_atom is None or not _literal(eps_atom) >= 0.0:
        return None
    keep_var = index.eqn(var_kept, ("reshape", "broadcast_in_dim"))
    guard = None if keep_var is None else index.eqn(keep_var.invars[0], "max")
    variance = None if guard is None else _split(guard, 0.0)
    difference = index.eqn(variance, "sub") if variance is not None else None
    if difference is None:
        return None
    mean_sq = _mean_of(index, difference.invars[0])
    squared_mean = _square_of(index, difference.invars[1])
    if mean_sq is None or squared_mean is None:
        return None
    mean = _mean_of(index, squared_mean[1])
    squared_x = _square_of(index, mean_sq[1])
    if mean is None or squared_x is None:
        return None
    x = mean[1]
    if squared_x[1] is not x or mean[2] != mean_sq[2] or x.aval.shape is None or np.dtype(x.aval.dtype) != np.float32:
        return None
    rank = len(x.aval.shape)
    axes = sorted({a % rank for a in mean[2]})
    trailing = _static_trailing(x.aval.shape, axes)
    if trailing is None:
        return None
    size = float(math.prod(trailing))
    if not (_close(mean[3], size) and _close(mean_sq[3], size)) or not _restores_axes(keep_var, x.aval.shape, axes):
        return None
    # downwards from rsqrt: [* scale], then (x - keep(mean)) * that, then [+ bias]
    after = index.only_reader(rsqrt.outvars[0])
    if after is None or after.primitive.name != "mul":
        return None
    members = [mean[0], index.eqn(mean[0].invars[0], "reduce_sum"), mean_sq[0], index.eqn(mean_sq[0].invars[0], "reduce_sum"),
               squared_x[0], squared_mean[0], difference, guard, keep_var, shifted, rsqrt]
    scale = None
    centered_side = _other(after, rsqrt.outvars[0])
    centered = index.eqn(centered_side, "sub")
    product = after
    if centered is None or not _centers(index, centered, x, mean[0], axes):
        # the scale first: mul(rsqrt, scale), then mul(x - mean, that)
        scale = centered_side
        product = index.only_reader(after.outvars[0])
        if product is None or product.primitive.name != "mul" or not _fits(scale, trailing):
            return None
        centered = index.eqn(_other(product, after.outvars[0]), "sub")
        if centered is None or not _centers(index, centered, x, mean[0], axes):
            return None
        members.append(after)
    keep_mean = index.eqn(centered.invars[1], ("reshape", "broadcast_in_dim"))
    members += [keep_mean, centered, product]
    bias = None
    root = product
    following = index.only_reader(product.outvars[0])
    if following is not None and following.primitive.name == "add":
        candidate = _other(following, product.outvars[0])
        if candidate is not None and _fits(candidate, trailing):
            bias, root = candidate, following
            members.append(following)
    if any(member is None for member in members):
        return None
    closed = index.closed(members)
    if closed is None or closed[-1] != index.index(root):
        return None
    return _layer_norm_block(closed, x, scale, bias, axes[0], trailing, float(_literal(eps_atom)))


def _same_value(index: _Index, atom: Any, x: Any) -> bool:
    """Whether ``atom`` is ``x`` or, as Flax writes a half-precision norm (it converts its input to float32 once
    for the statistics and again for the centering), a conversion of the same value to the same type."""
    if atom is x:
        return True
    first, second = index.eqn(atom, "convert_element_type"), index.eqn(x, "convert_element_type")
    return (first is not None and second is not None and first.invars[0] is second.invars[0]
            and np.dtype(atom.aval.dtype) == np.dtype(x.aval.dtype))


def _centers(index: _Index, centered: Any, x: Any, mean_div: Any, axes: list[int]) -> bool:
    """Whether ``centered`` is ``sub(x, keep(mean))`` with the mean given back exactly its reduced axes."""
    if not _same_value(index, centered.invars[0], x):
        return False
    keep = index.eqn(centered.invars[1], ("reshape", "broadcast_in_dim"))
    return keep is not None and keep.invars[0] is mean_div.outvars[0] and _restores_axes(keep, x.aval.shape, axes)


def _fits(atom: Any, dims: list[Any]) -> bool:
    """Whether ``atom`` holds one float32 per normalized element: shape ``dims``, maybe with leading 1s."""
    if isinstance(atom, jex_core.Literal) or np.dtype(atom.aval.dtype) != np.float32:
        return False
    shape = list(atom.aval.shape)
    extra = len(shape) - len(dims)
    return extra >= 0 and all(same_shape([d], [1]) for d in shape[:extra]) and same_shape(shape[extra:], dims)


def _parameter(builder: Any, value: ir.Value, dims: list[int]) -> ir.Value:
    """A scale or bias in the shape ``dims`` LayerNormalization wants: the value itself, the tensor a
    leading-1s Reshape was given (the lowering of a bias reshape leaves one), a constant reshaped, or a
    Reshape of a weight (stored reshaped afterwards, :func:`..passes.norm_parameters.store_parameters_in_place`)."""
    if value.shape is not None and list(value.shape) == dims:
        return value
    producer = value.producer()
    if producer is not None and producer.op_type == "Reshape" and producer.domain == "":
        source = producer.inputs[0]
        if source is not None and source.shape is not None and list(source.shape) == dims:
            return source
    tensor = value.const_value
    if tensor is not None and value.name not in builder.state.weights and not builder.is_function:
        return builder.const(tensor.numpy().reshape(dims))  # a closed-over constant: reshaped here, pooled
    reshaped = builder.op("Reshape", value, builder.i64(dims))
    reshaped.type, reshaped.shape = value.type, ir.Shape(dims)
    return reshaped


def _kept_mean(index: _Index, atom: Any, x: Any, axes: list[int], size: float) -> list[Any] | None:
    """``div(keep(reduce_sum[axes](x)), n)`` with ``n`` the reduced size (``jnp.mean(keepdims=True)``): its equations."""
    div = index.eqn(atom, "div")
    keep = None if div is None or not _close(_literal(div.invars[1]), size) else index.eqn(div.invars[0], "broadcast_in_dim")
    total = None if keep is None else index.eqn(keep.invars[0], "reduce_sum")
    if total is None or total.invars[0] is not x or not _restores_axes(keep, x.aval.shape, axes):
        return None
    if sorted({int(a) % len(x.aval.shape) for a in total.params["axes"]}) != axes:
        return None
    return [total, keep, div]


def _is_population_variance(call: Any, x: Any, axes: list[int], size: float) -> bool:
    """Whether ``call`` is ``jnp.var(x, axes, keepdims=True)`` (ddof 0): a nested jaxpr computing
    ``where(n - ddof > 0, sum((x - mean)²) / (n - ddof), nan)``, the form jnp.var traces to."""
    closed = call.params.get("jaxpr")
    if closed is None or len(call.invars) != 2 or call.invars[0] is not x or _literal(call.invars[1]) != 0.0:
        return False
    inner = closed.jaxpr
    if closed.consts or len(inner.outvars) != 1 or len(inner.invars) != 2:
        return False
    index = _Index(inner)
    data, ddof = inner.invars
    guard = index.eqn(inner.outvars[0], ("jit", "pjit"))
    if guard is None or len(guard.invars) != 3 or not _selects_second_when_first(guard.params.get("jaxpr")):
        return False
    positive, quotient = guard.invars[0], guard.invars[1]
    test = index.eqn(positive, "gt")
    count = None if test is None or not _close(_literal(test.invars[1]), 0.0) else index.eqn(test.invars[0], "sub")
    if count is None or not _close(_literal(count.invars[0]), size):
        return False
    cast = index.eqn(count.invars[1], "convert_element_type")
    if cast is None or cast.invars[0] is not ddof:
        return False
    div = index.eqn(quotient, "div")
    if div is None or div.invars[1] is not test.invars[0]:
        return False
    keep = index.eqn(div.invars[0], "broadcast_in_dim")
    total = None if keep is None else index.eqn(keep.invars[0], "reduce_sum")
    squared = None if total is None else _square_of(index, total.invars[0])
    centered = None if squared is None else index.eqn(squared[1], "sub")
    if centered is None or centered.invars[0] is not data or not _restores_axes(keep, data.aval.shape, axes):
        return False
    if sorted({int(a) % len(data.aval.shape) for a in total.params["axes"]}) != axes:
        return False
    return _kept_mean(index, centered.invars[1], data, axes, size) is not None


def _selects_second_when_first(closed: Any) -> bool:
    """Whether a nested jaxpr ``(p, v, fill)`` is ``select_n(p, broadcast(fill), v)``: ``v`` where ``p`` holds."""
    if closed is None or closed.consts or len(closed.jaxpr.invars) != 3 or len(closed.jaxpr.outvars) != 1:
        return False
    inner = closed.jaxpr
    index = _Index(inner)
    select = index.eqn(inner.outvars[0], "select_n")
    return select is not None and len(select.invars) == 3 and select.invars[0] is inner.invars[0] and select.invars[2] is inner.invars[1]


def _peel_leading_units(index: _Index, atom: Any, members: list[Any]) -> Any:
    """``atom`` without the broadcasts/reshapes that only put size-1 axes in front (their equations join
    ``members`` when the block alone reads them)."""
    while not isinstance(atom, jex_core.Literal):
        eqn = index.eqn(atom, ("broadcast_in_dim", "reshape"))
        if eqn is None or index.only_reader(atom) is None or isinstance(eqn.invars[0], jex_core.Literal):
            return atom
        source, target = eqn.invars[0].aval.shape, eqn.outvars[0].aval.shape
        extra = len(target) - len(source)
        if extra < 0 or not same_shape(target[extra:], source) or not all(same_shape([d], [1]) for d in target[:extra]):
            return atom
        if eqn.primitive.name == "broadcast_in_dim" and tuple(eqn.params["broadcast_dimensions"]) != tuple(range(extra, len(target))):
            return atom
        members.append(eqn)
        atom = eqn.invars[0]
    return atom


def _equinox_layer_norm(index: _Index, rsqrt: Any) -> Block | None:
    """Equinox's LayerNorm (under ``vmap``): ``(x - mean) * rsqrt(max(var, 0) + eps)``, then ``* weight``, ``+ bias``.

    ``mean`` is ``jnp.mean(x, keepdims=True)``, ``var`` a call of ``jnp.var(x, keepdims=True)`` (checked
    to the last equation, :func:`_is_population_variance`): what :mod:`.passes.norms` fuses after
    normalizing the statistics.
    """
    shifted = index.eqn(rsqrt.invars[0], "add")
    if shifted is None:
        return None
    eps, guarded = _literal(shifted.invars[1]), shifted.invars[0]
    if eps is None:
        eps, guarded = _literal(shifted.invars[0]), shifted.invars[1]
    guard = None if eps is None or not eps >= 0.0 else index.eqn(guarded, "max")
    variance = None if guard is None else _split(guard, 0.0)
    call = None if variance is None else index.eqn(variance, ("jit", "pjit"))
    if call is None:
        return None
    x = call.invars[0]
    if isinstance(x, jex_core.Literal) or np.dtype(x.aval.dtype) != np.float32:
        return None
    rank = len(x.aval.shape)
    keep = call.outvars[0].aval.shape
    axes = [axis for axis in range(rank) if not same_shape([keep[axis]], [x.aval.shape[axis]])] if len(keep) == rank else []
    trailing = _static_trailing(x.aval.shape, axes)
    if trailing is None:
        return None
    size = float(math.prod(trailing))
    if not _is_population_variance(call, x, axes, size):
        return None
    product = index.only_reader(rsqrt.outvars[0])
    if product is None or product.primitive.name != "mul":
        return None
    centered = index.eqn(_other(product, rsqrt.outvars[0]), "sub")
    mean = None if centered is None or centered.invars[0] is not x else _kept_mean(index, centered.invars[1], x, axes, size)
    if mean is None:
        return None
    members = [call, guard, shifted, rsqrt, centered, *mean, product]
    root, scale, bias = product, None, None
    following = index.only_reader(product.outvars[0])
    if following is not None and following.primitive.name == "mul":
        candidate = _peel_leading_units(index, _other(following, product.outvars[0]), members)
        if _fits(candidate, trailing):
            scale, root = candidate, following
            members.append(following)
            following = index.only_reader(following.outvars[0])
    if following is not None and following.primitive.name == "add":
        peeled: list[Any] = []
        candidate = _peel_leading_units(index, _other(following, root.outvars[0]), peeled)
        if _fits(candidate, trailing):
            bias, root = candidate, following
            members += [following, *peeled]
    closed = index.closed(members)
    if closed is None or closed[-1] != index.index(root):
        return None
    # a negative axis, as the norm passes write it for this form
    return _layer_norm_block(closed, x, scale, bias, axes[0] - rank, trailing, float(eps))


def _layer_norm_block(members: tuple[int, ...], x: Any, scale: Any, bias: Any, axis: int, dims: list[int], epsilon: float) -> Block:
    def emit(builder: Any, read: Callable[[Any], ir.Value]) -> ir.Value:
        scale_value = _parameter(builder, read(scale), dims) if scale is not None else builder.const(np.ones(dims, np.float32))
        inputs = [read(x), scale_value] + ([_parameter(builder, read(bias), dims)] if bias is not None else [])
        return builder.op("LayerNormalization", *inputs, axis=axis, epsilon=epsilon)

    return Block("LayerNormalization", members, emit, x)


def _any_layer_norm(index: _Index, rsqrt: Any) -> Block | None:
    return _layer_norm(index, rsqrt) or _equinox_layer_norm(index, rsqrt)


# ------------------------------------------------------------------------------------ gelu
_INV_SQRT_2 = 1 / math.sqrt(2)
_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)


def _gelu_erf(index: _Index, erfc: Any) -> Block | None:
    """``jax.nn.gelu(approximate=False)``: ``(0.5 * x) * erfc((-x) * (1/sqrt 2))`` → ``Gelu(x)``."""
    scaled = index.eqn(erfc.invars[0], "mul")
    negated = None if scaled is None else _split(scaled, _INV_SQRT_2, 1e-5)
    neg = None if negated is None else index.eqn(negated, "neg")
    root = index.only_reader(erfc.outvars[0])
    if neg is None or root is None or root.primitive.name != "mul":
        return None
    x = neg.invars[0]
    half = index.eqn(_other(root, erfc.outvars[0]), "mul")
    if half is None or _split(half, 0.5) is not x or not _is_float(x):
        return None
    closed = index.closed([neg, scaled, erfc, half, root])
    if closed is None or closed[-1] != index.index(root):
        return None
    return Block("Gelu", closed, lambda builder, read: builder.op("Gelu", read(x)), x, elementwise=True)


def _gelu_tanh(index: _Index, tanh: Any) -> Block | None:
    """``jax.nn.gelu(approximate=True)``: ``x * (0.5 * (1 + tanh(c * (x + 0.044715 * x**3))))`` → ``Gelu(x, "tanh")``."""
    outer = index.eqn(tanh.invars[0], "mul")
    inner_sum = None if outer is None else index.eqn(_split(outer, _SQRT_2_OVER_PI, 1e-5), "add")
    if inner_sum is None:
        return None
    for x, cubic_side in ((inner_sum.invars[0], inner_sum.invars[1]), (inner_sum.invars[1], inner_sum.invars[0])):
        cubic_scaled = index.eqn(cubic_side, "mul")
        cube = None if cubic_scaled is None else index.eqn(_split(cubic_scaled, 0.044715, 1e-5), "integer_pow")
        if cube is not None and cube.params["y"] == 3 and cube.invars[0] is x:
            break
    else:
        return None
    plus_one = index.only_reader(tanh.outvars[0])
    if plus_one is None or plus_one.primitive.name != "add" or _split(plus_one, 1.0) is not tanh.outvars[0]:
        return None
    half = index.only_reader(plus_one.outvars[0])
    if half is None or half.primitive.name != "mul" or _split(half, 0.5) is not plus_one.outvars[0]:
        return None
    root = index.only_reader(half.outvars[0])
    if root is None or root.primitive.name != "mul" or _other(root, half.outvars[0]) is not x or not _is_float(x):
        return None
    closed = index.closed([cube, cubic_scaled, inner_sum, outer, tanh, plus_one, half, root])
    if closed is None or closed[-1] != index.index(root):
        return None
    return Block("Gelu", closed, lambda builder, read: builder.op("Gelu", read(x), approximate="tanh"), x,
                 elementwise=True)


# ------------------------------------------------------------------------------------ relu
# ops whose ``Max(x, 0)`` neighbour the rules fuse into a ``Clip`` (relu6 written around jax.nn.relu): such a
# relu is left to them
_CLIP_NEIGHBOURS = frozenset({"min", "max", "clamp"})


def is_relu_body(closed: Any) -> bool:
    """Whether a nested jaxpr of one input is ``max(x, 0)``, maybe inside a ``jit`` (``jax.nn.relu``'s body)."""
    if not isinstance(closed, jex_core.ClosedJaxpr) or closed.consts:
        return False
    jaxpr = closed.jaxpr
    if len(jaxpr.invars) != 1 or len(jaxpr.outvars) != 1 or len(jaxpr.eqns) != 1:
        return False
    eqn = jaxpr.eqns[0]
    if eqn.outvars[0] is not jaxpr.outvars[0]:
        return False
    if eqn.primitive.name in ("jit", "pjit"):
        return len(eqn.invars) == 1 and eqn.invars[0] is jaxpr.invars[0] and is_relu_body(eqn.params["jaxpr"])
    return eqn.primitive.name == "max" and _split(eqn, 0.0) is jaxpr.invars[0]


def _relu(index: _Index, call: Any) -> Block | None:
    """``jax.nn.relu`` (its ``custom_jvp_call`` of ``max(x, 0)``) of a float → ``Relu(x)``, the node the rules make
    of its ``Max(x, 0)`` (``ReluFusion``); not next to a min/max/clamp, which the rules make a ``Clip`` with it."""
    if len(call.invars) != 1 or len(call.outvars) != 1 or not is_relu_body(call.params["call_jaxpr"]):
        return None
    x = call.invars[0]
    if isinstance(x, jex_core.Literal) or not _is_float(x):
        return None
    before = index.producer.get(x)
    if before is not None and index.eqns[before].primitive.name in _CLIP_NEIGHBOURS:
        return None
    if any(index.eqns[reader].primitive.name in _CLIP_NEIGHBOURS for reader in index.readers.get(call.outvars[0], [])):
        return None
    return Block("Relu", (index.index(call),), lambda builder, read: builder.op("Relu", read(x)), x, elementwise=True)


# --------------------------------------------------------------------------------- softmax
def _softmax(index: _Index, reduce_max: Any) -> Block | None:
    """``jax.nn.softmax`` over one axis: ``e = exp(x - keep(max(reduce_max(x), -inf)))``, ``e / keep(sum(e))``."""
    axes = tuple(int(a) for a in reduce_max.params["axes"])
    x = reduce_max.invars[0]
    if len(axes) != 1 or not _is_float(x):
        return None
    rank = len(x.aval.shape)
    axis = axes[0] % rank
    guard = index.only_reader(reduce_max.outvars[0])
    if guard is None or guard.primitive.name != "max" or _split(guard, -math.inf) is not reduce_max.outvars[0]:
        return None
    keep_max = index.only_reader(guard.outvars[0])
    members = [reduce_max, guard, keep_max]
    if keep_max is None or keep_max.primitive.name != "broadcast_in_dim" or not _restores_axes(keep_max, x.aval.shape, [axis]):
        return None
    shift = index.only_reader(keep_max.outvars[0])
    if shift is not None and shift.primitive.name == "stop_gradient":
        members.append(shift)
        shift = index.only_reader(shift.outvars[0])
    if shift is None or shift.primitive.name != "sub" or shift.invars[0] is not x:
        return None
    exp = index.only_reader(shift.outvars[0])
    if exp is None or exp.primitive.name != "exp":
        return None
    readers = [index.eqns[i] for i in index.readers.get(exp.outvars[0], [])]
    root = next((eqn for eqn in readers if eqn.primitive.name == "div"), None)
    widened = _summed_in_float32(index, readers, x)
    total = next((eqn for eqn in readers if eqn.primitive.name == "reduce_sum"), None) if widened is None else widened[1]
    if len(readers) != 2 or total is None or root is None or root.invars[0] is not exp.outvars[0]:
        return None
    if tuple(int(a) % rank for a in total.params["axes"]) != (axis,):
        return None
    divisor = root.invars[1]
    if widened is not None:  # the sum rounded back to the input's type before the division
        narrowed = index.eqn(divisor, "convert_element_type")
        if narrowed is None or np.dtype(divisor.aval.dtype) != np.dtype(x.aval.dtype):
            return None
        members += [widened[0], narrowed]
        divisor = narrowed.invars[0]
    keep_total = index.eqn(divisor, "broadcast_in_dim")
    if keep_total is None or keep_total.invars[0] is not total.outvars[0] or not _restores_axes(keep_total, x.aval.shape, [axis]):
        return None
    closed = index.closed([*members, shift, exp, total, keep_total, root])
    if closed is None or closed[-1] != index.index(root):
        return None
    return Block("Softmax", closed, lambda builder, read: builder.op("Softmax", read(x), axis=axis), x)


def _summed_in_float32(index: _Index, readers: list[Any], x: Any) -> tuple[Any, Any] | None:
    """For a half-precision softmax (JAX sums ``exp`` in float32): the ``convert_element_type`` to float32
    among ``readers`` and the ``reduce_sum`` that alone reads it, else None."""
    if np.dtype(x.aval.dtype) not in HALF_FLOATS:
        return None
    widen = next((eqn for eqn in readers if eqn.primitive.name == "convert_element_type"), None)
    if widen is None or np.dtype(widen.outvars[0].aval.dtype) != np.dtype(np.float32):
        return None
    total = index.only_reader(widen.outvars[0])
    return None if total is None or total.primitive.name != "reduce_sum" else (widen, total)


__all__ = ["Block"]
