"""The ONNX node conformance cases for the tests and the docs table generator.

The cases and the per-case runner live in :mod:`workbench.onnx_to_jax.node_suite` (also used by the
coverage explorer); this module adds ``run_all`` (every case, optionally printing failures).
"""

from __future__ import annotations

import time

from workbench.onnx_to_jax.node_suite import CaseResult, collect_cases, run_case, spec_element_count


def run_all(cases=None, verbose: bool = False) -> list[CaseResult]:
    cases = collect_cases() if cases is None else cases
    start = time.perf_counter()
    results = [run_case(case) for case in cases]
    if verbose:
        for result in results:
            if not result.passed:
                print(result.name, result.reason)
        print(f"{sum(r.passed for r in results)}/{len(results)} in {time.perf_counter() - start:.1f}s")
    return results


__all__ = ["CaseResult", "collect_cases", "run_all", "run_case", "spec_element_count"]
