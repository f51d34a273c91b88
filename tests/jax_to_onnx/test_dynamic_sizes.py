"""A model exported with symbolic dimensions runs at other sizes than the ones it was traced with.

Each case converts once and compares onnxruntime with JAX at two sizes of every symbol (the real-program
catalogue does the same for whole models: tests/real_programs/other_sizes.py). Also the ``constraints`` that
bound a symbol where the program needs it (``T <= 64``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import onnx
import pytest

import workbench as wb
from tests.support.harness import run_onnx

_RNG = np.random.default_rng(46)


def _matches_at(fn, model, *shapes: tuple[int, ...]) -> None:
    for shape in shapes:
        x = _RNG.standard_normal(shape).astype(np.float32)
        (got,) = run_onnx(model, [x])
        np.testing.assert_allclose(got, np.asarray(fn(x)), rtol=1e-5, atol=1e-5, err_msg=f"input shape {shape}")


def test_strided_valid_convolution_over_a_symbolic_length_runs_at_other_lengths():
    # the output length is max(floordiv(T - 10, 5) + 1, 0): a shape computed from it (here a broadcast)
    # needs Max in the graph's dimension arithmetic (wav2vec2's feature encoder)
    kernel = _RNG.standard_normal((4, 1, 10)).astype(np.float32)

    def frames(x):
        y = jax.lax.conv_general_dilated(x[:, None, :], kernel, (5,), "VALID")
        return y + jnp.zeros(y.shape[-1])

    model = wb.to_onnx(frames, [("B", "T")])
    _matches_at(frames, model, (2, 400), (1, 23), (3, 57))


def test_min_of_a_symbolic_length_in_a_shape_runs_at_other_lengths():
    # min(T, 6) rows: the graph computes Min of the runtime length, shorter and longer than 6
    def head(x):
        rows = x[:, :6]
        return rows + jnp.zeros((1, rows.shape[1], 1))

    model = wb.to_onnx(head, [("B", "T", 3)])
    _matches_at(head, model, (2, 9, 3), (1, 4, 3))


def _causal_from_table(tokens):
    # a causal mask cut from a table of 64 positions, as transformers' Flax decoders make it
    table = jnp.tril(jnp.ones((64, 64), jnp.float32))
    length = tokens.shape[1]
    mask = table[:length, :length]
    return jnp.broadcast_to(mask, (tokens.shape[0], length, length)) * tokens[:, None, :]


def test_a_constraint_bounds_a_symbol_so_a_table_slice_traces_and_runs_at_other_lengths():
    with pytest.raises(wb.WorkbenchError, match="min\\(64, T\\)"):
        wb.to_onnx(_causal_from_table, [("B", "T")])
    model = wb.to_onnx(_causal_from_table, [("B", "T")], constraints=["T <= 64"])
    _matches_at(_causal_from_table, model, (2, 12), (1, 5), (3, 64))


def test_the_constraints_are_written_into_the_model_for_whoever_serves_it(tmp_path):
    # ONNX shapes cannot bound a dimension: the file says in its metadata and doc string where it is valid
    path = tmp_path / "causal.onnx"
    model = wb.to_onnx(_causal_from_table, [("B", "T")], constraints=["T <= 64", "B >= 1"], path=str(path))
    for written in (model, onnx.load(str(path))):
        assert {p.key: p.value for p in written.metadata_props}["workbench.symbolic_constraints"] == "T <= 64; B >= 1"
        assert written.doc_string.endswith("valid where T <= 64, B >= 1")
    unbounded = wb.to_onnx(lambda x: x * 2, [("B", 3)])
    assert not any(p.key == "workbench.symbolic_constraints" for p in unbounded.metadata_props)


@pytest.mark.parametrize(("constraints", "message"), [
    ("T <= 64", "a list of strings"),
    (["T <<= 64"], "cannot parse"),
    (["S <= 64"], "'S' is not a dimension of any input spec"),
])
def test_bad_constraints_are_refused_with_what_to_do(constraints, message):
    with pytest.raises(wb.SpecError, match=message):
        wb.to_onnx(_causal_from_table, [("B", "T")], constraints=constraints)


@pytest.mark.parametrize("dtype", ["int32", "int64"])
def test_an_integer_max_with_zero_runs_in_onnxruntime(dtype):
    # Max(x, 0) becomes Relu only where onnxruntime has the kernel: int64 has none, so a clamped length
    # (wav2vec2's feature-vector mask: max(floordiv(n - 10, 5) + 1, 0) per row) stays a Max
    def clamped_lengths(lengths):
        return jnp.maximum((lengths - 10) // 5 + 1, 0) * 2

    model = wb.to_onnx(clamped_lengths, [jax.ShapeDtypeStruct(("B",), dtype)], enable_double_precision=dtype == "int64")
    for lengths in (np.array([3, 400], dtype), np.array([9, 10, 57], dtype)):
        (got,) = run_onnx(model, [lengths])
        np.testing.assert_array_equal(got, np.maximum((lengths - 10) // 5 + 1, 0) * 2)


def _pool_twice_and_back(x):
    # a U-Net's skeleton as einops users write it (reduce "b (h 2) (w 2) c -> b h w c" by reshape + max,
    # repeat "b h w c -> b (h 2) (w 2) c" by broadcast + reshape), three levels deep: only an image size of
    # 8*h traces, and the graph needs h itself at run time (the upsampled shapes are 2*h, 4*h)
    def pool(y):
        b, height, width, c = y.shape
        return y.reshape(b, height // 2, 2, width // 2, 2, c).max(axis=(2, 4))

    def up(y):
        b, height, width, c = y.shape
        return jnp.broadcast_to(y[:, :, None, :, None], (b, height, 2, width, 2, c)).reshape(b, 2 * height, 2 * width, c)

    first = pool(x)
    second = pool(first)
    third = pool(second)
    return up(jnp.concatenate([up(jnp.concatenate([up(third), second], -1)), first], -1)).sum(-1) + x[..., 0]


def test_a_spec_dim_of_8h_gives_h_to_the_graph_and_runs_at_other_sizes():
    # before: ConversionError "symbolic dimension 'h' is needed at run time but no input of this graph has it
    # as a dimension" (einops_unet at a symbolic image size, tests/real_programs/einops_programs.py)
    model = wb.to_onnx(_pool_twice_and_back, [("B", "8*h", "8*w", 3)])
    _matches_at(_pool_twice_and_back, model, (2, 16, 16, 3), (1, 8, 24, 3), (3, 32, 8, 3))


def test_a_spec_dim_of_2t_plus_1_gives_t_to_the_graph():
    # a symbol read back from an affine dim with an offset: pairs after a leading sample, scaled by position
    def pairs(x):
        length = (x.shape[1] - 1) // 2
        return x[:, 1:].reshape(x.shape[0], length, 2).sum(-1) * jnp.arange(length, dtype=x.dtype)

    model = wb.to_onnx(pairs, [("B", "2*T+1")])
    _matches_at(pairs, model, (2, 9), (1, 3), (3, 21))


def test_only_affine_dims_of_one_symbol_are_read_back():
    from workbench.compat import affine_in_one_symbol

    dims = jax.export.symbolic_shape("8*h, 2*T+1, floordiv(h, 2), h*h, B*T, h")
    assert [affine_in_one_symbol(d) for d in dims] == [("h", 8, 0), ("T", 2, 1), None, None, None, ("h", 1, 0)]
