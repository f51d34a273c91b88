"""Benchmark of the analysis tools on a 12-layer GPT (d=256, 8 heads, seq 64, vocab 1000).

Prints one table: the time of one conversion, of ``wb.check``, ``wb.parity`` (3 samples) and
``wb.locate_divergence``, next to one onnxruntime run and one JAX run of the same model, and the
locator's cost in units of (one onnxruntime run + one JAX run), cold (session creation / jit
compilation included) and warm. Run: ``PYTHONPATH=$PWD python tests/benchmarks/bench_analysis.py``.
"""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

LAYERS, D_MODEL, HEADS, SEQ, VOCAB, BATCH = 12, 256, 8, 64, 1000, 1


def init_gpt(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)

    def dense(n_in: int, n_out: int) -> dict:
        return {"kernel": (rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(np.float32),
                "bias": np.zeros(n_out, np.float32)}

    def norm() -> dict:
        return {"scale": np.ones(D_MODEL, np.float32), "bias": np.zeros(D_MODEL, np.float32)}

    blocks = [
        {"ln1": norm(), "qkv": dense(D_MODEL, 3 * D_MODEL), "proj": dense(D_MODEL, D_MODEL),
         "ln2": norm(), "fc": dense(D_MODEL, 4 * D_MODEL), "out": dense(4 * D_MODEL, D_MODEL)}
        for _ in range(LAYERS)
    ]
    return {"wte": (rng.standard_normal((VOCAB, D_MODEL)) * 0.02).astype(np.float32),
            "wpe": (rng.standard_normal((SEQ, D_MODEL)) * 0.02).astype(np.float32),
            "blocks": blocks, "ln_f": norm()}


def _layer_norm(p: dict, x: jax.Array) -> jax.Array:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + 1e-5) * p["scale"] + p["bias"]


def _dense(p: dict, x: jax.Array) -> jax.Array:
    return x @ p["kernel"] + p["bias"]


def _attention(p: dict, x: jax.Array) -> jax.Array:
    b, t, _ = x.shape
    q, k, v = jnp.split(_dense(p["qkv"], x), 3, axis=-1)
    heads = lambda a: a.reshape(b, t, HEADS, D_MODEL // HEADS)  # noqa: E731
    scores = jnp.einsum("bqhd,bkhd->bhqk", heads(q), heads(k)) / np.sqrt(D_MODEL // HEADS)
    # additive causal mask built in NumPy (a bool jnp.tril exports a bool Where, which onnxruntime lacks)
    mask = np.triu(np.full((t, t), -1e9, np.float32), k=1)
    weights = jax.nn.softmax(scores + mask, axis=-1)
    out = jnp.einsum("bhqk,bkhd->bqhd", weights, heads(v)).reshape(b, t, D_MODEL)
    return _dense(p["proj"], out)


def gpt(params: dict, tokens: jax.Array) -> jax.Array:
    x = params["wte"][tokens] + params["wpe"][: tokens.shape[1]]
    for block in params["blocks"]:
        x = x + _attention(block, _layer_norm(block["ln1"], x))
        x = x + _dense(block["out"], jax.nn.gelu(_dense(block["fc"], _layer_norm(block["ln2"], x))))
    return _layer_norm(params["ln_f"], x) @ params["wte"].T


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def main() -> None:
    import onnxruntime as ort

    import workbench as wb

    fn = functools.partial(gpt, jax.tree_util.tree_map(jnp.asarray, init_gpt()))
    spec = [jax.ShapeDtypeStruct((BATCH, SEQ), jnp.int32)]
    tokens = np.random.default_rng(1).integers(0, VOCAB, (BATCH, SEQ)).astype(np.int32)

    report, t_check = _timed(wb.check, fn, spec)
    if not report.supported:
        print(report)
        raise SystemExit("the GPT uses primitives without handlers in this checkout; see the report above")
    conversion, t_convert = _timed(wb.convert, fn, spec)
    model = conversion.model
    print(f"GPT: {len(model.graph.node)} ONNX nodes, {report.num_equations} jaxpr equations")

    options = ort.SessionOptions()
    options.log_severity_level = 3
    start = time.perf_counter()
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feeds = {model.graph.input[0].name: tokens}
    session.run(None, feeds)
    t_ort_cold = time.perf_counter() - start
    _, t_ort_warm = _timed(session.run, None, feeds)

    jitted = jax.jit(fn)
    start = time.perf_counter()
    jax.block_until_ready(jitted(tokens))
    t_jax_cold = time.perf_counter() - start
    _, t_jax_warm = _timed(lambda: jax.block_until_ready(jitted(tokens)))

    parity_report, t_parity = _timed(wb.parity, fn, model, samples=3)
    located, t_locate = _timed(wb.locate_divergence, fn, model, [tokens])

    rows = [
        ("one conversion (wb.convert)", t_convert),
        ("wb.check", t_check),
        ("wb.parity, 3 samples", t_parity),
        ("wb.locate_divergence", t_locate),
        ("  of which re-conversion", located.seconds["convert"]),
        ("  of which JAX, every equation", located.seconds["jax"]),
        ("  of which onnxruntime, all values exposed", located.seconds["onnxruntime"]),
        ("  of which comparison", located.seconds["compare"]),
        ("onnxruntime run, cold (session + run)", t_ort_cold),
        ("onnxruntime run, warm", t_ort_warm),
        ("JAX run, cold (jit compile + run)", t_jax_cold),
        ("JAX run, warm", t_jax_warm),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"{'step':<{width}}  seconds  × conversion")
    for name, seconds in rows:
        print(f"{name:<{width}}  {seconds:7.3f}  {seconds / t_convert:6.2f}")
    cold = t_ort_cold + t_jax_cold
    warm = t_ort_warm + t_jax_warm
    print(f"locate / (ORT + JAX run), cold: {t_locate / cold:.2f}×  (target ≤ 5×)")
    print(f"locate / (ORT + JAX run), warm: {t_locate / warm:.1f}×")
    print(f"parity ok: {parity_report.ok}; locator: {located.summary()}")


if __name__ == "__main__":
    main()
