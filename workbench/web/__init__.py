"""Browser deployment harness: package an ONNX model for onnxruntime-web and smoke-test it.

``harness.py`` writes the harness folder (model, manifest, example inputs, page),
``runtime.py`` installs and locates the pinned onnxruntime-web files,
``server.py`` serves a folder on 127.0.0.1 and ``smoke.py`` opens it in headless
Chromium and checks the numbers against the manifest.
"""
