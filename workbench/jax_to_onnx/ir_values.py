"""Small queries on onnx-ir values shared by the export passes and rewrite rules."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir


def constant_array(value: ir.Value | None) -> np.ndarray | None:
    """The array of an initializer or Constant output, or None when the value is computed at run time."""
    if value is None:
        return None
    tensor = ir.convenience.get_const_tensor(value)
    return None if tensor is None else tensor.numpy()
