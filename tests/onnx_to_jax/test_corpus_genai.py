"""Corpus: a decoder LLM as onnxruntime-genai's model builder writes it, to JAX (issue 21).

The builder (``python -m onnxruntime_genai.models.builder``) is how people get LLMs into onnxruntime: its
models hold one com.microsoft GroupQueryAttention per layer (packed QKV from one MatMul, rotary from
cos/sin caches, seqlens_k and total_sequence_length computed from the attention mask, past/present KV
cache inputs and outputs) and SkipSimplifiedLayerNormalization. A tiny Llama with seeded random weights is
saved in the Hugging Face layout (with a word-level tokenizer the builder copies), built in fp32 for CPU,
and run for the prompt and two decoding steps that feed the present cache back as the past; the generated
JAX code, eagerly and jitted, must give onnxruntime's logits and caches.

Opt-in: onnxruntime-genai is not in CI's lock, and its builder needs a newer transformers than the lock's
(0.18.0 imports Qwen3_5ForConditionalGeneration, transformers 5.x). Run it with::

    WORKBENCH_GENAI_CORPUS=1 python -m pytest -m corpus tests/onnx_to_jax/test_corpus_genai.py

in an environment with torch, transformers >= 5 and onnxruntime-genai. Measured (2026-12-06, onnxruntime-genai
0.18.0, transformers 5.25.0, onnxruntime 1.31.1): builder ~12 s; logits and caches within 2.4e-7 of
onnxruntime at every step, eager and jitted.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

OPT_IN = "WORKBENCH_GENAI_CORPUS"
# every reason these tests do not run, in one place
SKIP_REASONS = {
    "opt-in": f"opt-in ({OPT_IN}=1): onnxruntime-genai and transformers >= 5 are not in CI's lock",
    "no-builder": "onnxruntime-genai's model builder does not import (needs onnxruntime-genai, transformers >= 5)",
}

if os.environ.get(OPT_IN) != "1":
    pytest.skip(SKIP_REASONS["opt-in"], allow_module_level=True)
pytest.importorskip("onnxruntime_genai.models.builder", reason=SKIP_REASONS["no-builder"], exc_type=ImportError)

import jax  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

import workbench as wb  # noqa: E402
from tests.support.corpus import assert_outputs_match  # noqa: E402

pytestmark = [pytest.mark.corpus, pytest.mark.slow]


def _tiny_llama(folder: Path) -> None:
    """A 2-layer Llama (4 query heads sharing 2 KV heads, width 64) and a word-level tokenizer, saved as
    Hugging Face checkpoints are."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                      num_key_value_heads=2, intermediate_size=128, max_position_embeddings=64)
    transformers.LlamaForCausalLM(config).eval().save_pretrained(folder)
    words = Tokenizer(models.WordLevel({f"t{i}": i for i in range(100)}, unk_token="t0"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=words, unk_token="t0", bos_token="t1",
                                                     eos_token="t2")
    tokenizer.save_pretrained(folder)


def test_genai_builder_llama_prompt_and_decoding(tmp_path):
    _tiny_llama(tmp_path / "hf")
    subprocess.run([sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(tmp_path / "hf"),
                    "-o", str(tmp_path / "onnx"), "-p", "fp32", "-e", "cpu", "-c", str(tmp_path / "cache")],
                   check=True, capture_output=True)
    path = str(tmp_path / "onnx" / "model.onnx")
    model = onnx.load(path)
    attention = [node for node in model.graph.node if node.op_type == "GroupQueryAttention"]
    assert len(attention) == 2 and all(node.input[1] == "" for node in attention), "packed QKV GQA per layer"

    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    outputs = [o.name for o in session.get_outputs()]
    forward, params = wb.to_jax(model)
    jitted = jax.jit(forward)
    rng = np.random.default_rng(0)
    batch, heads, head = 2, 2, 16
    feeds = {"input_ids": rng.integers(3, 100, (batch, 5)).astype(np.int64),
             "attention_mask": np.ones((batch, 5), np.int64),
             **{n: np.zeros((batch, heads, 0, head), np.float32) for n in names if n.startswith("past")}}
    for _ in range(3):  # the prompt, then two decoding steps with the present cache as the past
        expected = session.run(None, feeds)
        for fn in (forward, jitted):
            got = fn(params, *[feeds[n] for n in names])
            assert_outputs_match(model, expected, got)
        length = feeds["attention_mask"].shape[1] + 1
        feeds = {"input_ids": rng.integers(3, 100, (batch, 1)).astype(np.int64),
                 "attention_mask": np.ones((batch, length), np.int64),
                 **{n.replace("present", "past_key_values"): v for n, v in zip(outputs, expected)
                    if n.startswith("present")}}
