"""Hugging Face transformers' Flax models that compose others, and one family the catalogue lacked:
BlenderbotSmall's encoder-decoder with its language-model head, a VisionEncoderDecoder (a ViT encoder feeding a
GPT-2 decoder through cross-attention: the image-captioning set-up), and an EncoderDecoder of a BERT encoder and
a GPT-2 decoder (the bert2gpt2 set-up). Each is built from small configs with random weights (no download) and
called as the model card shows, with decoder token ids (a teacher-forced forward, no generate loop).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tests.real_programs.catalogue import Built, program
from tests.real_programs.hf_flax import MAX_POSITIONS, SMALL_SEQ2SEQ, SMALL_TEXT, TEXT_LENGTHS, token_spec, tokens

_RNG = np.random.default_rng(5052)
_GPT2 = {"vocab_size": 100, "n_embd": 32, "n_layer": 2, "n_head": 4, "n_positions": 64, "add_cross_attention": True}


@program("hf_flax_blenderbot_small_lm", library="transformers",
         origin="transformers FlaxBlenderbotSmallForConditionalGeneration: encoder-decoder logits over the "
                "vocabulary (small config)")
def hf_flax_blenderbot_small_lm() -> Built:
    import transformers

    model = transformers.FlaxBlenderbotSmallForConditionalGeneration(
        transformers.BlenderbotSmallConfig(**SMALL_SEQ2SEQ), seed=0)
    return _text_to_text(model, source_length=12, padded_from=9)


@program("hf_flax_vision_encoder_decoder", library="transformers",
         origin="transformers FlaxVisionEncoderDecoderModel: a ViT encoder and a GPT-2 decoder with cross-attention "
                "(the image-captioning set-up), teacher-forced caption logits (small configs)")
def hf_flax_vision_encoder_decoder() -> Built:
    import transformers

    config = transformers.VisionEncoderDecoderConfig.from_encoder_decoder_configs(
        transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                               intermediate_size=64),
        transformers.GPT2Config(**_GPT2))
    model = transformers.FlaxVisionEncoderDecoderModel(config, seed=0)
    params = model.params

    def forward(pixel_values, decoder_input_ids):
        return model(pixel_values=pixel_values, decoder_input_ids=decoder_input_ids, params=params, train=False).logits

    return Built(forward, [("B", 3, 32, 32), token_spec("T")],
                 [_RNG.standard_normal((2, 3, 32, 32)).astype(np.float32), tokens(_RNG, 2, 7)],
                 sizes={"T": (3, 12)}, constraints=(f"T <= {MAX_POSITIONS}",))


@program("hf_flax_bert2gpt2", library="transformers",
         origin="transformers FlaxEncoderDecoderModel of a BERT encoder and a GPT-2 decoder with cross-attention "
                "(the bert2gpt2 set-up), teacher-forced logits (small configs)")
def hf_flax_bert2gpt2() -> Built:
    import transformers

    config = transformers.EncoderDecoderConfig.from_encoder_decoder_configs(
        transformers.BertConfig(**SMALL_TEXT), transformers.GPT2Config(**_GPT2))
    model = transformers.FlaxEncoderDecoderModel(config, seed=0)
    return _text_to_text(model, source_length=10, padded_from=7)


def _text_to_text(model: Any, source_length: int, padded_from: int) -> Built:
    """An encoder-decoder's teacher-forced logits over (input_ids, attention_mask, decoder_input_ids): two
    sources of ``source_length`` tokens, the second padded from ``padded_from``, and 6 decoder tokens."""
    params = model.params

    def forward(input_ids, attention_mask, decoder_input_ids):
        return model(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids,
                     params=params, train=False).logits

    mask = np.ones((2, source_length), np.int32)
    mask[1, padded_from:] = 0
    return Built(forward, [token_spec("S"), token_spec("S"), token_spec("T")],
                 [tokens(_RNG, 2, source_length), mask, tokens(_RNG, 2, 6)],
                 sizes={"S": TEXT_LENGTHS, "T": (3, 9)}, constraints=(f"S <= {MAX_POSITIONS}", f"T <= {MAX_POSITIONS}"),
                 resize=lambda sizes, fresh: [tokens(fresh, sizes["B"], sizes["S"]),
                                              np.ones((sizes["B"], sizes["S"]), np.int32),
                                              tokens(fresh, sizes["B"], sizes["T"])])
