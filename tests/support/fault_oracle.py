"""The fault sweep's oracle: run one case through a public door and classify what happened.

Runs inside the sweep's worker process (tests/hardening/fault_sweep.py), which limits its address
space and time. Outcomes:

* ``clean``: the call succeeded (and where onnxruntime also runs the model, the numbers agree), or
  it raised a WorkbenchError (a ValueError the workbench raised itself, for argument mistakes)
  whose message names one of the case's targets (the value, node, attribute or argument at fault),
  or a ModelRunError (the generated code failed on the inputs: it names the node that failed, which
  is where a fault that only shows at run time is known, downstream of the mutated value or not);
* ``vague``: the right error type, but the message names none of the targets;
* ``raw``: another exception type (a KeyError, a JAX TypeError, protobuf's DecodeError...);
* ``mismatch``: both ran, the numbers differ; ``memory``: MemoryError under the address-space limit.
  (``hang`` and ``crash`` are decided by the parent: no answer in time, or the worker died.)
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tests.support.fault_jax_cases import CALLABLES, SEEDS, JaxCase, spec_text, resolve_path, resolve_spec

UNCLEAN = ("vague", "raw", "mismatch", "memory", "hang", "crash")


@dataclass(frozen=True)
class OnnxCase:
    """One mutant through one ONNX -> JAX door (to_jax, backend, cli)."""

    door: str
    kind: str
    seed: str
    number: int
    payload: bytes  # the serialized mutant (or the corrupted bytes)
    as_bytes: bool  # hand the door bytes (byte-level kinds) rather than a parsed ModelProto
    inputs: list[np.ndarray] | None  # None: not run (declared shapes too large, or unknown)
    targets: tuple[str, ...]
    what: str
    int_steps: int = 0  # integer outputs may differ from onnxruntime's by this many steps (quantized contrib ops)


@dataclass(frozen=True)
class Outcome:
    status: str  # clean, vague, raw, mismatch, memory, hang, crash
    detail: str = ""


def _workbench_frame(error: BaseException) -> str:
    """The innermost workbench frame of the traceback, ``path:line``, for locating a raw error."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if "/workbench/" in f.filename]
    return f"{frames[-1].filename.rsplit('/workbench/', 1)[-1]}:{frames[-1].lineno}" if frames else "-"


def _raised_by_workbench(error: BaseException) -> bool:
    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and "/workbench/" in frames[-1].filename


def _error_outcome(error: BaseException, targets: tuple[str, ...], *, value_error_ok: bool) -> Outcome:
    from IPython.core.error import UsageError

    from workbench.errors import WorkbenchError

    message = str(error)
    first = message.splitlines()[0][:300] if message else ""
    if error.__cause__ is not None:  # the magic shows the failure it stands for above its one-line marker
        message += "\n" + str(error.__cause__)
    proper = isinstance(error, (WorkbenchError, UsageError)) or (
        value_error_ok and isinstance(error, ValueError) and _raised_by_workbench(error)
    )
    if isinstance(error, MemoryError):
        return Outcome("memory", f"MemoryError at {_workbench_frame(error)}")
    if not proper:
        return Outcome("raw", f"{type(error).__name__} at {_workbench_frame(error)}: {first}")
    # by name, so the sweep also runs against a tree without that class (the baseline before the fixes)
    if type(error).__name__ == "ModelRunError":  # a run-time failure names the node that failed: where it is known
        return Outcome("clean", f"ModelRunError: {first}")
    if targets and not any(t.lower() in message.lower() for t in targets):
        return Outcome("vague", f"{type(error).__name__}: {first} (names none of {list(targets)})")
    return Outcome("clean", f"{type(error).__name__}: {first}")


def _agree(ours: list[np.ndarray], theirs: list[np.ndarray], int_steps: int = 0) -> str:
    """'' when the outputs agree (integers within ``int_steps``), else what differs."""
    if len(ours) != len(theirs):
        return f"{len(ours)} outputs, onnxruntime gives {len(theirs)}"
    for index, (a, b) in enumerate(zip(ours, theirs)):
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape:
            return f"output {index}: shape {a.shape}, onnxruntime {b.shape}"
        if a.dtype.kind in "fc" and b.dtype.kind in "fc":
            if not np.allclose(a.astype(np.complex128), b.astype(np.complex128), rtol=1e-3, atol=1e-4, equal_nan=True):
                return f"output {index}: max |diff| {np.nanmax(np.abs(a.astype(np.float64) - b.astype(np.float64)))}"
        elif a.dtype == object and a.size and all(isinstance(e, dict) for e in (*a.ravel(), *b.ravel())):
            difference = _maps_differ(list(a.ravel()), list(b.ravel()))  # ZipMap: one {label: probability} per row
            if difference:
                return f"output {index}: {difference}"
        elif a.dtype.kind in "iu" and b.dtype.kind in "iu" and int_steps:
            steps = int(np.abs(a.astype(np.int64) - b.astype(np.int64)).max(initial=0))
            if steps > int_steps:
                return f"output {index}: {steps} integer steps apart (allowed {int_steps})"
        elif not np.array_equal(a, b):
            return f"output {index}: values differ ({a.dtype} vs {b.dtype})"
    return ""


def _maps_differ(ours: list[dict], theirs: list[dict]) -> str:
    """'' when two lists of {label: score} maps have the same labels and close scores, else the first row that differs."""
    for row, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        if list(a) != list(b) or not np.allclose(np.array(list(a.values()), np.float64),
                                                 np.array(list(b.values()), np.float64), rtol=1e-3, atol=1e-4):
            return f"row {row}: {a} vs {b}"
    return ""


def _onnxruntime(payload: bytes, inputs: list[np.ndarray]) -> list[np.ndarray] | None:
    """onnxruntime's outputs, or None when it refuses the model or the inputs."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4
    try:
        session = ort.InferenceSession(payload, options, providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]
        if len(names) != len(inputs):
            return None
        return session.run(None, dict(zip(names, inputs)))
    except Exception:  # noqa: BLE001 - any refusal by onnxruntime means "no reference"
        return None


def _exit_code(run: Any) -> int:
    """The command line's exit code; argparse's usage error (SystemExit 2, the message on stderr) counts as a refusal."""
    try:
        return int(run())
    except SystemExit as exit_:
        if exit_.code == 2:
            return 2
        raise


def run_onnx_case(case: OnnxCase) -> Outcome:
    """Call the case's door on its mutant; run the result on the case's inputs; compare with onnxruntime."""
    import onnx

    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            outputs = _call_onnx_door(case, onnx)
    except (Exception, SystemExit) as error:  # noqa: BLE001 - classified: that is the oracle's job
        return _error_outcome(error, case.targets, value_error_ok=False)
    if outputs is None or case.inputs is None:
        return Outcome("clean", "converted (not run)")
    reference = _onnxruntime(case.payload, case.inputs)
    if reference is None:
        return Outcome("clean", "ran; onnxruntime refuses the mutant")
    difference = _agree(outputs, reference, case.int_steps)
    return Outcome("mismatch", difference) if difference else Outcome("clean", "ran; agrees with onnxruntime")


def _call_onnx_door(case: OnnxCase, onnx: Any) -> list[np.ndarray] | None:
    source: Any = case.payload if case.as_bytes else onnx.ModelProto.FromString(case.payload)
    if case.door == "to_jax":
        import workbench as wb

        forward, params = wb.to_jax(source)
        if case.inputs is None:
            return None
        result = forward(params, *case.inputs)
        return [np.asarray(r) for r in (result if isinstance(result, tuple) else (result,))]
    if case.door == "backend":
        from workbench.onnx_to_jax.backend import Backend

        rep = Backend.prepare(source)
        return None if case.inputs is None else [np.asarray(r) for r in rep.run(case.inputs)]
    if case.door == "cli":
        from workbench import cli

        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "model.onnx"
            path.write_bytes(case.payload)
            stderr = io.StringIO()
            with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
                code = _exit_code(lambda: cli.main(["to-jax", str(path), "-o", str(Path(folder) / "out")]))
            if code != 0:
                from workbench.errors import WorkbenchError

                raise WorkbenchError(stderr.getvalue())  # the CLI's clean refusal, as text
        return None
    raise ValueError(f"unknown ONNX door {case.door!r}")


def run_jax_case(case: JaxCase) -> Outcome:
    """Call the case's JAX -> ONNX door; a model it returns is run by onnxruntime against the callable."""
    from tests.support.fault_jax_programs import PROGRAM_KIND

    if case.kind == PROGRAM_KIND:
        return run_program_mistake(case.seed)
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"), tempfile.TemporaryDirectory() as folder:
            warnings.simplefilter("ignore")
            checked = _call_jax_door(case, Path(folder))
    except (Exception, SystemExit) as error:  # noqa: BLE001 - classified: that is the oracle's job
        return _error_outcome(error, case.targets, value_error_ok=True)
    return Outcome("mismatch", checked) if checked else Outcome("clean", "converted")


def run_program_mistake(name: str) -> Outcome:
    """A real-program mistake (tests/support/fault_jax_programs.py) through ``wb.to_onnx``; compared when it converts."""
    import workbench as wb
    from tests.support.fault_jax_programs import MISTAKES

    call = MISTAKES[name]()  # building the program is the sweep's part: its errors are not the door's
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            model = wb.to_onnx(call.fn, call.inputs, **call.kwargs)
            checked = _compare_with_callable(call.fn, model) if call.compare else ""
    except (Exception, SystemExit) as error:  # noqa: BLE001 - classified: that is the oracle's job
        outcome = _error_outcome(error, call.targets, value_error_ok=True)
        if outcome.status == "clean" and call.error and call.error not in {c.__name__ for c in type(error).__mro__}:
            return Outcome("vague", f"{type(error).__name__}, not a {call.error}: {str(error).splitlines()[0][:200]}")
        return outcome
    if call.error:
        return Outcome("vague", f"converted; the mistake should be a {call.error}")
    return Outcome("mismatch", checked) if checked else Outcome("clean", "converted")


def _callable(case: JaxCase) -> Any:
    if case.callable_name is not None:
        return CALLABLES[case.callable_name]
    return SEEDS[case.seed][0]


def _call_jax_door(case: JaxCase, folder: Path) -> str:
    """'' when the door refused cleanly or converted a model that agrees with the callable, else the difference."""
    fn = _callable(case)
    kwargs = {k: resolve_path(v, folder) for k, v in case.kwargs.items()}
    if case.door == "to_onnx":
        import workbench as wb

        model = wb.to_onnx(fn, [resolve_spec(s) for s in case.inputs], **kwargs)
        return _compare_with_callable(fn, model)
    if case.door == "magic":
        return _run_magic(case, kwargs, folder)
    if case.door == "cli_export":
        from workbench import cli

        argv = ["export", f"tests.support.fault_jax_cases:{fn.__name__}"]
        for spec in case.inputs:
            argv += ["--input", spec_text(spec)]
        argv += ["-o", str(kwargs.get("path", folder / "m.onnx"))]
        if "opset" in kwargs:
            argv += ["--opset", str(kwargs["opset"])]
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            code = _exit_code(lambda: cli.main(argv))
        if code != 0:
            from workbench.errors import WorkbenchError

            raise WorkbenchError(stderr.getvalue())
        return ""
    raise ValueError(f"unknown JAX door {case.door!r}")


_SHELL: list[Any] = []


def _run_magic(case: JaxCase, kwargs: dict[str, Any], folder: Path) -> str:
    """``%%to_onnx <line>`` on a cell defining the seed callable, in a real IPython shell."""
    from IPython.core.interactiveshell import InteractiveShell

    if not _SHELL:
        shell = InteractiveShell.instance()
        shell.extension_manager.load_extension("workbench")
        _SHELL.append(shell)
    shell = _SHELL[0]
    line = (case.magic_line or "").replace(str(case.kwargs.get("path", "\0")), str(kwargs.get("path", "")))
    cell = f"from tests.support.fault_jax_cases import {_callable(case).__name__} as fuzz_fn\nfuzz_fn = fuzz_fn\n"
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        shell.run_cell_magic("to_onnx", line + " --fn fuzz_fn", cell)
    return ""


def _compare_with_callable(fn: Any, model: Any) -> str:
    """Run the model in onnxruntime and ``fn`` in JAX on the same random inputs (flat array arguments only)."""
    inputs = []
    rng = np.random.default_rng(0)
    for value in model.graph.input:
        tensor = value.type.tensor_type
        from onnx import helper

        shape = [d.dim_value if d.HasField("dim_value") else 2 for d in tensor.shape.dim]
        if int(np.prod(shape)) > 1 << 16:
            return ""
        inputs.append(rng.standard_normal(shape).astype(helper.tensor_dtype_to_np_dtype(tensor.elem_type)))
    reference = _onnxruntime(model.SerializeToString(), inputs)
    if reference is None:
        return "onnxruntime refuses the converted model"
    try:
        expected = fn(*inputs)
    except Exception:  # noqa: BLE001 - a pytree argument: not compared
        return ""
    expected_list = [np.asarray(e) for e in (expected if isinstance(expected, (tuple, list)) else (expected,))]
    return _agree(reference, expected_list)


__all__ = ["UNCLEAN", "OnnxCase", "Outcome", "run_jax_case", "run_onnx_case"]
