"""Atomic file writes: a failed or interrupted write never destroys the file that was there.

One implementation for the whole package (results, checkpoints, exports): write a uniquely named temporary file in
the target's folder (``tempfile.mkstemp``, so two writers never share it), flush and ``fsync`` it, then
``os.replace`` it onto the target (atomic on POSIX and Windows within one file system). On any error the temporary
file is removed and the old file is left as it was.
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

__all__ = ["atomic_path", "atomic_write", "write_text"]


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; when the ``with`` block succeeds, fsync it and move it onto ``path``.

    For writers that want a file name (``torch.save``, ``safetensors.save_file``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        yield Path(temporary)
        with open(temporary, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Call ``write(temporary_path)``, then move the result onto ``path`` atomically. Returns ``path``."""
    with atomic_path(path) as temporary:
        write(temporary)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))
