"""Models whose shapes depend on values: jitted parts between host steps.

A detection model reads values to decide shapes (``NonZero`` of a score mask,
``NonMaxSuppression``, a ``Reshape`` whose target comes from a count...).
``jax.jit`` cannot trace such a node, and running the whole model op by op
instead means one XLA compilation per operation on the first call (tens of
seconds for a detector where onnxruntime needs a fraction of one). So when a
model has such nodes ("barriers"), the generator groups the nodes between
them into module-level functions ``<forward>_part_N(params, *values)``, and
``forward`` calls each through the runtime helper ``_segment``: compiled once
by ``jax.jit`` per input shapes, while the barriers run in between on
concrete arrays (on the host, with numpy, where that is faster).

What a part receives: the values it reads that an earlier part or barrier
made, as traced arguments; values known while tracing (shapes, shape
arithmetic: the generator's ``concrete`` set) as static arguments, so they
stay concrete inside; small literals are written again inside the part. It
returns what later nodes or the graph outputs read.

Parts whose code is the same up to the names it binds (a detector's per-class steps) share one
function, so ``jax.jit``'s cache compiles it once per input shapes rather than once per part. Parts
that differ only in integer scalars (a class index) share one function taking those integers as traced
arguments (``_segment_shared``), or run their own code where such an integer must stay concrete.

What runs on concrete arrays (shape arithmetic inside a part, the subgraphs of a barrier) is written
as numpy calls where the node has that form (host_shapes.py): eager JAX would compile each operation.

Under an outer transformation (``jax.jit``, ``jax.grad``, ``jax.vmap``)
``_segment`` calls the part inline, so the generated function composes as
before (and ``jax.jit(forward)`` still fails at the first barrier, naming it).
"""

from __future__ import annotations

import io
import re
import symtable
import tokenize
from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np
import onnx

from workbench.onnx_to_jax.helpers import _segment, _segment_shared
from workbench.onnx_to_jax.literals import literal
from workbench.onnx_to_jax.names import NameScope, sanitize
from workbench.onnx_to_jax.writer import SourceWriter


class GeneratedGraph(Protocol):
    """What the assembler reads of the graph being generated (the generator's ``GraphEmitter``)."""

    scope: NameScope
    static: dict[str, np.ndarray]  # values known at generation time
    concrete: set[str]  # values concrete while jax.jit traces

    def use_helper(self, fn: Callable) -> str: ...


@dataclass
class NodeCode:
    """The code one top-level node emitted, with what it reads and whether it must run unjitted."""

    node: onnx.NodeProto
    code: SourceWriter
    reads: tuple[str, ...]  # ONNX names: present inputs and the free names of its subgraphs
    barrier: bool
    # where it runs on concrete arrays (shape arithmetic, the subgraphs of a barrier), the helpers its
    # lines' host forms name (host_shapes.py); a model with value-dependent nodes runs those forms, so no
    # XLA compile per operation. Empty: its code as written.
    host_helpers: tuple[Callable, ...] = ()

    @property
    def writes(self) -> tuple[str, ...]:
        return tuple(name for name in self.node.output if name)


@dataclass
class _Group:
    barrier: bool
    items: list[NodeCode] = field(default_factory=list)


class SegmentAssembler:
    """Turns the per-node code of the top-level graph into parts and the body of ``forward``."""

    def __init__(self, graph: GeneratedGraph, function_name: str):
        self.graph = graph
        self.function_name = function_name
        # part code with its own names numbered (see _canonical) -> the function written for it
        self._written: dict[str, str] = {}
        # the same with its integer scalars blanked -> (the first such part's scalars, the positions that
        # differed in a later one and the function taking those as arguments, once written)
        self._shared: dict[str, tuple[list[str], tuple[int, ...] | None, str | None]] = {}

    # ---- what kind of value a name is -----------------------------------------------------
    def _identifier(self, name: str) -> str | None:
        """The identifier bound to ``name``, or None for expressions such as ``params['w']``."""
        expr = self.graph.scope.lookup(name)
        return expr if expr is not None and expr.isidentifier() else None

    def _is_literal(self, name: str) -> bool:
        return name in self.graph.static and name in self.graph.concrete

    def _literal_line(self, name: str) -> str:
        return f"{self._identifier(name)} = {literal(self.graph.static[name])}"

    def _is_literal_node(self, item: NodeCode) -> bool:
        return bool(item.writes) and all(self._is_literal(n) for n in item.writes)

    def _is_trace_constant(self, item: NodeCode) -> bool:
        return all(n in self.graph.concrete for n in item.writes)

    # ---- assembly -------------------------------------------------------------------------
    def _groups(self, items: list[NodeCode]) -> list[_Group]:
        groups: list[_Group] = []
        for item in items:
            if self._is_literal_node(item):
                continue  # written again wherever it is read
            if not groups or groups[-1].barrier or item.barrier:
                groups.append(_Group(item.barrier))
            groups[-1].items.append(item)
        # a run of shape arithmetic alone gains nothing from jax.jit: it stays in forward's body
        for group in groups:
            if not group.barrier and all(self._is_trace_constant(i) for i in group.items):
                group.barrier = True
        return groups

    def assemble(self, items: list[NodeCode], outputs: list[str], parts: SourceWriter, body: SourceWriter) -> int:
        """Write the part functions into ``parts`` and forward's body (up to the return) into ``body``.

        Returns the number of parts.
        """
        groups = self._groups(items)
        # for every group, the names read by later groups or by the graph outputs
        read_later: list[set[str]] = [set() for _ in groups]
        pending = set(outputs)
        for k in range(len(groups) - 1, -1, -1):
            read_later[k] = set(pending)
            for item in groups[k].items:
                pending.update(item.reads)
        top_reads = set(outputs).union(*(item.reads for group in groups if group.barrier for item in group.items))
        for name in sorted(top_reads):
            if self._is_literal(name) and self._identifier(name) is not None:
                body.line(self._literal_line(name))
        n_parts = 0
        for k, group in enumerate(groups):
            if group.barrier:
                for item in group.items:
                    body.extend(self._code(item))
                continue
            n_parts += 1
            self._write_part(group, read_later[k], n_parts, parts, body)
        return n_parts

    def _code(self, item: NodeCode) -> SourceWriter:
        """The node's code, its lines in their host forms where it runs on concrete arrays (host_shapes.py)."""
        if not item.host_helpers:
            return item.code
        for helper in item.host_helpers:
            self.graph.use_helper(helper)
        return item.code.with_host_forms()

    def _write_part(self, group: _Group, needed_after: set[str], number: int, parts: SourceWriter,
                    body: SourceWriter) -> None:
        defined: set[str] = set()
        reads: list[str] = []
        for item in group.items:
            for name in item.reads:
                if name not in defined and name not in reads:
                    reads.append(name)
            defined.update(item.writes)
        literals, dynamic, static = [], [], []
        for name in reads:
            ident = self._identifier(name)
            if ident is None:
                continue  # params['...'] entries: the part receives params
            if self._is_literal(name):
                literals.append(name)
            elif name in self.graph.concrete:
                static.append(ident)
            else:
                dynamic.append(ident)
        returned = [self._identifier(n) for item in group.items for n in item.writes if n in needed_after]
        returned = [r for r in returned if r is not None]
        first = group.items[0].node
        last = group.items[-1].node
        code = SourceWriter()
        for name in literals:
            code.line(self._literal_line(name))
        for item in group.items:
            code.extend(self._code(item))
        code.line(f"return ({', '.join(returned)}{',' if len(returned) == 1 else ''})")
        arguments = ["params", *dynamic, *static]
        source = code.source()
        key = _canonical(arguments, source)
        fn_name = self._written.get(key)
        label = f"{_label(first)} to {_label(last)}"
        if fn_name is not None:
            # The same code as an earlier part up to its names (a detector's per-class steps): calling
            # that function lets jax.jit's cache serve every call with the same shapes, where a
            # function per part compiled each (SSDlite: 89 of its 182 parts).
            body.line(f"# nodes {label}: the code of {fn_name}")
            shared = None
        else:
            fn_name = self.graph.scope.fresh(f"_{self.function_name}_part_{number}")
            self._written[key] = fn_name
            doc = f"Nodes {label}: {len(group.items)} node(s), jitted as one part."
            self._write_function(parts, fn_name, arguments, doc, source)
            shared = self._shared_call(source, dynamic, static, label, fn_name, parts)
        call = shared or f"{self.graph.use_helper(_segment)}({fn_name}, params, {_tuple(dynamic)}, {_tuple(static)})"
        if returned:
            body.line(f"{', '.join(returned)}, = {call}" if len(returned) == 1 else f"{', '.join(returned)} = {call}")
        else:
            body.line(call)


    def _write_function(self, parts: SourceWriter, name: str, arguments: list[str], doc: str, source: str) -> None:
        parts.line("")
        parts.line("")
        with parts.block(f"def {name}({', '.join(arguments)}):"):
            parts.line(f'"""{doc}"""')
            for text in source.splitlines():
                parts.line(text)

    def _shared_call(self, source: str, dynamic: list[str], static: list[str], label: str, specialized: str,
                     parts: SourceWriter) -> str | None:
        """A call of the function shared by parts that differ only in integer scalars (a detector's class
        index), or None. The scalars that differ become traced arguments of that function, so one
        compilation serves every such part of the same shapes; where a scalar must stay concrete (a shape,
        an axis) tracing fails and ``_segment_shared`` calls the part's own function instead."""
        scalars = _INT_SCALAR.findall(source)
        if not scalars:
            return None
        blanked = _INT_SCALAR.sub("_scalar", source)
        key = _canonical(["params", *dynamic, *static], blanked)
        known = self._shared.get(key)
        if known is None:
            self._shared[key] = (scalars, None, None)
            return None
        first, positions, shared = known
        differing = tuple(i for i, (a, b) in enumerate(zip(first, scalars)) if a != b)
        if positions is None:
            positions = differing
            names = [f"scalar_{i}" for i in range(len(positions))]
            counter = iter(range(len(scalars)))
            lifted = _INT_SCALAR.sub(
                lambda m: names[positions.index(i)] if (i := next(counter)) in positions else m.group(0), source)
            shared = self.graph.scope.fresh(f"{specialized}_shared")
            self._write_function(parts, shared, ["params", *dynamic, *names, *static],
                                 f"Nodes {label} with the integers that differ between such parts as arguments.", lifted)
            self._shared[key] = (first, positions, shared)
        elif not set(differing) <= set(positions):
            return None
        values = [scalars[i] for i in positions]
        return (f"{self.graph.use_helper(_segment_shared)}({shared}, {specialized}, params, {_tuple(dynamic)}, "
                f"{_tuple(values)}, {_tuple(static)})")


# one integer as literals.literal writes it, 0-d or in a 1-element array (a Gather's index, a fill value,
# an axis, a count)
_INT_SCALAR = re.compile(r"np\.array\((?:-?\d+|\[-?\d+\]), dtype=jnp\.int(?:32|64)\)")


def _canonical(arguments: list[str], source: str) -> str:
    """``source`` with the names it binds numbered in order of appearance: two parts are the same code
    exactly when these texts are equal (literals, ops and helpers compared as written).

    Identifiers are unique in the generated module, so the names a part binds (its arguments, assignment
    targets, nested functions) are the ones Python's symbol table lists as local to it.
    """
    header = f"def _part({', '.join(arguments)}):\n"
    text = header + "".join(f"    {line}\n" for line in source.splitlines())
    table = symtable.symtable(text, "<part>", "exec").get_children()[0]
    bound: set[str] = set()
    tables = [table]
    while tables:
        scope = tables.pop()
        bound.update(symbol.get_name() for symbol in scope.get_symbols() if symbol.is_assigned() or symbol.is_parameter())
        tables.extend(scope.get_children())
    numbers: dict[str, str] = {}
    pieces = []
    previous = None
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        value = token.string
        if token.type == tokenize.NAME and value in bound and not (previous is not None and previous.string == "."):
            value = numbers.setdefault(value, f"v{len(numbers)}")
        pieces.append(value)
        previous = token
    return " ".join(pieces)


def _tuple(names: list[str]) -> str:
    return f"({', '.join(names)}{',' if len(names) == 1 else ''})"


def _label(node: onnx.NodeProto) -> str:
    return sanitize(node.name or node.op_type)  # model text reaches code only sanitized
