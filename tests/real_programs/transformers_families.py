"""More of Hugging Face transformers' Flax model families: decoders (Llama, Mistral, Gemma, GPT-J, Bloom, OPT,
XGLM), encoders (BigBird, RoFormer, RoBERTa pre-LN, XLM-R), encoder-decoders (Blenderbot, MBart, Marian,
Pegasus, Whisper), vision (BEiT, DINOv2, CLIP's vision tower and the whole CLIP, ResNet, RegNet) and audio
(Wav2Vec2).

Each is built from a small config with random weights (no download) and called as the model card shows.
transformers' Flax T5 family (T5, MT5, LongT5) is absent: its layer norm calls ``jnp.clip(a_max=...)``, which
JAX 0.10 removed, so the model does not run in JAX itself.
"""

from __future__ import annotations

import numpy as np

from tests.real_programs.catalogue import Built, program
from tests.real_programs.hf_flax import (
    SMALL_SEQ2SEQ, SMALL_TEXT, MAX_POSITIONS, TEXT_LENGTHS, seq2seq_model, text_model, token_spec, tokens, vision_model,
)

_RNG = np.random.default_rng(11)
_VIT = {"image_size": 32, "patch_size": 8, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4}


def _normal(*shape: int) -> np.ndarray:
    return _RNG.standard_normal(shape).astype(np.float32)


@program("hf_flax_llama", library="transformers", origin="transformers FlaxLlamaModel, grouped-query attention (small config)")
def _llama() -> Built:
    import transformers

    config = transformers.LlamaConfig(num_key_value_heads=2, **SMALL_TEXT)
    return text_model(transformers.FlaxLlamaModel(config, seed=0), _RNG)


@program("hf_flax_mistral", library="transformers", origin="transformers FlaxMistralModel, sliding-window attention (small config)")
def _mistral() -> Built:
    import transformers

    config = transformers.MistralConfig(num_key_value_heads=2, sliding_window=8, **SMALL_TEXT)
    return text_model(transformers.FlaxMistralModel(config, seed=0), _RNG)


@program("hf_flax_gemma", library="transformers", origin="transformers FlaxGemmaModel (small config)")
def _gemma() -> Built:
    import transformers

    config = transformers.GemmaConfig(num_key_value_heads=2, head_dim=8, **SMALL_TEXT)
    return text_model(transformers.FlaxGemmaModel(config, seed=0), _RNG)


@program("hf_flax_gptj", library="transformers", origin="transformers FlaxGPTJModel, partial rotary embedding (small config)")
def _gptj() -> Built:
    import transformers

    config = transformers.GPTJConfig(vocab_size=100, n_embd=32, n_layer=2, n_head=4, rotary_dim=4, n_positions=64)
    return text_model(transformers.FlaxGPTJModel(config, seed=0), _RNG)


@program("hf_flax_bloom", library="transformers", origin="transformers FlaxBloomModel, ALiBi attention (small config)")
def _bloom() -> Built:
    import transformers

    config = transformers.BloomConfig(vocab_size=100, hidden_size=32, n_layer=2, n_head=4)
    return text_model(transformers.FlaxBloomModel(config, seed=0), _RNG)


@program("hf_flax_opt", library="transformers", origin="transformers FlaxOPTModel (small config)")
def _opt() -> Built:
    import transformers

    config = transformers.OPTConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, ffn_dim=64,
                                    max_position_embeddings=64, word_embed_proj_dim=32)
    return text_model(transformers.FlaxOPTModel(config, seed=0), _RNG, inference={"deterministic": True})


@program("hf_flax_xglm", library="transformers", origin="transformers FlaxXGLMModel, sinusoidal positions (small config)")
def _xglm() -> Built:
    import transformers

    config = transformers.XGLMConfig(vocab_size=100, d_model=32, num_layers=2, attention_heads=4, ffn_dim=64,
                                     max_position_embeddings=64)
    return text_model(transformers.FlaxXGLMModel(config, seed=0), _RNG)


@program("hf_flax_bigbird", library="transformers", origin="transformers FlaxBigBirdModel, full attention at short length (small config)")
def _bigbird() -> Built:
    import transformers

    config = transformers.BigBirdConfig(attention_type="original_full", **SMALL_TEXT)
    return text_model(transformers.FlaxBigBirdModel(config, seed=0), _RNG)


@program("hf_flax_roformer", library="transformers", origin="transformers FlaxRoFormerModel, rotary embedding (small config)")
def _roformer() -> Built:
    import transformers

    return text_model(transformers.FlaxRoFormerModel(transformers.RoFormerConfig(**SMALL_TEXT), seed=0), _RNG)


@program("hf_flax_roberta_prelayernorm", library="transformers", origin="transformers FlaxRobertaPreLayerNormModel (small config)")
def _roberta_preln() -> Built:
    import transformers

    config = transformers.RobertaPreLayerNormConfig(**SMALL_TEXT)
    return text_model(transformers.FlaxRobertaPreLayerNormModel(config, seed=0), _RNG)


@program("hf_flax_xlm_roberta", library="transformers", origin="transformers FlaxXLMRobertaModel (small config)")
def _xlm_roberta() -> Built:
    import transformers

    return text_model(transformers.FlaxXLMRobertaModel(transformers.XLMRobertaConfig(**SMALL_TEXT), seed=0), _RNG)


@program("hf_flax_blenderbot", library="transformers", origin="transformers FlaxBlenderbotModel encoder-decoder (small config)")
def _blenderbot() -> Built:
    import transformers

    return seq2seq_model(transformers.FlaxBlenderbotModel(transformers.BlenderbotConfig(**SMALL_SEQ2SEQ), seed=0), _RNG)


@program("hf_flax_mbart", library="transformers", origin="transformers FlaxMBartModel encoder-decoder (small config)")
def _mbart() -> Built:
    import transformers

    return seq2seq_model(transformers.FlaxMBartModel(transformers.MBartConfig(**SMALL_SEQ2SEQ), seed=0), _RNG)


@program("hf_flax_marian", library="transformers", origin="transformers FlaxMarianModel encoder-decoder (small config)")
def _marian() -> Built:
    import transformers

    config = transformers.MarianConfig(pad_token_id=0, decoder_start_token_id=0, **SMALL_SEQ2SEQ)
    return seq2seq_model(transformers.FlaxMarianModel(config, seed=0), _RNG)


@program("hf_flax_pegasus", library="transformers", origin="transformers FlaxPegasusModel encoder-decoder (small config)")
def _pegasus() -> Built:
    import transformers

    return seq2seq_model(transformers.FlaxPegasusModel(transformers.PegasusConfig(**SMALL_SEQ2SEQ), seed=0), _RNG)


@program("hf_flax_whisper", library="transformers", origin="transformers FlaxWhisperModel: log-mel frames and decoder tokens (small config)")
def _whisper() -> Built:
    import transformers

    config = transformers.WhisperConfig(num_mel_bins=16, max_source_positions=20, max_target_positions=32,
                                        **{k: v for k, v in SMALL_SEQ2SEQ.items() if k != "max_position_embeddings"})
    model = transformers.FlaxWhisperModel(config, seed=0)
    params = model.params

    def forward(input_features, decoder_input_ids):
        return model(input_features=input_features, decoder_input_ids=decoder_input_ids, params=params, train=False)[0]

    # the frames stay fixed: FlaxWhisperEncoder adds its whole position table (max_source_positions=20 after the
    # stride-2 convolution), so it takes exactly 40 frames; the decoder's tokens are a symbolic length T
    return Built(forward, [("B", 16, 40), token_spec("T")], [_normal(2, 16, 40), tokens(_RNG, 2, 6)], sizes={"T": (3, 9)},
                 constraints=("T <= 32",))  # max_target_positions


@program("hf_flax_wav2vec2", library="transformers", origin="transformers FlaxWav2Vec2Model: conv feature encoder + transformer (small config)")
def _wav2vec2() -> Built:
    import transformers

    config = transformers.Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                                         conv_dim=(16, 16), conv_stride=(5, 2), conv_kernel=(10, 3), num_conv_pos_embeddings=16,
                                         num_conv_pos_embedding_groups=4, do_stable_layer_norm=True, feat_extract_norm="layer")
    model = transformers.FlaxWav2Vec2Model(config, seed=0)
    params = model.params

    def forward(waveform):
        return model(waveform, params=params, train=False)[0]

    # a symbolic number of samples T; 320 and 560 give 31 and 55 frames (the built 400: 39)
    return Built(forward, [("B", "T")], [_normal(2, 400)], sizes={"T": (320, 560)})


@program("hf_flax_beit", library="transformers", origin="transformers FlaxBeitModel, relative position bias (small config)")
def _beit() -> Built:
    import transformers

    config = transformers.BeitConfig(intermediate_size=64, use_relative_position_bias=True, **_VIT)
    return vision_model(transformers.FlaxBeitModel(config, seed=0), _RNG)


@program("hf_flax_dinov2", library="transformers", origin="transformers FlaxDinov2Model, layer scale (small config)")
def _dinov2() -> Built:
    import transformers

    return vision_model(transformers.FlaxDinov2Model(transformers.Dinov2Config(mlp_ratio=2, **_VIT), seed=0), _RNG)


@program("hf_flax_clip_vision", library="transformers", origin="transformers FlaxCLIPVisionModel (small config)")
def _clip_vision() -> Built:
    import transformers

    config = transformers.CLIPVisionConfig(intermediate_size=64, **_VIT)
    return vision_model(transformers.FlaxCLIPVisionModel(config, seed=0), _RNG)


@program("hf_flax_clip", library="transformers", origin="transformers FlaxCLIPModel: image-text logits (small config)")
def _clip() -> Built:
    import transformers

    config = transformers.CLIPConfig(text_config=dict(SMALL_TEXT), vision_config={"intermediate_size": 64, **_VIT}, projection_dim=16)
    model = transformers.FlaxCLIPModel(config, seed=0)
    params = model.params

    def forward(input_ids, pixel_values):
        return model(input_ids=input_ids, pixel_values=pixel_values, params=params, train=False).logits_per_image

    return Built(forward, [token_spec("T"), ("B", 3, 32, 32)], [tokens(_RNG, 2, 12), _normal(2, 3, 32, 32)],
                 sizes={"T": TEXT_LENGTHS}, constraints=(f"T <= {MAX_POSITIONS}",))


@program("hf_flax_resnet", library="transformers", origin="transformers FlaxResNetModel, bottleneck layers (small config)")
def _resnet() -> Built:
    import transformers

    config = transformers.ResNetConfig(embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1], layer_type="bottleneck")
    return vision_model(transformers.FlaxResNetModel(config, seed=0), _RNG)


@program("hf_flax_regnet", library="transformers", origin="transformers FlaxRegNetModel, grouped convolutions (small config)")
def _regnet() -> Built:
    import transformers

    config = transformers.RegNetConfig(embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1], groups_width=8)
    return vision_model(transformers.FlaxRegNetModel(config, seed=0), _RNG)
