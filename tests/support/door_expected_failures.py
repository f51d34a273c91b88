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
    "equinox's maybe_set/vprim primitives carry Python objects as parameters (a PyTreeDef, an axis-name sentinel) that "
    "have no data form: export_graph_ir refuses them, listing each parameter"
)

GRAPH_IR_EXPECTED_FAILURES: dict[str, str] = {
    "eqx_nonbatchable": _EQUINOX_CODE,
    "eqx_nondifferentiable_backward": _EQUINOX_CODE,
    "eqx_unvmap_all": _EQUINOX_CODE,
    "eqx_unvmap_any": _EQUINOX_CODE,
    "eqx_unvmap_max": _EQUINOX_CODE,
    "eqx_while_loop_buffer": _EQUINOX_PARAMS,
    "eqx_while_loop_buffer_select": _EQUINOX_PARAMS,
    "eqx_while_loop_buffer_vmap": _EQUINOX_PARAMS,
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


STABLEHLO_EXPECTED_FAILURES: dict[str, str] = {
    "conv_symbolic_spatial_same_strided": _RUNTIME_PADDING,
    "eigh_canonical_signs": _lapack('lapack_ssyevd_ffi'),
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
}
