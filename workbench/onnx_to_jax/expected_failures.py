"""Every ONNX node conformance case expected to fail, with the reason (one visible list).

In the package because the coverage explorer (``wb.coverage()``) shows these failures, with their
reason, apart from regressions.

Keys are fnmatch patterns over case names (exact names here). tests/onnx_to_jax/test_onnx_conformance.py fails when an
unlisted case fails and when a listed case passes, so this list stays honest. Refresh it with
`PYTHONPATH=. python tests/benchmarks/conformance_table.py --write-expected` (reasons already written here
are kept). What stays: random sampling (Bernoulli, training-mode Dropout), image codecs (ImageDecoder),
two Resize align_corners cases (the expected values depart from the spec and onnxruntime), and
numeric differences explained inline.
"""

EXPECTED_FAILURES: dict[str, str] = {
    'test_bernoulli': "random sampling: the values cannot match the reference's random generator",
    'test_bernoulli_double': "random sampling: the values cannot match the reference's random generator",
    'test_bernoulli_double_expanded': "random sampling: the values cannot match the reference's random generator",
    'test_bernoulli_expanded': "random sampling: the values cannot match the reference's random generator",
    'test_bernoulli_seed': "random sampling: the values cannot match the reference's random generator",
    'test_bernoulli_seed_expanded': "random sampling: the values cannot match the reference's random generator",
    'test_dft_inverse': "the expected values carry numpy's single-precision FFT noise (1.9e-7 where the exact result is 0), above the case's atol 1e-7; the generated code computes in complex128 and gives the exact result",
    'test_dft_inverse_opset19': "the expected values carry numpy's single-precision FFT noise (1.9e-7 where the exact result is 0), above the case's atol 1e-7; the generated code computes in complex128 and gives the exact result",
    'test_image_decoder_decode_bmp_rgb': 'ImageDecoder decodes encoded image bytes (JPEG/PNG/...); image codecs are outside JAX',
    'test_image_decoder_decode_jpeg2k_rgb': 'ImageDecoder decodes encoded image bytes (JPEG/PNG/...); image codecs are outside JAX',
    'test_image_decoder_decode_jpeg_bgr': 'ImageDecoder decodes encoded image bytes (JPEG/PNG/...); image codecs are outside JAX',
    'test_image_decoder_decode_jpeg_grayscale': 'ImageDecoder decodes encoded image bytes (JPEG/PNG/...); image codecs are outside JAX',
    'test_image_decoder_decode_jpeg_rgb': 'ImageDecoder decodes encoded image bytes (JPEG/PNG/...); image codecs are outside JAX',
    'test_image_decoder_decode_png_rgb': 'ImageDecoder decodes encoded image bytes (JPEG/PNG/...); image codecs are outside JAX',
    'test_image_decoder_decode_pnm_rgb': 'ImageDecoder decodes encoded image bytes (JPEG/PNG/...); image codecs are outside JAX',
    'test_image_decoder_decode_tiff_rgb': 'ImageDecoder decodes encoded image bytes (JPEG/PNG/...); image codecs are outside JAX',
    'test_image_decoder_decode_webp_rgb': 'ImageDecoder decodes encoded image bytes (JPEG/PNG/...); image codecs are outside JAX',
    'test_resize_downsample_scales_cubic_align_corners': "Resize align_corners with scales: the expected values divide by the fractional scaled length (scale x input length, 2.4 for the linear case's 4 x 0.6; onnx issue #2462 says on purpose), the spec's formula by length_resized, the resized tensor's length (2), which onnxruntime, PyTorch and the generated code use (onnxruntime gives [1, 4] for the linear case, the reference [1, 3.142857]; tests/onnx_to_jax/test_resize_traced.py checks onnxruntime's numbers)",
    'test_resize_downsample_scales_linear_align_corners': "Resize align_corners with scales: the expected values divide by the fractional scaled length (scale x input length, 2.4 for the linear case's 4 x 0.6; onnx issue #2462 says on purpose), the spec's formula by length_resized, the resized tensor's length (2), which onnxruntime, PyTorch and the generated code use (onnxruntime gives [1, 4] for the linear case, the reference [1, 3.142857]; tests/onnx_to_jax/test_resize_traced.py checks onnxruntime's numbers)",
    'test_training_dropout': "Dropout in training mode is random: the values cannot match the reference's random generator",
    'test_training_dropout_default': "Dropout in training mode is random: the values cannot match the reference's random generator",
    'test_training_dropout_default_mask': "Dropout in training mode is random: the values cannot match the reference's random generator",
    'test_training_dropout_mask': "Dropout in training mode is random: the values cannot match the reference's random generator",
}


def expected_failure_reason(name: str) -> str | None:
    """The listed reason why node case ``name`` fails, or None when it is expected to pass."""
    import fnmatch

    for pattern, reason in EXPECTED_FAILURES.items():
        if fnmatch.fnmatchcase(name, pattern):
            return reason
    return None
