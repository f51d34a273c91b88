"""Name notebook code the way the notebook shows it: ``cell [5], line 3``, not ipykernel's temp file.

ipykernel compiles each cell under a file name such as ``/tmp/ipykernel_812/3945713960.py`` (a
hash of the code); IPython's compiler remembers which execution count each of those names had.
When an IPython shell runs in this process, :func:`cell_number` asks it; IPython is never imported
here (``import workbench`` stays light), only used if something already imported it.
"""

from __future__ import annotations

import re
import sys

_IN_PROMPT = re.compile(r"^In\[(\d+)\]$")


def cell_number(file_name: str) -> int | None:
    """The execution count of the notebook cell compiled as ``file_name``, or None for a real file."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return None
    shell = ipython.get_ipython()
    if shell is None:
        return None
    named = shell.compile.format_code_name(file_name)  # ("Cell", "In[5]") for a cell, None otherwise
    if named is None:
        return None
    match = _IN_PROMPT.match(named[1])
    return int(match.group(1)) if match else None


def cell_label(file_name: str) -> str | None:
    """``cell [5]`` for the code of notebook cell 5, or None for a real file."""
    number = cell_number(file_name)
    return None if number is None else f"cell [{number}]"


__all__ = ["cell_label", "cell_number"]
