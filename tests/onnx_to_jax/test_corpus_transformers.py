"""Corpus: Hugging Face transformers models from small configs, exported by torch, to JAX, against onnxruntime.

Random weights (seeded), no downloads. Each model is exported with the TorchScript exporter and with
``dynamo=True``, and also taken after onnxruntime's offline optimization (extended level: its
com.microsoft fusions) and after dynamic quantization; the generated JAX code must match onnxruntime
on the same file within float32 rounding scaled to the model's depth and output magnitude
(tests/support/corpus.py). Needs the ``corpus`` extra (transformers) and torch. Known exporter limits (not ours)
are listed in EXPORT_LIMITS, onnxruntime's tools' in FORM_LIMITS (each checked). The matrix: docs/onnx_to_jax_corpus.md, "The transformers corpus".
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
from tests.support.corpus import assert_outputs_match, optimized, quantized, transformers_optimized  # noqa: E402
from tests.support.harness import run_onnx  # noqa: E402

pytestmark = [pytest.mark.corpus, pytest.mark.slow]

# the exporter, not the converter, fails on these (torch 2.13 and 2.14.1, transformers 4.57). Llama's TorchScript
# export, listed here before (scaled_dot_product_attention with enable_gqa), exports and matches with both.
EXPORT_LIMITS = {
    ("mistral", "legacy"): "the TorchScript exporter at opset 17 has no aten::bitwise_and (the sliding-window mask; "
                           "ONNX has BitwiseAnd from opset 18)",
}
# onnxruntime's tools, not the converter, fail on these forms: the test checks that they still do
FORM_LIMITS = {
    ("opt", "dynamo", "quantized"): (
        onnx.shape_inference.InferenceError,
        "quantize_dynamic rewrites Gemm(transB=1) as a MatMul of the transposed weight but keeps the weight's "
        "value_info written by the dynamo exporter, so its own shape inference fails ((32) vs (64))"),
    ("clip", "dynamo", "quantized"): (
        onnx.shape_inference.InferenceError,
        "quantize_dynamic's Gemm-to-MatMul rewrite keeps the transposed weight's old value_info ((32) vs (16))"),
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


# the shared sizes of the small text models: 2 layers, width 32, 2-4 heads, vocabulary 100
_TEXT = {"vocab_size": 100, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
         "intermediate_size": 64, "max_position_embeddings": 32}
_DECODER = {**_TEXT, "num_attention_heads": 4, "num_key_value_heads": 2}


def _ids(batch: int = 2, length: int = 8):
    return torch.randint(3, 100, (batch, length))


def _encoder_args():
    return _ids(), torch.ones(2, 8, dtype=torch.long)


def _seq2seq_args():
    return _ids(), torch.ones(2, 8, dtype=torch.long), _ids(2, 6)


def _images(size: int = 32):
    return (torch.rand(2, 3, size, size),)


def _t5_config():
    return transformers.T5Config(vocab_size=100, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2,
                                 num_heads=4, relative_attention_num_buckets=8, relative_attention_max_distance=16)


def _t5_encoder():
    return transformers.T5EncoderModel(_t5_config()), _encoder_args()


def _t5():
    return transformers.T5Model(_t5_config()), _seq2seq_args()


def _whisper_encoder():
    config = transformers.WhisperConfig(vocab_size=100, num_mel_bins=16, d_model=32, encoder_layers=2,
                                        decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2,
                                        encoder_ffn_dim=64, decoder_ffn_dim=64, max_source_positions=16,
                                        max_target_positions=16, pad_token_id=0, bos_token_id=1,
                                        eos_token_id=2, decoder_start_token_id=1)
    # the encoder takes exactly 2 x max_source_positions frames of log-mel features
    return transformers.WhisperModel(config).get_encoder(), (torch.randn(2, 16, 32),)


def _distilbert():
    config = transformers.DistilBertConfig(vocab_size=100, dim=32, n_layers=2, n_heads=2, hidden_dim=64,
                                           max_position_embeddings=32)
    return transformers.DistilBertModel(config), _encoder_args()


def _roberta():
    # positions start after the padding index, so the table holds two more rows than the sequence
    config = transformers.RobertaConfig(**{**_TEXT, "max_position_embeddings": 34})
    return transformers.RobertaModel(config), _encoder_args()


def _albert():
    config = transformers.AlbertConfig(**_TEXT, embedding_size=16)
    return transformers.AlbertModel(config), _encoder_args()


def _deberta_v2():
    config = transformers.DebertaV2Config(**_TEXT, relative_attention=True, position_buckets=8,
                                          pos_att_type=["p2c", "c2p"])
    return transformers.DebertaV2Model(config), _encoder_args()


def _electra():
    config = transformers.ElectraConfig(**_TEXT, embedding_size=16)
    return transformers.ElectraModel(config), _encoder_args()


def _mobilebert():
    config = transformers.MobileBertConfig(**_TEXT, embedding_size=16, intra_bottleneck_size=16,
                                           true_hidden_size=16, num_feedforward_networks=2)
    return transformers.MobileBertModel(config), _encoder_args()


def _mistral():
    return transformers.MistralModel(transformers.MistralConfig(**_DECODER)), (_ids(),)


def _qwen2():
    return transformers.Qwen2Model(transformers.Qwen2Config(**_DECODER)), (_ids(),)


def _phi():
    config = transformers.PhiConfig(**{**_TEXT, "num_attention_heads": 4}, partial_rotary_factor=0.5)
    return transformers.PhiModel(config), (_ids(),)


def _gemma():
    config = transformers.GemmaConfig(**_DECODER, head_dim=8)
    return transformers.GemmaModel(config), (_ids(),)


def _gpt_neo():
    config = transformers.GPTNeoConfig(vocab_size=100, hidden_size=32, num_layers=2, num_heads=2,
                                       attention_types=[[["global", "local"], 1]], window_size=4,
                                       max_position_embeddings=32)
    return transformers.GPTNeoModel(config), (_ids(),)


def _opt():
    config = transformers.OPTConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, ffn_dim=64,
                                    num_attention_heads=2, max_position_embeddings=32, word_embed_proj_dim=32)
    return transformers.OPTModel(config), (_ids(),)


def _falcon():
    config = transformers.FalconConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4)
    return transformers.FalconModel(config), (_ids(),)


def _bart_config(config_class):
    return config_class(vocab_size=100, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
                        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                        max_position_embeddings=32)


def _bart():
    return transformers.BartModel(_bart_config(transformers.BartConfig)), _seq2seq_args()


def _mbart():
    return transformers.MBartModel(_bart_config(transformers.MBartConfig)), _seq2seq_args()


_CLIP_TEXT = {"vocab_size": 100, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
              "num_attention_heads": 2, "max_position_embeddings": 32}
_CLIP_VISION = {"image_size": 32, "patch_size": 8, "hidden_size": 32, "intermediate_size": 64,
                "num_hidden_layers": 2, "num_attention_heads": 2}


def _clip_text():
    return transformers.CLIPTextModel(transformers.CLIPTextConfig(**_CLIP_TEXT)), (_ids(),)


def _clip_vision():
    return transformers.CLIPVisionModel(transformers.CLIPVisionConfig(**_CLIP_VISION)), _images()


def _clip():
    config = transformers.CLIPConfig(text_config=_CLIP_TEXT, vision_config=_CLIP_VISION, projection_dim=16)
    return transformers.CLIPModel(config), (_ids(), *_images())


def _speech_config(config_class):
    return config_class(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, conv_dim=(16, 16), conv_stride=(5, 2), conv_kernel=(10, 3),
                        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)


def _wav2vec2():
    return transformers.Wav2Vec2Model(_speech_config(transformers.Wav2Vec2Config)), (torch.randn(2, 400),)


def _hubert():
    return transformers.HubertModel(_speech_config(transformers.HubertConfig)), (torch.randn(2, 400),)


def _swin():
    config = transformers.SwinConfig(image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[1, 2],
                                     window_size=4)
    return transformers.SwinModel(config), _images()


def _convnext():
    config = transformers.ConvNextConfig(num_stages=2, hidden_sizes=[16, 32], depths=[1, 1], image_size=32)
    return transformers.ConvNextModel(config), _images()


def _segformer():
    config = transformers.SegformerConfig(num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1],
                                          hidden_sizes=[16, 32], patch_sizes=[7, 3], strides=[4, 2],
                                          num_attention_heads=[1, 2], mlp_ratios=[2, 2], decoder_hidden_size=16,
                                          num_labels=4, initializer_range=0.2)
    return transformers.SegformerForSemanticSegmentation(config), _images()


MODELS = {
    "bert": _bert, "gpt2": _gpt2, "llama": _llama, "vit": _vit, "t5_encoder": _t5_encoder,
    "whisper_encoder": _whisper_encoder, "distilbert": _distilbert, "roberta": _roberta, "albert": _albert,
    "deberta_v2": _deberta_v2, "electra": _electra, "mobilebert": _mobilebert, "mistral": _mistral,
    "qwen2": _qwen2, "phi": _phi, "gemma": _gemma, "gpt_neo": _gpt_neo, "opt": _opt, "falcon": _falcon,
    "bart": _bart, "mbart": _mbart, "t5": _t5, "clip_text": _clip_text, "clip_vision": _clip_vision,
    "clip": _clip, "wav2vec2": _wav2vec2, "hubert": _hubert, "swin": _swin, "convnext": _convnext,
    "segformer": _segformer,
}  # fmt: skip


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


# onnxruntime.transformers.optimizer's model type, heads and width for the models it fuses, and the
# com.microsoft ops its output must hold (then quantize_dynamic's, "fused_quantized"): the forms "fused"
# and "fused_quantized" exist for these models only
TRANSFORMERS_OPTIMIZER = {
    "bert": (("bert", 2, 32), {"EmbedLayerNormalization", "Attention", "SkipLayerNormalization", "BiasGelu"},
             {"QEmbedLayerNormalization", "QAttention"}),
}


def _dynamic_export(name: str) -> onnx.ModelProto:
    """The TorchScript export with dynamic batch and sequence axes, as onnxruntime's BERT tooling exports: with
    static shapes the exporter folds the position ids to a constant and the optimizer's embedding fusion
    (EmbedLayerNormalization) does not match."""
    torch.manual_seed(0)
    model, args = MODELS[name]()
    names = [f"input_{i}" for i in range(len(args))]
    buffer = io.BytesIO()
    torch.onnx.export(_FirstOutput(model.eval()).eval(), args, buffer, dynamo=False, opset_version=17,
                      input_names=names, dynamic_axes={n: {0: "batch", 1: "sequence"} for n in names})
    return onnx.load_from_string(buffer.getvalue())


def _fused(name: str, folder, quantize: bool) -> onnx.ModelProto:
    (model_type, heads, width), fused_ops, quantized_ops = TRANSFORMERS_OPTIMIZER[name]
    rewritten = transformers_optimized(_dynamic_export(name), folder, model_type, heads, width)
    expected = fused_ops
    if quantize:
        rewritten, expected = quantized(rewritten, folder), quantized_ops
    written = {node.op_type for node in rewritten.graph.node if node.domain == "com.microsoft"}
    assert expected <= written, f"the optimizer no longer writes {sorted(expected - written)}"
    return rewritten


# What CI runs (its time budget): the first four models, the T5 and Whisper encoders, each exporter, the optimized
# and the quantized forms at least twice, OPT's FusedGemm. WORKBENCH_CORPUS_FULL=1 runs every model x exporter x form.
CI_CASES = {
    ("bert", "legacy"): ("plain", "optimized", "quantized", "fused", "fused_quantized"),
    ("gpt2", "dynamo"): ("plain", "optimized"),
    ("llama", "dynamo"): ("plain", "quantized"),
    ("vit", "legacy"): ("plain", "optimized"),
    ("t5_encoder", "dynamo"): ("plain", "quantized"),
    ("whisper_encoder", "legacy"): ("plain", "optimized"),
    ("opt", "legacy"): ("optimized",),  # onnxruntime's FusedGemm (Gemm + Relu)
}
FULL = os.environ.get("WORKBENCH_CORPUS_FULL") == "1"
FULL_ONLY = "full matrix only (WORKBENCH_CORPUS_FULL=1): CI runs the subset CI_CASES (its time budget)"


@pytest.mark.parametrize("exporter", ["legacy", "dynamo"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_transformer_matches_onnxruntime(name, exporter, tmp_path):
    if (name, exporter) in EXPORT_LIMITS:
        pytest.skip(EXPORT_LIMITS[(name, exporter)])
    every_form = ("plain", "optimized", "quantized") + (("fused", "fused_quantized") if name in TRANSFORMERS_OPTIMIZER
                                                         else ())
    forms = every_form if FULL else CI_CASES.get((name, exporter))
    if not forms:
        pytest.skip(FULL_ONLY)
    model, feeds = _export(name, exporter)
    rewrite = {"plain": lambda: model, "optimized": lambda: optimized(model, tmp_path),
               "quantized": lambda: quantized(model, tmp_path),
               "fused": lambda: _fused(name, tmp_path, False),
               "fused_quantized": lambda: _fused(name, tmp_path, True)}
    for form in forms:
        if (name, exporter, form) in FORM_LIMITS:
            error = FORM_LIMITS[(name, exporter, form)][0]
            with pytest.raises(error, match="differ in dimension"):  # a fixed onnxruntime fails this: test the form
                rewrite[form]()
            continue
        _assert_matches(rewrite[form](), feeds)
