"""Atomic file writes: readers see the old file (or folder) or the new one, never half, never a mix.

Every writer of the workbench goes through here:

- :func:`replacing` / :func:`write_bytes_atomic`: a temp file beside the target, renamed onto it.
- :func:`staging_folder` + :func:`commit_folder`: a folder of files written as one unit (``save_jax``),
  swapped with the old folder in one step.
- :func:`folder_lock`: writers into one folder take turns (threads and processes alike), so two
  writes of one target give one complete result, and a temp file found under the lock can only be
  left over from a writer that died (:func:`remove_stale_temps` removes it: a crash neither leaves
  its temp files for good nor makes the next write append to them).

Temp files and staging folders are named ``.<target name>.<12 hex digits>.tmp`` beside their target
and get the permissions of any file a program creates (0o666 less the umask: 0644 under umask 022),
readable by a model server, a teammate or a web server running as another user; ``tempfile.mkstemp``
would create them 0600. A failed write (disk full, permissions) raises :class:`WriteError` naming the
target, after removing what it had written.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import re
import secrets
import shutil
import stat
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from workbench.errors import WorkbenchError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: writers of one process still take turns
    fcntl = None  # type: ignore[assignment]

# A clash of 48 random bits is practically impossible; the bound only keeps a broken folder from looping forever.
_TEMP_NAME_ATTEMPTS = 100
_TEMP_HEX_DIGITS = 12


class WriteError(WorkbenchError, OSError):
    """Writing a file failed (disk full, no permission, a path through a file...); nothing was left half-written."""

    def __str__(self) -> str:
        """The message alone: OSError's own form starts with ``[Errno 21]``, which says nothing to the user."""
        return self.strerror if self.strerror else super().__str__()


def temp_name(target_name: str) -> str:
    """A fresh temp name for ``target_name``: ``.<target name>.<12 hex digits>.tmp``."""
    return f".{target_name}.{secrets.token_hex(_TEMP_HEX_DIGITS // 2)}.tmp"


def _temp_pattern(target_name: str) -> re.Pattern[str]:
    return re.compile(rf"\.{re.escape(target_name)}\.[0-9a-f]{{{_TEMP_HEX_DIGITS}}}\.tmp")


def open_temp_beside(target: Path) -> tuple[int, Path]:
    """Create a new, empty temp file in ``target``'s folder; return its open descriptor and its path.

    Written by hand rather than with ``tempfile.mkstemp``, whose files are always 0600: the file is
    created like ``open()`` creates one (mode 0o666, which the kernel reduces by the umask and any
    default ACL), exclusively (``O_EXCL``), under :func:`temp_name`. Call it while holding
    :func:`folder_lock` on the folder (:func:`replacing` does), so that a later writer can tell a
    temp file left by a crash from one being written.
    """
    for _ in range(_TEMP_NAME_ATTEMPTS):
        candidate = target.parent / temp_name(target.name)
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


# ------------------------------------------------------------------------------ taking turns
_held = threading.local()  # the folders this thread holds locked, with how often (the lock is reentrant)
_fallback_locks: dict[str, threading.RLock] = {}
_fallback_guard = threading.Lock()


@contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold ``folder`` exclusively: other threads and processes that write into it wait.

    An advisory ``flock`` on the folder itself (no lock file to leave behind); released by the
    kernel when the holder dies, which is what lets :func:`remove_stale_temps` trust what it finds.
    Reentrant within a thread. Where ``flock`` is missing or refused (Windows, some network file
    systems) the writers of this process still take turns.
    """
    key = os.path.realpath(folder)
    counts: dict[str, int] = _held.__dict__.setdefault("counts", {})
    if counts.get(key):
        counts[key] += 1
        try:
            yield
        finally:
            counts[key] -= 1
        return
    with _lock_folder(key):
        counts[key] = 1
        try:
            yield
        finally:
            del counts[key]


@contextmanager
def _lock_folder(key: str) -> Iterator[None]:
    try:
        fd = os.open(key, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as error:
        raise WriteError(error.errno, f"cannot open the folder {key} to write into it: {error.strerror}") from error
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError as error:
                if error.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EBADF, errno.EINVAL):
                    raise
            else:
                yield
                return
        with _fallback_guard:
            lock = _fallback_locks.setdefault(key, threading.RLock())
        with lock:
            yield
    finally:
        os.close(fd)  # releases the flock


def remove_stale_temps(target: Path) -> list[Path]:
    """Remove the temp files and staging folders of ``target`` that a killed writer left; return them.

    Call it holding :func:`folder_lock` on the target's folder: every writer takes that lock before
    it creates a temp name for the target, so whatever matches now belongs to no live writer.
    """
    pattern = _temp_pattern(target.name)
    removed = []
    try:
        entries = list(os.scandir(target.parent))
    except FileNotFoundError:
        return removed
    for entry in entries:
        if pattern.fullmatch(entry.name):
            path = Path(entry.path)
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    return removed


# ------------------------------------------------------------------------------ folders
def ensure_folder(folder: Path, what: str) -> None:
    """Create ``folder`` (and its parents) or fail with a :class:`WriteError` that says why."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as error:
        blocker = next((p for p in [folder, *folder.parents] if p.exists() and not p.is_dir()), folder)
        raise WriteError(
            errno.ENOTDIR, f"cannot write {what} into {folder}: {blocker} is a file, not a folder; choose another path."
        ) from error
    except OSError as error:
        raise WriteError(error.errno, f"cannot create the folder {folder} for {what}: {error.strerror}.") from error


def existing_folder(folder: Path, what: str) -> None:
    """Fail with a :class:`WriteError` unless ``folder`` is an existing folder."""
    if folder.is_dir():
        return
    blocker = next((p for p in [folder, *folder.parents] if p.exists() and not p.is_dir()), None)
    reason = f"{blocker} is a file, not a folder" if blocker is not None else f"folder {folder} does not exist"
    raise WriteError(errno.ENOTDIR if blocker else errno.ENOENT, f"cannot write {what} to {folder}: {reason}.")


@contextmanager
def write_errors(what: str) -> Iterator[None]:
    """Turn an ``OSError`` of the block (disk full, permissions) into a :class:`WriteError` naming ``what``."""
    try:
        yield
    except WriteError:
        raise
    except OSError as error:
        reason = error.strerror or str(error)
        hint = " Free some space and write again." if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) else ""
        raise WriteError(error.errno, f"cannot write {what}: {reason}.{hint} The previous files were kept.") from error


# ------------------------------------------------------------------------------ one file
@contextmanager
def replacing(target: Path) -> Iterator[Path]:
    """Yield a fresh temp path beside ``target``; when the block ends without error it replaces ``target``.

    The folder is locked for the duration (see :func:`folder_lock`), stale temp files of ``target``
    are removed first, and the temp file is removed when the block fails.
    """
    ensure_folder(target.parent, target.name)
    with folder_lock(target.parent), write_errors(str(target)):
        remove_stale_temps(target)
        temp = create_temp_beside(target)
        try:
            yield temp
            os.replace(temp, target)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see either the old file or the complete new one."""
    with replacing(Path(path)) as temp:
        with open(temp, "wb") as handle:
            handle.write(data)


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path, payload: Any) -> None:
    """JSON with ``allow_nan=False``: browsers' ``JSON.parse`` rejects NaN/Infinity literals."""
    write_text_atomic(path, json.dumps(payload, indent=1, allow_nan=False) + "\n")


def copy_file_atomic(source: Path, target: Path) -> None:
    """Copy the bytes of ``source`` (not its mode: the copy is a new file under the umask) atomically."""
    with open(source, "rb") as reader:  # a missing source is the caller's FileNotFoundError, not a write error
        with replacing(Path(target)) as temp, open(temp, "wb") as writer:
            shutil.copyfileobj(reader, writer)


# ------------------------------------------------------------------------------ a folder as one unit
def staging_folder(target: Path) -> Path:
    """Create an empty staging folder beside ``target`` (hold :func:`folder_lock` on its parent)."""
    for _ in range(_TEMP_NAME_ATTEMPTS):
        candidate = target.parent / temp_name(target.name)
        try:
            candidate.mkdir(mode=0o777)  # like any new folder: 0o777 less the umask
            return candidate
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a staging folder beside {target}: {_TEMP_NAME_ATTEMPTS} names were taken")


def commit_folder(staging: Path, target: Path) -> None:
    """Put the complete ``staging`` folder in place of ``target`` in one step; the old one is removed.

    With ``target`` absent this is one ``rename``. With ``target`` present, Linux swaps the two
    folders atomically (``renameat2`` with ``RENAME_EXCHANGE``): a reader sees every file of the old
    folder or every file of the new one. Elsewhere the old folder is renamed aside first, so a
    reader may find no folder for a moment, but never a mix. Hold :func:`folder_lock` on the parent.
    """
    if not target.exists():
        os.rename(staging, target)
        return
    os.chmod(staging, stat.S_IMODE(target.stat().st_mode))  # the folder keeps the mode it had
    if _exchange(staging, target):
        shutil.rmtree(staging)  # now holds the old files
        return
    aside = target.parent / temp_name(target.name)
    os.rename(target, aside)
    os.rename(staging, target)
    shutil.rmtree(aside)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False where that is unavailable.

    Python has no binding for ``renameat2``, hence the ctypes call: the atomic swap is what lets
    ``save_jax`` replace a folder of four files as one unit.
    """
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:  # pragma: no cover - glibc before 2.28
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # a file system without the exchange
        return False
    raise OSError(code, os.strerror(code), str(second))
