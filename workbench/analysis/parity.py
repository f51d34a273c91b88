"""``wb.parity``: prove (or disprove) that an ONNX model computes what the JAX function computes.

Inputs are generated per sample (see :mod:`workbench.analysis.inputs`), the function runs in
JAX and the model in onnxruntime (CPU, graph optimisations on or off), and every output of
every sample is compared: max absolute and relative error, fraction of elements outside the
tolerance, and a verdict. ``report.locate()`` follows up on a failing sample with the
divergence locator.
"""

from __future__ import annotations

import html
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from workbench.analysis.compare import Comparison, compare_arrays, compute_tolerances, finite_max_abs, held_tolerances
from workbench.analysis.labels import count, sides
from workbench.analysis.options import check_options
from workbench.analysis.subject import Subject, prepare
from workbench.jax_to_onnx.complex_numbers import to_pairs
from workbench.jax_to_onnx.cpu_widening import Widened


@dataclass(frozen=True)
class OutputResult:
    """One output of one sample, compared."""

    sample: int
    output: str
    shape: tuple[int, ...]
    dtype: str
    comparison: Comparison
    onnx_value: np.ndarray = field(repr=False)
    jax_value: np.ndarray = field(repr=False)

    @property
    def nothing_finite(self) -> bool:
        """Every value JAX computed is NaN or infinite: matching NaN for NaN, the comparison proves nothing."""
        values = np.asarray(self.jax_value)
        if values.size == 0 or not (np.issubdtype(values.dtype, np.floating) or np.issubdtype(values.dtype, np.complexfloating)):
            return False
        return not bool(np.isfinite(values).any())

    @property
    def verdict(self) -> str:
        if self.comparison.problem == "shape":
            return f"FAIL shape {list(self.onnx_value.shape)} vs JAX {list(self.jax_value.shape)}"
        if self.comparison.problem == "dtype":
            return f"FAIL dtype {self.onnx_value.dtype} vs JAX {self.jax_value.dtype}"
        if self.comparison.ok:
            return "ok, but no finite value (NaN/inf in both)" if self.nothing_finite else "ok"
        return f"FAIL {self.comparison.mismatch_fraction:.2%} outside tolerance"


@dataclass
class ParityReport:
    """Per-output, per-sample comparison of an ONNX model with its JAX function."""

    results: list[OutputResult]
    inputs: list[list[np.ndarray]]  # flat inputs of each sample
    sizes: list[dict[str, int]]  # symbol sizes of each sample
    input_names: list[str]
    output_names: list[str]
    model_source: str
    optimized: bool
    subject: Subject = field(repr=False)
    rtol: float | None = None
    atol: float | None = None
    name: str | None = None  # what the report calls the function (default: the callable's own name)
    # nodes onnxruntime's CPU provider had no kernel for, run in float32 in a twin of the model (it is unchanged)
    widened: tuple[Widened, ...] = ()

    @property
    def ok(self) -> bool:
        return all(r.comparison.ok for r in self.results)

    @property
    def failures(self) -> list[OutputResult]:
        return [r for r in self.results if not r.comparison.ok]

    def to_pandas(self) -> Any:
        """One row per (sample, output)."""
        import pandas as pd

        rows = [
            {
                "sample": r.sample,
                "output": r.output,
                "shape": str(list(r.shape)),
                "dtype": r.dtype,
                "max_abs_error": r.comparison.max_abs_error,
                "max_rel_error": r.comparison.max_rel_error,
                "mismatch_fraction": r.comparison.mismatch_fraction,
                "rtol": r.comparison.rtol,
                "atol": r.comparison.atol,
                "ok": r.comparison.ok,
                "verdict": r.verdict,
            }
            for r in self.results
        ]
        return pd.DataFrame(rows)

    def figure(self) -> Any:
        """Plotly figure: ONNX vs JAX scatter per output, and a histogram of absolute errors."""
        return parity_figure(self)

    def locate(self, sample: int | None = None, **options: Any) -> Any:
        """Run the divergence locator on one sample (default: the first failing one, else 0)."""
        from workbench.analysis.locate import locate_on_subject

        if sample is None:
            failing = self.failures
            sample = failing[0].sample if failing else 0
        if not 0 <= sample < len(self.inputs):
            raise ValueError(f"sample: expected 0..{len(self.inputs) - 1}, got {sample}.")
        options.setdefault("rtol", self.rtol)
        options.setdefault("atol", self.atol)
        return locate_on_subject(self.subject, self.inputs[sample], self.sizes[sample], **options)

    @property
    def vacuous(self) -> list[OutputResult]:
        """Comparisons that matched only NaN/inf with NaN/inf (see :attr:`OutputResult.nothing_finite`)."""
        return [r for r in self.results if r.comparison.ok and r.nothing_finite]

    def headline(self) -> str:
        """The verdict and what was compared: ``Parity PASS: mlp in JAX vs its ONNX conversion``."""
        verdict = "PASS" if self.ok else f"FAIL ({len(self.failures)} of {len(self.results)} comparisons)"
        return f"Parity {verdict}: {sides(self.name or self.subject.name, self.model_source)}"

    def summary(self) -> str:
        text = (
            f"{self.headline()}, {count(len(self.inputs), 'sample')}, "
            f"onnxruntime optimisations {'on' if self.optimized else 'off'}"
        )
        if self.widened:
            ops = Counter(w.was.split(" ", 1)[0] for w in self.widened)
            text += (
                f"; run through a twin of the model: onnxruntime's CPU provider cannot run {len(self.widened)} "
                f"of its nodes in their types ({', '.join(f'{number} {op}' for op, number in ops.items())}), computed in float32 "
                f"(int32 for int16) between Casts as wb.for_onnxruntime_cpu does; the model itself is unchanged"
            )
        vacuous = self.vacuous
        if vacuous:
            origin = (
                "the generated inputs may lie outside the function's domain (a negative scale, a log of a negative "
                "number): pass inputs=[...] with valid values"
                if self.subject.given is None else "check the inputs given"
            )
            text += (
                f"; but {len(vacuous)} of {len(self.results)} comparisons had no finite value (NaN/inf on both "
                f"sides), which proves nothing: {origin}"
            )
        return text

    def __repr__(self) -> str:
        lines = [self.summary()]
        for r in self.results:
            sizes = self.sizes[r.sample]
            size_text = f" {sizes}" if sizes else ""
            lines.append(
                f"  sample {r.sample}{size_text} {r.output} {r.dtype}{list(r.shape)}: "
                f"max abs {r.comparison.max_abs_error:.3g}, max rel {r.comparison.max_rel_error:.3g} "
                f"(rtol {r.comparison.rtol:g}, atol {r.comparison.atol:g}) -> {r.verdict}"
            )
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        color = "#2e7d32" if self.ok else "#c62828"
        table = self.to_pandas().to_html(index=False, float_format=lambda v: f"{v:.3g}")
        return f'<div><b style="color:{color}">{html.escape(self.summary())}</b>{table}</div>'


def parity(
    fn: Any,
    model: onnx.ModelProto | str | os.PathLike[str] | None = None,
    inputs: Sequence[Any] | None = None,
    *,
    samples: int = 3,
    rtol: float | None = None,
    atol: float | None = None,
    seed: int = 0,
    optimize: bool = True,
    sizes: Mapping[str, int] | None = None,
    name: str | None = None,
) -> ParityReport:
    """Compare ``model`` run by onnxruntime with ``fn`` run by JAX.

    Args:
        fn: the JAX callable the model was exported from (anything ``wb.to_onnx`` accepts), or the
            ``Conversion`` ``wb.convert`` returned: then nothing is traced again, ``model`` defaults
            to the conversion's model and its weights are handed to onnxruntime where they are.
        model: a ModelProto or a path to an .onnx file (its external weights are read by
            onnxruntime, never loaded here: models above 2 GB work).
        inputs: ``None`` to generate inputs from the model's input types (a Conversion's own input
            types); input specs (shape tuples, ShapeDtypeStructs) to generate from those (not with a
            Conversion); or concrete arrays (one sample).
        samples: how many generated samples (symbolic dims take different sizes in each).
        rtol / atol: tolerances; by default chosen per output dtype (exact for ints and bools), and
            no tighter than the model's own compute precision (float16 or bfloat16 exports).
        seed: seed of the input generator.
        optimize: run onnxruntime with its graph optimisations (``False``: ORT_DISABLE_ALL).
        sizes: fixed sizes for some symbolic dimensions, e.g. ``{"T": 64}``.
        name: the function's name in the report and its figure (default: the callable's own name,
            which is ``apply`` for ``functools.partial(module.apply, variables)``).

    A model onnxruntime's CPU provider cannot load for want of kernels (bfloat16 MatMul, int16 Max...)
    is run through a twin whose such nodes compute in float32 between Casts (``wb.for_onnxruntime_cpu``),
    and the report says so (``report.widened``); the model itself is not changed.

    Raises:
        WorkbenchError: when the model's inputs do not match the function's, the model is not an
            ONNX file or onnxruntime cannot load or run it, or the function fails on the inputs.
    """
    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 1:
        raise ValueError(f"samples: expected a positive int, got {samples!r}.")
    check_options(rtol=rtol, atol=atol, seed=seed, sizes=sizes)
    subject = prepare(fn, model, inputs)
    session, widened = subject.runnable_session(optimize)
    floor_rtol, floor_atol = compute_tolerances(subject.loaded.proto)
    input_names = subject.input_names
    results: list[OutputResult] = []
    all_inputs: list[list[np.ndarray]] = []
    all_sizes: list[dict[str, int]] = []
    for index, (flat_inputs, chosen_sizes) in enumerate(subject.samples(samples, seed, sizes)):
        expected = subject.run_jax(flat_inputs, chosen_sizes)
        got = session.run({name: to_pairs(x) for name, x in zip(input_names, flat_inputs, strict=True)})  # complex as pairs
        all_inputs.append(flat_inputs)
        all_sizes.append(chosen_sizes)
        for output_name, onnx_value, jax_value in zip(subject.output_names, got, expected, strict=True):
            # a model computing in half precision is held to that precision (bfloat16 outputs too: kind 'V')
            default_rtol, default_atol = held_tolerances(jax_value.dtype, (floor_rtol, floor_atol), finite_max_abs(jax_value))
            comparison = compare_arrays(
                onnx_value,
                jax_value,
                default_rtol if rtol is None else rtol,
                default_atol if atol is None else atol,
            )
            results.append(
                OutputResult(index, output_name, tuple(jax_value.shape), str(jax_value.dtype), comparison, onnx_value, jax_value)
            )
    return ParityReport(
        results=results,
        inputs=all_inputs,
        sizes=all_sizes,
        input_names=input_names,
        output_names=subject.output_names,
        model_source=subject.loaded.label,
        optimized=optimize,
        subject=subject,
        rtol=rtol,
        atol=atol,
        name=name,
        widened=widened,
    )


# ----------------------------------------------------------------------------- figure (plotly imported when drawn)
MAX_POINTS_PER_OUTPUT = 4000  # scatter points per output (all samples), evenly subsampled
MAX_OUTPUT_PANELS = 6


def _subsample(values: np.ndarray, limit: int) -> np.ndarray:
    flat = values.reshape(-1)
    if flat.size <= limit:
        return flat
    return flat[np.linspace(0, flat.size - 1, limit).astype(np.int64)]


def _as_float(values: np.ndarray) -> np.ndarray:
    if np.iscomplexobj(values):
        return np.abs(values).astype(np.float64)
    return values.astype(np.float64)


def parity_figure(report: ParityReport) -> Any:
    """ONNX vs JAX scatter per output (one colour per sample, y = x line) and an error histogram."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    outputs = report.output_names[:MAX_OUTPUT_PANELS]
    titles = [f"{name}: ONNX vs JAX" for name in outputs] + ["|ONNX - JAX| (log10)"]
    figure = make_subplots(rows=1, cols=len(outputs) + 1, subplot_titles=titles)
    errors: list[np.ndarray] = []
    per_output_limit = max(MAX_POINTS_PER_OUTPUT // max(len(report.inputs), 1), 1)
    for column, name in enumerate(outputs, start=1):
        low, high = np.inf, -np.inf
        for result in (r for r in report.results if r.output == name):
            if result.comparison.problem == "shape":
                continue
            jax_values = _subsample(_as_float(result.jax_value), per_output_limit)
            onnx_values = _subsample(_as_float(result.onnx_value), per_output_limit)
            finite = np.isfinite(jax_values) & np.isfinite(onnx_values)
            if finite.any():
                low = min(low, float(jax_values[finite].min()), float(onnx_values[finite].min()))
                high = max(high, float(jax_values[finite].max()), float(onnx_values[finite].max()))
            figure.add_trace(
                go.Scattergl(
                    x=jax_values, y=onnx_values, mode="markers", marker={"size": 4},
                    name=f"{name} sample {result.sample}", legendgroup=f"sample {result.sample}",
                ),
                row=1, col=column,
            )
            errors.append(np.abs(_as_float(result.onnx_value) - _as_float(result.jax_value)).reshape(-1))
        if np.isfinite(low):
            figure.add_trace(
                go.Scatter(x=[low, high], y=[low, high], mode="lines", line={"dash": "dot", "color": "gray"},
                           name="ONNX = JAX", showlegend=column == 1),
                row=1, col=column,
            )
        figure.update_xaxes(title_text="JAX", row=1, col=column)
        figure.update_yaxes(title_text="ONNX", row=1, col=column)
    if errors:
        all_errors = np.concatenate(errors)
        all_errors = all_errors[np.isfinite(all_errors)]
        figure.add_trace(
            go.Histogram(x=np.log10(all_errors[all_errors > 0]), name="log10 |error|", marker={"color": "#555"}),
            row=1, col=len(outputs) + 1,
        )
        # exact matches have no logarithm: counted under the histogram's title, not drawn as a bar of 1e-12 errors
        exact = int(np.count_nonzero(all_errors == 0))
        if exact:
            figure.layout.annotations[-1].text += f"<br><sup>{exact:,} of {all_errors.size:,} values exact, not drawn</sup>"
    details = report.summary().removeprefix(report.headline() + ", ")
    if report.widened:  # the full note is in report.summary(); the title keeps to one short line
        before, _, rest = details.partition("; run through a twin")
        short = f"; {count(len(report.widened), 'node')} computed in float32 for onnxruntime's CPU"
        details = before + short + rest.partition("the model itself is unchanged")[2]
    title = f"{html.escape(report.headline(), quote=False)}<br><sup>{html.escape(details, quote=False)}</sup>"  # plotly reads tags
    figure.update_layout(title=title, height=440, width=360 * (len(outputs) + 1))
    return figure


__all__ = ["OutputResult", "ParityReport", "parity", "parity_figure"]
