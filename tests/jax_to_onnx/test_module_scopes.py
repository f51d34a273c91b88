"""NNX module paths found again for a model converted twice (scopes.nnx_eval_module_paths with a GraphDef).

The second conversion of an equal module structure looks the paths of the last walk up on the new copy
instead of walking it with ``nnx.iter_modules``; these tests check that it finds what the walk finds
(paths, eval mode, node names of the export) and that a different structure is walked again.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import onnx
from flax import nnx

import workbench as wb
from tests.support.harness import run_onnx
from workbench.jax_to_onnx import scopes


class _Block(nnx.Module):
    def __init__(self, rngs: nnx.Rngs) -> None:
        self.dense = nnx.Linear(8, 8, rngs=rngs)
        self.bn = nnx.BatchNorm(8, rngs=rngs)
        self.drop = nnx.Dropout(0.5, rngs=rngs)

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        return self.drop(nnx.relu(self.bn(self.dense(x))))


class _Net(nnx.Module):
    """Submodules in a list, in a dict and shared between two attributes."""

    def __init__(self, depth: int, rngs: nnx.Rngs) -> None:
        self.blocks = nnx.List([_Block(rngs) for _ in range(depth)])
        self.heads = nnx.Dict({"main": nnx.Linear(8, 4, rngs=rngs)})
        self.shared = self.blocks[0]

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        for block in self.blocks:
            x = block(x)
        return self.heads["main"](self.shared(x))


def _walked(module: nnx.Module) -> list[tuple[tuple[str, ...], str, bool, bool]]:
    """Every submodule's path, type and eval flags, as a fresh copy walked by Flax gives them."""
    return [
        (tuple(map(str, path)), type(sub).__name__, getattr(sub, "deterministic", None), getattr(sub, "use_running_average", None))
        for path, sub in nnx.iter_modules(module)
    ]


def test_second_walk_of_an_equal_structure_finds_what_flax_finds() -> None:
    model = _Net(3, nnx.Rngs(0))
    graphdef, state = nnx.split(model)
    scopes._last_walk = None
    walked = nnx.merge(graphdef, state)
    first = scopes.nnx_eval_module_paths(walked, graphdef)
    assert scopes._last_walk is not None and scopes._last_walk[0] is graphdef
    looked_up = nnx.merge(graphdef, state)
    second = scopes.nnx_eval_module_paths(looked_up, graphdef)
    assert [path for _, path in second.values()] == [path for _, path in first.values()]
    assert all(key == id(sub) for key, (sub, _) in second.items())
    assert _walked(looked_up) == _walked(walked)
    assert ("blocks", "1", "drop") in [path for _, path in second.values()]
    assert all(flag in (None, True) for _, _, *flags in _walked(looked_up) for flag in flags)


def test_paths_that_lead_nowhere_fall_back_to_the_walk() -> None:
    model = _Net(2, nnx.Rngs(0))
    graphdef, state = nnx.split(model)
    copy = nnx.merge(graphdef, state)
    assert scopes._resolve(copy, (("blocks", 7),)) is None
    assert scopes._resolve(copy, (("blocks", 0, "dense", "kernel"),)) is None  # a Param, not a Module
    scopes._last_walk = (graphdef, (("blocks", 7),))  # a stale record for this very structure
    paths = scopes.nnx_eval_module_paths(copy, graphdef)
    assert [path for _, path in paths.values()] == [tuple(map(str, p)) for p, _ in nnx.iter_modules(copy) if p]


def test_converting_again_and_converting_another_structure_export_as_a_fresh_walk_does() -> None:
    x = np.random.default_rng(0).standard_normal((2, 8)).astype(np.float32)
    for depth in (2, 2, 3, 2):  # equal structure again, then a different one, then back
        model = _Net(depth, nnx.Rngs(depth))
        scopes._last_walk = None
        fresh = wb.to_onnx(model, [(2, 8)])
        again = wb.to_onnx(model, [(2, 8)])  # from the recorded walk
        assert again.SerializeToString(deterministic=True) == fresh.SerializeToString(deterministic=True)
        onnx.checker.check_model(again, full_check=True)
        names = [node.name for node in again.graph.node]
        assert any(name.startswith(f"blocks.{depth - 1}.dense/") for name in names), names
        model.eval()
        (got,) = run_onnx(again, [x])
        np.testing.assert_allclose(got, np.asarray(model(x)), rtol=1e-5, atol=1e-5)
