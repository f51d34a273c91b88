"""Graph IR: a JAX program traced by workbench as a versioned, schema-validated JSON document, and back to ONNX.

- :mod:`encode` writes a traced program (ClosedJaxpr, weights, names) as a document;
- :mod:`decode` rebuilds the jaxpr from a document with JAX's core API, by fixed tables (no code runs);
- :mod:`params`, :mod:`values`: the JSON forms of equation parameters, dtypes, scalars and tensors;
- :mod:`storage`: files, with large tensors optionally in a ``.safetensors`` file beside the JSON;
- :mod:`schema`: the JSON Schema (``workbench_graph_ir_v1.schema.json``) and validation;
- :mod:`api`: ``export_graph_ir``, ``graph_ir_to_onnx``, ``save_graph_ir``, ``load_graph_ir``, ``to_json``.
"""
