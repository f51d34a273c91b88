"""Cumulative reductions: cumsum, cumprod, cummax, cummin, cumlogsumexp (also reverse)."""

from __future__ import annotations
