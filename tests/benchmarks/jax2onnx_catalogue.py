"""Measurement (not a CI test): jax2onnx's own testcase catalogue converted by the workbench and by jax2onnx.

jax2onnx declares ~1,770 testcases inside its plugins (a callable, input shapes/dtypes or values,
tolerances). This script imports its plugin registry, runs every testcase through both converters
with one procedure, and prints the pass rates side by side:

- inputs: ``input_values`` as given, else random data for ``input_shapes``/``input_dtypes``
  (symbolic dims exported symbolic, run at size 3); the float32 variant, or the float64 one for
  ``run_only_f64_variant`` cases (exported with double precision);
- ``input_params`` (e.g. ``deterministic=True``) are bound as keyword arguments for the workbench and
  passed as jax2onnx's ``input_params`` (its own mechanism);
- pass = the export succeeds, onnxruntime runs it, and every output matches JAX (``jax.jit``) within
  the testcase's tolerance (jax2onnx's ``allclose`` defaults rtol 1e-3, atol 1e-5 otherwise; complex
  outputs may come back as a trailing real/imag axis); ``skip_numeric_validation`` cases pass when
  they export and run.

jax2onnx must be installed in its own virtualenv together with the workbench (editable), e.g.::

    python3 -m venv /work/venv-jax2onnx
    /work/venv-jax2onnx/bin/pip install jax2onnx==0.17.1 -e .
    python tests/benchmarks/jax2onnx_catalogue.py --python /work/venv-jax2onnx/bin/python

Each tool runs in worker processes of that interpreter (restarted after a crash), one testcase at a
time with a time limit; results go to ``test-output/jax2onnx_catalogue_<tool>.jsonl`` (a run resumes
where the last one stopped; the last line for a testcase counts).

``--tools to_jax`` measures the other direction on the same catalogue: jax2onnx's export of each case
is read back by ``wb.to_jax``, and the generated code, run eagerly and under ``jax.jit``, is compared with
onnxruntime on the same file (tests/benchmarks/catalogue_to_jax.py has the procedure, the statuses and
the summary: pass rate, failures grouped by cause, eager-only cases, jax2onnx's and onnxruntime's own).

``--only SUBSTRING`` (repeatable) re-runs just the testcases whose id contains one of the substrings,
with the same procedure for both tools, appending to the same files, so after a fix to a few handler
families the summary covers the whole catalogue with those families' new results.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPOSITORY = Path(__file__).resolve().parents[2]
SYMBOL_SIZE = 3
DEFAULT_RTOL, DEFAULT_ATOL = 1e-3, 1e-5
CASE_SECONDS = 120


# ----------------------------------------------------------------------------- worker side
def _catalogue() -> list[tuple[str, dict[str, Any]]]:
    """(id, testcase dict) for every testcase of every jax2onnx plugin and example, in a stable order."""
    from jax2onnx.plugins import plugin_system

    plugin_system.import_all_plugins()
    found: list[tuple[str, dict[str, Any]]] = []
    for name, plugin in sorted(plugin_system.PLUGIN_REGISTRY.items()):
        metadata = getattr(plugin, "metadata", None) or {}
        for case in metadata.get("testcases", []) or []:
            found.append((f"plugin:{name}::{case.get('testcase')}", case))
    for name, metadata in sorted(plugin_system.EXAMPLE_REGISTRY.items()):
        for case in metadata.get("testcases", []) or []:
            found.append((f"example:{name}::{case.get('testcase')}", case))
    return found


def _specs_and_arrays(case: dict[str, Any], x64: bool) -> tuple[list[Any], list[Any]]:
    import jax
    import numpy as np

    rng = np.random.default_rng(0)
    if "input_values" in case:
        arrays = [np.asarray(v) for v in case["input_values"]]
        return arrays, arrays
    shapes = case.get("input_shapes", [])
    dtypes = case.get("input_dtypes") or [None] * len(shapes)
    specs, arrays = [], []
    for shape, dtype in zip(shapes, dtypes):
        dtype = np.dtype(dtype) if dtype is not None else np.dtype(np.float64 if x64 else np.float32)
        if x64 and dtype == np.dtype(np.float32) and case.get("input_dtypes") is None:
            dtype = np.dtype(np.float64)
        concrete = tuple(SYMBOL_SIZE if isinstance(d, str) else int(d) for d in shape)
        specs.append(jax.ShapeDtypeStruct(tuple(shape), dtype))
        if dtype == np.dtype(bool):
            arrays.append(rng.integers(0, 2, concrete).astype(bool))
        elif np.issubdtype(dtype, np.integer):
            arrays.append(rng.integers(0, 4, concrete).astype(dtype))
        elif np.issubdtype(dtype, np.complexfloating):
            arrays.append((rng.standard_normal(concrete) + 1j * rng.standard_normal(concrete)).astype(dtype))
        else:
            arrays.append(rng.standard_normal(concrete).astype(dtype))
    return specs, arrays


def _matches(got: Any, expected: Any, rtol: float, atol: float) -> str:
    import numpy as np

    expected = np.asarray(expected)
    got = np.asarray(got)
    if np.iscomplexobj(expected) and not np.iscomplexobj(got) and got.shape == (*expected.shape, 2):
        expected = np.stack([expected.real, expected.imag], axis=-1)
    if got.shape != expected.shape:
        return f"shape {got.shape} vs JAX {expected.shape}"
    if expected.dtype == bool or np.issubdtype(expected.dtype, np.integer):
        return "" if np.array_equal(got, expected) else "integer/bool values differ"
    close = np.allclose(got.astype(np.complex128), expected.astype(np.complex128), rtol=rtol, atol=atol, equal_nan=True)
    return "" if close else f"max abs error {float(np.max(np.abs(got.astype(np.complex128) - expected))):.3g}"


def _export(tool: str, fn: Any, specs: list[Any], params: dict[str, Any], x64: bool) -> Any:
    """The ONNX model of ``fn``: the workbench's (``ours``) or jax2onnx's (``jax2onnx``, ``to_jax``)."""
    import functools

    if tool == "ours":
        import workbench as wb

        bound = functools.partial(fn, **params) if params else fn
        return wb.to_onnx(bound, specs, enable_double_precision=x64)
    from jax2onnx import to_onnx

    return to_onnx(fn, specs, input_params=params or None, enable_double_precision=x64)


def _feeds(session: Any, arrays: list[Any], params: dict[str, Any], x64: bool) -> list[Any]:
    """The arrays onnxruntime's ``session`` takes, in its inputs' order."""
    import numpy as np

    feeds = []
    for index, info in enumerate(session.get_inputs()):
        if index < len(arrays):
            array = np.asarray(arrays[index])
            if np.iscomplexobj(array) and "complex" not in info.type:  # complex carried as (real, imag)
                array = np.stack([array.real, array.imag], axis=-1)
            if not x64 and array.dtype in (np.float64, np.int64):  # what JAX itself makes of it in x32
                array = array.astype(np.float32 if array.dtype == np.float64 else np.int32)
            feeds.append(array)
        else:  # jax2onnx's input_params become graph inputs
            feeds.append(np.asarray(params[info.name]))
    return feeds


def _run_case(tool: str, case: dict[str, Any]) -> tuple[str, str]:
    """(status, detail) of one testcase; ``to_jax``: jax2onnx's export read back by the workbench
    (catalogue_to_jax.py), else the export by ``tool`` against JAX."""
    import functools

    import jax
    import numpy as np
    import onnxruntime as ort

    x64 = bool(case.get("run_only_f64_variant") or case.get("enable_double_precision"))
    fn = case["callable"]
    if getattr(fn, "__jax2onnx_factory__", False):  # construct_and_call(...): a module built for the dtype
        fn = fn.with_dtype(np.float64 if x64 else np.float32).instantiate()
    params = dict(case.get("input_params") or {})
    with jax.enable_x64(x64):
        specs, arrays = _specs_and_arrays(case, x64)
        try:
            model = _export(tool, fn, specs, params, x64)
        except Exception as error:  # noqa: BLE001 - every failure is this case's result
            unsupported = getattr(error, "primitives", None)
            if unsupported:  # the workbench's UnsupportedPrimitiveError: name them
                return "export", "unsupported: " + ", ".join(
                    f"{p.name}" + (f" ({p.reason[:80]})" if p.reason else "") for p in unsupported)
            detail = f"{type(error).__name__}: {str(error).splitlines()[0][:300] if str(error) else ''}"
            return ("source-export" if tool == "to_jax" else "export"), detail
        try:
            session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
            feeds = _feeds(session, arrays, params, x64)
            got = session.run(None, {info.name: array for info, array in zip(session.get_inputs(), feeds)})
        except Exception as error:  # noqa: BLE001
            return ("source-runtime" if tool == "to_jax" else "runtime"), \
                f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"
    if tool == "to_jax":  # outside enable_x64: the generated module turns it on for its 64-bit graphs itself
        from tests.benchmarks.catalogue_to_jax import check_generated

        return check_generated(model, feeds, got)
    with jax.enable_x64(x64):
        if case.get("skip_numeric_validation"):
            return "pass", ""
        try:
            call = functools.partial(fn, **params) if params else fn
            try:
                expected = jax.tree_util.tree_leaves(jax.jit(call)(*arrays))
            except TypeError:  # a callable jit cannot take (unhashable static parts): run it eagerly
                expected = jax.tree_util.tree_leaves(call(*arrays))
        except Exception as error:  # noqa: BLE001 - JAX itself cannot run the case: not the converter's fault
            return "jax", f"{type(error).__name__}: {str(error).splitlines()[0][:200] if str(error) else ''}"
    if len(got) != len(expected):
        return "numeric", f"{len(got)} outputs vs JAX {len(expected)}"
    rtol = case.get("rtol_f64" if x64 else "rtol", DEFAULT_RTOL) or DEFAULT_RTOL
    atol = case.get("atol_f64" if x64 else "atol", DEFAULT_ATOL) or DEFAULT_ATOL
    for index, (g, e) in enumerate(zip(got, expected)):
        problem = _matches(g, e, rtol, atol)
        if problem:
            return "numeric", f"output {index}: {problem}"
    return "pass", ""


def _selected(case_id: str, only: list[str]) -> bool:
    return not only or any(part in case_id for part in only)


def worker(tool: str, out_path: Path, only: list[str], since_line: int) -> int:
    """Run every selected case not yet in ``out_path`` after its first ``since_line`` lines (one JSON line
    each; a 'crash' placeholder before each case, replaced by the result line)."""
    import signal

    done = set()
    if out_path.exists():
        for line in out_path.read_text().splitlines()[since_line:]:
            record = json.loads(line)
            done.add(record["id"])

    def timeout(signum: int, frame: Any) -> None:
        raise TimeoutError(f"more than {CASE_SECONDS} s")

    signal.signal(signal.SIGALRM, timeout)
    with out_path.open("a") as out:
        for case_id, case in _catalogue():
            if case_id in done or not _selected(case_id, only):
                continue
            out.write(json.dumps({"id": case_id, "status": "crash", "detail": "the worker died on this case"}) + "\n")
            out.flush()
            start = time.perf_counter()
            signal.alarm(CASE_SECONDS)
            try:
                status, detail = _run_case(tool, case)
            except TimeoutError as error:
                status, detail = "timeout", str(error)
            except Exception as error:  # noqa: BLE001
                status, detail = "error", f"{type(error).__name__}: {error}"[:300]
            finally:
                signal.alarm(0)
            out.write(json.dumps({"id": case_id, "status": status, "detail": detail,
                                  "seconds": round(time.perf_counter() - start, 3)}) + "\n")
            out.flush()
    return 0


# ----------------------------------------------------------------------------- driver side
def _latest(path: Path) -> dict[str, dict[str, Any]]:
    records: dict[str, dict[str, Any]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            record = json.loads(line)
            records[record["id"]] = record  # the result line replaces its 'crash' placeholder
    return records


def drive(python: str, tools: list[str], fresh: bool, only: list[str]) -> None:
    out_dir = REPOSITORY / "test-output"
    out_dir.mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(REPOSITORY), "JAX_PLATFORMS": "cpu"}
    for tool in tools:
        path = out_dir / f"jax2onnx_catalogue_{tool}.jsonl"
        if fresh and path.exists():
            path.unlink()
        # with --only, the selected cases run again even if earlier lines hold results for them
        since_line = len(path.read_text().splitlines()) if only and path.exists() else 0
        command = [python, __file__, "--worker", tool, "--out", str(path), "--since-line", str(since_line)]
        command += [f"--only={part}" for part in only]
        for _attempt in range(200):  # a crash ends a worker; the next one resumes after that case
            run = subprocess.run(command, env=env, check=False)
            if run.returncode == 0:
                break
    summarize(tools, only)


def summarize(tools: list[str], only: list[str] | None = None) -> None:
    out_dir = REPOSITORY / "test-output"
    if "to_jax" in tools:
        sys.path.insert(0, str(REPOSITORY))
        from tests.benchmarks.catalogue_to_jax import summarize as summarize_to_jax

        records = _latest(out_dir / "jax2onnx_catalogue_to_jax.jsonl")
        summarize_to_jax({k: r for k, r in records.items() if _selected(k, only or [])})
        tools = [tool for tool in tools if tool != "to_jax"]
        if not tools:
            return
    results = {tool: _latest(out_dir / f"jax2onnx_catalogue_{tool}.jsonl") for tool in tools}
    print(f"{'tool':10} {'cases':>6} {'pass':>6} {'rate':>7}  failures by kind")
    for tool, records in results.items():
        counts = collections.Counter(r["status"] for r in records.values())
        passed = counts.pop("pass", 0)
        total = len(records)
        kinds = ", ".join(f"{k} {v}" for k, v in counts.most_common())
        print(f"{tool:10} {total:6d} {passed:6d} {100.0 * passed / max(total, 1):6.1f}%  {kinds}")
    finished = [{k for k, r in records.items() if r["status"] != "crash"} for records in results.values()]
    if len(results) == 2 and finished[0] != finished[1]:  # a run still going: compare on the cases both finished
        common = finished[0] & finished[1]
        rates = ", ".join(
            f"{tool} {100.0 * sum(records[k]['status'] == 'pass' for k in common) / max(len(common), 1):.1f}%"
            for tool, records in results.items())
        print(f"on the {len(common)} cases both have finished: {rates}")
    if only:
        selected = [k for k in set.intersection(*finished) if _selected(k, only)] if finished else []
        rates = ", ".join(f"{tool} {sum(records[k]['status'] == 'pass' for k in selected)}/{len(selected)}"
                          for tool, records in results.items())
        print(f"the {len(selected)} cases matching --only {only}: {rates}")
    if "ours" in results:
        reasons = collections.Counter()
        for record in results["ours"].values():
            if record["status"] != "pass":
                reasons[f"{record['status']}: {record['detail'][:110]}"] += 1
        print("\nworkbench failures, most frequent first:")
        for reason, count in reasons.most_common(40):
            print(f"  {count:4d}  {reason}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable, help="interpreter with jax2onnx and the workbench installed")
    parser.add_argument("--tools", default="ours,jax2onnx",
                        help="comma-separated: ours, jax2onnx (each tool's export against JAX), to_jax "
                             "(jax2onnx's export read back by wb.to_jax, against onnxruntime)")
    parser.add_argument("--fresh", action="store_true", help="discard earlier results instead of resuming")
    parser.add_argument("--summary", action="store_true", help="only print the summary of earlier results")
    parser.add_argument("--only", action="append", default=[], metavar="SUBSTRING",
                        help="re-run only the testcases whose id contains SUBSTRING (repeatable)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--since-line", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.worker, Path(args.out), args.only, args.since_line)
    tools = [t for t in args.tools.split(",") if t]
    if args.summary:
        summarize(tools, args.only)
    else:
        drive(args.python, tools, args.fresh, args.only)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
