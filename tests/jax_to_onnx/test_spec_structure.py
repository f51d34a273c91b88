"""Input specs of the wrong pytree structure are a SpecError naming the argument and the path where the given
structure and the expected one part (workbench/jax_to_onnx/structure.py); the right structure converts and
matches JAX in onnxruntime, and failures that are not about the inputs' structure stay TraceErrors."""

from __future__ import annotations

import re
import warnings

import flax.linen as linen
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import workbench as wb
from tests.support.harness import assert_matches_jax

RNG = np.random.default_rng(0)


def _values(tree):
    """Random float32 arrays of the specs' shapes (shape tuples and ShapeDtypeStructs)."""
    return jax.tree.map(lambda s: RNG.standard_normal(tuple(s.shape) if isinstance(s, jax.ShapeDtypeStruct) else s)
                        .astype(np.float32), tree, is_leaf=lambda s: isinstance(s, (tuple, jax.ShapeDtypeStruct))
                        and all(isinstance(d, int) for d in (s.shape if isinstance(s, jax.ShapeDtypeStruct) else s)))


def _refused(fn, inputs, where: str, *fragments: str, caused: bool = True) -> str:
    """Convert, expecting a SpecError whose message starts with ``where`` and holds every fragment (and, ``caused``,
    chains the Python error it translates)."""
    with pytest.raises(wb.SpecError) as caught:
        wb.to_onnx(fn, inputs)
    message = str(caught.value)
    assert message.startswith(where), message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    if caused and not where.startswith("inputs:"):  # a signature mismatch is found before tracing
        assert isinstance(caught.value.__cause__, Exception)
    return message


def _dict_sum(tree):
    return tree["a"] * 2 + tree["b"]


def test_a_missing_key_names_the_argument_and_what_the_function_reads():
    _refused(_dict_sum, [{"a": (3,)}], "inputs[0] ('tree'): ", "it has no key 'b', which the function reads",
             "given a dict with keys 'a'", "add 'b' to inputs[0]")
    inputs = [{"a": (3,), "b": (3,)}]
    assert_matches_jax(_dict_sum, wb.to_onnx(_dict_sum, inputs), _values(inputs))


def test_a_nested_missing_key_names_the_nested_path():
    def nested(x, config):
        return x * config["layer"]["scale"] + config["layer"]["shift"]

    _refused(nested, [(2, 3), {"layer": {"scale": (3,)}}], "inputs[1]['layer'] ('config'): ",
             "it has no key 'shift'", "given a dict with keys 'scale'")


def test_a_tuple_where_a_dict_is_read_and_a_dict_where_a_pair_is_read():
    _refused(_dict_sum, [((3,), (3,))], "inputs[0] ('tree'): ", "reads it by key (a dict); given a tuple of 2")

    def pair(p):
        return p[0] - p[1]

    _refused(pair, [{"a": (3,), "b": (3,)}], "inputs[0] ('p'): ", "reads it by position [0] (a tuple or list)",
             "given a dict with keys 'a', 'b'")
    assert_matches_jax(pair, wb.to_onnx(pair, [((3,), (3,))]), _values([((3,), (3,))]))


def test_a_leaf_spec_where_a_subtree_is_read_and_a_subtree_where_an_array_is_used():
    _refused(_dict_sum, [(3,)], "inputs[0] ('tree'): ", "reads ['a'] of it (a dict); given an array float32[3]")

    def scaled(x, s):
        return jnp.tanh(x) * s

    _refused(scaled, [{"x": (3,)}, (3,)], "inputs[0] ('x'): ", "uses it as an array; given a dict with keys 'x'")
    _refused(scaled, [(3,), [(3,), (3,)]], "inputs[1] ('s'): ", "uses it as an array; given a list of 2")


def test_unpacking_and_indexing_past_the_end_name_the_sequence():
    def unpack(p):
        a, b = p
        return a + b

    _refused(unpack, [((3,), (3,), (3,))], "inputs[0] ('p'): ", "unpacks it into 2; given a tuple of 3")
    _refused(unpack, [[(3,)]], "inputs[0] ('p'): ", "unpacks it into 2; given a list of 1")

    def third(p):
        return p[2]

    _refused(third, [((3,), (3,))], "inputs[0] ('p'): ", "reads an element past its end; given a tuple of 2")


def test_a_dict_unpacked_as_a_pair_names_the_unpacking_not_the_later_failure():
    """Python unpacks a dict into its keys: with two keys the unpacking succeeds and a key string fails later."""

    def unpack(p):
        first, second = p
        return first - second

    line = unpack.__code__.co_firstlineno + 1
    _refused(unpack, [{"a": (3,), "b": (3,)}], "inputs[0] ('p'): ",
             f"the function unpacks it into 2 (first, second = p, test_spec_structure.py:{line}), which for a dict gives "
             "its keys ('a', 'b'), not its arrays; given a dict with keys 'a', 'b'",
             "give inputs[0] as a tuple of 2 specs, in the order the function unpacks them",
             "TypeError: unsupported operand type(s) for -: 'str' and 'str'")
    _refused(unpack, [{"a": (3,), "b": (3,), "c": (3,)}], "inputs[0] ('p'): ",
             "the function unpacks it into 2, which for a dict gives its keys ('a', 'b', 'c')",
             "ValueError: too many values to unpack (expected 2)")

    def nested(x, config):
        scale, shift = config["layer"]
        return jnp.tanh(x * scale) + shift

    _refused(nested, [(3,), {"layer": {"s": (3,), "t": (3,)}}], "inputs[1]['layer'] ('config'): ",
             "unpacks it into 2 (scale, shift = config['layer'], ", "gives its keys ('s', 't')")
    _refused(jax.jit(unpack), [{"a": (3,), "b": (3,)}], "inputs[0] ('p'): ", "gives its keys ('a', 'b')")
    inputs = [((3,), (3,))]
    assert_matches_jax(unpack, wb.to_onnx(unpack, inputs), _values(inputs))


def test_keys_unpacked_from_the_functions_own_dict_stay_a_trace_error():
    def own(x):
        first, second = {"a": 1, "b": 2}
        return x - first

    with pytest.raises(wb.TraceError, match="unsupported operand type"):
        wb.to_onnx(own, [(3,)])

    def keys_on_purpose(tree):
        first, second = tree
        return tree[first] * 2 + tree[second]  # the keys, used as keys: converts

    inputs = [{"a": (3,), "b": (3,)}]
    assert_matches_jax(keys_on_purpose, wb.to_onnx(keys_on_purpose, inputs), _values(inputs))


def test_a_spec_count_that_does_not_fit_the_signature_names_its_parameters():
    def add(x, y):
        return x + y

    _refused(add, [(3,), (3,), (3,)], "inputs: add takes 2 positional argument(s) (x, y), and inputs gives 3 spec(s)")
    message = _refused(add, [((3,), (3,))], "inputs: add takes 2 positional argument(s) (x, y), and inputs gives 1")
    assert "inputs[0] is a tuple of 2 specs, one per argument: pass them as the list itself" in message


_WEIGHTS = {"layer": {"w": np.linspace(-1, 1, 3, dtype=np.float32), "b": np.ones(3, np.float32)},
            "scale": np.asarray(0.5, np.float32)}  # fmt: skip


def _sgd(grads):
    return jax.tree.map(lambda p, g: p - 0.1 * g, _WEIGHTS, grads)


def test_a_tree_map_against_a_tree_of_another_structure_names_where_they_part():
    _refused(_sgd, [{"layer": {"w": (3,)}, "scale": ()}], "inputs[0]['layer'] ('grads'): ",
             "given a dict with keys 'w'; the tree it is combined with has a dict with keys 'w', 'b' there")
    _refused(_sgd, [{"layer": [(3,), (3,)], "scale": ()}], "inputs[0]['layer'] ('grads'): ",
             "given a list of 2; the tree it is combined with has a dict with keys 'w', 'b' there")
    _refused(_sgd, [[(3,), (3,)]], "inputs[0] ('grads'): ", "given a list of 2",
             "has a dict with keys 'layer', 'scale' there")
    good = [{"layer": {"w": (3,), "b": (3,)}, "scale": ()}]
    assert_matches_jax(_sgd, wb.to_onnx(_sgd, good), _values(good))


def test_a_jitted_function_is_diagnosed_inside_the_jit():
    jitted = jax.jit(_dict_sum)
    _refused(jitted, [{"a": (3,)}], "inputs[0] ('tree'): ", "it has no key 'b'")


class _Mlp(linen.Module):
    @linen.compact
    def __call__(self, x):
        return linen.Dense(3, name="head")(linen.relu(linen.Dense(4, name="hidden")(x)))


def _linen_specs():
    model = _Mlp()
    shapes = jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct((2, 5), np.float32))
    return model, jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), shapes)


def test_linen_variables_with_other_keys_or_shapes_name_the_parameter_path():
    model, variables = _linen_specs()

    def apply(variables, x):
        return model.apply(variables, x)

    params = variables["params"]
    renamed = {"params": {"head": params["head"], "dense": params["hidden"]}}
    _refused(apply, [renamed, (2, 5)], "inputs[0]['params'] ('variables'): ",
             "it has no key 'hidden', which the model reads (params at hidden/kernel)",
             "given a dict with keys 'dense', 'head'", "jax.eval_shape(model.init, key, x)")
    no_bias = {"params": {"head": params["head"], "hidden": {"kernel": params["hidden"]["kernel"]}}}
    _refused(apply, [no_bias, (2, 5)], "inputs[0]['params']['hidden'] ('variables'): ", "it has no key 'bias'")
    _refused(apply, [dict(params), (2, 5)], "inputs[0] ('variables'): ",
             "it has no 'params' collection: given a dict with keys 'head', 'hidden', the parameters themselves",
             "pass {'params': <this tree>}")
    wide = {"params": {"head": params["head"],
                       "hidden": {"kernel": jax.ShapeDtypeStruct((5, 5), np.float32), "bias": params["hidden"]["bias"]}}}
    _refused(apply, [wide, (2, 5)], "inputs[0]['params']['hidden']['kernel'] ('variables'): ",
             "the model expects shape (5, 4); given an array float32[5,5]")
    # the parameters as the function's own input, wrapped in their collection by the function
    _refused(lambda p, x: model.apply({"params": p}, x), [renamed["params"], (2, 5)], "inputs[0] ('p'): ",
             "it has no key 'hidden'")
    values = model.init(jax.random.key(1), np.ones((2, 5), np.float32))
    x = RNG.standard_normal((2, 5)).astype(np.float32)
    assert_matches_jax(apply, wb.to_onnx(apply, [variables, (2, 5)]), [values, x])


def test_an_nnx_state_missing_a_variable_names_the_state_and_the_counts():
    graphdef, state = nnx.split(nnx.Linear(5, 3, rngs=nnx.Rngs(0)))
    spec = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), nnx.to_pure_dict(state))

    def run(s, x):
        return nnx.merge(graphdef, s)(x)

    _refused(run, [{"kernel": spec["kernel"]}, (2, 5)], "inputs[0] ('s'): ",
             "nnx.merge expects a state of 2 arrays; given a dict with keys 'kernel' holding 1")
    values = nnx.to_pure_dict(state)
    x = RNG.standard_normal((2, 5)).astype(np.float32)
    assert_matches_jax(run, wb.to_onnx(run, [spec, (2, 5)]), [values, x])


class _Stack(nnx.Module):
    def __init__(self, count: int, rngs: nnx.Rngs) -> None:
        self.layers = nnx.List([nnx.Linear(3, 3, rngs=rngs) for _ in range(count)])
        self.norm = nnx.BatchNorm(3, rngs=rngs)

    def __call__(self, x):
        for layer in self.layers:
            x = jnp.tanh(layer(x))
        return self.norm(x)


def _specs(tree):
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), tree)


def test_an_nnx_state_with_renamed_keys_in_the_same_order_is_refused_naming_both():
    """nnx.merge binds a state's arrays by their sorted order, never by name: a renamed key that sorts the same way
    would bind silently; each case names the first path that differs."""
    from flax.nnx import graphlib

    unflatten = graphlib.unflatten  # wrapped only while a function is traced
    graphdef, state = nnx.split(nnx.Linear(5, 3, rngs=nnx.Rngs(0)))
    spec = _specs(nnx.to_pure_dict(state))

    def run(s, x):
        return nnx.merge(graphdef, s)(x)

    _refused(run, [{"bias": spec["bias"], "weight": spec["kernel"]}, (2, 5)], "inputs[0]['weight'] ('s'): ",
             "nnx.merge binds this array to the module's variable kernel", "by their sorted order, not by name",
             "the first key that differs is 'weight', where the module has 'kernel'",
             "give the state under the module's own key paths", caused=False)
    model = _Stack(11, nnx.Rngs(1))
    model.eval()
    graphdef, state = nnx.split(model)
    spec = _specs(nnx.to_pure_dict(state))

    def run_stack(s, x):
        return nnx.merge(graphdef, s)(x)

    text_keys = {"norm": spec["norm"], "layers": {str(k): v for k, v in spec["layers"].items()}}  # '10' sorts before '2'
    _refused(run_stack, [text_keys, (2, 3)], "inputs[0]['layers']['10']['bias'] ('s'): ",
             "binds this array to the module's variable layers/2/bias", "the first key that differs is '10', where the "
             "module has '2'", caused=False)  # fmt: skip
    flat = {"norm": spec["norm"], **{f"layer{k}": v for k, v in spec["layers"].items()}}  # one level of nesting fewer
    _refused(run_stack, [flat, (2, 3)], "inputs[0]['layer0']['bias'] ('s'): ",
             "the first key that differs is 'layer0/bias', where the module has 'layers/0/bias'", caused=False)
    values = nnx.to_pure_dict(state)
    x = RNG.standard_normal((2, 3)).astype(np.float32)
    assert_matches_jax(run_stack, wb.to_onnx(run_stack, [spec, (2, 3)]), [values, x])
    # Flax's positional form (a list of the arrays in order) and split states are checked where they are dicts
    leaves = jax.tree.leaves(values)
    assert_matches_jax(lambda s, x: nnx.merge(graphdef, s)(x), wb.to_onnx(lambda s, x: nnx.merge(graphdef, s)(x),
                       [_specs(leaves), (2, 3)]), [leaves, x])  # fmt: skip
    graphdef, params, stats = nnx.split(model, nnx.Param, nnx.BatchStat)
    params, stats = nnx.to_pure_dict(params), nnx.to_pure_dict(stats)

    def run_split(p, s, x):
        return nnx.merge(graphdef, p, s)(x)

    renamed = {"norm": {"mean": stats["norm"]["mean"], "variance": stats["norm"]["var"]}}
    _refused(run_split, [_specs(params), _specs(renamed), (2, 3)], "inputs[1]['norm']['variance'] ('s'): ",
             "the first key that differs is 'variance', where the module has 'var'", caused=False)
    assert_matches_jax(run_split, wb.to_onnx(run_split, [_specs(params), _specs(stats), (2, 3)]), [params, stats, x])
    assert graphlib.unflatten is unflatten


def test_failures_not_about_the_inputs_structure_stay_trace_errors():
    def own_dict(x):
        return {"a": x}["missing"]

    with pytest.raises(wb.TraceError, match=re.escape("KeyError: 'missing'")):
        wb.to_onnx(own_dict, [(3,)])

    def reads_own_config(tree):
        return tree["a"] * {"scale": 2.0}["shift"]

    with pytest.raises(wb.TraceError, match="KeyError: 'shift'"):  # its own dict, not the input (which has no 'shift')
        wb.to_onnx(reads_own_config, [{"a": (3,)}])

    def own_tree_map(x):
        return jax.tree.map(lambda a, b: a + b, {"a": 1.0}, {"a": 1.0, "b": 2.0})

    with pytest.raises(wb.TraceError, match="pytree structure error"):
        wb.to_onnx(own_tree_map, [(3,)])


def test_an_entry_no_code_reads_is_warned_about_and_whole_arguments_are_not():
    with pytest.warns(wb.WorkbenchWarning, match=re.escape("inputs[0]['c'] ('tree'): never read by _dict_sum, but the "
                                                           "ONNX model keeps every input")):  # fmt: skip
        model = wb.to_onnx(_dict_sum, [{"a": (3,), "b": (3,), "c": (3,)}])
    values = _values([{"a": (3,), "b": (3,), "c": (3,)}])
    assert_matches_jax(_dict_sum, model, values)
    assert [i.name for i in model.graph.input] == ["tree.a", "tree.b", "tree.c"]  # kept: the inputs are the specs'
    model, variables = _linen_specs()
    extra = {"params": {**variables["params"], "extra": {"kernel": jax.ShapeDtypeStruct((2, 2), np.float32)}}}
    with pytest.warns(wb.WorkbenchWarning, match=re.escape("inputs[0]['params']['extra']['kernel'] ('v'): never read")):
        wb.to_onnx(lambda v, x: model.apply(v, x), [extra, (2, 5)])
    with warnings.catch_warnings():
        warnings.simplefilter("error", wb.WorkbenchWarning)
        wb.to_onnx(lambda x, unused: x * 2, [(3,), (3,)])  # a whole argument may be ignored on purpose
        wb.to_onnx(lambda d: jnp.zeros(d["size"].shape) + d["a"], [{"a": ("B",), "size": ("B",)}])  # gives a size


def _accumulate(state, grads):
    count, skip, moments = state
    return (count + 1, skip, jax.tree.map(lambda m, g: 0.9 * m + g, moments, grads)), moments["w"].sum()


def test_an_empty_tuple_or_none_in_a_pytree_of_values_is_an_empty_node_not_a_scalar_input():
    """An optimiser's state passed as it is (optax's MultiSteps keeps ``skip_state=()``) converts with one input per
    array: its ``()`` and ``None`` are JAX's empty nodes. Among shape tuples, ``()`` stays a float32 scalar."""
    state = (np.int32(3), (), {"w": RNG.standard_normal((2, 3)).astype(np.float32), "unused": None})
    grads = {"w": RNG.standard_normal((2, 3)).astype(np.float32), "unused": None}
    model = wb.to_onnx(_accumulate, [state, grads])
    assert [i.name for i in model.graph.input] == ["state.0", "state.2.w", "grads.w"]
    assert_matches_jax(_accumulate, model, [state, grads])
    scalar = wb.to_onnx(lambda tree: tree["w"] * tree["scale"], [{"w": (3,), "scale": ()}])
    assert [tuple(d.dim_value for d in i.type.tensor_type.shape.dim) for i in scalar.graph.input] == [(), (3,)]
