"""Modules in train mode: converted in inference mode, with a WorkbenchWarning naming what was in train mode.

Flax NNX's Dropout and BatchNorm start in train mode (``deterministic=False``, ``use_running_average=False``)
and Equinox's Dropout/BatchNorm with ``inference=False``; the export switches a copy to eval mode as
``model.eval()`` / ``eqx.nn.inference_mode`` would, and says so. Linen takes its mode as call arguments,
which the export honours as written (no switch, no warning). Every exported model is compared in
onnxruntime with JAX's output in the mode the export claims.
"""

from __future__ import annotations

import functools
import warnings

import equinox as eqx
import flax.linen as linen
import jax
import numpy as np
import pytest
from flax import nnx

import workbench as wb
from tests.support.harness import assert_matches_jax, run_onnx

X = np.random.default_rng(0).standard_normal((5, 6)).astype(np.float32)


class _Block(nnx.Module):
    def __init__(self, rngs: nnx.Rngs) -> None:
        self.dense = nnx.Linear(6, 6, rngs=rngs)
        self.norm = nnx.BatchNorm(6, rngs=rngs)
        self.drop = nnx.Dropout(0.5, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.drop(nnx.relu(self.norm(self.dense(x))))

    def features(self, x: jax.Array) -> jax.Array:
        return self.norm(self.dense(x))


class _Net(nnx.Module):
    def __init__(self, rngs: nnx.Rngs) -> None:
        self.blocks = nnx.List([_Block(rngs), _Block(rngs)])
        self.head = nnx.Linear(6, 3, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def _trained_like(net: _Net) -> _Net:
    """Running statistics that are not the initial 0/1, so eval mode is visible in the numbers."""
    for index, block in enumerate(net.blocks):
        block.norm.mean[...] = np.linspace(-0.5, 0.5, 6, dtype=np.float32) + index
        block.norm.var[...] = np.linspace(0.5, 2.0, 6, dtype=np.float32)
    return net


def _eval_copy(module: nnx.Module) -> nnx.Module:
    copy = nnx.clone(module)
    copy.eval()
    return copy


def test_nnx_train_mode_is_named_and_the_export_computes_eval_mode() -> None:
    net = _trained_like(_Net(nnx.Rngs(0)))
    with pytest.warns(wb.WorkbenchWarning) as caught:
        model = wb.to_onnx(net, [("B", 6)])
    message = str(caught[0].message)
    assert caught[0].filename == __file__  # the user's line, not the workbench's
    for entry in ("blocks.0.norm (BatchNorm.use_running_average=False)", "blocks.0.drop (Dropout.deterministic=False)",
                  "blocks.1.norm (BatchNorm.use_running_average=False)", "blocks.1.drop (Dropout.deterministic=False)"):
        assert entry in message
    assert message.startswith("_Net is in train mode: ") and "call model.eval() before converting" in message
    assert_matches_jax(_eval_copy(net), model, [X])
    # not train mode's output: the batch statistics of X would give other numbers (the test can fail)
    train_copy = nnx.clone(net)
    train_copy.blocks[0].drop.rate = 0.0
    train_copy.blocks[1].drop.rate = 0.0
    (got,) = run_onnx(model, [X])
    assert not np.allclose(got, np.asarray(train_copy(X)), atol=1e-3)
    assert net.blocks[0].drop.deterministic is False  # the user's module is untouched


def test_nnx_module_in_eval_mode_converts_without_a_word() -> None:
    net = _trained_like(_Net(nnx.Rngs(1)))
    net.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error", wb.WorkbenchWarning)
        model = wb.to_onnx(net, [("B", 6)])
    assert_matches_jax(net, model, [X])


def test_a_bound_method_of_an_nnx_module_in_train_mode_is_warned_about_too() -> None:
    block = _Block(nnx.Rngs(2))
    with pytest.warns(wb.WorkbenchWarning, match=r"_Block\.features is in train mode: drop \(Dropout\.deterministic="
                                                 r"False\), norm \(BatchNorm\.use_running_average=False\)\."):
        model = wb.to_onnx(block.features, [(5, 6)])
    assert_matches_jax(_eval_copy(block).features, model, [X])


def test_a_module_left_partly_in_train_mode_names_only_that_part() -> None:
    net = _trained_like(_Net(nnx.Rngs(3)))
    net.eval()
    net.blocks[1].drop.deterministic = False
    with pytest.warns(wb.WorkbenchWarning) as caught:
        wb.to_onnx(net, [("B", 6)])
    message = str(caught[0].message)
    assert "blocks.1.drop (Dropout.deterministic=False)" in message and "norm" not in message.partition(". ")[0]


class _EqxNet(eqx.Module):
    linear: eqx.nn.Linear
    dropout: eqx.nn.Dropout

    def __call__(self, x: jax.Array) -> jax.Array:
        return jax.vmap(lambda row: self.dropout(jax.nn.tanh(self.linear(row))))(x)


def test_equinox_dropout_in_training_mode_is_named_and_exported_in_inference_mode() -> None:
    net = _EqxNet(eqx.nn.Linear(6, 3, key=jax.random.key(0)), eqx.nn.Dropout(0.5))
    with pytest.warns(wb.WorkbenchWarning, match=r"_EqxNet is in train mode: dropout \(Dropout\.inference=False\)\. "
                                                 r".*call model = eqx\.nn\.inference_mode\(model\)"):
        model = wb.to_onnx(net, [("B", 6)])
    assert_matches_jax(eqx.nn.inference_mode(net), model, [X])
    with warnings.catch_warnings():
        warnings.simplefilter("error", wb.WorkbenchWarning)
        wb.to_onnx(eqx.nn.inference_mode(net), [("B", 6)])


class _LinenNet(linen.Module):
    @linen.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = linen.BatchNorm(use_running_average=not train)(linen.Dense(6)(x))
        return linen.Dropout(0.5, deterministic=not train)(x)


def test_linen_train_mode_is_exported_as_called() -> None:
    """Linen's mode is a call argument: ``train=True`` with rngs and a mutable batch_stats is traced as written
    (batch statistics, the dropout mask of the given key), which is not a mode the export can switch."""
    net = _LinenNet()
    variables = net.init(jax.random.key(0), X)
    train = functools.partial(net.apply, variables, train=True, rngs={"dropout": jax.random.PRNGKey(1)},
                              mutable=["batch_stats"])  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error", wb.WorkbenchWarning)
        model = wb.to_onnx(train, [(5, 6)])
        assert_matches_jax(train, model, [X])
        evaluated = functools.partial(net.apply, variables)
        assert_matches_jax(evaluated, wb.to_onnx(evaluated, [(5, 6)]), [X])
