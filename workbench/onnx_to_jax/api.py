"""Public ONNX -> JAX API: ``to_jax_source``, ``to_jax`` and ``save_jax``."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from types import CodeType
from typing import Any, Callable

import numpy as np

from workbench.files import write_bytes_atomic
from workbench.onnx_io import ModelSource
from workbench.onnx_to_jax.reader import read_model

_MODULE_FILE = "model_jax.py"
_WEIGHTS_FILE = "weights.npz"
_WEIGHTS_INDEX = "weights.json"
_LOADER_FILE = "load.py"


@dataclass(frozen=True)
class GeneratedModule:
    """The generated source, its function (compiled and loaded), the params, and the nodes whose
    output shapes depend on values (``jax.jit(forward)`` cannot trace those; ``forward`` runs them
    between jitted parts, see ``segments.py``)."""

    source: str
    forward: Callable[..., Any]
    params: dict[str, np.ndarray]
    value_dependent_nodes: tuple[str, ...]


def _build(model: ModelSource, function_name: str):
    from workbench.onnx_to_jax.generator import ModuleBuilder

    builder = ModuleBuilder(read_model(model), function_name)
    source = builder.build()
    if builder.code is None:  # pragma: no cover - build() always compiles
        raise AssertionError("ModuleBuilder.build() did not compile the module")
    return source, builder.code, dict(builder.params), builder.barriers


def generate(model: ModelSource, *, function_name: str = "forward") -> tuple[str, dict[str, np.ndarray]]:
    """The generated module source and the params dict (numpy arrays keyed by initializer name)."""
    source, _, params, _ = _build(model, function_name)
    return source, params


def generate_compiled(
    model: ModelSource, *, function_name: str = "forward"
) -> tuple[str, Callable[..., Any], dict[str, np.ndarray]]:
    """``(source, function, params)``: the generated module compiled once and loaded."""
    source, code, params, _ = _build(model, function_name)
    return source, _load(code, function_name), params


def generate_module(model: ModelSource, *, function_name: str = "forward") -> GeneratedModule:
    """Everything :func:`generate_compiled` gives, plus the value-dependent nodes."""
    source, code, params, barriers = _build(model, function_name)
    return GeneratedModule(source, _load(code, function_name), params, barriers)


def to_jax_source(model: ModelSource, *, function_name: str = "forward") -> str:
    """Python source of a module defining ``function_name(params, *inputs)`` for the ONNX model.

    ``model`` is a path, bytes or ``onnx.ModelProto``. The source is compiled (not run) before
    it is returned, so it is known to parse; weights are not inlined (see :func:`to_jax`).
    """
    source, _ = generate(model, function_name=function_name)
    return source


def compile_source(source: str, function_name: str = "forward") -> Callable[..., Any]:
    """Compile source that :func:`to_jax_source` generated (never anything else) and return the function."""
    from workbench.onnx_to_jax.generator import GENERATED_FILENAME

    return _load(compile(source, GENERATED_FILENAME, "exec"), function_name)


def _load(code: CodeType, function_name: str) -> Callable[..., Any]:
    namespace: dict[str, Any] = {"__name__": "workbench_generated"}
    exec(code, namespace)  # noqa: S102 - our own generated code; model text only appears as escaped literals
    return namespace[function_name]


def to_jax(model: ModelSource) -> tuple[Callable[..., Any], dict[str, Any]]:
    """``(forward, params)``: call ``forward(params, *inputs)``; one output -> array, several -> tuple.

    ``jax.jit(forward)`` takes the weights as arguments (for fine-tuning and ``jax.grad``). For
    inference, ``jax.jit(functools.partial(forward, params))`` folds them in as constants, as an
    onnxruntime session does: XLA then computes everything that depends on weights alone
    (BatchNorm coefficients, the weight layouts its CPU convolutions want) once, at compile time.
    """
    import jax.numpy as jnp

    _, forward, params = generate_compiled(model)
    device_params = {k: (jnp.asarray(v) if v.dtype.kind in "fc" else v) for k, v in params.items()}
    return forward, device_params


_LOADER_SOURCE = '''"""Load the JAX model that workbench generated: ``forward, params = load()``.

Needs only numpy and jax. Call ``forward(params, *inputs)``.
"""

import importlib.util
import json
import os
from dataclasses import dataclass

import numpy as np


def load(directory=None):
    directory = directory or os.path.dirname(os.path.abspath(__file__))
    spec = importlib.util.spec_from_file_location("model_jax", os.path.join(directory, "model_jax.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    import jax.numpy as jnp

    with open(os.path.join(directory, "weights.json"), encoding="utf-8") as handle:
        index = json.load(handle)
    params = {}
    with np.load(os.path.join(directory, "weights.npz"), allow_pickle=False) as arrays:
        for i, (name, dtype) in enumerate(zip(index["names"], index["dtypes"])):
            raw = arrays[f"p{i}"]
            params[name] = raw.view(jnp.dtype(dtype)) if raw.dtype.name != dtype else raw
    return module.forward, params
'''


def save_jax(model: ModelSource, out_dir: str | os.PathLike) -> Path:
    """Write ``model_jax.py``, the weights (``weights.npz`` + ``weights.json``) and ``load.py``.

    The directory runs with JAX alone: ``from load import load; forward, params = load()``.
    Returns the directory path.
    """
    import io

    source, params = generate(model)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = list(params)
    dtypes = [params[n].dtype.name for n in names]
    arrays = {}
    for i, name in enumerate(names):
        value = np.asarray(params[name], order="C")  # not ascontiguousarray: it turns 0-d scalars into shape (1,)
        if value.dtype.kind not in "biufc" or value.dtype.name not in np.sctypeDict:
            # ml_dtypes (bfloat16, float8, int4...) are stored as raw bits and viewed back by the loader
            value = value.view(f"u{value.dtype.itemsize}")
        arrays[f"p{i}"] = value
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_bytes_atomic(out / _WEIGHTS_FILE, buffer.getvalue())
    index = json.dumps({"names": names, "dtypes": dtypes}, indent=1).encode("utf-8")
    write_bytes_atomic(out / _WEIGHTS_INDEX, index)
    write_bytes_atomic(out / _MODULE_FILE, source.encode("utf-8"))
    write_bytes_atomic(out / _LOADER_FILE, _LOADER_SOURCE.encode("utf-8"))
    return out
