"""How long the coverage explorer's "run shown" takes in a fresh kernel: with worker processes or without.

Usage (from the repository root; both variants run in interleaved rounds, as the machine is shared):

    python tests/benchmarks/bench_coverage.py --rounds 2

Each scenario starts a fresh kernel (its own, empty JAX cache folder), creates ``wb.coverage()``,
filters the rows and calls ``explorer.run_shown()`` twice on two row sets (the second run sees warm
workers), once with ``explorer.use_workers = True`` (worker processes whatever the machine) and once
with ``False`` (every row in the kernel, one by one: what "run shown" did before, apart from
reporting rows as they finish). Reported:
seconds to the first row's result and to the last.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient

SCENARIOS = {
    "2 jnp cumsum rows, then 8 cumsum rows": (("cumsum", "jnp"), ("cumsum", "(all)")),
    "3 zoo CNNs, then 2 zoo MLPs": (("_cnn", "(all)"), ("_mlp()", "(all)")),
    "35 lax conv rows, then the cumsum rows": (("conv", "lax"), ("cumsum", "(all)")),
}

CELL = """\
import json, time, workbench as wb
explorer = wb.coverage()
explorer.use_workers = {workers!r}
timings = []
for text, area in {sets!r}:
    explorer.search.value, explorer.area.value = text, area
    start, first = time.perf_counter(), []
    explorer.rows.observe(lambda change: first or first.append(time.perf_counter() - start), names="options")
    explorer.run_shown()
    timings.append({{"rows": len(explorer.shown), "first": first[0] if first else None,
                    "all": time.perf_counter() - start, "summary": explorer.summary()}})
print("RESULT", json.dumps(timings))
"""


def run(checkout: Path, sets: tuple[tuple[str, str], ...], workers: bool) -> list[dict]:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(CELL.format(sets=sets, workers=workers))])
    with tempfile.TemporaryDirectory() as cache:
        env = {"PYTHONPATH": str(checkout), "XDG_CACHE_HOME": cache}
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            NotebookClient(nb, timeout=1800, kernel_name="python3").execute()
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    text = "".join(o.get("text", "") for o in nb.cells[0].outputs)
    return json.loads(text.split("RESULT ", 1)[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    table: dict[tuple[str, str, int], list[dict]] = {}
    for round_ in range(args.rounds):
        for name, sets in SCENARIOS.items():
            for workers in (True, False):  # interleaved: load changes on the shared machine hit both
                variant = "workers" if workers else "kernel only"
                for index, timing in enumerate(run(Path.cwd(), sets, workers)):
                    table.setdefault((name, variant, index), []).append(timing)
                    print(round_, name, variant, index, timing, flush=True)
    print(f"\n{os.cpu_count()} cores")
    print("\n| scenario | run | variant | rows | first result, s (median) | all rows, s (median) |")
    print("|---|---|---|---:|---:|---:|")
    for (name, checkout, index), timings in table.items():
        firsts = [t["first"] for t in timings if t["first"] is not None]
        print(
            f"| {name} | {index + 1} | {checkout} | {timings[0]['rows']} | "
            f"{statistics.median(firsts) if firsts else float('nan'):.1f} | {statistics.median(t['all'] for t in timings):.1f} |"
        )


if __name__ == "__main__":
    main()
