"""The JAX -> ONNX side of the fault sweep on programs nobody here wrote: the mistakes users make there.

Each entry of :data:`MISTAKES` builds (in the sweep's worker) a call of ``wb.to_onnx`` the way a user
of Flax (Linen, NNX), Equinox, Haiku or Keras gets it wrong (a Linen module without its variables, an
NNX module left in train mode with dropout and no rngs, Haiku's ``transform`` not applied, a pytree
spec of the wrong structure, float64 without x64, bfloat16, symbolic dimensions used inconsistently,
constraints contradicting the shapes, a batch dimension for a model with fixed shapes, prints, host
callbacks, ``jax.debug.print``) and the names a clean refusal should mention. A call that converts is
checked against the callable with onnxruntime by the oracle.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "jax")


@dataclass(frozen=True)
class Call:
    """What the mistake hands ``wb.to_onnx``, and the names its refusal should mention (any one)."""

    fn: Any
    inputs: list[Any]
    kwargs: dict[str, Any] = field(default_factory=dict)
    targets: tuple[str, ...] = ()
    compare: bool = True  # a converted model is compared with ``fn`` on random inputs
    error: str = ""  # the class the refusal must be (by name, e.g. "SpecError"); set, converting is unclean too


def _linen_dense() -> Any:
    import flax.linen as nn

    return nn.Dense(3)


def linen_module_without_params() -> Call:
    """``wb.to_onnx(module, ...)`` with a Linen module: it has no parameters until ``init``."""
    return Call(_linen_dense(), [(2, 4)], targets=("Linen", "variables", "init"))


def linen_apply_without_params() -> Call:
    """``module.apply`` given as the function: the first argument is taken as the variables."""
    return Call(_linen_dense().apply, [(2, 4)], targets=("variables",))


def linen_batchnorm_not_mutable() -> Call:
    """A Linen BatchNorm in training mode applied without ``mutable=['batch_stats']``."""
    import functools

    import flax.linen as nn
    import jax

    module = nn.BatchNorm(use_running_average=False)
    variables = module.init(jax.random.key(0), np.ones((2, 4), np.float32))
    return Call(functools.partial(module.apply, variables), [(2, 4)], targets=("batch_stats", "mutable"))


def nnx_dropout_without_rngs() -> Call:
    """An NNX module with Dropout left in train mode (the default) and no rngs given to the dropout."""
    from flax import nnx

    class Net(nnx.Module):
        def __init__(self, rngs: nnx.Rngs) -> None:
            self.linear = nnx.Linear(4, 3, rngs=rngs)
            self.dropout = nnx.Dropout(0.5)

        def __call__(self, x):
            return self.dropout(self.linear(x))

    return Call(Net(nnx.Rngs(0)), [(2, 4)], targets=("rngs", "Dropout", "eval"))


def nnx_dropout_train_mode_with_rngs() -> Call:
    """NNX Dropout in train mode with rngs: the export samples one mask at trace time (differs from eval)."""
    from flax import nnx

    class Net(nnx.Module):
        def __init__(self, rngs: nnx.Rngs) -> None:
            self.linear = nnx.Linear(4, 3, rngs=rngs)
            self.dropout = nnx.Dropout(0.5, rngs=rngs)

        def __call__(self, x):
            return self.dropout(self.linear(x))

    return Call(Net(nnx.Rngs(0)), [(2, 4)], targets=("Dropout", "eval", "rngs", "random"), compare=False)


def haiku_transform_not_applied() -> Call:
    """A Haiku function using ``hk.Linear`` handed over without ``hk.transform``."""
    import haiku as hk

    def forward(x):
        return hk.Linear(3)(x)

    return Call(forward, [(2, 4)], targets=("transform", "haiku"))


def haiku_transformed_object() -> Call:
    """``hk.transform(f)`` itself (a ``Transformed`` pair of init/apply) handed over as the function."""
    import haiku as hk

    return Call(hk.transform(lambda x: hk.Linear(3)(x)), [(2, 4)], targets=("Transformed", "apply", "init"))


def equinox_wrong_feature_size() -> Call:
    """An Equinox Linear(4 -> 3) given inputs of 5 features."""
    import equinox as eqx
    import jax

    return Call(eqx.nn.Linear(4, 3, key=jax.random.key(0)), [(5,)], targets=("input", "5", "4"))


def keras_model_object() -> Call:
    """A Keras 3 model object handed over (not ``stateless_call`` with its variables)."""
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    return Call(model, [(2, 4)], targets=("Keras", "stateless_call"))


def _pytree_sum(tree: dict[str, Any]) -> Any:
    return tree["a"] + 2 * tree["b"]


def pytree_wrong_structure() -> Call:
    """A function of a dict {'a', 'b'} given a tuple of two specs as its one argument."""
    return Call(_pytree_sum, [((3,), (3,))], targets=("inputs[0] ('tree')",), error="SpecError")


def pytree_missing_key() -> Call:
    """A function of a dict {'a', 'b'} given a dict spec without 'b'."""
    return Call(_pytree_sum, [{"a": (3,)}], targets=("inputs[0] ('tree'): ",), error="SpecError")


def pytree_leaf_for_subtree() -> Call:
    """A function of a dict {'a', 'b'} given one array spec."""
    return Call(_pytree_sum, [(3,)], targets=("inputs[0] ('tree'): ",), error="SpecError")


def pytree_subtree_for_leaf() -> Call:
    """x + y given a dict spec for x."""
    return Call(_add, [{"a": (3,)}, (3,)], targets=("inputs[0] ('x'): ",), error="SpecError")


def _pair(pair: tuple[Any, Any]) -> Any:
    return pair[0] * 2 + pair[1]


def pytree_dict_for_tuple() -> Call:
    """A function of a pair (read by position) given a dict spec."""
    return Call(_pair, [{"a": (3,), "b": (3,)}], targets=("inputs[0] ('pair'): ",), error="SpecError")


def _unpack(pair: tuple[Any, Any]) -> Any:
    first, second = pair
    return first - second


def pytree_three_for_a_pair() -> Call:
    """A function unpacking a pair given a tuple of three specs."""
    return Call(_unpack, [((3,), (3,), (3,))], targets=("inputs[0] ('pair'): ",), error="SpecError")


def pytree_dict_unpacked_as_pair() -> Call:
    """A function unpacking a pair given a dict spec of two: Python unpacks its keys, the failure comes later."""
    return Call(_unpack, [{"a": (3,), "b": (3,)}], targets=("inputs[0] ('pair'): ",), error="SpecError")


def pytree_dict_of_three_unpacked_as_pair() -> Call:
    """A function unpacking a pair given a dict spec of three keys (the unpacking itself fails)."""
    return Call(_unpack, [{"a": (3,), "b": (3,), "c": (3,)}], targets=("inputs[0] ('pair'): ",), error="SpecError")


def pytree_specs_nested_in_one() -> Call:
    """A function of two arguments given one tuple holding their two specs."""
    return Call(_add, [((3,), (3,))], targets=("(x, y)", "inputs[0] is a tuple of 2 specs"), error="SpecError")


_WEIGHTS = {"layer": {"w": np.ones(3, np.float32), "b": np.zeros(3, np.float32)}, "scale": np.float32(0.5)}


def _sgd_step(grads: Any) -> Any:
    import jax

    return jax.tree.map(lambda p, g: p - 0.1 * g, _WEIGHTS, grads)


def tree_map_missing_leaf() -> Call:
    """``jax.tree.map`` of the weights and an input whose nested dict lacks one key."""
    return Call(_sgd_step, [{"layer": {"w": (3,)}, "scale": ()}], targets=("inputs[0]['layer'] ('grads'): ",),
                error="SpecError")  # fmt: skip


def _linen_mlp() -> tuple[Any, Any]:
    import flax.linen as nn
    import jax

    class Mlp(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(3, name="head")(nn.relu(nn.Dense(4, name="hidden")(x)))

    model = Mlp()
    variables = jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct((2, 5), np.float32))
    return model, jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), variables)


def linen_params_renamed() -> Call:
    """``model.apply(variables, x)`` with variables given as an input whose submodule 'hidden' is named 'dense'."""
    model, variables = _linen_mlp()
    params = dict(variables["params"])
    params["dense"] = params.pop("hidden")
    return Call(lambda v, x: model.apply(v, x), [{"params": params}, (2, 5)],
                targets=("inputs[0]['params'] ('v'): ",), error="SpecError")  # fmt: skip


def linen_params_missing_bias() -> Call:
    """Linen variables whose 'hidden' layer lacks its bias."""
    model, variables = _linen_mlp()
    params = {"head": variables["params"]["head"], "hidden": {"kernel": variables["params"]["hidden"]["kernel"]}}
    return Call(lambda v, x: model.apply(v, x), [{"params": params}, (2, 5)],
                targets=("inputs[0]['params']['hidden'] ('v'): ",), error="SpecError")  # fmt: skip


def linen_params_without_collection() -> Call:
    """Linen parameters given without their {'params': ...} collection."""
    model, variables = _linen_mlp()
    return Call(lambda v, x: model.apply(v, x), [dict(variables["params"]), (2, 5)],
                targets=("inputs[0] ('v'): ",), error="SpecError")  # fmt: skip


def linen_param_wrong_shape() -> Call:
    """A Linen kernel spec of the wrong shape."""
    import jax

    model, variables = _linen_mlp()
    params = {"head": variables["params"]["head"],
              "hidden": {"kernel": jax.ShapeDtypeStruct((5, 5), np.float32), "bias": variables["params"]["hidden"]["bias"]}}
    return Call(lambda v, x: model.apply(v, x), [{"params": params}, (2, 5)],
                targets=("inputs[0]['params']['hidden']['kernel'] ('v'): ",), error="SpecError")  # fmt: skip


def nnx_state_missing_variable() -> Call:
    """``nnx.merge(graphdef, state)`` with a state input lacking one variable."""
    import jax
    from flax import nnx

    graphdef, state = nnx.split(nnx.Linear(5, 3, rngs=nnx.Rngs(0)))
    spec = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), nnx.to_pure_dict(state))
    del spec["bias"]
    return Call(lambda s, x: nnx.merge(graphdef, s)(x), [spec, (2, 5)], targets=("inputs[0] ('s'): ",),
                error="SpecError")  # fmt: skip


def nnx_state_renamed_same_order() -> Call:
    """``nnx.merge(graphdef, state)`` with a state whose 'kernel' is named 'weight' (sorts the same: Flax binds by order)."""
    import jax
    from flax import nnx

    graphdef, state = nnx.split(nnx.Linear(5, 3, rngs=nnx.Rngs(0)))
    spec = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), nnx.to_pure_dict(state))
    renamed = {"bias": spec["bias"], "weight": spec["kernel"]}
    return Call(lambda s, x: nnx.merge(graphdef, s)(x), [renamed, (2, 5)],
                targets=("inputs[0]['weight'] ('s'): ",), error="SpecError")  # fmt: skip


def _dense(x: Any) -> Any:
    import jax.numpy as jnp

    return jnp.tanh(x @ np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3) + 0.5)


def float64_without_x64() -> Call:
    """A float64 input spec without ``enable_double_precision``."""
    import jax

    return Call(_dense, [jax.ShapeDtypeStruct((2, 4), np.float64)], targets=("float64", "enable_double_precision"))


def bfloat16_input() -> Call:
    """A bfloat16 input spec (the model should keep bfloat16 or say why not)."""
    import jax
    import jax.numpy as jnp

    return Call(_dense, [jax.ShapeDtypeStruct((2, 4), jnp.bfloat16)], targets=("bfloat16",), compare=False)


def _add(x: Any, y: Any) -> Any:
    return x + y


def symbolic_dims_inconsistent() -> Call:
    """x: [B, 3] + y: [C, 3]: two names for what must be one dimension."""
    return Call(_add, [("B", 3), ("C", 3)], targets=("B", "C"))


def constraints_contradict_shapes() -> Call:
    """constraints= naming a bound the fixed shape breaks (B >= 8 with B the batch of a [B, 4] input... and B <= 2)."""
    return Call(_dense, [("B", 4)], {"constraints": ["B >= 8", "B <= 2"]}, targets=("B >= 8", "B <= 2", "constraint"))


def constraints_unknown_name() -> Call:
    """constraints= naming a dimension no input has."""
    return Call(_dense, [("B", 4)], {"constraints": ["T >= 2"]}, targets=("T", "constraint"))


def _fixed_reshape(x: Any) -> Any:
    return x.reshape(1, 12) * 2


def batch_dim_for_fixed_shapes() -> Call:
    """A symbolic batch for a model that reshapes to a fixed batch of 1."""
    return Call(_fixed_reshape, [("B", 3, 4)], targets=("B", "reshape"))


def _prints(x: Any) -> Any:
    print("tracing with", x.shape)
    return x * 2


def python_print() -> Call:
    """A Python ``print`` in the function (runs once, at trace time)."""
    return Call(_prints, [(2, 3)])


def _debug_print(x: Any) -> Any:
    import jax

    jax.debug.print("x = {}", x)
    return x * 2


def jax_debug_print() -> Call:
    """``jax.debug.print`` in the function (a host callback the ONNX model cannot make)."""
    return Call(_debug_print, [(2, 3)], targets=("debug", "callback", "print"))


def _pure_callback(x: Any) -> Any:
    import jax

    return jax.pure_callback(np.sin, jax.ShapeDtypeStruct(x.shape, x.dtype), x) * 2


def host_pure_callback() -> Call:
    """``jax.pure_callback`` to NumPy: host code an ONNX model cannot hold."""
    return Call(_pure_callback, [(2, 3)], targets=("callback", "pure_callback"))


def _io_callback(x: Any) -> Any:
    from jax.experimental import io_callback

    io_callback(lambda v: None, None, x)
    return x + 1


def host_io_callback() -> Call:
    """``jax.experimental.io_callback`` (a side effect on the host)."""
    return Call(_io_callback, [(2, 3)], targets=("callback", "io_callback"))


# input specs of the wrong pytree structure (workbench/jax_to_onnx/structure.py): in the CI slice too
STRUCTURE_MISTAKES = (pytree_wrong_structure, pytree_missing_key, pytree_leaf_for_subtree, pytree_subtree_for_leaf,
                      pytree_dict_for_tuple, pytree_three_for_a_pair, pytree_dict_unpacked_as_pair,
                      pytree_dict_of_three_unpacked_as_pair, pytree_specs_nested_in_one, tree_map_missing_leaf,
                      linen_params_renamed, linen_params_missing_bias, linen_params_without_collection,
                      linen_param_wrong_shape, nnx_state_missing_variable, nnx_state_renamed_same_order)  # fmt: skip
MISTAKES: dict[str, Callable[[], Call]] = {
    f.__name__: f
    for f in (linen_module_without_params, linen_apply_without_params, linen_batchnorm_not_mutable,
              nnx_dropout_without_rngs, nnx_dropout_train_mode_with_rngs, haiku_transform_not_applied,
              haiku_transformed_object, equinox_wrong_feature_size, keras_model_object, *STRUCTURE_MISTAKES,
              float64_without_x64, bfloat16_input, symbolic_dims_inconsistent,
              constraints_contradict_shapes, constraints_unknown_name, batch_dim_for_fixed_shapes, python_print,
              jax_debug_print, host_pure_callback, host_io_callback)  # fmt: skip
}
PROGRAM_KIND = "user_program"

__all__ = ["MISTAKES", "PROGRAM_KIND", "STRUCTURE_MISTAKES", "Call"]
