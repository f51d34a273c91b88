"""Public ONNX -> JAX API: ``to_jax_source``, ``to_jax`` and ``save_jax``."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from types import CodeType
from typing import Any, Callable

import numpy as np

from workbench import files
from workbench.errors import SpecError, WorkbenchError, check_flag
from workbench.onnx_io import ModelSource
from workbench.onnx_to_jax.reader import read_model
from workbench.onnx_to_jax.source_text import JaxSource

_MODULE_FILE = "model_jax.py"
_WEIGHTS_FILE = "weights.npz"
_WEIGHTS_INDEX = "weights.json"
_LOADER_FILE = "load.py"

BaseDir = str | os.PathLike[str] | None


@dataclass(frozen=True)
class GeneratedModule:
    """The generated source, its function (compiled and loaded), the params, and the nodes whose
    output shapes depend on values (``jax.jit(forward)`` cannot trace those; ``forward`` runs them
    between jitted parts, see ``segments.py``).

    ``forward_prepared(prepare(params), *inputs)`` is ``forward(params, *inputs)`` with the layout
    work on the weights done by ``prepare``: for repeated calls, prepare once (numpy, outside
    ``jax.jit``) and jit ``forward_prepared``. ``prepare`` also runs under ``jax.grad``, so gradients
    w.r.t. the ONNX-layout ``params`` flow through it. Models without such weights have
    ``forward_prepared is forward`` and a ``prepare`` that returns a copy of the dict.
    """

    source: str
    forward: Callable[..., Any]
    params: dict[str, np.ndarray]
    value_dependent_nodes: tuple[str, ...]
    forward_prepared: Callable[..., Any]
    prepare: Callable[[dict[str, Any]], dict[str, Any]]

    def jit(self, *, fold_weights: bool = True, prepared: bool = False, **jit_kwargs: Any) -> Callable[..., Any]:
        """``jax.jit`` of ``forward`` with the XLA options chosen for the model (:func:`jit_forward`).

        Folded (the default), call it as ``fn(*inputs)``; with ``fold_weights=False`` as
        ``fn(params, *inputs)`` (``prepared``: ``fn(prepare(params), *inputs)``). Folded, both jit
        ``forward_prepared`` on ``prepare(params)`` (:func:`jit_forward` prepares before folding).
        """
        from workbench.onnx_to_jax.jit_options import jit_forward

        forward = self.forward_prepared if prepared else self.forward
        params = (self.prepare(self.params) if prepared else self.params) if fold_weights else None
        return jit_forward(forward, params, **jit_kwargs)


def _unchanged(params: dict[str, Any]) -> dict[str, Any]:
    """The ``prepare`` of a module whose code reads every weight in ONNX's layout."""
    return dict(params)


def _build(model: ModelSource, function_name: str, base_dir: BaseDir, scan_repeats: bool = False):
    from workbench.onnx_to_jax.generator import ModuleBuilder
    from workbench.onnx_to_jax.row_scatter import RowScatterRefused

    check_flag("scan_repeats", scan_repeats)
    checked = read_model(model, base_dir=base_dir)
    refused: frozenset[str] = frozenset()
    while True:
        builder = ModuleBuilder(checked, function_name, scan_repeats=scan_repeats, refused_rows=refused)
        try:
            source = builder.build()
            break
        except RowScatterRefused as refusal:  # its folded shapes mix rows: build again without that chain
            if refusal.nonzero in refused:  # pragma: no cover - a refused chain is never taken again
                raise AssertionError(f"window scatter {refusal.nonzero!r} refused twice") from refusal
            refused |= {refusal.nonzero}
    if builder.code is None:  # pragma: no cover - build() always compiles
        raise AssertionError("ModuleBuilder.build() did not compile the module")
    return source, builder, dict(builder.params)


def generate(
    model: ModelSource, *, function_name: str = "forward", base_dir: BaseDir = None, scan_repeats: bool = False
) -> tuple[str, dict[str, np.ndarray]]:
    """The generated module source and the params dict (numpy arrays keyed by initializer name)."""
    source, _, params = _build(model, function_name, base_dir, scan_repeats)
    return source, params


def generate_compiled(
    model: ModelSource, *, function_name: str = "forward", base_dir: BaseDir = None, scan_repeats: bool = False
) -> tuple[str, Callable[..., Any], dict[str, np.ndarray]]:
    """``(source, function, params)``: the generated module compiled once and loaded."""
    source, builder, params = _build(model, function_name, base_dir, scan_repeats)
    return source, _guarded_namespace(source, builder)[function_name], params


def _guarded_namespace(source: str, builder: Any) -> dict[str, Any]:
    """The generated module loaded, its ``forward`` (and ``forward_prepared``) raising ModelRunError naming the
    node when a statement fails on the inputs (run_errors.py)."""
    from workbench.onnx_to_jax.generator import GENERATED_FILENAME, HELPERS_MARKER
    from workbench.onnx_to_jax.run_errors import guard, source_map

    namespace = _load_namespace(builder.code)
    where = source_map(builder.label, GENERATED_FILENAME, source, builder.scope.identifiers(), builder.model, HELPERS_MARKER,
                       frozenset(builder.params), tuple(builder.barriers))
    for name in (builder.function_name, builder.prepared_name):
        if name in namespace:
            guard(namespace, name, where)
    return namespace


def generate_module(
    model: ModelSource, *, function_name: str = "forward", base_dir: BaseDir = None, scan_repeats: bool = False
) -> GeneratedModule:
    """Everything :func:`generate_compiled` gives, plus the value-dependent nodes and the prepared form."""
    source, builder, params = _build(model, function_name, base_dir, scan_repeats)
    namespace = _guarded_namespace(source, builder)
    forward = namespace[function_name]
    if builder.weight_layouts:
        forward_prepared, prepare = namespace[builder.prepared_name], namespace["prepare"]
    else:
        forward_prepared, prepare = forward, _unchanged
    return GeneratedModule(source, forward, params, builder.barriers, forward_prepared, prepare)


def to_jax_source(
    model: ModelSource, *, function_name: str = "forward", base_dir: BaseDir = None, scan_repeats: bool = False
) -> JaxSource:
    """Python source of a module defining ``function_name(params, *inputs)`` for the ONNX model.

    ``model`` is a path, bytes or ``onnx.ModelProto``. The source is compiled (not run) before
    it is returned, so it is known to parse; weights are not inlined (see :func:`to_jax`).
    ``base_dir`` is the folder of the external data files of a model given as bytes or a
    ModelProto (a file's are read from its own folder); without it such a model is refused.
    ``scan_repeats=True`` writes a run of repeated blocks (transformer layers: the same code up to
    their weights) once, applied by ``lax.scan`` over the blocks' stacked weights, so XLA compiles
    one block instead of each: a faster first ``jax.jit`` with the weights as arguments, paid for
    by copying the blocks' weights on every call (docs/codegen.md has the measurements). Off by
    default: every node's statement in order.

    The ``str`` returned displays in a notebook as the highlighted module (runtime helpers folded),
    not as a quoted one-line repr.
    """
    source, _ = generate(model, function_name=function_name, base_dir=base_dir, scan_repeats=scan_repeats)
    return JaxSource(source)


def compile_source(source: str, function_name: str = "forward") -> Callable[..., Any]:
    """Compile source that :func:`to_jax_source` generated (never anything else) and return the function."""
    from workbench.onnx_to_jax.generator import GENERATED_FILENAME

    return _load(compile(source, GENERATED_FILENAME, "exec"), function_name)


def _load(code: CodeType, function_name: str) -> Callable[..., Any]:
    return _load_namespace(code)[function_name]


def _load_namespace(code: CodeType) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "workbench_generated"}
    exec(code, namespace)  # noqa: S102 - our own generated code; model text only appears as escaped literals
    return namespace


def to_jax(
    model: ModelSource, *, base_dir: BaseDir = None, prepared: bool = False, scan_repeats: bool = False
) -> tuple[Callable[..., Any], dict[str, Any]]:
    """``(forward, params)``: call ``forward(params, *inputs)``; one output -> array, several -> tuple.

    ``jax.jit(forward)`` takes the weights as arguments (for fine-tuning and ``jax.grad``). For
    inference, ``jax.jit(functools.partial(forward, params))`` folds them in as constants, as an
    onnxruntime session does: XLA then computes everything that depends on weights alone
    (BatchNorm coefficients, the weight layouts its CPU convolutions want) once, at compile time.

    ``prepared=True`` returns ``(forward_prepared, prepare(params))`` instead: the convolution
    weights already transposed (with numpy, once) to the (kh, kw, I, O) XLA's CPU kernels read, and
    Gemm's transB weights to (K, N), so neither form above spends time on that, per call or while
    compiling; the params then hold those weights in that layout, not ONNX's (the module's
    ``WEIGHT_LAYOUTS`` lists them; :class:`GeneratedModule` has both forms).
    ``wb.jit_forward(forward, params)`` (or ``wb.jit_forward(forward)``) is the jit of either form
    with the XLA compiler options the generator chose for the model (the module's
    ``XLA_COMPILER_OPTIONS``; ResNet-18 runs in about half the time with them). For a model with
    64-bit inputs or outputs use ``wb.jit_forward``: a plain ``jax.jit`` converts the arguments to
    32 bits at its boundary (JAX's default), before ``forward`` turns x64 on for itself.
    ``base_dir``, ``scan_repeats``: as for :func:`to_jax_source`.
    """
    import jax

    check_flag("prepared", prepared)
    generated = generate_module(model, base_dir=base_dir, scan_repeats=scan_repeats)
    params: dict[str, Any] = generated.prepare(generated.params) if prepared else generated.params
    forward = generated.forward_prepared if prepared else generated.forward
    # jax.device_put, not jnp.asarray: since JAX 0.10 jnp.asarray of a numpy array runs a small XLA
    # program, compiled once per distinct shape (67 compiles, 2.6 of to_jax's 3.1 s on a 427-node DenseNet).
    # Weights that device_put would narrow (float64/complex128 with JAX's 64-bit mode off) stay numpy
    # arrays: the module runs its 64-bit graphs under jax.enable_x64, where they keep their type.
    device_params = {
        k: (jax.device_put(v) if v.dtype.kind in "fc" and jax.dtypes.canonicalize_dtype(v.dtype) == v.dtype else v)
        for k, v in params.items()
    }
    return forward, device_params


_LOADER_SOURCE = '''"""Load the JAX model that workbench generated: ``forward, params = load()``.

Needs only numpy and jax. Call ``forward(params, *inputs)``.
"""

import importlib.util
import json
import os
import shutil
from dataclasses import dataclass

import numpy as np


def load(directory=None):
    directory = directory or os.path.dirname(os.path.abspath(__file__))
    spec = importlib.util.spec_from_file_location("model_jax", os.path.join(directory, "model_jax.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    import jax.numpy as jnp

    with open(os.path.join(directory, "weights.json"), encoding="utf-8") as handle:
        index = json.load(handle)
    params = {}
    with np.load(os.path.join(directory, "weights.npz"), allow_pickle=False) as arrays:
        for i, (name, dtype) in enumerate(zip(index["names"], index["dtypes"])):
            raw = arrays[f"p{i}"]
            params[name] = raw.view(jnp.dtype(dtype)) if raw.dtype.name != dtype else raw
    return module.forward, params
'''


def save_jax(model: ModelSource, out_dir: str | os.PathLike, *, base_dir: BaseDir = None) -> Path:
    """Write ``model_jax.py``, the weights (``weights.npz`` + ``weights.json``) and ``load.py`` into ``out_dir``.

    The folder runs with JAX alone: ``from load import load; forward, params = load()``. The four
    files are one unit: they are written into a staging folder beside ``out_dir``, which then takes
    its place in one step (:func:`workbench.files.commit_folder`), so a reader sees the old files or
    the new ones, never code from one model with weights from another; a failed or killed write
    leaves the old folder as it was. ``out_dir`` therefore holds nothing but these files: an
    existing folder with other files is refused (nothing of the user's is ever deleted).
    ``base_dir``: as for :func:`to_jax_source`. Returns the folder's path.
    """
    source, params = generate(model, base_dir=base_dir)
    if not isinstance(out_dir, (str, os.PathLike)):
        raise SpecError(f"out_dir: expected a folder path (str or os.PathLike), got {type(out_dir).__name__}.")
    out = Path(os.path.realpath(out_dir))  # a symbolic link: the folder it points to is replaced
    _check_output_folder(out)
    files.ensure_folder(out.parent, "the JAX model")
    with files.folder_lock(out.parent), files.write_errors(f"the JAX model into {out}"):
        files.remove_stale_temps(out)
        _check_output_folder(out)  # again under the lock: another writer may have changed it
        staging = files.staging_folder(out)
        try:
            _write_saved_model(staging, source, params)
            files.commit_folder(staging, out)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return out


# what save_jax writes, and what Python adds when load.py imports model_jax.py
_SAVED_FILES = frozenset({_MODULE_FILE, _WEIGHTS_FILE, _WEIGHTS_INDEX, _LOADER_FILE})
_DERIVED_FILES = frozenset({"__pycache__"})


def _check_output_folder(out: Path) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise WorkbenchError(f"cannot save the JAX model to {out}: it is a file; give a folder path.")
    foreign = sorted(name for name in os.listdir(out) if name not in _SAVED_FILES | _DERIVED_FILES)
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise WorkbenchError(
            f"cannot save the JAX model to {out}: the folder holds files save_jax did not write ({shown}), and "
            "save_jax replaces the whole folder. Give a new or empty folder, or one an earlier save_jax wrote."
        )
    cwd = Path.cwd()
    if cwd == out or out in cwd.parents:
        raise WorkbenchError(
            f"cannot save the JAX model to {out}: it is (or holds) the current working directory, which "
            "save_jax would replace; give another folder."
        )


def _write_saved_model(folder: Path, source: str, params: dict[str, np.ndarray]) -> None:
    names = list(params)
    dtypes = [params[n].dtype.name for n in names]
    arrays = {}
    for i, name in enumerate(names):
        value = np.asarray(params[name], order="C")  # not ascontiguousarray: it turns 0-d scalars into shape (1,)
        if value.dtype.kind not in "biufc" or value.dtype.name not in np.sctypeDict:
            # ml_dtypes (bfloat16, float8, int4...) are stored as raw bits and viewed back by the loader
            value = value.view(f"u{value.dtype.itemsize}")
        arrays[f"p{i}"] = value
    with open(folder / _WEIGHTS_FILE, "wb") as handle:
        np.savez(handle, **arrays)
    (folder / _WEIGHTS_INDEX).write_bytes(json.dumps({"names": names, "dtypes": dtypes}, indent=1).encode("utf-8"))
    (folder / _MODULE_FILE).write_bytes(source.encode("utf-8"))
    (folder / _LOADER_FILE).write_bytes(_LOADER_SOURCE.encode("utf-8"))
