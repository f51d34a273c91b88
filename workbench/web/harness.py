"""Export an ONNX model as a browser harness folder for onnxruntime-web.

The folder holds the model, ``harness.manifest.json`` (what the page and the smoke test need,
including the outputs onnxruntime computes in Python for the example inputs; an output of more than 2^20
elements as a binary ``expected.<n>.bin`` the page compares against itself), the example
inputs, the page (``index.html`` + ``harness.js``, static templates shipped with the package)
and the onnxruntime-web files copied from the local npm cache. It is self-contained: serve it
from any static file server and open ``index.html``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import onnx

from workbench import files
from workbench.analysis.options import check_seed, check_tolerance
from workbench.errors import OnnxModelError, SpecError
from workbench.onnx_io import ExternalData, LoadedModel, Session, check_model, load_model, open_session, opset_imports, write_model
from workbench.web import compat, runtime, tensors

MANIFEST_NAME = "harness.manifest.json"
MANIFEST_FORMAT = "workbench_web_harness_v1"
MODEL_NAME = "model.onnx"
EXAMPLE_INPUTS_NAME = "inputs.example.json"
TEMPLATE_NAMES = ("index.html", "harness.js")
#: A model whose serialized size exceeds this many bytes is written with its weights in model.onnx.<digest>.data
#: (a per-model threshold: the page loads one file when it can).
DEFAULT_EXTERNAL_DATA_THRESHOLD = 64 * 1024 * 1024
#: ... and then every initializer of at least this many bytes goes there.
EXTERNAL_TENSOR_BYTES = 1024
DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-4


@runtime_checkable
class HasModelProto(Protocol):
    """A conversion result (e.g. what ``%%to_onnx`` returns) carrying its ONNX model."""

    model: onnx.ModelProto


@dataclass(frozen=True)
class GreedyGeneration:
    """Ask the page to generate ``steps`` tokens greedily from ``prompt`` with a decoder model.

    The model takes token ids ``[1, T]`` (``input``, int64 or int32) and returns logits
    ``[1, T, vocab]`` (``output``); each step appends the argmax of the last position. The same
    loop is run with onnxruntime in Python and its tokens are stored as the expected ones.
    ``None`` for ``input``/``output`` means the model's only input / first output.
    """

    prompt: Sequence[int]
    steps: int
    input: str | None = None
    output: str | None = None


@dataclass(frozen=True)
class HarnessInfo:
    """What :func:`export_web_harness` wrote."""

    out_dir: Path
    files: tuple[str, ...]
    providers: tuple[str, ...]
    inputs: dict[str, np.ndarray] = field(repr=False)
    expected_outputs: dict[str, np.ndarray] = field(repr=False)
    expected_tokens: tuple[int, ...] | None
    manifest: dict[str, Any] = field(repr=False)
    #: nodes rewritten into forms onnxruntime-web's wasm build has kernels for (workbench.web.compat)
    rewrites: tuple[compat.WebRewrite, ...] = ()

    @property
    def index_html(self) -> Path:
        return self.out_dir / "index.html"

    @property
    def manifest_path(self) -> Path:
        return self.out_dir / MANIFEST_NAME


def _load_model(model: onnx.ModelProto | str | Path | HasModelProto) -> LoadedModel:
    if isinstance(model, HasModelProto) and not isinstance(model, onnx.ModelProto):
        if not isinstance(model.model, onnx.ModelProto):
            raise OnnxModelError(
                f"the {type(model).__name__} holds no ONNX model (model={type(model.model).__name__}); "
                "the conversion did not succeed, fix it first"
            )
        model = model.model
    loaded = load_model(model)
    check_model(loaded)
    return loaded


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def greedy_tokens(session: Session, generation: GreedyGeneration, input_name: str,
                  input_dtype: str, output_index: int) -> list[int]:  # fmt: skip
    """The greedy loop of the page, in Python: append argmax of the last position's logits."""
    tokens = [int(t) for t in generation.prompt]
    generated: list[int] = []
    for _ in range(generation.steps):
        ids = np.asarray([tokens], dtype=input_dtype)
        logits = session.run({input_name: ids})[output_index]
        next_token = int(np.argmax(logits.reshape(-1, logits.shape[-1])[-1]))
        tokens.append(next_token)
        generated.append(next_token)
    return generated


def _check_arguments(out_dir: Any, inputs: Any, generate: Any, external_data_threshold: Any, atol: Any, rtol: Any,
                     seed: Any) -> None:
    """export_web_harness's arguments, before anything is loaded or written (each once reached Python or NumPy
    deep inside the export: ``TypeError: unhashable type``, ``'str' object has no attribute 'steps'``...)."""
    if not isinstance(out_dir, (str, os.PathLike)):
        raise SpecError(f"out_dir: expected a folder path (str or os.PathLike), got {type(out_dir).__name__}.")
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise SpecError(f"out_dir: {out_dir} is a file; give a folder for the harness (it is created if missing).")
    if inputs is not None and not isinstance(inputs, Mapping):
        raise SpecError(
            f"inputs: expected a dict of the model's input names to arrays (or None for generated ones), got {type(inputs).__name__}."
        )
    if generate is not None and not isinstance(generate, GreedyGeneration):
        raise SpecError(f"generate: expected a workbench.web.harness.GreedyGeneration or None, got {generate!r}.")
    if isinstance(external_data_threshold, bool) or not isinstance(external_data_threshold, int) or external_data_threshold < 0:
        raise SpecError(f"external_data_threshold: expected an int >= 0 (bytes), got {external_data_threshold!r}.")
    check_tolerance("atol", atol, none_means=None)
    check_tolerance("rtol", rtol, none_means=None)
    check_seed(seed)


def _generation_manifest(
    generation: GreedyGeneration, in_specs: list[tensors.TensorSpec],
    out_specs: list[tensors.TensorSpec], session: Session,
) -> dict[str, Any]:  # fmt: skip
    if generation.steps < 1 or not generation.prompt:
        raise SpecError("generation needs steps >= 1 and a non-empty prompt")
    if generation.input is None and len(in_specs) != 1:
        raise SpecError("the model has several inputs; name the token-id input in GreedyGeneration(input=...)")
    input_name = generation.input or in_specs[0].name
    output_name = generation.output or out_specs[0].name
    in_spec = next((s for s in in_specs if s.name == input_name), None)
    out_names = [s.name for s in out_specs]
    if in_spec is None or output_name not in out_names:
        raise SpecError(f"generation input {input_name!r} or output {output_name!r} is not in the model")
    if len(in_specs) != 1 or in_spec.dtype not in ("int64", "int32"):
        raise SpecError("greedy generation needs a model with exactly one int64/int32 token-id input")
    tokens = greedy_tokens(session, generation, input_name, in_spec.dtype, out_names.index(output_name))
    return {
        "input": input_name, "input_dtype": in_spec.dtype, "output": output_name,
        "prompt": [int(t) for t in generation.prompt], "steps": int(generation.steps),
        "expected_tokens": tokens,
    }  # fmt: skip


def _expected_entries(expected: Mapping[str, np.ndarray], out: Path) -> dict[str, dict[str, Any]]:
    """The manifest's expected outputs: JSON up to :data:`tensors.MAX_JSON_ELEMENTS` elements, beyond that a
    binary file per output (``expected.<position>.bin``) the page compares against in place."""
    entries: dict[str, dict[str, Any]] = {}
    for position, (name, value) in enumerate(expected.items()):
        if value.size > tensors.MAX_JSON_ELEMENTS:
            entries[name] = tensors.tensor_to_file(value, out / f"expected.{position}.bin")
        else:
            entries[name] = tensors.tensor_to_json(value)
    return entries


def _template(name: str) -> bytes:
    return resources.files("workbench.web").joinpath("templates", name).read_bytes()


def export_web_harness(
    model: onnx.ModelProto | str | Path | HasModelProto,
    out_dir: str | Path,
    *,
    inputs: Mapping[str, Any] | None = None,
    providers: Sequence[str] = ("webgpu", "wasm"),
    generate: GreedyGeneration | None = None,
    external_data_threshold: int = DEFAULT_EXTERNAL_DATA_THRESHOLD,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    web_rewrite: bool = True,
) -> HarnessInfo:
    """Write a self-contained onnxruntime-web harness for ``model`` into ``out_dir``.

    ``model`` is an ``onnx.ModelProto``, a path to an .onnx file, or a conversion result with a
    ``.model`` ModelProto. ``inputs`` maps input names to arrays; without it, example inputs are
    generated from the input specs (symbolic dims -> 2, token ids below the vocab size).
    ``providers`` is the order the page tries (``"webgpu"``, ``"wasm"``). The expected outputs
    are computed with onnxruntime in Python. A model whose serialized size exceeds
    ``external_data_threshold`` bytes keeps its initializers of 1 KiB and more in ``model.onnx.<digest>.data``
    (a per-model threshold, unlike ``wb.to_onnx``'s per-tensor one). The smoke test accepts a browser output when
    ``max|browser - expected| <= atol + rtol * max|expected|``, ``rtol`` at least the output dtype's epsilon (a
    float16 output may differ by one unit in its last place: 2^-10 relative). Needs ``workbench web setup`` once.
    With ``web_rewrite`` (the default) nodes onnxruntime-web's wasm build has no kernel for, but an exact
    equivalent it has (``Where`` on uint32/int8: :data:`workbench.web.compat.WASM_KERNEL_GAPS`), are
    rewritten before the model is written; ``HarnessInfo.rewrites`` and the manifest list them.
    """
    providers = runtime.validate_providers(tuple(providers) if not isinstance(providers, str) else providers)
    _check_arguments(out_dir, inputs, generate, external_data_threshold, atol, rtol, seed)
    runtime_files = runtime.runtime_files(providers, None if cache_dir is None else Path(cache_dir))
    loaded = _load_model(model)
    proto = loaded.proto
    narrow = compat.bfloat16_value(proto)
    if narrow is not None:
        raise OnnxModelError(
            f"{narrow!r} is bfloat16, and onnxruntime-web {runtime.ORT_WEB_VERSION}'s wasm build has no bfloat16 "
            "kernel, not even Cast (runtime=\"onnxruntime-cpu\" does not help there). Export for the browser in float16 "
            "(wb.to_onnx(fn, float32 specs, precision=\"float16\"): inputs and outputs stay float32) or in float32."
        )
    rewrites: list[compat.WebRewrite] = []
    if web_rewrite:
        proto, rewrites = compat.web_compatible(proto)
    in_specs, out_specs = tensors.graph_specs(proto)
    if any(spec.name == "__proto__" for spec in out_specs):  # the page checks again, for a harness edited by hand
        raise OnnxModelError(
            "output '__proto__': onnxruntime-web returns a run's outputs in a JavaScript object, which cannot hold "
            "that name as a key (it sets the object's prototype), so the page would never see it; rename the output."
        )
    if inputs is None:
        example = tensors.example_inputs(proto, in_specs, seed=seed)
    else:
        example = tensors.coerce_inputs(inputs, in_specs)

    out = Path(out_dir)
    files.ensure_folder(out, "the web harness")
    written = write_model(
        proto, out / MODEL_NAME,
        external_data=ExternalData(tensor_bytes=EXTERNAL_TENSOR_BYTES, model_bytes=external_data_threshold),
    )  # fmt: skip
    model_files = [path.name for path in written.files]
    session = open_session(out / MODEL_NAME, label=MODEL_NAME, graph=proto)
    expected = dict(zip([s.name for s in out_specs], session.run(example), strict=True))
    for name, value in expected.items():
        if value.dtype.name not in tensors.SUPPORTED_DTYPES:
            raise OnnxModelError(f"output {name!r} has dtype {value.dtype.name}, which the page cannot read")
    generation = None if generate is None else _generation_manifest(generate, in_specs, out_specs, session)

    bundle = runtime.bundle_for(providers)
    for name, source in runtime_files.items():
        files.copy_file_atomic(source, out / name)
    for name in TEMPLATE_NAMES:
        files.write_bytes_atomic(out / name, _template(name))
    files.write_json_atomic(
        out / EXAMPLE_INPUTS_NAME,
        {"inputs": {name: tensors.tensor_to_json(array) for name, array in example.items()}},
    )
    import onnxruntime

    opsets = opset_imports(proto)
    manifest: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "model": {
            "file": MODEL_NAME,
            "sha256": _sha256(out / MODEL_NAME),
            "external_data": [
                {"file": name, "sha256": _sha256(out / name)} for name in model_files[1:]
            ],
            "ir_version": int(proto.ir_version),
            "opset": opsets.get("ai.onnx"),
            "opset_imports": opsets,
            "producer": f"{proto.producer_name} {proto.producer_version}".strip(),
        },
        "inputs": [s.to_json() for s in in_specs],
        "outputs": [s.to_json() for s in out_specs],
        "providers": list(providers),
        "runtime": {
            "package": "onnxruntime-web", "version": runtime.ORT_WEB_VERSION,
            "entry": bundle.entry, "files": list(bundle.files),
        },  # fmt: skip
        "example_inputs": EXAMPLE_INPUTS_NAME,
        # the inputs the expected outputs were computed from: a harness whose inputs file is another export's
        # (a write interrupted before the manifest) is refused by the smoke test, not compared against the wrong outputs
        "example_inputs_sha256": _sha256(out / EXAMPLE_INPUTS_NAME),
        "expected_outputs": _expected_entries(expected, out),
        "expected_from": {"onnxruntime": onnxruntime.__version__, "provider": "CPUExecutionProvider"},
        "tolerance": {"atol": float(atol), "rtol": float(rtol)},
        "generation": generation,
        "web_rewrites": [str(r) for r in rewrites],
    }
    files.write_json_atomic(out / MANIFEST_NAME, manifest)
    expected_files = [entry["file"] for entry in manifest["expected_outputs"].values() if "file" in entry]
    written = (*model_files, *bundle.files, *TEMPLATE_NAMES, EXAMPLE_INPUTS_NAME, *expected_files, MANIFEST_NAME)
    return HarnessInfo(
        out_dir=out, files=written, providers=providers, inputs=example, expected_outputs=expected,
        expected_tokens=None if generation is None else tuple(generation["expected_tokens"]),
        manifest=manifest, rewrites=tuple(rewrites),
    )  # fmt: skip


__all__ = ["GreedyGeneration", "HarnessInfo", "HasModelProto", "export_web_harness"]
