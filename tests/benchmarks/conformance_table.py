"""Run the ONNX node conformance suite; write the per-op table (docs/onnx_conformance.md).

Usage (from the repository root):

    PYTHONPATH=. python tests/benchmarks/conformance_table.py [--jobs 2] [--out docs/onnx_conformance.md]
        [--write-expected]

``--write-expected`` rewrites workbench/onnx_to_jax/expected_failures.py from this run: every failing case is
listed, keeping the reason already written there for cases that still fail, and giving new failures a
reason from their error (review those by hand before committing).
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import onnx.defs

from tests.support.conformance_cases import CaseResult, collect_cases, run_all
from tests.support.conformance_expected_failures import EXPECTED_FAILURES
from tests.onnx_to_jax.test_onnx_conformance import expected_failure_reason

EXPECTED_FILE = Path("workbench/onnx_to_jax/expected_failures.py")

# ops whose cases fail for a reason of principle, not a missing emitter
_STRING_OPS = {"StringSplit", "StringNormalizer", "StringConcat", "RegexFullMatch", "LabelEncoder", "TfIdfVectorizer"}
_SEQUENCE_OPS = {"SequenceMap", "SequenceEmpty", "SequenceLength", "SequenceInsert", "SequenceConstruct",
                 "SequenceAt", "SequenceErase", "SplitToSequence", "ConcatFromSequence", "Optional",
                 "OptionalHasElement", "OptionalGetElement"}
_RANDOM_OPS = {"Bernoulli", "RandomUniformLike", "RandomNormalLike", "RandomUniform", "RandomNormal", "Multinomial"}


def op_of_case(result: CaseResult, op_names: list[str]) -> str:
    """The ONNX op a case tests: its only op, else from its name (test_<op>_...), longest match first."""
    if len(result.ops) == 1:
        return result.ops[0]
    stem = result.name.removeprefix("test_").replace("_", "")
    for op in op_names:
        if stem.startswith(op.lower()):
            return op
    return "(other)"


def classify(result: CaseResult) -> str:
    """A first reason for a new failure, from the ops it uses and its error."""
    ops = set(result.ops)
    error = result.reason
    for domain in ("ai.onnx.preview.training", "ai.onnx.preview", "ai.onnx.ml"):
        if f"({domain}::" in error:
            return f"operator domain {domain!r} is not supported (only the default ONNX domain)"
    if ops & _STRING_OPS or "string" in error.lower():
        return "string tensors have no JAX equivalent"
    if ops & _SEQUENCE_OPS or "sequence_type" in error or "optional_type" in error:
        return "sequences and optionals have no JAX equivalent"
    if ops & _RANDOM_OPS or "training mode is random" in error:
        return "random sampling: the values cannot match the reference's random generator"
    if "no JAX emitter" in error:
        return f"no emitter yet for {', '.join(sorted(ops))}"
    return f"numerical mismatch: {error}"


def run_parallel(cases: list, jobs: int) -> list[CaseResult]:
    if jobs <= 1:
        return run_all(cases)
    names = [c.name for c in cases]
    with ProcessPoolExecutor(jobs) as pool:
        parts = list(pool.map(_run_part, [(i, jobs) for i in range(jobs)]))
    by_name = {r.name: r for part in parts for r in part}
    return [by_name[n] for n in names]


def _run_part(part: tuple[int, int]) -> list[CaseResult]:
    index, count = part
    return run_all(collect_cases()[index::count])


def write_expected(results: list[CaseResult]) -> None:
    lines = [
        '"""Every ONNX node conformance case expected to fail, with the reason (one visible list).',
        "",
        "In the package because the coverage explorer (``wb.coverage()``) shows these failures, with their",
        "reason, apart from regressions.",
        "",
        "Keys are fnmatch patterns over case names (exact names here). tests/onnx_to_jax/test_onnx_conformance.py fails when an",
        "unlisted case fails and when a listed case passes, so this list stays honest. Refresh it with",
        "`PYTHONPATH=. python tests/benchmarks/conformance_table.py --write-expected` (reasons already written here",
        "are kept). Strings, sequences, maps, optionals, other domains and random sampling stay here on purpose;",
        "the other entries are operators or details not implemented yet, or numeric differences explained inline.",
        '"""',
        "",
        "EXPECTED_FAILURES: dict[str, str] = {",
    ]
    for result in sorted((r for r in results if not r.passed), key=lambda r: r.name):
        reason = expected_failure_reason(result.name) or classify(result)
        lines.append(f"    {result.name!r}: {reason!r},")
    lines.append("}")
    lines += [
        "",
        "",
        "def expected_failure_reason(name: str) -> str | None:",
        '    """The listed reason why node case ``name`` fails, or None when it is expected to pass."""',
        "    import fnmatch",
        "",
        "    for pattern, reason in EXPECTED_FAILURES.items():",
        "        if fnmatch.fnmatchcase(name, pattern):",
        "            return reason",
        "    return None",
    ]
    EXPECTED_FILE.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_table(results: list[CaseResult], elapsed: float, jobs: int, out: Path) -> None:
    op_names = sorted({s.name for s in onnx.defs.get_all_schemas_with_history()}, key=len, reverse=True)
    by_op: dict[str, list[CaseResult]] = defaultdict(list)
    for result in results:
        by_op[op_of_case(result, op_names)].append(result)
    passed = sum(r.passed for r in results)
    lines = [
        "# ONNX node conformance of the ONNX -> JAX code generator",
        "",
        f"**{passed} / {len(results)} node cases pass ({passed / len(results):.1%})** with onnx {onnx.__version__} "
        f"(the cases are built in memory from `onnx.backend.test.case.node`; each is generated, compiled and run "
        f"through `workbench.onnx_to_jax.backend.Backend`, compared with the expected outputs at the case's tolerance).",
        "",
        f"Generated by `PYTHONPATH=. python tests/benchmarks/conformance_table.py --jobs {jobs}` "
        f"(run time {elapsed:.0f} s). Every failing case is listed with its reason in "
        "`workbench/onnx_to_jax/expected_failures.py`; `tests/onnx_to_jax/test_onnx_conformance.py` checks that list both ways.",
        "",
        "| op | cases | passed | expected failures (reason) |",
        "|---|---:|---:|---|",
    ]
    for op in sorted(by_op):
        group = by_op[op]
        failing = [r for r in group if not r.passed]
        reasons: dict[str, list[str]] = defaultdict(list)
        for r in failing:
            reasons[expected_failure_reason(r.name) or classify(r)].append(r.name)
        notes = "; ".join(
            f"{len(names)}: {reason}" if len(names) > 1 else f"`{names[0]}`: {reason}"
            for reason, names in reasons.items()
        )
        notes = notes.replace("|", "/").replace("\n", " ")
        lines.append(f"| {op} | {len(group)} | {len(group) - len(failing)} | {notes} |")
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="docs/onnx_conformance.md")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--write-expected", action="store_true", help=f"rewrite {EXPECTED_FILE} from this run")
    args = parser.parse_args()
    start = time.perf_counter()
    cases = collect_cases()
    results = run_parallel(cases, args.jobs)
    elapsed = time.perf_counter() - start
    if args.write_expected:
        write_expected(results)
    write_table(results, elapsed, args.jobs, Path(args.out))
    passed = sum(r.passed for r in results)
    unlisted = [r.name for r in results if not r.passed and r.name not in EXPECTED_FAILURES]
    print(f"{passed}/{len(results)} passed in {elapsed:.0f} s; wrote {args.out}"
          + (f"; {len(unlisted)} failing cases not in the expected list" if unlisted and not args.write_expected else ""))


if __name__ == "__main__":
    main()
