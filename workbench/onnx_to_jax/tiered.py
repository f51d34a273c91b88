"""The folded jit of a model with many weights, whose first calls do not wait for the folded compile.

``wb.jit_forward(forward, params)`` folds the weights into the program as constants: the fastest
calls (XLA CPU's YNNPACK packs constant weights into its blocked layout once, argument weights in
every call), but XLA turns every folded weight into a literal element by element, which grows with
the weights: ViT-B/16 (86 M weights) compiles for 5-7 CPU s folded against 1-2 with its weights as
arguments, which then run 1.6x slower (docs/onnx_to_jax_corpus.md, "First ``jax.jit`` of every
corpus model"). :class:`TieredJitted` has both: its first call runs the weights-as-arguments program,
then compiles the folded one on a background thread, and calls run the folded program once it is
compiled. Models with fewer weights than :data:`TIERED_MIN_WEIGHTS` get the folded jit alone.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Mapping

from workbench.onnx_to_jax.call_args import refuse_non_arrays

# float weight elements from which the folded program's literals cost more compile time than a
# first call should wait for (~50 ns of XLA CPU time each: ViT-B/16's 86 M about 4.5 s); the
# corpus's other models (at most 33 M) compile folded within ~2 s of the arguments form
TIERED_MIN_WEIGHTS = 50_000_000


def float_elements(params: Mapping[str, Any]) -> int:
    """Elements of the floating-point arrays in ``params`` (what folding turns into literals)."""
    import jax.numpy as jnp

    # jnp.result_type and jnp.size read a jax.Array's or NumPy array's metadata without copying it
    return sum(int(jnp.size(value)) for value in params.values() if jnp.issubdtype(jnp.result_type(value), jnp.inexact))


class TieredJitted:
    """``fn(*inputs)`` of a folded model: the weights-as-arguments program until the folded one is compiled.

    ``folded`` is the jitted function with the weights folded in, ``bound`` the same model jitted with
    the weights as its first argument and ``weights`` those weights (``bound(weights, *inputs)`` computes
    what ``folded(*inputs)`` does). The first call with concrete inputs runs ``bound`` and then starts
    compiling ``folded`` for those inputs on a background thread (it also runs it once); from the call
    after that compile on, ``folded`` runs. Inputs of other shapes than the first ones compile ``folded``
    for them when called, as ``jax.jit`` does. Under a transformation (an outer ``jax.jit``, ``jax.grad``,
    ``jax.vmap``) ``traced`` runs: the folded function jitted without the compiler options, because JAX
    refuses them on a jit nested in a transformation (as ``OptionsJitted`` does in jit_options.py).
    ``lower`` is ``folded``'s. ``wait()`` blocks until the background
    compile is done and raises what it raised (the calls then keep running ``bound``).
    """

    def __init__(self, folded: Any, bound: Callable[..., Any], weights: Mapping[str, Any],
                 traced: Callable[..., Any]):
        self._folded = folded
        self._traced = traced
        self._bound = bound
        self._weights = weights
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._ready = False
        self._error: BaseException | None = None

    @property
    def folded_ready(self) -> bool:
        """Whether calls run the folded program now."""
        return self._ready

    def __call__(self, *inputs: Any) -> Any:
        if any_traced(inputs):
            return self._traced(*inputs)
        try:
            if self._ready:
                return self._folded(*inputs)
            result = self._bound(self._weights, *inputs)
        except TypeError:
            refuse_non_arrays(inputs, {})  # a string among the inputs: named, instead of JAX's words
            raise
        self._start(inputs)
        return result

    def lower(self, *inputs: Any) -> Any:
        """The folded program's ``jax.jit(...).lower``."""
        return self._folded.lower(*inputs)

    def wait(self) -> None:
        """Block until the background compile of the folded program is done; raise its error if it failed."""
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join()
        if self._error is not None:
            raise self._error

    def _start(self, inputs: tuple[Any, ...]) -> None:
        with self._lock:
            if self._thread is not None:
                return
            # not a daemon: the interpreter waits for XLA at exit rather than tearing it down mid-compile
            self._thread = threading.Thread(
                target=self._compile_folded, args=(inputs,), name="workbench-folded-compile"
            )
            self._thread.start()

    def _compile_folded(self, inputs: tuple[Any, ...]) -> None:
        import jax

        try:
            jax.block_until_ready(self._folded(*inputs))  # compiles into jax.jit's cache, as a call would
        except BaseException as error:  # noqa: BLE001 - kept for wait(); the calls keep running ``bound``
            self._error = error
            return
        self._ready = True


def any_traced(tree: Any) -> bool:
    """Whether any leaf of ``tree`` is a JAX tracer: the call is inside ``jax.jit``, ``jax.grad``, ``jax.vmap``..."""
    import jax

    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(tree))
