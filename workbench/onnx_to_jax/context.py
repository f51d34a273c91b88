"""What an emitter sees: one node, its inputs as expressions, its attributes, known types."""

from __future__ import annotations

from typing import Any, Callable, Protocol

import numpy as np
import onnx
from onnx import helper as onnx_helper

from workbench.errors import OnnxModelError, UnsupportedOnnxOpError, warn
from workbench.onnx_to_jax.helpers import _ints
from workbench.onnx_to_jax.layout import LayoutPlan
from workbench.onnx_to_jax.literals import INLINE_MAX_ELEMENTS, dtype_expr, literal
from workbench.onnx_to_jax.masked_scatter import MaskedScatter
from workbench.onnx_to_jax.row_scatter import RowScatter
from workbench.onnx_to_jax.sized_unique import SizedUnique
from workbench.onnx_to_jax.phases import Phase
from workbench.onnx_io.order import describe_node
from workbench.onnx_to_jax.reshaped_add import ReshapedAdd
from workbench.onnx_to_jax.trip_count import static_value

_REQUIRED = object()


class Call(str):
    """The code of one call, ``fn(arg, ..., key=value)``, as :meth:`NodeContext.call` writes it, with its
    parts kept: the generator writes a call of a function listed in host_shapes.py again as numpy code
    where it runs on concrete arrays. Only the call itself is a ``Call``: text an emitter builds around
    it (an operator after it, an f-string) is a plain ``str``, which has no such second form.
    """

    fn: str  # the function as the code names it: a runtime helper's name or a dotted jnp name
    helper: Callable | None  # the runtime helper, when ``fn`` names one
    args: tuple[str, ...]  # the arguments as written, keywords as ``key=value``
    method: str  # a method called on the result, as written (``.astype(jnp.int64)``), or ""

    def __new__(cls, fn: str, args: tuple[str, ...], helper: Callable | None = None, method: str = "") -> "Call":
        code = super().__new__(cls, f"{fn}({', '.join(args)}){method}")
        code.fn, code.helper, code.args, code.method = fn, helper, args, method
        return code

    def astype(self, dtype: str) -> "Call":
        """``fn(args).astype(dtype)``: the same call with its result cast (``jnp.asarray(x).astype(t)``)."""
        return Call(self.fn, self.args, self.helper, f"{self.method}.astype({dtype})")


class GraphScope(Protocol):
    """What a node context may ask of the graph being generated (the generator's ``GraphEmitter``)."""

    @property
    def label(self) -> str: ...

    def expr_of(self, onnx_name: str) -> str: ...

    def nhwc_expr_of(self, onnx_name: str) -> str: ...

    def static_of(self, onnx_name: str) -> np.ndarray | None: ...

    def phase_of(self, onnx_name: str) -> Phase | None: ...

    def reshaped_add_of(self, onnx_name: str) -> ReshapedAdd | None: ...

    def take_reshaped_add(self, onnx_name: str) -> None: ...

    def masked_scatter_of(self, onnx_name: str) -> MaskedScatter | None: ...

    def row_scatter_of(self, onnx_name: str) -> tuple[RowScatter, int] | None: ...

    def sized_unique_of(self, onnx_name: str) -> SizedUnique | None: ...

    def value_expr(self, onnx_name: str) -> str: ...

    def note_phase(self, output: str, source: str, starts: list[int], ends: list[int],
                   axes: list[int] | None, steps: list[int] | None) -> None: ...

    def shape_of(self, onnx_name: str) -> tuple[int | None, ...] | None: ...

    def dtype_of(self, onnx_name: str) -> np.dtype | None: ...

    def kind_of(self, onnx_name: str) -> str | None: ...

    def add_param(self, key: str, value: np.ndarray) -> None: ...

    def use_helper(self, fn: Callable) -> str: ...

    def readers_of(self, onnx_name: str) -> tuple[onnx.NodeProto, ...] | None: ...

    def producer_of(self, onnx_name: str) -> onnx.NodeProto | None: ...

    def tensor_to_array(self, tensor: onnx.TensorProto) -> np.ndarray: ...

    def constant_expr(self, onnx_name: str, value: np.ndarray) -> str: ...

    def emit_subgraph(self, graph: onnx.GraphProto, hint: str) -> str: ...

    def prepare_weight(self, onnx_name: str, axes: tuple[int, ...]) -> bool: ...


class NodeContext:
    """The emitter's view of one node. Expressions returned by ``x`` are identifiers or literals."""

    def __init__(self, graph: GraphScope, node: onnx.NodeProto, index: int, opset: int,
                 layout: LayoutPlan | None = None):
        self._graph = graph
        self._layout = layout
        self.node = node
        self.index = index
        self.opset = opset
        self._attrs = {a.name: a for a in node.attribute}
        # inputs whose values the emitted code reads on the host (shapes, axes, counts): they must be
        # concrete when jax.jit traces the node, or the node runs between jitted parts (segments.py)
        self.host_inputs: set[int] = set()

    # ---- inputs -------------------------------------------------------------------------
    @property
    def channels_last(self) -> bool:
        """Whether the node runs channels-last (NHWC): its image inputs arrive so and its outputs are
        held so (workbench/onnx_to_jax/layout.py decides)."""
        return self._layout is not None and self._layout.holds_outputs

    def reads_channels_last(self, i: int) -> bool:
        """Whether input ``i`` arrives channels-last (NHWC; layout.py decides)."""
        return self._layout is not None and i in self._layout.nhwc_inputs

    @property
    def nhwc_axes(self) -> tuple[int, ...] | None:
        """A reduction's axes on its channels-last input, when it reads one (layout.py)."""
        return None if self._layout is None else self._layout.nhwc_axes

    @property
    def n_in(self) -> int:
        return len(self.node.input)

    @property
    def n_out(self) -> int:
        return len(self.node.output)

    def has(self, i: int) -> bool:
        """Whether optional input ``i`` is given."""
        return i < len(self.node.input) and self.node.input[i] != ""

    def has_output(self, i: int) -> bool:
        return i < len(self.node.output) and self.node.output[i] != ""

    def x(self, i: int) -> str:
        """The expression of input ``i`` (an identifier or a literal)."""
        if not self.has(i):
            raise self.error(f"input {i} is required but missing")
        if self._layout is not None and i in self._layout.nhwc_inputs:
            return self._graph.nhwc_expr_of(self.node.input[i])
        return self._graph.expr_of(self.node.input[i])

    def readers(self, onnx_name: str) -> tuple[onnx.NodeProto, ...] | None:
        """The nodes of the graph being emitted that read the value ``onnx_name`` (this node's outputs
        among others); ``None`` when a graph output or a subgraph reads it too."""
        return self._graph.readers_of(onnx_name)

    def producer(self, i: int) -> onnx.NodeProto | None:
        """The node that computes input ``i`` (None for graph inputs, initializers and absent inputs)."""
        return self._graph.producer_of(self.node.input[i]) if self.has(i) else None

    def file_value(self, onnx_name: str) -> np.ndarray | None:
        """The value of ``onnx_name`` as the file gives it, when known now: folded, an initializer (float
        ones included, which code reads as params) or small arithmetic on those (trip_count.PATH_OPS).
        For a decision fixed at generation time (a Loop's trip count), as :meth:`host` fixes small values."""
        value = self._graph.static_of(onnx_name)
        if value is not None:
            return value
        return static_value(onnx_name, self._graph.producer_of, self._graph.static_of, self.opset)

    def prepared_weight(self, i: int, axes: tuple[int, ...]) -> bool:
        """Whether input ``i`` (a weight) reaches the code transposed by ``axes`` (``np.transpose``'s).

        True for a float initializer of rank ``len(axes)`` that this node alone reads, as the weight
        of a Conv or Gemm: the generated module's ``prepare`` then transposes it once, outside
        jax.jit, and the emitter must read it so. The ``params`` the user holds keep it in ONNX's
        layout (docs/codegen.md, "Weights prepared once").
        """
        return self.has(i) and self._graph.prepare_weight(self.node.input[i], axes)

    @property
    def dots_only(self) -> bool:
        """Whether the model is compiled with YNNPACK fusing dots and no elementwise ops (its
        ``XLA_COMPILER_OPTIONS``, workbench/onnx_to_jax/jit_options.py: dots only, or dots and each
        convolution alone): a convolution written as dots then runs in YNNPACK's dot kernels."""
        from workbench.onnx_to_jax.jit_options import YNN_DOTS_ONLY, YNN_FUSION_TYPE

        return YNN_DOTS_ONLY in str(self._graph.module.compiler_options.get(YNN_FUSION_TYPE)).split(",")

    @property
    def ynn_convolutions(self) -> bool:
        """Whether YNNPACK runs the model's convolutions: XLA's default YNNPACK fusion, or each
        convolution alone (``YNN_CONVOLUTIONS_ONLY``, with or without dots); not the
        ``XLA_COMPILER_OPTIONS`` of models compiled with YNNPACK fusing only dots or nothing
        (workbench/onnx_to_jax/jit_options.py), whose convolutions XLA's own kernel runs."""
        from workbench.onnx_to_jax.jit_options import YNN_CONVOLUTIONS_ONLY, YNN_FUSION_TYPE

        options = self._graph.module.compiler_options
        return YNN_FUSION_TYPE not in options or YNN_CONVOLUTIONS_ONLY in str(options[YNN_FUSION_TYPE]).split(",")

    def host(self, i: int) -> str:
        """The expression of input ``i`` for code that reads its value on the host (``int(...)``, numpy).

        A small value known now (a float initializer holding Resize scales, say) is written as a
        literal, so the node stays jit-able even when the weights are passed as arguments.
        """
        value = self.static(i)
        if value is not None and value.size <= INLINE_MAX_ELEMENTS:
            return literal(value)
        if self.has(i):
            self.host_inputs.add(i)
        return self.x(i)

    def host_opt(self, i: int) -> str:
        """Like :meth:`host` for an optional input (``None`` as code when absent)."""
        return self.host(i) if self.has(i) else "None"

    def opt(self, i: int) -> str:
        """The expression of optional input ``i``, or ``None`` (as code) when absent."""
        return self.x(i) if self.has(i) else "None"

    def xs(self) -> list[str]:
        return [self.x(i) for i in range(self.n_in) if self.has(i)]

    def static(self, i: int) -> np.ndarray | None:
        """The value of input ``i`` when known at generation time (initializer, constant, folded)."""
        if not self.has(i):
            return None
        return self._graph.static_of(self.node.input[i])

    def phase(self, i: int) -> Phase | None:
        """The strided phase of another value that input ``i`` is, if a Slice made it so (phases.py)."""
        if not self.has(i):
            return None
        return self._graph.phase_of(self.node.input[i])

    def note_phase(self, starts: list[int], ends: list[int], axes: list[int] | None, steps: list[int] | None) -> None:
        """For a Slice with these static parameters: record output 0 as a strided phase of input 0 when it
        takes one (phases.py; a Concat of such phases is emitted as one transpose)."""
        self._graph.note_phase(self.node.output[0], self.node.input[0], starts, ends, axes, steps)

    def reshaped_add(self) -> ReshapedAdd | None:
        """For a Reshape: the Reshape -> Add chain that made its input, if the generator found one
        whose intermediate values nothing else reads (reshaped_add.py)."""
        return self._graph.reshaped_add_of(self.node.output[0]) if self.has_output(0) else None

    def take_reshaped_add(self) -> None:
        """For a Reshape whose code reads around its chain: the chain's first Reshape and Add are dead."""
        self._graph.take_reshaped_add(self.node.output[0])

    def masked_scatter(self) -> MaskedScatter | None:
        """For a ScatterND: the NonZero + Gather chain that picked its rows, when the generator writes no
        code for it and the scatter is to drop the rows the mask leaves out (masked_scatter.py)."""
        return self._graph.masked_scatter_of(self.node.output[0]) if self.has_output(0) else None

    def row_scatter(self) -> tuple[RowScatter, int] | None:
        """For a ScatterND: the window-scatter chain that made its inputs and its row count N, when the chain's
        NonZero ran as ``arange(N)`` (row_scatter.py)."""
        return self._graph.row_scatter_of(self.node.output[0]) if self.has_output(0) else None

    def sized_unique(self) -> SizedUnique | None:
        """For a Gather: the Unique chain whose values it picks or fills (``jnp.unique(x, size=n)``), when the
        generator writes no code for the chain's other nodes (sized_unique.py)."""
        return self._graph.sized_unique_of(self.node.output[0]) if self.has_output(0) else None

    def known_shape(self, onnx_name: str) -> tuple[int | None, ...] | None:
        """The shape of any value of the graph: its folded value's, else the known one."""
        value = self._graph.static_of(onnx_name)
        return tuple(np.shape(value)) if value is not None else self._graph.shape_of(onnx_name)

    def value_shape(self, onnx_name: str) -> tuple[int | None, ...] | None:
        """The known shape of any value of the graph (not only this node's inputs and outputs)."""
        return self._graph.shape_of(onnx_name)

    def value(self, onnx_name: str) -> str:
        """Expression of a value the node reads besides its inputs (on ONNX's axes), e.g. a phase's source."""
        return self._graph.value_expr(onnx_name)

    def shape(self, i: int) -> tuple[int | None, ...] | None:
        if not self.has(i):
            return None
        return self._graph.shape_of(self.node.input[i])

    def rank(self, i: int) -> int | None:
        shape = self.shape(i)
        return None if shape is None else len(shape)

    def dtype(self, i: int) -> np.dtype | None:
        if not self.has(i):
            return None
        return self._graph.dtype_of(self.node.input[i])

    def elem_type(self, i: int) -> int | None:
        """The ``TensorProto`` element type of input ``i`` (strings included), if known."""
        if not self.has(i):
            return None
        return self._graph.elem_type_of(self.node.input[i])

    def kind(self, i: int) -> str | None:
        """The kind of input ``i`` (``"tensor"``, ``"sequence"``, ``"optional"``...), if known."""
        if not self.has(i):
            return None
        return self._graph.kind_of(self.node.input[i])

    def out_dtype(self, i: int = 0) -> np.dtype | None:
        if not self.has_output(i):
            return None
        return self._graph.dtype_of(self.node.output[i])

    def out_shape(self, i: int = 0) -> tuple[int | None, ...] | None:
        if not self.has_output(i):
            return None
        return self._graph.shape_of(self.node.output[i])

    # ---- attributes ---------------------------------------------------------------------
    def has_attr(self, name: str) -> bool:
        return name in self._attrs

    def attr(self, name: str, default: Any = _REQUIRED) -> Any:
        """The attribute's Python value (str decoded, TensorProto -> numpy, graph -> GraphProto)."""
        proto = self._attrs.get(name)
        if proto is None:
            if default is _REQUIRED:
                raise self.error(f"the required attribute {name!r} is missing")
            return default
        if proto.ref_attr_name:
            raise self.error(f"attribute {name!r} refers to a function attribute; inline the function first")
        value = onnx_helper.get_attribute_value(proto)
        if isinstance(value, bytes):
            return value.decode("utf-8", errors="replace")
        if isinstance(value, onnx.TensorProto) and value.data_type == onnx.TensorProto.STRING:
            # string tensors (LabelEncoder keys...) as numpy arrays of str, for host-side code
            texts = [v.decode("utf-8", errors="replace") for v in value.string_data]
            return np.array(texts, dtype=object).reshape(tuple(value.dims))
        if isinstance(value, onnx.TensorProto):
            return self._graph.tensor_to_array(value)
        if isinstance(value, list) and value and isinstance(value[0], bytes):
            return [v.decode("utf-8", errors="replace") for v in value]
        if isinstance(value, list) and value and isinstance(value[0], onnx.TypeProto):
            raise UnsupportedOnnxOpError(self._where() + ": type-valued attributes are not supported")
        return value

    def choice(self, name: str, allowed: tuple[Any, ...], default: Any = _REQUIRED) -> Any:
        """An attribute of a fixed vocabulary (a mode, a reduction, an enum's integer): another value is refused here,
        naming it and the values the spec allows, rather than written into the code for a helper to refuse or misread
        at run time (onnxruntime refuses such a model when its session is created)."""
        value = self.attr(name, default)
        if value not in allowed:
            raise self.error(f"attribute {name}={value!r} is not one of {', '.join(map(repr, allowed))}")
        return value

    def fattr(self, name: str, default: Any = _REQUIRED) -> float:
        """A float attribute, written back in its shortest float32 form (0.1, not 0.10000000149)."""
        value = self.attr(name, default)
        return float(np.format_float_positional(np.float32(value), unique=True, trim="0"))

    def ints(self, i: int) -> str:
        """Input ``i`` as a tuple of Python ints: a literal when known now, else converted at run time."""
        value = self.static(i)
        if value is not None:
            return literal(tuple(int(v) for v in np.asarray(value).reshape(-1)))
        return self.call(_ints, self.host(i))

    # ---- writing code -------------------------------------------------------------------
    @staticmethod
    def lit(value: Any) -> str:
        """An escaped literal (the only way attribute values may reach code)."""
        return literal(value)

    @staticmethod
    def dt(dtype: np.dtype) -> str:
        return dtype_expr(dtype)

    def onnx_dt(self, elem_type: int) -> str:
        """The code expression of an ONNX TensorProto element type."""
        return dtype_expr(self.onnx_np_dtype(elem_type))

    def onnx_np_dtype(self, elem_type: int) -> np.dtype:
        if elem_type in (onnx.TensorProto.STRING, onnx.TensorProto.UNDEFINED):
            raise UnsupportedOnnxOpError(self._where() + ": string tensors have no JAX equivalent")
        try:
            return np.dtype(onnx_helper.tensor_dtype_to_np_dtype(elem_type))
        except (KeyError, ValueError, TypeError) as e:
            raise self.error(f"unknown element type {elem_type}") from e

    def helper(self, fn: Callable) -> str:
        """Use a runtime helper; returns its name in generated code."""
        return self._graph.use_helper(fn)

    def call(self, fn: Callable | str, *args: str, **kwargs: str) -> Call:
        """``name(arg, ..., key=value)`` for a helper function or a dotted jnp/lax name."""
        name = fn if isinstance(fn, str) else self.helper(fn)
        parts = tuple(args) + tuple(f"{k}={v}" for k, v in kwargs.items())
        return Call(name, parts, None if isinstance(fn, str) else fn)

    def subgraph(self, attr_name: str) -> str:
        """Emit the graph attribute as a nested function; returns its name.

        The function takes the subgraph's inputs positionally and returns a tuple of its outputs.
        """
        graph = self.attr(attr_name)
        if not isinstance(graph, onnx.GraphProto):
            raise self.error(f"attribute {attr_name!r} is not a graph")
        return self._graph.emit_subgraph(graph, hint=f"{self.node.op_type}_{attr_name}")

    def constant(self, value: np.ndarray, hint: str) -> str:
        """A value the emitter computed now (tree tables, coefficients): a literal when small, else a
        ``params`` entry named after the node's first output and ``hint``."""
        if value.size <= INLINE_MAX_ELEMENTS:
            return literal(value)
        key = f"{self.node.output[0] or self.node.op_type}::{hint}"
        self._graph.add_param(key, value)
        return f"params[{literal(key)}]"

    def bind_constant(self, value: np.ndarray) -> str:
        """Make output 0 a value known at generation time; returns its expression (literal or params)."""
        return self._graph.constant_expr(self.node.output[0], value)

    # ---- errors -------------------------------------------------------------------------
    def _where(self) -> str:
        return f"{self._graph.label}: {describe_node(self.node, self.index)}"

    def error(self, message: str) -> OnnxModelError:
        return OnnxModelError(f"{self._where()}: {message}")

    def unsupported(self, message: str) -> UnsupportedOnnxOpError:
        return UnsupportedOnnxOpError(f"{self._where()}: {message}")

    def warn(self, message: str) -> None:
        """A WorkbenchWarning naming this node: the generated code is right but differs from what a user may
        compare it with (a runtime's known divergence from the spec)."""
        warn(f"{self._where()}: {message}")
