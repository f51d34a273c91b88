"""Hand serialized models from the kernel to the Jupyter server extension.

The kernel and the Jupyter server are separate processes on one machine. The
server extension announces a private directory (mode 0700, under the Jupyter
runtime dir) and its base URL through environment variables that the kernels
it starts inherit. The kernel writes ``<directory>/<token>.onnx`` atomically;
the server serves a model only when the requested token has the exact token
form and that file exists, so no request can name any other file.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from pathlib import Path

from workbench.files import write_bytes_atomic

# Set by the server extension in its own environment; kernels it launches inherit them.
ENV_STORE_DIR = "WORKBENCH_VIEWER_STORE"
ENV_BASE_URL = "WORKBENCH_VIEWER_BASE_URL"

TOKEN_PATTERN = r"[A-Za-z0-9_-]{24}"
_TOKEN = re.compile(rf"^{TOKEN_PATTERN}$")
_SUFFIX = ".onnx"
# Models older than this are removed when a new one is stored (a viewer is a notebook-session thing).
MAX_AGE_SECONDS = 7 * 24 * 3600


def new_token() -> str:
    """A fresh unguessable key for one viewed model (24 URL-safe characters, 144 bits)."""
    return secrets.token_urlsafe(18)


def is_token(text: str) -> bool:
    return bool(_TOKEN.match(text))


def default_store_dir() -> Path:
    from jupyter_core.paths import jupyter_runtime_dir

    return Path(jupyter_runtime_dir()) / "workbench-viewer"


class ModelStore:
    """The private directory of models waiting to be shown by the server extension."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)

    def ensure(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)

    def _path(self, token: str) -> Path:
        if not is_token(token):
            raise ValueError(f"{token!r} is not a model token")
        return self.directory / f"{token}{_SUFFIX}"

    def put(self, token: str, data: bytes) -> Path:
        """Write the model atomically (temp file in the same directory, then os.replace).

        The file gets the mode of any new file (0o666 less the umask); the directory (0700) is what
        keeps the models private to this user.
        """
        self.ensure()
        target = self._path(token)
        write_bytes_atomic(target, data)
        self.prune()
        return target

    def get(self, token: str) -> bytes | None:
        """The stored model for ``token``, or None if the token is malformed or unknown."""
        if not is_token(token):
            return None
        try:
            return self._path(token).read_bytes()
        except FileNotFoundError:
            return None

    def prune(self, max_age_seconds: float = MAX_AGE_SECONDS) -> None:
        """Remove stored models older than ``max_age_seconds``."""
        cutoff = time.time() - max_age_seconds
        for path in self.directory.glob(f"*{_SUFFIX}"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
            except FileNotFoundError:  # another kernel pruned it first
                continue
