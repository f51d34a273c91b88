"""Emitter families, one module per op family (see docs/codegen.md).

Each module imports ``workbench.onnx_to_jax.registry`` (``helpers`` holds the runtime helpers
several families share) and registers its emitters at import time.
"""
