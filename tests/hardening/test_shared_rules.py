"""The fusion passes never use (or copy) onnxscript's shared module-level rewrite rules.

onnxscript's ``rules.common.*_rule`` objects are singletons every user of onnxscript shares, and a
rule keeps its last match. torch.onnx's exporter optimizes its graphs with them, so after a
``torch.onnx.export(..., dynamo=True)`` in the same process they referred to torch's graph; the
passes deep-copied them for each thread and opset, and that copy raised ``TypeError:
Opset.__new__() missing 2 required positional arguments`` (or failed on torch's fake tensors):
a notebook that exported a PyTorch model could then not convert a JAX model at a new opset.
"""

from __future__ import annotations

import threading

import jax.numpy as jnp
import numpy as np
import onnx
import torch
from flax import nnx
from onnxscript.rewriter import RewriteRule
from onnxscript.rewriter.rules import common as onnxscript_common

import workbench as wb
from tests.support.harness import run_onnx
from workbench.jax_to_onnx.passes import attention_layout
from workbench.jax_to_onnx.passes.fusions import rule_phases


def _rules(opset: int) -> list[RewriteRule]:
    return [rule for phase in rule_phases(opset) for rule, _ in phase] + attention_layout.layout_rules()


def test_every_call_builds_new_rule_objects():
    shared = {id(value) for value in vars(onnxscript_common).values() if isinstance(value, RewriteRule)}
    first, second = _rules(23), _rules(23)
    assert len(first) > 20
    assert not {id(rule) for rule in first} & {id(rule) for rule in second}
    assert not {id(rule) for rule in first} & shared


class _Block(nnx.Module):
    def __init__(self, rngs: nnx.Rngs) -> None:
        self.dense = nnx.Linear(8, 8, rngs=rngs)
        self.norm = nnx.LayerNorm(8, rngs=rngs)

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        return jnp.maximum(self.norm(self.dense(x)), 0.0)


def test_a_jax_conversion_after_a_torch_onnx_export_in_the_same_process():
    torch_model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.LayerNorm(8), torch.nn.GELU()).eval()
    torch.onnx.export(torch_model, (torch.randn(2, 4),), dynamo=True, optimize=True, verbose=False)
    block = _Block(nnx.Rngs(0))
    results: dict[int, onnx.ModelProto] = {}
    errors: list[BaseException] = []

    def convert() -> None:  # a new thread and opsets not converted before: the passes build their rules now
        try:
            for opset in (19, 22):
                results[opset] = wb.to_onnx(block, [(2, 8)], opset=opset)
        except BaseException as error:  # noqa: BLE001 - re-raised by the assertion below
            errors.append(error)

    thread = threading.Thread(target=convert)
    thread.start()
    thread.join()
    assert not errors, errors
    x = np.linspace(-2, 2, 16, dtype=np.float32).reshape(2, 8)
    for model in results.values():
        assert "LayerNormalization" in {node.op_type for node in model.graph.node}
        np.testing.assert_allclose(run_onnx(model, [x])[0], np.asarray(block(x)), rtol=1e-5, atol=1e-5)
