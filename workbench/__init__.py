"""workbench: convert models between JAX and ONNX, from a notebook.

The public API is re-exported here. Importing the package is cheap on purpose:
JAX, onnxruntime, plotly and the Jupyter stack are imported only when a
function that needs them is first used (PEP 562 module ``__getattr__``),
because the first conversion in a fresh kernel is what users feel.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from workbench.errors import (
    ConversionError,
    GraphIRError,
    ModelRunError,
    OnnxModelError,
    PluginLoadError,
    SpecError,
    TraceError,
    UnsupportedOnnxOpError,
    UnsupportedPrimitiveError,
    WorkbenchError,
    WorkbenchWarning,
)

from workbench.version import __version__
from workbench.lazy_imports import defer_heavy_imports

# before anything imports onnx-ir, which imports sympy (~0.9 s) for dim arithmetic we never do, and
# onnxscript, which imports ONNX's reference kernels (0.1-0.4 s) that a conversion rarely calls
defer_heavy_imports()

# public name -> module that defines it
_LAZY_EXPORTS: dict[str, str] = {
    "to_onnx": "workbench.jax_to_onnx.api",
    "convert": "workbench.analysis.conversion",
    "Conversion": "workbench.analysis.conversion",
    "Precision": "workbench.jax_to_onnx.precision",
    "for_onnxruntime_cpu": "workbench.jax_to_onnx.onnxruntime_cpu",
    "onnx_function": "workbench.jax_to_onnx.functions",
    "export_graph_ir": "workbench.jax_to_onnx.graph_ir.api",
    "export_graph_ir_json": "workbench.jax_to_onnx.graph_ir.api",
    "graph_ir_to_onnx": "workbench.jax_to_onnx.graph_ir.api",
    "save_graph_ir": "workbench.jax_to_onnx.graph_ir.api",
    "load_graph_ir": "workbench.jax_to_onnx.graph_ir.api",
    "to_json": "workbench.jax_to_onnx.graph_ir.api",
    "graph_ir_schema": "workbench.jax_to_onnx.graph_ir.schema",
    "validate_graph_ir": "workbench.jax_to_onnx.graph_ir.schema",
    "check": "workbench.analysis.report",
    "CompatibilityReport": "workbench.analysis.report",
    "parity": "workbench.analysis.parity",
    "ParityReport": "workbench.analysis.parity",
    "locate_divergence": "workbench.analysis.locate",
    "to_jax_source": "workbench.onnx_to_jax.api",
    "to_jax": "workbench.onnx_to_jax.api",
    "save_jax": "workbench.onnx_to_jax.api",
    "jit_forward": "workbench.onnx_to_jax.jit_options",
    "coverage": "workbench.jupyter.coverage",
    "view": "workbench.jupyter.viewer",
    "export_web_harness": "workbench.web.harness",
    "HarnessInfo": "workbench.web.harness",
    "smoke_test_web_harness": "workbench.web.smoke",
    "smoke_test_web_harnesses": "workbench.web.smoke",
    "SmokeReport": "workbench.web.smoke",
}

__all__ = sorted(
    [
        *_LAZY_EXPORTS,
        "ConversionError",
        "GraphIRError",
        "ModelRunError",
        "OnnxModelError",
        "PluginLoadError",
        "SpecError",
        "TraceError",
        "UnsupportedOnnxOpError",
        "UnsupportedPrimitiveError",
        "WorkbenchError",
        "WorkbenchWarning",
        "load_ipython_extension",
        "unload_ipython_extension",
    ]
)


def __getattr__(name: str) -> Any:
    module_name = _LAZY_EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'workbench' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext workbench``: register the ``%%to_onnx`` and ``%onnx_view`` magics."""
    from workbench.jupyter.magics import load_ipython_extension as _load

    _load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext workbench``: remove the magics again."""
    from workbench.jupyter.magics import unload_ipython_extension as _unload

    _unload(ipython)


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    """Entry point Jupyter Server uses to find the viewer server extension."""
    return [{"module": "workbench.jupyter.server"}]


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from workbench.analysis.locate import locate_divergence
    from workbench.analysis.parity import ParityReport, parity
    from workbench.analysis.report import CompatibilityReport, check
    from workbench.onnx_to_jax.api import save_jax, to_jax, to_jax_source
    from workbench.onnx_to_jax.jit_options import jit_forward
    from workbench.analysis.conversion import Conversion, convert
    from workbench.jax_to_onnx.api import to_onnx
    from workbench.jax_to_onnx.precision import Precision
    from workbench.jax_to_onnx.onnxruntime_cpu import for_onnxruntime_cpu
    from workbench.jupyter.coverage import coverage
    from workbench.jupyter.viewer import view
    from workbench.jax_to_onnx.functions import onnx_function
    from workbench.web.harness import HarnessInfo, export_web_harness
    from workbench.web.smoke import SmokeReport, smoke_test_web_harness, smoke_test_web_harnesses
