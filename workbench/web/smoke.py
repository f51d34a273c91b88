"""Smoke-test a harness folder in headless Chromium and compare its numbers with the manifest.

The folder is served on 127.0.0.1 (ephemeral port), opened in the system's Chromium through
the ``playwright`` package (never a Playwright-downloaded browser), and the page's
``window.workbenchTelemetry`` is read once it leaves the ``running`` state. Every request the
page makes is recorded; anything not on 127.0.0.1 is blocked and fails the report.
"""

from __future__ import annotations

import concurrent.futures
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from workbench.errors import SpecError, WorkbenchError
from workbench.web import harness, tensors
from workbench.web.server import HarnessServer

TELEMETRY_SCHEMA = "workbench_web_telemetry_v1"
DEFAULT_BROWSER = "/usr/bin/chromium"
CHROMIUM_ARGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run",
)  # fmt: skip
_DONE = "() => window.workbenchTelemetry !== undefined && window.workbenchTelemetry.status !== 'running'"


@dataclass(frozen=True)
class OutputParity:
    """How one browser output compares with onnxruntime (Python) on the example inputs."""

    name: str
    max_abs_error: float
    tolerance: float
    shape: tuple[int, ...] | None
    expected_shape: tuple[int, ...]
    problem: str | None = None  # set when the output is missing or has the wrong shape
    # an output over tensors.MAX_JSON_ELEMENTS is compared in the page: where its largest difference is
    # (the index into the output; () when none differs) and how many elements are not bit-identical
    worst_at: tuple[int, ...] | None = None
    differing: int | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None and self.max_abs_error <= self.tolerance


@dataclass(repr=False)  # the telemetry holds every output value: show the summary instead
class SmokeReport:
    """Result of :func:`smoke_test_web_harness`: telemetry, parity verdict and request log."""

    url: str
    telemetry: dict[str, Any]
    parity: list[OutputParity]
    requests: list[str]
    external_requests: list[str]
    failure: str | None
    expected_tokens: list[int] | None = None
    console: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    notes: list[str] = field(default_factory=list)  # what was not checked and why (an old harness's manifest)

    @property
    def passed(self) -> bool:
        return self.failure is None

    @property
    def provider_used(self) -> str | None:
        return self.telemetry.get("provider_used")

    @property
    def fallback_reasons(self) -> dict[str, str]:
        return dict(self.telemetry.get("fallback_reasons") or {})

    @property
    def missing_op(self) -> str | None:
        return self.telemetry.get("missing_op")

    @property
    def generated_tokens(self) -> list[int] | None:
        generation = self.telemetry.get("generation")
        return None if not generation else [int(t) for t in generation["tokens"]]

    def summary(self) -> str:
        lines = [f"web smoke test: {'PASSED' if self.passed else 'FAILED'} ({self.url})"]
        if self.failure:
            lines.append(f"  failure: {self.failure}")
        lines += [f"  note: {note}" for note in self.notes]
        lines.append(
            f"  provider used: {self.provider_used}; tried {self.telemetry.get('providers_tried')}"
        )
        for provider, reason in self.fallback_reasons.items():
            lines.append(f"  fell back from {provider}: {reason}")
        load_ms, run_ms = self.telemetry.get("load_ms"), self.telemetry.get("run_ms")
        if load_ms is not None and run_ms is not None:
            lines.append(f"  load {load_ms:.1f} ms, first run {run_ms:.2f} ms")
        for item in self.parity:
            verdict = "ok" if item.ok else f"FAIL ({item.problem or 'above tolerance'})"
            in_page = (f", compared in the page: the largest at {list(item.worst_at)}, {item.differing:,} of "
                       f"{math.prod(item.expected_shape):,} elements not bit-identical") if item.worst_at is not None else ""  # fmt: skip
            lines.append(
                f"  {item.name}: max abs error {item.max_abs_error:.3g} "
                f"(tolerance {item.tolerance:.3g}{in_page}) {verdict}"
            )
        if self.expected_tokens is not None:
            lines.append(f"  generated {self.generated_tokens}, expected {self.expected_tokens}")
        lines.append(f"  {len(self.requests)} requests, {len(self.external_requests)} outside 127.0.0.1")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def __repr__(self) -> str:
        return f"<SmokeReport {'passed' if self.passed else 'FAILED'}>\n{self.summary()}"


def _is_local(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme in ("data", "blob"):
        return True
    return parts.scheme in ("http", "https", "ws") and parts.hostname == "127.0.0.1"


def _read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / harness.MANIFEST_NAME
    if not path.is_file():
        raise WorkbenchError(f"{folder} is not a web harness: {harness.MANIFEST_NAME} is missing; "
                             "create one with workbench.export_web_harness(...)")  # fmt: skip
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if manifest.get("format") != harness.MANIFEST_FORMAT:
        raise WorkbenchError(f"{path} has format {manifest.get('format')!r}, expected {harness.MANIFEST_FORMAT!r}")
    model = manifest["model"]
    expected_files = [entry for entry in manifest["expected_outputs"].values() if "file" in entry]
    inputs = [{"file": manifest["example_inputs"], "sha256": manifest["example_inputs_sha256"]}] if (
        "example_inputs_sha256" in manifest) else []  # absent from harnesses written before it was added
    for entry in [{"file": model["file"], "sha256": model["sha256"]}, *model["external_data"], *expected_files, *inputs]:
        file = folder / entry["file"]
        if not file.is_file() or harness._sha256(file) != entry["sha256"]:
            raise WorkbenchError(
                f"{file} is missing or does not match the sha256 in {harness.MANIFEST_NAME}; export the harness again"
            )
    return manifest


def manifest_notes(manifest: dict[str, Any]) -> list[str]:
    """What a smoke test of this harness cannot check, in words for its report (nothing for a current harness)."""
    if "example_inputs_sha256" in manifest:
        return []
    return [
        f"{harness.MANIFEST_NAME} has no example_inputs_sha256 (written before it was recorded): "
        f"{manifest['example_inputs']} was not checked against a digest, so the page ran on whatever inputs it "
        "holds now; export the harness again to have them checked"
    ]


def compare_outputs(manifest: dict[str, Any], telemetry: dict[str, Any], folder: Path | None = None) -> list[OutputParity]:
    """Per output: max abs error of the browser's values against the manifest's expected ones (read from
    ``folder``, the harness, for an output the manifest keeps in a file: the page compared those itself).

    The relative tolerance is at least the output dtype's epsilon: one unit in the last place of its largest
    value, by which two runtimes computing in float16 may round a result differently (2^-10 for float16)."""
    atol = float(manifest["tolerance"]["atol"])
    rtol = float(manifest["tolerance"]["rtol"])
    got = telemetry.get("outputs") or {}
    results: list[OutputParity] = []
    for name, payload in manifest["expected_outputs"].items():
        in_file = "file" in payload
        if in_file and folder is None:
            raise ValueError(f"output {name!r} is expected from {payload['file']}: pass the harness folder")
        expected = tensors.tensor_from_file(payload, folder) if in_file else tensors.tensor_from_json(payload)
        exact = not np.issubdtype(expected.dtype, np.floating)
        finite = np.abs(expected[np.isfinite(expected)]) if not exact else np.abs(expected)
        tolerance = 0.0 if exact else atol + max(rtol, float(np.finfo(expected.dtype).eps)) * float(finite.max(initial=0.0))
        record = got.get(name)
        if record is None:
            results.append(OutputParity(name, math.inf, tolerance, None, expected.shape, "missing in browser"))
            continue
        shape = tuple(int(d) for d in record["shape"])
        if shape != expected.shape:
            results.append(OutputParity(name, math.inf, tolerance, shape, expected.shape, "shape differs"))
            continue
        if in_file:
            results.append(_compared_in_page(name, record, expected, tolerance))
            continue
        if record.get("data") is None:
            results.append(OutputParity(name, math.inf, tolerance, shape, expected.shape, "no values reported"))
            continue
        if exact:  # integers compared as Python ints: int64 beyond 2^53 arrives as a decimal string
            differ = [abs(int(a) - int(w)) for a, w in zip(record["data"], expected.reshape(-1).tolist(), strict=True)
                      if int(a) != int(w)]  # fmt: skip
            results.append(OutputParity(name, float(max(differ, default=0)), tolerance, shape, expected.shape))
            continue
        actual = np.asarray(
            [float(v) if v is not None else math.nan for v in record["data"]], dtype=np.float64
        ).reshape(shape)
        want = expected.astype(np.float64)
        same = (actual == want) | (np.isnan(actual) & np.isnan(want))
        with np.errstate(invalid="ignore"):  # inf - inf where both are inf: masked by ``same``
            error = float(np.abs(actual - want)[~same].max(initial=0.0))
        if np.isnan(error):
            error = math.inf
        results.append(OutputParity(name, error, tolerance, shape, expected.shape))
    return results


def _compared_in_page(name: str, record: dict[str, Any], expected: np.ndarray, tolerance: float) -> OutputParity:
    """The parity of an output the page compared with the expected file itself (``record["comparison"]``).

    The page's first values (``sample``) are checked here against the file too, so a page comparing
    something else than the output it reports cannot pass.
    """
    comparison = record.get("comparison")
    shape = tuple(int(d) for d in record["shape"])
    if not comparison or int(comparison["elements"]) != expected.size:
        return OutputParity(name, math.inf, tolerance, shape, expected.shape, "the page reported no comparison of "
                            f"its {expected.size:,} elements with the expected file")  # fmt: skip
    page_error = float(comparison["max_abs_error"])  # "Infinity" for a NaN against a number
    sample = np.asarray([float(v) if v is not None else math.nan for v in record["sample"]], np.float64)
    want = expected.reshape(-1)[: sample.size].astype(np.float64)
    same = (sample == want) | (np.isnan(sample) & np.isnan(want))
    with np.errstate(invalid="ignore"):
        sample_error = float(np.abs(sample - want)[~same].max(initial=0.0))
    error = max(page_error, math.inf if np.isnan(sample_error) else sample_error)
    worst = int(comparison["worst_index"])
    worst_at = tuple(int(i) for i in np.unravel_index(worst, expected.shape)) if worst >= 0 else ()
    return OutputParity(name, error, tolerance, shape, expected.shape, worst_at=worst_at,
                        differing=int(comparison["differing"]))  # fmt: skip


def _verdict(manifest: dict[str, Any], telemetry: dict[str, Any], parity: list[OutputParity],
             external: list[str], timed_out: str | None) -> str | None:  # fmt: skip
    if external:
        return f"the page requested {len(external)} URL(s) outside 127.0.0.1: {external[:3]}"
    if timed_out:
        return timed_out
    if telemetry.get("schema") != TELEMETRY_SCHEMA:
        return f"the page published telemetry schema {telemetry.get('schema')!r}, expected {TELEMETRY_SCHEMA!r}"
    if telemetry.get("status") != "ok":
        op = telemetry.get("missing_op")
        prefix = f"onnxruntime-web has no kernel for op {op!r}: " if op else "the page failed: "
        return prefix + str(telemetry.get("error"))
    bad = [p for p in parity if not p.ok]
    if bad:
        return "outputs differ from onnxruntime (Python): " + ", ".join(
            f"{p.name} ({p.problem or f'max abs error {p.max_abs_error:.3g} > {p.tolerance:.3g}'})" for p in bad
        )
    generation = manifest.get("generation")
    if generation:
        tokens = (telemetry.get("generation") or {}).get("tokens")
        if tokens != generation["expected_tokens"]:
            return f"greedy generation gave {tokens}, onnxruntime (Python) gave {generation['expected_tokens']}"
    return None


_PageResult = tuple[dict[str, Any], list[str], list[str], list[str], str | None]


def _open_page(browser: Any, url: str, timeout_s: float) -> _PageResult:
    """Open ``url`` in a fresh context of ``browser``; return telemetry, requests, blocked requests, console,
    timeout note. The context (its page, its wasm memory) is closed before returning."""
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import Route

    requests: list[str] = []
    external: list[str] = []
    console: list[str] = []
    timed_out: str | None = None

    def guard(route: Route) -> None:
        if _is_local(route.request.url):
            route.continue_()
        else:
            external.append(route.request.url)
            route.abort("blockedbyclient")

    context = browser.new_context(service_workers="block")
    try:
        context.route("**/*", guard)
        page = context.new_page()
        snapshots: list[dict[str, Any]] = []

        def remember(snapshot: dict[str, Any]) -> None:
            snapshots.append(snapshot)

        page.expose_function("workbenchPublishTelemetry", remember)
        page.on("request", lambda request: requests.append(request.url))
        page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
        page.on("pageerror", lambda error: console.append(f"pageerror: {error}"))
        deadline_ms = timeout_s * 1000
        try:
            page.goto(url + "index.html", timeout=deadline_ms)
            page.wait_for_function(_DONE, timeout=deadline_ms)
        except PlaywrightError as e:
            timed_out = f"no result from the page within {timeout_s:g} s ({str(e).splitlines()[0]})"
        if timed_out is None:
            telemetry = page.evaluate("() => window.workbenchTelemetry")
        else:
            # the page may be busy or navigating: never evaluate in it again, use its last snapshot
            telemetry = snapshots[-1] if snapshots else {}
    finally:
        context.close()
    return telemetry, requests, external, console, timed_out


def _drive_browser(folders: list[Path], executable: str, timeout_s: float) -> list[tuple[str, _PageResult, float]]:
    """Serve each folder in turn and open it in one headless Chromium; per folder its URL, page result and
    seconds (serving and the page; the browser's launch is not in it)."""
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    results: list[tuple[str, _PageResult, float]] = []
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(
                executable_path=executable, args=list(CHROMIUM_ARGS), headless=True
            )
        except PlaywrightError as e:
            raise WorkbenchError(f"could not start Chromium at {executable}: {e}") from e
        try:
            for folder in folders:
                started = time.perf_counter()
                with HarnessServer(folder) as server:
                    result = _open_page(browser, server.url, timeout_s)
                results.append((server.url, result, time.perf_counter() - started))
        finally:
            browser.close()
    return results


def _executable(browser: str | Path | None) -> Path:
    executable = Path(browser if browser is not None else DEFAULT_BROWSER)
    if not executable.is_file():
        raise WorkbenchError(
            f"Chromium was not found at {executable}; install it (Debian: `apt-get install -y chromium`) "
            "or pass browser='/path/to/chromium'"
        )
    return executable


def _report(manifest: dict[str, Any], folder: Path, url: str, result: _PageResult, elapsed_s: float) -> SmokeReport:
    telemetry, requests, external, console, timed_out = result
    parity = compare_outputs(manifest, telemetry, folder) if telemetry.get("status") == "ok" else []
    generation = manifest.get("generation")
    return SmokeReport(
        url=url, telemetry=telemetry, parity=parity, requests=requests, external_requests=external,
        failure=_verdict(manifest, telemetry, parity, external, timed_out),
        expected_tokens=None if not generation else list(generation["expected_tokens"]),
        console=console, elapsed_s=elapsed_s, notes=manifest_notes(manifest),
    )  # fmt: skip


def smoke_test_web_harnesses(
    out_dirs: Sequence[str | Path], *, browser: str | Path | None = None, timeout: float = 60
) -> list[SmokeReport]:
    """:func:`smoke_test_web_harness` for several folders with one Chromium (one launch, one page each).

    Each folder is served on its own ephemeral port and opened in a fresh browser context, closed before
    the next one opens. The reports come in the order of ``out_dirs``; ``timeout`` applies to each page.
    """
    if isinstance(out_dirs, (str, bytes, os.PathLike)) or not isinstance(out_dirs, Sequence):
        raise SpecError(f"out_dirs: expected a list of harness folders, got {type(out_dirs).__name__}; "
                        "for one folder call smoke_test_web_harness(out_dir).")
    for out_dir in out_dirs:
        if not isinstance(out_dir, (str, os.PathLike)):
            raise SpecError(f"out_dir: expected a harness folder (str or os.PathLike), got {type(out_dir).__name__}.")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise SpecError(f"timeout: expected a number of seconds > 0, got {timeout!r}.")
    folders = [Path(d) for d in out_dirs]
    manifests = [_read_manifest(folder) for folder in folders]
    executable = _executable(browser)
    if not folders:
        return []
    started = time.perf_counter()
    # Playwright's sync API refuses to run inside an asyncio loop (Jupyter): use a worker thread.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        results = pool.submit(_drive_browser, folders, str(executable), float(timeout)).result()
    elapsed = time.perf_counter() - started
    # one folder: the whole call (with Chromium's launch), as smoke_test_web_harness always reported
    return [_report(m, folder, url, result, elapsed if len(folders) == 1 else seconds)
            for m, folder, (url, result, seconds) in zip(manifests, folders, results, strict=True)]  # fmt: skip


def smoke_test_web_harness(
    out_dir: str | Path, *, browser: str | Path | None = None, timeout: float = 60
) -> SmokeReport:
    """Serve ``out_dir`` on 127.0.0.1, run its page in headless Chromium and check the results.

    ``browser`` is the Chromium executable (default ``/usr/bin/chromium``, Debian's package).
    The report fails (it does not raise) when the page errors (e.g. an op onnxruntime-web lacks:
    ``report.missing_op`` names it), times out, requests anything outside 127.0.0.1, or gives
    outputs or generated tokens that differ from onnxruntime in Python beyond the manifest's
    tolerance. It raises :class:`WorkbenchError` when the folder or the browser is unusable.
    """
    (report,) = smoke_test_web_harnesses([out_dir], browser=browser, timeout=timeout)
    return report
