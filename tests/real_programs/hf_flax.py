"""How the real programs call Hugging Face transformers' Flax models, shared by other_programs.py and
transformers_families.py: a text model on token ids and an attention mask, an encoder-decoder on two token
sequences, a vision model on images. The caller builds the model from its own classes (small config,
random weights) and passes the random generator its inputs are drawn from.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tests.real_programs.catalogue import Built

VOCABULARY = 100  # every text config's vocab_size: token ids are drawn below it
# the small configs of the BERT-like text models and of the BART-like encoder-decoders
SMALL_TEXT = {"vocab_size": VOCABULARY, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
              "intermediate_size": 64, "max_position_embeddings": 64}
SMALL_SEQ2SEQ = {"vocab_size": VOCABULARY, "d_model": 32, "encoder_layers": 2, "decoder_layers": 2,
                 "encoder_attention_heads": 4, "decoder_attention_heads": 4, "encoder_ffn_dim": 64, "decoder_ffn_dim": 64,
                 "max_position_embeddings": 64}


def token_spec(length: int) -> jax.ShapeDtypeStruct:
    """Token ids of a symbolic batch ``B`` and ``length`` positions."""
    return jax.ShapeDtypeStruct(("B", length), jnp.int32)


def tokens(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.integers(0, VOCABULARY, shape).astype(np.int32)


def text_model(model: Any, rng: np.random.Generator, inference: dict[str, bool] | None = None) -> Built:
    """``model(input_ids, attention_mask)[0]`` on a batch of two, the second padded after 8 tokens.
    ``inference``: the flags that put the model in inference mode (``train=False`` unless given)."""
    params = model.params
    flags = {"train": False} if inference is None else inference

    def forward(input_ids, attention_mask):
        return model(input_ids=input_ids, attention_mask=attention_mask, params=params, **flags)[0]

    mask = np.ones((2, 12), np.int32)
    mask[1, 8:] = 0
    return Built(forward, [token_spec(12), token_spec(12)], [tokens(rng, 2, 12), mask])


def seq2seq_model(model: Any, rng: np.random.Generator) -> Built:
    """``model(input_ids, decoder_input_ids)[0]``: 12 source and 6 target tokens, a batch of two."""
    params = model.params

    def forward(input_ids, decoder_input_ids):
        return model(input_ids=input_ids, decoder_input_ids=decoder_input_ids, params=params, train=False)[0]

    return Built(forward, [token_spec(12), token_spec(6)], [tokens(rng, 2, 12), tokens(rng, 2, 6)])


def vision_model(model: Any, rng: np.random.Generator, size: int = 32) -> Built:
    """``model(pixel_values)[0]`` on two RGB images of ``size`` x ``size``."""
    params = model.params

    def forward(pixel_values):
        return model(pixel_values=pixel_values, params=params, train=False)[0]

    images = rng.standard_normal((2, 3, size, size)).astype(np.float32)
    return Built(forward, [("B", 3, size, size)], [images])
