"""Benchmark: load and run times of the test models in headless Chromium (onnxruntime-web).

Prints one table row per model: export seconds, page load (model fetch + session creation),
first and second run in milliseconds, greedy generation time, and the max abs error against
onnxruntime in Python. Run from the repository root:
``python -m tests.benchmarks.web_harness [--providers wasm]``.
Needs ``workbench web setup`` and Chromium at /usr/bin/chromium.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

from tests.support import web_models
from workbench.web.harness import GreedyGeneration, export_web_harness
from workbench.web.smoke import smoke_test_web_harness


def main() -> None:
    parser = argparse.ArgumentParser(description="web harness timings in headless Chromium")
    parser.add_argument("--providers", nargs="+", default=["webgpu", "wasm"])
    args = parser.parse_args()
    models = {
        "mlp": (web_models.mlp(), None),
        "cnn": (web_models.cnn(), None),
        "tiny_gpt": (web_models.tiny_gpt(), GreedyGeneration(prompt=[1, 2, 3], steps=8)),
    }
    header = (f"{'model':<10} {'provider':<8} {'export s':>9} {'load ms':>9} {'run ms':>8} "
              f"{'warm ms':>8} {'gen ms':>8} {'max err':>9}")  # fmt: skip
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        for name, (model, generation) in models.items():
            start = time.perf_counter()
            info = export_web_harness(model, Path(tmp) / name, providers=tuple(args.providers), generate=generation)
            export_s = time.perf_counter() - start
            report = smoke_test_web_harness(info.out_dir, timeout=180)
            if not report.passed:
                print(f"{name:<10} FAILED: {report.failure}")
                continue
            t = report.telemetry
            gen_ms = (t.get("generation") or {}).get("ms", math.nan)
            error = max(p.max_abs_error for p in report.parity)
            print(f"{name:<10} {t['provider_used']:<8} {export_s:>9.2f} {t['load_ms']:>9.1f} {t['run_ms']:>8.2f} "
                  f"{t['warm_run_ms']:>8.2f} {gen_ms:>8.1f} {error:>9.2e}")  # fmt: skip


if __name__ == "__main__":
    main()
