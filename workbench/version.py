"""The workbench's version, importable from every layer (``workbench.__version__`` re-exports it).

Keep it equal to ``version`` in pyproject.toml.
"""

__version__ = "0.1.0"
