"""Corpus: Hugging Face transformers models from small configs, exported by torch, to JAX, against onnxruntime.

Random weights (seeded), no downloads. Each model is exported with the TorchScript exporter and with
``dynamo=True``, and also taken after onnxruntime's offline optimization (extended level: its
com.microsoft fusions) and after dynamic quantization; the generated JAX code must match onnxruntime
on the same file within float32 rounding scaled to the model's depth and output magnitude
(tests/support/corpus.py). Needs the ``corpus`` extra (transformers) and torch. Known exporter limits (not ours) are listed in EXPORT_LIMITS.
"""

from __future__ import annotations

import io
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e .[torch])")
transformers = pytest.importorskip("transformers", reason="the corpus extra is not installed (pip install -e .[corpus])")

import onnx  # noqa: E402

import workbench as wb  # noqa: E402
from tests.support.corpus import assert_outputs_match, optimized, quantized  # noqa: E402
from tests.support.harness import run_onnx  # noqa: E402

pytestmark = [pytest.mark.corpus, pytest.mark.slow]

# the exporter, not the converter, fails on these (measured with torch 2.14.1, transformers 5.24)
EXPORT_LIMITS = {
    ("llama", "legacy"): "the TorchScript exporter does not convert scaled_dot_product_attention with enable_gqa",
}


def _bert():
    config = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64, max_position_embeddings=32)
    return transformers.BertModel(config), (torch.randint(0, 100, (2, 8)), torch.ones(2, 8, dtype=torch.long))


def _gpt2():
    config = transformers.GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=2, n_positions=32)
    return transformers.GPT2Model(config), (torch.randint(0, 100, (2, 8)),)


def _llama():
    config = transformers.LlamaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                      num_key_value_heads=2, intermediate_size=64, max_position_embeddings=32)
    return transformers.LlamaModel(config), (torch.randint(0, 100, (2, 8)),)


def _vit():
    config = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                    num_attention_heads=2, intermediate_size=64)
    return transformers.ViTModel(config), (torch.rand(2, 3, 32, 32),)


MODELS = {"bert": _bert, "gpt2": _gpt2, "llama": _llama, "vit": _vit}


class _FirstOutput(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, *args):
        return self.model(*args)[0]


def _export(name: str, exporter: str) -> tuple[onnx.ModelProto, list[np.ndarray]]:
    torch.manual_seed(0)
    model, args = MODELS[name]()
    wrapped = _FirstOutput(model.eval()).eval()
    if exporter == "dynamo":
        return torch.onnx.export(wrapped, args, dynamo=True, opset_version=18).model_proto, [a.numpy() for a in args]
    buffer = io.BytesIO()
    torch.onnx.export(wrapped, args, buffer, dynamo=False, opset_version=17)
    return onnx.load_from_string(buffer.getvalue()), [a.numpy() for a in args]


def _assert_matches(model: onnx.ModelProto, feeds: list[np.ndarray]) -> list[float]:
    forward, params = wb.to_jax(model)
    got = forward(params, *feeds)
    return assert_outputs_match(model, run_onnx(model, feeds), got if isinstance(got, tuple) else (got,))


# What CI runs (its time budget): every model once, each exporter, the optimized and the quantized
# forms at least twice. WORKBENCH_CORPUS_FULL=1 runs every model x exporter x form.
CI_CASES = {
    ("bert", "legacy"): ("plain", "optimized", "quantized"),
    ("gpt2", "dynamo"): ("plain", "optimized"),
    ("llama", "dynamo"): ("plain", "quantized"),
    ("vit", "legacy"): ("plain", "optimized"),
}
FULL = os.environ.get("WORKBENCH_CORPUS_FULL") == "1"
FULL_ONLY = "full matrix only (WORKBENCH_CORPUS_FULL=1): CI runs the subset CI_CASES (its time budget)"


@pytest.mark.parametrize("exporter", ["legacy", "dynamo"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_transformer_matches_onnxruntime(name, exporter, tmp_path):
    if (name, exporter) in EXPORT_LIMITS:
        pytest.skip(EXPORT_LIMITS[(name, exporter)])
    forms = ("plain", "optimized", "quantized") if FULL else CI_CASES.get((name, exporter))
    if not forms:
        pytest.skip(FULL_ONLY)
    model, feeds = _export(name, exporter)
    if "plain" in forms:
        _assert_matches(model, feeds)
    if "optimized" in forms:
        _assert_matches(optimized(model, tmp_path), feeds)
    if "quantized" in forms:
        _assert_matches(quantized(model, tmp_path), feeds)
