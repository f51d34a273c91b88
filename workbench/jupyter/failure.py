"""What a failed ``%%to_onnx`` shows: one short message naming the user's line and what to change.

A conversion that fails inside the user's model (a ConvNet given ``-i B,3,32,32`` when it expects
channels last) raises deep in Flax and JAX; the chained traceback runs to a hundred lines through
workbench, Flax and JAX internals. The notebook gets instead:

    ✘ ConvNet → ONNX failed while tracing it with -i B,3,32,32
      at cell [5], line 9 in ConvNet.__call__:  h = nnx.relu(self.conv(x))
      ValueError: conv_general_dilated lhs feature dimension size ... but 32 // 1 != 3.
      What to change: ConvNet traces with -i B,32,32,3: it expects input 1 channels last (NHWC) ...
    ▸ full traceback (113 lines)        (also: %tb)

The user's line is the innermost frame of the error that is a notebook cell (else the innermost
that is not JAX, Flax, Equinox, the workbench or the standard library). What to change comes from
the error's kind; for shape errors the function is traced again with each input's dims in other
orders (a few, cheaply: tracing only), and a layout that traces is named.
"""

from __future__ import annotations

import html
import itertools
import os
import re
import sys
import sysconfig
import time
import traceback
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from workbench.errors import TraceError, WorkbenchError
from workbench.notebook_cells import cell_label

_LIBRARY_DIRS = tuple(
    os.path.join(path, "") for path in {sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"]}
)
_WORKBENCH_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "")
_LAYOUT_SEARCH_SECONDS = 8.0  # at most this long spent re-tracing with other input layouts
_MAX_LAYOUT_CANDIDATES = 8
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True)
class UserLine:
    """The line of the user's code the error came through."""

    where: str  # "cell [5], line 9" or "model.py:9"
    function: str
    text: str

    def __str__(self) -> str:
        return f"{self.where} in {self.function}" + (f":  {self.text}" if self.text else "")


def _is_user_file(file_name: str) -> bool:
    if cell_label(file_name) is not None:
        return True
    return not (file_name.startswith(_LIBRARY_DIRS) or file_name.startswith(_WORKBENCH_DIR) or file_name.startswith("<"))


def user_line(error: BaseException) -> UserLine | None:
    """The innermost frame of ``error`` (or of the errors it was raised from) in the user's code."""
    chain = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    for problem in reversed(chain):  # the root cause first: its traceback reaches deepest
        frames: list[tuple[types.FrameType, int]] = list(traceback.walk_tb(problem.__traceback__))
        for frame, line in reversed(frames):
            file_name = frame.f_code.co_filename
            if not _is_user_file(file_name):
                continue
            label = cell_label(file_name)
            where = f"{label}, line {line}" if label else f"{file_name}:{line}"
            text = traceback.FrameSummary(file_name, line, frame.f_code.co_name).line or ""
            return UserLine(where, frame.f_code.co_qualname, text.strip())
    return None


def root_cause(error: BaseException) -> BaseException:
    """The innermost error ``error`` was raised from (``raise ... from``)."""
    seen = []
    while error.__cause__ is not None and error not in seen:
        seen.append(error)
        error = error.__cause__
    return error


def _spec_parts(spec_text: str) -> tuple[list[str], str]:
    dims, _, dtype = spec_text.partition(":")
    return ([part.strip() for part in dims.split(",")] if dims.strip() else []), (f":{dtype}" if dtype else "")


def layout_candidates(spec_texts: Sequence[str]) -> list[tuple[int, str, str]]:
    """Other orders of one input's dims, most likely first: (input index, new spec text, description).

    Moving one axis: the channel axis of an image batch first (NCHW -> NHWC and back), then every
    other single move; a rank-2 input is swapped. Only distinct shapes are kept.
    """
    found: list[tuple[int, str, str]] = []
    for index, text in enumerate(spec_texts):
        dims, dtype = _spec_parts(text)
        rank = len(dims)
        if rank < 2:
            continue
        moves = [(1, rank - 1), (rank - 1, 1)] if rank >= 3 else []
        moves += [(a, b) for a, b in itertools.permutations(range(rank), 2) if (a, b) not in moves]
        seen = {tuple(dims)}
        for source, target in moves:
            order = list(dims)
            order.insert(target, order.pop(source))
            if tuple(order) in seen:
                continue
            seen.add(tuple(order))
            if rank == 4 and (source, target) == (1, 3):
                described = f"input {index + 1} channels last (NHWC), not channels first"
            elif rank == 4 and (source, target) == (3, 1):
                described = f"input {index + 1} channels first (NCHW), not channels last"
            else:
                described = f"input {index + 1} as ({', '.join(order)}), the same dims in another order"
            found.append((index, ",".join(order) + dtype, described))
    return found[:_MAX_LAYOUT_CANDIDATES]


def find_working_layout(
    traces: Callable[[list[str]], bool], spec_texts: Sequence[str], budget_seconds: float = _LAYOUT_SEARCH_SECONDS
) -> tuple[list[str], str] | None:
    """The first candidate layout for which ``traces(spec_texts)`` is True, within the time budget."""
    deadline = time.monotonic() + budget_seconds
    for index, new_text, described in layout_candidates(spec_texts):
        if time.monotonic() > deadline:
            return None
        texts = list(spec_texts)
        texts[index] = new_text
        if traces(texts):
            return texts, described
    return None


def _is_shape_error(root: BaseException) -> bool:
    """A shape check of JAX (or a broadcasting/shape complaint) rejected the traced values."""
    if not isinstance(root, (ValueError, TypeError)):
        return False
    frames = list(traceback.walk_tb(root.__traceback__))
    in_jax = bool(frames) and f"{os.sep}jax{os.sep}" in frames[-1][0].f_code.co_filename
    return in_jax or bool(re.search(r"shape|dimension|broadcast|incompatible", str(root), re.IGNORECASE))


def _inputs_text(spec_texts: Sequence[str], specs_option: str | None = None) -> str:
    """The inputs as the magic's line gave them: ``specs_option`` (``--specs NAME``) or one ``-i`` per spec text."""
    return specs_option or " ".join(f"-i {text}" for text in spec_texts)


def advice(
    root: BaseException, spec_texts: Sequence[str], function: str, traces: Callable[[list[str]], bool],
    *, in_user_code: bool = True, specs_option: str | None = None,
) -> str:  # fmt: skip
    """What to change, for the kinds of errors users hit when converting (never empty).

    ``specs_option``: how the inputs were given when not as ``-i`` texts (``--specs NAME``).
    """
    import jax.errors

    specs = _inputs_text(spec_texts, specs_option)
    if isinstance(root, jax.errors.InconclusiveDimensionOperation):
        return (
            f"this line needs the actual size of a symbolic dimension of {specs}; give that dimension a number "
            "(e.g. 1 instead of B), or compute with jnp/lax operations instead of Python ints."
        )
    if isinstance(root, (jax.errors.ConcretizationTypeError, jax.errors.TracerBoolConversionError,
                         jax.errors.TracerIntegerConversionError)):  # fmt: skip
        return (
            "this line turns a traced array into a Python value (if/while on an array, int(), .item()); "
            "use jnp.where or jax.lax.cond/while_loop, or pass that value as a Python constant instead of an input."
        )
    if _is_shape_error(root):
        working = find_working_layout(traces, spec_texts)
        if working is not None:
            texts, described = working
            new_specs = _inputs_text(texts)
            return (
                f"{function} traces with {new_specs}: it expects {described}. Convert with that spec "
                "(and give the model data in that layout), or transpose the input inside the function."
            )
        return f"the shapes do not fit this line: check that {specs} gives each input the shape it expects."
    if not in_user_code:
        return (
            "the error comes from the conversion, not from a line of yours: the message says what is wrong; "
            "if it looks like a bug of the workbench, the full traceback below is what to report."
        )
    return f"fix the error at this line (the function was traced with {specs}), or convert another function with --fn."


@dataclass
class ConversionFailure:
    """A failed conversion, summarised: shown by ``%%to_onnx`` instead of the chained traceback."""

    function: str
    spec_texts: list[str]
    error: BaseException
    line: UserLine | None
    what_to_change: str
    full_traceback: str
    specs_option: str | None = None  # ``--specs NAME`` when the inputs were not given as -i texts

    @property
    def root(self) -> BaseException:
        return root_cause(self.error)

    def shown_error(self) -> BaseException:
        """The error the message quotes: what tracing raised (the user's code), else the workbench's own
        error, which names the primitive and the place (a handler that failed, a bad model...)."""
        return self.root if isinstance(self.error, TraceError) else self.error

    def summary_lines(self) -> list[str]:
        root = self.shown_error()
        message = str(root).strip().splitlines()[0] if str(root).strip() else ""
        specs = _inputs_text(self.spec_texts, self.specs_option)
        lines = [f"✘ {self.function} → ONNX failed while converting it with {specs}"]
        if self.line is not None:
            lines.append(f"  at {self.line}")
        lines.append(f"  {type(root).__name__}: {message}")
        lines.append(f"  What to change: {self.what_to_change}")
        return lines

    def text(self) -> str:
        return "\n".join([*self.summary_lines(), "  (full traceback: %tb)"])

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        first, *rest = self.summary_lines()
        body = "".join(f"<div>{html.escape(line.strip())}</div>" for line in rest)
        count = self.full_traceback.count("\n") + 1
        page = (
            '<div class="workbench-failure" style="border-left:3px solid #c62828;padding:4px 10px;margin:4px 0">'
            f'<div style="font-weight:600;color:#c62828">{html.escape(first)}</div>'
            f'<div style="font-family:monospace;white-space:pre-wrap;margin:2px 0 2px 12px">{body}</div>'
            f"<details><summary>full traceback ({count} lines; also <code>%tb</code>)</summary>"
            f'<pre style="font-size:85%;overflow:auto">{html.escape(self.full_traceback)}</pre></details></div>'
        )
        return {"text/html": page, "text/plain": self.text()}


class ConversionFailed(WorkbenchError):
    """Raised by ``%%to_onnx`` after showing a :class:`ConversionFailure`: marks the cell failed in one line.

    IPython shows ``_render_traceback_()`` instead of a traceback. ``%tb`` afterwards prints the full
    traceback of the conversion error itself: IPython records this exception as the last one
    (``sys.last_value``) just before asking it for its lines, and it hands that record over to the
    error it stands for.
    """

    def __init__(self, failure: ConversionFailure) -> None:
        super().__init__(f"{failure.function} was not converted: {type(failure.root).__name__} (details above)")
        self.failure = failure

    def _render_traceback_(self) -> list[str]:
        error = self.failure.error
        sys.last_type, sys.last_value, sys.last_traceback = type(error), error, error.__traceback__
        if sys.version_info >= (3, 12):
            sys.last_exc = error
        return [f"ConversionFailed: {self}; %tb shows the full traceback"]


def plain_traceback(error: BaseException, format_exception: Callable[[BaseException], list[str]] | None = None) -> str:
    """The chained traceback as plain text (IPython's formatting when given, without colours)."""
    lines = format_exception(error) if format_exception is not None else traceback.format_exception(error)
    return _ANSI.sub("", "".join(lines)).rstrip()


def describe_failure(
    function: str, spec_texts: Sequence[str], error: BaseException, traces: Callable[[list[str]], bool],
    format_exception: Callable[[BaseException], list[str]] | None = None, specs_option: str | None = None,
) -> ConversionFailure:  # fmt: skip
    """Summarise ``error`` (raised converting ``function`` with ``spec_texts``, or the specs of ``specs_option``)
    for the notebook."""
    root = root_cause(error)
    line = user_line(error)
    return ConversionFailure(
        function=function,
        spec_texts=list(spec_texts),
        error=error,
        line=line,
        what_to_change=advice(root, spec_texts, function, traces, in_user_code=line is not None, specs_option=specs_option),
        full_traceback=plain_traceback(error, format_exception),
        specs_option=specs_option,
    )


__all__ = [
    "ConversionFailed", "ConversionFailure", "UserLine", "advice", "describe_failure", "find_working_layout",
    "layout_candidates", "plain_traceback", "root_cause", "user_line",
]  # fmt: skip
