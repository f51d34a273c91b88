"""XLA compiler options for the generated code, chosen from the ONNX graph, and the jit that applies them.

XLA 0.10's CPU backend hands convolutions, dots, elementwise ops and reductions to YNNPACK and fuses
connected ones into YNNPACK subgraphs (ResNet-18's whole convolution stack becomes one ``ynn_fusion``
of 19 convolutions). ``--xla_cpu_experimental_ynn_fusion_type`` chooses what YNNPACK fuses;
restricting it to dots leaves convolutions and elementwise ops to XLA's own kernels. Measured on the
torchvision/timm corpus at batch 1, one thread, that is faster for the models with large weights
(ResNet-18 1.8x, ViT-B/16 1.4x, ResNet-50 and ConvNeXt-T ~1.1x; 11.7-86 M weights) and slower
or no faster for the small ones (ViT-Ti, EfficientNet-B0, ConvNeXt-atto: 1.1-1.25x slower,
MobileNet-v2 within noise; 3.5-5.7 M weights). So the choice is made by the number of weights;
why YNNPACK's fusion turns from a gain to a loss with the weights' size is not established (figures
and what else was tried: docs/onnx_to_jax_corpus.md, "XLA compiler options per model").

Models with depthwise convolutions (MobileNets, EfficientNet, MNASNet, ShuffleNet, ConvMixer, LR-ASPP
and DeepLabv3 on MobileNet-v3, MobileViT, ConvNeXt-atto) are the exception to both: measured with JAX
on one thread, they run as fast or faster with YNNPACK fusing nothing (XLA's own kernels, Eigen's
contraction for the products), whatever their size: ConvMixer (21 M weights) 1.2x, ShuffleNet 1.3x,
DeepLabv3 (11 M) 1.25x and MobileViT 1.15x faster than under the weight rule, the others within 5%.
The one measured loser is ConvNeXt-T (28 M weights, its 1x1 layers MatMuls of up to 768 x 3072
weights on 4-256 rows), 1.28x slower than with dots only: a model of ``MIN_WEIGHTS`` or more whose
products are MatMuls of constant weights (``linear_layers``) keeps the weight rule
(docs/onnx_to_jax_corpus.md, "YNNPACK off for models with depthwise convolutions").

Large models with a 2-D convolution and no MatMul layers (ResNet-18/50, FCN-ResNet50, Inception v3)
get YNNPACK running each convolution alone besides its dots (``YNN_DOTS_AND_CONVOLUTIONS``: XLA reads
a list of fusion types): the convolutions the generated code leaves to ``lax.conv`` there are mostly
stems, and XLA's own kernel ran ResNet's 7x7 stride-2 stem (3 -> 64, 96x96, with its ReLU) in 731 us
against YNNPACK's 332 and onnxruntime's 327 (one thread, 2026-12-04, load 7). The code forms stay
those of dots only (``NodeContext.dots_only``), and the 27-value stem dot too: Inception v3 ran 3%
slower with YNNPACK convolving its 3x3 stem (docs/onnx_to_jax_corpus.md, "Stems in YNNPACK beside
its dots").

The other models with a 2-D convolution and no MatMul layers (fewer weights, no depthwise
convolution: RegNetY-400MF, SqueezeNet, DenseNet-121) get YNNPACK running each convolution alone and
fusing nothing else (``LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION``): their dots and elementwise ops then
run as XLA's own kernels (Eigen's contraction for the products). Measured against XLA's defaults in one
process, alternating (2026-12-04, load 6-8): all three 7% faster, compile as long
(docs/onnx_to_jax_corpus.md, "RegNet's grouped convolutions merged"). Since vit38 (2026-12-05) the small
models with a convolution and MatMul layers (ViT-Ti: a patch convolution, then a transformer) get it too:
ViT-Ti ran 12-16% faster (Eigen's contraction beats YNNPACK's dot on its 17-row products of 192-768
columns), at 0.9-1.0x onnxruntime, for an XLA compile of ~2.9 instead of ~0.95 CPU s, its first jit still
under the 5 s target (docs/onnx_to_jax_corpus.md, "ViT-Ti's products in Eigen"). Models without a
convolution keep XLA's defaults.

Every model is also compiled at LLVM optimization level 2 (``xla_backend_optimization_level``; XLA's
default is 3): measured on eleven corpus models in one process, alternating (2026-12-04, load 4-9), XLA's
compile took 3-10% less CPU (Swin-T 3.30 -> 3.02 s, DenseNet-121 2.67 -> 2.40, Inception v3 2.71 ->
2.51) and no model ran slower (latency within +-2%, ConvNeXt-T and ViT-B/16 7-13% faster); outputs
moved by float rounding at most (docs/onnx_to_jax_corpus.md, "Swin-T's shifted-window masks, LLVM at
level 2"). A level in the process's ``XLA_FLAGS`` wins over it (``helpers._jit_with_options``): the test
suite compiles at level 0 for its speed, and a user who set one chose it.

Models that compute in bfloat16 are compiled without excess precision (``xla_allow_excess_precision``
off): XLA otherwise keeps a fused chain of bfloat16 operations in float32 and rounds at its end, where
ONNX's types round every operation's result (as onnx's reference does). Measured on the node suite's
Attention cases written out as ONNX ops (``_expanded``): under jax.jit 23 of 192 outputs were one
bfloat16 ulp off the reference with it on, none with it off; eagerly, none either way.

JAX takes compiler options per compiled function (``jax.jit(f, compiler_options=...)``), so the
choice is made per model without touching the process-wide ``XLA_FLAGS``. The generated module
records it as ``XLA_COMPILER_OPTIONS`` (written by the generator); :func:`jit_forward` applies it to a
whole model, and the jitted parts of a model whose shapes depend on values (a detector's, run between
host steps: segments.py) get it too. Both build their jitted function with the same runtime helper,
``helpers._jit_with_options``.
"""

from __future__ import annotations

import functools
import math
import types
from typing import Any, Callable, Mapping

import onnx

from workbench.errors import SpecError
from workbench.onnx_io.tensors import constant_tensors
from workbench.onnx_to_jax import tiered
from workbench.onnx_to_jax.call_args import refuse_non_arrays
from workbench.onnx_to_jax.tiered import any_traced

YNN_FUSION_TYPE = "xla_cpu_experimental_ynn_fusion_type"
# YNNPACK fuses dots (with what XLA can put in the same fusion) and nothing else
YNN_DOTS_ONLY = "LIBRARY_FUSION_TYPE_DOT"
# models with at least this many floating-point weights (elements of float initializers) run
# faster with YNNPACK restricted to dots: 11.7 M (ResNet-18) and more measured faster, 5.7 M (ViT-Ti)
# and fewer slower or the same
MIN_WEIGHTS = 10_000_000
# YNNPACK fuses nothing (an empty list of fusion types; an empty XLA_FLAGS value would mean the default)
YNN_NONE = ""
# YNNPACK runs each convolution on its own and fuses nothing else (no dots, no elementwise ops)
YNN_CONVOLUTIONS_ONLY = "LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION"
# both: YNNPACK fuses dots and runs each convolution on its own (XLA reads a list of fusion types)
YNN_DOTS_AND_CONVOLUTIONS = f"{YNN_DOTS_ONLY},{YNN_CONVOLUTIONS_ONLY}"
# LLVM's optimization level for XLA's kernels: 2 compiles 3-10% faster than XLA's default 3, runs as fast
LLVM_LEVEL = "xla_backend_optimization_level"
LLVM_LEVEL_CHOSEN = 2
_FLOAT_TYPES = frozenset(
    {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16, onnx.TensorProto.DOUBLE}
)
# off for models that compute in bfloat16: every bfloat16 operation's result rounded, as ONNX's types say
EXCESS_PRECISION = "xla_allow_excess_precision"
OPTIONS_NAME = "XLA_COMPILER_OPTIONS"  # the generated module's constant
X64_NAME = "RUNS_WITH_X64"  # True in the modules of models with 64-bit inputs, outputs or run-time values


def float_weights(graph: onnx.GraphProto) -> int:
    """Elements of the floating-point initializers and Constant tensors of ``graph`` (the model's weights)."""
    tensors = constant_tensors(graph).values()
    return sum(math.prod(tensor.dims) for tensor in tensors if tensor.data_type in _FLOAT_TYPES)


def _weight_shapes(graph: onnx.GraphProto) -> dict[str, tuple[int, ...]]:
    """The shapes of ``graph``'s initializers and Constant tensors, by name."""
    return {name: tuple(tensor.dims) for name, tensor in constant_tensors(graph).items()}


def has_depthwise(graph: onnx.GraphProto) -> bool:
    """Whether ``graph`` has a depthwise convolution: a Conv of ``group`` > 1 whose weight (a constant of
    the graph) has one input channel per group. Subgraphs (If/Loop bodies) are not looked into."""
    shapes = _weight_shapes(graph)
    for node in graph.node:
        if node.op_type != "Conv" or node.domain not in ("", "ai.onnx") or len(node.input) < 2:
            continue
        group = next((attr.i for attr in node.attribute if attr.name == "group"), 1)
        shape = shapes.get(node.input[1])
        if group > 1 and shape is not None and len(shape) >= 3 and shape[1] == 1:
            return True
    return False


def has_convolution(graph: onnx.GraphProto) -> bool:
    """Whether ``graph`` has a 2-D convolution: a Conv whose weight (a constant of the graph) is 4-D.
    Subgraphs (If/Loop bodies) are not looked into."""
    shapes = _weight_shapes(graph)
    return any(
        node.op_type == "Conv" and node.domain in ("", "ai.onnx") and len(node.input) >= 2
        and len(shapes.get(node.input[1], ())) == 4
        for node in graph.node
    )


def linear_layers(graph: onnx.GraphProto) -> bool:
    """Whether ``graph`` has a MatMul by a constant weight (a Linear layer applied to more than a batch
    of vectors: a transformer's or ConvNeXt's products; classifiers export as Gemm)."""
    shapes = _weight_shapes(graph)
    return any(
        node.op_type == "MatMul" and node.domain in ("", "ai.onnx") and any(name in shapes for name in node.input)
        for node in graph.node
    )


def computes_in_bfloat16(graph: onnx.GraphProto) -> bool:
    """Whether ``graph`` has a bfloat16 input, output, typed value or constant, or casts to bfloat16.
    Subgraphs (If/Loop bodies) are not looked into."""
    bfloat16 = onnx.TensorProto.BFLOAT16
    values = [*graph.input, *graph.output, *graph.value_info]
    if any(v.type.WhichOneof("value") == "tensor_type" and v.type.tensor_type.elem_type == bfloat16 for v in values):
        return True
    if any(tensor.data_type == bfloat16 for tensor in constant_tensors(graph).values()):
        return True
    return any(
        node.op_type == "Cast" and node.domain in ("", "ai.onnx")
        and any(attr.name == "to" and attr.i == bfloat16 for attr in node.attribute)
        for node in graph.node
    )


def choose_compiler_options(graph: onnx.GraphProto) -> dict[str, str | int | bool]:
    """The XLA compiler options the generated code of ``graph`` runs fastest with (measured per model
    kind and size: this module's docstring), LLVM's level that compiles it faster at that speed, and
    no excess precision for a model that computes in bfloat16."""
    precision = {EXCESS_PRECISION: False} if computes_in_bfloat16(graph) else {}
    return {**_ynn_options(graph), LLVM_LEVEL: LLVM_LEVEL_CHOSEN, **precision}


def _ynn_options(graph: onnx.GraphProto) -> dict[str, str]:
    """What YNNPACK fuses for ``graph``: nothing for depthwise ones; dots for large models, and each
    convolution alone besides in those with a 2-D convolution and no MatMul layers; each convolution
    alone for the other models with a 2-D convolution (small CNNs, and small patch transformers such as
    ViT-Ti)."""
    large = float_weights(graph) >= MIN_WEIGHTS
    linear = linear_layers(graph)
    if has_depthwise(graph) and not (large and linear):
        return {YNN_FUSION_TYPE: YNN_NONE}
    convolution = has_convolution(graph)
    if large:  # each convolution alone besides the dots in a CNN without MatMul layers
        return {YNN_FUSION_TYPE: YNN_DOTS_AND_CONVOLUTIONS if convolution and not linear else YNN_DOTS_ONLY}
    return {YNN_FUSION_TYPE: YNN_CONVOLUTIONS_ONLY} if convolution else {}


def supported_options(options: Mapping[str, str]) -> dict[str, str]:
    """``options`` without those the running XLA does not know (an older or newer jaxlib)."""
    from workbench.onnx_to_jax.helpers import _xla_accepts

    return {name: value for name, value in options.items() if _xla_accepts(name, value)}


def generated_options(forward: Callable[..., Any]) -> dict[str, str]:
    """The ``XLA_COMPILER_OPTIONS`` of the module that defines ``forward`` (made by to_jax or save_jax)."""
    namespace = forward.__globals__ if isinstance(forward, types.FunctionType) else None
    if namespace is None or not isinstance(namespace.get(OPTIONS_NAME), dict):
        raise SpecError(
            f"jit_forward: {forward!r} is not the forward function of generated code (its module has no "
            f"{OPTIONS_NAME}); pass the function wb.to_jax returns, or the one load() of a save_jax folder "
            "returns, or use jax.jit directly for other functions."
        )
    if namespace.get("VALUE_DEPENDENT_NODES"):
        raise SpecError(
            "jit_forward: this model has nodes whose output shapes depend on values "
            f"({', '.join(namespace['VALUE_DEPENDENT_NODES'][:5])}), so forward cannot be traced as a whole; "
            "call forward(params, *inputs) directly: it runs its jit-able parts jitted."
        )
    return dict(namespace[OPTIONS_NAME])


def jit_forward(
    forward: Callable[..., Any], params: Mapping[str, Any] | None = None, **jit_kwargs: Any
) -> Callable[..., Any]:
    """``jax.jit`` of generated code with the XLA compiler options chosen for its model.

    ``jit_forward(forward)`` is called as ``fn(params, *inputs)`` (weights as arguments, for
    fine-tuning); ``jit_forward(forward, params)`` folds the weights in as constants (as an
    onnxruntime session holds them) and is called as ``fn(*inputs)``; a ``forward`` in ONNX's layouts
    whose module has ``WEIGHT_LAYOUTS`` then folds ``prepare(params)`` into ``forward_prepared``
    (:func:`prepared_for_folding`: the same function, a cheaper compile); with
    ``tiered.TIERED_MIN_WEIGHTS`` float weights or more it returns a :class:`~workbench.onnx_to_jax.tiered.TieredJitted`,
    whose first calls run the weights as arguments while the folded program compiles in the background
    (XLA's literals of ViT-B/16's 86 M weights cost ~4.5 CPU s). The options are the module's
    ``XLA_COMPILER_OPTIONS`` (see this module's docstring), less any the running XLA does not know;
    ``compiler_options`` in ``jit_kwargs`` are added to them and win. Other ``jit_kwargs`` go to
    ``jax.jit`` as they are. Called inside ``jax.grad``, ``jax.vmap`` or an outer ``jax.jit`` it traces
    the function without the options (:class:`OptionsJitted`: JAX takes them on a top-level jit only).
    """
    import jax

    from workbench.onnx_to_jax.helpers import _jit_with_options

    options = generated_options(forward)
    if params is not None and not isinstance(params, Mapping):
        raise SpecError(f"params: expected the dict of weights wb.to_jax returned (name -> array) or None, got {type(params).__name__}.")
    if params is not None:
        forward, params = prepared_for_folding(forward, params)
    fn = forward if params is None else functools.partial(forward, params)
    try:
        # the same builder as the jitted parts of models whose shapes depend on values (``_segment``)
        jitted = _jit_with_options(fn, options, **dict(jit_kwargs))
        # inside grad / vmap / an outer jit, the same function jitted without the options (OptionsJitted)
        nested = jax.jit(fn, **{name: value for name, value in jit_kwargs.items() if name != "compiler_options"})
    except TypeError as error:  # an argument jax.jit does not take (static_argnum=1), or of the wrong type
        raise SpecError(f"jit_forward: jax.jit refuses the keyword arguments {sorted(jit_kwargs)}: {error}. "
                        "Pass jax.jit's own (static_argnums, donate_argnums...) or none.") from error
    if forward.__globals__.get(X64_NAME) is True:
        return X64Jitted(OptionsJitted(jitted, nested, fn))
    # jax.jit arguments that count positions (static_argnums, donate_argnums...) would mean other
    # arguments to the tiered jit's weights-as-arguments program: those get the folded jit alone
    plain_jit = not set(jit_kwargs) - {"compiler_options"}
    if params is not None and plain_jit and tiered.float_elements(params) >= tiered.TIERED_MIN_WEIGHTS:
        # many weights: the first calls run them as arguments while the folded program compiles (tiered.py)
        return tiered.TieredJitted(jitted, _jit_with_options(forward, options, **dict(jit_kwargs)), params, nested)
    return OptionsJitted(jitted, nested, fn)


class OptionsJitted:
    """A jitted model compiled with its XLA options when called on arrays, traced without them inside a
    transformation.

    JAX accepts ``compiler_options`` only on a top-level ``jax.jit``: called inside ``jax.grad``,
    ``jax.vmap`` or an outer ``jax.jit``, a jit that carries them raises ``ValueError``. So with traced
    inputs this runs ``nested`` (the same function jitted without the options; the outer computation
    is compiled with the options its own jit gives), and with arrays ``top``. ``lower`` is ``top``'s.
    """

    def __init__(self, top: Any, nested: Any, fn: Callable[..., Any] | None = None):
        self._top = top
        self._nested = nested
        self._fn = fn  # the function jitted (params bound or not), for the message of a call that does not fit it

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if any_traced((args, kwargs)):
            return self._nested(*args, **kwargs)
        try:
            return self._top(*args, **kwargs)
        except TypeError:
            refuse_non_arrays(args, kwargs, self._fn)  # a wrong count or a string among the inputs: named
            raise

    def lower(self, *args: Any, **kwargs: Any) -> Any:
        """``jax.jit(...).lower`` of the function with its options (``.compile()`` compiles with them)."""
        return self._top.lower(*args, **kwargs)


class X64Jitted:
    """A jitted model with 64-bit inputs or outputs, traced, compiled and called with x64 on.

    The generated ``forward`` turns x64 on inside itself, but ``jax.jit`` converts the arguments at
    its own boundary first: with JAX's 64-bit mode off (its default) float64 inputs and weights
    would arrive as float32, or fail against the compiled signature. This scopes x64 to each call,
    as ``forward`` does, without flipping the process-wide setting.
    """

    def __init__(self, jitted: Any):
        self._jitted = jitted

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        import jax

        with jax.enable_x64(True):
            return self._jitted(*args, **kwargs)

    def lower(self, *args: Any, **kwargs: Any) -> Any:
        """``jax.jit(...).lower`` with x64 on (``.compile()`` of the result keeps the 64-bit signature)."""
        import jax

        with jax.enable_x64(True):
            return self._jitted.lower(*args, **kwargs)


def prepared_for_folding(forward: Callable[..., Any], params: Mapping[str, Any]) -> tuple[Callable[..., Any], Any]:
    """``(forward_prepared, prepare(params))`` for the ONNX-layout ``forward`` of a module with
    ``WEIGHT_LAYOUTS``, else ``(forward, params)`` unchanged.

    Folding the weights already in the layouts the kernels read (transposed once, with numpy) computes
    the same function as folding ``params`` and leaving the transposes to XLA's constant folding, and
    compiles cheaper: XLA then turns each transposed weight into a new literal as well (figures:
    docs/onnx_to_jax_corpus.md, "First compile"; the latency stays within noise).
    """
    # forward is generated code (jit_forward checked it with generated_options): a module-level function
    namespace = forward.__globals__
    prepared = namespace.get(f"{forward.__name__}_prepared")  # absent when forward is forward_prepared
    prepare = namespace.get("prepare")
    if not namespace.get("WEIGHT_LAYOUTS") or not callable(prepared) or not callable(prepare):
        return forward, params
    return prepared, prepare(params)
