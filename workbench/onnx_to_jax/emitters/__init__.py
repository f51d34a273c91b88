"""Emitter families, one module per op family (see docs/codegen.md).

Each module imports only ``workbench.onnx_to_jax.registry`` (and ``common`` for shared
runtime helpers) and registers its emitters at import time.
"""
