"""Shared helpers for tests: random inputs from specs, onnxruntime runs, comparisons with JAX."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
import onnx

from workbench.jax_to_onnx.complex_numbers import to_pairs

DEFAULT_SYMBOL_SIZE = 3


def concrete_inputs(
    specs: Sequence[Any], *, seed: int = 0, int_high: int = 5, sizes: dict[str, int] | None = None
) -> list[Any]:
    """Concrete arrays for input specs: arrays pass through, shapes are filled with random data."""
    rng = np.random.default_rng(seed)
    sizes = dict(sizes or {})

    def dim(d: Any) -> int:
        if isinstance(d, (int, np.integer)):
            return int(d)
        text = str(d)
        for symbol in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text):
            sizes.setdefault(symbol, DEFAULT_SYMBOL_SIZE + len(sizes))
        return int(eval(text, {"__builtins__": {}}, dict(sizes)))  # noqa: S307 - test-only arithmetic on our own specs

    def make(spec: Any) -> Any:
        if isinstance(spec, (np.ndarray, np.generic, jax.Array)):
            return np.asarray(spec)
        if isinstance(spec, jax.ShapeDtypeStruct):
            shape, dtype = spec.shape, np.dtype(spec.dtype)
        elif isinstance(spec, tuple) and all(isinstance(d, (int, str, np.integer)) for d in spec):
            shape, dtype = spec, np.dtype("float32")
        elif isinstance(spec, dict):
            return {k: make(v) for k, v in spec.items()}
        elif isinstance(spec, (list, tuple)):
            return type(spec)(make(v) for v in spec)
        else:
            raise TypeError(f"cannot make data for spec {spec!r}")
        concrete = tuple(dim(d) for d in shape)
        if np.issubdtype(dtype, np.complexfloating):
            return (rng.standard_normal(concrete) + 1j * rng.standard_normal(concrete)).astype(dtype)
        if dtype == np.dtype(bool):
            return rng.integers(0, 2, concrete).astype(bool)
        if np.issubdtype(dtype, np.integer):
            return rng.integers(0, int_high, concrete).astype(dtype)
        return rng.standard_normal(concrete).astype(dtype)

    return [make(s) for s in specs]


def run_onnx(model: onnx.ModelProto, flat_inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    assert len(names) == len(flat_inputs), f"model has inputs {names}, got {len(flat_inputs)} arrays"
    return session.run(None, dict(zip(names, flat_inputs, strict=True)))


def assert_matches_jax(
    fn: Any,
    model: onnx.ModelProto,
    args: Sequence[Any],
    *,
    rtol: float = 1e-5,
    atol: float = 1e-5,
) -> None:
    # complex values as the exported model carries them: a trailing (real, imag) axis
    expected = [to_pairs(x) for x in jax.tree_util.tree_leaves(fn(*args))]
    flat_args = [to_pairs(x) for x in jax.tree_util.tree_leaves(list(args))]
    got = run_onnx(model, flat_args)
    assert len(got) == len(expected), f"{len(got)} ONNX outputs vs {len(expected)} JAX outputs"
    for index, (g, e) in enumerate(zip(got, expected, strict=True)):
        assert g.shape == e.shape, f"output {index}: shape {g.shape} vs JAX {e.shape}"
        assert g.dtype == e.dtype, f"output {index}: dtype {g.dtype} vs JAX {e.dtype}"
        if e.dtype == np.dtype(bool) or np.issubdtype(e.dtype, np.integer):
            np.testing.assert_array_equal(g, e, err_msg=f"output {index}")
        else:
            np.testing.assert_allclose(
                g.astype(np.float64), e.astype(np.float64), rtol=rtol, atol=atol, err_msg=f"output {index}"
            )


def assert_generated_matches_onnxruntime(
    model: onnx.ModelProto,
    inputs: Sequence[np.ndarray],
    *,
    rtol: float = 1e-6,
    atol: float = 1e-6,
    check_dtype: bool = True,
) -> None:
    """ONNX -> JAX: the code ``wb.to_jax`` generates for ``model`` gives onnxruntime's outputs (count, shapes,
    dtypes and values), called eagerly and under ``wb.jit_forward`` (every input traced)."""
    import workbench as wb

    expected = run_onnx(model, inputs)
    forward, params = wb.to_jax(model)
    for label, run in (("eager", lambda *xs: forward(params, *xs)), ("jit", wb.jit_forward(forward, params))):
        got = run(*inputs)
        got = got if isinstance(got, tuple) else (got,)
        assert len(got) == len(expected), f"{label}: {len(got)} outputs, onnxruntime {len(expected)}"
        for index, (want, have) in enumerate(zip(expected, got, strict=True)):
            have = np.asarray(have)
            assert have.shape == want.shape, f"{label} output {index}: shape {have.shape}, onnxruntime {want.shape}"
            if check_dtype:
                assert have.dtype == want.dtype, f"{label} output {index}: {have.dtype}, onnxruntime {want.dtype}"
            np.testing.assert_allclose(have, want, rtol=rtol, atol=atol, err_msg=f"{label} output {index}")


def assert_graph_quality(model: onnx.ModelProto) -> None:
    """checker(full_check) passes, every intermediate has a value_info, no unused initializer/input/node."""
    onnx.checker.check_model(model, full_check=True)
    graph = model.graph
    typed = {v.name for v in graph.value_info} | {v.name for v in graph.input} | {v.name for v in graph.output}
    initializers = {t.name for t in graph.initializer}
    used = {name for node in graph.node for name in node.input if name}
    used |= {o.name for o in graph.output}
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                used |= _names_used_in_subgraph(attr.g)
            for g in attr.graphs:
                used |= _names_used_in_subgraph(g)
    for node in graph.node:
        for output in node.output:
            if output:
                assert output in typed, f"value {output!r} (from {node.op_type}) has no value_info"
    assert not (initializers - used), f"unused initializers: {sorted(initializers - used)}"
    assert not ({i.name for i in graph.input} - used), "unused graph inputs"
    produced_used = used
    for node in graph.node:
        assert any(o in produced_used for o in node.output), f"node {node.name} ({node.op_type}) output unused"


def _names_used_in_subgraph(graph: onnx.GraphProto) -> set[str]:
    used = {name for node in graph.node for name in node.input if name}
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                used |= _names_used_in_subgraph(attr.g)
    return used
