"""Accuracy and speed of the math handlers (linear algebra, FFT, special functions) against JAX.

For each case: the exported model run by onnxruntime and the jitted JAX function on the same
random float32 inputs, both compared with a float64 NumPy/SciPy reference; errors are the largest
absolute difference divided by the largest |reference| entry (so 1e-7 is float32 rounding).
Latencies are medians of interleaved rounds (ORT, JAX, ORT, JAX, ...) so load changes on a shared
machine hit both; the ratio is ORT / JAX.

    PYTHONPATH=$PWD python tests/benchmarks/bench_math.py [--rounds 20] [--only svd]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import onnxruntime as ort
import scipy.special

import workbench as wb
from workbench.jax_to_onnx.complex_numbers import to_pairs
from workbench.jax_to_onnx.handlers.eigen import canonical_signs


@dataclass(frozen=True)
class Case:
    name: str
    fn: Callable[..., Any]  # JAX function
    inputs: Callable[[np.random.Generator], list[np.ndarray]]
    reference: Callable[..., Any]  # float64 NumPy/SciPy on the same inputs


def _spd(a: np.ndarray) -> np.ndarray:
    return a @ a.T + a.shape[0] * np.eye(a.shape[0], dtype=a.dtype)


def _symmetric(a: np.ndarray) -> np.ndarray:
    return (a + a.T) / 2


def _square(n: int) -> Callable[[np.random.Generator], list[np.ndarray]]:
    return lambda rng: [rng.standard_normal((n, n)).astype(np.float32)]


def _eigh_reference(a: np.ndarray) -> Any:
    w, v = np.linalg.eigh(a)
    return w, np.asarray(canonical_signs(jnp.asarray(v, jnp.float32)))


def _cases() -> list[Case]:
    cases = []
    for n in (8, 64):
        cases += [
            Case(f"solve {n}x{n}", jnp.linalg.solve, lambda rng, n=n: [rng.standard_normal((n, n)).astype(np.float32),
                                                                   rng.standard_normal((n, 4)).astype(np.float32)],
                 np.linalg.solve),
            Case(f"inv {n}x{n}", jnp.linalg.inv, _square(n), np.linalg.inv),
            Case(f"slogdet {n}x{n}", lambda a: jnp.linalg.slogdet(a)[1], _square(n), lambda a: np.linalg.slogdet(a)[1]),
            Case(f"cholesky {n}x{n}", lambda a: jnp.linalg.cholesky(a @ a.T + a.shape[0] * jnp.eye(a.shape[0])), _square(n),
                 lambda a: np.linalg.cholesky(_spd(a))),
            Case(f"qr {n}x{n} (R)", lambda a: jnp.linalg.qr(a)[1], _square(n), lambda a: np.linalg.qr(a)[1]),
            Case(f"eigh {n}x{n}", lambda a: (lambda w, v: (w, canonical_signs(v)))(*jnp.linalg.eigh((a + a.T) / 2)), _square(n),
                 lambda a: _eigh_reference(_symmetric(a))),
            Case(f"svd {n}x{n} (s)", lambda a: jnp.linalg.svd(a, compute_uv=False), _square(n),
                 lambda a: np.linalg.svd(a, compute_uv=False)),
            Case(f"pinv {n}x{n // 2}", jnp.linalg.pinv, lambda rng, n=n: [rng.standard_normal((n, n // 2)).astype(np.float32)],
                 np.linalg.pinv),
        ]
    for n in (8, 32):  # order-free comparison: both sorted by (real, imag), as jnp.sort orders complex values
        cases.append(Case(f"eigvals {n}x{n} (sorted)", lambda a: jnp.sort(jnp.linalg.eigvals(a)), _square(n),
                          lambda a: np.sort_complex(np.linalg.eigvals(a))))
    for n in (1024, 1000):
        cases += [
            Case(f"fft n={n}", lambda x: jnp.fft.fft(x), lambda rng, n=n: [rng.standard_normal((8, n)).astype(np.float32)],
                 lambda x: np.fft.fft(x)),
            Case(f"rfft+irfft n={n}", lambda x: jnp.fft.irfft(jnp.fft.rfft(x) * 0.5, n=x.shape[-1]),
                 lambda rng, n=n: [rng.standard_normal((8, n)).astype(np.float32)],
                 lambda x: np.fft.irfft(np.fft.rfft(x) * 0.5, n=x.shape[-1])),
        ]
    positive = lambda rng: [np.abs(rng.standard_normal(4096)).astype(np.float32) * 5 + 0.05]  # noqa: E731
    pair = lambda rng: [np.abs(rng.standard_normal(4096)).astype(np.float32) * 5 + 0.05 for _ in range(2)]  # noqa: E731
    cases += [
        Case("bessel i0e", jax.scipy.special.i0e, lambda rng: [rng.standard_normal(4096).astype(np.float32) * 20], scipy.special.i0e),
        Case("bessel i1e", jax.scipy.special.i1e, lambda rng: [rng.standard_normal(4096).astype(np.float32) * 20], scipy.special.i1e),
        Case("zeta", lambda x, q: jax.scipy.special.zeta(x + 1.1, q), pair, lambda x, q: scipy.special.zeta(x + 1.1, q)),
        Case("polygamma(2, x)", lambda x: jax.scipy.special.polygamma(2, x), positive, lambda x: scipy.special.polygamma(2, x)),
        Case("gammainc", jax.scipy.special.gammainc, pair, scipy.special.gammainc),
        Case("betainc", lambda a, b, x: jax.scipy.special.betainc(a, b, x / (1 + x)),
             lambda rng: pair(rng) + positive(rng), lambda a, b, x: scipy.special.betainc(a, b, x / (1 + x))),
    ]
    return cases


def _error(got: Any, reference: Any) -> float:
    got_leaves = [np.asarray(g, np.float64) for g in jax.tree_util.tree_leaves(got)]
    ref_leaves = [np.asarray(to_pairs(np.asarray(r)), np.float64) for r in jax.tree_util.tree_leaves(reference)]
    worst = 0.0
    for g, r in zip(got_leaves, ref_leaves, strict=True):
        scale = np.nanmax(np.abs(r)) or 1.0
        worst = max(worst, float(np.nanmax(np.abs(g.reshape(r.shape) - r)) / scale))
    return worst


def run(case: Case, rounds: int, rng: np.random.Generator) -> dict[str, Any]:
    inputs = case.inputs(rng)
    model = wb.to_onnx(case.fn, inputs)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {i.name: to_pairs(x) for i, x in zip(session.get_inputs(), inputs, strict=True)}
    jitted = jax.jit(case.fn)
    onnx_out = session.run(None, feeds)
    jax_out = [to_pairs(np.asarray(leaf)) for leaf in jax.tree_util.tree_leaves(jax.block_until_ready(jitted(*inputs)))]
    reference = case.reference(*[x.astype(np.float64) for x in inputs])
    ort_times, jax_times = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        session.run(None, feeds)
        ort_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        jax.block_until_ready(jitted(*inputs))
        jax_times.append(time.perf_counter() - start)
    ort_ms, jax_ms = statistics.median(ort_times) * 1e3, statistics.median(jax_times) * 1e3
    return {
        "case": case.name,
        "ort_error": _error(onnx_out, reference),
        "jax_error": _error(jax_out, reference),
        "ort_ms": ort_ms,
        "jax_ms": jax_ms,
        "ratio": ort_ms / jax_ms,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--only", default=None, help="run the cases whose name contains this text")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print("| case | ONNX (ORT) error | JAX error | ORT ms | JAX ms | ORT / JAX |")
    print("|---|---:|---:|---:|---:|---:|")
    for case in _cases():
        if args.only and args.only not in case.name:
            continue
        row = run(case, args.rounds, rng)
        print(f"| {row['case']} | {row['ort_error']:.1e} | {row['jax_error']:.1e} | {row['ort_ms']:.2f} | {row['jax_ms']:.2f} | "
              f"{row['ratio']:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
