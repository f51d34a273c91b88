"""What the workbench supports, as data: the catalogue behind ``wb.coverage()``.

One row per thing a user can ask "does this convert?" about, all generated from the registries
(nothing is listed by hand):

- every testcase of every JAX → ONNX primitive handler (area ``lax``, ``jnp``, ``nn``, ``Flax`` or
  ``Equinox`` by the API the testcase calls);
- every model of the zoo (``Flax`` / ``Equinox``), converted whole;
- every ONNX → JAX emitter (area ``ONNX → JAX``), tested on its cases of the ONNX node suite (found by
  domain and op: onnxruntime's ``com.microsoft::Attention`` never runs ONNX's ``Attention`` cases), or,
  for the ops onnxruntime defines and the ONNX / ai.onnx.ml ops without node cases, on the cases of
  :mod:`workbench.onnx_to_jax.contrib_cases` against onnxruntime, live; an emitter with neither is ``no case`` (not a failure; its detail says where it is tested);
- every StableHLO op converter (area ``StableHLO``): its row exports the handler testcases of the lax
  primitives that produce the op with ``jax.export``, converts their StableHLO modules and checks
  parity (and that at least one of them does contain the op).

Rows start as ``not run``; :func:`run_entries` runs them (a conversion plus a parity check against
onnxruntime, or the node cases through the generated JAX code) and remembers the outcome for the
session, so the DataFrame and the widget show the last status of each row. An emitter whose only
failing node cases are listed in :mod:`workbench.onnx_to_jax.expected_failures` is a ``known
failure`` (each with its listed reason), kept apart from a ``fail`` (a regression).

Speed ("run shown" must feel interactive). Where the time goes, measured on the 2-core CI machine:
building a zoo model eagerly compiles a small XLA program per JAX operation (nnx_mlp: 37 compiles,
11 of its 15-18 s), and the first ONNX → JAX row makes onnx build the whole node suite, running
its reference implementations for all ~1,900 cases (10-30 s by the machine's load, two thirds of it
in the 3-D pooling cases); the old "run shown" did all of it in the kernel, one row after another,
and showed nothing until the last row ended. Now (:func:`run_entries`) each row is reported as it
finishes (the first after about a second instead of at the end), a row's exported model is kept for
showing its graph, and on machines with cores to spare (4 or more) rows also run in worker
processes (:class:`CoverageWorkers`): the node suite built once per session in its own worker, row
workers for long runs, which keep JAX's compiled programs in a persistent cache across sessions
(``~/.cache/workbench/jax``). On 2 cores the workers lost (a process importing JAX competes with the
kernel: 9 rows 18.5 s with the node-suite worker vs 13.7 s without), so there everything runs in the
kernel. Threads would not help anywhere: conversion is Python holding the GIL (24 rows took as long
on 2 threads as on one). Measured with tests/benchmarks/bench_coverage.py; table in docs/jupyter.md.
"""

from __future__ import annotations

import functools
import os
import time
import types
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

from workbench.analysis.coverage_search import SearchTerms, search_terms
from workbench.errors import WorkbenchError

AREAS: tuple[str, ...] = ("lax", "jnp", "nn", "Flax", "Equinox", "StableHLO", "ONNX → JAX")
NOT_RUN = "not run"
KNOWN_FAILURE = "known failure"
NO_CASE = "no case"  # an emitter neither the node suite nor contrib_cases has a case for
STATUSES: tuple[str, ...] = (NOT_RUN, "pass", KNOWN_FAILURE, NO_CASE, "fail", "error")


@dataclass(frozen=True)
class Outcome:
    """The last run of one coverage row."""

    status: str  # "pass" | "known failure" | "no case" | "fail" | "error"
    detail: str
    seconds: float
    max_abs_error: float | None = None
    known_failures: tuple[tuple[str, str], ...] = ()  # (node case, its listed reason) of a known failure


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
    node_suite_op: str | None = None  # ONNX → JAX rows the node-suite worker can run: the op type
    node_suite_domain: str = ""  # ... and its domain
    importable: bool = False  # a worker process has this row too (its code is not the notebook's own)


# Outcomes of this session, by entry key (the explorer shows each row's last status).
_LAST_OUTCOMES: dict[str, Outcome] = {}
# Models a run exported, by entry key: showing the row's graph reuses them.
_MODELS: dict[str, Any] = {}


def last_outcome(key: str) -> Outcome | None:
    return _LAST_OUTCOMES.get(key)


def status_of(key: str) -> str:
    """The row's last status this session, ``not run`` until it runs."""
    outcome = _LAST_OUTCOMES.get(key)
    return outcome.status if outcome else NOT_RUN


def _kept_model(key: str, export: Callable[[], Any]) -> Any:
    """The model the row's last run exported, or a new export when it has not run."""
    model = _MODELS.get(key)
    return export() if model is None else model


def forget_outcomes() -> None:
    _LAST_OUTCOMES.clear()
    _MODELS.clear()


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

    def runner(case: Testcase, key: str) -> Callable[[], Outcome]:
        def check() -> tuple[str, str, float]:
            model = _MODELS[key] = export(case)
            with jax.enable_x64(case.x64):
                return _parity_outcome(  # named after the testcase: its function is mostly a lambda
                    case.fn, model, case.inputs, samples=1, rtol=case.rtol, atol=case.atol,
                    sizes=case.symbolic_sizes or None, name=case.name,
                )

        return lambda: _timed(check)

    info: HandlerInfo
    for info in REGISTRY.all():
        for case in info.testcases:
            key = f"jax:{info.subject}::{case.name}"
            yield CoverageEntry(
                key=key,
                area=api_area(case.fn),
                direction="JAX → ONNX",
                subject=info.subject,
                testcase=case.name,
                onnx_ops=info.onnx_ops,
                doc=info.doc,
                module=info.module,
                min_opset=max(info.min_opset, MIN_OPSET),
                run=runner(case, key),
                graph=lambda case=case, key=key: _kept_model(key, lambda: export(case)),
                importable=_importable(info.rule) and _importable(case.fn),
            )


def _convert_zoo_model(built: Any) -> Any:
    from workbench.jax_to_onnx.api import to_onnx

    return to_onnx(built.fn, built.inputs)


def _zoo_entries() -> Iterator[CoverageEntry]:
    from workbench.jax_to_onnx.api import to_onnx
    from workbench.zoo import ZOO, ZooModel

    def runner(build: Callable[[], ZooModel], key: str) -> Callable[[], Outcome]:
        def check() -> tuple[str, str, float]:
            built = build()
            model = _MODELS[key] = to_onnx(built.fn, built.inputs)
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
            run=runner(build, f"zoo:{name}"),
            graph=lambda build=build, key=f"zoo:{name}": _kept_model(key, lambda: _convert_zoo_model(build())),
            importable=_importable(build),
        )


def _operator_doc(domain: str, op: str) -> str:
    """The operator's documentation page: onnx.ai for the ONNX domains, onnxruntime's for com.microsoft."""
    if domain == "com.microsoft":
        return f"https://github.com/microsoft/onnxruntime/blob/main/docs/ContribOperators.md#com.microsoft.{op}"
    return f"https://onnx.ai/onnx/operators/onnx_{domain.replace('.', '')}_{op}.html"


# where the emitters without a built-in case are tested, by domain
_TESTED_IN = {
    "ai.onnx.ml": "tests/onnx_to_jax/test_domains.py (against onnxruntime)",
    "com.microsoft": "tests/onnx_to_jax/test_domains.py and test_microsoft_ops.py (against onnxruntime)",
}


def no_case_outcome(domain: str, op: str) -> Outcome:
    """The row of an emitter with no node case and no built-in case: not run here, and where it is tested."""
    where = _TESTED_IN.get(domain)
    name = f"{domain}::{op}" if domain else op
    tested = f"tested in {where}" if where else "no test of its own either (only inside larger models, if any)"
    return Outcome(NO_CASE, f"no case to run here: the installed onnx has no node cases for {name} and "
                            f"workbench.onnx_to_jax.contrib_cases none; {tested}", 0.0)


def contrib_outcome(results: Sequence[Any], seconds: float) -> Outcome:
    """The row of an op onnxruntime defines from its contrib cases' results (each against onnxruntime)."""
    failing = [r for r in results if not r.passed]
    detail = f"{len(results) - len(failing)}/{len(results)} cases match onnxruntime"
    if failing:
        detail += "; differing: " + "; ".join(f"{r.name} ({r.reason})" for r in failing[:5])
    return Outcome("fail" if failing else "pass", detail, seconds)


def emitter_outcome(op: str, results: Sequence[Any], seconds: float, domain: str = "") -> Outcome:
    """The row of emitter ``domain::op`` from its node cases' results: listed failures apart from regressions;
    ``no case`` when there are none."""
    from workbench.onnx_to_jax.expected_failures import expected_failure_reason

    if not results:
        return no_case_outcome(domain, op)
    known = [(r.name, reason) for r in results if not r.passed and (reason := expected_failure_reason(r.name))]
    unexpected = [r for r in results if not r.passed and expected_failure_reason(r.name) is None]
    passed = sum(r.passed for r in results)
    detail = f"{passed}/{len(results)} node cases pass"
    if unexpected:
        detail += "; failing, not listed as expected (a regression): " + "; ".join(
            f"{r.name} ({r.reason})" for r in unexpected[:5]
        )
    if known:
        detail += f"; {len(known)} known failure(s), listed with their reason: " + "; ".join(
            f"{name} ({reason})" for name, reason in known[:5]
        ) + (f"; and {len(known) - 5} more" if len(known) > 5 else "")
    status = "fail" if unexpected else (KNOWN_FAILURE if known else "pass")
    return Outcome(status, detail, seconds, known_failures=tuple(known))


def _run_node_cases(op: str, domain: str = "") -> tuple[list[Any], float]:
    """(every node case result of ``domain::op``, seconds): in the node-suite worker, or here as a fallback."""
    from workbench.onnx_to_jax import node_suite

    start = time.perf_counter()
    results = node_suite.run_cases(node_suite.cases_by_op().get((domain, op), ()))
    return results, time.perf_counter() - start


def _first_case_model_bytes(op: str, domain: str = "") -> bytes:
    from workbench.onnx_to_jax import node_suite

    cases = node_suite.cases_by_op().get((domain, op))
    if not cases:
        raise WorkbenchError(f"the installed onnx has no node cases for {domain or 'ai.onnx'}::{op}; nothing to show")
    return cases[0].model.SerializeToString()


# ----------------------------------------------------------------------------- worker processes


def _cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "workbench", "jax")


def _start_worker() -> None:
    """Initializer of every worker: JAX keeps every compiled program on disk, for this and later sessions.

    Interrupting the kernel signals its whole process group; a worker ignores that (it would die
    and break the pool), the kernel stops waiting for it instead.
    """
    import signal

    import jax

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    jax.config.update("jax_compilation_cache_dir", _cache_dir())
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


@functools.lru_cache(maxsize=1)
def _rows_by_key() -> dict[str, CoverageEntry]:
    return {entry.key: entry for entry in catalogue()}


def _warm_up() -> int:
    """In a row worker: import everything the rows need (the catalogue); the number of rows."""
    return len(_rows_by_key())


def _run_row(key: str) -> tuple[Outcome, bytes | None]:
    """In a row worker: run one row; its outcome and the model it exported (for showing its graph)."""
    outcome = _rows_by_key()[key].run()
    model = _MODELS.pop(key, None)
    return outcome, None if model is None else model.SerializeToString()


class _Worker:
    """One spawned process (spawned, not forked: the kernel runs JAX's threads) and its warm-up."""

    def __init__(self, warm_up: Callable[[], Any] | None) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        context = multiprocessing.get_context("spawn")
        self.pool = ProcessPoolExecutor(max_workers=1, mp_context=context, initializer=_start_worker)
        self.pid: Future[int] = self.pool.submit(os.getpid)  # to stop it at once when the kernel goes
        self.warm: Future[Any] | None = self.pool.submit(warm_up) if warm_up is not None else None
        self.busy: Future[Any] | None = None

    def idle(self) -> bool:
        """Warmed up and not running a row."""
        warmed = self.warm is None or (self.warm.done() and self.warm.exception() is None)
        return warmed and (self.busy is None or self.busy.done())

    def close(self) -> None:
        """Stop the process now, even in the middle of a row (shutting down the pool alone would wait)."""
        import signal

        self.pool.shutdown(wait=False, cancel_futures=True)
        if self.pid.done() and self.pid.exception() is None:
            try:
                os.kill(self.pid.result(), signal.SIGTERM)
            except ProcessLookupError:  # already gone
                pass


# A worker is a process importing JAX and every handler (10-15 s of CPU) that then competes with the
# kernel for the cores: on the 2-core CI machine rows ran slower with workers than without
# (tests/benchmarks/bench_coverage.py). So workers are used only with cores to spare, and row
# workers only for long runs.
CORES_FOR_WORKERS = 4
ROWS_FOR_ROW_WORKERS = 12


def workers_pay() -> bool:
    """True on a machine with cores to spare for worker processes (this process may use them)."""
    return len(os.sched_getaffinity(0)) >= CORES_FOR_WORKERS if hasattr(os, "sched_getaffinity") else (
        (os.cpu_count() or 1) >= CORES_FOR_WORKERS
    )


class CoverageWorkers:
    """The session's worker processes: one for the ONNX node suite, row workers for long runs.

    The node-suite worker (started on the first ONNX → JAX row) builds the suite once and keeps it.
    Row workers (started on the first run of more than ROWS_FOR_ROW_WORKERS rows, kept for the
    session) import the catalogue in the background and take rows only once warm, so no run waits
    for a worker to start: the kernel runs rows meanwhile.
    """

    def __init__(self, row_workers: int | None = None) -> None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        self.row_count = max(1, min(3, cores - 2)) if row_workers is None else row_workers
        self._node_suite: _Worker | None = None
        self.rows: list[_Worker] = []

    @property
    def node_suite(self) -> _Worker:
        if self._node_suite is None:
            self._node_suite = _Worker(None)
        return self._node_suite

    def start_row_workers(self, count: int | None = None) -> None:
        """Start the row workers (``count``: this many, whatever the machine) unless they run already."""
        if not self.rows:
            self.rows = [_Worker(_warm_up) for _ in range(self.row_count if count is None else count)]

    def idle_row_worker(self) -> _Worker | None:
        return next((worker for worker in self.rows if worker.idle()), None)

    def run_node_cases(self, op: str, domain: str = "") -> Future[tuple[list[Any], float]]:
        return self.node_suite.pool.submit(_run_node_cases, op, domain)

    def first_case_model(self, op: str, domain: str = "") -> Any:
        import onnx

        return onnx.load_model_from_string(self.node_suite.pool.submit(_first_case_model_bytes, op, domain).result())

    def close(self) -> None:
        for worker in [*([self._node_suite] if self._node_suite is not None else []), *self.rows]:
            worker.close()


_workers: CoverageWorkers | None = None


def coverage_workers() -> CoverageWorkers:
    """The session's workers, started on first use (and stopped when Python exits)."""
    global _workers
    if _workers is None:
        import atexit

        _workers = CoverageWorkers()
        atexit.register(_workers.close)
    return _workers


def _importable(obj: Any) -> bool:
    """True when a fresh process has ``obj`` too (not when the notebook itself defined it)."""
    return not getattr(obj, "__module__", "__main__").startswith("__main__")


def _emitters_are_importable(domain: str, op: str, versions: Sequence[int]) -> bool:
    """True when a fresh process registers the same emitters (not when one was defined in a notebook)."""
    from workbench.onnx_to_jax.registry import resolve

    return all(_importable(resolve(domain, op, version).fn) for version in versions)


def _has_node_cases(domain: str) -> bool:
    """Whether the installed onnx has node cases for ops of ``domain``, without building the suite: the ONNX
    domains have some for nearly every op, the domains onnxruntime defines none."""
    from workbench.onnx_io.runtime_ops import RUNTIME_DOMAINS

    return domain not in RUNTIME_DOMAINS


def _contrib_entry(domain: str, op: str, versions: Sequence[int]) -> CoverageEntry:
    """The row of an op with built-in cases: each case through the generated code and onnxruntime, here."""
    from workbench.onnx_to_jax import contrib_cases

    key = f"onnx:{domain}::{op}"

    def check() -> Outcome:
        start = time.perf_counter()
        try:
            cases = contrib_cases.cases(domain, op)
            _MODELS[key] = cases[0].model
            results = [contrib_cases.run_case(case) for case in cases]
        except Exception as problem:  # noqa: BLE001 - this row's result, shown in the table
            return Outcome("error", f"{type(problem).__name__}: {problem}", time.perf_counter() - start)
        return contrib_outcome(results, time.perf_counter() - start)

    return CoverageEntry(
        key=key,
        area="ONNX → JAX",
        direction="ONNX → JAX",
        subject=op if not domain else f"{domain}::{op}",
        testcase="built-in cases vs onnxruntime",
        onnx_ops=(op,),
        doc=_operator_doc(domain, op),
        module=f"opsets {', '.join(map(str, versions))}",
        run=check,
        graph=lambda: contrib_cases.cases(domain, op)[0].model,
        importable=_emitters_are_importable(domain, op, versions),
    )


def _emitter_entries() -> Iterator[CoverageEntry]:
    from workbench.onnx_to_jax import contrib_cases
    from workbench.onnx_to_jax.registry import registered

    def runner(op: str, domain: str) -> Callable[[], Outcome]:
        def check() -> Outcome:
            try:
                results, seconds = _run_node_cases(op, domain)
            except Exception as problem:  # noqa: BLE001 - this row's result, shown in the table
                return Outcome("error", f"{type(problem).__name__}: {problem}", 0.0)
            return emitter_outcome(op, results, seconds, domain)

        return check

    def first_case_model(op: str, domain: str, in_worker: bool) -> Any:
        import onnx

        if in_worker:
            return coverage_workers().first_case_model(op, domain)
        return onnx.load_model_from_string(_first_case_model_bytes(op, domain))

    def no_case_model(domain: str, op: str) -> Any:
        raise WorkbenchError(f"no case of {domain or 'ai.onnx'}::{op} to show: {no_case_outcome(domain, op).detail}")

    for (domain, op), versions in registered().items():
        if contrib_cases.has_cases(domain, op):
            yield _contrib_entry(domain, op, versions)
            continue
        key, subject = f"onnx:{domain}::{op}", op if not domain else f"{domain}::{op}"
        common = dict(key=key, area="ONNX → JAX", direction="ONNX → JAX", subject=subject, onnx_ops=(op,),
                      doc=_operator_doc(domain, op), module=f"opsets {', '.join(map(str, versions))}")
        if not _has_node_cases(domain):
            yield CoverageEntry(**common, testcase="no built-in case", run=lambda d=domain, o=op: no_case_outcome(d, o),
                                graph=lambda d=domain, o=op: no_case_model(d, o))
            continue
        in_worker = _emitters_are_importable(domain, op, versions)
        yield CoverageEntry(
            **common,
            testcase="ONNX node suite",
            run=runner(op, domain),
            graph=lambda op=op, domain=domain, in_worker=in_worker: first_case_model(op, domain, in_worker),
            node_suite_op=op if in_worker else None,
            node_suite_domain=domain,
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
    entries: Iterable[CoverageEntry],
    *,
    on_result: Callable[[CoverageEntry, Outcome], None] | None = None,
    workers: bool | None = None,
) -> list[Outcome]:
    """Run ``entries``, remember each outcome and report it with ``on_result(entry, outcome)`` as it comes.

    ONNX → JAX rows go to the node-suite worker; the other rows are shared between this process
    (from the back of the list) and the warm row workers (from the front; started by a run of more
    than ROWS_FOR_ROW_WORKERS rows). ``workers``: None uses them where they pay (:func:`workers_pay`),
    False runs everything here one by one, True uses them whatever the machine. Returns the outcomes in the order of ``entries``; ``on_result`` sees them in
    the order they finish.
    """
    from collections import deque
    from concurrent.futures import FIRST_COMPLETED, wait

    entries = list(entries)
    outcomes: dict[str, Outcome] = {}
    pending: dict[Future[Any], CoverageEntry] = {}

    def record(entry: CoverageEntry, outcome: Outcome) -> None:
        _LAST_OUTCOMES[entry.key] = outcome
        outcomes[entry.key] = outcome
        if on_result is not None:
            on_result(entry, outcome)

    def collect(future: Future[Any], entry: CoverageEntry) -> None:
        global _workers
        try:
            result = future.result()
        except BrokenProcessPool as problem:  # the worker was killed (out of memory, a crash): new ones next run
            if _workers is not None:
                _workers.close()
                _workers = None
            record(entry, Outcome("error", f"the worker process running this row stopped ({problem}); run it again", 0.0))
            return
        except Exception as problem:  # noqa: BLE001 - a row crashed its worker's call: this row's result
            record(entry, Outcome("error", f"{type(problem).__name__} in a worker process: {problem}", 0.0))
            return
        if entry.node_suite_op is not None:
            results, seconds = result
            record(entry, emitter_outcome(entry.node_suite_op, results, seconds, entry.node_suite_domain))
            return
        outcome, model_bytes = result
        if model_bytes is not None:
            import onnx

            _MODELS[entry.key] = onnx.load_model_from_string(model_bytes)
        record(entry, outcome)

    def collect_finished() -> None:
        for future in [f for f in pending if f.done()]:
            collect(future, pending.pop(future))

    pool = coverage_workers() if (workers_pay() if workers is None else workers) else None
    shared: deque[CoverageEntry] = deque()  # rows a worker can run too
    here: deque[CoverageEntry] = deque()  # rows only this process has (defined in the notebook)
    for entry in entries:
        if pool is not None and entry.node_suite_op is not None:
            pending[pool.run_node_cases(entry.node_suite_op, entry.node_suite_domain)] = entry
        elif pool is not None and entry.importable:
            shared.append(entry)
        else:
            here.append(entry)
    if pool is not None and len(shared) > ROWS_FOR_ROW_WORKERS:
        pool.start_row_workers()
    while shared or here:
        while pool is not None and shared and (worker := pool.idle_row_worker()) is not None:
            entry = shared.popleft()
            worker.busy = worker.pool.submit(_run_row, entry.key)
            pending[worker.busy] = entry
        if here or shared:
            entry = here.popleft() if here else shared.pop()
            record(entry, entry.run())
        collect_finished()
    while pending:
        wait(list(pending), return_when=FIRST_COMPLETED)
        collect_finished()
    return [outcomes[e.key] for e in entries]


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
    """Rows matching all given filters: ``text`` (case-insensitive, in subject/testcase/ops/module; a JAX function's
    name such as ``jnp.cumsum`` also finds the rows of the primitives it binds: :mod:`coverage_search`), areas,
    statuses."""
    terms = search_terms(text)
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
        if terms.texts and not any(term in haystack for term in terms.texts) and not _binds(entry, terms):
            continue
        kept.append(entry)
    # a JAX function's own primitives first ('jnp.matmul': dot_general before the rows merely mentioning MatMul)
    return sorted(kept, key=lambda entry: not _binds(entry, terms))


def _binds(entry: CoverageEntry, terms: SearchTerms) -> bool:
    """Whether ``entry`` is a row of a primitive the searched JAX function binds."""
    return entry.direction == "JAX → ONNX" and entry.subject in terms.primitives


__all__ = [
    "AREAS", "COLUMNS", "KNOWN_FAILURE", "NO_CASE", "CoverageEntry", "CoverageWorkers", "Outcome", "STATUSES", "api_area",
    "catalogue", "contrib_outcome", "coverage_frame", "coverage_workers", "emitter_outcome", "filter_entries", "forget_outcomes",
    "last_outcome", "run_entries", "status_of", "summary_frame", "workers_pay",
]
