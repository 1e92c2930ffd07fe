"""Writing files so that a crash or a kill never leaves a half-written one behind."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


def umask_mode(mode: int = 0o666) -> int:
    """``mode`` less the process's umask: what ``open()`` would create (0o644 under umask 022)."""
    current = os.umask(0)
    os.umask(current)
    return mode & ~current


@contextlib.contextmanager
def open_atomic(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """A temporary file beside ``path``, opened in ``mode`` (``"w"``: UTF-8 text, ``"wb"``: bytes),
    renamed over ``path`` when the block ends and removed if it raises: ``path`` is never
    half-written. The file gets the permissions a plain ``open()`` gives (the umask's), not
    ``mkstemp``'s private 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            os.fchmod(f.fileno(), umask_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through :func:`open_atomic`."""
    with open_atomic(path) as f:
        f.write(text)


def write_json_atomic(path: str | os.PathLike, obj: Any, *, indent: int | None = None) -> None:
    """:func:`write_text_atomic` of ``obj`` as json (newline-terminated)."""
    write_text_atomic(path, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")


def shown_path(path: str | os.PathLike) -> str:
    """``path`` relative to the working directory when it is under it (as a reader would type it)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
