"""Models nobody here wrote, converted, packaged for onnxruntime-web and run in headless Chromium (wasm).

For each model: ``wb.to_onnx``, :func:`workbench.export_web_harness` (wasm only: this machine has no
GPU) with the model's own example arguments, :func:`workbench.smoke_test_web_harnesses` (one Chromium
for all of them), then the browser's outputs against onnxruntime CPU on the same file (the report's
parity) and against JAX. Prints one table row per model::

    PYTHONPATH=$PWD python -m tests.benchmarks.bench_web_models [--set bench|programs|all] [--only a,b] [--external-data]

The models: the conversion benchmark's set at its ``test`` size (tests/support/benchmark_set.py), each
static and, where the set has one, with a symbolic batch (and sequence; run at batch 2), and :data:`PROGRAMS`, a slice of
the real-program catalogue chosen for op variety (attention, convolutions, scans and loops, gathers and
scatters, control flow, special functions). docs/web.md, "Real models in the browser", has the results.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: The benchmark set's builders (tests/support/benchmark_set.py) and whether they have a symbolic form.
BENCH_MODELS: tuple[str, ...] = (
    "hf_gpt2", "hf_bert", "hf_vit", "haiku_resnet18", "eqx_transformer", "keras_mobilenet", "nnx_gpt_mha",
)  # fmt: skip

#: Real programs (tests/real_programs) by what they exercise.
PROGRAMS: tuple[str, ...] = (
    # attention, rotary embeddings, masks
    "hf_flax_llama", "haiku_causal_attention", "keras_masked_attention", "jax_nn_dot_product_attention",
    "eqx_vision_transformer",
    # convolutions: padding, local, 3-D, separable, transposed, pools, resize
    "linen_padding_and_local_convs", "keras_conv3d_volume", "keras_separable_convnet", "eqx_unet",
    "eqx_sequential_pools", "jnp_image_resize", "pix_filters_and_geometry",
    # scans and loops
    "nnx_lstm_rnn", "eqx_gru_scan", "keras_lstm", "jnp_lru_associative_scan", "diffrax_ode_tsit5",
    "linen_cached_greedy_decode",
    # gathers, scatters, sorting
    "jnp_moe_top2_routing", "jraph_gcn_karate", "jnp_sort_topk_cumsum", "jnp_top_p_sampling", "jnp_beam_search",
    # control flow, random numbers
    "pgx_connect_four", "blackjax_nuts_step",
    # special functions, linear algebra, FFT, mixed precision
    "numpyro_log_density", "jnp_gaussian_sampling", "jnp_linear_regression_solve", "jnp_fft_convolution",
    "jnp_mixed_precision",
)  # fmt: skip


@dataclass(frozen=True)
class Case:
    """One model to run: a name, a builder of (callable, specs, args, constraints), and a tolerance vs JAX."""

    name: str
    build: Callable[[], tuple[Callable[..., Any], Sequence[Any], Sequence[Any], tuple[str, ...]]]
    rtol: float = 1e-4
    atol: float = 1e-5


def bench_cases(names: Sequence[str] = BENCH_MODELS) -> list[Case]:
    """The benchmark set at test size, static and symbolic."""
    from tests.support import benchmark_set

    builders = {"hf_gpt2": benchmark_set.hf_gpt2, "hf_bert": benchmark_set.hf_bert, "hf_vit": benchmark_set.hf_vit,
                "haiku_resnet18": benchmark_set.haiku_resnet18, "eqx_transformer": benchmark_set.eqx_transformer,
                "keras_mobilenet": benchmark_set.keras_mobilenet, "nnx_gpt_mha": benchmark_set.nnx_gpt_mha}  # fmt: skip
    cases: list[Case] = []
    for name in names:
        builder = builders[name]
        for symbolic in (False, True):

            def build(builder=builder, symbolic=symbolic):
                model = builder("test", symbolic=symbolic)
                inputs = model.inputs
                if symbolic:  # run the symbolic batch at 2, not at the size it was traced with
                    inputs = [np.concatenate([x, x[..., ::-1]], axis=0) for x in inputs]
                return model.fn, model.specs, inputs, ()

            cases.append(Case(f"{name}{'[sym]' if symbolic else ''}", build, rtol=1e-3, atol=1e-4))
    return cases


def program_cases(names: Sequence[str] = PROGRAMS) -> list[Case]:
    """The chosen real programs, with the catalogue's tolerances."""
    from tests.real_programs.catalogue import load_all

    catalogue = load_all()
    cases: list[Case] = []
    for name in names:
        entry = catalogue[name]
        for variable, value in entry.env:  # e.g. EQX_ON_ERROR=nan, read when equinox is first imported
            if os.environ.setdefault(variable, value) != value:
                raise RuntimeError(f"{name} needs {variable}={value}, the environment has {os.environ[variable]}")

        def build(entry=entry):
            built = entry.build()
            return built.fn, built.specs, built.args, tuple(built.constraints)

        cases.append(Case(name, build, rtol=entry.rtol, atol=entry.atol))
    return cases


@dataclass
class Row:
    """One model's result."""

    name: str
    nodes: int = 0
    bytes: int = 0
    ops: int = 0
    ok: bool = False
    error_ort: float = float("nan")
    error_jax: float = float("nan")
    jax_ok: bool = False
    load_run_ms: float = float("nan")
    failure: str = ""
    op_types: tuple[str, ...] = ()
    rewrites: int = 0
    spread: float = float("nan")  # max - min of JAX's float outputs: 0 means the comparison shows nothing


def _all_op_types(model: Any) -> set[str]:
    """Op types of the graph, its subgraphs and its local functions."""
    import onnx

    found: set[str] = set()

    def visit(graph: onnx.GraphProto) -> None:
        for node in graph.node:
            found.add(node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}")
            for attribute in node.attribute:
                if attribute.type == onnx.AttributeProto.GRAPH:
                    visit(attribute.g)
                for sub in attribute.graphs:
                    visit(sub)

    visit(model.graph)
    for function in model.functions:
        for node in function.node:
            found.add(node.op_type)
    found -= {f.name for f in model.functions}
    return found


def prepare(case: Case, root: Path, *, external_data_threshold: int = 64 << 20) -> tuple[Row, Any, list[np.ndarray]]:
    """Convert ``case``, export its harness under ``root``; the row so far, the harness info, JAX's outputs.
    ``external_data_threshold=0`` puts every weight of 1 KiB or more in the external data file."""
    import jax

    import workbench as wb

    row = Row(case.name)
    fn, specs, args, constraints = case.build()
    model = wb.to_onnx(fn, specs, constraints=constraints) if constraints else wb.to_onnx(fn, specs)
    row.nodes = len(model.graph.node)
    row.bytes = model.ByteSize()
    row.op_types = tuple(sorted(_all_op_types(model)))
    row.ops = len(row.op_types)
    leaves = [np.asarray(x) for x in jax.tree_util.tree_leaves(list(args))]
    names = [i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    try:
        expected = jax.jit(fn)(*args)
    except Exception:  # noqa: BLE001 - not jittable as a whole (a stateful NNX module): eagerly
        expected = fn(*args)
    jax_outputs = [np.asarray(x) for x in jax.tree_util.tree_leaves(expected)]
    info = wb.export_web_harness(model, root / case.name, inputs=dict(zip(names, leaves, strict=True)),
                                 providers=("wasm",), external_data_threshold=external_data_threshold)  # fmt: skip
    return row, info, jax_outputs


def finish(row: Row, case: Case, info: Any, jax_outputs: list[np.ndarray], report: Any) -> Row:
    """Fill ``row`` from the smoke report: verdict, errors against onnxruntime and JAX, timings."""
    row.ok = report.passed
    row.rewrites = len(info.rewrites)
    row.failure = report.failure or ""
    telemetry = report.telemetry
    if telemetry.get("load_ms") is not None and telemetry.get("run_ms") is not None:
        row.load_run_ms = float(telemetry["load_ms"]) + float(telemetry["run_ms"])
    if report.parity:
        row.error_ort = max(p.max_abs_error for p in report.parity)
    if telemetry.get("status") != "ok":
        return row
    errors: list[float] = []
    jax_ok = True
    for spec, want in zip(info.manifest["outputs"], jax_outputs, strict=True):
        record = telemetry["outputs"].get(spec["name"])
        if record is None or record.get("data") is None:
            jax_ok = False
            continue
        got = np.asarray([np.nan if v is None else float(v) for v in record["data"]], np.float64)
        got = got.reshape(want.shape)
        if want.dtype.kind in "biu":
            errors.append(float(np.abs(got - want.astype(np.float64)).max(initial=0.0)))
            jax_ok &= bool(np.array_equal(got, want.astype(np.float64)))
        else:
            want64 = want.astype(np.float64)
            same = (got == want64) | (np.isnan(got) & np.isnan(want64))
            errors.append(float(np.abs(got - want64)[~same].max(initial=0.0)))
            jax_ok &= bool(np.allclose(got, want64, rtol=case.rtol * 10, atol=case.atol * 10, equal_nan=True))
    row.error_jax = max(errors, default=0.0)
    floats = [w for w in jax_outputs if w.dtype.kind == "f" and w.size]
    row.spread = min((float(np.ptp(w[np.isfinite(w)])) for w in floats if np.isfinite(w).any()), default=float("nan"))
    row.jax_ok = jax_ok
    return row


def run(cases: Sequence[Case], *, timeout: float = 120, external_data_threshold: int = 64 << 20) -> list[Row]:
    """Convert and export every case, run all harnesses in one Chromium, return the rows."""
    from workbench.web.smoke import smoke_test_web_harnesses

    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="web_models_") as tmp:
        root = Path(tmp)
        prepared: list[tuple[Case, Row, Any, list[np.ndarray]]] = []
        for case in cases:
            try:
                row, info, jax_outputs = prepare(case, root, external_data_threshold=external_data_threshold)
            except Exception as error:  # noqa: BLE001 - a table row, not a crash
                rows.append(Row(case.name, failure=f"export: {type(error).__name__}: {str(error).splitlines()[0][:200]}"))
                continue
            prepared.append((case, row, info, jax_outputs))
        reports = smoke_test_web_harnesses([info.out_dir for _, _, info, _ in prepared], timeout=timeout)
        for (case, row, info, jax_outputs), report in zip(prepared, reports, strict=True):
            rows.append(finish(row, case, info, jax_outputs, report))
    return rows


def table(rows: Sequence[Row]) -> str:
    """The printed table."""
    lines = ["| model | nodes | bytes | ops | browser ok | max err vs ort | max err vs JAX | output spread | load+run ms "
             "| web rewrites |", "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        verdict = "yes" if r.ok else "NO"
        jax = f"{r.error_jax:.2g}" + ("" if r.jax_ok or np.isnan(r.error_jax) else " (!)")
        spread = f"{r.spread:.2g}" + (" (constant: no evidence)" if r.spread == 0 else "")
        lines.append(f"| {r.name} | {r.nodes} | {r.bytes:,} | {r.ops} | {verdict} | {r.error_ort:.2g} | {jax} | {spread} | "
                     f"{r.load_run_ms:.0f} | {r.rewrites} |")  # fmt: skip
    failures = [r for r in rows if r.failure]
    if failures:
        lines.append("")
        lines.extend(f"- {r.name}: {r.failure[:400]}" for r in failures)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=("bench", "programs", "all"), default="all")
    parser.add_argument("--only", default="", help="comma-separated case names (builders or programs)")
    parser.add_argument("--external-data", action="store_true", help="weights in model.onnx.<digest>.data")
    options = parser.parse_args(argv)
    only = [n for n in options.only.split(",") if n]
    cases: list[Case] = []
    if options.set in ("bench", "all"):
        cases += bench_cases([n for n in BENCH_MODELS if not only or n in only])
    if options.set in ("programs", "all"):
        cases += program_cases([n for n in PROGRAMS if not only or n in only])
    started, cpu = time.perf_counter(), time.process_time()
    rows = run(cases, external_data_threshold=0 if options.external_data else 64 << 20)
    print(table(rows))
    print(f"\n{sum(r.ok for r in rows)} of {len(rows)} ran in Chromium and matched onnxruntime; "
          f"{time.perf_counter() - started:.0f} s wall, {time.process_time() - cpu:.0f} CPU s (this process)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
