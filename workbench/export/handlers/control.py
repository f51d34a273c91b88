"""Control flow: cond/switch → If, while/fori_loop → Loop, scan (forward and reverse) → Loop or Scan."""

from __future__ import annotations
