"""What the workbench supports, as data: the catalogue behind ``wb.coverage()``.

One row per thing a user can ask "does this convert?" about, all generated from the registries
(nothing is listed by hand):

- every testcase of every JAX → ONNX primitive handler (area ``lax``, ``jnp``, ``nn``, ``Flax`` or
  ``Equinox`` by the API the testcase calls);
- every model of the zoo (``Flax`` / ``Equinox``), converted whole;
- every ONNX → JAX emitter (area ``ONNX → JAX``), tested on its cases of the ONNX node suite;
- every StableHLO op converter (area ``StableHLO``): its row exports the handler testcases of the lax
  primitives that produce the op with ``jax.export``, converts their StableHLO modules and checks
  parity (and that at least one of them does contain the op).

Rows start as ``not run``; :func:`run_entries` runs them (a conversion plus a parity check against
onnxruntime, or the node cases through the generated JAX code) and remembers the outcome for the
session, so the DataFrame and the widget show the last status of each row.
"""

from __future__ import annotations

import functools
import time
import types
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from workbench.errors import WorkbenchError

AREAS: tuple[str, ...] = ("lax", "jnp", "nn", "Flax", "Equinox", "StableHLO", "ONNX → JAX")
STATUSES: tuple[str, ...] = ("not run", "pass", "fail", "error")
NOT_RUN = "not run"


@dataclass(frozen=True)
class Outcome:
    """The last run of one coverage row."""

    status: str  # "pass" | "fail" | "error"
    detail: str
    seconds: float
    max_abs_error: float | None = None


@dataclass(frozen=True)
class CoverageEntry:
    """One row of the catalogue: what it covers, and how to run it and show its graph."""

    key: str
    area: str
    direction: str  # "JAX → ONNX" or "ONNX → JAX"
    subject: str  # primitive name, zoo model name or ONNX op type
    testcase: str
    onnx_ops: tuple[str, ...]
    doc: str
    module: str
    run: Callable[[], Outcome] = field(repr=False, compare=False)
    graph: Callable[[], Any] = field(repr=False, compare=False)  # () -> onnx.ModelProto to show
    # JAX → ONNX handlers: the lowest ONNX opset the handler can export to (None for zoo models and emitters)
    min_opset: int | None = None


# Outcomes of this session, by entry key (the explorer shows each row's last status).
_LAST_OUTCOMES: dict[str, Outcome] = {}


def last_outcome(key: str) -> Outcome | None:
    return _LAST_OUTCOMES.get(key)


def status_of(key: str) -> str:
    """The row's last status this session, ``not run`` until it runs."""
    outcome = _LAST_OUTCOMES.get(key)
    return outcome.status if outcome else NOT_RUN


def forget_outcomes() -> None:
    _LAST_OUTCOMES.clear()


# ----------------------------------------------------------------------------- areas


def _referenced_modules(fn: Callable[..., Any], depth: int = 2) -> set[str]:
    """Names of the modules a function's code reads (``jnp`` → ``jax.numpy``), following helpers it calls.

    Written by hand because nothing in the standard library resolves a code object's global names;
    this reads only names (``co_names``) against the function's globals and closure, it runs nothing.
    """
    found: set[str] = set()
    if isinstance(fn, types.MethodType):
        return _referenced_modules(fn.__func__, depth)
    if isinstance(fn, functools.partial):
        return _referenced_modules(fn.func, depth)
    if not isinstance(fn, types.FunctionType):  # builtins, jitted wrappers, modules: nothing to read
        return found
    code = fn.__code__
    namespace = dict(fn.__globals__)
    for cell_name, cell in zip(code.co_freevars, fn.__closure__ or (), strict=True):
        try:
            namespace[cell_name] = cell.cell_contents
        except ValueError:  # an empty cell (a name assigned later)
            continue
    codes = [code]
    while codes:
        current = codes.pop()
        codes.extend(const for const in current.co_consts if isinstance(const, types.CodeType))
        names = set(current.co_names) | set(current.co_freevars)
        for name in names:
            value = namespace.get(name)
            if isinstance(value, types.ModuleType):
                found.add(value.__name__)
                if value.__name__ == "jax":  # jax.nn.relu / jax.numpy.sum read as attributes
                    found |= {f"jax.{attr}" for attr in ("nn", "numpy", "lax", "scipy") if attr in names}
            elif isinstance(value, type) and value.__module__.split(".")[0] in ("flax", "equinox"):
                found.add(value.__module__)
            elif depth > 0 and isinstance(value, types.FunctionType) and value is not fn:
                found |= _referenced_modules(value, depth - 1)
    return found


def api_area(fn: Callable[..., Any]) -> str:
    """The user-facing API a testcase exercises: Flax, Equinox, nn, jnp or lax (the most specific wins)."""
    modules = _referenced_modules(fn)
    roots = {name.split(".")[0] for name in modules}
    if "flax" in roots:
        return "Flax"
    if "equinox" in roots:
        return "Equinox"
    if any(name.startswith("jax.nn") for name in modules):
        return "nn"
    if any(name.startswith("jax.numpy") for name in modules):
        return "jnp"
    return "lax"


# ----------------------------------------------------------------------------- runners


def _timed(action: Callable[[], tuple[str, str, float | None]]) -> Outcome:
    start = time.perf_counter()
    try:
        status, detail, error = action()
    except Exception as problem:  # noqa: BLE001 - a failing conversion is this row's result, shown in the table
        return Outcome("error", f"{type(problem).__name__}: {problem}", time.perf_counter() - start)
    return Outcome(status, detail, time.perf_counter() - start, error)


def _parity_outcome(fn: Callable[..., Any], model: Any, inputs: Sequence[Any], **options: Any) -> tuple[str, str, float]:
    from workbench.analysis.parity import parity

    report = parity(fn, model, inputs, **options)
    worst = max((r.comparison.max_abs_error for r in report.results), default=0.0)
    return ("pass" if report.ok else "fail", report.summary(), worst)


def _handler_entries() -> Iterator[CoverageEntry]:
    import jax

    from workbench.jax_to_onnx.api import MIN_OPSET, to_onnx
    from workbench.jax_to_onnx.registry import REGISTRY, HandlerInfo, Testcase

    def export(case: Testcase) -> Any:
        with jax.enable_x64(case.x64):
            return to_onnx(case.fn, case.inputs, enable_double_precision=case.x64)

    def runner(case: Testcase) -> Callable[[], Outcome]:
        def check() -> tuple[str, str, float]:
            model = export(case)
            with jax.enable_x64(case.x64):
                return _parity_outcome(
                    case.fn, model, case.inputs, samples=1, rtol=case.rtol, atol=case.atol,
                    sizes=case.symbolic_sizes or None,
                )

        return lambda: _timed(check)

    info: HandlerInfo
    for info in REGISTRY.all():
        for case in info.testcases:
            yield CoverageEntry(
                key=f"jax:{info.subject}::{case.name}",
                area=api_area(case.fn),
                direction="JAX → ONNX",
                subject=info.subject,
                testcase=case.name,
                onnx_ops=info.onnx_ops,
                doc=info.doc,
                module=info.module,
                min_opset=max(info.min_opset, MIN_OPSET),
                run=runner(case),
                graph=lambda case=case: export(case),
            )


def _convert_zoo_model(built: Any) -> Any:
    from workbench.jax_to_onnx.api import to_onnx

    return to_onnx(built.fn, built.inputs)


def _zoo_entries() -> Iterator[CoverageEntry]:
    from workbench.jax_to_onnx.api import to_onnx
    from workbench.zoo import ZOO, ZooModel

    def runner(build: Callable[[], ZooModel]) -> Callable[[], Outcome]:
        def check() -> tuple[str, str, float]:
            built = build()
            model = to_onnx(built.fn, built.inputs)
            return _parity_outcome(built.eval_fn(), model, built.inputs, samples=1, rtol=1e-4, atol=1e-4)

        return lambda: _timed(check)

    for name, build in ZOO.items():
        framework = "Equinox" if name.startswith("eqx_") else "Flax"
        yield CoverageEntry(
            key=f"zoo:{name}",
            area=framework,
            direction="JAX → ONNX",
            subject=name,
            testcase=f"workbench.zoo.{name}()",
            onnx_ops=(),
            doc=(build.__doc__ or "").strip().splitlines()[0] if build.__doc__ else "",
            module="workbench.zoo",
            run=runner(build),
            graph=lambda build=build: _convert_zoo_model(build()),
        )


def _operator_doc(domain: str, op: str) -> str:
    """The operator's documentation page: onnx.ai for the ONNX domains, onnxruntime's for com.microsoft."""
    if domain == "com.microsoft":
        return f"https://github.com/microsoft/onnxruntime/blob/main/docs/ContribOperators.md#com.microsoft.{op}"
    return f"https://onnx.ai/onnx/operators/onnx_{domain.replace('.', '')}_{op}.html"


def _emitter_entries() -> Iterator[CoverageEntry]:
    from workbench.onnx_to_jax import node_suite
    from workbench.onnx_to_jax.registry import registered

    def runner(op: str) -> Callable[[], Outcome]:
        def check() -> tuple[str, str, None]:
            cases = node_suite.cases_by_op().get(op, ())
            if not cases:
                return ("fail", f"the installed onnx has no node cases for {op}", None)
            results = node_suite.run_cases(cases)
            failed = [r for r in results if not r.passed]
            detail = f"{len(results) - len(failed)}/{len(results)} node cases pass"
            if failed:
                detail += "; failing: " + "; ".join(f"{r.name} ({r.reason})" for r in failed[:5])
            return ("fail" if failed else "pass", detail, None)

        return lambda: _timed(check)

    def first_case_model(op: str) -> Any:
        cases = node_suite.cases_by_op().get(op)
        if not cases:
            raise WorkbenchError(f"the installed onnx has no node cases for {op}; nothing to show")
        return cases[0].model

    for (domain, op), versions in registered().items():
        yield CoverageEntry(
            key=f"onnx:{domain}::{op}",
            area="ONNX → JAX",
            direction="ONNX → JAX",
            subject=op if not domain else f"{domain}::{op}",
            testcase="ONNX node suite",
            onnx_ops=(op,),
            doc=_operator_doc(domain, op),
            module=f"opsets {', '.join(map(str, versions))}",
            run=runner(op),
            graph=lambda op=op: first_case_model(op),
        )


def _stablehlo_entries() -> Iterator[CoverageEntry]:
    import jax

    from workbench.jax_to_onnx.api import to_onnx
    from workbench.jax_to_onnx.registry import REGISTRY as HANDLERS
    from workbench.jax_to_onnx.registry import Testcase
    from workbench.jax_to_onnx.stablehlo.registry import REGISTRY, OpConverter
    from workbench.jax_to_onnx.stablehlo.walker import module_op_names
    from workbench.specs import parse_input_specs

    def testcases(entry: OpConverter) -> list[Testcase]:
        found: list[Testcase] = []
        for primitive in entry.primitives:
            info = HANDLERS.get(primitive)
            found.extend(case for case in (info.testcases if info else ()) if case not in found)
        return found

    def exported(case: Testcase) -> Any:
        specs = parse_input_specs(case.inputs)
        with jax.enable_x64(case.x64):
            return jax.export.export(jax.jit(case.fn))(*specs.args)

    def runner(entry: OpConverter) -> Callable[[], Outcome]:
        def check() -> tuple[str, str, float | None]:
            cases = testcases(entry)
            if not cases:
                return ("fail", f"no handler testcases of {', '.join(entry.primitives) or 'any primitive'} to export", None)
            failures, containing, worst = [], 0, 0.0
            for case in cases:
                artefact = exported(case)
                containing += entry.op in module_op_names(artefact)
                with jax.enable_x64(case.x64):
                    status, detail, error = _parity_outcome(
                        case.fn, to_onnx(artefact), case.inputs, samples=1, rtol=case.rtol, atol=case.atol,
                        sizes=case.symbolic_sizes or None,
                    )
                worst = max(worst, error or 0.0)
                if status != "pass":
                    failures.append(f"{case.name}: {detail}")
            if not containing:
                return ("fail", f"none of the {len(cases)} exported testcases contains {entry.op}", worst)
            detail = (f"{len(cases) - len(failures)}/{len(cases)} testcases of {', '.join(entry.primitives)} pass, "
                      f"{containing} contain the op")
            return ("fail", detail + "; " + "; ".join(failures[:3]), worst) if failures else ("pass", detail, worst)

        return lambda: _timed(check)

    def first_model(entry: OpConverter) -> Any:
        for case in testcases(entry):
            artefact = exported(case)
            if entry.op in module_op_names(artefact):
                return to_onnx(artefact)
        raise WorkbenchError(f"no exported testcase of {', '.join(entry.primitives)} contains {entry.op}")

    for entry in REGISTRY.all():
        yield CoverageEntry(
            key=f"stablehlo:{entry.op}",
            area="StableHLO",
            direction="StableHLO → ONNX",
            subject=entry.op,
            testcase="handler testcases through jax.export",
            onnx_ops=entry.onnx_ops or ((f"via {entry.via}",) if entry.via else ()),
            doc=entry.doc,
            module=entry.module,
            run=runner(entry),
            graph=lambda entry=entry: first_model(entry),
        )


def catalogue() -> list[CoverageEntry]:
    """Every coverage row, generated from the handler registry, the model zoo, the StableHLO converters
    and the emitter registry."""
    return [*_handler_entries(), *_zoo_entries(), *_stablehlo_entries(), *_emitter_entries()]


def run_entries(
    entries: Iterable[CoverageEntry], *, progress: Callable[[Iterable[CoverageEntry]], Iterable[CoverageEntry]] | None = None
) -> list[Outcome]:
    """Run ``entries`` (optionally wrapped in a progress bar) and remember each outcome."""
    outcomes = []
    for entry in progress(entries) if progress is not None else entries:
        outcome = entry.run()
        _LAST_OUTCOMES[entry.key] = outcome
        outcomes.append(outcome)
    return outcomes


COLUMNS: tuple[str, ...] = (
    "area", "direction", "subject", "testcase", "onnx_ops", "min_opset", "status", "detail", "max_abs_error", "seconds", "module", "doc",
)


def coverage_frame(entries: Sequence[CoverageEntry] | None = None) -> Any:
    """The catalogue as a pandas DataFrame with each row's last status (``not run`` until run)."""
    import pandas as pd

    rows = []
    for entry in catalogue() if entries is None else entries:
        outcome = _LAST_OUTCOMES.get(entry.key)
        rows.append({
            "area": entry.area,
            "direction": entry.direction,
            "subject": entry.subject,
            "testcase": entry.testcase,
            "onnx_ops": ", ".join(entry.onnx_ops),
            "min_opset": entry.min_opset,
            "status": status_of(entry.key),
            "detail": outcome.detail if outcome else "",
            "max_abs_error": outcome.max_abs_error if outcome else None,
            "seconds": round(outcome.seconds, 3) if outcome else None,
            "module": entry.module,
            "doc": entry.doc,
        })
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame["min_opset"] = frame["min_opset"].astype("Int64")  # empty for zoo models and ONNX → JAX rows
    frame["area"] = pd.Categorical(frame["area"], categories=list(AREAS))
    frame["status"] = pd.Categorical(frame["status"], categories=list(STATUSES))
    return frame


def summary_frame(frame: Any) -> Any:
    """One row per primitive / zoo model / ONNX op: its areas, ONNX ops, lowest opset and how many testcases (and passes)."""
    import pandas as pd

    grouped = frame.groupby(["direction", "subject"], observed=True, sort=True)
    summary = grouped.agg(
        areas=("area", lambda areas: ", ".join(sorted({str(a) for a in areas}, key=AREAS.index))),
        onnx_ops=("onnx_ops", "first"),
        min_opset=("min_opset", "first"),
        testcases=("testcase", "size"),
        passed=("status", lambda statuses: int((statuses == "pass").sum())),
        run=("status", lambda statuses: int((statuses != NOT_RUN).sum())),
    ).reset_index()
    summary["min_opset"] = summary["min_opset"].map(lambda value: "" if pd.isna(value) else int(value))
    return summary


def filter_entries(
    entries: Sequence[CoverageEntry], *, text: str = "", areas: Iterable[str] = (), statuses: Iterable[str] = ()
) -> list[CoverageEntry]:
    """Rows matching all given filters: ``text`` (case-insensitive, in subject/testcase/ops/module), areas, statuses."""
    needle = text.strip().lower()
    wanted_areas = set(areas)
    wanted_statuses = set(statuses)
    unknown = (wanted_areas - set(AREAS)) | (wanted_statuses - set(STATUSES))
    if unknown:
        raise ValueError(f"unknown area or status {sorted(unknown)}; areas are {list(AREAS)}, statuses {list(STATUSES)}")
    kept = []
    for entry in entries:
        if wanted_areas and entry.area not in wanted_areas:
            continue
        if wanted_statuses and status_of(entry.key) not in wanted_statuses:
            continue
        haystack = " ".join((entry.subject, entry.testcase, " ".join(entry.onnx_ops), entry.module)).lower()
        if needle and needle not in haystack:
            continue
        kept.append(entry)
    return kept


__all__ = [
    "AREAS", "COLUMNS", "CoverageEntry", "Outcome", "STATUSES", "api_area", "catalogue", "coverage_frame",
    "filter_entries", "forget_outcomes", "last_outcome", "run_entries", "status_of", "summary_frame",
]
