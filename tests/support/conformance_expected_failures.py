"""The list of expected conformance failures lives in the package (the coverage explorer shows it):
:mod:`workbench.onnx_to_jax.expected_failures`."""

from workbench.onnx_to_jax.expected_failures import EXPECTED_FAILURES, expected_failure_reason

__all__ = ["EXPECTED_FAILURES", "expected_failure_reason"]
