"""JAX → ONNX: trace a callable and lower its jaxpr into an ONNX model.

- ``normalize.py`` / ``tracing.py`` / ``source.py``: any supported callable (plain, jit, Flax NNX/Linen,
  Equinox) → a ClosedJaxpr with symbolic dims, parameters named after module paths, source locations;
- ``functions.py``: ``@wb.onnx_function`` (calls kept as ONNX local functions);
- ``registry.py`` + ``handlers/``: one handler per JAX primitive, one module per family;
- ``builder.py`` / ``lowering.py``: the onnx-ir graph builder and the equation walker;
- ``passes/``: clean-up, folding, fusions, layout rules and shape annotation;
- ``api.py``: ``wb.to_onnx`` / ``wb.convert``.
"""
