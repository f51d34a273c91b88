"""Repeated blocks (transformer layers, the bottlenecks of a ResNet stage) as one body run by ``lax.scan``.

XLA CPU compiles every kernel of a program on its own, so the first ``jax.jit`` of a 12-layer
encoder compiles the same layer's kernels 12 times. When the generated statements of a run of
blocks are the same code up to the names they bind and the weights they read (same ops, same
attributes, same shapes), the generator writes the statements of the first block once, as a
function, and applies it with ``lax.scan`` over the weights of every block stacked along a new
leading axis: XLA compiles one block.

What a block may read, for the scan to compute what the straight code computes:

- values of its own block (the same statement positions in every block);
- values made before the run, the same ones in every block (a mask, a shared constant): read as
  they are, by the closure;
- the *carry*: values that block ``k`` reads from block ``k - 1`` at the same positions in every
  block, and the first block reads from before the run (the hidden state of a transformer);
- weights (``params[...]`` entries): one key per block (stacked) or the same key in every block.

Carried values must keep their type (dtype and shape, known from the model), and must not be values
the generator keeps concrete while tracing (shapes: a scan carries traced arrays). Values of a block
read after the run (the last block's output, every value when the divergence locator exposes them)
come out of the scan stacked and are taken apart after it. Anything else (a block reading two
blocks back, a different attribute, shape or weight shape) leaves the run as straight code.

This works on the code the emitters wrote, one small source per node (``segments.NodeCode``), so
every op and layout decision of the straight code is kept as it is.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np

from workbench.onnx_io.describe import ValueDescription
from workbench.onnx_to_jax.helpers import _stack_weights
from workbench.onnx_to_jax.literals import literal
from workbench.onnx_to_jax.names import NameScope, sanitize
from workbench.onnx_to_jax.segments import NodeCode
from workbench.onnx_to_jax.writer import SourceWriter

# A block with fewer nodes that compute is left straight: a scan ends XLA's fusions at the block
# boundary, which costs more than it saves on a few ops (Swin-T has dozens of 6-9 node repeats in its
# shape arithmetic and window partitions; its transformer blocks have 195 nodes).
MIN_BLOCK_NODES = 12
# candidate runs checked at most per graph (the checks are linear in the run's size)
MAX_CANDIDATES = 400

_TOKEN = re.compile(
    r"""params\[(?P<key>'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")\]"""
    r"""|(?P<string>'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")"""
    r"""|(?<![\w.])(?P<name>[A-Za-z_]\w*)"""
)
_ALIAS = re.compile(r"""([A-Za-z_]\w*) = params\[('(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")\]""")
_TARGETS = re.compile(r"^\s*([A-Za-z_][\w ,]*?)\s*=(?!=)", re.MULTILINE)


class GeneratedGraph(Protocol):
    """What the search reads of the graph being generated (the generator's ``GraphEmitter``)."""

    scope: NameScope
    concrete: set[str]

    def use_helper(self, fn: Callable) -> str: ...


@dataclass
class _Node:
    """One node's code, abstracted: what it binds, which values and weights it reads, in order."""

    signature: str
    bound: list[str]  # identifiers it assigns, in order
    refs: list[str]  # identifiers of other nodes' values it reads, one per occurrence
    keys: list[str]  # params keys it reads, one per occurrence
    code: str
    scannable: bool


@dataclass
class Run:
    """``count`` consecutive blocks of ``length`` nodes from node ``start``, as one scanned body."""

    start: int
    length: int
    count: int
    carries: list[tuple[int, str]] = field(default_factory=list)  # (node offset, first block's ident)
    carry_init: list[str] = field(default_factory=list)  # the idents the first block reads
    stacked: list[tuple[str, ...]] = field(default_factory=list)  # one key per block, per weight slot
    outputs: list[tuple[int, int]] = field(default_factory=list)  # (offset, bound index) read after the run

    @property
    def end(self) -> int:
        return self.start + self.length * self.count


class RepeatFinder:
    """Finds the runs of repeated blocks among the top-level nodes and writes them as scans."""

    def __init__(self, graph: GeneratedGraph, items: list[NodeCode], types: dict[str, ValueDescription],
                 params: dict[str, np.ndarray], outputs: list[str], function_name: str):
        self.graph = graph
        self.items = items
        self.types = types
        self.params = params
        self.function_name = function_name
        # every identifier bound to a value (ONNX names -> identifiers; params entries are expressions)
        self.values = {v for v in graph.scope._by_onnx.values() if v.isidentifier()}  # noqa: SLF001 - same package
        # identifiers that only name a weight (``w = params['key']``: an Identity of an initializer, as
        # torch.onnx writes for weights it deduplicated): read as that weight
        self.aliases: dict[str, str] = {}
        for item in items:
            match = _ALIAS.fullmatch(item.code.source().strip())
            if match is not None:
                self.aliases[match.group(1)] = ast.literal_eval(match.group(2))
        self.nodes = [self._abstract(item) for item in items]
        self.defined_by: dict[str, int] = {}
        for index, node in enumerate(self.nodes):
            for name in node.bound:
                self.defined_by.setdefault(name, index)
        # identifier -> ONNX name, for the values' types (graph inputs included)
        self.onnx_of = {v: k for k, v in graph.scope._by_onnx.items() if v.isidentifier()}  # noqa: SLF001
        self.output_idents = {self.graph.scope.lookup(name) for name in outputs}
        self.rejected = ""  # why the last candidate checked is not a run (for debugging)

    # ---- abstraction of one node's code ---------------------------------------------------
    def _abstract(self, item: NodeCode) -> _Node:
        code = item.code.source()
        bound: list[str] = []
        for match in _TARGETS.finditer(code):
            for name in match.group(1).split(","):
                name = name.strip()
                if name.isidentifier() and name != "_" and name not in bound:
                    bound.append(name)
        # code with nested functions (a Loop's body, an If's branches) binds names this does not see
        scannable = "def " not in code and "lambda" not in code
        refs: list[str] = []
        keys: list[str] = []
        local: dict[str, str] = {}
        pieces: list[str] = []
        last = 0
        for match in _TOKEN.finditer(code):
            pieces.append(code[last:match.start()])
            last = match.end()
            alias = self.aliases.get(match.group("name") or "") if match.group("name") not in bound else None
            if match.group("key") is not None or alias is not None:
                key = alias if alias is not None else ast.literal_eval(match.group("key"))
                keys.append(key)
                value = self.params.get(key)
                shape = "?" if value is None else f"{value.dtype}{value.shape}"
                pieces.append(f"params[@{shape}]")
            elif match.group("name") is not None and match.group("name") in bound:
                pieces.append(local.setdefault(match.group("name"), f"@L{len(local)}"))
            elif match.group("name") is not None and self._is_value(match.group("name")):
                refs.append(match.group("name"))
                pieces.append("@R")
            else:
                pieces.append(match.group(0))
        pieces.append(code[last:])
        outputs = ";".join(self._type_text(name) for name in item.writes)
        return _Node("".join(pieces) + "|" + outputs, bound, refs, keys, code, scannable)

    def _is_value(self, name: str) -> bool:
        """Whether ``name`` is an identifier the generator bound to a value (not a module, helper or keyword)."""
        return name in self.values

    def _type_text(self, onnx_name: str) -> str:
        found = self.types.get(onnx_name)
        if found is None:
            return "?"
        # dims that shape inference named itself (unk__6) are unknown, not different, from block to block
        shape = None if found.shape is None else tuple(
            "?" if isinstance(d, str) and d.startswith("unk__") else d for d in found.shape)
        return f"{found.kind}:{found.elem_type}:{shape}"

    # ---- the search -----------------------------------------------------------------------
    def find(self) -> list[Run]:
        """Non-overlapping runs, the ones that save the most nodes first."""
        n = len(self.nodes)
        if n < 2 * MIN_BLOCK_NODES:
            return []
        ids: dict[str, int] = {}
        sig = np.array([ids.setdefault(node.signature, len(ids)) if node.scannable else -1 - i
                        for i, node in enumerate(self.nodes)], dtype=np.int64)
        candidates: list[tuple[int, int, int, int]] = []  # (saved nodes, start, length, slack)
        for length in range(MIN_BLOCK_NODES, n // 2 + 1):
            same = sig[:-length] == sig[length:]
            if not same.any():
                continue
            # runs of True of at least `length`: the nodes from a to a + r + length repeat with period `length`
            padded = np.concatenate([[False], same, [False]])
            edges = np.flatnonzero(padded[1:] != padded[:-1])
            for a, b in zip(edges[::2], edges[1::2]):
                span = int(b - a) + length
                count = span // length
                if count >= 2:
                    candidates.append(((count - 1) * length, int(a), length, span - count * length))
        candidates.sort(key=lambda c: (-c[0], c[1], c[2]))
        runs: list[Run] = []
        taken = np.zeros(n, dtype=bool)
        for saved, a, length, slack in candidates[:MAX_CANDIDATES]:
            span = length * (saved // length + 1) + slack
            for count in range(span // length, 1, -1):
                run = None
                for phase in range(span - count * length + 1):
                    start = a + phase
                    if taken[start:start + length * count].any():
                        continue
                    run = self._check(start, length, count)
                    if run is not None:
                        break
                if run is not None:
                    break
            if run is not None:
                taken[run.start:run.end] = True
                runs.append(run)
        return sorted(runs, key=lambda r: r.start)

    def _check(self, start: int, length: int, count: int) -> Run | None:
        """The run, if the blocks' dataflow is one a scan computes (see the module docstring)."""
        # nodes that compute (not a weight's alias, not a value known while tracing)
        code_nodes = sum(1 for j in range(length) if self._computes(start + j))
        if code_nodes < MIN_BLOCK_NODES:
            self.rejected = "too few nodes"
            return None
        end = start + length * count
        carry_init: dict[tuple[int, int], str] = {}
        invariant: set[str] = set()
        stacked: dict[tuple[str, ...], None] = {}
        for j in range(length):
            block_nodes = [self.nodes[start + k * length + j] for k in range(count)]
            for r in range(len(block_nodes[0].refs)):
                places = [self._place(node.refs[r], start + k * length, length, start)
                          for k, node in enumerate(block_nodes)]
                if all(p == places[0] and p[0] == "in" for p in places):
                    continue
                if all(p == places[0] and p[0] == "out" for p in places):
                    invariant.add(places[0][1])
                    continue
                first, rest = places[0], places[1:]
                if first[0] != "out" or any(p[0] != "prev" or p != rest[0] for p in rest):
                    self.rejected = "ref pattern"
                    return None
                slot = rest[0][1]
                if carry_init.setdefault(slot, first[1]) != first[1]:
                    self.rejected = "carry init conflict"
                    return None
            for p in range(len(block_nodes[0].keys)):
                keys = tuple(node.keys[p] for node in block_nodes)
                if len(set(keys)) == 1:
                    continue
                values = [self.params.get(k) for k in keys]
                if any(v is None for v in values) or len({(v.dtype, v.shape) for v in values}) != 1:
                    self.rejected = "weight shapes differ"
                    return None
                stacked[keys] = None
        if any(self._slow_in_loop(self.nodes[start + j].code, stacked) for j in range(length)):
            self.rejected = "conv kernel in onnx layout"
            return None
        if invariant & set(carry_init.values()):
            self.rejected = "carried and invariant"
            return None  # a value both carried and read as it is: the closure cannot tell them apart
        carries: list[tuple[int, str]] = []
        for (offset, index), init in sorted(carry_init.items()):
            ident = self.nodes[start + offset].bound[index]
            if not self._carriable(init, ident):
                self.rejected = "carry type (init)"
                return None
            for k in range(1, count):
                if not self._carriable(ident, self.nodes[start + k * length + offset].bound[index]):
                    self.rejected = "carry type (later)"
                    return None
            carries.append((offset, ident))
        read_after = self._read_after(end)
        carried = {(offset, self.nodes[start + offset].bound.index(ident)) for offset, ident in carries}
        outputs: list[tuple[int, int]] = []
        for offset in range(length):
            for index in range(len(self.nodes[start + offset].bound)):
                idents = [self.nodes[start + k * length + offset].bound[index] for k in range(count)]
                if (offset, index) in carried:
                    idents = idents[:-1]  # the last block's comes out of the scan as the final carry
                if any(i in read_after for i in idents):
                    if any(self.onnx_of.get(i) in self.graph.concrete for i in idents):
                        self.rejected = "concrete read after"
                        return None  # a shape read after the run would come out of the scan traced
                    outputs.append((offset, index))
        return Run(start, length, count, carries, [carry_init[key] for key in sorted(carry_init)],
                   list(stacked), outputs)

    def _computes(self, index: int) -> bool:
        node = self.nodes[index]
        if not node.bound or all(name in self.aliases for name in node.bound):
            return False
        return not all(self.onnx_of.get(name) in self.graph.concrete for name in node.bound)

    def _slow_in_loop(self, code: str, stacked: dict[tuple[str, ...], None]) -> bool:
        """Whether ``code`` convolves with a stacked kernel in ONNX's (O, I, kh, kw) layout: inside XLA
        CPU's loop body such a convolution takes a generic path, 10-15x slower than the straight code's
        (measured on 3x3 kernels; the straight code's kernel is laid out once per call, or at compile time
        when folded). A kernel ``prepare`` laid out as (kh, kw, I, O) (``hwio=True``) runs fast there."""
        if "_conv(" not in code:
            return False
        first_keys = {keys[0] for keys in stacked}
        for line in code.split("\n"):
            call = line.find("_conv(")
            if call < 0 or "hwio=True" in line:
                continue
            weight = next((m for m in _TOKEN.finditer(line, call) if m.group("key") is not None), None)
            if weight is None:
                continue
            key = ast.literal_eval(weight.group("key"))
            value = self.params.get(key)
            if key in first_keys and value is not None and value.ndim > 2 and int(np.prod(value.shape[2:])) > 1:
                return True
        return False

    def _place(self, ident: str, block_start: int, length: int, run_start: int) -> tuple:
        d = self.defined_by.get(ident, -1)
        if block_start <= d < block_start + length:
            return ("in", (d - block_start, self.nodes[d].bound.index(ident)))
        if block_start - length <= d < block_start and d >= run_start:
            return ("prev", (d - block_start + length, self.nodes[d].bound.index(ident)))
        if d < run_start:
            return ("out", ident)
        return ("bad", ident)

    def _carriable(self, before: str, after: str) -> bool:
        """Whether the value ``after`` may replace ``before`` in a scan's carry: same known type, traced."""
        a, b = self.onnx_of.get(before), self.onnx_of.get(after)
        if a is None or b is None or a in self.graph.concrete or b in self.graph.concrete:
            return False
        ta, tb = self.types.get(a), self.types.get(b)
        if ta is None or tb is None or not ta.is_tensor or ta.shape is None or None in ta.shape:
            return False
        return (ta.elem_type, ta.shape) == (tb.elem_type, tb.shape)

    def _read_after(self, end: int) -> set[str]:
        found = self.__dict__.setdefault("_read_after_cache", {})
        if end not in found:
            reads = set(self.output_idents)
            for node in self.nodes[end:]:
                reads.update(node.refs)
                reads.update(_names_in(node.code))  # nested functions read outer values by name
            found[end] = reads
        return found[end]

    # ---- writing ---------------------------------------------------------------------------
    def write(self, run: Run, body: SourceWriter, tables: SourceWriter) -> None:
        """Write the block function and the ``lax.scan`` call for ``run`` into ``body``, its weight
        table (one row of keys per weight, one key per block) into ``tables``."""
        scope = self.graph.scope
        first = self.items[run.start].node
        last = self.items[run.start + run.length - 1].node
        final = self.items[run.end - 1].node
        fn = scope.fresh(f"_{self.function_name}_block")
        table = scope.fresh(f"{fn.upper()}_WEIGHTS")
        weights = {keys: scope.fresh(sanitize(keys[0])) for keys in run.stacked}
        by_first_key = {keys[0]: name for keys, name in weights.items()}
        body.line(f"# ONNX nodes {_label(first)} to {_label(final)}: {run.count} blocks of the same {run.length} "
                  f"nodes up to their weights,")
        body.line(f"# written once ({fn}) and run by lax.scan over the weights of every block ({table})")
        carry_in = ", ".join(run.carry_init) + ("," if len(run.carry_init) == 1 else "")
        with body.block(f"def {fn}(carry, weights):"):
            body.line(f'"""One block: the code of ONNX nodes {_label(first)} to {_label(last)}, with their names."""')
            body.line(f"({carry_in}) = carry" if run.carry_init else "del carry")
            if weights:
                names = list(weights.values())
                body.line(f"{', '.join(names)}{',' if len(names) == 1 else ''} = weights")
            else:
                body.line("del weights")
            for j in range(run.length):
                code = self.nodes[run.start + j].code
                body.extend(_writer(_replace_keys(code, by_first_key, self.aliases)))
            carry_out = [ident for _, ident in run.carries]
            ys = [self.nodes[run.start + offset].bound[index] for offset, index in run.outputs]
            body.line(f"return {_tuple(carry_out)}, {_tuple(ys)}")
        read_after = self._read_after(run.end)
        last_block = run.start + (run.count - 1) * run.length
        final_carry = []
        for offset, ident in run.carries:
            index = self.nodes[run.start + offset].bound.index(ident)
            name = self.nodes[last_block + offset].bound[index]
            final_carry.append(name if name in read_after else "_")
        stacked_names = [scope.fresh(f"{self.nodes[run.start + offset].bound[index]}_blocks")
                         for offset, index in run.outputs]
        xs = f"{self.graph.use_helper(_stack_weights)}(params, {table})" if weights else "None"
        length = "" if weights else f", length={run.count}"
        body.line(f"{_tuple(final_carry)}, {_tuple(stacked_names)} = lax.scan({fn}, {_tuple(run.carry_init)}, "
                  f"{xs}{length})")
        carried = {(offset, self.nodes[run.start + offset].bound.index(ident)) for offset, ident in run.carries}
        for (offset, index), stacked in zip(run.outputs, stacked_names):
            for k in range(run.count - 1 if (offset, index) in carried else run.count):
                name = self.nodes[run.start + k * run.length + offset].bound[index]
                if name in read_after:
                    body.line(f"{name} = {stacked}[{k}]")
        if weights:
            if tables.source().strip():
                tables.line("")
                tables.line("")
            tables.line(f"# the weights of {fn}: one row per weight it reads, one key per block")
            with tables.block(f"{table} = ("):
                for keys in run.stacked:
                    tables.line(f"{literal(tuple(keys))},")
            tables.line(")")


def _names_in(code: str) -> set[str]:
    return {m.group("name") for m in _TOKEN.finditer(code) if m.group("name") is not None}


def _replace_keys(code: str, names: dict[str, str], aliases: dict[str, str]) -> str:
    """``code`` with each stacked weight (``params['key']``, or an identifier naming it) replaced by the
    block function's local for it."""
    def swap(match: re.Match) -> str:
        if match.group("key") is not None:
            return names.get(ast.literal_eval(match.group("key")), match.group(0))
        alias = aliases.get(match.group("name") or "")
        return names.get(alias, match.group(0)) if alias is not None else match.group(0)

    return _TOKEN.sub(swap, code)


def _writer(code: str) -> SourceWriter:
    writer = SourceWriter()
    for text in code.rstrip("\n").split("\n"):
        writer.line(text)
    return writer


def _tuple(names: list[str]) -> str:
    return f"({', '.join(names)}{',' if len(names) == 1 else ''})"


def _label(node) -> str:
    return sanitize(node.name or node.op_type)  # model text reaches code only sanitized
