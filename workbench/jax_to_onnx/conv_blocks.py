"""A convolution followed by a per-channel affine of constants, maybe then a relu, recognised on the jaxpr and
lowered as the ``Conv`` [+ ``Relu``] it ends as: a part of :mod:`.blocks`.

An inference BatchNorm after a convolution (Flax NNX and Linen with running averages, Haiku with
``is_training=False``, any spelling that is ``a * x + b`` per channel with constant ``a`` and ``b``), and a
convolution's own bias add, reach the jaxpr as some 5-10 equations a layer: the statistics' reshapes,
``var + eps``, ``rsqrt``, ``* scale``, then ``sub``/``mul``/``add`` on the activations. Lowered one by one,
they become nodes that the export passes fold again: the weight arithmetic by constant folding, the chain
into the kernel and bias by :mod:`.passes.affine`, the convolution's layout Transposes by
:mod:`.passes.layout` and :mod:`.passes.folding`, ``max(x, 0)`` into ``Relu`` by the fusion rules (a
ResNet's 156 lowered nodes end as 26). Here the block is lowered in that final form at once: the weight
arithmetic is computed with NumPy, the chain composed with the pass's own arithmetic
(:func:`.passes.affine.affine_step`), the kernel laid out OIHW with one blocked copy
(:func:`.ir_values.transposed_copy`) and scaled in place (:func:`.passes.affine.scale_output_channels`),
and ``Conv(x, W', b') · [Relu]`` emitted on the input in the layout ONNX wants (the input as another block
left it, or one Transpose), its result held in that layout (:mod:`.relaid`): the layouts' Transposes that the
handler emits and the layout pass moves are made only where a reader needs the jaxpr's layout.

Declined (lowered equation by equation, and folded by the passes as before) when any value inside the
block is read outside it, the weights or statistics are not constants while lowering, the dtypes are not
one of float32/float16, or the convolution is not a plain ``Conv`` (input dilation, batch groups, negative
or symbolic padding, a cast of the result).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx_ir as ir
from jax.extend import core as jex_core

from workbench.errors import ConversionError
from workbench.jax_to_onnx.blocks import Block, _Index, _literal, _split, is_relu_body
from workbench.jax_to_onnx.builder import typed_like
from workbench.jax_to_onnx.dims import same_shape
from workbench.jax_to_onnx.ir_values import own_array, transposed_copy
from workbench.jax_to_onnx.passes.affine import affine_step, bias_name, per_channel_vector, scale_output_channels
from workbench.jax_to_onnx.relaid import Reader, Relaid, inverse

_CONV_DTYPES = frozenset({np.dtype(np.float32), np.dtype(np.float16)})
_AFFINE_OPS = {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div"}
# the weight-only arithmetic that makes an affine's constants (BatchNorm's scale * rsqrt(var + eps) and the
# reshapes of its statistics), computed here with NumPy
_UFUNCS: dict[str, Callable[..., np.ndarray]] = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide, "neg": np.negative, "sqrt": np.sqrt,
    "rsqrt": lambda a: np.reciprocal(np.sqrt(a)),  # as the lowering writes it (Sqrt, Reciprocal) and folding computes it
}
_CONSTANT_OPS = frozenset({*_UFUNCS, "reshape", "broadcast_in_dim", "squeeze"})
_CONSTANT_OPS_TUPLE = tuple(sorted(_CONSTANT_OPS))
# at most this many equations make one operand's constant (a BatchNorm's scale: reshapes, add, rsqrt, mul)
_MAX_CONSTANT_EQNS = 16


@dataclass(frozen=True)
class _Step:
    """One affine equation of the chain: ``op(chain, operand)`` (or ``op(operand, chain)`` when not ``chain_first``)."""

    op_type: str
    operand: Any
    chain_first: bool


@dataclass(frozen=True)
class _ConvBlock:
    """What the recogniser found: the convolution's operands and attributes, the chain and the relu."""

    x: Any
    kernel: Any
    dtype: np.dtype
    specs: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]  # lhs, rhs, out: each as N/O, C/I, spatial...
    attributes: dict[str, Any]
    y_shape: tuple[Any, ...]  # the convolution's result in N, C, spatial... order
    channels: int
    steps: tuple[_Step, ...]
    constants: dict[Any, Any]  # jaxpr variable → the member equation computing it (from weights and literals)
    leaves: tuple[Any, ...]  # the atoms those computations start from: constants of the graph while lowering
    relu: bool
    kernel_private: bool  # the kernel variable is read by this convolution only
    # the variable of the convolution's own bias (the chain's first ``add``, through reshapes), read by the block
    # only: the folded bias is stored in it (as the folding pass stores it in the layer's bias initializer)
    own_bias: Any = None

    @property
    def rank(self) -> int:
        return len(self.y_shape)


def conv_affine(index: _Index, conv: Any) -> Block | None:
    """The block starting at ``conv``: ``conv_general_dilated``, per-channel ``add``/``sub``/``mul``/``div`` of
    constants (at least one, or a relu), then optionally ``jax.nn.relu`` or ``max(x, 0)``; else None."""
    found = _recognise(index, conv)
    if found is None:
        return None
    plan, members, root = found
    closed = index.closed(members)
    if closed is None or closed[-1] != index.index(root):
        return None
    own_bias = _own_bias(plan, index, set(closed))
    if own_bias is not None:
        plan = dataclasses.replace(plan, own_bias=own_bias)
    conv_index = index.index(conv)
    return Block("ConvAffine", closed, lambda builder, read: _emit(plan, builder, read), plan.x,
                 lambda builder, read: _declines(plan, builder, read), name_all=True,
                 origins={"Conv": conv_index, "Transpose": conv_index})


def _recognise(index: _Index, conv: Any) -> tuple[_ConvBlock, list[Any], Any] | None:
    x, kernel = conv.invars
    if isinstance(x, jex_core.Literal) or isinstance(kernel, jex_core.Literal):
        return None
    y = conv.outvars[0]
    dtype = np.dtype(y.aval.dtype)
    if dtype not in _CONV_DTYPES or np.dtype(x.aval.dtype) != dtype or np.dtype(kernel.aval.dtype) != dtype:
        return None
    attributes = _conv_attributes(conv)
    if attributes is None:
        return None
    rank = len(y.aval.shape)
    dimension_numbers = conv.params["dimension_numbers"]
    if dimension_numbers is None:
        specs = (tuple(range(rank)),) * 3
    else:
        specs = tuple(tuple(int(a) for a in spec) for spec in dimension_numbers)
    channel_axis = specs[2][1]
    channels = y.aval.shape[channel_axis]
    if not isinstance(channels, (int, np.integer)) or channels < 1:
        return None
    members: list[Any] = [conv]
    steps: list[_Step] = []
    constants: dict[Any, Any] = {}
    leaves: list[Any] = []
    current = y
    while True:
        round_trip = _unit_axes_round_trip(index, current, y.aval.shape)
        if round_trip is not None:  # vmap's reshape to (B, 1, ...) and squeeze back (an unbatched Equinox layer)
            members += round_trip
            current = round_trip[-1].outvars[0]
        eqn = index.only_reader(current)
        if eqn is None or eqn.primitive.name not in _AFFINE_OPS or len(eqn.invars) != 2:
            break
        left, right = eqn.invars
        chain_first = left is current
        operand = right if chain_first else left
        if operand is current or not _per_channel(operand, y.aval.shape, channel_axis, int(channels), dtype):
            break
        if eqn.primitive.name == "div" and not chain_first:
            break
        if np.dtype(eqn.outvars[0].aval.dtype) != dtype or not same_shape(eqn.outvars[0].aval.shape, y.aval.shape):
            break
        computed = _constant_equations(index, operand, int(channels), dtype)
        if computed is None:
            break
        equations, starts = computed
        members += [eqn, *equations]
        constants.update((computing.outvars[0], computing) for computing in equations)
        leaves += starts
        steps.append(_Step(_AFFINE_OPS[eqn.primitive.name], operand, chain_first))
        current = eqn.outvars[0]
    relu = _relu(index, current)
    if relu is not None:
        members.append(relu)
    elif not steps:
        return None
    root = relu if relu is not None else index.eqns[index.producer[current]]
    plan = _ConvBlock(
        x=x, kernel=kernel, dtype=dtype, specs=specs, attributes=attributes,
        y_shape=tuple(y.aval.shape[axis] for axis in specs[2]), channels=int(channels), steps=tuple(steps),
        constants=constants, leaves=tuple(dict.fromkeys(leaves)), relu=relu is not None,
        kernel_private=index.only_reader(kernel) is conv,
    )
    return plan, members, root


def _own_bias(plan: _ConvBlock, index: _Index, members: set[int]) -> Any | None:
    """The variable the chain's first step adds when it is a bias (a weight reshaped or broadcast only) that
    nothing outside the block reads, else None."""
    if not plan.steps or plan.steps[0].op_type != "Add":
        return None
    atom = plan.steps[0].operand
    while not isinstance(atom, jex_core.Literal) and atom in plan.constants:
        eqn = plan.constants[atom]
        if eqn.primitive.name not in ("reshape", "broadcast_in_dim"):
            return None
        atom = eqn.invars[0]
    if isinstance(atom, jex_core.Literal) or atom in index.producer or atom in index.outputs:
        return None
    return atom if all(reader in members for reader in index.readers.get(atom, [])) else None


def _unit_axes_round_trip(index: _Index, value: Any, shape: Sequence[Any]) -> list[Any] | None:
    """The ``reshape``/``squeeze`` equations after ``value`` (each its value's one reader) that only add and
    remove axes of size 1 and end in ``shape`` again, else None: the same numbers in the same order."""
    eqns: list[Any] = []
    current = value
    while len(eqns) < 4:
        eqn = index.only_reader(current)
        if eqn is None or eqn.primitive.name not in ("reshape", "squeeze") or eqn.invars[0] is not current:
            return None
        if eqn.primitive.name == "reshape" and eqn.params.get("dimensions") is not None:
            return None
        out_shape = eqn.outvars[0].aval.shape
        if not same_shape([d for d in out_shape if not same_shape([d], [1])], [d for d in shape if not same_shape([d], [1])]):
            return None
        eqns.append(eqn)
        current = eqn.outvars[0]
        if same_shape(out_shape, shape):
            return eqns
    return None


def _conv_attributes(conv: Any) -> dict[str, Any] | None:
    """The ``Conv`` attributes of a plain convolution (what the handler emits without Slice, Pad or Cast), else None."""
    params = conv.params
    n_spatial = len(conv.outvars[0].aval.shape) - 2
    if params["batch_group_count"] != 1 or any(int(d) != 1 for d in params["lhs_dilation"] or ()):
        return None
    preferred = params["preferred_element_type"]
    if preferred is not None and np.dtype(preferred) != np.dtype(conv.outvars[0].aval.dtype):
        return None
    flat = [p for pair in params["padding"] for p in pair]
    if not all(isinstance(p, (int, np.integer)) and p >= 0 for p in flat):
        return None
    kernel_shape = conv.invars[1].aval.shape
    dimension_numbers = params["dimension_numbers"]
    spatial = tuple(range(2, n_spatial + 2)) if dimension_numbers is None else dimension_numbers[1][2:]
    kernel_spatial = [kernel_shape[axis] for axis in spatial]
    if not all(isinstance(k, (int, np.integer)) for k in kernel_spatial):
        return None
    pairs = [(int(low), int(high)) for low, high in params["padding"]]
    return {
        "strides": [int(s) for s in params["window_strides"]],
        "dilations": [int(d) for d in (params["rhs_dilation"] or (1,) * n_spatial)],
        "pads": [low for low, _ in pairs] + [high for _, high in pairs],
        "group": int(params["feature_group_count"]),
        "kernel_shape": [int(k) for k in kernel_spatial],
    }


def _per_channel(atom: Any, shape: Sequence[Any], axis: int, channels: int, dtype: np.dtype) -> bool:
    """Whether ``atom`` broadcasts against a value of ``shape`` as one number per channel (or one in all)."""
    if isinstance(atom, jex_core.Literal):
        return _literal(atom) is not None and np.dtype(atom.aval.dtype) == dtype
    own = atom.aval.shape
    if atom.aval.dtype != dtype or len(own) > len(shape) or _static_size(own) is None:
        return False
    offset = len(shape) - len(own)
    return all(d == 1 or (offset + i == axis and d == channels) for i, d in enumerate(own))


def _constant_equations(index: _Index, atom: Any, channels: int, dtype: np.dtype) -> tuple[list[Any], list[Any]] | None:
    """The equations computing ``atom`` from constants (:data:`_CONSTANT_OPS` only, each one or ``channels``
    numbers of ``dtype``) and the atoms they start from, else None. The starting atoms (weights, the jaxpr's
    constants, results of other equations) must be constants of the graph while lowering (:func:`_declines`)."""
    equations: list[Any] = []
    starts: list[Any] = []
    pending, seen = [atom], set()
    while pending:
        current = pending.pop()
        if isinstance(current, jex_core.Literal):
            if _literal(current) is None:
                return None
            continue
        if current in seen:
            continue
        seen.add(current)
        if current.aval.dtype != dtype or _static_size(current.aval.shape) not in (1, channels):
            return None
        eqn = index.eqn(current, _CONSTANT_OPS_TUPLE)
        if eqn is None or not _evaluable(eqn):
            starts.append(current)
            continue
        equations.append(eqn)
        if len(equations) > _MAX_CONSTANT_EQNS:
            return None
        pending.extend(eqn.invars)
    return equations, starts


def _static_size(shape: Sequence[Any]) -> int | None:
    """The number of elements of a static ``shape``, else None (a symbolic dimension)."""
    if all(type(d) is int for d in shape):  # the common case, without the isinstance checks below
        return math.prod(shape)
    if not all(isinstance(d, (int, np.integer)) for d in shape):
        return None
    return math.prod(int(d) for d in shape)


def _evaluable(eqn: Any) -> bool:
    name = eqn.primitive.name
    if name == "reshape":
        return eqn.params.get("dimensions") is None
    return name != "broadcast_in_dim" or all(isinstance(d, (int, np.integer)) for d in eqn.params["shape"])


def _relu(index: _Index, value: Any) -> Any | None:
    """The equation applying ``jax.nn.relu`` (its ``custom_jvp_call``) or ``max(x, 0)`` to ``value`` alone, else None."""
    eqn = index.only_reader(value)
    if eqn is None:
        return None
    if eqn.primitive.name == "max":
        return eqn if _split(eqn, 0.0) is value else None
    if eqn.primitive.name == "custom_jvp_call" and len(eqn.invars) == 1 and is_relu_body(eqn.params["call_jaxpr"]):
        return eqn
    return None


# ------------------------------------------------------------------------------------- lowering
def _declines(plan: _ConvBlock, builder: Any, read: Reader) -> bool:
    """Whether the block is lowered equation by equation after all: the kernel or a statistic is not a constant
    of the graph while lowering (a run-time value), or a function body is being built (constants are nodes)."""
    if builder.is_function or builder.inside_function():
        return True
    for atom in (plan.kernel, *plan.leaves):
        array = read.constant(atom)  # a statistic only the block reads stays an array (no initializer made)
        if array is None or array.dtype != np.dtype(atom.aval.dtype):
            return True
    return False


def _emit(plan: _ConvBlock, builder: Any, read: Reader) -> ir.Value | Relaid:
    weight = read(plan.kernel)
    scale, shift = np.ones(plan.channels), np.zeros(plan.channels)
    evaluated: dict[Any, np.ndarray] = {}
    for step in plan.steps:
        array = _evaluate(plan, step.operand, read, evaluated)
        vector = per_channel_vector(array, plan.rank, plan.specs[2][1], plan.channels)
        composed = None if vector is None else affine_step(scale, shift, step.op_type, vector, chain_first=step.chain_first)
        if composed is None:  # the shapes were checked on the jaxpr: a constant that does not match them
            raise ConversionError(f"a constant of shape {array.shape} does not scale the convolution's "
                                  f"{plan.channels} channels as its jaxpr shape said")
        scale, shift = composed
    source = weight.const_value.numpy()
    kernel = transposed_copy(source, plan.specs[1])  # O, I, spatial...: a copy unless already laid out so
    copied = not np.may_share_memory(kernel, source)
    if np.any(scale != 1.0):
        out = kernel if copied else np.empty(kernel.shape, kernel.dtype)
        kernel = scale_output_channels(kernel, scale.reshape((-1,) + (1,) * (kernel.ndim - 1)), out)
        copied = True
    kernel_value = _kernel_value(plan, builder, weight, kernel, copied)
    bias_value = _bias_value(plan, builder, read, shift.astype(plan.dtype), bias_name(kernel_value.name))
    lhs_spec, _, out_spec = plan.specs
    x_laid = read.laid(plan.x, lhs_spec)  # N, C, spatial...: the value held so, or one Transpose
    y = typed_like(builder.op("Conv", x_laid, kernel_value, bias_value, **plan.attributes), x_laid, plan.y_shape)
    if plan.relu:
        y = typed_like(builder.op("Relu", y), x_laid, plan.y_shape)
    if list(out_spec) != list(range(plan.rank)):
        return Relaid(y, inverse(out_spec))  # held channels-first (relaid.py)
    return y


def _kernel_value(plan: _ConvBlock, builder: Any, weight: ir.Value, kernel: np.ndarray, copied: bool) -> ir.Value:
    """The folded kernel as an initializer: the weight itself when it is unchanged (laid out OIHW and not scaled);
    the weight rewritten in place when it is a model weight that only this convolution reads (it keeps its
    module-path name, as the passes keep it); else a new initializer beside it (the original is left to whoever
    else reads it, or dropped unused)."""
    if not copied:
        return weight
    if plan.kernel_private and _rewritable(builder, weight):
        own_array(weight, kernel)
        weight.shape = ir.Shape(kernel.shape)
        return weight
    value = builder.const(kernel, name=weight.name if weight.name in builder.state.weights else "const")
    own_array(value, kernel)  # a copy made here: a later pass may scale it in place
    return value


def _bias_value(plan: _ConvBlock, builder: Any, read: Reader, bias: np.ndarray, name: str) -> ir.Value:
    """The folded bias as an initializer: the layer's own bias weight rewritten in place when only the block
    reads it, else a new one named after the kernel (``conv1.bias``)."""
    if plan.own_bias is not None:
        own = read(plan.own_bias)
        if _rewritable(builder, own):
            own.const_value = ir.Tensor(bias, name=own.name)
            own.shape = ir.Shape(bias.shape)
            return own
    return builder.const(bias, name=name)


def _rewritable(builder: Any, value: ir.Value) -> bool:
    """Whether a weight may be given another array while lowering: a model weight of the top-level jaxpr (one
    initializer per variable, never pooled with equal constants) that no node reads yet. The caller has checked
    that no equation outside the block reads its variable."""
    return (builder.parent is None and len(builder.state.eqn_path) == 1 and value.name in builder.state.weights
            and value.producer() is None and not value.uses())


def _evaluate(plan: _ConvBlock, atom: Any, read: Reader, done: dict[Any, np.ndarray]) -> np.ndarray:
    """The value of a constant operand: literals, the graph's constants, the member equations between them."""
    if isinstance(atom, jex_core.Literal):
        return np.asarray(atom.val, dtype=atom.aval.dtype)
    if atom in done:
        return done[atom]
    eqn = plan.constants.get(atom)
    if eqn is None:
        array = read.constant(atom)
    else:
        operands = [_evaluate(plan, operand, read, done) for operand in eqn.invars]
        array = _compute(eqn, operands)
    done[atom] = array
    return array


def _compute(eqn: Any, operands: list[np.ndarray]) -> np.ndarray:
    """One equation of :data:`_CONSTANT_OPS` with NumPy, in its operands' dtype."""
    name, params = eqn.primitive.name, eqn.params
    if name == "reshape":
        return operands[0].reshape([int(d) for d in params["new_sizes"]])
    if name == "squeeze":
        return np.squeeze(operands[0], axis=tuple(int(d) for d in params["dimensions"]))
    if name == "broadcast_in_dim":
        shape = [int(d) for d in params["shape"]]
        expanded = [1] * len(shape)
        for source_axis, target_axis in enumerate(params["broadcast_dimensions"]):
            expanded[int(target_axis)] = operands[0].shape[source_axis]
        return np.broadcast_to(operands[0].reshape(expanded), shape)
    return np.asarray(_UFUNCS[name](*operands))


__all__ = ["conv_affine"]
