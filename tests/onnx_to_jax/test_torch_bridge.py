"""PyTorch -> ONNX (``torch.onnx.export``) -> JAX (``wb.to_jax``): outputs and gradients match PyTorch.

Two models built in code, random weights, nothing downloaded: a torchvision-style CNN
(conv/BatchNorm/ReLU/max pool stem, a ResNet BasicBlock with a strided 1x1 projection,
adaptive average pool, linear head) and a small pre-LN transformer encoder
(``nn.TransformerEncoderLayer`` with GELU, token embedding, learned positions, a key
padding mask, LayerNorm, mean pool, head). Both are exported with a dynamic batch axis
and checked at two batch sizes through one ``jax.jit``-compiled function; ``jax.grad`` of
the generated code is compared with PyTorch autograd (input gradient for the CNN, the
gradients of every weight that keeps its PyTorch name in the ONNX file for both).

Exporter: ``torch.onnx.export(..., dynamo=True)`` (the ``torch.export``-based exporter,
the default in torch 2.13; it needs onnxscript, which is installed, and nothing from the
network). The TorchScript exporter (``dynamo=False``) also works offline but is deprecated,
so it is covered by one CNN test only. torch is the ``torch`` extra and CI installs it: a
missing torch fails these tests with an install hint instead of skipping them.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import onnx
import pytest

import workbench as wb

try:
    import torch
    from torch import nn
except ImportError as error:  # pragma: no cover - CI installs the extra
    torch = None
    nn = None
    _TORCH_IMPORT_ERROR: ImportError | None = error
else:
    _TORCH_IMPORT_ERROR = None

RTOL, ATOL = 1e-4, 1e-5
GRAD_RTOL, GRAD_ATOL = 1e-3, 1e-5


def _require_torch() -> None:
    if torch is None:
        pytest.fail(
            f"PyTorch is not importable ({_TORCH_IMPORT_ERROR}); these tests need the 'torch' extra: "
            "pip install -e '.[torch]' (torch==2.13.0, CPU)",
            pytrace=False,
        )


# ----------------------------------------------------------------------------- models
def _randomize(module: Any, seed: int) -> None:
    """Distinct random weights everywhere (TransformerEncoder deep-copies one layer, so its
    layers start identical) and non-trivial BatchNorm running statistics."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(0.3 * torch.randn(param.shape, generator=generator))
        for sub in module.modules():
            if isinstance(sub, nn.BatchNorm2d):
                sub.running_mean.copy_(0.1 * torch.randn(sub.running_mean.shape, generator=generator))
                sub.running_var.copy_(0.5 + torch.rand(sub.running_var.shape, generator=generator))


def build_cnn() -> Any:
    class BasicBlock(nn.Module):
        """torchvision's ResNet BasicBlock, with a 1x1 strided projection on the shortcut."""

        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x: Any) -> Any:
            out = torch.relu(self.bn1(self.conv1(x)))
            return torch.relu(self.bn2(self.conv2(out)) + self.downsample(x))

    class SmallResNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(
                nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                nn.MaxPool2d(3, stride=2, padding=1),
            )
            self.layer1 = BasicBlock(8, 16, stride=2)
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(16, 10)

        def forward(self, x: Any) -> Any:
            return self.fc(torch.flatten(self.avgpool(self.layer1(self.stem(x))), 1))

    model = SmallResNet()
    _randomize(model, seed=0)
    return model.eval()


VOCAB, SEQ, D_MODEL = 50, 10, 32


def build_transformer() -> Any:
    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(VOCAB, D_MODEL)
            self.pos = nn.Parameter(torch.zeros(1, SEQ, D_MODEL))
            layer = nn.TransformerEncoderLayer(
                D_MODEL, nhead=4, dim_feedforward=64, dropout=0.0, activation="gelu", batch_first=True,
                norm_first=True,
            )
            self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(D_MODEL)
            self.head = nn.Linear(D_MODEL, 5)

        def forward(self, tokens: Any, padding: Any) -> Any:
            h = self.encoder(self.embed(tokens) + self.pos, src_key_padding_mask=padding)
            return self.head(self.norm(h).mean(dim=1))

    model = Encoder()
    _randomize(model, seed=1)
    return model.eval()


def cnn_inputs(batch: int, seed: int) -> list[np.ndarray]:
    return [np.random.default_rng(seed).standard_normal((batch, 3, 32, 32)).astype(np.float32)]


def transformer_inputs(batch: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, VOCAB, (batch, SEQ)).astype(np.int64)
    padding = np.zeros((batch, SEQ), dtype=bool)
    padding[0, SEQ - 3:] = True  # the first sequence is shorter: its last 3 positions are padding
    return [tokens, padding]


# ----------------------------------------------------------------------------- export
@dataclass(frozen=True)
class Bridged:
    torch_model: Any
    onnx_model: onnx.ModelProto
    forward: Callable[..., Any]
    params: dict[str, Any]
    make_inputs: Callable[[int, int], list[np.ndarray]]


def _dynamo_export(model: Any, example: list[np.ndarray]) -> onnx.ModelProto:
    args = tuple(torch.from_numpy(a) for a in example)
    batch = torch.export.Dim("batch")
    program = torch.onnx.export(
        model, args, dynamo=True, dynamic_shapes=tuple({0: batch} for _ in args), verbose=False
    )
    return program.model_proto


def _bridge(build: Callable[[], Any], make_inputs: Callable[[int, int], list[np.ndarray]]) -> Bridged:
    _require_torch()
    model = build()
    onnx_model = _dynamo_export(model, make_inputs(2, 0))
    forward, params = wb.to_jax(onnx_model)
    return Bridged(model, onnx_model, forward, params, make_inputs)


# ----------------------------------------------------------------------------- checks
def _torch_forward(model: Any, inputs: list[np.ndarray]) -> np.ndarray:
    with torch.no_grad():
        return model(*(torch.from_numpy(a) for a in inputs)).numpy()


def _assert_matches_pytorch(bridged: Bridged) -> None:
    first_input = bridged.onnx_model.graph.input[0].type.tensor_type.shape.dim[0]
    assert first_input.dim_param, f"the batch axis was exported static: {first_input}"
    jitted = jax.jit(bridged.forward)
    for seed, batch in enumerate((2, 5)):  # the exported batch and another one, one compiled function
        inputs = bridged.make_inputs(batch, seed)
        expected = _torch_forward(bridged.torch_model, inputs)
        got = np.asarray(jitted(bridged.params, *inputs))
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL, err_msg=f"batch {batch}")
    eager = np.asarray(bridged.forward(bridged.params, *bridged.make_inputs(2, 0)))
    np.testing.assert_allclose(eager, _torch_forward(bridged.torch_model, bridged.make_inputs(2, 0)),
                               rtol=RTOL, atol=ATOL, err_msg="eager")


def _split_params(params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    trainable = {k: v for k, v in params.items() if np.asarray(v).dtype.kind == "f" and np.asarray(v).ndim > 0}
    return trainable, {k: v for k, v in params.items() if k not in trainable}


def _assert_gradients_match(bridged: Bridged, *, input_gradient: bool, min_named: int) -> None:
    """d(sum(out * w)) w.r.t. the weights (and the float input) in JAX vs PyTorch autograd."""
    inputs = bridged.make_inputs(3, 7)
    weights = np.random.default_rng(8).standard_normal(_torch_forward(bridged.torch_model, inputs).shape)
    weights = weights.astype(np.float32)

    torch_inputs = [torch.from_numpy(a) for a in inputs]
    if input_gradient:
        torch_inputs[0].requires_grad_(True)
    bridged.torch_model.zero_grad()
    (bridged.torch_model(*torch_inputs) * torch.from_numpy(weights)).sum().backward()
    torch_grads = {name: p.grad.numpy() for name, p in bridged.torch_model.named_parameters() if p.grad is not None}
    torch_values = {name: p.detach().numpy() for name, p in bridged.torch_model.named_parameters()}

    trainable, fixed = _split_params(bridged.params)

    def loss(params: dict[str, Any], first: Any) -> jax.Array:
        return jnp.sum(bridged.forward({**fixed, **params}, first, *inputs[1:]) * weights)

    if input_gradient:
        param_grads, input_grad = jax.jit(jax.grad(loss, argnums=(0, 1)))(trainable, inputs[0])
    else:
        param_grads, input_grad = jax.jit(jax.grad(loss))(trainable, inputs[0]), None

    # Only weights the exporter kept as they are (same name, same values) have comparable gradients:
    # a BatchNorm folded into a convolution keeps the conv weight's name with other values.
    named = sorted(
        k for k in param_grads
        if k in torch_grads and np.array_equal(np.asarray(bridged.params[k]), torch_values[k])
    )
    assert len(named) >= min_named, f"only {named} kept their PyTorch names and values; expected {min_named}+"
    for name in named:
        np.testing.assert_allclose(np.asarray(param_grads[name]), torch_grads[name], rtol=GRAD_RTOL,
                                   atol=GRAD_ATOL, err_msg=f"d loss / d {name}")
    if input_gradient:
        expected = torch_inputs[0].grad.numpy()
        assert np.abs(expected).max() > 0
        np.testing.assert_allclose(np.asarray(input_grad), expected, rtol=GRAD_RTOL, atol=GRAD_ATOL,
                                   err_msg="d loss / d input")


# One test per model, both checks on one export (exporting is the slow part), so that no two xdist
# workers export the same model.
def test_cnn_outputs_and_gradients_match_pytorch():
    cnn = _bridge(build_cnn, cnn_inputs)
    _assert_matches_pytorch(cnn)
    # BatchNorm is folded into the convolutions on export (new values under the conv weights'
    # names); fc.weight and fc.bias are kept as they are
    _assert_gradients_match(cnn, input_gradient=True, min_named=2)


def test_transformer_outputs_and_gradients_match_pytorch():
    transformer = _bridge(build_transformer, transformer_inputs)
    ops = {node.op_type for node in transformer.onnx_model.graph.node}
    assert {"Softmax", "LayerNormalization", "Gelu"} <= ops, sorted(ops)  # the attention and MLP really are there
    _assert_matches_pytorch(transformer)
    # embedding, LayerNorm scales/biases, attention/MLP biases and the head keep their names
    _assert_gradients_match(transformer, input_gradient=False, min_named=8)


def test_torchscript_exporter_cnn_matches_pytorch():
    """The deprecated TorchScript exporter emits other ops (GlobalAveragePool, Flatten); cover it once."""
    _require_torch()
    model = build_cnn()
    buffer = io.BytesIO()
    example = torch.from_numpy(cnn_inputs(2, 0)[0])
    torch.onnx.export(model, (example,), buffer, dynamo=False, input_names=["x"], output_names=["logits"],
                      dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}})
    onnx_model = onnx.load_from_string(buffer.getvalue())
    forward, params = wb.to_jax(onnx_model)
    _assert_matches_pytorch(Bridged(model, onnx_model, forward, params, cnn_inputs))
