"""ONNX -> JAX source generation.

``api.py`` is the public entry point; ``registry.py`` holds the emitters (one
per ONNX op and version, registered by family modules in ``ops/``);
``generator.py`` walks a graph and writes one statement per node through
``writer.py``; ``names.py`` turns ONNX value names into safe identifiers and
``literals.py`` turns values into escaped Python literals.
"""
