"""Checkpoint files written atomically and read safely.

Lightning's default writer buffers the checkpoint and moves a temporary file from the system temp
folder onto the target; when that folder is on another file system (``/tmp`` vs the run's disk),
the move is a copy *into* ``last.ckpt``, and a kill or a full disk during that copy leaves a
truncated checkpoint. :class:`AtomicCheckpointIO` writes to a temporary file next to the target,
flushes it to disk, and renames it over the target (atomic on POSIX): at any moment the path holds
either the previous complete checkpoint or the new complete one. A failed write (full disk, quota,
permissions) removes the temporary file, leaves the previous checkpoint as it was, and raises a
:class:`CheckpointWriteError` saying so.

Reading (resuming) uses ``torch.load(weights_only=True)``: a file carrying a pickled payload is
refused with a :class:`~dfss.models.checkpoints.CheckpointError`, not executed.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from dfss.errors import UserError
from dfss.models.checkpoints import read_checkpoint

log = logging.getLogger(__name__)


class CheckpointWriteError(UserError, OSError):
    """A checkpoint could not be written; the previous file at that path is intact."""


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class _WriteErrorRecorder:
    """A binary file for ``torch.save`` that remembers the first ``OSError`` of its writes: torch's
    zip writer does not always pass such an error on, and may fail later with a ``RuntimeError``
    ("unexpected pos ...") that no longer says the disk was full."""

    def __init__(self, file: Any) -> None:
        self.file = file
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self.file.write(data)
        except OSError as error:
            self.error = self.error or error
            raise

    def flush(self) -> None:
        self.file.flush()


def _torch_save(checkpoint: dict[str, Any], file: Any) -> None:
    """``torch.save`` into ``file``, raising the write's own ``OSError`` when a write failed."""
    recorder = _WriteErrorRecorder(file)
    try:
        torch.save(checkpoint, recorder)
    except RuntimeError:
        if recorder.error is not None:
            raise recorder.error from None
        raise
    if recorder.error is not None:
        raise recorder.error


def save_atomic(checkpoint: dict[str, Any], path: str | Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, fsync, then rename over ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            _torch_save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        previous = (
            "the previous checkpoint there is intact" if path.is_file() else "no earlier checkpoint there"
        )
        raise CheckpointWriteError(
            error.errno, f"could not write checkpoint {path} ({error.strerror or error}); {previous}"
        ) from None
    _fsync_dir(path.parent)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint I/O: atomic writes, ``weights_only`` reads (``trainer.plugins``)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        save_atomic(checkpoint, path)

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict:
        return read_checkpoint(path, map_location=map_location or "cpu")
