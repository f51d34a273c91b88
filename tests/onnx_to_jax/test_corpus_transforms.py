"""jax.grad and jax.vmap over code generated from real exported models (issue 21 step 6).

The references are independent of the generated code: gradients come from PyTorch's autograd on the
model that was exported (w.r.t. the input image and w.r.t. weights the exporter kept under their
PyTorch names), batched outputs from onnxruntime run example by example. Models from
tests/onnx_to_jax/test_corpus_transformers.py (ViT, GPT-2: small configs, random weights) and one
scikit-learn pipeline. Both transformations run under ``jax.jit`` (one compilation each).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e .[torch])")
pytest.importorskip("transformers", reason="the corpus extra is not installed (pip install -e .[corpus])")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import workbench as wb  # noqa: E402
from tests.onnx_to_jax import test_corpus_transformers as corpus  # noqa: E402
from tests.support.corpus import tolerance  # noqa: E402
from tests.support.harness import run_onnx  # noqa: E402

pytestmark = [pytest.mark.corpus, pytest.mark.slow]


def test_grad_of_generated_vit_matches_torch_autograd():
    model, feeds = corpus._export("vit", "legacy")
    torch.manual_seed(0)
    module, _ = corpus.MODELS["vit"]()
    reference = corpus._FirstOutput(module.eval()).eval()
    forward, params = wb.to_jax(model)
    image = feeds[0]
    probe = np.random.default_rng(0).standard_normal(run_onnx(model, feeds)[0].shape).astype(np.float32)
    # randomly initialized weights (the TorchScript exporter merges equal initializers, such as all the
    # LayerNorm scales of ones, into one shared tensor whose gradient sums over its uses)
    weights = ["model.embeddings.patch_embeddings.projection.weight", "model.embeddings.position_embeddings"]
    assert set(weights) <= set(params), "the exporter renamed the weights this test follows"

    def loss(chosen, x):
        return jnp.sum(forward({**params, **chosen}, x) * probe)

    grads = jax.jit(jax.grad(loss, argnums=(0, 1)))({name: params[name] for name in weights}, image)

    x = torch.tensor(image, requires_grad=True)
    (reference(x) * torch.tensor(probe)).sum().backward()
    named = dict(reference.named_parameters())
    pairs = [(grads[1], x.grad)] + [(grads[0][name], named[name].grad) for name in weights]
    for have, want in pairs:
        want = want.numpy()
        assert np.abs(want).max() > 0
        np.testing.assert_allclose(np.asarray(have), want, rtol=0, atol=tolerance(model, want))


def test_vmap_of_generated_gpt2_matches_onnxruntime_per_example():
    model, feeds = corpus._export("gpt2", "dynamo")
    forward, params = wb.to_jax(model)
    rng = np.random.default_rng(1)
    batch = np.stack([feeds[0]] + [rng.integers(0, 100, feeds[0].shape).astype(feeds[0].dtype) for _ in range(2)])
    got = np.asarray(jax.jit(jax.vmap(lambda ids: forward(params, ids)))(batch))
    for index, ids in enumerate(batch):
        want = run_onnx(model, [ids])[0]
        np.testing.assert_allclose(got[index], want, rtol=0, atol=tolerance(model, want))


def test_vmap_and_grad_of_a_generated_sklearn_pipeline():
    pytest.importorskip("sklearn", reason="the corpus extra is not installed (pip install -e .[corpus])")
    from skl2onnx import to_onnx
    from sklearn import datasets, linear_model, pipeline, preprocessing

    x, y = datasets.make_classification(n_samples=120, n_features=6, n_informative=4, n_classes=3, random_state=0)
    x = x.astype(np.float32)
    fitted = pipeline.make_pipeline(preprocessing.StandardScaler(), linear_model.LogisticRegression(max_iter=500))
    fitted.fit(x, y)
    model = to_onnx(fitted, x[:1], options={id(fitted): {"zipmap": False}}, target_opset={"": 17, "ai.onnx.ml": 3})
    forward, params = wb.to_jax(model)
    rows = x[:8].reshape(4, 2, 6)  # vmap over 4 batches of 2 rows
    labels, probabilities = jax.vmap(lambda batch: forward(params, batch))(rows)
    for index, batch in enumerate(rows):
        want_labels, want_probabilities = run_onnx(model, [batch])
        np.testing.assert_array_equal(np.asarray(labels[index]), want_labels)
        np.testing.assert_allclose(np.asarray(probabilities[index]), want_probabilities, rtol=1e-5, atol=1e-6)
    # d P(class 0) / d x of a softmax over (x - mean) / scale @ coef.T + intercept, by hand from the fitted model
    scaler, logistic = fitted.steps[0][1], fitted.steps[1][1]
    grad = np.asarray(jax.grad(lambda row: forward(params, row[None])[1][0, 0])(x[0]))
    p = fitted.predict_proba(x[:1].astype(np.float64))[0]
    dlogits = logistic.coef_ / scaler.scale_  # d logit_k / d x
    want = p[0] * (dlogits[0] - p @ dlogits)
    np.testing.assert_allclose(grad, want, rtol=1e-3, atol=1e-5)
