"""Loading third-party weight files (official YOLOX ``.pth``, torchvision FCOS) safely and strictly.

One reader and one loader for every architecture: files are read with
``torch.load(weights_only=True)`` (a pickled payload is refused, never executed); loading is all or
nothing: the only tolerated difference is the class predictor when the class count differs, which
the caller re-initialises and which is reported. Any other missing, unexpected or mis-shaped key is
a :class:`WeightsError` naming the keys and shapes — there is no silent partial load.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from dfss.errors import UserError

log = logging.getLogger(__name__)
MAX_LISTED = 10


class WeightsError(UserError, ValueError):
    """A weights file that cannot be used: unreadable, unsafe, or for another architecture."""


class WeightsNotFoundError(WeightsError, FileNotFoundError):
    """The weights file does not exist."""


def load_refusal_reason(error: BaseException) -> str:
    """Why ``torch.load(weights_only=True)`` refused a file, without torch's advice to load it with
    ``weights_only=False``: that runs whatever code the file carries, the one thing not to do with a
    file one does not trust."""
    advice = ("Weights only load failed", "Check the documentation", "Please ", "Re-running", "(1)", "(2)")
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    kept = [line.split(" Please use", 1)[0] for line in lines if not line.startswith(advice)]
    kept = [line.removeprefix("WeightsUnpickler error: ") for line in kept]
    return " ".join(kept) or f"{type(error).__name__}: the file holds objects that are not plain tensors"


@dataclass(frozen=True)
class LoadReport:
    """What a weights load did."""

    path: Path
    num_loaded: int  # tensors copied from the file
    reinitialized: tuple[str, ...]  # class-predictor keys left out and re-initialised
    file_num_classes: int | None  # classes of the file's class predictor (None if it has none)

    @property
    def class_head_reinitialised(self) -> bool:
        return bool(self.reinitialized)


def list_keys(items: list[str]) -> str:
    """``a, b, c, … (N in all)``: at most :data:`MAX_LISTED` items."""
    shown = ", ".join(items[:MAX_LISTED])
    return shown + (f", … ({len(items)} in all)" if len(items) > MAX_LISTED else "")


def state_dict_problems(
    expected: Mapping[str, Tensor],
    given: Mapping[str, Tensor],
    *,
    source: str,
    skip_shapes: Iterable[str] = (),
) -> list[str]:
    """What keeps ``given`` (from a ``source``: "file", "checkpoint") from loading strictly into a
    model whose state is ``expected``: missing keys, unexpected keys, shape mismatches (those in
    ``skip_shapes`` excepted). Empty when it fits."""
    skip = set(skip_shapes)
    missing = sorted(k for k in expected if k not in given)
    unexpected = sorted(k for k in given if k not in expected)
    shapes = [
        f"{k}: {source} {tuple(given[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(set(given) & set(expected))
        if given[k].shape != expected[k].shape and k not in skip
    ]
    return [
        f"{what} ({len(keys)}): {list_keys(keys)}"
        for what, keys in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches", shapes),
        )
        if keys
    ]


WRAPPER_KEYS = ("model", "state_dict", "model_state_dict")  # Megvii, torchvision's references, common scripts
DDP_PREFIX = "module."


def read_state_dict(path: str | Path, *, wrapper_keys: Iterable[str] = WRAPPER_KEYS) -> dict[str, Tensor]:
    """The ``name -> tensor`` dict in ``path``: a bare state dict, or one under a ``wrapper_keys`` key
    (``{"model": ...}``, ``{"state_dict": ...}``), with a DDP ``module.`` prefix on every key dropped."""
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(f"weights file not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # unsafe pickles, zip errors, text files: several types across versions
        raise WeightsError(
            f"{path} is not a loadable PyTorch weights file (read with weights_only=True, so pickled "
            f"code is refused): {load_refusal_reason(error)}"
        ) from None
    wrapper_keys = tuple(wrapper_keys)
    if isinstance(payload, Mapping):
        for key in wrapper_keys:
            if isinstance(payload.get(key), Mapping):
                payload = payload[key]
                break
    if not isinstance(payload, Mapping) or not payload:
        raise WeightsError(f"{path} holds a {type(payload).__name__}, expected a state dict (name → tensor)")
    non_tensors = [str(k) for k, v in payload.items() if not isinstance(v, Tensor)]
    if non_tensors:
        wrapped = f" or one under {list(wrapper_keys)}" if wrapper_keys else ""
        raise WeightsError(
            f"{path} is not a bare state dict{wrapped}: entries {list_keys(non_tensors)} are not tensors "
            "(a training checkpoint? extract its model state dict first)"
        )
    if all(str(k).startswith(DDP_PREFIX) for k in payload):  # saved from a DistributedDataParallel wrapper
        return {k[len(DDP_PREFIX) :]: v for k, v in payload.items()}
    return dict(payload)


def _batch_norm_counter(key: str) -> bool:
    """``num_batches_tracked``: a counter, not a weight; files with or without it load alike."""
    return key.endswith("num_batches_tracked")


def load_weights(
    model: nn.Module,
    path: str | Path,
    *,
    class_keys: Iterable[str],
    reset_class_predictor: Callable[[], None],
    wrapper_keys: Iterable[str] = WRAPPER_KEYS,
    ignore: Callable[[str], bool] = _batch_norm_counter,
) -> LoadReport:
    """Copy the weights in ``path`` into ``model`` (in place), strictly.

    ``class_keys``: the class predictor's keys; when any of them differs in shape (another class
    count) they are all skipped and ``reset_class_predictor()`` re-initialises them. ``ignore``:
    keys left out of the comparison on both sides (by default batch norm's ``num_batches_tracked``
    counters). The model is untouched when the file does not fit.
    """
    path = Path(path)
    state = {k: v for k, v in read_state_dict(path, wrapper_keys=wrapper_keys).items() if not ignore(k)}
    expected = {k: v for k, v in model.state_dict().items() if not ignore(k)}
    class_keys = sorted(k for k in class_keys if k in expected)
    class_differs = any(k in state and state[k].shape != expected[k].shape for k in class_keys)
    reinitialized = [k for k in class_keys if k in state] if class_differs else []

    problems = state_dict_problems(expected, state, source="file", skip_shapes=reinitialized)
    if problems:
        raise WeightsError(f"{path} does not fit {type(model).__name__}: " + "; ".join(problems))

    loadable = {k: v for k, v in state.items() if k not in reinitialized}
    result = model.load_state_dict(loadable, strict=False)
    left_out = [k for k in result.missing_keys if not ignore(k)]
    if sorted(left_out) != reinitialized or result.unexpected_keys:  # cannot happen after the checks above
        raise RuntimeError(f"partial load of {path}: missing {left_out}, unexpected {result.unexpected_keys}")
    bias = next((state[k] for k in class_keys if k.endswith("bias") and k in state), None)
    file_num_classes = None if bias is None else int(bias.shape[0])
    if reinitialized:
        reset_class_predictor()
        log.warning(
            "%s: class predictor re-initialised (%s classes in the file, another count in the model): %s",
            path,
            file_num_classes,
            ", ".join(reinitialized),
        )
    return LoadReport(
        path=path,
        num_loaded=len(loadable),
        reinitialized=tuple(reinitialized),
        file_num_classes=file_num_classes,
    )
