"""The catalogue benchmark's ``to_jax`` mode: jax2onnx's export of each testcase read back by ``wb.to_jax``.

For one testcase, :func:`check_generated` takes the file jax2onnx wrote, onnxruntime's outputs on it and
the feeds it ran on, generates JAX code with ``wb.to_jax``, runs it eagerly and under ``wb.jit_forward``
(unless the module names value-dependent nodes: then ``forward`` runs its jit-able parts jitted itself
and the case counts as eager-only) and compares both runs with onnxruntime. Tolerance: the corpus's
(tests/support/corpus.py: float32 rounding per accumulating layer, scaled by the output's magnitude) on
finite values; NaN and infinities must sit where onnxruntime has them, integers and booleans must be
equal, and the output's dtype must be onnxruntime's.

Statuses (one per case): ``pass``, ``pass-eager`` (eager only, the value-dependent nodes named);
failures of the workbench: ``to_jax`` (generation raised), ``eager`` / ``jit`` (the generated code
raised), ``eager-numeric`` / ``jit-numeric`` (it ran and disagrees); not the workbench's, counted apart:
``source-export`` (jax2onnx cannot export the case), ``source-runtime`` (onnxruntime refuses or fails on
jax2onnx's file), ``jax`` (JAX itself cannot run the testcase).
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from typing import Any

import numpy as np

PASSED = ("pass", "pass-eager")
NOT_OURS = ("source-export", "source-runtime", "jax")
_TRAINING_DROPOUT = ("Dropout with training_mode a constant True and ratio 0.5: random in ONNX (onnxruntime draws "
                     "from its own generator); the reader refuses it ('only inference is supported')")
# failures that are not the reader's, each with its measured reason (the case still counts as a failure
# where it runs, and the summary lists it apart)
EXPLAINED = {
    "plugin:eqx.nn.dropout::eqx_dropout_training_mode": _TRAINING_DROPOUT,
    "example:examples.eqx::MlpExample::mlp_training_mode": _TRAINING_DROPOUT,
    "example:examples.eqx::MlpExample::mlp_batched_training_mode": _TRAINING_DROPOUT,
    "plugin:igamma_grad_a::igamma_grad_a_basic": (
        "jax2onnx writes the derivative as a finite difference over 1,251 float32 nodes: every node before the "
        "final Div agrees with onnxruntime within 6.6e-7 (wb.locate_divergence), the Div by the step amplifies "
        "it to 3.3e-4; onnxruntime and the generated code are each 2.8e-4 from JAX's float64 igamma_grad_a"),
    "example:examples.onnx_functions::onnx_functions_014::014_one_function_with_input_param_with_default_value": (
        "jax2onnx writes a LayerNorm over 3 features with the variance as E[x^2] - E[x]^2: its ReduceMeans agree "
        "with onnxruntime to one float32 unit (2.4e-7), the cancellation makes that 5.9e-5 relative in the "
        "variance and 3.9e-5 absolute after the division (wb.locate_divergence on the inlined graph), 4.8e-5 at "
        "the output"),
}


def _first_line(error: BaseException, limit: int = 300) -> str:
    """The error's type and message on one line (a multi-line message's lines joined), cut at ``limit``."""
    return f"{type(error).__name__}: {' '.join(str(error).split())[:limit]}"


def mismatch(model: Any, expected: Sequence[np.ndarray], got: Sequence[Any]) -> str:
    """'' when ``got`` matches onnxruntime's ``expected`` outputs, else what differs first."""
    from tests.support.corpus import tolerance

    if len(got) != len(expected):
        return f"{len(got)} outputs, onnxruntime gives {len(expected)}"
    for index, (want, have) in enumerate(zip(expected, got, strict=True)):
        want, have = np.asarray(want), np.asarray(have)
        if have.shape != want.shape:
            return f"output {index}: shape {have.shape}, onnxruntime {want.shape}"
        if have.dtype != want.dtype:
            return f"output {index}: dtype {have.dtype}, onnxruntime {want.dtype}"
        if want.dtype.kind not in "fc":
            if not np.array_equal(have, want):
                return f"output {index}: {int(np.sum(have != want))} of {want.size} {want.dtype} values differ"
            continue
        finite = np.isfinite(want)
        if not np.array_equal(finite, np.isfinite(have)) or not np.array_equal(want[~finite], have[~finite],
                                                                                equal_nan=True):
            return f"output {index}: NaN or infinity where onnxruntime has none, or the other way round"
        if not finite.any():
            continue
        atol = tolerance(model, want[finite])
        error = float(np.max(np.abs(have[finite].astype(np.complex128) - want[finite])))
        if error > atol:
            return f"output {index}: max abs error {error:.3g} > tolerance {atol:.3g}"
    return ""


def _as_tuple(outputs: Any) -> tuple[Any, ...]:
    return outputs if isinstance(outputs, tuple) else (outputs,)


def check_generated(model: Any, feeds: Sequence[np.ndarray], expected: Sequence[np.ndarray]) -> tuple[str, str]:
    """(status, detail) of the generated JAX code of ``model`` against onnxruntime's ``expected`` outputs."""
    import jax

    import workbench as wb

    try:
        forward, params = wb.to_jax(model)
    except Exception as error:  # noqa: BLE001 - every failure is this case's result
        return "to_jax", _first_line(error)
    try:
        eager = _as_tuple(forward(params, *feeds))
    except Exception as error:  # noqa: BLE001
        return "eager", _first_line(error)
    problem = mismatch(model, expected, eager)
    if problem:
        return "eager-numeric", problem
    value_dependent = forward.__globals__.get("VALUE_DEPENDENT_NODES")  # the generated module's own list
    if value_dependent:
        return "pass-eager", "value-dependent: " + ", ".join(sorted({_op_of(model, name) for name in value_dependent}))
    try:
        jitted = _as_tuple(jax.block_until_ready(wb.jit_forward(forward, params)(*feeds)))
    except Exception as error:  # noqa: BLE001
        return "jit", _first_line(error)
    problem = mismatch(model, expected, jitted)
    return ("jit-numeric", problem) if problem else ("pass", "")


def _op_of(model: Any, node_name: str) -> str:
    """The op type of the node ``node_name`` names (a value-dependent node), or the name itself."""
    for node in model.graph.node:
        if node.name == node_name or node_name in node.output:
            return node.op_type
    return node_name


def summarize(records: dict[str, dict[str, Any]], width: int = 150) -> None:
    """Print the pass rate of the generated code and its failures grouped by cause."""
    counts = collections.Counter(r["status"] for r in records.values())
    judged = sum(n for status, n in counts.items() if status not in NOT_OURS and status != "crash")
    passed = sum(counts[s] for s in PASSED)
    explained = [k for k, r in records.items() if k in EXPLAINED and r["status"] not in (*PASSED, *NOT_OURS)]
    print(f"to_jax: {len(records)} cases; jax2onnx's file runs in onnxruntime for {judged}")
    print(f"  generated JAX matches onnxruntime on {passed} of {judged} ({100.0 * passed / max(judged, 1):.1f}%): "
          f"{counts['pass']} eagerly and under jax.jit, {counts['pass-eager']} eagerly only (value-dependent); "
          f"{passed} of {judged - len(explained)} without the {len(explained)} failures explained below "
          f"({100.0 * passed / max(judged - len(explained), 1):.1f}%)")
    print("  not the workbench's: " + ", ".join(f"{s} {counts[s]}" for s in NOT_OURS)
          + f"; unfinished (the worker died on it, or is on it now): {counts['crash']}")
    failures = ("to_jax", "eager", "eager-numeric", "jit", "jit-numeric", "timeout", "error", "crash")
    for title, statuses, wanted in (("workbench failures", failures, lambda k: k not in EXPLAINED),
                                    ("failures explained (not the workbench's)", failures, lambda k: k in EXPLAINED),
                                    ("eager only", ("pass-eager",), lambda k: True),
                                    ("not the workbench's", NOT_OURS, lambda k: True)):
        groups: dict[str, list[str]] = collections.defaultdict(list)
        for case_id, record in records.items():
            if record["status"] in statuses and wanted(case_id):
                cause = EXPLAINED[case_id] if case_id in EXPLAINED else record["detail"][:width]
                groups[f"{record['status']}: {cause}"].append(case_id)
        if not groups:
            continue
        print(f"\n{title}, by cause, most frequent first:")
        for cause, ids in sorted(groups.items(), key=lambda item: -len(item[1])):
            shown = ", ".join(ids[:3]) + (f" (+{len(ids) - 3})" if len(ids) > 3 else "")
            print(f"  {len(ids):4d}  {cause}\n        {shown}")
