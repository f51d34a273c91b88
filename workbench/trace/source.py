"""Source locations of jaxpr equations: the user's ``file:line`` for every primitive.

JAX keeps a traceback per equation; ``source_info_util.user_frame`` skips JAX's
own frames. That helper is internal, so it is wrapped here, in one place.
"""

from __future__ import annotations

import os
from typing import Any

from jax._src import source_info_util

from workbench.errors import SourceLocation

_OWN_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_LIBRARY_MARKERS = (os.sep + "flax" + os.sep, os.sep + "equinox" + os.sep, os.sep + "jax" + os.sep, _OWN_PACKAGE_DIR)


def _is_library_frame(file_name: str) -> bool:
    return any(marker in file_name for marker in _LIBRARY_MARKERS)


def eqn_location(eqn: Any) -> SourceLocation | None:
    """The innermost user frame of an equation: not JAX, Flax, Equinox or the workbench itself.

    When every frame is library code (a Flax layer called by the user), the outermost library
    frame's caller is what JAX reports; we fall back to the first frame JAX considers user code.
    """
    traceback = eqn.source_info.traceback
    if traceback is None:
        return None
    first = None
    for frame in source_info_util.user_frames(traceback):
        if first is None:
            first = frame
        if not _is_library_frame(frame.file_name):
            return SourceLocation(frame.file_name, frame.start_line, frame.function_name)
    if first is None:
        return None
    return SourceLocation(first.file_name, first.start_line, first.function_name)


def eqn_scope(eqn: Any) -> str:
    """The equation's JAX name stack (``jit(f)/block``), empty when there is none."""
    return str(eqn.source_info.name_stack)
