"""Linear algebra, complex numbers and FFT exports: what the graph looks like, and the clear errors.

The numbers themselves are checked by the handlers' testcases (test_handlers.py); these tests hold
the shape of the export (one local-function node per decomposition, the complex convention on the
graph's inputs and outputs) and the messages a user gets for what is not exported.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import onnx
import pytest
from jax import lax

import workbench as wb
from tests.support.harness import run_onnx
from workbench.jax_to_onnx.complex_numbers import from_pairs, to_pairs
from workbench.jax_to_onnx.handlers.linalg_kit import LINALG_DOMAIN


def test_a_decomposition_is_one_local_function_call_with_a_loop_inside() -> None:
    model = wb.to_onnx(lambda a: lax.linalg.cholesky(a, symmetrize_input=False), [("B", 4, 4)])
    assert [node.op_type for node in model.graph.node if node.domain == LINALG_DOMAIN] == ["Cholesky"]
    assert not any(node.op_type == "Loop" for node in model.graph.node)  # the loop is inside the function
    (function,) = model.functions
    assert function.domain == LINALG_DOMAIN and any(node.op_type == "Loop" for node in function.node)
    assert any(entry.domain == LINALG_DOMAIN for entry in model.opset_import)


def test_repeated_decompositions_of_one_signature_share_one_definition() -> None:
    def two(a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
        return lax.linalg.cholesky(a, symmetrize_input=False), lax.linalg.cholesky(b, symmetrize_input=False)

    model = wb.to_onnx(two, [(3, 3), (3, 3)])
    assert len(model.functions) == 1
    assert [node.op_type for node in model.graph.node if node.domain == LINALG_DOMAIN] == ["Cholesky", "Cholesky"]


def test_a_solve_inside_a_scan_body_imports_the_function_domain() -> None:
    def kalman_like(a: jax.Array, bs: jax.Array) -> jax.Array:
        return lax.scan(lambda c, b: (c + jnp.linalg.solve(a + 3 * jnp.eye(3), b), c), jnp.zeros(3), bs)[0]

    model = wb.to_onnx(kalman_like, [(3, 3), (5, 3)])
    onnx.checker.check_model(model, full_check=True)
    a, bs = np.eye(3, dtype=np.float32), np.ones((5, 3), np.float32)
    np.testing.assert_allclose(run_onnx(model, [a, bs])[0], np.asarray(kalman_like(a, bs)), rtol=1e-5)


def test_complex_inputs_and_outputs_are_documented_real_pairs() -> None:
    spec = jax.ShapeDtypeStruct(("B", 8), np.complex64)
    model = wb.to_onnx(lambda z: jnp.fft.fft(z) * 2j, [spec])
    (graph_input,), (graph_output,) = model.graph.input, model.graph.output
    for value in (graph_input, graph_output):
        dims = value.type.tensor_type.shape.dim
        assert value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT and dims[-1].dim_value == 2
        assert "real, imaginary" in value.doc_string
    z = (np.arange(16).reshape(2, 8) + 1j * np.ones((2, 8))).astype(np.complex64)
    got = from_pairs(run_onnx(model, [to_pairs(z)])[0])
    np.testing.assert_allclose(got, np.fft.fft(z) * 2j, rtol=1e-4, atol=1e-4)


def test_symbolic_matrix_sizes_are_refused_with_the_reason() -> None:
    with pytest.raises(wb.ConversionError, match=r"cholesky: the matrix size \(N\) must be static"):
        wb.to_onnx(jnp.linalg.cholesky, [("B", "N", "N")])


def test_real_schur_exports_the_quasi_triangular_form() -> None:
    a = np.array([[0.0, -2.0, 1.0], [1.0, 0.5, 0.0], [0.0, 0.3, -1.0]], np.float32)
    t, z = run_onnx(wb.to_onnx(jax.scipy.linalg.schur, [a]), [a])
    np.testing.assert_allclose(z @ t @ z.T, a, atol=1e-5)
    np.testing.assert_allclose(z.T @ z, np.eye(3), atol=1e-6)
    assert t[2, 0] == 0 and t[1, 0] * t[2, 1] == 0  # blocks of at most 2x2
    pair = 0 if t[1, 0] != 0 else 1  # the complex pair's block: equal diagonal, opposite off-diagonal signs
    assert t[pair, pair] == pytest.approx(t[pair + 1, pair + 1]) and t[pair, pair + 1] * t[pair + 1, pair] < 0


def test_schur_sorted_by_a_predicate_is_refused_with_the_reason() -> None:
    sort_positive = lambda a: lax.linalg.schur(a, sort_eig_vals=True, select_callable=lambda w: w.real > 0)  # noqa: E731
    with pytest.raises(wb.ConversionError, match=r"sort_eig_vals=True.*Python predicate"):
        wb.to_onnx(sort_positive, [(3, 3)])


def test_eig_exports_in_the_complex_convention() -> None:
    a = np.array([[0.0, -2.0, 1.0], [1.0, 0.5, 0.0], [0.0, 0.3, -1.0]], np.float32)
    model = wb.to_onnx(jnp.linalg.eig, [a])
    w, v = (from_pairs(y) for y in run_onnx(model, [a]))
    assert w.dtype == np.complex64 and v.shape == (3, 3)
    np.testing.assert_allclose(np.sort_complex(w), np.sort_complex(np.linalg.eigvals(a)), atol=1e-5)
    np.testing.assert_allclose(a @ v, v * w, atol=1e-5)
    # real input, dgeev's way: a real eigenvalue and its vector are exactly real, a pair exactly conjugate
    real = w.imag == 0
    assert real.sum() == 1 and np.all(v[:, real].imag == 0)
    first, second = np.flatnonzero(~real)
    assert w[first].imag > 0 and w[second] == np.conj(w[first]) and np.array_equal(v[:, second], np.conj(v[:, first]))


def test_a_primitive_without_a_complex_handler_says_so_before_lowering() -> None:
    with pytest.raises(wb.UnsupportedPrimitiveError, match=r"sin ×1 .*real numbers only.*complex values"):
        wb.to_onnx(jnp.sin, [jax.ShapeDtypeStruct((3,), np.complex64)])


def test_pivoted_qr_is_refused_with_what_to_use() -> None:
    with pytest.raises(wb.ConversionError, match=r"pivoting=True.*use pivoting=False"):
        wb.to_onnx(lambda a: jax.scipy.linalg.qr(a, pivoting=True)[0], [(4, 3)])
