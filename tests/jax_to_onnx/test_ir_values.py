"""Helpers on onnx-ir values and arrays: the blocked and scratch transposes give exactly NumPy's transpose."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.jax_to_onnx.ir_values import transposed_copy


@pytest.mark.parametrize(
    ("shape", "perm"),
    [
        ((3, 3, 160, 200), (3, 2, 0, 1)),  # a convolution kernel HWIO -> OIHW, above the blocking threshold
        ((700, 450), None),  # a matrix: reversed axes, edges not multiples of the block
        ((5, 130, 70, 9), (2, 0, 3, 1)),
        ((2, 3, 4), (1, 0, 2)),  # small, and the inner axis stays inner: NumPy's own copy
        ((300, 2000), (0, 1)),
        ((1200, 1500), None),  # a matrix wider than a scratch row and longer than its rows: chunks on both axes
        ((300, 40, 30), (2, 1, 0)),  # a 1-D convolution kernel WIO -> OIW, W longer than the scratch's rows
        ((3, 3, 3, 96, 128), (4, 3, 0, 1, 2)),  # a 3-D convolution kernel DHWIO -> OIDHW
        ((2, 3, 300, 500), (2, 3, 0, 1)),  # two runs of axes swapped
    ],
)
def test_blocked_transpose_equals_numpy(shape: tuple[int, ...], perm: tuple[int, ...] | None) -> None:
    array = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    result = transposed_copy(array, perm)
    expected = np.transpose(array, perm)
    assert result.shape == expected.shape and result.dtype == array.dtype
    assert result.flags.c_contiguous
    np.testing.assert_array_equal(result, expected)


@pytest.mark.parametrize("dtype", [np.float16, np.float64, np.int8, np.bool_])
def test_scratch_transpose_of_other_item_sizes(dtype: type) -> None:
    array = (np.random.default_rng(2).standard_normal((3, 3, 300, 520)) * 50).astype(dtype)  # 1.4-11 MB
    result = transposed_copy(array, (3, 2, 0, 1))
    assert result.dtype == array.dtype and result.flags.c_contiguous
    np.testing.assert_array_equal(result, np.transpose(array, (3, 2, 0, 1)))


def test_blocked_transpose_of_a_strided_view_and_integers() -> None:
    array = np.arange(2 * 3 * 300 * 400, dtype=np.int64).reshape(2, 3, 300, 400)[:, :, ::2, :]  # 4.3 MB, strided
    np.testing.assert_array_equal(transposed_copy(array, (3, 2, 0, 1)), np.transpose(array, (3, 2, 0, 1)))


def test_an_owned_array_is_returned_only_while_it_is_the_values_tensor() -> None:
    import onnx_ir as ir

    from workbench.jax_to_onnx.ir_values import own_array, owned_array

    callers = np.ones((4, 3), np.float32)
    value = ir.Value(name="w", const_value=ir.Tensor(callers, name="w"))
    assert owned_array(value) is None  # the caller's array: never changed in place
    copy = np.ascontiguousarray(callers.T)
    own_array(value, copy)
    assert owned_array(value) is copy and value.const_value.numpy() is copy
    value.const_value = ir.Tensor(np.zeros((3, 4), np.float32), name="w")  # replaced by another pass
    assert owned_array(value) is None
    frozen = np.zeros((2, 2), np.float32)
    frozen.flags.writeable = False
    own_array(value, frozen)
    assert owned_array(value) is None
