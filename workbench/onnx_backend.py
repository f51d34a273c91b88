"""An ``onnx.backend.base.Backend`` that runs models through the generated JAX code.

``prepare`` generates and compiles the source once; ``run`` calls the function
eagerly (no ``jax.jit``, so shapes that depend on values, e.g. NonZero, work).
This is what the ONNX conformance test drives.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import onnx
from onnx.backend.base import Backend as _OnnxBackend
from onnx.backend.base import BackendRep as _OnnxBackendRep


class BackendRep(_OnnxBackendRep):
    """A prepared model: the generated source, the compiled function and its params."""

    def __init__(self, source: str, forward: Any, params: dict[str, Any], n_inputs: int):
        self.source = source
        self._forward = forward
        self._params = params
        self._n_inputs = n_inputs

    def run(self, inputs: Any, **kwargs: Any) -> tuple[np.ndarray, ...]:
        del kwargs
        if isinstance(inputs, np.ndarray) or not isinstance(inputs, (list, tuple)):
            inputs = [inputs]
        if len(inputs) > self._n_inputs:
            inputs = list(inputs)[: self._n_inputs]
        import jax

        with jax.enable_x64(True):  # ONNX's int64/float64 must not be truncated; scoped to this call
            result = self._forward(self._params, *inputs)
        outputs = result if isinstance(result, tuple) else (result,)
        return tuple(np.asarray(o) for o in outputs)


class Backend(_OnnxBackend):
    """``onnx.backend.base.Backend`` over workbench's ONNX -> JAX code generator (CPU)."""

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> BackendRep:
        del kwargs
        from workbench.codegen.api import compile_source, generate

        if not cls.supports_device(device):
            raise ValueError(f"the workbench JAX backend runs on CPU, not {device!r}")
        source, params = generate(model)
        forward = compile_source(source)
        inits = {t.name for t in model.graph.initializer}
        n_inputs = sum(1 for i in model.graph.input if i.name not in inits)
        return BackendRep(source, forward, params, n_inputs)

    @classmethod
    def run_model(
        cls, model: onnx.ModelProto, inputs: Any, device: str = "CPU", **kwargs: Any
    ) -> tuple[np.ndarray, ...]:
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(
        cls, node: onnx.NodeProto, inputs: Any, device: str = "CPU",
        outputs_info: Sequence[tuple[np.dtype, tuple[int, ...]]] | None = None, **kwargs: Any,
    ) -> tuple[np.ndarray, ...]:
        raise NotImplementedError("run_node is not supported; wrap the node in a model and use run_model")

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device.upper() == "CPU"


prepare = Backend.prepare
run_model = Backend.run_model
supports_device = Backend.supports_device
