"""ONNX → JAX: readable, jit-able JAX source from an (untrusted) ONNX model.

- ``reader.py``: check (domains, cycles, undefined values), inline functions (``local_functions.py``), infer
  shapes and order a model loaded by ``workbench.onnx_io`` before any code is generated;
- ``registry.py`` + ``emitters/``: one emitter per ONNX op and version, one module per op family;
- ``generator.py`` (with ``context.py``, ``writer.py``, ``names.py``, ``literals.py``): one statement per node,
  names sanitized, values as escaped literals;
- ``api.py``: ``wb.to_jax_source`` / ``wb.to_jax`` / ``wb.save_jax``; ``source_text.py``: the source as a ``str`` a
  notebook shows as code;
- ``backend.py``: an ``onnx.backend`` Backend running models through the generated code;
- ``node_suite.py``: the ONNX node test suite run through that backend.
"""
