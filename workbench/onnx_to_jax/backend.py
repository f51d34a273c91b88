"""An ``onnx.backend.base.Backend`` that runs models through the generated JAX code.

``prepare`` generates and compiles the source once; ``run`` calls it under
``jax.jit`` with the XLA options chosen for the model, as ``wb.jit_forward`` does
(one XLA compilation per input signature instead of one per
operation, much faster for models of more than a few nodes). A model whose
shapes depend on values (NonZero, Unique, NonMaxSuppression, or sizes read
from a runtime tensor) cannot be traced: the first such failure switches that
model to eager calls for good. Pass ``jit=False`` to ``prepare`` to always run
eagerly. This is what the ONNX conformance test drives.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import onnx
from onnx.backend.base import Backend as _OnnxBackend
from onnx.backend.base import BackendRep as _OnnxBackendRep

from workbench.onnx_io import ValueDescription, describe_inputs
from workbench.onnx_to_jax.feeds import check_feeds
from workbench.onnx_to_jax.jit_options import jit_forward


def _untraceable_errors() -> tuple[type[BaseException], ...]:
    import jax

    errors = jax.errors
    # NotImplementedError: generated helpers raise it for constructs that only run eagerly
    # (e.g. a Loop with scan outputs and a value-dependent condition)
    return (NotImplementedError, errors.ConcretizationTypeError, errors.TracerArrayConversionError, errors.TracerIntegerConversionError,
            errors.TracerBoolConversionError, errors.NonConcreteBooleanIndexError)


def _to_numpy(value: Any) -> Any:
    """An output as numpy: a sequence (list) element by element, an empty optional stays None."""
    if value is None:
        return None
    if isinstance(value, list):
        return [_to_numpy(v) for v in value]
    return np.asarray(value)


class BackendRep(_OnnxBackendRep):
    """A prepared model: the generated source, the compiled function and its params."""

    def __init__(self, source: str, forward: Any, params: dict[str, Any], inputs: Sequence[ValueDescription],
                 jit: bool = True, value_dependent: tuple[str, ...] = ()):
        self.source = source
        self._forward = forward
        self._params = params
        self._inputs = tuple(inputs)  # the model's declared inputs: run() checks what it is given against them
        self._jitted: Any = None
        # a model whose shapes depend on values runs its own jitted parts (segments.py): no whole jit
        self.jit = jit and not value_dependent

    def _call(self, inputs: list[Any]) -> Any:
        if self.jit:
            if self._jitted is None:
                self._jitted = jit_forward(self._forward)
            try:
                return self._jitted(self._params, *inputs)
            except _untraceable_errors():  # value-dependent shapes: run this model eagerly from now on
                self.jit = False
        return self._forward(self._params, *inputs)

    def run(self, inputs: Any, **kwargs: Any) -> tuple[np.ndarray, ...]:
        del kwargs
        if isinstance(inputs, np.ndarray) or not isinstance(inputs, (list, tuple)):
            inputs = [inputs]
        if len(inputs) > len(self._inputs):
            inputs = list(inputs)[: len(self._inputs)]
        import jax

        checked = check_feeds(list(inputs), self._inputs)  # dtypes and shapes, named as onnxruntime does
        with jax.enable_x64(True):  # ONNX's int64/float64 must not be truncated; scoped to this call
            result = self._call(checked)
        outputs = result if isinstance(result, tuple) else (result,)
        return tuple(_to_numpy(o) for o in outputs)


class Backend(_OnnxBackend):
    """``onnx.backend.base.Backend`` over workbench's ONNX -> JAX code generator (CPU)."""

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", *, jit: bool = True, **kwargs: Any) -> BackendRep:
        del kwargs
        from workbench.onnx_to_jax.api import generate_module

        if not cls.supports_device(device):
            raise ValueError(f"the workbench JAX backend runs on CPU, not {device!r}")
        generated = generate_module(model)
        return BackendRep(generated.source, generated.forward, generated.params, describe_inputs(model.graph), jit=jit,
                          value_dependent=generated.value_dependent_nodes)

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
