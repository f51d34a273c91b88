"""Sorting: sort, argsort (sort with iota operand), top_k."""

from __future__ import annotations
