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


# the sequence lengths the text models are also checked at: shorter and longer than the built 12, inside
# the position tables (max_position_embeddings=64). They convert with the bound T <= 64, the table's: the
# decoders need it to trace (they cut their causal mask from a table of that many positions: min(64, T) rows)
TEXT_LENGTHS = (5, 20)
MAX_POSITIONS = SMALL_TEXT["max_position_embeddings"]


def token_spec(length: int | str) -> jax.ShapeDtypeStruct:
    """Token ids of a symbolic batch ``B`` and ``length`` positions (a number or a symbol such as ``T``)."""
    return jax.ShapeDtypeStruct(("B", length), jnp.int32)


def tokens(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.integers(0, VOCABULARY, shape).astype(np.int32)


def padded_batch(rng: np.random.Generator, batch: int, length: int) -> list[np.ndarray]:
    """Token ids and an attention mask of ``batch`` x ``length``: the last row padded after two thirds of its
    tokens (every row keeps at least one real token)."""
    mask = np.ones((batch, length), np.int32)
    if batch > 1:
        mask[-1, max(1, 2 * length // 3):] = 0
    return [tokens(rng, batch, length), mask]


def text_model(model: Any, rng: np.random.Generator, inference: dict[str, bool] | None = None) -> Built:
    """``model(input_ids, attention_mask)[0]`` on a batch of two, the second padded after 8 tokens; symbolic
    batch ``B`` and length ``T``. ``inference``: the flags that put the model in inference mode (``train=False``
    unless given)."""
    params = model.params
    flags = {"train": False} if inference is None else inference

    def forward(input_ids, attention_mask):
        return model(input_ids=input_ids, attention_mask=attention_mask, params=params, **flags)[0]

    return Built(forward, [token_spec("T"), token_spec("T")], padded_batch(rng, 2, 12), sizes={"T": TEXT_LENGTHS},
                 resize=lambda sizes, fresh: padded_batch(fresh, sizes["B"], sizes["T"]),
                 constraints=(f"T <= {MAX_POSITIONS}",))


def seq2seq_model(model: Any, rng: np.random.Generator) -> Built:
    """``model(input_ids, decoder_input_ids)[0]``: 12 source (``S``) and 6 target (``T``) tokens, a batch of two."""
    params = model.params

    def forward(input_ids, decoder_input_ids):
        return model(input_ids=input_ids, decoder_input_ids=decoder_input_ids, params=params, train=False)[0]

    return Built(forward, [token_spec("S"), token_spec("T")], [tokens(rng, 2, 12), tokens(rng, 2, 6)],
                 sizes={"S": TEXT_LENGTHS, "T": (3, 9)}, constraints=(f"S <= {MAX_POSITIONS}", f"T <= {MAX_POSITIONS}"))


def vision_model(model: Any, rng: np.random.Generator, size: int = 32) -> Built:
    """``model(pixel_values)[0]`` on two RGB images of ``size`` x ``size``."""
    params = model.params

    def forward(pixel_values):
        return model(pixel_values=pixel_values, params=params, train=False)[0]

    images = rng.standard_normal((2, 3, size, size)).astype(np.float32)
    return Built(forward, [("B", 3, size, size)], [images])
