"""runtime="onnxruntime-cpu": bfloat16 / int16 models load and run in onnxruntime's CPU provider, compared with JAX.

onnxruntime's CPU provider has almost no bfloat16 kernel and no int16 Max/Min/Relu; the widening pass
(workbench.jax_to_onnx.cpu_widening) makes each node it has no kernel for compute in float32 / int32
between Casts. Correctly rounded ops then give JAX's bfloat16 bits exactly (checked bit for bit on
values spread over 16 binades, with signed zeros and halfway cases); the others are held to the
error stated beside them, measured against JAX and against float64.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import onnx
import onnx_ir as ir
import pytest
from flax import nnx

import workbench as wb
from workbench.jax_to_onnx.cpu_widening import widen_for_cpu
from workbench.onnx_io import open_session
from workbench.onnx_io.cpu_kernels import has_cpu_kernel, missing_kernel_in, refused_type_in, without_cpu_kernel
from workbench.specs import TensorSpec

BF16 = ml_dtypes.bfloat16
EPS = float(ml_dtypes.finfo(BF16).eps)  # 2**-7, bfloat16's machine epsilon
CPU = "onnxruntime-cpu"


def _floats(dtype, shape, seed=0) -> np.ndarray:
    """Values over 16 binades of both signs, with zeros of both signs: the cases rounding can get wrong."""
    rng = np.random.default_rng(seed)
    values = rng.standard_normal(shape) * np.exp2(rng.integers(-8, 8, shape))
    flat = values.reshape(-1)
    flat[:4] = [0.0, -0.0, 1.0, -1.0]
    return values.astype(np.float32).astype(dtype)


def _run(fn, *args, **convert_args):
    conversion = wb.convert(fn, list(args), runtime=CPU, **convert_args)
    onnx.checker.check_model(conversion.model, full_check=True)
    return conversion, [np.asarray(v) for v in conversion.run(*args)]


def _same_bits(got: np.ndarray, want: np.ndarray, signed_zeros: bool = True) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape
    if want.dtype.kind == "f" or want.dtype == BF16:
        both_nan = np.isnan(want.astype(np.float32)) & np.isnan(got.astype(np.float32))
        bits = got.view(np.uint16) == want.view(np.uint16)
        if not signed_zeros:
            bits |= (got.astype(np.float32) == 0) & (want.astype(np.float32) == 0)
        mismatched = int((~(bits | both_nan)).sum())
    else:
        mismatched = int((got != want).sum())
    assert mismatched == 0, f"{mismatched} of {want.size} values differ from JAX"


# correctly rounded in IEEE arithmetic: float32 then one rounding to bfloat16 is the bfloat16 op
EXACT = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "max": jnp.maximum,
    "min": jnp.minimum,
    "sqrt": lambda a, b: jnp.sqrt(jnp.abs(a)),
    "relu": lambda a, b: jax.nn.relu(a),
    "neg_abs": lambda a, b: -jnp.abs(a),
    "less": lambda a, b: a < b,
    "equal": lambda a, b: a == jnp.where(b > 0, a, b),
    "where": lambda a, b: jnp.where(a > b, a, b),
}


@pytest.mark.parametrize("name", sorted(EXACT))
def test_correctly_rounded_ops_give_jaxs_bfloat16_bits(name):
    a, b = _floats(BF16, (64, 64), 1), _floats(BF16, (64, 64), 2)
    conversion, (got,) = _run(EXACT[name], a, b)
    # Relu(-0) is -0 in onnxruntime (in float32 too), +0 in XLA: the one difference that is not the widening's
    _same_bits(got, np.asarray(jax.jit(EXACT[name])(a, b)), signed_zeros=name != "relu")
    assert any(n.op_type == "Cast" for n in conversion.ir_model.graph)  # it was widened, not run natively


INT16_OPS = {
    "max": jnp.maximum, "min": jnp.minimum, "relu": lambda a, b: jax.nn.relu(a), "sub": lambda a, b: a - b,
    "add": lambda a, b: a + b, "mul": lambda a, b: a * b, "equal": lambda a, b: a == b,
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(INT16_OPS))
def test_int16_ops_compute_in_int32_and_wrap_as_int16_does(name):
    rng = np.random.default_rng(3)
    a = rng.integers(-(2**15), 2**15, (32, 32)).astype(np.int16)
    b = rng.integers(-(2**15), 2**15, (32, 32)).astype(np.int16)
    a[0, :3], b[0, :3] = [-(2**15), 2**15 - 1, 0], [-1, 1, 0]  # overflowing sums and differences wrap
    _, (got,) = _run(INT16_OPS[name], a, b)
    _same_bits(got, np.asarray(jax.jit(INT16_OPS[name])(a, b)))


# not correctly rounded in general: measured against JAX's bfloat16 results and against float64. On these
# inputs Exp, Tanh, Erf, Log and MatMul (float32 accumulation rounded once, as XLA's CPU dot does) gave
# JAX's bits; a logistic of a very negative input has a larger *relative* error in onnxruntime's float32
# Sigmoid (up to 64 eps on values near 1e-6), so the bound is normwise: |onnx - jax| <= 1 eps * max|jax|.
TRANSCENDENTAL = {
    "exp": jnp.exp,
    "tanh": jnp.tanh,
    "erf": jax.scipy.special.erf,
    "log": lambda a: jnp.log(jnp.abs(a) + 1),
    "logistic": jax.nn.sigmoid,
    "gelu": lambda a: jax.nn.gelu(a, approximate=False),
    "silu": jax.nn.silu,
    "softmax": jax.nn.softmax,
}


@pytest.mark.parametrize("name", sorted(TRANSCENDENTAL))
def test_transcendental_ops_stay_within_one_bfloat16_eps_of_jax(name):
    a = (np.random.default_rng(4).standard_normal((64, 128)) * 4).astype(BF16)
    _, (got,) = _run(TRANSCENDENTAL[name], a)
    want = np.asarray(jax.jit(TRANSCENDENTAL[name])(a)).astype(np.float64)
    error = np.abs(got.astype(np.float64) - want).max() / np.abs(want).max()
    assert error <= EPS, f"{name}: normwise error {error / EPS:.3g} eps"
    if name in ("exp", "tanh", "erf", "log"):
        _same_bits(got, np.asarray(jax.jit(TRANSCENDENTAL[name])(a)))


@pytest.mark.parametrize("depth", [16, 1024])
def test_bfloat16_matmul_accumulates_in_float32_as_jax_does(depth):
    x, w = _floats(BF16, (16, depth), 5), _floats(BF16, (depth, 32), 6)
    _, (got,) = _run(lambda x, w: x @ w, x, w)
    want = np.asarray(jax.jit(lambda x, w: x @ w)(x, w))
    scale = np.abs(x.astype(np.float64)) @ np.abs(w.astype(np.float64))
    error = (np.abs(got.astype(np.float64) - want.astype(np.float64)) / scale).max()
    assert error <= EPS, f"K={depth}: {error / EPS:.3g} eps of sum |x||w|"  # measured: 0 (the same bits)


def test_only_nodes_without_a_kernel_are_widened_and_casts_are_shared():
    def fn(x, w):
        h = x @ w  # no bfloat16 MatMul: widened
        return jnp.transpose(h) * 2, jnp.tanh(h)  # Transpose has one: left as it is; h is cast up once for both

    x, w = _floats(BF16, (4, 8)), _floats(BF16, (8, 6), 1)
    conversion, got = _run(fn, x, w)
    graph = conversion.ir_model.graph
    transpose = next(n for n in graph if n.op_type == "Transpose")
    assert transpose.inputs[0].type.dtype == ir.DataType.BFLOAT16
    casts = [n for n in graph if n.op_type == "Cast"]
    assert len({(id(n.inputs[0]), n.attributes["to"].as_int()) for n in casts}) == len(casts)
    for g, want in zip(got, jax.jit(fn)(x, w), strict=True):
        _same_bits(g, np.asarray(want))


def test_float16_needs_no_widening():
    # onnxruntime's CPU provider runs every float16 node itself (it casts around its missing kernels)
    x = _floats(np.float16, (4, 8))
    conversion = wb.convert(lambda x: jnp.tanh(x @ x.T) + jnp.maximum(x, 0).sum(), [x])
    assert widen_for_cpu(conversion.ir_model) == []
    np.testing.assert_array_equal(conversion.run(x)[0], np.asarray(jax.jit(lambda x: jnp.tanh(x @ x.T) + jnp.maximum(x, 0).sum())(x)))


def test_probe_agrees_with_loading_the_model():
    x, w = _floats(BF16, (4, 8)), _floats(BF16, (8, 6), 1)
    model = wb.convert(lambda x, w: jnp.maximum(x @ w, 0), [x, w]).ir_model
    opsets = dict(model.opset_imports)
    missing = without_cpu_kernel(model)
    assert [n.op_type for n in missing] == ["MatMul", "Relu"] or [n.op_type for n in missing] == ["MatMul", "Max"]
    assert all(not has_cpu_kernel(n, opsets) for n in missing)
    with pytest.raises(wb.OnnxModelError) as info:
        open_session(model)
    reported = missing_kernel_in(str(info.value))
    assert reported is not None and reported.node == missing[0].name
    widened = widen_for_cpu(model)
    assert [w.node for w in widened] == [n.name for n in missing]
    assert "bfloat16" in widened[0].was and without_cpu_kernel(model) == []
    open_session(model)  # loads now


def test_missing_kernel_error_names_the_node_op_type_and_what_to_do():
    x = _floats(BF16, (4, 8))
    conversion = wb.convert(lambda x: x @ x.T, [x])
    with pytest.raises(wb.OnnxModelError) as info:
        conversion.run(x)
    message = str(info.value)
    assert "no kernel for node 'dot_general', MatMul (opset 21) on bfloat16, bfloat16 -> bfloat16" in message
    assert 'runtime="onnxruntime-cpu"' in message and "wb.for_onnxruntime_cpu" in message
    assert "failing node 'with'" not in message  # onnxruntime's "node with name '...'" is read whole


def test_bad_runtime_is_a_clear_error():
    with pytest.raises(ValueError, match="runtime: expected None .*'onnxruntime-cpu'.*got 'cuda'"):
        wb.convert(lambda x: x, [(2,)], runtime="cuda")


# ----------------------------------------------------------------------------- real models in bfloat16
BF = jnp.bfloat16


class _MLP(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.up = nnx.Linear(16, 64, dtype=BF, param_dtype=BF, rngs=rngs)
        self.down = nnx.Linear(64, 8, dtype=BF, param_dtype=BF, rngs=rngs)

    def __call__(self, x):
        return self.down(nnx.gelu(self.up(x)))


class _CNN(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.conv = nnx.Conv(3, 8, (3, 3), dtype=BF, param_dtype=BF, rngs=rngs)  # ONNX Conv takes no bfloat16 at opset 21
        self.norm = nnx.LayerNorm(8, dtype=BF, param_dtype=BF, rngs=rngs)
        self.head = nnx.Linear(8, 4, dtype=BF, param_dtype=BF, rngs=rngs)

    def __call__(self, x):
        return self.head(self.norm(nnx.relu(self.conv(x))).mean((1, 2)))


class _Block(nnx.Module):
    """A pre-norm causal transformer block, parameters and compute in bfloat16."""

    def __init__(self, rngs: nnx.Rngs, width: int = 32):
        kw = {"dtype": BF, "param_dtype": BF, "rngs": rngs}
        self.ln1, self.ln2 = nnx.LayerNorm(width, **kw), nnx.LayerNorm(width, **kw)
        self.attn = nnx.MultiHeadAttention(num_heads=4, in_features=width, decode=False, **kw)
        self.up, self.down = nnx.Linear(width, 4 * width, **kw), nnx.Linear(4 * width, width, **kw)

    def __call__(self, x):
        mask = nnx.make_causal_mask(jnp.ones(x.shape[:2]))
        x = x + self.attn(self.ln1(x), mask=mask)
        return x + self.down(nnx.gelu(self.up(self.ln2(x))))


def _eqx_mlp():
    model = eqx.nn.MLP(16, 8, 32, 2, key=jax.random.key(0))
    return jax.tree.map(lambda a: a.astype(BF) if eqx.is_inexact_array(a) else a, model)


MODELS = {
    "nnx_mlp": (lambda: _MLP(nnx.Rngs(0)), (4, 16)),
    "nnx_cnn": (lambda: _CNN(nnx.Rngs(0)), (2, 8, 8, 3)),
    "nnx_block": (lambda: _Block(nnx.Rngs(0)), (2, 6, 32)),
    "eqx_mlp": (_eqx_mlp, (16,)),
}


# models with a GELU or softmax: exported as the fused op (tests/jax_to_onnx/test_half_fusions.py), which
# computes in float32 between bfloat16 input and output where JAX op by op rounds each step (a LayerNorm, computed
# in float32 by Flax and rounded once, keeps the same bits: nnx_cnn)
FUSED = {"nnx_mlp", "nnx_block"}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_bfloat16_models_run_in_onnxruntime_cpu_as_jax_computes_them(name):
    make, shape = MODELS[name]
    model = make()
    x = (np.random.default_rng(7).standard_normal(shape)).astype(BF16)
    conversion, (got,) = _run(model, x)
    assert got.dtype == BF16
    eager = np.asarray(model(x))
    if name in FUSED:  # a fused Gelu / Softmax does not round between its ops: measured 0.50 (block), 0.44 (mlp) eps
        error = np.abs(got.astype(np.float64) - eager.astype(np.float64)).max() / np.abs(eager.astype(np.float64)).max()
        print(f"{name}: {error / EPS:.3g} eps from JAX op by op")
        assert error <= EPS
    else:  # JAX op by op rounds every result to bfloat16, as the ONNX model does: the same bits
        _same_bits(got, eager)
    # XLA's fusions keep float32 between fused ops: within 1 eps (the transformer block measured 0.33 eps)
    jitted = np.asarray(eqx.filter_jit(lambda m, x: m(x))(model, x)).astype(np.float64)
    assert np.abs(got.astype(np.float64) - jitted).max() <= EPS * np.abs(jitted).max()
    assert conversion.parity().ok


def test_half_precision_export_runs_in_onnxruntime_cpu():
    # precision="bfloat16" used to be checkable only in ONNX's reference evaluator; widened it loads in onnxruntime
    from onnx.reference import ReferenceEvaluator

    def fn(x, w):
        return jax.nn.gelu(x @ w) * 0.5

    x, w = np.random.default_rng(8).standard_normal((8, 32), np.float32), np.random.default_rng(9).standard_normal((32, 16), np.float32)
    plain = wb.convert(fn, [x, w], precision="bfloat16")
    with pytest.raises(wb.OnnxModelError, match="no kernel for node"):
        plain.run(x, w)
    runnable = wb.convert(fn, [x, w], precision="bfloat16", runtime=CPU)
    onnx.checker.check_model(runnable.model, full_check=True)
    got = runnable.run(x, w)[0]
    reference = ReferenceEvaluator(plain.model).run(None, {"x": x, "w": w})[0]
    # the same model, rounding where it rounds: onnxruntime's float32 Erf/MatMul against the evaluator's float64
    np.testing.assert_allclose(got, reference, rtol=2 * EPS, atol=2 * EPS * np.abs(reference).max())
    assert runnable.parity().ok


def test_for_onnxruntime_cpu_makes_a_runnable_copy_of_a_model(tmp_path):
    x = _floats(BF16, (4, 8))
    conversion = wb.convert(lambda x: jnp.maximum(x @ x.T, 0), [x])
    proto = conversion.model
    path = tmp_path / "bf16.onnx"
    onnx.save_model(proto, str(path))
    # every form the public API takes a model in: a Conversion, a ModelProto, a path (str or Path), its bytes
    for source in (conversion, proto, path, str(path), proto.SerializeToString()):
        runnable = wb.for_onnxruntime_cpu(source)
        onnx.checker.check_model(runnable, full_check=True)
        got = open_session(runnable).run({"x": x})[0]
        _same_bits(got, np.asarray(jnp.maximum(jnp.asarray(x) @ jnp.asarray(x).T, 0)))
    assert [n.op_type for n in proto.graph.node if n.op_type == "Cast"] == []  # the original is untouched
    assert [n.op_type for n in conversion.ir_model.graph if n.op_type == "Cast"] == []
    with pytest.raises(wb.SpecError, match="model: expected a wb.Conversion, an onnx.ModelProto, a path"):
        wb.for_onnxruntime_cpu(42)


def test_parity_and_the_locator_run_a_bfloat16_model_through_its_twin_and_say_so():
    model = _MLP(nnx.Rngs(1))
    x = np.random.default_rng(10).standard_normal((4, 16)).astype(BF16)
    conversion = wb.convert(model, [x])  # as traced: onnxruntime's CPU provider cannot load it
    report = conversion.parity()
    assert report.ok and {w.was.split(" ")[0] for w in report.widened} >= {"Gemm"}
    assert "run through a twin of the model: onnxruntime's CPU provider cannot run" in report.summary() and "the model itself is unchanged" in report.summary()
    assert not any(n.op_type == "Cast" and n.name.endswith(".float32") for n in conversion.ir_model.graph)
    located = wb.locate_divergence(conversion, inputs=[x])
    assert located.first_divergent is None, located.summary()
    # the block's residual sum feeds a float32 LayerNorm: XLA's fusion used to skip its bfloat16 rounding, which
    # the locator took for a divergence of the Cast after it (1 ulp); compiled without excess precision it rounds
    block = _Block(nnx.Rngs(1))
    xb = np.random.default_rng(10).standard_normal((2, 6, 32)).astype(BF16)
    located = wb.locate_divergence(wb.convert(block, [xb]), inputs=[xb])
    assert located.first_divergent is None, located.summary()
    assert wb.convert(model, [x], runtime=CPU).parity().widened == ()  # a runnable export needs no twin


def test_a_kernel_that_refuses_a_type_when_run_is_probed_too():
    # onnxruntime loads a float16 ScatterND with reduction="add" and refuses it when run: the probe runs the
    # node once on zeros. The gradient of x[:, 0] over a symbolic batch is such a scatter-add (prog50's jmp program)
    def fn(x):
        return jax.grad(lambda x: (x[:, 0] ** 2).sum())(x)

    spec = TensorSpec(("B", 4), "float16")
    x = np.random.default_rng(11).standard_normal((5, 4)).astype(np.float16)
    plain = wb.convert(fn, [spec])
    with pytest.raises(wb.OnnxModelError, match="Its CPU kernel refuses that type: convert with runtime=") as info:
        plain.run(x)
    assert refused_type_in(str(info.value)) is not None
    report = plain.parity()
    assert report.ok and [w.was.split(" ")[0] for w in report.widened] == ["ScatterND"]
    runnable = wb.convert(fn, [spec], runtime=CPU)
    onnx.checker.check_model(runnable.model, full_check=True)
    np.testing.assert_array_equal(runnable.run(x)[0], np.asarray(jax.jit(fn)(x)))  # one term per element: exact


def test_nodes_inside_a_scan_body_are_widened_too():
    rng = np.random.default_rng(12)
    w = jnp.asarray(rng.standard_normal((8, 8)) * 0.3, BF)

    def rnn(xs, h):
        def step(h, x):
            h = jnp.tanh(h @ w + x)
            return h, h * 2

        return jax.lax.scan(step, h, xs)

    xs, h = rng.standard_normal((5, 2, 8)).astype(BF16), rng.standard_normal((2, 8)).astype(BF16)
    conversion, got = _run(rnn, xs, h)
    body = next(n for n in conversion.ir_model.graph if n.op_type == "Scan").attributes["body"].as_graph()
    assert any(n.op_type == "Cast" for n in body)
    # XLA compiled to round after every op; the converter fused h @ w + x into one Gemm, which rounds once
    # where JAX rounds twice: up to 1 ulp (measured 0.5 eps normwise), not the same bits
    strict = jax.jit(rnn).lower(xs, h).compile(compiler_options={"xla_allow_excess_precision": False})(xs, h)
    for g, want in zip(got, jax.tree.leaves(strict), strict=True):
        want = np.asarray(want).astype(np.float64)
        assert np.abs(g.astype(np.float64) - want).max() <= EPS * np.abs(want).max()


@wb.onnx_function
def _bf16_block(x, w):
    return jnp.maximum(x @ w, 0)


@wb.onnx_function
def _f32_head(h):
    return jnp.tanh(h) * 2


def test_a_bfloat16_onnx_function_is_inlined_and_widened():
    # an ONNX function's inputs carry no types: its bfloat16 MatMul cannot be probed in the body, and the model
    # failed to load with runtime="onnxruntime-cpu" (advising runtime="onnxruntime-cpu"); the float32 one stays
    def fn(x, w):
        return _f32_head(_bf16_block(x, w).astype(jnp.float32))

    x, w = _floats(BF16, (4, 8), seed=13), _floats(BF16, (8, 8), seed=14)
    conversion, (got,) = _run(fn, x, w)
    assert [f.name for f in conversion.model.functions] == ["_f32_head"]
    assert any(n.op_type == "MatMul" for n in conversion.model.graph.node)  # the block's body, in the graph
    want = np.asarray(jax.jit(fn)(x, w))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)  # bfloat16 block exactly, the float32 head in float32
    runnable = wb.for_onnxruntime_cpu(wb.to_onnx(fn, [x, w]))  # a model made without runtime=, widened after
    np.testing.assert_allclose(open_session(runnable).run({"x": x, "w": w})[0], want, rtol=1e-6, atol=1e-6)


@wb.onnx_function
def _bf16_conv(x, w):
    return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME")


def test_a_bfloat16_convolution_in_an_onnx_function_is_valid_onnx():
    # ONNX Conv takes no bfloat16 before opset 22: in a function body it was left so, and every export (runtime=
    # or not) was a model the checker and onnxruntime refuse; the function is inlined and its Conv widened
    def fn(x, w):
        return _bf16_conv(x, w) * 2

    x, w = _floats(BF16, (1, 3, 8, 8), seed=15), _floats(BF16, (4, 3, 3, 3), seed=16)
    model = wb.to_onnx(fn, [x, w])  # the default opset, 21
    onnx.checker.check_model(model, full_check=True)
    assert not model.functions and any(n.op_type == "Conv" for n in model.graph.node)
    conversion, (got,) = _run(fn, x, w)
    want = np.asarray(jax.jit(fn)(x, w)).astype(np.float32)
    np.testing.assert_allclose(got.astype(np.float32), want, rtol=0, atol=EPS * np.abs(want).max())


def test_only_a_narrow_type_refusal_is_read_as_one_widening_mends() -> None:
    """A run-time refusal names the type; only bfloat16/float16/int16 refusals get the advice to widen (a
    float32 or int64 model's refusal is not one runtime="onnxruntime-cpu" changes)."""
    narrow = "MLFloat16 data type is not supported with ScatterND opset 16 when reduction is 'add'."
    assert refused_type_in(f"[ONNXRuntimeError] : 1 : FAIL : {narrow}") is not None
    assert refused_type_in("[ONNXRuntimeError] : 1 : FAIL : BFloat16 type is not supported by this kernel") is not None
    for other in ("float data type is not supported with ScatterND when reduction is 'mul'",
                  "int64_t data type is not supported with Foo", "Non-zero status code returned while running Add"):
        assert refused_type_in(f"[ONNXRuntimeError] : 1 : FAIL : {other}") is None, other


def _foreign_bfloat16_functions() -> onnx.ModelProto:
    """A model as onnx.helper or onnxscript writes one: model-local functions and no value_info anywhere.
    ``narrow_block`` casts its float32 inputs to bfloat16 inside; ``bf16_matmul`` is called on bfloat16 values;
    onnxruntime's CPU provider has no bfloat16 MatMul or Relu kernel. ``head`` computes in float32."""
    from onnx import TensorProto, helper

    make = helper.make_node
    narrow_block = helper.make_function("local", "narrow_block", ["x", "w"], ["y"], [
        make("Cast", ["x"], ["xb"], to=TensorProto.BFLOAT16), make("Cast", ["w"], ["wb"], to=TensorProto.BFLOAT16),
        make("MatMul", ["xb", "wb"], ["m"]), make("Relu", ["m"], ["r"]), make("Cast", ["r"], ["y"], to=TensorProto.FLOAT),
    ], [helper.make_opsetid("", 21)])  # fmt: skip
    bf16_matmul = helper.make_function("local", "bf16_matmul", ["a", "b"], ["c"], [make("MatMul", ["a", "b"], ["c"])],
                                       [helper.make_opsetid("", 21)])  # fmt: skip
    head = helper.make_function("local", "head", ["h"], ["t"], [make("Tanh", ["h"], ["t"])], [helper.make_opsetid("", 21)])
    nodes = [
        make("narrow_block", ["x", "w"], ["h1"], domain="local", name="block"),
        make("Cast", ["h1"], ["h1b"], to=TensorProto.BFLOAT16), make("Cast", ["w"], ["w2"], to=TensorProto.BFLOAT16),
        make("bf16_matmul", ["h1b", "w2"], ["h2"], domain="local", name="project"),
        make("Cast", ["h2"], ["h3"], to=TensorProto.FLOAT), make("head", ["h3"], ["y"], domain="local", name="head"),
    ]  # fmt: skip
    graph = helper.make_graph(nodes, "foreign", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 8]),
                                                 helper.make_tensor_value_info("w", TensorProto.FLOAT, [8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 8])])  # fmt: skip
    return helper.make_model(graph, functions=[narrow_block, bf16_matmul, head], ir_version=10,
                             opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("local", 1)])  # fmt: skip


def _foreign_in_jax(x, w):
    xb, wb = x.astype(jnp.bfloat16), w.astype(jnp.bfloat16)
    h1 = jnp.maximum(xb @ wb, 0).astype(jnp.float32)
    return jnp.tanh((h1.astype(jnp.bfloat16) @ wb).astype(jnp.float32))


def test_a_foreign_models_untyped_bfloat16_functions_are_inlined_and_widened(tmp_path, monkeypatch):
    """Was: the function bodies state no types, so their bfloat16 MatMul/Relu were neither probed nor widened and
    wb.for_onnxruntime_cpu returned a model onnxruntime still refused (parity's twin too). Bodies that compute
    in a narrow type (a Cast to it inside, or called on narrow values) are inlined and typed by ONNX shape
    inference; the float32 one stays a function."""
    model = _foreign_bfloat16_functions()
    onnx.checker.check_model(model, full_check=True)
    with pytest.raises(wb.OnnxModelError, match="no kernel for node"):
        open_session(model)
    rng = np.random.default_rng(15)
    x, w = rng.standard_normal((4, 8)).astype(np.float32), rng.standard_normal((8, 8)).astype(np.float32)
    strict = jax.jit(_foreign_in_jax).lower(x, w).compile(compiler_options={"xla_allow_excess_precision": False})
    want = np.asarray(strict(x, w))  # rounded to bfloat16 where the model rounds (XLA's fusion may skip it)
    runnable = wb.for_onnxruntime_cpu(model)
    onnx.checker.check_model(runnable, full_check=True)
    assert [f.name for f in runnable.functions] == ["head"]
    np.testing.assert_allclose(open_session(runnable).run({"x": x, "w": w})[0], want, rtol=1e-6, atol=1e-6)
    path = tmp_path / "foreign.onnx"
    onnx.save_model(model, str(path))
    reads: list[str] = []
    load = onnx.load
    monkeypatch.setattr(onnx, "load", lambda source, *a, **k: reads.append(str(source)) or load(source, *a, **k))
    # onnxruntime refuses the file: its twin runs. The float32 output of bfloat16 products: held to bfloat16's eps
    # (plain jax.jit may keep a product in float32 where the model rounds it to bfloat16)
    report = wb.parity(_foreign_in_jax, str(path), inputs=(x, w), rtol=EPS, atol=EPS)
    assert report.ok and {w.was.split(" ")[0] for w in report.widened} == {"MatMul", "Relu"}, report.summary()
    assert reads == []  # the refusal's message read the graph parity had loaded, not the file again


def test_for_onnxruntime_cpu_saves_its_copy_as_to_onnx_does(tmp_path, monkeypatch):
    """Was: a ModelProto only (no path=), so a widened model of more than 2 GB could not be written without a
    second whole copy; now path= writes atomically, large tensors to the side file, as wb.to_onnx(path=) does,
    and a copy whose weights exceed a protobuf comes back as the saved model without its weights' bytes."""
    from workbench.jax_to_onnx import api
    from workbench.onnx_io import session as session_module

    rng = np.random.default_rng(16)
    w = jnp.asarray(rng.standard_normal((64, 64)), BF16)  # 8 KiB: over the threshold below, in the side file

    def fn(x):
        return jnp.maximum(x @ w, 0)

    x = _floats(BF16, (4, 64), seed=17)
    want = np.asarray(fn(x))
    conversion = wb.convert(fn, [x])
    saved = wb.convert(fn, [x]).save(tmp_path / "plain.onnx", external_data_threshold=1024)  # a file with a side file
    for name, source in (("from_conversion", conversion), ("from_file", saved.model)):
        out = tmp_path / f"{name}.onnx"
        proto = wb.for_onnxruntime_cpu(source, path=out, external_data_threshold=1024)
        sides = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(out.name) and p.name != out.name)
        assert len(sides) == 1 and sides[0].endswith(".data"), sides  # the weight went to the side file
        assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name or p.name.startswith(".")]  # nothing half-written
        _same_bits(open_session(out).run({"x": x})[0], want)
        _same_bits(open_session(proto).run({"x": x})[0], want)  # the proto returned holds its weights
    monkeypatch.setattr(api, "PROTOBUF_LIMIT", 4096)  # "more than 2 GB" decided at 4 KB: the path a 3 GB model takes
    monkeypatch.setattr(session_module, "_PROTOBUF_LIMIT", 4096)
    proto = wb.for_onnxruntime_cpu(conversion, path=tmp_path / "large.onnx", external_data_threshold=1024)
    assert {t.data_location for t in proto.graph.initializer if list(t.dims) == [64, 64]} == {
        onnx.TensorProto.EXTERNAL
    }
    assert proto.ByteSize() < 4096
    _same_bits(open_session(tmp_path / "large.onnx").run({"x": x})[0], want)
    with pytest.raises(wb.SpecError, match="path: expected a file path"):
        wb.for_onnxruntime_cpu(conversion, path=3)
    with pytest.raises(wb.SpecError, match="external_data_threshold: expected an int >= 0"):
        wb.for_onnxruntime_cpu(conversion, path=tmp_path / "x.onnx", external_data_threshold=-1)


def test_parity_of_a_file_with_its_weights_inside_reads_it_once(tmp_path, monkeypatch):
    """Was: the twin of a file model onnxruntime refuses took its weights from the file read again
    (load_memory_mapped: a second full read of a file holding its weights, 0.15 CPU s for 104 MB); the graph
    parity loaded already holds them. A file with a side file still maps its side file (test_big_models)."""
    from workbench.analysis import subject as subject_module

    rng = np.random.default_rng(18)
    w = jnp.asarray(rng.standard_normal((1024, 512)), BF16)  # 1 MiB, kept inside the file (no side file)

    def fn(x):
        return x.astype(BF16) @ w

    path = tmp_path / "inside.onnx"
    wb.convert(fn, [(2, 1024)]).save(path, external_data=False)

    def read_again(source: object) -> None:
        raise AssertionError(f"{source} read again")

    monkeypatch.setattr(subject_module, "load_memory_mapped", read_again)
    x = rng.standard_normal((2, 1024)).astype(np.float32)
    report = wb.parity(fn, path, inputs=(x,))
    assert report.ok and [w.was.split(" ")[0] for w in report.widened] == ["MatMul"], report.summary()
