"""Durable small-file writes: write a temporary file beside the target, fsync, rename.

Readers see the old file or the new one, never a torn one; a killed process leaves at
most a stray temporary file. The files are their owner's only (0600, from ``mkstemp``), and
``private_dir`` makes the folders they live in the owner's only (0700), whatever the umask.
``open_without_links`` opens a file with no symbolic link anywhere on its path.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable

from .errors import InputError, StoreError


def atomic_write(path: Path, write: Callable[[IO[Any]], Any], mode: str = "wb") -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, fsync it, then rename it over ``path``.

    Example:
        >>> atomic_write(Path("vectors.npy"), lambda f: np.save(f, vectors))
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def private_dir(path: Path) -> Path:
    """``path`` as a directory, it and each missing parent created 0700 (only its owner may list or enter it),
    whatever the umask; folders that already exist keep their mode (chosen by their owner)."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            continue  # made meanwhile by another process: its mode is its own
        os.chmod(folder, 0o700)
    return path


def read_json(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``, or {} when there is no such file; StoreError if unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise StoreError(f"{path}: unreadable: {e}") from e
    if not isinstance(data, dict):
        raise StoreError(f"{path}: expected a JSON object")
    return data


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Replace ``path`` with ``data`` as JSON, atomically and durably."""
    try:
        text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False)
    except (TypeError, ValueError) as e:
        raise InputError(f"{path.name}: not JSON-serialisable: {e}") from e
    atomic_write(path, lambda f: f.write(text), "w")


def open_without_links(path: str) -> int:
    """A read-only descriptor on ``path`` (absolute), opened one component at a time, each with
    ``O_NOFOLLOW``: a link anywhere on the path, also one swapped in meanwhile, makes it fail."""
    parts = Path(path).parts
    if not Path(path).is_absolute() or len(parts) < 2:
        raise FileNotFoundError(path)
    if os.open not in os.supports_dir_fd:  # no openat: resolve and compare instead (races remain)
        if os.path.realpath(path) != os.path.normpath(path):
            raise FileNotFoundError(path)
        return os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    directory = os.open(parts[0], os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts[1:-1]:
            inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=directory)
            os.close(directory)
            directory = inner
        return os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0), dir_fd=directory)
    finally:
        os.close(directory)
