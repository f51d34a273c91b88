"""Layout rewrites that let onnxruntime run exported attention faster, with the same numbers.

What JAX's attention (``nnx.MultiHeadAttention``: einsums ``BLD,DHK->BLHK`` and ``BQHK,BKHK->BHQK``,
a mask ``where``, softmax) lowers to carries layout ops that onnxruntime executes as copies or
that hide its fusions:

- the per-head bias is added *after* the head split (``Add(Reshape(MatMul(x, W), (B, L, H, K)), b)``),
  so onnxruntime cannot fuse ``MatMul`` + ``Add`` into one ``Gemm``: the bias is added before the
  split instead (:class:`BiasBeforeHeadSplit`, the bias stored flat under its own name);
- transposes of 5-D values with unit axes (flax inserts a size-1 "query groups" axis) run on
  onnxruntime's generic N-D path: :class:`TransposeDropUnitAxes` moves only the non-unit axes;
- the scores go through ``Reshape`` → ``Mul(scale)`` → ``Where(mask)`` → ``Softmax`` on a 5-D layout
  and back: :class:`ReshapeAfterScalarOp`, :class:`WhereAcrossUnitReshape` and
  :class:`SoftmaxAcrossUnitReshape` move the reshapes out so they cancel, which leaves
  ``MatMul`` → ``Mul`` (onnxruntime's ``FusedMatMul`` with ``alpha``) → ``Where`` (a small mask, a
  scalar fill) → ``Softmax`` on the 4-D scores; :func:`drop_no_op_reshapes` drops what is left.

Each rule checks the shapes, permutations and constants it relies on; values are never
re-associated (moving a reshape or a bias add across a reshape changes no arithmetic). Shapes may
have symbolic batch and sequence dims (:mod:`..dims`: compared by name, never taken for 1); the
reshapes the rules make then say them with ONNX's ``0`` and ``-1``, and a rule that would need a
shape read at run time does not fire. The causal mask of a symbolic sequence is computed at run
time: :class:`WhereAcrossUnitReshape` then reshapes it (one node, shared by the layers). Why
hand-written: onnxscript's own layout rules only merge adjacent pairs (``Reshape∘Reshape``,
``Transpose∘Transpose``); none moves a reshape across an elementwise op or drops unit axes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import MatchResult, RewriteRule, RewriteRuleClassBase

from workbench.compat import new_common_rules
from workbench.jax_to_onnx.builder import typed_like
from workbench.jax_to_onnx.dims import Dim, broadcast_dims, dims_of, reshape_target, reshaped_dims, without_units
from workbench.jax_to_onnx.ir_values import constant_array
from workbench.jax_to_onnx.passes.reshapes import drop_no_op_reshape_chains

# the scalar ops a reshape is moved across (their result at each element depends on that element only)
_SCALAR_OPS = ("Mul", "Add", "Sub", "Div")
# broadcasting ops with a boolean result, typed by :func:`annotate_shapes` too (masks are built of them)
_COMPARISONS = ("Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor")
# the ops the rules move as reshapes: Squeeze and Unsqueeze say what a constant Reshape shape cannot when
# two symbolic dims change place (``(B, H, T, T)`` → ``(1, B, H, T, T)``)
_UNIT_RESHAPES = ("Reshape", "Unsqueeze", "Squeeze")


def _only_unit_axes_differ(a: list[Dim] | None, b: list[Dim] | None) -> bool:
    """True when a reshape between shapes ``a`` and ``b`` only inserts or removes size-1 axes."""
    return a is not None and b is not None and without_units(a) == without_units(b)


def _shape_initializer(op, shape: list[int], name: str) -> ir.Value:  # noqa: ANN001 - onnxscript builder
    return op.initializer(ir.Tensor(np.array(shape, np.int64), name=name))


# how :func:`_reshaped` turns one shape into another: ("reshape", constant shape), or ("units", axes to
# squeeze, axes to unsqueeze) when only unit axes differ and symbolic dims keep a constant shape from saying it
_Plan = tuple[str, list[int], list[int]]
_NO_RESHAPE: _Plan = ("units", [], [])


def _reshape_plan(source: list[Dim], target: list[Dim]) -> _Plan | None:
    """How to reshape ``source`` to ``target`` without reading a shape at run time, or None."""
    if source == target:
        return _NO_RESHAPE
    constant = reshape_target(source, target)
    if constant is not None:
        return ("reshape", constant, [])
    if without_units(source) != without_units(target):
        return None
    inserted, removed = _inserted_units(source, target), _inserted_units(target, source)
    if inserted is not None:
        return ("units", [], inserted)
    if removed is not None:
        return ("units", removed, [])
    return ("units", [axis for axis, d in enumerate(source) if d == 1], [axis for axis, d in enumerate(target) if d == 1])


def _inserted_units(short: list[Dim], long: list[Dim]) -> list[int] | None:
    """The axes of ``long`` that are unit axes inserted into ``short``, when ``long`` is ``short`` with
    unit axes inserted; else None."""
    axes, position = [], 0
    for axis, dim in enumerate(long):
        if position < len(short) and short[position] == dim:
            position += 1
        elif dim == 1:
            axes.append(axis)
        else:
            return None
    return axes if position == len(short) else None


def _reshaped(op, value: ir.Value, plan: _Plan, dims: Sequence[Dim], name: str) -> ir.Value:  # noqa: ANN001
    """``value`` reshaped by ``plan`` and typed ``dims`` (itself when the plan changes nothing)."""
    kind, first, second = plan
    if kind == "reshape":
        return typed_like(op.Reshape(value, _shape_initializer(op, first, name)), value, dims)
    source = value
    if first:
        squeezed = [dim for axis, dim in enumerate(dims_of(source) or []) if axis not in first]
        value = typed_like(op.Squeeze(value, _shape_initializer(op, first, f"{name}/squeeze")), source, squeezed)
    if second:
        value = op.Unsqueeze(value, _shape_initializer(op, second, f"{name}/unsqueeze"))
    return typed_like(value, source, dims) if first or second else value


# ------------------------------------------------------------------------------------ biases
class BiasBeforeHeadSplit(RewriteRuleClassBase):
    """``Add(Reshape(MatMul(x, W), (..., H, K)), b[H, K])`` → ``Reshape(Add(MatMul(x, W), Reshape(b, [H*K])), ...)``.

    The reshape only splits the last axis of the product and the bias covers exactly the split
    axes, so each element gets the same bias element either way. The bias reshape is then stored
    in place under the bias's own name (``passes.fold_weight_layouts``), and onnxruntime fuses the
    ``MatMul`` + ``Add`` into a ``Gemm``.
    """

    def pattern(self, op, x, weight, shape, bias):  # noqa: ANN001, ANN201 - onnxscript pattern builder
        product = op.MatMul(x, weight, _outputs=["product"])
        return op.Add(op.Reshape(product, shape, _outputs=["split"]), bias)

    def check(self, context, x, weight, shape, bias, product, split) -> MatchResult:  # noqa: ANN001
        del weight
        result = MatchResult()
        product_shape, split_shape, bias_shape = dims_of(product), dims_of(split), dims_of(bias)
        if product_shape is None or split_shape is None or bias_shape is None or constant_array(bias) is None:
            return result.fail("shapes must be known and the bias constant")
        if constant_array(shape) is None or x.dtype != bias.dtype:
            return result.fail("the reshape target is not constant or the dtypes differ")
        lead = len(product_shape) - 1
        if lead < 1 or split_shape[:lead] != product_shape[:lead]:
            return result.fail("the reshape must keep every axis of the product but the last")
        trailing = split_shape[lead:]
        if not all(isinstance(d, int) for d in [*trailing, product_shape[-1]]):
            return result.fail("the split axes are symbolic")
        if math.prod(trailing) != product_shape[-1] or len(bias_shape) > len(trailing):
            return result.fail("the reshape does not split the last axis")
        if [1] * (len(trailing) - len(bias_shape)) + bias_shape != trailing:
            return result.fail("the bias does not cover exactly the split axes")
        self._flat, self._name = product_shape[-1], context.output_values[0].name
        self._product_shape = product_shape
        return result

    def rewrite(self, op, x, weight, shape, bias, product=None, split=None):  # noqa: ANN001, ANN201
        del product, split
        flat_bias = typed_like(
            op.Reshape(bias, _shape_initializer(op, [self._flat], f"{self._name}/bias_shape")), bias, [self._flat]
        )
        product = typed_like(op.MatMul(x, weight), x, self._product_shape)
        return op.Reshape(typed_like(op.Add(product, flat_bias), x, self._product_shape), shape)


# ------------------------------------------------------------------------------ transposes
class TransposeDropUnitAxes(RewriteRuleClassBase):
    """``Transpose(Reshape(x, S), perm)`` with size-1 axes in S → a transpose that moves only the data axes.

    Unit axes hold no data, so only the order in which ``perm`` moves the other axes matters. When
    it keeps their order, the pair is one ``Reshape(x, out)``. Otherwise the unit axes are placed
    where they cost nothing: where the reshape after the transpose wants them (the transpose then
    yields that shape and the reshape drops out), else where x has them (no reshape of x), else
    nowhere. A reshape restores the original output shape only where it differs, and only when
    the output feeds reshapes (it merges with them, so the graph never grows).
    """

    def __init__(self, reshape_op: str = "Reshape") -> None:
        super().__init__(name=f"TransposeDropUnitAxes{'' if reshape_op == 'Reshape' else reshape_op}")
        self.reshape_op = reshape_op

    def pattern(self, op, x, shape):  # noqa: ANN001, ANN201
        return op.Transpose(getattr(op, self.reshape_op)(x, shape, _outputs=["reshaped"]), _outputs=["transposed"])

    def check(self, context, x, shape, reshaped, transposed) -> MatchResult:  # noqa: ANN001
        del context, shape
        result = MatchResult()
        perm_attr = transposed.producer().attributes.get("perm")
        split_shape, x_shape = dims_of(reshaped), dims_of(x)
        if perm_attr is None or split_shape is None or 1 not in split_shape or x_shape is None:
            return result.fail("needs an explicit perm and known shapes with a unit axis")
        if transposed.is_graph_output():
            return result.fail("the transpose output is a graph output")
        perm = list(perm_attr.as_ints())
        kept = [axis for axis, size in enumerate(split_shape) if size != 1]
        position = {axis: index for index, axis in enumerate(kept)}
        order = [position[axis] for axis in perm if split_shape[axis] != 1]  # data axes, in output order
        squeezed = [split_shape[axis] for axis in kept]
        moved = [squeezed[axis] for axis in order]
        self._out_shape = [split_shape[axis] for axis in perm]
        self._name = transposed.name
        if order == sorted(order):  # only unit axes move: a reshape
            self._input_shape, self._perm, self._frame = self._out_shape, None, self._out_shape
            return self._plan(result, x_shape)
        uses = list(transposed.uses())
        frame = None
        if len(uses) == 1 and uses[0].node.op_type in _UNIT_RESHAPES and uses[0].idx == 0:
            wanted = dims_of(uses[0].node.outputs[0])
            frame = wanted if wanted is not None and without_units(wanted) == moved else None
        if frame is None and without_units(x_shape) == squeezed:
            frame = _fill_data_axes(x_shape, moved)
        if frame is None:
            frame = moved
        self._frame = frame
        self._input_shape, self._perm = _transpose_in_frame(frame, squeezed, order)
        if self._input_shape == split_shape and self._perm == perm:
            return result.fail("the transpose already moves only the data axes")
        if frame != self._out_shape and any(use.node.op_type not in _UNIT_RESHAPES or use.idx != 0 for use in uses):
            return result.fail("the output would need a reshape that nothing absorbs")
        return self._plan(result, x_shape)

    def _plan(self, result: MatchResult, x_shape: list[Dim]) -> MatchResult:
        """The constant shapes of the reshapes before and after the transpose, or a failed match."""
        self._input_plan = _reshape_plan(x_shape, self._input_shape)
        self._output_plan = _reshape_plan(self._frame, self._out_shape)
        if self._input_plan is None or self._output_plan is None:
            return result.fail("a reshape would need its shape read at run time")
        return result

    def rewrite(self, op, x, shape, reshaped=None, transposed=None):  # noqa: ANN001, ANN201
        del shape, reshaped, transposed
        value = _reshaped(op, x, self._input_plan, self._input_shape, f"{self._name}/input_shape")
        if self._perm is not None and self._perm != sorted(self._perm):
            value = typed_like(op.Transpose(value, perm=self._perm), x, self._frame)
        return _reshaped(op, value, self._output_plan, self._out_shape, f"{self._name}/shape")


def _fill_data_axes(pattern: list[Dim], dims: list[Dim]) -> list[Dim]:
    """``pattern`` with its non-unit sizes replaced, in order, by ``dims`` (its unit axes stay)."""
    filled, remaining = list(pattern), iter(dims)
    for axis, size in enumerate(pattern):
        if size != 1:
            filled[axis] = next(remaining)
    return filled


def _transpose_in_frame(frame: list[Dim], squeezed: list[Dim], order: list[int]) -> tuple[list[Dim], list[int]]:
    """The input shape and permutation of a transpose that yields ``frame`` from data laid out as ``squeezed``.

    ``order[i]`` is the data axis that becomes the i-th data axis of the output; unit axes of the
    frame stay in place (the input has them at the same positions).
    """
    data_positions = [axis for axis, size in enumerate(frame) if size != 1]
    input_shape = list(frame)
    perm = list(range(len(frame)))
    for index, axis in enumerate(data_positions):
        input_shape[axis] = squeezed[index]
        perm[axis] = data_positions[order[index]]
    return input_shape, perm


# ------------------------------------------------------------------- reshapes moved outward
class ReshapeAfterScalarOp(RewriteRuleClassBase):
    """``Op(Reshape(x, s), c)`` with c a one-element constant → ``Reshape(Op(x, c), s)`` (Op: Mul/Add/Sub/Div)."""

    def __init__(self, op_type: str, reshape_op: str = "Reshape") -> None:
        super().__init__(name=f"{reshape_op}AfterScalar{op_type}")
        self.op_type, self.reshape_op = op_type, reshape_op

    def pattern(self, op, x, shape, scalar):  # noqa: ANN001, ANN201
        return getattr(op, self.op_type)(getattr(op, self.reshape_op)(x, shape), scalar)

    def check(self, context, x, shape, scalar) -> MatchResult:  # noqa: ANN001
        result = MatchResult()
        value = constant_array(scalar)
        x_shape, out_shape = dims_of(x), dims_of(context.output_values[0])
        if value is None or value.size != 1 or x_shape is None or out_shape is None or constant_array(shape) is None:
            return result.fail("needs a one-element constant, known shapes and a constant reshape")
        if value.ndim > len(x_shape) or scalar.dtype != x.dtype:
            return result.fail("the constant would change the rank or the dtype")
        self._x_shape = x_shape
        return result

    def rewrite(self, op, x, shape, scalar):  # noqa: ANN001, ANN201
        applied = typed_like(getattr(op, self.op_type)(x, scalar), x, self._x_shape)
        return getattr(op, self.reshape_op)(applied, shape)


class WhereAcrossUnitReshape(RewriteRuleClassBase):
    """``Where(mask, Reshape(x, S), fill)`` with S = x's shape up to unit axes → ``Reshape(Where(mask', x, fill'), S)``.

    mask' and fill' are mask and fill laid out in x's axes (the same elements, broadcast the same way).
    A constant one is stored so, shrunk along every axis where it does not vary (a causal mask repeated
    over heads becomes (1, 1, L, L), a uniform fill a scalar), as a new anonymous initializer; one
    computed at run time (the causal mask of a symbolic sequence) is reshaped when it is itself made by a
    reshape (the two merge), or needs none.
    """

    def __init__(self, reshape_op: str = "Reshape") -> None:
        super().__init__(name=f"WhereAcrossUnit{reshape_op}")
        self.reshape_op = reshape_op

    def pattern(self, op, mask, x, shape, fill):  # noqa: ANN001, ANN201
        return op.Where(mask, getattr(op, self.reshape_op)(x, shape, _outputs=["reshaped"]), fill)

    def check(self, context, mask, x, shape, fill, reshaped) -> MatchResult:  # noqa: ANN001
        del shape
        result = MatchResult()
        out = context.output_values[0]
        x_shape, out_shape = dims_of(x), dims_of(out)
        if not _only_unit_axes_differ(x_shape, out_shape) or fill.dtype != x.dtype or mask.dtype != ir.DataType.BOOL:
            return result.fail("the reshape must only insert or remove unit axes, the mask be boolean")
        if dims_of(reshaped) != out_shape:
            return result.fail("mask or fill broadcast the data to a larger shape")
        self._operands = []
        for value, role in ((mask, "mask"), (fill, "fill")):
            relaid = _relaid_operand(value, out_shape, x_shape)
            if relaid is None:
                return result.fail(f"the {role} cannot be laid out in the data's axes with a constant shape")
            self._operands.append(relaid)
        self._x_shape, self._name = x_shape, out.name
        return result

    def rewrite(self, op, mask, x, shape, fill, reshaped=None):  # noqa: ANN001, ANN201
        del reshaped
        operands = []
        for value, role, (array, plan, dims) in zip((mask, fill), ("mask", "fill"), self._operands, strict=True):
            if array is not None:
                operands.append(op.initializer(ir.Tensor(array, name=f"{self._name}/{role}")))
            else:
                operands.append(_reshaped(op, value, plan, dims, f"{self._name}/{role}_shape"))
        selected = typed_like(op.Where(operands[0], x, operands[1]), x, self._x_shape)
        return getattr(op, self.reshape_op)(selected, shape)


def _relaid_operand(value: ir.Value, out: list[Dim], x: list[Dim]) -> tuple[np.ndarray | None, _Plan, list[Dim]] | None:
    """An operand broadcast against ``out``, laid out in the axes of ``x`` (``out`` up to unit axes):
    (its values when constant, else None; how to reshape it; its new dims), or None."""
    dims = dims_of(value)
    if dims is None or len(dims) > len(out):
        return None
    padded = [1] * (len(out) - len(dims)) + dims
    if any(size not in (1, target) for size, target in zip(padded, out, strict=True)):
        return None
    relaid: list[Dim] = [1] * len(x)
    for out_axis, x_axis in zip(
        [axis for axis, size in enumerate(out) if size != 1], [axis for axis, size in enumerate(x) if size != 1], strict=True
    ):
        relaid[x_axis] = padded[out_axis]
    array = constant_array(value)
    if array is not None:
        shrunk = shrink_constant(array.reshape([int(d) for d in relaid]))
        return (shrunk.reshape(()) if shrunk.size == 1 else shrunk), _NO_RESHAPE, []
    plan = _reshape_plan(dims, relaid)
    producer = value.producer()
    if plan is None or plan != _NO_RESHAPE and (producer is None or producer.op_type not in _UNIT_RESHAPES):
        return None  # a reshape that merges with none before it would add a node per layer
    return None, plan, relaid


def shrink_constant(array: np.ndarray) -> np.ndarray:
    """``array`` with every axis along which it does not vary cut to size 1 (it still broadcasts the same)."""
    for axis in range(array.ndim):
        if array.shape[axis] > 1 and (array == array.take([0], axis=axis)).all():
            array = array.take([0], axis=axis)
    return np.ascontiguousarray(array)


class SoftmaxAcrossUnitReshape(RewriteRuleClassBase):
    """``Softmax(Reshape(x, S), axis)`` with S = x's shape up to unit axes → ``Reshape(Softmax(x, axis'), S)``.

    axis' is the axis of x that holds the same (non-unit) dimension; Softmax (opset 13+)
    normalizes along that one axis, whose elements are the same in both layouts.
    """

    def __init__(self, reshape_op: str = "Reshape") -> None:
        super().__init__(name=f"SoftmaxAcrossUnit{reshape_op}")
        self.reshape_op = reshape_op

    def pattern(self, op, x, shape):  # noqa: ANN001, ANN201
        return op.Softmax(getattr(op, self.reshape_op)(x, shape), _outputs=["probs"])

    def check(self, context, x, shape, probs) -> MatchResult:  # noqa: ANN001
        del context, shape
        result = MatchResult()
        x_shape, out_shape = dims_of(x), dims_of(probs)
        if not _only_unit_axes_differ(x_shape, out_shape):
            return result.fail("the reshape must only insert or remove unit axes")
        axis = probs.producer().attributes.get_int("axis", -1) % len(out_shape)
        if out_shape[axis] == 1:
            return result.fail("softmax over a unit axis")
        ordinal = sum(1 for size in out_shape[:axis] if size != 1)
        self._axis = [index for index, size in enumerate(x_shape) if size != 1][ordinal]
        self._x_shape = x_shape
        return result

    def rewrite(self, op, x, shape, probs=None):  # noqa: ANN001, ANN201
        del probs
        return getattr(op, self.reshape_op)(typed_like(op.Softmax(x, axis=self._axis), x, self._x_shape), shape)


def annotate_shapes(graph: ir.Graph) -> None:
    """Give the outputs of Reshape, Unsqueeze, Squeeze, MatMul, Transpose, Softmax, Cast, Not and the
    broadcasting ops the shape (and dtype) the rules read, where the lowering left them unset and the
    inputs' shapes are known.

    Values made inside a handler's decomposition carry no shape until the final ONNX shape
    inference. Written by hand because the rules need these few ops only, and onnx's per-node
    inference (a protobuf round trip per node) took a tenth of a GPT conversion.
    """
    for node in graph:
        if node.domain != "" or len(node.outputs) != 1 or node.outputs[0].shape is not None:
            continue
        shape = _output_dims(node)
        if shape is None:
            continue
        out = node.outputs[0]
        out.shape = ir.Shape(shape)
        if out.type is None:
            if node.op_type in _COMPARISONS:
                out.type = ir.TensorType(ir.DataType.BOOL)
            elif node.op_type == "Cast":
                out.type = ir.TensorType(ir.DataType(node.attributes.get_int("to", 0)))
            else:
                out.type = (node.inputs[1] if node.op_type == "Where" else node.inputs[0]).type


def _output_dims(node: ir.Node) -> list[Dim] | None:
    """The output dims of one of the ops above from known input dims, or None."""
    shapes = [dims_of(value) for value in node.inputs]
    if not shapes or any(shape is None for shape in shapes):
        return None
    if node.op_type == "Reshape":
        target = constant_array(node.inputs[1])
        if target is None or node.attributes.get_int("allowzero", 0):
            return None
        return reshaped_dims(shapes[0], target.reshape(-1).tolist())
    if node.op_type == "Transpose":
        perm = node.attributes.get("perm")
        order = list(perm.as_ints()) if perm is not None else list(reversed(range(len(shapes[0]))))
        return [shapes[0][axis] for axis in order]
    if node.op_type in ("Softmax", "Cast", "Not", "Neg"):
        return shapes[0]
    if node.op_type in ("Unsqueeze", "Squeeze") and len(shapes) == 2:
        axes = constant_array(node.inputs[1])
        if axes is None:
            return None
        if node.op_type == "Squeeze":
            dropped = {int(axis) % len(shapes[0]) for axis in axes.reshape(-1)}
            return [dim for axis, dim in enumerate(shapes[0]) if axis not in dropped]
        rank = len(shapes[0]) + axes.size
        inserted = {int(axis) % rank for axis in axes.reshape(-1)}
        rest = iter(shapes[0])
        return [1 if axis in inserted else next(rest) for axis in range(rank)]
    if node.op_type == "MatMul" and len(shapes[0]) >= 2 and len(shapes[1]) >= 2:
        if shapes[0][-1] != shapes[1][-2]:
            return None
        batch = broadcast_dims(shapes[0][:-2], shapes[1][:-2])
        return None if batch is None else [*batch, shapes[0][-2], shapes[1][-1]]
    if node.op_type in (*_SCALAR_OPS, *_COMPARISONS, "Where"):
        return broadcast_dims(*shapes)
    return None


def drop_no_op_reshapes(graph: ir.Graph) -> int:
    """Bypass each ``Reshape`` whose output has its input's own shape and each chain of reshaping ops
    that undoes itself (what the rules leave), then let equal reshapes of one value share one node
    (the rules reshape a mask once per layer), in place."""
    count = drop_no_op_reshape_chains(graph)
    first: dict[tuple[int, bytes], ir.Value] = {}
    for node in list(graph):
        if node.op_type != "Reshape" or node.domain != "" or node.graph is None:
            continue
        source, out = node.inputs[0], node.outputs[0]
        if out.is_graph_output():
            continue
        dims = dims_of(source)
        if dims is not None and dims == dims_of(out):
            out.replace_all_uses_with(source)
            graph.remove(node, safe=True)
            count += 1
            continue
        target = constant_array(node.inputs[1])
        if target is None or source is None:
            continue
        key = (id(source), target.astype(np.int64).tobytes())
        if key not in first:
            first[key] = out
            continue
        out.replace_all_uses_with(first[key])
        graph.remove(node, safe=True)
        count += 1
    return count


def layout_rules() -> list[RewriteRule]:
    """The rules of this module, with onnxscript's pair merges they rely on, in application order."""
    return [
        BiasBeforeHeadSplit.rule(),
        new_common_rules().reshape_reshape,
        *(ReshapeAfterScalarOp.rule(op_type, reshape_op) for reshape_op in _UNIT_RESHAPES for op_type in _SCALAR_OPS),
        *(TransposeDropUnitAxes.rule(reshape_op) for reshape_op in _UNIT_RESHAPES),
        *(WhereAcrossUnitReshape.rule(reshape_op) for reshape_op in _UNIT_RESHAPES),
        *(SoftmaxAcrossUnitReshape.rule(reshape_op) for reshape_op in _UNIT_RESHAPES),
    ]
