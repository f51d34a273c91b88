"""Conversions in parallel threads give the same bytes as sequential ones.

The rewrite rules of the JAX -> ONNX passes hold the state of a match attempt (onnxscript's matcher
keeps it in the rule object; class-based rules keep what check() found for rewrite()), so sharing
one set between threads raised ``ValueError: The number of values and replacements must match``
now and then and missed fusions in 1-2% of threaded results. Each thread now has its own rules.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

import workbench as wb
from tests.support.codegen_models import cnn, if_and_loop, mlp
from workbench import zoo

ROUNDS = 6  # conversions of each model
GPT_ROUNDS = 32  # the GPT has the most fusions: a shared rule set broke about one conversion in 20 of it


@pytest.fixture(scope="module")
def models():
    return {"gpt": zoo.nnx_gpt(), "mlp": zoo.nnx_mlp(), "cnn": zoo.nnx_cnn()}


def test_threaded_jax_to_onnx_is_byte_identical_to_sequential(models):
    expected = {name: wb.to_onnx(m.fn, m.inputs).SerializeToString() for name, m in models.items()}

    def convert(name: str) -> tuple[str, bytes]:
        model = models[name]
        return name, wb.to_onnx(model.fn, model.inputs).SerializeToString()

    jobs = [name for _ in range(ROUNDS) for name in models] + ["gpt"] * (GPT_ROUNDS - ROUNDS)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(convert, jobs))
    different = [name for name, data in results if data != expected[name]]
    assert different == [], f"{len(different)} of {len(results)} threaded conversions differ: {different}"


def test_threaded_onnx_to_jax_is_identical_to_sequential():
    sources = {"mlp": mlp(), "cnn": cnn(), "if_and_loop": if_and_loop()}
    expected = {name: wb.to_jax_source(model) for name, model in sources.items()}

    def generate(name: str) -> tuple[str, str]:
        return name, wb.to_jax_source(sources[name])

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(generate, [name for _ in range(ROUNDS) for name in sources]))
    assert [name for name, source in results if source != expected[name]] == []
