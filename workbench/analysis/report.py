"""``wb.check``: know before exporting which primitives will convert, and where the others are.

The function is traced once (nothing is lowered), every equation of the jaxpr and of the jaxprs
nested in it is counted per primitive, and each primitive is looked up in the handler registry.
The report never raises for an unsupported primitive: it says where it is used and what to do,
down to a ready-to-fill handler stub (``.stub(name)`` on the report).
"""

from __future__ import annotations

import difflib
import html
import keyword
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from workbench.errors import SourceLocation
from workbench.jax_to_onnx.lowering import eqns_with_user_locations, unsupported_reason
from workbench.jax_to_onnx.registry import REGISTRY
from workbench.jax_to_onnx.source import eqn_location
from workbench.jax_to_onnx.tracing import Traced, trace

_NAMED_IN_SUMMARY = 12  # a summary line names this many unsupported primitives; the table lists every one


def _natural(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key reading runs of digits as numbers: lib_op_2 before lib_op_10."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", name) if part)

# What users can do about primitives that have no ONNX handler, by the primitive's name.
# Each entry names something that exists: a composite of supported operations or a way around.
KNOWN_ALTERNATIVES: dict[str, str] = {
    "rng_bit_generator": "XLA's RngBitGenerator bits cannot be reproduced in ONNX; use jax.random with the default "
    "threefry2x32 implementation (exported bit-exactly), or pass the random numbers as an input",
    "pure_callback": "host callbacks run Python; move the callback out of the exported function",
    "io_callback": "host callbacks run Python; move the callback out of the exported function",
    "debug_callback": "remove jax.debug.print / jax.debug.callback from the exported function",
    "psum": "collectives need several devices; export the per-device function (outside shard_map/pmap)",
    "all_gather": "collectives need several devices; export the per-device function (outside shard_map/pmap)",
    "erf_inv": "no ONNX op; write it as a rational approximation with supported ops (log, sqrt, mul, add)",
    "lgamma": "no ONNX op; use a Stirling/Lanczos series written with supported jnp ops",
    "digamma": "no ONNX op; use an asymptotic series written with supported jnp ops",
    "cumsum": "jnp.cumsum(x) equals jnp.tril(ones) @ x for short axes (dot_general is supported)",
    "argmax": "jnp.argmax can be written with reduce_max, eq, iota and reduce_min",
    "iota": "pass jnp.arange(...) as a constant input or closure (a constant array exports as an initializer)",
}


@dataclass
class PrimitiveUsage:
    """One primitive of the traced function: how often and where it appears, and whether it converts."""

    name: str
    count: int
    supported: bool
    onnx_ops: tuple[str, ...]
    handler_module: str
    locations: list[SourceLocation] = field(default_factory=list)
    location_counts: dict[SourceLocation, int] = field(default_factory=dict)
    suggestion: str = ""
    example_eqn: Any = field(default=None, repr=False)
    reason: str = ""  # why a registered handler refuses this use (then no stub is suggested)

    def where(self, limit: int | None = None) -> str:
        shown = self.locations if limit is None else self.locations[:limit]
        parts = [f"{loc} ×{self.location_counts[loc]}" if self.location_counts[loc] > 1 else str(loc) for loc in shown]
        more = len(self.locations) - len(shown)
        return ", ".join(parts) + (f" and {more} more" if more > 0 else "")


@dataclass
class CompatibilityReport:
    """Per-primitive compatibility of a function with the ONNX exporter."""

    function: str
    primitives: list[PrimitiveUsage]
    num_equations: int

    @property
    def supported(self) -> bool:
        return all(p.supported for p in self.primitives)

    @property
    def unsupported(self) -> list[PrimitiveUsage]:
        return [p for p in self.primitives if not p.supported]

    def __getitem__(self, name: str) -> PrimitiveUsage:
        for usage in self.primitives:
            if usage.name == name:
                return usage
        raise KeyError(f"primitive {name!r} does not appear in {self.function}; it uses {[p.name for p in self.primitives]}")

    def to_pandas(self) -> Any:
        """One row per primitive."""
        import pandas as pd

        return pd.DataFrame(
            [
                {
                    "primitive": p.name,
                    "count": p.count,
                    "supported": p.supported,
                    "onnx_ops": ", ".join(p.onnx_ops) if p.supported and p.onnx_ops else ("(inlined)" if p.supported else ""),
                    "locations": p.where(),
                    "suggestion": p.suggestion,
                }
                for p in self.primitives
            ]
        )

    def stub(self, name: str) -> str:
        """Python source of a handler module for primitive ``name``, ready to fill in."""
        return handler_stub(self[name])

    def name_stub_call(self, call: str) -> None:
        """Word the advice with the call that prints a stub where the user is (``_onnx.stub``, not ``.stub``)."""
        for usage in self.unsupported:
            if not usage.reason:
                usage.suggestion = suggest(usage.name, stub_call=call)

    def summary(self) -> str:
        if self.supported:
            return (
                f"{self.function}: all {len(self.primitives)} primitives ({self.num_equations} equations) "
                "convert to ONNX"
            )
        shown = self.unsupported[:_NAMED_IN_SUMMARY]
        names = ", ".join(p.name for p in shown)
        if len(self.unsupported) > len(shown):
            names += f" and {len(self.unsupported) - len(shown)} more (the table lists them all)"
        return (
            f"{self.function}: {len(self.unsupported)} of {len(self.primitives)} primitives have no ONNX handler: {names}"
        )

    def __repr__(self) -> str:
        lines = [self.summary()]
        for p in self.primitives:
            mark = "ok " if p.supported else "NO "
            ops = ", ".join(p.onnx_ops) if p.onnx_ops else "inlined"
            detail = f"-> {ops}" if p.supported else f"at {p.where(3)}"
            lines.append(f"  {mark} {p.name:<24} ×{p.count:<4} {detail}")
            if not p.supported:
                lines.append(f"      what to do: {p.suggestion}")
        if not self.supported:
            lines.append("  .stub(name) on this report prints a handler to fill in.")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        color = "#2e7d32" if self.supported else "#c62828"
        frame = self.to_pandas()

        def highlight(row: Any) -> list[str]:
            return ["" if row["supported"] else "background-color:#ffcdd2" for _ in row]

        table = frame.style.apply(highlight, axis=1).format(escape="html").hide(axis="index").to_html()  # file paths, names
        return f'<div><b style="color:{color}">{html.escape(self.summary())}</b>{table}</div>'


def check(fn: Any, inputs: Sequence[Any], *, enable_double_precision: bool = False) -> CompatibilityReport:
    """Trace ``fn`` with ``inputs`` (specs as for ``wb.to_onnx``) and report per primitive.

    Never raises for unsupported primitives; raises ``SpecError``/``TraceError`` when the
    function cannot be traced at all.
    """
    return report_of_traced(trace(fn, inputs, enable_double_precision=enable_double_precision))


def report_of_traced(traced: Traced) -> CompatibilityReport:
    """The compatibility report of an already traced function (``Conversion.check`` reuses its trace)."""
    counts: Counter[str] = Counter()
    usages: dict[str, PrimitiveUsage] = {}
    total = 0
    for eqn, location in _eqns_with_locations(traced.closed_jaxpr.jaxpr, None):
        total += 1
        name = eqn.primitive.name
        counts[name] += 1
        usage = usages.get(name)
        if usage is None:
            info = REGISTRY.get(name)
            usage = PrimitiveUsage(
                name=name,
                count=0,
                supported=info is not None,
                onnx_ops=info.onnx_ops if info is not None else (),
                handler_module=info.module if info is not None else "",
                example_eqn=eqn,
            )
            usages[name] = usage
        usage.count += 1
        reason = unsupported_reason(eqn)
        if reason:  # a handler that refuses this use (a non-threefry PRNG), or a known reason (callbacks)
            usage.supported = False
            usage.reason = usage.reason or reason
            usage.suggestion = usage.reason
        if location is not None:
            if location not in usage.location_counts:
                usage.locations.append(location)
                usage.location_counts[location] = 0
            usage.location_counts[location] += 1
    for usage in usages.values():
        if not usage.supported and not usage.suggestion:
            usage.suggestion = suggest(usage.name)
    ordered = sorted(usages.values(), key=lambda u: (u.supported, -u.count, _natural(u.name)))
    return CompatibilityReport(function=traced.callable.display_name, primitives=ordered, num_equations=total)


def _eqns_with_locations(jaxpr: Any, enclosing: SourceLocation | None) -> Iterator[tuple[Any, SourceLocation | None]]:
    """Every equation (nested jaxprs included) with its user location; equations inside library
    code such as ``jnp.cumsum``'s own jit or equinox's error checks carry no user frame, so they get
    their call site's (the enclosing equation's); failing that, the first frame JAX attributes to user code."""
    for eqn, location in eqns_with_user_locations(jaxpr, enclosing):
        yield eqn, location or eqn_location(eqn)


def suggest(name: str, *, stub_call: str | None = None) -> str:
    """What to do about an unsupported primitive: a known alternative, a close handler, or the stub.

    ``stub_call`` is the call that prints the stub where the user is (``_onnx.stub`` in a notebook
    after ``%%to_onnx``); without it the advice names the report's method, not a variable that may
    not exist.
    """
    advice = KNOWN_ALTERNATIVES.get(name)
    close = difflib.get_close_matches(name, [h.primitive for h in REGISTRY.all()], n=1, cutoff=0.8)
    parts = [advice] if advice else []
    if close:
        parts.append(f"a handler exists for the similar primitive {close[0]!r}")
    how = f"{stub_call}({name!r})" if stub_call else f".stub({name!r}) on this report"
    parts.append(f"{'or ' if parts else ''}write a handler: {how} prints one to fill in")
    return "; ".join(parts)


def _identifier(text: str) -> str:
    ident = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in text) or "param"
    if ident[0].isdigit() or keyword.iskeyword(ident):
        ident = f"p_{ident}"
    return ident


def _spec_text(aval: Any) -> str:
    dims = ", ".join(repr(int(d)) if isinstance(d, int) else repr(str(d)) for d in aval.shape)
    shape = f"({dims},)" if len(aval.shape) == 1 else f"({dims})"
    return f"jax.ShapeDtypeStruct({shape}, jnp.{aval.dtype.name})"


def handler_stub(usage: PrimitiveUsage) -> str:
    """Source of a handler module for ``usage.name`` following the registry's decorator API."""
    eqn = usage.example_eqn
    name = usage.name
    ident = _identifier(name)
    operands = [f"x{i}" for i in range(len(eqn.invars))]
    params = [_identifier(p) for p in eqn.params]
    signature = ", ".join(["ctx: LoweringContext", *(f"{o}: ir.Value" for o in operands)])
    if params:
        signature += ", *, " + ", ".join(f"{p}: Any" for p in params)
    avals_in = ", ".join(f"{a.aval.dtype.name}{list(a.aval.shape)}" for a in eqn.invars)
    avals_out = ", ".join(f"{v.aval.dtype.name}{list(v.aval.shape)}" for v in eqn.outvars)
    specs = ", ".join(_spec_text(a.aval) for a in eqn.invars)
    where = usage.where(3) or "your code"
    returns = "ir.Value" if len(eqn.outvars) == 1 else "tuple[ir.Value, ...]"
    param_doc = ", ".join(sorted(eqn.params)) or "none"
    lines = [
        f'"""ONNX handler for the JAX primitive ``{name}`` (stub written by wb.check; fill in the TODOs)."""',
        "",
        "from __future__ import annotations",
        "",
        "from typing import Any",
        "",
        "import jax",
        "import jax.numpy as jnp",
        "import onnx_ir as ir",
        "",
        "from workbench.jax_to_onnx.lowering import LoweringContext",
        "from workbench.jax_to_onnx.registry import Testcase, handler",
        "",
        "",
        f"def _example({', '.join(operands)}):",
        f"    # TODO: the code that produces {name}, e.g. copied from {where}",
        f'    raise NotImplementedError("write the JAX code that uses {name}")',
        "",
        "",
        f"@handler({name!r}, onnx_ops=(), testcases=[  # TODO: the ONNX ops you emit, e.g. (\"Add\",)",
        f"    Testcase({(name + '_example')!r}, _example, [{specs}]),",
        "])",
        f"def _{ident}({signature}) -> {returns}:",
        f'    """Lower ``{name}``: {avals_in} -> {avals_out}. Params: {param_doc}."""',
    ]
    if params:
        lines.append(f"    del {', '.join(params)}  # TODO: use the params that change the result; say why others are ignored")
    lines += [
        f"    # TODO: emit nodes with ctx.op(\"OpType\", {operands[0] if operands else ''}...), constants with ctx.const(...)",
        f'    raise NotImplementedError("handler for {name} not written yet")',
        "",
    ]
    return "\n".join(lines)


__all__ = ["CompatibilityReport", "PrimitiveUsage", "check", "handler_stub", "suggest"]
