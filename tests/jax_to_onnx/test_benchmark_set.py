"""The benchmark set's models (written by others: tests/support/benchmark_set.py) convert within their node budgets.

Each model is built small (``size="test"``: 2 layers, short sequences, small images) and exported with
static shapes and with symbolic batch (and, where the model allows, sequence) dimensions; the export must
match JAX in onnxruntime and stay within its (nodes, Transposes) budget. Budgets are the counts of the
current export, so a rule that stops firing fails here; the bench-size counts beside jax2onnx's and
torch.onnx's are in the README (``tests/benchmarks/bench_suite.py``). The zoo's own GPT and ResNet have
their budgets in test_export_graphs.py.

Keras picks its backend once, when first imported, so its model is checked in a fresh interpreter.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import jax
import numpy as np
import pytest

import workbench as wb
from tests.support.benchmark_set import SET
from tests.support.harness import run_onnx
from workbench.zoo import ZooModel

pytestmark = pytest.mark.slow
REPOSITORY = Path(__file__).resolve().parents[2]

# (model, symbolic dims) -> (nodes, Transposes) at most, at size="test"
BUDGETS: dict[tuple[str, bool], tuple[int, int]] = {
    ("hf_gpt2", False): (59, 8),
    # symbolic batch: the causal mask and the attention mask of ones are combined at run time (Expand of B)
    ("hf_gpt2", True): (77, 8),
    ("hf_bert", False): (64, 8),  # the head mask of ones: a Mul by ones, dropped (was a MatMul of depth 1)
    ("hf_bert", True): (89, 8),  # positions and token types broadcast to (B, T) at run time
    ("hf_vit", False): (52, 9),
    ("hf_vit", True): (55, 9),
    ("haiku_resnet18", False): (49, 1),
    ("haiku_resnet18", True): (52, 1),
    ("eqx_transformer", False): (72, 8),  # its LayerNorms fused (passes/norms.py; 142 nodes before)
    ("eqx_transformer", True): (76, 8),
    ("keras_mobilenet", False): (105, 1),
    ("keras_mobilenet", True): (105, 1),
    # the projections' zero biases (freshly initialised) add nothing: no Add (blocks.py; 67 and 83 before)
    ("nnx_gpt_mha", False): (61, 8),
    # symbolic batch and sequence: the tril mask is built from a Range (8 nodes), the attention layout
    # is the rules' with symbolic dims, positions need no negative-index wrap (attention_blocks.py,
    # passes/broadcasts.py; 109 nodes before)
    ("nnx_gpt_mha", True): (77, 8),
}
# models that need environment variables before their library is imported
FRESH_INTERPRETER = {"keras_mobilenet": {"KERAS_BACKEND": "jax"}}


def check(name: str, symbolic: bool) -> None:
    """Export one model of the set, compare it with JAX in onnxruntime and check its budget."""
    built = SET[name]("test", symbolic=symbolic)
    model = wb.to_onnx(built.fn, built.specs)
    ops = Counter(node.op_type for node in model.graph.node)
    nodes, transposes = BUDGETS[name, symbolic]
    assert len(model.graph.node) <= nodes and ops["Transpose"] <= transposes, (
        f"{name} (symbolic={symbolic}): {len(model.graph.node)} nodes, {ops['Transpose']} Transposes; "
        f"budget {nodes}, {transposes}: {dict(ops)}"
    )
    expected = jax.tree_util.tree_leaves(ZooModel(built.fn, []).eval_fn()(*built.inputs))
    got = run_onnx(model, built.inputs)
    assert len(got) == len(expected)
    for ours, theirs in zip(got, expected, strict=True):
        theirs = np.asarray(theirs)
        # absolute tolerance scaled to the output's size: float32 rounding through a deep network is relative
        # to its activations (haiku_resnet18's logits reach ~30: 3e-4 apart on one small logit)
        scale = max(1.0, float(np.max(np.abs(theirs)))) if theirs.size else 1.0
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4 * scale, err_msg=name)
        if theirs.dtype.kind == "f" and theirs.size > 1:
            assert np.ptp(theirs) > 0, f"{name}: JAX's output is one value everywhere; the comparison says nothing"


def test_budgets_cover_the_set():
    others = {name for name in SET if not name.startswith("zoo_")}
    assert {name for name, _ in BUDGETS} == others


@pytest.mark.parametrize("symbolic", [False, True], ids=["static", "symbolic"])
@pytest.mark.parametrize("name", sorted({name for name, _ in BUDGETS} - set(FRESH_INTERPRETER)))
def test_model_converts_within_its_budget(name, symbolic):
    check(name, symbolic)


@pytest.mark.parametrize("name", sorted(FRESH_INTERPRETER))
def test_model_converts_within_its_budget_in_a_fresh_interpreter(name):
    """Static and symbolic in one interpreter: importing Keras and building its model is most of the time."""
    env = {**os.environ, **FRESH_INTERPRETER[name], "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPOSITORY), os.environ.get("PYTHONPATH")]))}
    code = f"from tests.jax_to_onnx.test_benchmark_set import check\nfor s in (False, True): check({name!r}, s)"
    run = subprocess.run([sys.executable, "-c", code], cwd=REPOSITORY, env=env, capture_output=True, text=True,
                         timeout=900, check=False)
    assert run.returncode == 0, f"{name} failed:\n{run.stderr[-4000:]}"
