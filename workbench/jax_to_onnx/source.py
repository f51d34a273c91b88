"""Source locations of jaxpr equations: the user's ``file:line`` for every primitive.

JAX keeps a traceback per equation; its internal ``source_info_util`` tells JAX's own frames
from user code and decodes a frame (reached through :mod:`workbench.compat`).
"""

from __future__ import annotations

import functools
import os
import types
from typing import Any

from workbench.compat import decode_frame, is_user_filename
from workbench.errors import SourceLocation
from workbench.notebook_cells import cell_label

_OWN_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# libraries whose frames are never "your line": the model and solver libraries users call into
_LIBRARIES = ("flax", "equinox", "jax", "diffrax", "optimistix", "lineax", "haiku", "keras", "transformers", "optax")
_LIBRARY_MARKERS = (*(os.sep + name + os.sep for name in _LIBRARIES), _OWN_PACKAGE_DIR)
# the model zoo is written as a user would write models: its frames are user code
_USER_FILES_IN_PACKAGE = (os.path.join(_OWN_PACKAGE_DIR, "zoo.py"),)


_JAX_INTERNAL, _LIBRARY, _USER = 0, 1, 2


@functools.lru_cache(maxsize=None)
def _frame_kind(file_name: str) -> int:
    """JAX's own frame (never reported), another library's (reported when no user frame exists), or the user's."""
    if file_name in _USER_FILES_IN_PACKAGE:
        return _USER
    if not is_user_filename(file_name):
        return _JAX_INTERNAL
    return _LIBRARY if any(marker in file_name for marker in _LIBRARY_MARKERS) else _USER


@functools.lru_cache(maxsize=8192)
def _location(code: types.CodeType, lasti: int) -> SourceLocation:
    # the blocks of a model repeat the same frames: decoded once per (code, instruction)
    frame = decode_frame(code, lasti)
    return SourceLocation(frame.file_name, frame.start_line, frame.function_name, cell=cell_label(frame.file_name))


def eqn_location(eqn: Any) -> SourceLocation | None:
    """The innermost user frame of an equation: not JAX, Flax, Equinox or the workbench itself.

    When every frame is library code (a Flax layer called by the user), the outermost library
    frame's caller is what JAX reports; we fall back to the first frame JAX considers user code.
    (The raw frames are filtered by file name first and only the chosen one is decoded: decoding
    every frame of every equation was a tenth of the lowering time.)
    """
    return _find_location(eqn, user_only=False)


def eqn_user_location(eqn: Any) -> SourceLocation | None:
    """The innermost frame of the user's own code (never JAX, Flax, Equinox, site-packages), or None."""
    return _find_location(eqn, user_only=True)


def _find_location(eqn: Any, *, user_only: bool) -> SourceLocation | None:
    traceback = eqn.source_info.traceback
    if traceback is None:
        return None
    codes, lastis = traceback.raw_frames()
    first = None
    for code, lasti in zip(codes, lastis):
        kind = _frame_kind(code.co_filename)
        if kind == _JAX_INTERNAL:
            continue
        if kind == _USER:
            return _location(code, lasti)
        if first is None:
            first = (code, lasti)
    return None if first is None or user_only else _location(*first)


def eqn_scope(eqn: Any) -> str:
    """The equation's JAX name stack (``jit(f)/block``), empty when there is none."""
    return str(eqn.source_info.name_stack)
