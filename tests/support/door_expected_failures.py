"""Handler testcases and zoo models expected to fail through the Graph IR or the StableHLO door, with the reason.

One visible list per door. tests/jax_to_onnx/test_graph_ir.py and test_stablehlo.py mark these strict
xfail: a listed case that starts passing fails the suite (delete its entry then), an unlisted failure
fails it too. Zoo models are listed as ``zoo:<name>``.
"""

_EQUINOX_CODE = (
    "equinox's internal primitive is lowered by running the primitive object's own Python implementation; a Graph IR "
    "is data that names primitives, it cannot carry that code (graph_ir_to_onnx refuses it with a GraphIRError)"
)
_EQUINOX_PARAMS = (
    "equinox's maybe_set/vprim and lineax's linear_solve primitives carry Python objects as parameters (a PyTreeDef, an "
    "axis-name sentinel, equinox's static/flatten records) that "
    "have no data form: export_graph_ir refuses them, listing each parameter"
)

_REDUCER_WITH_JIT = (
    "the reducer of this generic reduce calls a jit, whose shardings the Graph IR drops; the handler re-traces the "
    "reducer with jax.vmap, and JAX's rules for jit need those shardings"
)

GRAPH_IR_EXPECTED_FAILURES: dict[str, str] = {
    "eqx_nonbatchable": _EQUINOX_CODE,
    "eqx_nondifferentiable_backward": _EQUINOX_CODE,
    "eqx_nontraceable": _EQUINOX_CODE,
    "eqx_unvmap_all": _EQUINOX_CODE,
    "eqx_unvmap_any": _EQUINOX_CODE,
    "eqx_unvmap_max": _EQUINOX_CODE,
    "eqx_while_loop_buffer": _EQUINOX_PARAMS,
    "eqx_while_loop_buffer_select": _EQUINOX_PARAMS,
    "eqx_while_loop_buffer_vmap": _EQUINOX_PARAMS,
    "lineax_linear_solve_cholesky": _EQUINOX_PARAMS,
    "lineax_linear_solve_lu": _EQUINOX_PARAMS,
    "lineax_linear_solve_qr": _EQUINOX_PARAMS,
    "reduce_argmax_pair": _REDUCER_WITH_JIT,
    "reduce_window_argmax_pool_pair": _REDUCER_WITH_JIT,
    "shard_map_one_device": (
        "shard_map's mesh and partition specs are device objects with no data form: export_graph_ir refuses them "
        "(the jaxpr door inlines the one-device body)"
    ),
}

_NOT_EXPORTABLE = (
    "jax.export itself refuses the function: its CPU lowering calls a LAPACK kernel (ormqr) that has no "
    "compatibility guarantee, so there is no serialized Exported to convert"
)
_RUNTIME_PADDING = (
    "SAME padding of a strided window over a symbolic dim: the exported module computes the padding with "
    "floor-division and select ops whose result depends on the parity of the dim, which no symbolic expression "
    "the converter follows can name; ONNX Conv/MaxPool need it as an attribute (refused with the op's location)"
)


def _lapack(*targets: str) -> str:
    return (
        f"the CPU export calls LAPACK through custom calls ({', '.join(targets)}), a platform kernel ABI rather than a "
        "StableHLO op; not converted yet (reported all at once with the other unsupported ops)"
    )


_COMPLEX = (
    "complex numbers (complex tensors, stablehlo.complex/real/imag/fft): the jaxpr door's real/imaginary pair "
    "representation is not wired into the StableHLO door yet; refused as unsupported, with the op's location"
)
_APPROX_TOP_K = "approx_top_k's CPU export is a custom call (ApproxTopK) without a converter yet"
_GENERIC_REDUCER = (
    "a reduce/reduce_window whose reducer is neither one combiner (add, max, ...) nor lax's argmax pair nor a running "
    "reduction: the body is refused by the converter's check (the jaxpr door lowers it as a Loop over the elements)"
)

STABLEHLO_EXPECTED_FAILURES: dict[str, str] = {
    "add_complex128": _COMPLEX,
    "iota_complex_phases": _COMPLEX,
    "iota_complex_symbolic": _COMPLEX,
    "scatter_mul_complex_by_real_signs": _COMPLEX,
    "scatter_mul_complex_rows": _COMPLEX,
    "add_complex64": _COMPLEX,
    "concatenate_complex": _COMPLEX,
    "dynamic_slice_complex": _COMPLEX,
    "fftshift_complex": _COMPLEX,
    "gather_complex": _COMPLEX,
    "neg_complex128": _COMPLEX,
    "neg_complex64": _COMPLEX,
    "rev_complex": _COMPLEX,
    "sub_complex128": _COMPLEX,
    "sub_complex64": _COMPLEX,
    "abs_complex64": _COMPLEX,
    "abs_complex_extremes": _COMPLEX,
    "angle": _COMPLEX,
    "broadcast_complex": _COMPLEX,
    "complex64_to_complex128": _COMPLEX,
    "complex_from_parts": _COMPLEX,
    "complex_scalar_imag": _COMPLEX,
    "complex_to_real_part": _COMPLEX,
    "cond_complex": _COMPLEX,
    "conj": _COMPLEX,
    "conj_of_real": _COMPLEX,
    "conv_complex64": _COMPLEX,
    "conv_complex64_nhwc_same": _COMPLEX,
    "conv_complex128_grouped_strided": _COMPLEX,
    "copy_complex": _COMPLEX,
    "cumsum_complex": _COMPLEX,
    "div_complex64": _COMPLEX,
    "div_complex_extremes": _COMPLEX,
    "dynamic_update_slice_complex": _COMPLEX,
    "einsum_complex_batched": _COMPLEX,
    "eq_complex": _COMPLEX,
    "exp_complex": _COMPLEX,
    "fft2": _COMPLEX,
    "fft_axis_and_norm": _COMPLEX,
    "fft_complex": _COMPLEX,
    "fft_complex128": _COMPLEX,
    "fft_convolution": _COMPLEX,
    "fft_length_1000": _COMPLEX,
    "fft_real_input_odd_length": _COMPLEX,
    "ifft": _COMPLEX,
    "ifftn_3d": _COMPLEX,
    "imag": _COMPLEX,
    "integer_pow_complex_3": _COMPLEX,
    "integer_pow_complex_neg2": _COMPLEX,
    "irfft_odd_length": _COMPLEX,
    "jit_complex": _COMPLEX,
    "log_complex": _COMPLEX,
    "matmul_complex": _COMPLEX,
    "mean_complex": _COMPLEX,
    "mul_complex128": _COMPLEX,
    "mul_complex64": _COMPLEX,
    "mul_complex_literal": _COMPLEX,
    "ne_complex": _COMPLEX,
    "pad_complex": _COMPLEX,
    "power_spectrum": _COMPLEX,
    "prod_complex": _COMPLEX,
    "real": _COMPLEX,
    "real_to_complex": _COMPLEX,
    "reshape_complex": _COMPLEX,
    "rfft": _COMPLEX,
    "rfft2_irfft2": _COMPLEX,
    "rfft_irfft_roundtrip_even": _COMPLEX,
    "rfftn_3d": _COMPLEX,
    "scan_complex": _COMPLEX,
    "scatter_add_complex": _COMPLEX,
    "scatter_complex": _COMPLEX,
    "sign_complex": _COMPLEX,
    "sqrt_complex": _COMPLEX,
    "sqrt_complex_axes": _COMPLEX,
    "square_complex": _COMPLEX,
    "squeeze_complex": _COMPLEX,
    "transpose_complex": _COMPLEX,
    "vdot": _COMPLEX,
    "where_complex": _COMPLEX,
    "while_complex": _COMPLEX,
    "approx_max_k": _APPROX_TOP_K,
    "approx_max_k_not_aggregated": _APPROX_TOP_K,
    "approx_min_k_axis0": _APPROX_TOP_K,
    "reduce_argmax_pair": _GENERIC_REDUCER,
    "reduce_int_custom": _GENERIC_REDUCER,
    "reduce_sum_of_squares_lambda": _GENERIC_REDUCER,
    "reduce_two_axes_symbolic": _GENERIC_REDUCER,
    "reduce_window_argmax_pool_pair": _GENERIC_REDUCER,
    "reduce_window_padded_dilated": _GENERIC_REDUCER,
    "reduce_window_sum_of_squares": _GENERIC_REDUCER,
    "conv_symbolic_spatial_same_strided": _RUNTIME_PADDING,
    "conv_f64_nhwc_same_symbolic": _RUNTIME_PADDING,
    "eigh_canonical_signs": _lapack('lapack_ssyevd_ffi'),
    "eigh_diagonal_ties_as_lapack": _lapack('lapack_ssyevd_ffi'),
    "eigh_identity_batch_as_lapack": _lapack('lapack_ssyevd_ffi'),
    "eigh_even_batched_symbolic": _lapack('lapack_ssyevd_ffi'),
    "eigh_f64": _lapack('lapack_dsyevd_ffi'),
    "eigh_invariants_repeated_eigenvalues": _lapack('lapack_ssyevd_ffi'),
    "eigh_upper_triangle": _lapack('lapack_ssyevd_ffi'),
    "eigvalsh": _lapack('lapack_ssyevd_ffi'),
    "hessenberg": _lapack('lapack_sgehrd_ffi'),
    "hessenberg_batched_symbolic": _lapack('lapack_sgehrd_ffi'),
    "hessenberg_scipy_with_q": _lapack('lapack_sgehrd_ffi', 'lapack_sorgqr_ffi'),
    "householder_product": _lapack('lapack_sgeqrf_ffi', 'lapack_sorgqr_ffi'),
    "householder_product_batched_symbolic": _lapack('lapack_sgeqrf_ffi', 'lapack_sorgqr_ffi'),
    "linalg_lstsq": _lapack('lapack_sgesdd_ffi'),
    "linalg_norm_2_and_nuclear": _lapack('lapack_sgesdd_ffi'),
    "linalg_pinv": _lapack('lapack_sgesdd_ffi'),
    "lineax_linear_solve_qr": _NOT_EXPORTABLE,
    "matrix_rank": _lapack('lapack_sgesdd_ffi'),
    "max_pool_nnx_same": _RUNTIME_PADDING,
    "ormqr_left": _NOT_EXPORTABLE,
    "ormqr_left_transposed": _NOT_EXPORTABLE,
    "ormqr_right": _NOT_EXPORTABLE,
    "ormqr_right_transposed_batched": _NOT_EXPORTABLE,
    "qr_batched_symbolic": _lapack('lapack_sgeqrf_ffi', 'lapack_sorgqr_ffi'),
    "qr_complete_tall": _lapack('lapack_sgeqrf_ffi', 'lapack_sorgqr_ffi'),
    "qr_f64": _lapack('lapack_dgeqrf_ffi', 'lapack_dorgqr_ffi'),
    "qr_rank_deficient_column": _lapack('lapack_sgeqrf_ffi', 'lapack_sorgqr_ffi'),
    "qr_raw": _lapack('lapack_sgeqrf_ffi'),
    "qr_raw_wide_batched": _lapack('lapack_sgeqrf_ffi'),
    "qr_reduced_tall": _lapack('lapack_sgeqrf_ffi', 'lapack_sorgqr_ffi'),
    "qr_wide": _lapack('lapack_sgeqrf_ffi', 'lapack_sorgqr_ffi'),
    "svd_f64": _lapack('lapack_dgesdd_ffi'),
    "svd_1x1_negative": _lapack('lapack_sgesdd_ffi'),
    "svd_single_column": _lapack('lapack_sgesdd_ffi'),
    "svd_identity_and_ties_in_index_order": _lapack('lapack_sgesdd_ffi'),
    "svd_rank_deficient_full": _lapack('lapack_sgesdd_ffi'),
    "svd_square_batched_symbolic": _lapack('lapack_sgesdd_ffi'),
    "svd_tall_reduced": _lapack('lapack_sgesdd_ffi'),
    "svd_wide_full": _lapack('lapack_sgesdd_ffi'),
    "svdvals": _lapack('lapack_sgesdd_ffi'),
    "tridiagonal_batched_symbolic": _lapack('lapack_ssytrd_ffi'),
    "tridiagonal_lower": _lapack('lapack_ssytrd_ffi'),
    "tridiagonal_solve": _lapack('lapack_sgtsv_ffi'),
    "tridiagonal_solve_batched_symbolic": _lapack('lapack_sgtsv_ffi'),
    "tridiagonal_solve_pivoting": _lapack('lapack_sgtsv_ffi'),
    "tridiagonal_upper": _lapack('lapack_ssytrd_ffi'),
    # eig/schur (LAPACK geev/gees custom calls) and complex sort/matmul: the jaxpr door converts them
    "argsort_complex": _COMPLEX,
    "eig_1x1": _lapack('lapack_sgeev_ffi'),
    "eig_2x2_complex_pair": _lapack('lapack_sgeev_ffi'),
    "eig_2x2_real_eigenvalues": _lapack('lapack_sgeev_ffi'),
    "eig_4x4": _lapack('lapack_sgeev_ffi'),
    "eig_8x8": _lapack('lapack_sgeev_ffi'),
    "eig_batched_symbolic": _lapack('lapack_sgeev_ffi'),
    "eig_complex128": _lapack('lapack_zgeev_ffi'),
    "eig_complex_input": _lapack('lapack_cgeev_ffi'),
    "eig_cyclic_permutation": _lapack('lapack_sgeev_ffi'),
    "eig_f64": _lapack('lapack_dgeev_ffi'),
    "eig_left_and_right": _lapack('lapack_sgeev_ffi'),
    "eig_left_only": _lapack('lapack_sgeev_ffi'),
    "eig_values_only": _lapack('lapack_sgeev_ffi'),
    "eigvals_badly_scaled_balanced": _lapack('lapack_sgeev_ffi'),
    "eigvals_upper_triangular_order": _lapack('lapack_sgeev_ffi'),
    "matmul_real_by_complex": _COMPLEX,
    "roots_leading_zero_nan": _lapack('lapack_sgeev_ffi'),
    "roots_real_and_complex_sorted": _lapack('lapack_sgeev_ffi'),
    "schur_1x1_real": _lapack('lapack_sgees_ffi'),
    "schur_2x2_complex_pair_standard_form": _lapack('lapack_sgees_ffi'),
    "schur_2x2_real_split": _lapack('lapack_sgees_ffi'),
    "schur_complex128": _lapack('lapack_zgees_ffi'),
    "schur_complex_batched": _lapack('lapack_cgees_ffi'),
    "schur_complex_invariants": _lapack('lapack_cgees_ffi'),
    "schur_complex_no_vectors": _lapack('lapack_cgees_ffi'),
    "schur_real_4x4": _lapack('lapack_sgees_ffi'),
    "schur_real_8x8": _lapack('lapack_sgees_ffi'),
    "schur_real_batched_symbolic": _lapack('lapack_sgees_ffi'),
    "schur_real_cyclic_permutation": _lapack('lapack_sgees_ffi'),
    "schur_real_f64": _lapack('lapack_dgees_ffi'),
    "schur_real_no_vectors": _lapack('lapack_sgees_ffi'),
    "sort_by_bool_key_complex_payload": _COMPLEX,
    "sort_complex_lexicographic": _COMPLEX,
    "sort_complex_random_axis0": _COMPLEX,
}
