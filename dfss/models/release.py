"""Release weights: a trained checkpoint cut down to what using the model needs, in half precision.

A ``train.py`` checkpoint carries the optimizer state, the raw weights beside their EMA average and,
for a distilled student, the frozen teacher: several times the model. :func:`release_checkpoint`
keeps the weights that evaluation uses (the EMA average when there is one), as float16 by default
(a tensor whose values float16 cannot hold stays float32), with the run's config, class list, epoch
and step. The result is still a DFSS checkpoint (``dfss_config`` + ``state_dict``), so
``evaluate.py ckpt_path=``, ``dfss-predict ckpt=``, ``dfss-export ckpt=`` and
``teacher.ckpt_path=`` take it as they take the full one; the weights go back to float32 when they
are loaded into the model. It cannot resume a training (no optimizer).

:func:`write_release` writes it atomically beside ``<file>.sha256`` (``sha256sum -c`` format).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch

from dfss.fileio import open_atomic, write_text_atomic
from dfss.models.checkpoints import CheckpointError, weights_kind

RELEASE_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
KEPT_KEYS = ("dfss_config", "dfss_classes", "epoch", "global_step")


def release_checkpoint(
    checkpoint: dict[str, Any], *, dtype: str = "float16", source: str | None = None
) -> dict[str, Any]:
    """``checkpoint``'s evaluation weights (``ema.module.*`` when it has them, else ``model.*``) with
    their floating-point tensors in ``dtype``, its config, classes, epoch and step, and a
    ``dfss_release`` entry saying what was kept and from where."""
    if dtype not in RELEASE_DTYPES:
        raise CheckpointError(f"dtype must be one of {tuple(RELEASE_DTYPES)}, got {dtype!r}")
    kind = weights_kind(checkpoint)
    prefix = "ema.module." if kind == "ema" else "model."
    cast = RELEASE_DTYPES[dtype]
    state = {k: _cast(v, cast) for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
    if not state:
        raise CheckpointError("the checkpoint holds no 'model.' or 'ema.module.' weights")
    released = {k: checkpoint[k] for k in KEPT_KEYS if k in checkpoint}
    released["state_dict"] = state
    released["dfss_release"] = {"weights": kind, "dtype": dtype, "source": source}
    return released


def _cast(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``tensor`` in ``dtype`` if it is floating point and its values fit the type's range, else
    unchanged: the batch-norm running variances of a YOLOX, fed 0–255 pixels, reach 1e5, past
    float16's 65504 (they would load as inf)."""
    if not tensor.is_floating_point():
        return tensor.clone()
    cast = tensor.to(dtype)
    fits = bool(torch.isfinite(cast).all()) or not bool(torch.isfinite(tensor).all())
    return cast if fits else tensor.clone()


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_release(released: dict[str, Any], path: str | os.PathLike) -> str:
    """Save ``released`` to ``path`` (temporary file, then rename: never half-written) and its
    ``<path>.sha256``; returns the sha256."""
    path = Path(path)
    with open_atomic(path, "wb") as f:
        torch.save(released, f)
    sha = sha256_of(path)
    write_text_atomic(path.with_name(path.name + ".sha256"), f"{sha}  {path.name}\n")
    return sha
