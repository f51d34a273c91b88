"""Every zoo model converts, passes the graph-quality checks, names its weights and matches JAX in onnxruntime."""

from __future__ import annotations

import re

import numpy as np
import onnx
import pytest

from tests.support.harness import assert_graph_quality, assert_matches_jax, concrete_inputs
from tests.support.zoo_exports import reference, zoo_export
from workbench import zoo

# Expected failures, all in one place: zoo models waiting for handlers other helpers are writing.
# Each entry is strict, so the test fails as soon as the model starts passing: delete the entry then.
EXPECTED_FAILURES: dict[str, str] = {}

# Initializer names that say which weight they are, per model (module paths from the framework).
EXPECTED_NAMES: dict[str, tuple[str, ...]] = {
    "nnx_mlp": ("linear1.kernel", "linear2.kernel", "linear2.bias"),
    "nnx_cnn": ("conv1.kernel", "conv2.kernel", "head.kernel"),
    "nnx_resnet": ("stem.kernel", "blocks.0.c1.kernel", "blocks.3.c2.kernel", "head.kernel"),
    "nnx_gpt": ("embed.embedding", "blocks.1.attn.query.kernel", "blocks.0.mlp_in.kernel", "ln_f.scale"),
    "nnx_vit": ("patch_embed.kernel", "cls_token", "pos_embed", "blocks.1.attn.key.kernel", "head.kernel"),
    "nnx_gru": ("cell.dense_i.kernel", "cell.dense_h.kernel", "head.kernel"),
    "nnx_lstm": ("cell.hi.kernel", "cell.ii.kernel", "head.kernel"),
    "linen_mlp": ("linear1.kernel", "linear2.kernel", "linear2.bias"),
    "linen_cnn": ("conv1.kernel", "conv2.kernel", "head.kernel"),
    "eqx_mlp": ("linear1.weight", "linear2.weight", "linear2.bias"),
    "eqx_cnn": ("conv1.weight", "conv2.weight", "head.weight"),
}

# Token ids must stay below the GPT's vocabulary; sequence T must not exceed its position table.
INT_HIGH = 100
SIZES = {"B": 3, "T": 5}
ANONYMOUS = re.compile(r"^const(_\d+)?$")


def _params(name: str) -> list[pytest.param]:
    marks = []
    if name in EXPECTED_FAILURES:
        marks.append(pytest.mark.xfail(strict=True, reason=EXPECTED_FAILURES[name]))
    return [pytest.param(name, marks=marks, id=name)]


ZOO_PARAMS = [p for name in zoo.ZOO for p in _params(name)]


def test_expected_lists_name_real_models():
    assert set(EXPECTED_FAILURES) <= set(zoo.ZOO)
    assert set(EXPECTED_NAMES) == set(zoo.ZOO)


@pytest.mark.parametrize("opset", [13, 17, None], ids=["opset13", "opset17", "default"])
@pytest.mark.parametrize("name", ZOO_PARAMS)
def test_zoo_model_converts_with_parity(name, opset):
    # the default export is the one test_export_graphs.py and test_round_trip.py check too
    export = zoo_export(name, opset=opset)
    onnx_model = export.model
    assert_graph_quality(onnx_model)
    if opset is not None:
        (default_domain,) = [o for o in onnx_model.opset_import if o.domain == ""]
        assert default_domain.version == opset
    _assert_weights_named(name, onnx_model)
    _assert_symbolic_inputs(onnx_model)
    args = concrete_inputs(export.built.inputs, int_high=INT_HIGH, sizes=SIZES)
    assert_matches_jax(reference(name), onnx_model, args, rtol=1e-4, atol=1e-4)


def _assert_weights_named(name: str, model: onnx.ModelProto) -> None:
    initializers = {t.name: t for t in model.graph.initializer}
    for expected in EXPECTED_NAMES[name]:
        assert expected in initializers, f"no initializer named {expected!r}; have {sorted(initializers)}"
    for tensor_name, tensor in initializers.items():
        size = int(np.prod(tensor.dims)) if tensor.dims else 1
        if size > 16:  # small anonymous constants (shapes, axes, scalars) may stay const_N
            assert not ANONYMOUS.match(tensor_name), f"weight of shape {list(tensor.dims)} named {tensor_name!r}"


def _assert_symbolic_inputs(model: onnx.ModelProto) -> None:
    first = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert first.dim_param == "B", f"batch dim should stay symbolic, got {first}"
