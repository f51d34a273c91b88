"""Convolutions and pooling: conv_general_dilated (1/2/3-D, transposed), reduce_window max/sum (pooling)."""

from __future__ import annotations
