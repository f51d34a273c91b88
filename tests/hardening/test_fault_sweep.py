"""The fault sweep's CI slice, and the minimal case of each fault the full sweep found.

tests/hardening/fault_sweep.py mutates valid models and calls (seeded, deterministic) and checks that
every public door either works (agreeing with onnxruntime) or raises one clean error naming the
fault. ``test_the_ci_slice_is_clean`` runs a bounded slice of it; the tests below each hold one
case the full sweep found unclean before its fix (the raw error it gave is in the docstring).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping

import jax
import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

import workbench as wb
from tests.hardening.fault_sweep import quick_cases, sweep, table
from tests.support import codegen_models
from tests.support.harness import run_onnx
from workbench.onnx_to_jax.backend import Backend

vi = helper.make_tensor_value_info


def _model(nodes, inputs, outputs, inits=(), *, opset: int = 17) -> onnx.ModelProto:
    model = helper.make_model(helper.make_graph(nodes, "g", inputs, outputs, list(inits)),
                              opset_imports=[helper.make_opsetid("", opset)])  # fmt: skip
    model.ir_version = 8
    return model


def test_the_ci_slice_is_clean():
    """One mutant of every ONNX kind of three seeds, one case of every JAX kind: 60-odd cases, ~10 s."""
    cases = quick_cases(seed=0)
    assert len(cases) > 50
    start = time.perf_counter()
    results = sweep(cases, timeout=120)
    unclean = [r for r in results if r.outcome.status != "clean"]
    assert not unclean, table(results)
    assert {r.kind for r in results} >= {"bytes_flipped", "cycle", "subgraph_io", "bad_callable", "zero_size"}
    assert time.perf_counter() - start < 120


# ------------------------------------------------------------------------------ ONNX -> JAX
def test_a_name_that_is_not_utf8_is_refused_naming_where():
    """Was: TypeError '<' not supported between instances of 'bytes' and 'str' (sorting names in the reader)."""
    model = _model([helper.make_node("Relu", ["x"], ["fuzzname"]), helper.make_node("Neg", ["fuzzname"], ["y"])],
                   [vi("x", TensorProto.FLOAT, [2])], [vi("y", TensorProto.FLOAT, [2])])  # fmt: skip
    data = model.SerializeToString().replace(b"fuzzname", b"fuzz\xefame")
    with pytest.raises(wb.OnnxModelError, match=r"<bytes>: the output b'fuzz\\xefame' of node #0 of graph 'g' is not "
                                                r"UTF-8 text; the file is corrupt"):  # fmt: skip
        wb.to_jax(data)


def test_a_doc_string_that_is_not_utf8_is_refused():
    """Was: UnicodeDecodeError from copying the graph's fields for shape inference. (onnxruntime, which never reads
    doc strings, runs it; a field protobuf cannot decode as text still means the file is damaged.)"""
    model = _model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", TensorProto.FLOAT, [2])], [vi("y", TensorProto.FLOAT, [2])])
    model.graph.doc_string = "fuzzdoc"
    data = model.SerializeToString().replace(b"fuzzdoc", b"fuz\xa0doc")
    with pytest.raises(wb.OnnxModelError, match=r"the doc_string b'fuz\\xa0doc' of graph 'g' is not UTF-8 text"):
        wb.to_jax(data)


def test_a_node_writing_an_initializer_is_named_before_what_goes_missing():
    """Was: 'graph output 'y' is not produced by any node': the consequence, not the node that overwrote 'w'."""
    model = _model([helper.make_node("Relu", ["x"], ["w"], name="clobber"), helper.make_node("Add", ["x", "w"], ["y"])],
                   [vi("x", TensorProto.FLOAT, [2])], [vi("y", TensorProto.FLOAT, [2])],
                   [numpy_helper.from_array(np.ones(2, np.float32), "w")])  # fmt: skip
    with pytest.raises(wb.OnnxModelError, match=r"node 'clobber' \(Relu\) in graph 'g' writes the value 'w', which an "
                                                r"initializer already defines"):  # fmt: skip
        wb.to_jax(model)


def test_an_initializer_of_the_wrong_type_is_named_in_the_inference_error():
    """onnx names the node and the formal input (B); the message now names the value it reads there."""
    model = codegen_models.mlp()
    kernel = next(t for t in model.graph.initializer if t.name == "dense2.kernel")
    kernel.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(kernel).astype(np.int32), "dense2.kernel"))
    with pytest.raises(wb.OnnxModelError, match=r"shape inference \(ai\.onnx opset 17\) rejected the model: .*Gemm.*"
                                                r"Node #3 \(Gemm\) reads A='h2', B='dense2\.kernel', C='dense2\.bias'"):  # fmt: skip
        wb.to_jax(model)


def test_a_checker_error_says_which_opset_it_checked_against():
    """Was: 'No Op registered for Scan with domain_version of 1', not saying the model imports opset 1."""
    model = _model([helper.make_node("Einsum", ["x"], ["y"], equation="ij->ji")],
                   [vi("x", TensorProto.FLOAT, [2, 3])], [vi("y", TensorProto.FLOAT, [3, 2])], opset=1)  # fmt: skip
    with pytest.raises(wb.OnnxModelError, match=r"is not a valid ONNX model \(onnx\.checker, ai\.onnx opset 1\): "
                                                r"No Op registered for Einsum with domain_version of 1"):  # fmt: skip
        wb.to_jax(model)


def _symbolic_add() -> onnx.ModelProto:
    """y = relu(x + z), x: [A], z: [B]: valid, and fails at run time when A and B neither match nor broadcast."""
    return _model([helper.make_node("Add", ["x", "z"], ["h"], name="plus"), helper.make_node("Relu", ["h"], ["y"])],
                  [vi("x", TensorProto.FLOAT, ["A"]), vi("z", TensorProto.FLOAT, ["B"])], [vi("y", TensorProto.FLOAT, None)])  # fmt: skip


def test_a_run_time_failure_names_the_node_in_every_door():
    """Was: jax's TypeError 'add got incompatible shapes for broadcasting' from a line of <workbench-generated>."""
    model = _symbolic_add()
    x, z = np.arange(2, dtype=np.float32), np.ones(3, np.float32)
    forward, params = wb.to_jax(model)
    message = r"<ModelProto>: node 'plus' \(Add\) writing 'h' \(generated line \d+: h = jnp\.add\(x, z\)\) failed on the given inputs: TypeError: add got incompatible shapes"  # noqa: E501
    for call in (lambda: forward(params, x, z), lambda: jax.jit(forward)(params, x, z),
                 lambda: wb.jit_forward(forward, params)(x, z), lambda: Backend.prepare(model).run([x, z])):  # fmt: skip
        with pytest.raises(wb.ModelRunError, match=message) as caught:
            call()
        assert isinstance(caught.value.__cause__, TypeError)  # JAX's own error, chained
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    with pytest.raises(Exception, match="plus"):  # noqa: B017 - onnxruntime refuses the run too, naming the node
        session.run(None, {"x": x, "z": z})


def _dense() -> onnx.ModelProto:
    """y = x @ W.T + b with Gemm's transB (the prepared form lays W out as (K, N)); x: float32[N, 3]."""
    w = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3) / 10, "dense.weight")
    b = numpy_helper.from_array(np.ones(4, np.float32), "dense.bias")
    return _model([helper.make_node("Gemm", ["x", "dense.weight", "dense.bias"], ["y"], name="dense", transB=1)],
                  [vi("x", TensorProto.FLOAT, ["N", 3])], [vi("y", TensorProto.FLOAT, ["N", 4])], [w, b])  # fmt: skip


def test_a_run_time_failure_names_the_inputs_that_differ_from_the_declared_ones():
    """Was: only JAX's error ('dot_general requires contracting dimensions to have the same shape, got (4,) and
    (3,)') and 'check the inputs against the model's declared inputs', which the message did not show."""
    model = _dense()
    forward, params = wb.to_jax(model)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_allclose(forward(params, x), run_onnx(model, [x])[0], rtol=1e-6)
    for call in (lambda v: forward(params, v), lambda v: jax.jit(forward)(params, v), wb.jit_forward(forward, params)):
        with pytest.raises(wb.ModelRunError, match=r"node 'dense' \(Gemm\) .* The given inputs differ from the model's: "
                                                   r"'x' is declared float32\[N×3\], given float32\[2×4\]\. Give inputs"):  # fmt: skip
            call(np.ones((2, 4), np.float32))
    with pytest.raises(wb.ModelRunError, match=r"'x' is declared float32\[N×3\], given int32\[2×5\]\. Give inputs"):
        forward(params, np.ones((2, 5), np.int32))
    with pytest.raises(wb.ModelRunError, match="check the inputs against the model's declared inputs") as caught:
        _symbolic_add_forward()  # inputs as declared (two symbolic sizes that do not broadcast): no mismatch to name
    assert "differ from the model's" not in str(caught.value)


def _symbolic_add_forward() -> None:
    forward, params = wb.to_jax(_symbolic_add())
    forward(params, np.arange(2, dtype=np.float32), np.ones(3, np.float32))


def test_a_weight_missing_from_params_is_named_not_a_bare_key_error():
    """Was: KeyError: 'dense.weight' from a line of <workbench-generated> (params loaded or edited without it)."""
    model = _dense()
    x = np.ones((2, 3), np.float32)
    for prepared in (False, True):  # read by the node's statement, or by prepare() laying the weight out
        forward, params = wb.to_jax(model, prepared=prepared)
        without = {name: value for name, value in params.items() if name != "dense.weight"}
        for call in (forward, jax.jit(forward)):
            with pytest.raises(wb.ModelRunError, match=r"^<ModelProto>: params has no weight 'dense\.weight'.*Pass the "
                                                       r"params wb\.to_jax returned with the function \(2 arrays"):  # fmt: skip
                call(without, x)
    forward, params = wb.to_jax(model)  # a weight prepare() does not read, eagerly: the statement reading it is known
    with pytest.raises(wb.ModelRunError, match=r"params has no weight 'dense\.bias', which node 'dense' \(Gemm\) writing"):
        forward({"dense.weight": params["dense.weight"]}, x)


class _Checkpoint(Mapping):
    """A caller's own params mapping: each model name read from a store under a prefix (the store may lack one)."""

    def __init__(self, names: list[str], store: dict[str, np.ndarray]) -> None:
        self.names, self.store = names, store

    def __getitem__(self, name: str) -> np.ndarray:
        return self.store["model/" + name]  # KeyError('model/...'): the store's own key, not a weight name

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)


def test_a_key_error_that_names_no_weight_of_the_model_surfaces_unchanged():
    """Was: any KeyError whose key was a string params did not hold read as a missing weight, so a caller's own
    mapping failing on its own key became "params has no weight 'model/dense.bias'" (no such weight exists)."""
    model = _dense()
    forward, params = wb.to_jax(model)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    store = {"model/" + name: value for name, value in params.items()}
    checkpoint = _Checkpoint(list(params), store)
    np.testing.assert_allclose(forward(checkpoint, x), run_onnx(model, [x])[0], rtol=1e-6)
    del store["model/dense.bias"]
    with pytest.raises(KeyError) as caught:
        forward(checkpoint, x)
    assert caught.type is KeyError and caught.value.args == ("model/dense.bias",)
    with pytest.raises(wb.ModelRunError, match=r"params has no weight 'dense\.bias'"):  # a model weight: still named
        forward({"dense.weight": params["dense.weight"]}, x)


def test_guarded_forward_is_still_the_generated_function():
    """The guard keeps the signature, the module namespace jit_forward reads and the numbers (vs onnxruntime)."""
    import inspect

    model = codegen_models.if_and_loop()
    forward, params = wb.to_jax(model)
    assert str(inspect.signature(forward)) == "(params, x)" and forward.__globals__["ONNX_INPUT_NAMES"] == ("x",)
    x = np.array([0.5, -1.0, 2.0, 0.25], np.float32)
    expected = run_onnx(model, [x])
    for ours in (forward(params, x), wb.jit_forward(forward, params)(x)):
        for got, want in zip(ours, expected, strict=True):
            np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6)


# ------------------------------------------------------------------------------ JAX -> ONNX
def test_a_function_reading_a_leaked_tracer_is_a_trace_error():
    """Was: TracerArrayConversionError from the converter reading the constant's value."""
    leaked = []
    jax.jit(lambda v: leaked.append(v) or v)(np.ones(4, np.float32))

    def uses_leaked(x):
        return x + leaked[0]

    with pytest.raises(wb.TraceError, match=r"uses_leaked reads a value traced by another JAX transformation \(a leaked "
                                            r"tracer, float32\[4\]\)"):  # fmt: skip
        wb.to_onnx(uses_leaked, [(4,)])


def test_zero_size_inputs_convert_and_agree_with_jax():
    """Was: IndexError in the affine-chain pass (the scale of a zero-size channel axis has no element 0)."""

    def two_inputs(x, y):
        return x * y + 1

    model = wb.to_onnx(two_inputs, [(0, 0), (0,)])
    x, y = np.zeros((0, 0), np.float32), np.zeros((0,), np.float32)
    (got,) = run_onnx(model, [x, y])
    assert got.shape == (0, 0)
    np.testing.assert_array_equal(got, np.asarray(two_inputs(x, y)))


@pytest.mark.parametrize("text", ["3:'a', b", "2,3:(N,"])
def test_a_malformed_dtype_text_is_a_spec_error(text):
    """Was: numpy's ValueError 'format number 1 ... is not recognized' or a SyntaxError from its record-format parser."""
    from workbench.specs import parse_shape_text

    with pytest.raises(wb.SpecError, match=r"input spec .*: unknown dtype"):
        parse_shape_text(text)


def test_the_magic_names_an_unwritable_out_path():
    """Was: the unwritable --out shown as a failure of the user's function ('f was not converted: WriteError')."""
    from IPython.core.error import UsageError
    from IPython.core.interactiveshell import InteractiveShell

    from workbench.jupyter.failure import ConversionFailed

    assert issubclass(ConversionFailed, wb.WorkbenchError)
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "workbench")
    try:
        with pytest.raises(UsageError, match=r"cannot write the ONNX model to /proc/workbench-fuzz: folder /proc/workbench-fuzz does not exist"):
            shell.run_cell_magic("to_onnx", "-i 3 --out /proc/workbench-fuzz/m.onnx --no-view", "def f(x):\n    return x * 2\n")
    finally:
        shell.run_line_magic("unload_ext", "workbench")
        shell.user_ns.pop("f", None)


def test_a_function_returning_no_array_or_a_string_is_a_trace_error():
    """Was: a model without outputs (onnxruntime refuses it) for None; JAX's message naming workbench's inner
    flat_pure for a string."""

    def returns_none(x):
        return None

    def labelled(x):
        return {"y": x, "label": "cat"}

    with pytest.raises(wb.TraceError, match=r"returns_none returned PyTreeDef\(None\), which holds no array: an ONNX "
                                            r"model needs at least one output"):  # fmt: skip
        wb.to_onnx(returns_none, [(4,)])
    with pytest.raises(wb.TraceError, match=r"tracing labelled .* failed: TypeError: the output\['label'\] is a str "
                                            r"\('cat'\), not an array or a number"):  # fmt: skip
        wb.to_onnx(labelled, [(4,)])


def test_a_pooling_whose_output_exceeds_the_budget_is_refused_before_code_is_generated():
    """Was: the generated code allocating a 5.5 TB MaxPool output (XLA aborted the process: SIGABRT)."""
    model = _model([helper.make_node("MaxPool", ["x"], ["y"], name="pool", kernel_shape=[5, 5], pads=[2, 2, 1 << 40, 2])],
                   [vi("x", TensorProto.FLOAT, [1, 1, 5, 5])], [vi("y", TensorProto.FLOAT, None)])  # fmt: skip
    with pytest.raises(wb.OnnxModelError, match=r"node 'pool' \(MaxPool\) computes 'y' of shape \(at least\) "
                                                r"\[1, 1, 1099511627779, 5\], 21,990,232,555,580 bytes; the limit is"):  # fmt: skip
        wb.to_jax(model)


def test_split_num_outputs_must_match_its_outputs_inside_a_branch():
    """Was: MemoryError (std::bad_alloc from onnx's shape inference, or the generated code building 2**40 pieces)."""
    vi_x = vi("x", TensorProto.FLOAT, [4])
    branch = helper.make_graph([helper.make_node("Split", ["x"], ["a", "b"], name="halves", axis=0, num_outputs=1 << 40),
                                helper.make_node("Add", ["a", "b"], ["s"])], "then", [], [vi("s", TensorProto.FLOAT, [2])])  # fmt: skip
    other = helper.make_graph([helper.make_node("Slice", ["x", "zero", "two"], ["s2"])], "else", [], [vi("s2", TensorProto.FLOAT, [2])])
    model = _model([helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=other)],
                   [vi("c", TensorProto.BOOL, []), vi_x], [vi("y", TensorProto.FLOAT, [2])],
                   [numpy_helper.from_array(np.array([0], np.int64), "zero"), numpy_helper.from_array(np.array([2], np.int64), "two")],
                   opset=18)  # fmt: skip
    with pytest.raises(wb.OnnxModelError, match=r"node 'halves' \(Split\) in 'then_branch' body of node #0 in graph 'g' "
                                                r"has num_outputs=1099511627776 but 2 output\(s\); ONNX requires them equal"):  # fmt: skip
        wb.to_jax(model)


def test_an_allocation_xla_refuses_names_the_node():
    """Was: JaxRuntimeError RESOURCE_EXHAUSTED from a line of <workbench-generated> (a Constant of 2**40 that reached
    a shape); here the shape is an input: Expand to 2**50 elements (4.5 PB, refused by the allocator at once)."""
    model = _model([helper.make_node("Expand", ["x", "shape"], ["y"], name="grow")],
                   [vi("x", TensorProto.FLOAT, [1]), vi("shape", TensorProto.INT64, [2])], [vi("y", TensorProto.FLOAT, None)])  # fmt: skip
    forward, params = wb.to_jax(model)
    with pytest.raises(wb.ModelRunError, match=r"node 'grow' \(Expand\) writing 'y' .* failed on the given inputs: "
                                               r"JaxRuntimeError: RESOURCE_EXHAUSTED"):  # fmt: skip
        forward(params, np.ones(1, np.float32), np.array([1 << 25, 1 << 25], np.int64))


def test_a_spec_whose_dtype_is_none_is_refused_not_read_as_float64():
    """Was: TensorSpec((3,), None) traced as float64[3] (numpy's reading of None), the function then failing."""
    from workbench.specs import TensorSpec

    with pytest.raises(wb.SpecError, match=r"inputs\[0\]: dtype None; give a dtype such as 'float32'"):
        wb.to_onnx(lambda x: x * 2, [TensorSpec((3,), None)])
    with pytest.raises(wb.SpecError, match=r"inputs\[0\]: \"'a', b\" is not a dtype"):
        wb.to_onnx(lambda x: x * 2, [TensorSpec((3,), "'a', b")])


# ------------------------------------------------------------------------------ real-program mistakes (fault_jax_programs)
def test_a_symbolic_batch_reshaped_to_fixed_sizes_is_refused_naming_the_symbol():
    """Was: converted; the model (like the function) only ran for B = 1 and onnxruntime refused B = 2 at run time."""
    with pytest.raises(wb.ConversionError, match=r"reshape of a \[B, 3, 4\] value to the fixed shape \(1, 12\) holds "
                                                 r"for one value of B only: .* static size for B"):  # fmt: skip
        wb.to_onnx(lambda x: x.reshape(1, 12) * 2, [("B", 3, 4)])
    model = wb.to_onnx(lambda x: x.reshape(x.shape[0], 12) * 2, [("B", 3, 4)])  # the symbolic form still converts
    x = np.arange(48, dtype=np.float32).reshape(2, 6, 4)[:, :3]
    np.testing.assert_array_equal(run_onnx(model, [np.ascontiguousarray(x)])[0], np.ascontiguousarray(x).reshape(2, 12) * 2)


def test_constraints_no_size_satisfies_are_refused():
    """Was: converted, the model's metadata claiming 'B >= 8; B <= 2' (JAX decides the bounds at its first comparison)."""
    with pytest.raises(wb.SpecError, match=r"constraints: \['B >= 8', 'B <= 2'\] cannot all hold \(Unsatisfiable "
                                           r"constraint: B <= 2\)"):  # fmt: skip
        wb.to_onnx(lambda x: x + 1, [("B", 4)], constraints=["B >= 8", "B <= 2"])
    model = wb.to_onnx(lambda x: x + 1, [("B", 4)], constraints=["B >= 2", "B <= 64"])
    np.testing.assert_array_equal(run_onnx(model, [np.ones((3, 4), np.float32)])[0], np.full((3, 4), 2, np.float32))


def test_a_linen_apply_without_variables_is_refused_saying_what_to_pass():
    """Was: TraceError '... TypeError: Array.__contains__: unsupported operand type' (the input taken for the variables)."""
    import flax.linen as nn

    with pytest.raises(wb.SpecError, match=r"fn: Dense\.apply of a Linen module needs its variables as its first "
                                           r"argument; pass functools\.partial\(model\.apply, variables\)"):  # fmt: skip
        wb.to_onnx(nn.Dense(3).apply, [(2, 4)])


def test_a_float64_spec_without_x64_warns_that_the_model_takes_float32():
    """Was: silently a float32 model input for a float64 spec; the float64 data the spec described then fails in it."""
    with pytest.warns(wb.WorkbenchWarning, match=r"inputs\[0\] is float64, traced as float32 .* enable_double_precision=True"):
        model = wb.to_onnx(lambda x: x * 2, [jax.ShapeDtypeStruct((2, 3), np.float64)])
    assert model.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    model = wb.to_onnx(lambda x: x * 2, [jax.ShapeDtypeStruct((2, 3), np.float64)], enable_double_precision=True)
    assert model.graph.input[0].type.tensor_type.elem_type == TensorProto.DOUBLE


def test_the_oracle_compares_zipmap_rows_with_a_tolerance():
    """Was: every skl2onnx ZipMap output counted a mismatch (float32 scores vs onnxruntime's Python floats, exactly)."""
    from tests.support.fault_oracle import _agree

    ours = [np.array([{0: np.float32(0.25), 1: np.float32(0.75)}], dtype=object)]
    assert _agree(ours, [np.array([{0: 0.2500000012, 1: 0.7499999988}], dtype=object)]) == ""
    assert "row 0" in _agree(ours, [np.array([{0: 0.5, 1: 0.5}], dtype=object)])
    assert "row 0" in _agree(ours, [np.array([{1: 0.25, 0: 0.75}], dtype=object)])


def test_the_oracle_allows_quantized_outputs_the_steps_their_seed_allows():
    """Was: contrib QLinearAdd mutants counted mismatches for onnxruntime's one-step rounding, which its case allows."""
    from tests.support.fault_oracle import _agree

    ours, theirs = [np.array([3, 7, 250], np.uint8)], [np.array([4, 7, 249], np.uint8)]
    assert _agree(ours, theirs, int_steps=1) == ""
    assert "values differ" in _agree(ours, theirs)
    assert "2 integer steps apart (allowed 1)" in _agree(ours, [np.array([5, 7, 250], np.uint8)], int_steps=1)
