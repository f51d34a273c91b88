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

Each rule checks the static shapes, permutations and constants it relies on; values are never
re-associated (moving a reshape or a bias add across a reshape changes no arithmetic). Why
hand-written: onnxscript's own layout rules only merge adjacent pairs (``Reshape∘Reshape``,
``Transpose∘Transpose``); none moves a reshape across an elementwise op or drops unit axes.
"""

from __future__ import annotations

import math

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import MatchResult, RewriteRule, RewriteRuleClassBase

from workbench.compat import new_common_rules
from workbench.jax_to_onnx.builder import typed_like
from workbench.jax_to_onnx.ir_values import constant_array

# the scalar ops a reshape is moved across (their result at each element depends on that element only)
_SCALAR_OPS = ("Mul", "Add", "Sub", "Div")


def _static_shape(value: ir.Value | None) -> list[int] | None:
    """The value's shape as ints, or None when unknown or partly symbolic."""
    if value is None or value.shape is None or not value.shape.is_static():
        return None
    return [int(d) for d in value.shape]


def _without_units(shape: list[int]) -> list[int]:
    return [d for d in shape if d != 1]


def _only_unit_axes_differ(a: list[int] | None, b: list[int] | None) -> bool:
    """True when a reshape between shapes ``a`` and ``b`` only inserts or removes size-1 axes."""
    return a is not None and b is not None and _without_units(a) == _without_units(b)


def _shape_initializer(op, shape: list[int], name: str) -> ir.Value:  # noqa: ANN001 - onnxscript builder
    return op.initializer(ir.Tensor(np.array(shape, np.int64), name=name))


def _reshaped(op, value: ir.Value, shape: list[int], name: str) -> ir.Value:  # noqa: ANN001
    """``Reshape(value, shape)``, or ``value`` itself when it already has that shape."""
    if _static_shape(value) == shape:
        return value
    return typed_like(op.Reshape(value, _shape_initializer(op, shape, name)), value, shape)


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
        product_shape, split_shape, bias_shape = _static_shape(product), _static_shape(split), _static_shape(bias)
        if product_shape is None or split_shape is None or bias_shape is None or constant_array(bias) is None:
            return result.fail("shapes must be static and the bias constant")
        if constant_array(shape) is None or x.dtype != bias.dtype:
            return result.fail("the reshape target is not constant or the dtypes differ")
        lead = len(product_shape) - 1
        if lead < 1 or split_shape[:lead] != product_shape[:lead]:
            return result.fail("the reshape must keep every axis of the product but the last")
        trailing = split_shape[lead:]
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

    def pattern(self, op, x, shape):  # noqa: ANN001, ANN201
        return op.Transpose(op.Reshape(x, shape, _outputs=["reshaped"]), _outputs=["transposed"])

    def check(self, context, x, shape, reshaped, transposed) -> MatchResult:  # noqa: ANN001
        del context, shape
        result = MatchResult()
        perm_attr = transposed.producer().attributes.get("perm")
        split_shape, x_shape = _static_shape(reshaped), _static_shape(x)
        if perm_attr is None or split_shape is None or 1 not in split_shape or x_shape is None:
            return result.fail("needs an explicit perm and static shapes with a unit axis")
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
            return result
        uses = list(transposed.uses())
        frame = None
        if len(uses) == 1 and uses[0].node.op_type == "Reshape" and uses[0].idx == 0:
            wanted = _static_shape(uses[0].node.outputs[0])
            frame = wanted if wanted is not None and _without_units(wanted) == moved else None
        if frame is None and _without_units(x_shape) == squeezed:
            frame = _fill_data_axes(x_shape, moved)
        if frame is None:
            frame = moved
        self._frame = frame
        self._input_shape, self._perm = _transpose_in_frame(frame, squeezed, order)
        if self._input_shape == split_shape and self._perm == perm:
            return result.fail("the transpose already moves only the data axes")
        if frame != self._out_shape and any(use.node.op_type != "Reshape" or use.idx != 0 for use in uses):
            return result.fail("the output would need a reshape that nothing absorbs")
        return result

    def rewrite(self, op, x, shape, reshaped=None, transposed=None):  # noqa: ANN001, ANN201
        del shape, reshaped, transposed
        value = _reshaped(op, x, self._input_shape, f"{self._name}/input_shape")
        if self._perm is not None and self._perm != sorted(self._perm):
            value = typed_like(op.Transpose(value, perm=self._perm), x, self._frame)
        return _reshaped(op, value, self._out_shape, f"{self._name}/shape")


def _fill_data_axes(pattern: list[int], dims: list[int]) -> list[int]:
    """``pattern`` with its non-unit sizes replaced, in order, by ``dims`` (its unit axes stay)."""
    filled, remaining = list(pattern), iter(dims)
    for axis, size in enumerate(pattern):
        if size != 1:
            filled[axis] = next(remaining)
    return filled


def _transpose_in_frame(frame: list[int], squeezed: list[int], order: list[int]) -> tuple[list[int], list[int]]:
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

    def __init__(self, op_type: str) -> None:
        super().__init__(name=f"ReshapeAfterScalar{op_type}")
        self.op_type = op_type

    def pattern(self, op, x, shape, scalar):  # noqa: ANN001, ANN201
        return getattr(op, self.op_type)(op.Reshape(x, shape), scalar)

    def check(self, context, x, shape, scalar) -> MatchResult:  # noqa: ANN001
        result = MatchResult()
        value = constant_array(scalar)
        x_shape, out_shape = _static_shape(x), _static_shape(context.output_values[0])
        if value is None or value.size != 1 or x_shape is None or out_shape is None or constant_array(shape) is None:
            return result.fail("needs a one-element constant and static shapes")
        if value.ndim > len(x_shape) or scalar.dtype != x.dtype:
            return result.fail("the constant would change the rank or the dtype")
        self._x_shape = x_shape
        return result

    def rewrite(self, op, x, shape, scalar):  # noqa: ANN001, ANN201
        applied = typed_like(getattr(op, self.op_type)(x, scalar), x, self._x_shape)
        return op.Reshape(applied, shape)


class WhereAcrossUnitReshape(RewriteRuleClassBase):
    """``Where(mask, Reshape(x, S), fill)`` with constant mask and fill, S = x's shape up to unit axes
    → ``Reshape(Where(mask', x, fill'), S)``.

    mask' and fill' are the same constants broadcast to S, laid out in x's shape (same element
    order) and shrunk back along every axis where they do not vary (a causal mask repeated over
    heads becomes (1, 1, L, L), a uniform fill a scalar), as new anonymous initializers.
    """

    def pattern(self, op, mask, x, shape, fill):  # noqa: ANN001, ANN201
        return op.Where(mask, op.Reshape(x, shape, _outputs=["reshaped"]), fill)

    def check(self, context, mask, x, shape, fill, reshaped) -> MatchResult:  # noqa: ANN001
        del shape
        result = MatchResult()
        out = context.output_values[0]
        mask_array, fill_array = constant_array(mask), constant_array(fill)
        x_shape, out_shape = _static_shape(x), _static_shape(out)
        if mask_array is None or fill_array is None or mask_array.dtype != np.bool_:
            return result.fail("mask and fill must be constants, the mask boolean")
        if not _only_unit_axes_differ(x_shape, out_shape) or fill.dtype != x.dtype:
            return result.fail("the reshape must only insert or remove unit axes")
        if _static_shape(reshaped) != out_shape:
            return result.fail("mask or fill broadcast the data to a larger shape")
        try:
            self._mask = _shrink(np.broadcast_to(mask_array, out_shape).reshape(x_shape))
            self._fill = _shrink(np.broadcast_to(fill_array, out_shape).reshape(x_shape))
        except ValueError:
            return result.fail("mask or fill do not broadcast to the output")
        if self._fill.size == 1:
            self._fill = self._fill.reshape(())
        self._x_shape, self._name = x_shape, out.name
        return result

    def rewrite(self, op, mask, x, shape, fill, reshaped=None):  # noqa: ANN001, ANN201
        del mask, fill, reshaped
        new_mask = op.initializer(ir.Tensor(self._mask, name=f"{self._name}/mask"))
        new_fill = op.initializer(ir.Tensor(self._fill, name=f"{self._name}/fill"))
        selected = typed_like(op.Where(new_mask, x, new_fill), x, self._x_shape)
        return op.Reshape(selected, shape)


def _shrink(array: np.ndarray) -> np.ndarray:
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

    def pattern(self, op, x, shape):  # noqa: ANN001, ANN201
        return op.Softmax(op.Reshape(x, shape), _outputs=["probs"])

    def check(self, context, x, shape, probs) -> MatchResult:  # noqa: ANN001
        del context, shape
        result = MatchResult()
        x_shape, out_shape = _static_shape(x), _static_shape(probs)
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
        return op.Reshape(typed_like(op.Softmax(x, axis=self._axis), x, self._x_shape), shape)


def annotate_shapes(graph: ir.Graph) -> None:
    """Give the outputs of Reshape, MatMul, Transpose, Softmax and the broadcasting ops the static shape
    (and dtype) the rules read, where the lowering left them unset and the inputs' shapes are static.

    Values made inside a handler's decomposition carry no shape until the final ONNX shape
    inference. Written by hand because the rules need these few ops only, for static shapes, and
    onnx's per-node inference (a protobuf round trip per node) took a tenth of a GPT conversion.
    """
    for node in graph:
        if node.domain != "" or len(node.outputs) != 1 or node.outputs[0].shape is not None:
            continue
        shape = _static_output_shape(node)
        if shape is None:
            continue
        out = node.outputs[0]
        out.shape = ir.Shape(shape)
        if out.type is None:
            source = node.inputs[1] if node.op_type == "Where" else node.inputs[0]
            out.type = source.type


def _static_output_shape(node: ir.Node) -> list[int] | None:
    """The output shape of one of the ops above from static input shapes, or None."""
    shapes = [_static_shape(value) for value in node.inputs]
    if not shapes or any(shape is None for shape in shapes):
        return None
    if node.op_type == "Reshape":
        target = constant_array(node.inputs[1])
        if target is None or node.attributes.get_int("allowzero", 0):
            return None
        dims = [shapes[0][axis] if size == 0 else int(size) for axis, size in enumerate(target.reshape(-1))]
        if dims.count(-1) == 1:
            known = math.prod(size for size in dims if size != -1)
            if known == 0:
                return None
            dims[dims.index(-1)] = math.prod(shapes[0]) // known
        return dims if math.prod(dims) == math.prod(shapes[0]) and min(dims, default=0) >= 0 else None
    if node.op_type == "Transpose":
        perm = node.attributes.get("perm")
        order = list(perm.as_ints()) if perm is not None else list(reversed(range(len(shapes[0]))))
        return [shapes[0][axis] for axis in order]
    if node.op_type == "Softmax":
        return shapes[0]
    if node.op_type == "MatMul" and len(shapes[0]) >= 2 and len(shapes[1]) >= 2:
        if shapes[0][-1] != shapes[1][-2]:
            return None
        batch = _broadcast(shapes[0][:-2], shapes[1][:-2])
        return None if batch is None else [*batch, shapes[0][-2], shapes[1][-1]]
    if node.op_type in (*_SCALAR_OPS, "Where"):
        return _broadcast(*shapes)
    return None


def _broadcast(*shapes: list[int]) -> list[int] | None:
    try:
        return [int(size) for size in np.broadcast_shapes(*(tuple(shape) for shape in shapes))]
    except ValueError:
        return None


def drop_no_op_reshapes(graph: ir.Graph) -> int:
    """Bypass each ``Reshape`` whose output has its input's own static shape (what the rules leave), in place."""
    count = 0
    for node in list(graph):
        if node.op_type != "Reshape" or node.domain != "" or node.graph is None:
            continue
        source, out = node.inputs[0], node.outputs[0]
        if out.is_graph_output() or _static_shape(source) is None or _static_shape(source) != _static_shape(out):
            continue
        out.replace_all_uses_with(source)
        graph.remove(node, safe=True)
        count += 1
    return count


def layout_rules() -> list[RewriteRule]:
    """The rules of this module, with onnxscript's pair merges they rely on, in application order."""
    return [
        BiasBeforeHeadSplit.rule(),
        new_common_rules().reshape_reshape,
        *(ReshapeAfterScalarOp.rule(op_type) for op_type in _SCALAR_OPS),
        TransposeDropUnitAxes.rule(),
        WhereAcrossUnitReshape.rule(),
        SoftmaxAcrossUnitReshape.rule(),
    ]
