"""Load what ``wb.save_jax`` wrote, as a user would: import the folder's ``load.py`` and call ``load()``."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Callable


def load_saved(folder: Path, module_name: str = "saved_load") -> tuple[Callable[..., Any], dict[str, Any]]:
    """``(forward, params)`` from the ``load.py`` in ``folder``."""
    spec = importlib.util.spec_from_file_location(module_name, Path(folder) / "load.py")
    assert spec is not None and spec.loader is not None, f"no load.py in {folder}"
    loader = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loader)
    return loader.load()
