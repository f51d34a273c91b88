"""JAX → ONNX export: the handler registry, the equation walker, graph passes and the public API."""
