"""Walk a checked ONNX graph and write the Python source of ``forward(params, *inputs)``.

One statement per node, named after the (sanitized) ONNX output names. Values
known at generation time (integer initializers, Constant nodes, shapes that
shape inference fixed, and small computations on those, evaluated by the
package's one constant evaluator, onnx_io.evaluate) are folded into literals so shape arithmetic stays
static and ``jax.jit`` works without static-argument tricks. Float
initializers are never folded: they are the trainable ``params``.
"""

from __future__ import annotations

import keyword
import symtable
import types
from collections import Counter
from typing import Callable

import numpy as np
import onnx

from workbench.errors import OnnxModelError, SpecError, UnsupportedOnnxOpError, WorkbenchError
from workbench.limits import MAX_FOLDED_ELEMENTS
from workbench.onnx_io.tensors import tensor_array
from workbench.onnx_to_jax import registry
from workbench.onnx_to_jax.context import Call, NodeContext
from workbench.onnx_to_jax.fold_budget import output_elements
from workbench.onnx_to_jax.helpers import helper_source
from workbench.onnx_to_jax.host_shapes import host_form
from workbench.onnx_to_jax.jit_options import OPTIONS_NAME, X64_NAME, choose_compiler_options
from workbench.onnx_to_jax.layout import ChannelsLast, LayoutPlan
from workbench.onnx_to_jax.literals import INLINE_MAX_ELEMENTS, literal
from workbench.onnx_to_jax.masked_scatter import MaskedScatter, find_masked_scatters
from workbench.onnx_to_jax.row_scatter import RowScatter, find_row_scatters
from workbench.onnx_to_jax.sized_unique import SizedUnique, find_sized_uniques
from workbench.onnx_to_jax.names import NameScope
from workbench.onnx_to_jax.phases import Phase, phase_of_slice
from workbench.onnx_io.describe import ValueDescription, describe_inputs, describe_tensor, describe_value, subgraph_free_names
from workbench.onnx_io.evaluate import evaluate_node
from workbench.onnx_io.order import describe_node, topological_order
from workbench.onnx_to_jax.reader import CheckedModel
from workbench.onnx_to_jax.refine import refine_output_types
from workbench.onnx_to_jax.repeats import RepeatFinder
from workbench.onnx_to_jax.reshaped_add import ReshapedAdd, find_reshaped_adds
from workbench.onnx_to_jax.segments import NodeCode, SegmentAssembler
from workbench.onnx_to_jax.writer import SourceWriter

GENERATED_FILENAME = "<workbench-generated>"
# The generated module defines forward first and the runtime helpers it calls after this line
# (Python looks them up when forward runs); notebooks fold the part below it away.
HELPERS_MARKER = "# ---- runtime helpers called by the code above"
RESERVED = frozenset({"jax", "jnp", "lax", "np", "params", "math"})
FOLD_MAX_ELEMENTS = MAX_FOLDED_ELEMENTS
# deterministic ops the generator may evaluate when all inputs are known
FOLDABLE = frozenset(
    "Add Sub Mul Div Neg Abs Cast CastLike Concat Gather Unsqueeze Squeeze Slice Reshape Identity "
    "Equal Less Greater Where Range ConstantOfShape ReduceProd ReduceSum ReduceMax ReduceMin Min Max "
    "Floor Ceil Sqrt Not And Or Expand Tile Transpose Flatten Mod Sign Size Shape "
    # cheap elementwise and index ops that exporters put in shape arithmetic (Resize sizes computed
    # through Reciprocal, box counts through NonZero of a constant mask...)
    "Reciprocal Pow Round Clip Exp Log Relu LessOrEqual GreaterOrEqual Xor IsNaN IsInf Split NonZero "
    "ArgMax ArgMin CumSum Trilu OneHot Unique TopK".split()
)
_X64 = {"float64", "int64", "uint64", "complex128"}
# ops whose output is concrete at trace time (under jax.jit) whatever their input is
SHAPE_OPS = frozenset({"Shape", "Size", "SequenceLength", "OptionalHasElement"})


def _names_text(names: list[str], limit: int = 6) -> str:
    """The first ``limit`` names joined with commas, and how many there are when some are left out."""
    shown = ", ".join(names[:limit])
    return shown + (f", … ({len(names)} in all)" if len(names) > limit else "")


def _call_text(function_name: str, arg_names: list[str], output_names: list[str]) -> str:
    """``forward(params, image) -> logits``: the call as the module defines it, for its docstring.

    The arguments are the generated (sanitized) identifiers; the model's output names are shown only
    when every one is a plain identifier (a name from the file never reaches the source unescaped).
    """
    if output_names and all(name.isidentifier() and not keyword.iskeyword(name) for name in output_names):
        result = output_names[0] if len(output_names) == 1 else f"({_names_text(output_names)})"
    else:
        result = "its output (ONNX_OUTPUT_NAMES[0])" if len(output_names) == 1 else f"{len(output_names)} outputs (ONNX_OUTPUT_NAMES)"
    return f"{function_name}({_names_text(['params', *arg_names], limit=7)}) -> {result}"


class ModuleBuilder:
    """State shared by every graph of one generated module."""

    def __init__(self, checked: CheckedModel, function_name: str, *, scan_repeats: bool = False,
                 refused_rows: frozenset[str] = frozenset()):
        self.checked = checked
        # window scatters (row_scatter.py) whose folded shapes failed the check in an earlier build, by
        # their NonZero's output: generated as the model writes them
        self.refused_rows = refused_rows
        self.model = checked.loaded.proto
        self.label = checked.loaded.label
        self.function_name = function_name
        self.opsets = {e.domain or "": int(e.version) for e in self.model.opset_import}
        self.opsets.setdefault("", 1)
        if "ai.onnx" in self.opsets:
            self.opsets[""] = self.opsets.pop("ai.onnx")
        self.helpers_used: set[str] = set()
        self.literal_statements: set[str] = set()  # "name = <literal>" lines written; unread ones are dropped
        self.code: types.CodeType | None = None  # the compiled module, once build() ran
        self.barriers: tuple[str, ...] = ()  # top-level nodes that cannot run under jax.jit (once built)
        self.params: dict[str, np.ndarray] = {}
        # float initializers that one Conv or Gemm reads as its weight and nothing else reads
        # (candidates), and those whose emitter reads them transposed: the generated prepare()
        # transposes these once (name -> np.transpose axes)
        self.weight_candidates = _single_use_weights(self.model.graph)
        self.weight_layouts: dict[str, tuple[int, ...]] = {}
        # XLA compiler options the model runs fastest with (jit_options.py); the code's form of small
        # convolutions depends on them (emitters/conv.py, _conv_as_dot)
        self.compiler_options = choose_compiler_options(self.model.graph)
        # write runs of repeated blocks as one body run by lax.scan (repeats.py); (start, length, count) of each
        self.scan_repeats = scan_repeats
        self.scanned_runs: tuple[tuple[int, int, int], ...] = ()
        self.types: dict[str, ValueDescription] = {}
        self._collect_types(self.model.graph)
        taken = RESERVED | {"prepare", "WEIGHT_LAYOUTS", OPTIONS_NAME}  # names the module itself defines or imports
        if not isinstance(function_name, str) or not function_name.isidentifier() or keyword.iskeyword(function_name) \
                or function_name in taken:  # fmt: skip
            raise SpecError(
                f"function_name must be a plain identifier, not a Python keyword or one of {sorted(taken)}, got {function_name!r}"
            )
        self.prepared_name = f"{function_name}_prepared"
        generated_names = {function_name, self.prepared_name, "prepare", "WEIGHT_LAYOUTS", OPTIONS_NAME}
        self.scope = NameScope(RESERVED | registry.helper_names() | generated_names)

    def _collect_types(self, graph: onnx.GraphProto) -> None:
        for info in [*graph.input, *graph.output, *graph.value_info]:
            value = describe_value(info)
            if value.kind is not None:  # sequences and optionals too: SequenceMap asks for the kind
                self.types[info.name] = value
        for init in graph.initializer:
            self.types[init.name] = describe_tensor(init)
        for node in graph.node:
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    self._collect_types(attr.g)
                elif attr.type == onnx.AttributeProto.GRAPHS:
                    for g in attr.graphs:
                        self._collect_types(g)

    def use_helper(self, fn: Callable) -> str:
        name = fn.__name__
        if name not in registry.helper_names():
            raise AssertionError(f"{name} is not registered with @runtime_helper")
        self.helpers_used.add(name)
        return name

    def check_supported(self, graph: onnx.GraphProto) -> None:
        """Collect every op without an emitter (in all subgraphs) and raise once, listing them all."""
        missing: Counter[str] = Counter()
        where: dict[str, str] = {}

        def visit(g: onnx.GraphProto) -> None:
            for index, node in enumerate(g.node):
                opset = self.opsets.get(node.domain or "", self.opsets[""])
                try:
                    registry.resolve(node.domain or "", node.op_type, opset)
                except UnsupportedOnnxOpError as e:
                    key = f"{node.domain or 'ai.onnx'}::{node.op_type} (opset {opset})"
                    missing[key] += 1
                    where.setdefault(key, describe_node(node, index))
                    del e
                for attr in node.attribute:
                    if attr.type == onnx.AttributeProto.GRAPH:
                        visit(attr.g)
                    elif attr.type == onnx.AttributeProto.GRAPHS:
                        for sub in attr.graphs:
                            visit(sub)

        visit(graph)
        if missing:
            lines = "\n".join(f"  {k} x{n}, first at {where[k]}" for k, n in missing.items())
            raise UnsupportedOnnxOpError(
                f"{self.label}: {len(missing)} operator(s) have no JAX emitter:\n{lines}\n"
                "See docs/codegen.md for how to add an emitter."
            )

    def build(self) -> str:
        graph = self.model.graph
        self.check_supported(graph)
        real_inputs = describe_inputs(graph)  # of the kinds the reader accepts (SUPPORTED_INPUT_KINDS)
        body = SourceWriter()
        top = GraphEmitter(self, self.scope, body, {}, trainable=set(), concrete=set())
        arg_names = [self.scope.assign(i.name) for i in real_inputs]
        top.load_initializers(graph)
        top.find_scatter_chains(self.checked.nodes, [o.name for o in graph.output])
        chained = frozenset(chain.nonzero for chain in [*top.masked_scatters.values(), *top.row_scatters.values()])
        nodes = _reuse_repeated_nonzero(self.checked.nodes, chained)
        top.reshaped_adds = find_reshaped_adds(nodes, [o.name for o in graph.output])
        top.note_readers(nodes, [o.name for o in graph.output])
        items = top.collect_nodes(nodes)
        # the first Reshape and the Add of each chain the last Reshape read around (reshaped_add.py):
        # dead code, dropped so the generated source reads as the computation it runs
        items = [item for item in items if not (item.writes and set(item.writes) <= top.bypassed_values)]
        parts = SourceWriter()
        self.barriers = tuple(item.node.name or item.node.op_type for item in items if item.barrier)
        if self.barriers:
            # shapes depend on values: jitted parts between the nodes that need concrete values
            body = SourceWriter()
            top.writer = body
            assembler = SegmentAssembler(top, self.function_name)
            assembler.assemble(items, [o.name for o in graph.output], parts, body)
        else:
            self._write_straight(top, items, [o.name for o in graph.output], body, parts)
        outs = [top.output_expr(o.name) for o in graph.output]
        if len(outs) == 1:
            body.line(f"return {outs[0]}")
        else:
            body.line(f"return ({', '.join(outs)},)" if outs else "return ()")

        module = SourceWriter()
        module.line('"""JAX code generated by workbench from an ONNX model (do not edit by hand).')
        module.line("")
        module.line(f"Call {_call_text(self.function_name, arg_names, [o.name for o in graph.output])};")
        module.line("params maps initializer names to arrays; ONNX_INPUT_NAMES / ONNX_OUTPUT_NAMES: the model's names.")
        module.line('"""')
        module.line("")
        module.line("import jax")
        module.line("import jax.numpy as jnp")
        module.line("import numpy as np")
        module.line("from jax import lax")
        module.line("")
        module.line(f"ONNX_OPSET = {literal(self.opsets[''])}")
        module.line(f"ONNX_INPUT_NAMES = {literal(tuple(i.name for i in real_inputs))}")
        module.line(f"ONNX_OUTPUT_NAMES = {literal(tuple(o.name for o in graph.output))}")
        # nodes whose output shapes depend on values: jax.jit(forward) cannot trace them, so forward
        # runs them on concrete arrays between jitted parts (empty: the whole function is jit-able)
        module.line(f"VALUE_DEPENDENT_NODES = {literal(self.barriers)}")
        # XLA compiler options this model runs fastest with, chosen from its graph (jit_options.py):
        # jax.jit(forward, compiler_options=XLA_COMPILER_OPTIONS), as wb.jit_forward does
        entries = ", ".join(
            f"{literal(name)}: {literal(value)}" for name, value in sorted(self.compiler_options.items())
        )
        module.line(f"{OPTIONS_NAME} = {{{entries}}}")
        needs_x64 = self._needs_x64(graph, top)
        if needs_x64:
            # read by wb.jit_forward, which then traces and calls the jitted function with x64 on
            # (a plain outer jax.jit would narrow 64-bit inputs at its boundary); absent: 32-bit model
            module.line(f"{X64_NAME} = True")
        module.line("")
        module.line("")
        prepared = bool(self.weight_layouts)
        # with weights in a kernel layout, the body is forward_prepared and forward prepares first
        outer_name = self.prepared_name if prepared else self.function_name
        if prepared:
            self._write_prepare(module, arg_names)
        body_name = f"_{outer_name}_body" if needs_x64 else outer_name
        with module.block(f"def {body_name}({', '.join(['params', *arg_names])}):"):
            if prepared:
                doc = f"{self.function_name} on prepare(params): the WEIGHT_LAYOUTS entries arrive transposed."
                module.line(f'"""{doc}"""')
            module.extend(body)
        if needs_x64:
            # 64-bit inputs or outputs: run with x64 enabled for this call only, never flipping
            # JAX's global setting in the user's process.
            module.line("")
            module.line("")
            # the inputs by name, as the body takes them: help(forward) and keyword calls see the model's inputs
            arguments = ", ".join(["params", *arg_names])
            with module.block(f"def {outer_name}({arguments}):"):
                module.line('"""Runs with 64-bit types enabled: the model has 64-bit inputs or outputs."""')
                with module.block("with jax.enable_x64(True):"):
                    module.line(f"return {body_name}({arguments})")
        # forward reads top-down: what it calls is defined below it (looked up when it runs)
        if parts.source().strip():
            module.line("")
            module.line("")
            module.extend(parts)
        if self.helpers_used:
            module.line("")
            module.line("")
            module.line(HELPERS_MARKER)
            module.line("")
            for text in helper_source(self.helpers_used).splitlines():
                module.line(text)
        source = module.source()
        try:
            source = self._drop_unread_literals(source)
            # compiled here, once: this checks that the source parses (faster than ast.parse,
            # which builds Python objects for every node) and to_jax runs the same code object
            self.code = compile(source, GENERATED_FILENAME, "exec")
        except SyntaxError as e:  # a bug in an emitter, never the user's fault
            raise AssertionError(f"generated source does not parse: {e}\n{source}") from e
        return source

    def _write_prepare(self, module: SourceWriter, arg_names: list[str]) -> None:
        """``WEIGHT_LAYOUTS``, ``forward(params, ...)`` = ``forward_prepared(prepare(params), ...)`` and ``prepare``."""
        from workbench.onnx_to_jax.emitters.conv import _prepare_params

        helper = self.use_helper(_prepare_params)
        fn, body = self.function_name, self.prepared_name
        module.line("# weights the code reads transposed (np.transpose axes): convolutions (kh, kw, I, O) as XLA's")
        module.line("# CPU kernels read them, Gemm's transB weights (K, N); params keeps ONNX's layouts")
        with module.block("WEIGHT_LAYOUTS = {"):
            for name, axes in self.weight_layouts.items():
                module.line(f"{literal(name)}: {literal(axes)},")
        module.line("}")
        module.line("")
        module.line("")
        args = ", ".join(["params", *arg_names])
        with module.block(f"def {fn}({args}):"):
            doc = f"The model on params in ONNX's layouts; for repeated calls, jit {body} on prepare(params)."
            module.line(f'"""{doc}"""')
            module.line(f"return {body}({', '.join(['prepare(params)', *arg_names])})")
        module.line("")
        module.line("")
        with module.block("def prepare(params):"):
            module.line('"""params with each WEIGHT_LAYOUTS entry transposed by its axes: with numpy once for')
            module.line('concrete arrays, with jnp (differentiable) under jax.jit or jax.grad."""')
            module.line(f"return {helper}(params, WEIGHT_LAYOUTS)")
        module.line("")
        module.line("")

    def _write_straight(self, top: "GraphEmitter", items: list[NodeCode], outputs: list[str], body: SourceWriter,
                        tables: SourceWriter) -> None:
        """forward's body for a model without value-dependent nodes: every node's code in order, runs of
        repeated blocks as one block function applied by ``lax.scan`` (repeats.py) when ``scan_repeats``."""
        finder = RepeatFinder(top, items, self.types, self.params, outputs, self.function_name) if (
            self.scan_repeats) else None
        runs = finder.find() if finder is not None else []
        self.scanned_runs = tuple((run.start, run.length, run.count) for run in runs)
        starts = {run.start: run for run in runs}
        index = 0
        while index < len(items):
            run = starts.get(index)
            if run is not None and finder is not None:
                finder.write(run, body, tables)
                index = run.end
            else:
                body.extend(items[index].code)
                index += 1

    def _drop_unread_literals(self, source: str) -> str:
        """Remove the literal assignments (``const_4 = np.array([1, 1, 1, 8])``) that no code reads.

        Small known values are bound as literals when the generator meets them, and folding then
        often writes them into the statements that use them (a Reshape's target shape), leaving the
        assignment unread. Identifiers are unique in the module, so a name no scope of the module
        reads (Python's own symbol tables say which) is dead wherever it is assigned.
        """
        if not self.literal_statements:
            return source
        read: set[str] = set()
        tables = [symtable.symtable(source, GENERATED_FILENAME, "exec")]
        while tables:
            table = tables.pop()
            read.update(symbol.get_name() for symbol in table.get_symbols() if symbol.is_referenced())
            tables.extend(table.get_children())
        dead = {statement for statement in self.literal_statements if statement.split(" = ", 1)[0] not in read}
        if not dead:
            return source
        return "\n".join(line for line in source.split("\n") if line.strip() not in dead)

    def _needs_x64(self, graph: onnx.GraphProto, top: GraphEmitter) -> bool:
        """Whether the module must run with x64 on: 64-bit inputs or outputs, or 64-bit values the graph
        (or a subgraph) computes at run time that 32 bits cannot hold (``_widens_at_run_time``)."""
        for info in [*graph.input, *graph.output]:
            if self._dtype_name(info.name) in _X64:
                return True
        return self._widens_at_run_time(graph, top)

    def _dtype_name(self, name: str) -> str | None:
        found = self.types.get(name)
        return None if found is None or found.dtype is None else found.dtype.name

    def _widens_at_run_time(self, graph: onnx.GraphProto, top: GraphEmitter) -> bool:
        """A run-time value (not folded, not known while tracing) in float64, complex128 or uint64, or a
        uint32 value cast to int64: without x64 JAX narrows them to 32 bits, which changes their values
        (jax.random's exports widen uint32 counters to int64 and build floats in float64: real programs
        from gymnax, Jumanji and augmax came back with other numbers). The int64 of shape arithmetic and
        of indices (ArgMax, TopK, Gather) fits int32 and keeps a model 32-bit: x64 for every int64 would
        move most exporters' models to 64-bit index arithmetic."""
        for node in graph.node:
            for name in node.output:
                if not name or name in top.static or name in top.concrete:
                    continue
                dtype = self._dtype_name(name)
                if dtype in ("float64", "complex128", "uint64"):
                    return True
                if node.op_type == "Cast" and dtype == "int64" and self._dtype_name(node.input[0]) == "uint32":
                    return True
            for attr in node.attribute:
                subgraphs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
                if any(self._widens_at_run_time(sub, top) for sub in subgraphs):
                    return True
        return False


class GraphEmitter:
    """Emits one graph (the main one or a subgraph) into one writer."""

    def __init__(
        self,
        module: ModuleBuilder,
        scope: NameScope,
        writer: SourceWriter,
        static: dict[str, np.ndarray],
        trainable: set[str],
        concrete: set[str],
        layout: ChannelsLast | None = None,
    ):
        self.module = module
        self.scope = scope
        self.writer = writer
        self.static = static
        self.trainable = trainable
        # Values that are concrete while jax.jit traces: literals, Shape/Size results and shape
        # arithmetic on those. With a symbolic dim (batch "B") Shape cannot be folded now, but its
        # result is still known at trace time; see _emits_trace_time_constant.
        self.concrete = concrete
        self.nested_barrier = False  # whether the subgraphs of the node being emitted hold a barrier
        # the helpers the host forms of the node being emitted name (host_shapes.py; a subgraph's emitter
        # shares its parent's set): the lines themselves carry their host forms (writer.py)
        self.host_helpers: set[Callable] = set()
        self.in_subgraph = False
        # values held channels-last (outputs of 2-D convolutions and what follows them; layout.py)
        self.layout = layout if layout is not None else ChannelsLast()
        # Slice outputs that are one strided phase of a value (phases.py), for Concat
        self.phases: dict[str, Phase] = {}
        # Reshape -> Add -> Reshape chains, by the last Reshape's output (reshaped_add.py; main graph only)
        self.reshaped_adds: dict[str, ReshapedAdd] = {}
        # jax2onnx's bounds-checked scatters, by each value of the chain and the ScatterND's output
        # (masked_scatter.py; until the chain's NonZero is met, when its mask may turn out known)
        self.masked_scatters: dict[str, MaskedScatter] = {}
        # jax2onnx's bounds-checked window scatters, by their NonZero's and ScatterND's outputs (row_scatter.py)
        self.row_scatters: dict[str, RowScatter] = {}
        # the row count N of those window scatters whose NonZero runs as arange(N), by the ScatterND's output
        self.rows_taken: dict[str, int] = {}
        # jnp.unique(x, size=n) chains (sized_unique.py), by each value of the chain and the Gather's output
        self.sized_uniques: dict[str, SizedUnique] = {}
        # values of those chains whose code nothing reads, once the last Reshape (the ScatterND) reads
        # around them
        self.bypassed_values: set[str] = set()
        # values the node being emitted reads besides its inputs (NodeContext.value)
        self.extra_reads: list[str] = []
        # the nodes of this graph that read each value, for values nothing else reads (note_readers)
        self.readers: dict[str, tuple[onnx.NodeProto, ...]] = {}
        # the node computing each value of this graph and of the enclosing ones (note_readers)
        self.producers: dict[str, onnx.NodeProto] = {}

    @property
    def label(self) -> str:
        return self.module.label

    # ---- lookups used by NodeContext ----------------------------------------------------
    def expr_of(self, onnx_name: str) -> str:
        """The expression of a value on ONNX's axes (a transpose of it when it is held channels-last)."""
        return self.layout.nchw_expr(onnx_name, self._ident(onnx_name))

    def nhwc_expr_of(self, onnx_name: str) -> str:
        """The expression of a value channels-last, for a node that runs so (layout.py)."""
        return self.layout.nhwc_expr(onnx_name, self._ident(onnx_name), self)

    def _ident(self, onnx_name: str) -> str:
        name = self.scope.lookup(onnx_name)
        if name is None:
            raise OnnxModelError(f"{self.label}: the value {onnx_name!r} is used before it is defined")
        return name

    def static_of(self, onnx_name: str) -> np.ndarray | None:
        return self.static.get(onnx_name)

    def phase_of(self, onnx_name: str) -> Phase | None:
        return self.phases.get(onnx_name)

    def reshaped_add_of(self, onnx_name: str) -> ReshapedAdd | None:
        return self.reshaped_adds.get(onnx_name)

    def take_reshaped_add(self, onnx_name: str) -> None:
        chain = self.reshaped_adds[onnx_name]
        self.bypassed_values.update((chain.reshaped, chain.summed))

    def masked_scatter_of(self, onnx_name: str) -> MaskedScatter | None:
        """The masked-scatter chain whose ScatterND writes ``onnx_name``, when its other nodes wrote no code."""
        chain = self.masked_scatters.get(onnx_name)
        if chain is None or chain.output != onnx_name or chain.nonzero not in self.bypassed_values:
            return None
        return chain

    def find_scatter_chains(self, nodes: list[onnx.NodeProto], outputs: list[str]) -> None:
        """Note this graph's masked scatters (masked_scatter.py) and window scatters (row_scatter.py), before
        its nodes are emitted (``self.static`` holds its initializers)."""
        self.masked_scatters = find_masked_scatters(nodes, outputs, self.static)
        self.sized_uniques = find_sized_uniques(nodes, outputs)
        masked = {chain.nonzero for chain in self.masked_scatters.values()}
        self.row_scatters = {name: chain for name, chain in find_row_scatters(nodes, outputs, self.static).items()
                             if chain.nonzero not in masked and chain.nonzero not in self.module.refused_rows}

    def row_scatter_of(self, onnx_name: str) -> tuple[RowScatter, int] | None:
        """The window scatter whose ScatterND writes ``onnx_name`` and its row count, when its NonZero ran
        as ``arange(rows)``."""
        rows = self.rows_taken.get(onnx_name)
        return None if rows is None else (self.row_scatters[onnx_name], rows)

    def _runs_rows_static(self, node: onnx.NodeProto) -> bool:
        """For a window scatter's NonZero (row_scatter.py) whose mask is not known now and has a fixed
        length N: bind its output to ``arange(N)`` (every row) and note the chain taken."""
        chain = self.row_scatters.get(node.output[0]) if node.output and node.output[0] else None
        if chain is None or chain.nonzero != node.output[0] or chain.keep in self.static:
            return False
        shape = self.shape_of(chain.keep)
        if shape is None or len(shape) != 1 or shape[0] is None:
            return False
        self.bind_value(node.output[0], np.arange(shape[0], dtype=np.int64).reshape(1, shape[0]))
        self.rows_taken[chain.output] = shape[0]
        return True

    def sized_unique_of(self, onnx_name: str) -> SizedUnique | None:
        """The sized-unique chain whose Gather writes ``onnx_name``, when its other nodes wrote no code."""
        chain = self.sized_uniques.get(onnx_name)
        if chain is None or chain.output != onnx_name or chain.unique not in self.bypassed_values:
            return None
        return chain

    def _skips_chain(self, node: onnx.NodeProto) -> bool:
        """Whether ``node`` belongs to a masked scatter (masked_scatter.py) or a sized unique (sized_unique.py)
        whose last node reads around the others: decided at the chain's first node (NonZero, Unique), which
        keeps its code when the value it reads is known now and not a weight (the chain then folds to
        constants)."""
        name = next((n for n in node.output if n), None)
        if name is None:
            return False
        for chains in (self.masked_scatters, self.sized_uniques):
            chain = chains.get(name)
            if chain is None or name == chain.output:
                continue
            if name == chain.first:
                if chain.reads in self.static and chain.reads not in self.trainable:
                    for key in (*chain.skipped, chain.output):
                        del chains[key]
                    return False
                self.bypassed_values.update(chain.skipped)
            return True
        return False

    def note_phase(self, output: str, source: str, starts: list[int], ends: list[int],
                   axes: list[int] | None, steps: list[int] | None) -> None:
        """Record a Slice's ``output`` as a strided phase of ``source`` when it is one (phases.py, for Concat)."""
        phase = phase_of_slice(source, self.phases.get(source), starts, ends, axes, steps, self.shape_of(source))
        if phase is not None and output:
            self.phases[output] = phase

    def value_expr(self, onnx_name: str) -> str:
        """``expr_of`` for a value the node reads that is not one of its inputs (recorded as read)."""
        self.extra_reads.append(onnx_name)
        return self.expr_of(onnx_name)

    def shape_of(self, onnx_name: str) -> tuple[int | None, ...] | None:
        """The value's shape with its fixed dims (``None`` for symbolic or unknown ones), if known."""
        found = self.module.types.get(onnx_name)
        if found is None or not found.is_tensor or found.shape is None:
            return None
        return tuple(d if isinstance(d, int) else None for d in found.shape)

    def dtype_of(self, onnx_name: str) -> np.dtype | None:
        found = self.module.types.get(onnx_name)
        return None if found is None or not found.is_tensor else found.dtype

    def elem_type_of(self, onnx_name: str) -> int | None:
        found = self.module.types.get(onnx_name)
        return None if found is None or not found.is_tensor else found.elem_type

    def kind_of(self, onnx_name: str) -> str | None:
        """``"tensor"``, ``"sequence"``, ``"optional"``... when the model or shape inference says."""
        found = self.module.types.get(onnx_name)
        return None if found is None else found.kind

    def use_helper(self, fn: Callable) -> str:
        return self.module.use_helper(fn)

    def readers_of(self, onnx_name: str) -> tuple[onnx.NodeProto, ...] | None:
        """The nodes of this graph that read ``onnx_name``; ``None`` if a graph output or a subgraph reads
        it too (or it is not a value of this graph's nodes)."""
        return self.readers.get(onnx_name)

    def producer_of(self, onnx_name: str) -> onnx.NodeProto | None:
        """The node of this graph or an enclosing one that computes ``onnx_name`` (None for inputs and
        initializers)."""
        return self.producers.get(onnx_name)

    def note_readers(self, nodes: list[onnx.NodeProto], outputs: list[str]) -> None:
        """Record which of ``nodes`` read each value (``readers_of``) and compute which (``producer_of``),
        before they are emitted."""
        self.producers.update((name, node) for node in nodes for name in node.output if name)
        readers: dict[str, list[onnx.NodeProto]] = {}
        unknown = set(outputs)
        for node in nodes:
            for name in dict.fromkeys(n for n in node.input if n):
                readers.setdefault(name, []).append(node)
            unknown.update(subgraph_free_names(node))
        self.readers = {name: tuple(found) for name, found in readers.items() if name not in unknown}

    def tensor_to_array(self, tensor: onnx.TensorProto) -> np.ndarray:
        return tensor_array(tensor, self.label)

    # ---- values -------------------------------------------------------------------------
    def bind_value(self, onnx_name: str, value: np.ndarray, *, param_key: str | None = None) -> None:
        """Define ``onnx_name`` as a known value: a literal if small, else an entry of params.

        A params entry is used in place (``params['conv1.weight']`` in the call that reads it)
        rather than unpacked into a local first: the reader sees the weight's ONNX name where it
        is used, and a CNN's source is not half assignments (which also halves parse time).
        """
        if value.size <= INLINE_MAX_ELEMENTS and param_key is None:
            ident = self.scope.assign(onnx_name)
            statement = f"{ident} = {literal(value)}"
            self.writer.line(statement)
            self.module.literal_statements.add(statement)
            self.concrete.add(onnx_name)
        else:
            key = param_key if param_key is not None else onnx_name
            self.module.params[key] = value
            self.scope.bind(onnx_name, f"params[{literal(key)}]")
        self.static[onnx_name] = value

    def add_param(self, key: str, value: np.ndarray) -> None:
        """Store a value computed at generation time in the ``params`` of the generated function."""
        self.module.params[key] = value

    def constant_expr(self, onnx_name: str, value: np.ndarray) -> str:
        """Expression for a constant output (literal if small, else a params entry); marks it static."""
        self.static[onnx_name] = value
        if value.size <= INLINE_MAX_ELEMENTS:
            self.concrete.add(onnx_name)
            return literal(value)
        self.module.params[onnx_name] = value
        return f"params[{literal(onnx_name)}]"

    def load_initializers(self, graph: onnx.GraphProto) -> None:
        for tensor in graph.initializer:
            value = self.tensor_to_array(tensor)
            if value.dtype.kind in "iub" and value.size <= INLINE_MAX_ELEMENTS:
                self.module.params[tensor.name] = value
                self.bind_value(tensor.name, value)
            else:
                self.bind_value(tensor.name, value, param_key=tensor.name)
                if value.dtype.kind not in "iub":
                    self.trainable.add(tensor.name)
        if graph.sparse_initializer:
            raise UnsupportedOnnxOpError(f"{self.label}: sparse initializers are not supported")

    def output_expr(self, onnx_name: str) -> str:
        ident = self.expr_of(onnx_name)
        if onnx_name in self.static:
            return f"jnp.asarray({ident})"
        return ident

    # ---- nodes --------------------------------------------------------------------------
    def emit_nodes(self, nodes: list[onnx.NodeProto]) -> bool:
        """Write every node's code; True when one of them cannot run under jax.jit."""
        barriers = [self.emit_node(node, index) for index, node in enumerate(nodes)]
        return any(barriers)

    def collect_nodes(self, nodes: list[onnx.NodeProto]) -> list[NodeCode]:
        """Emit every node into its own writer (the top-level graph, before segments.py groups them)."""
        items = []
        outer = self.writer
        try:
            for index, node in enumerate(nodes):
                self.writer = SourceWriter()
                self.host_helpers = set()
                barrier = self.emit_node(node, index)
                reads = tuple(dict.fromkeys(
                    [n for n in node.input if n and n not in self.bypassed_values]
                    + sorted(subgraph_free_names(node)) + self.extra_reads))
                # host forms serve shape arithmetic on concrete values and subgraphs run on the host
                host = barrier or all(name in self.concrete for name in node.output if name)
                helpers = tuple(sorted(self.host_helpers, key=lambda fn: fn.__name__)) if host else ()
                items.append(NodeCode(node, self.writer, reads, barrier, helpers))
        finally:
            self.writer = outer
        return items

    def emit_node(self, node: onnx.NodeProto, index: int) -> bool:
        """Write the node's code; True when it cannot run under jax.jit (its shapes depend on values)."""
        domain = node.domain if node.domain != "ai.onnx" else ""
        opset = self.module.opsets.get(domain, self.module.opsets[""])
        self.extra_reads = []
        if self._skips_chain(node) or self._runs_rows_static(node):
            return False
        folded = self._try_fold(node, opset)
        if folded is not None:
            for name, value in zip(node.output, folded):
                if name:
                    self.bind_value(name, value)
            return False
        # output shapes whole-model inference left open, now that folding knows more of the inputs
        refine_output_types(
            node, self.module.types, self.static, list(self.module.model.opset_import), self.module.model.ir_version, opset
        )
        spec = registry.resolve(domain, node.op_type, opset)
        plan: LayoutPlan | None = self.layout.plan(node, opset, self)
        ctx = NodeContext(self, node, index, opset, plan)
        self.nested_barrier = False  # set by emit_subgraph
        try:
            result = spec.fn(ctx)
        except WorkbenchError:
            raise
        except Exception as e:  # an emitter bug or an attribute combination it cannot handle
            raise OnnxModelError(
                f"{self.label}: {describe_node(node, index)}: code generation failed: {type(e).__name__}: {e}"
            ) from e
        present = [n for n in node.input if n]
        barrier = (spec.value_shaped and any(n not in self.concrete for n in present)) or any(
            node.input[i] not in self.concrete for i in ctx.host_inputs
        ) or self.nested_barrier
        if self._emits_trace_time_constant(node):
            # Shape arithmetic on concrete values (e.g. Concat(Shape(x)[0:1], [16]) -> Reshape):
            # evaluate it while tracing so the result stays a concrete array under jax.jit and
            # Reshape/Expand/Range get static Python ints instead of tracers.
            with self.writer.block("with jax.ensure_compile_time_eval():"):
                self._write_result(node, result, self._host_form(node, result))
            self.concrete.update(name for name in node.output if name)
            return False
        self._write_result(node, result, self._host_form(node, result) if self.in_subgraph else None)
        if plan is not None and plan.holds_outputs:
            self.layout.held.update(name for name in node.output if name)
        return barrier

    def _host_form(self, node: onnx.NodeProto, result) -> str | None:
        """The node's expression as numpy calls where host_shapes.py has that form: single-output nodes
        whose emitter wrote one call (context.Call) and whose inputs are integers, booleans or
        float32/float64; notes the helpers it names. Only the code of a model with value-dependent
        nodes uses it (segments.py), for what runs on concrete arrays."""
        expression = result if isinstance(result, str) else (result[0] if len(result) == 1 else None)
        if len(node.output) != 1 or not node.output[0] or not isinstance(expression, Call):
            return None
        dtypes = [self.dtype_of(name) for name in node.input if name]
        if not all(d is not None and (d.kind in "iub" or d in (np.float32, np.float64)) for d in dtypes):
            return None
        host = host_form(expression, floats=any(d.kind == "f" for d in dtypes))
        if host is None:
            return None
        self.host_helpers.update(host[1])
        return host[0]

    def _emits_trace_time_constant(self, node: onnx.NodeProto) -> bool:
        if node.domain not in ("", "ai.onnx"):
            return False
        if node.op_type in SHAPE_OPS:
            self.concrete.update(name for name in node.output if name)
            return False  # already numpy (np.array(jnp.shape(x))), no block needed
        present = [n for n in node.input if n]
        return node.op_type in FOLDABLE and bool(present) and all(n in self.concrete for n in present)

    def _write_result(self, node: onnx.NodeProto, result, host: str | None = None) -> None:
        """The node's line(s); ``host``: the expression of its single output in its host form."""
        outputs = list(node.output)
        if host is not None:  # a single output (_host_form)
            target = self._target(outputs[0])
            expression = result if isinstance(result, str) else result[0]
            self.writer.line(f"{target} = {expression}", host=f"{target} = {host}")
            return
        if isinstance(result, str):
            if len(outputs) == 1:
                self.writer.line(f"{self._target(outputs[0])} = {result}")
            else:
                targets = ", ".join(self._target(o) for o in outputs)
                self.writer.line(f"{targets} = {result}")
            return
        exprs = list(result)
        for i, name in enumerate(outputs):
            if not name:
                continue
            if i >= len(exprs) or exprs[i] is None:
                raise OnnxModelError(f"{self.label}: the emitter of {node.op_type} did not produce output {i}")
            self.writer.line(f"{self._target(name)} = {exprs[i]}")

    def _target(self, onnx_name: str) -> str:
        return self.scope.assign(onnx_name) if onnx_name else "_"

    def _try_fold(self, node: onnx.NodeProto, opset: int) -> list[np.ndarray] | None:
        """Evaluate the node now when its inputs are known (small, structural values only)."""
        if node.domain not in ("", "ai.onnx") or node.op_type not in FOLDABLE:
            return None
        if node.op_type in ("Shape", "Size"):
            known = self.static.get(node.input[0])
            shape = tuple(known.shape) if known is not None else self.shape_of(node.input[0])
            if shape is None or any(d is None for d in shape):
                return None
            if node.op_type == "Size":
                return [np.array(int(np.prod(shape, dtype=np.int64)), dtype=np.int64)]
            attrs = {a.name: a.i for a in node.attribute}
            start, end = attrs.get("start", 0), attrs.get("end", len(shape))
            return [np.array(shape[slice(start, end)], dtype=np.int64)]
        present = [n for n in node.input if n]
        if not present or any(n not in self.static or n in self.trainable for n in present):
            return None
        if any(self.static[n].size > FOLD_MAX_ELEMENTS for n in present):
            return None
        # the output's size is bounded from the inputs before evaluating: Expand, Range, Tile... make
        # large outputs from small inputs (the generator must not allocate what the model only declares)
        bound = output_elements(node.op_type, [self.static[n] for n in present])
        if bound is None or bound > FOLD_MAX_ELEMENTS:
            return None
        inputs = [self.static[n] if n else None for n in node.input]
        attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        arrays = evaluate_node(node.op_type, inputs, attributes, opset, n_outputs=len(node.output))
        if arrays is None:
            return None  # not evaluable now: the node is emitted as code
        if any(a.size > FOLD_MAX_ELEMENTS or a.dtype == object for a in arrays):
            return None
        return arrays

    # ---- subgraphs ----------------------------------------------------------------------
    def emit_subgraph(self, graph: onnx.GraphProto, hint: str) -> str:
        """Write ``def name(*graph inputs): ...; return (outputs,)`` and return the name."""
        fn_name = self.scope.fresh(hint)
        scope = self.scope.child()
        inner = SourceWriter()
        child = GraphEmitter(
            self.module, scope, inner, dict(self.static), set(self.trainable), set(self.concrete),
            self.layout.child(),
        )
        child.host_helpers, child.in_subgraph = self.host_helpers, True
        child.producers = dict(self.producers)
        args = [scope.assign(i.name) for i in graph.input]
        child.load_initializers(graph)
        outer = frozenset(self._visible_names())
        nodes = topological_order(graph, self.label, outer)
        child.find_scatter_chains(nodes, [o.name for o in graph.output])
        child.note_readers(nodes, [o.name for o in graph.output])
        if child.emit_nodes(nodes):
            self.nested_barrier = True
        outs = [child.output_expr(o.name) for o in graph.output]
        inner.line(f"return ({', '.join(outs)},)" if outs else "return ()")
        with self.writer.block(f"def {fn_name}({', '.join(args)}):"):
            self.writer.extend(inner)
        return fn_name

    def prepare_weight(self, onnx_name: str, axes: tuple[int, ...]) -> bool:
        """Whether ``onnx_name`` is read transposed by ``axes`` (prepare() does it); records it."""
        rank = self.module.weight_candidates.get(onnx_name)
        if rank != len(axes):
            return False
        self.module.weight_layouts[onnx_name] = tuple(axes)
        return True

    def _visible_names(self) -> set[str]:
        return set(self.scope._by_onnx)  # noqa: SLF001 - same package, read-only


def _reuse_repeated_nonzero(nodes: list[onnx.NodeProto],
                            chained: frozenset[str] = frozenset()) -> list[onnx.NodeProto]:
    """``nodes`` with each NonZero of a value an earlier NonZero already read turned into an Identity of
    that one's output (same name and output). torchvision's detectors ask twice for the same mask's
    positions (``torch.where(mask)`` and ``mask.nonzero()``: SSDlite per class, RetinaNet per level); a
    NonZero of a traced value runs on the host between jitted parts (segments.py), so the repeat split a
    part in two: one more compile per shape and one more host step and part call on every call. A NonZero
    whose output is in ``chained`` (a masked scatter's, masked_scatter.py: it writes no code) is kept."""
    first: dict[str, str] = {}
    kept = []
    for node in nodes:
        if (node.op_type == "NonZero" and node.domain in ("", "ai.onnx") and node.output and node.output[0]
                and node.output[0] not in chained):
            earlier = first.setdefault(node.input[0], node.output[0])
            if earlier != node.output[0]:
                kept.append(onnx.helper.make_node("Identity", [earlier], [node.output[0]], name=node.name))
                continue
        kept.append(node)
    return kept


def _single_use_weights(graph: onnx.GraphProto) -> dict[str, int]:
    """Float initializers of the main graph that one Conv (4-D) or Gemm (2-D) reads as its weight
    (input 1) and nothing else reads (no other node, subgraph or graph output), with their ranks:
    the code may take them in another layout."""
    uses: Counter[str] = Counter()
    weights: dict[str, int] = {}
    shadowed: set[str] = set()

    def visit(g: onnx.GraphProto, top: bool) -> None:
        if not top:
            shadowed.update(t.name for t in g.initializer)
            shadowed.update(i.name for i in g.input)
        uses.update(o.name for o in g.output)
        for node in g.node:
            uses.update(n for n in node.input if n)
            rank = _WEIGHT_RANKS.get(node.op_type) if node.domain in ("", "ai.onnx") else None
            if rank is not None and len(node.input) > 1:
                weights[node.input[1]] = rank
            for attr in node.attribute:
                for sub in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs):
                    visit(sub, False)

    visit(graph, True)
    return {
        t.name: len(t.dims) for t in graph.initializer
        if weights.get(t.name) == len(t.dims) and uses[t.name] == 1 and t.name not in shadowed
        and t.data_type in _FLOAT_TYPES
    }


_WEIGHT_RANKS = {"Conv": 4, "Gemm": 2}
_FLOAT_TYPES = frozenset({onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16,
                          onnx.TensorProto.DOUBLE})
