"""Atomic file writes (temp file in the same folder + ``os.replace``): readers see the old file or the new one, never half.

Every writer of the workbench creates its temp file with :func:`open_temp_beside`, so what it writes
gets the permissions of any file a program creates (0o666 less the umask: 0644 under umask 022),
readable by a model server, a teammate or a web server running as another user. ``tempfile.mkstemp``
would create it 0600.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

# A clash of 48 random bits is practically impossible; the bound only keeps a broken folder from looping forever.
_TEMP_NAME_ATTEMPTS = 100


def open_temp_beside(target: Path) -> tuple[int, Path]:
    """Create a new, empty temp file in ``target``'s folder; return its open descriptor and its path.

    Written by hand rather than with ``tempfile.mkstemp``, whose files are always 0600: the file is
    created like ``open()`` creates one (mode 0o666, which the kernel reduces by the umask and any
    default ACL), exclusively (``O_EXCL``), under a hidden random name ``.<name>.<hex>.tmp``. The
    caller writes it and moves it onto ``target`` with ``os.replace``, or unlinks it on failure.
    """
    for _ in range(_TEMP_NAME_ATTEMPTS):
        candidate = target.parent / f".{target.name}.{secrets.token_hex(6)}.tmp"
        try:
            return os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), candidate
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temp file beside {target}: {_TEMP_NAME_ATTEMPTS} names were taken")


def create_temp_beside(target: Path) -> Path:
    """Like :func:`open_temp_beside`, closed: for a library that writes the file by name.

    A library that opens an existing file for writing keeps its mode, so the result still gets
    0o666 less the umask even where the library would create a new file 0600 (onnx's external data).
    """
    fd, path = open_temp_beside(target)
    os.close(fd)
    return path


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see either the old file or the complete new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_path = open_temp_beside(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path, payload: Any) -> None:
    """JSON with ``allow_nan=False``: browsers' ``JSON.parse`` rejects NaN/Infinity literals."""
    write_text_atomic(path, json.dumps(payload, indent=1, allow_nan=False) + "\n")


def copy_file_atomic(source: Path, target: Path) -> None:
    """Copy the bytes of ``source`` (not its mode: the copy is a new file under the umask) atomically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_path = open_temp_beside(target)
    try:
        with os.fdopen(fd, "wb") as writer, open(source, "rb") as reader:
            shutil.copyfileobj(reader, writer)
        os.replace(tmp_path, target)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
