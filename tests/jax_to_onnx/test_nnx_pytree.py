"""NNX modules split and rebuilt as JAX pytrees (normalize._nnx_as_pytree) only where that is what
``nnx.split`` / ``nnx.merge`` give: the same arrays under the same names in the same order, a copy that
leaves the user's module alone, and ``nnx.split`` kept for shared Variables and non-pytree modules.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import onnx
from flax import nnx

import workbench as wb
from tests.support.harness import run_onnx
from tests.jax_to_onnx.test_module_scopes import _Block  # the same dense/BatchNorm/Dropout block
from workbench import zoo
from workbench.jax_to_onnx.normalize import _nnx_as_pytree, _split_arrays


class _Tied(nnx.Module):
    """One Linear reached through two attributes (a tied weight): nnx.split stores its kernel once."""

    def __init__(self, rngs: nnx.Rngs) -> None:
        self.first = nnx.Linear(8, 8, rngs=rngs)
        self.second = self.first

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        return self.second(nnx.relu(self.first(x)))


class _NotPytree(nnx.Module, pytree=False):
    def __init__(self, rngs: nnx.Rngs) -> None:
        self.dense = nnx.Linear(8, 4, rngs=rngs)

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        return self.dense(x)


def _by_split(module: nnx.Module) -> tuple[list[object], list[str]]:
    arrays, names, _ = _split_arrays(nnx.split(module)[1])
    return arrays, names


def test_the_zoo_and_a_block_flatten_to_what_nnx_split_gives() -> None:
    modules = [zoo.ZOO[name]().fn for name in ("nnx_resnet", "nnx_gpt", "nnx_mlp", "nnx_vit")]
    modules.append(_Block(nnx.Rngs(0)))
    for module in modules:
        found = _nnx_as_pytree(module)
        assert found is not None, type(module).__name__
        arrays, names, _, _ = found
        split_arrays, split_names = _by_split(module)
        assert names == split_names
        assert len(arrays) == len(split_arrays) and all(a is b for a, b in zip(arrays, split_arrays, strict=True))


def test_shared_variables_and_non_pytree_modules_keep_nnx_split() -> None:
    assert _nnx_as_pytree(_Tied(nnx.Rngs(0))) is None
    assert _nnx_as_pytree(_NotPytree(nnx.Rngs(0))) is None


def test_tied_weight_is_one_initializer_and_computes_as_jax() -> None:
    model = _Tied(nnx.Rngs(1))
    x = np.random.default_rng(0).standard_normal((2, 8)).astype(np.float32)
    proto = wb.convert(model, [(2, 8)]).model
    kernels = [init.name for init in proto.graph.initializer if init.name.endswith("kernel")]
    assert kernels == ["first.kernel"]
    np.testing.assert_allclose(run_onnx(proto, [x])[0], np.asarray(model(x)), rtol=1e-5, atol=1e-5)


def test_the_copy_runs_in_eval_mode_and_the_users_module_is_untouched() -> None:
    model = _Block(nnx.Rngs(2))
    model.bn.mean[...] = jnp.full((8,), 0.5)
    model.bn.var[...] = jnp.full((8,), 4.0)
    x = np.random.default_rng(1).standard_normal((3, 8)).astype(np.float32)
    proto = wb.convert(model, [(3, 8)]).model
    assert model.bn.use_running_average is False and model.drop.deterministic is False
    assert not any(node.op_type == "Dropout" for node in proto.graph.node)
    model.eval()
    np.testing.assert_allclose(run_onnx(proto, [x])[0], np.asarray(model(x)), rtol=1e-5, atol=1e-5)


def test_not_pytree_module_converts_through_nnx_split() -> None:
    model = _NotPytree(nnx.Rngs(3))
    x = np.random.default_rng(2).standard_normal((2, 8)).astype(np.float32)
    proto = wb.convert(model, [(2, 8)]).model
    onnx.checker.check_model(proto)
    assert sorted(init.name for init in proto.graph.initializer) == ["dense.bias", "dense.kernel"]
    np.testing.assert_allclose(run_onnx(proto, [x])[0], np.asarray(model(x)), rtol=1e-5, atol=1e-5)
