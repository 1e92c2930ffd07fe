"""The start-up check: every problem of a run's settings that can be seen before any work, at once.

``train.py``, ``evaluate.py``, ``dfss-predict`` and ``dfss-export`` call :func:`check` first: it
looks at the data files, the teacher and the checkpoint files, the devices, and the values that
must lie in a range, and raises one :class:`StartupError` listing every problem, one line each
(the command line prints it and exits with status 2, no traceback; the run folder's log holds it
too). A misspelt setting or config group is refused even earlier, by Hydra, with ``did you mean``
(:func:`dfss.config.suggest_overrides`). What only reading every file can show (a corrupt image, a
box outside its image) is the validator's, at data set-up.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from dfss.errors import ConfigError, UserError

SPLITS_OF_TASK = {"train": ("train", "val"), "evaluate": ()}  # evaluate: its own split, added below
CATEGORY_SCAN_LIMIT = 200 * 2**20  # json files up to this size are read for their category tags here


class StartupError(UserError):
    """One or more settings that cannot work, found before any work started."""


def _missing(node: Any, key: str) -> bool:
    return isinstance(node, DictConfig) and key in node and OmegaConf.is_missing(node, key)


def data_problems(data: DictConfig | dict, splits: tuple[str, ...]) -> list[str]:
    """The data set's folder, the json and image folder of each split, and its categories' tags."""
    if isinstance(data, DictConfig) and _missing(data, "root"):
        return ["data.root is not set: data.root=<folder with annotations/ and images/>"]
    try:
        datamodule = instantiate(data)
    except UserError as error:
        return [f"data: {error}"]
    except Exception as error:
        cause = error.__cause__ or error
        return [f"data: {cause}"]
    root = datamodule.root
    if not root.is_dir():
        make = f"dfss-synth --preset <small|benchmark|results> --out {root}"
        return [f"data.root={root} does not exist (a synthetic set: `{make}`)"]
    problems = []
    for split in splits:
        ann, images = datamodule.ann_path(split), datamodule.image_dir(split)
        if not ann.is_file():
            problems.append(f"data: the {split} split's annotation file {ann} does not exist")
            continue
        if not images.is_dir():
            problems.append(f"data: the {split} split's image folder {images} does not exist")
        if ann.stat().st_size <= CATEGORY_SCAN_LIMIT:
            problems.extend(_category_problems(ann, datamodule))
    return problems


def _category_problems(ann: Path, datamodule: Any) -> list[str]:
    try:
        categories = json.loads(ann.read_text(encoding="utf-8")).get("categories", [])
    except (OSError, ValueError, AttributeError) as error:
        return [f"data: {ann} is not a COCO json ({error})"]
    known = {*datamodule.dangerous_supercategories, *datamodule.unknown_supercategories}
    untagged = [f"{c.get('id')} ({c.get('name')})" for c in categories if not c.get("supercategory")]
    if untagged:
        listed = ", ".join(untagged[:5]) + (" ..." if len(untagged) > 5 else "")
        return [
            f"data: categories {listed} of {ann} have no supercategory; DFSS needs one per category "
            f"({', '.join(sorted(known))} or normal)"
        ]
    return []


def file_problems(path: Any, what: str, setting: str) -> list[str]:
    if path is None:
        return [f"{setting} is not set: {setting}=<{what}>"]
    if not Path(str(path)).is_file():
        return [f"{setting}: {what} not found: {path}"]
    return []


def device_problems(accelerator: str | None, devices: Any, setting: str = "trainer") -> list[str]:
    """GPUs asked for on a machine without them (or fewer than asked for)."""
    if str(accelerator).lower() not in ("gpu", "cuda"):
        return []
    wanted = devices if isinstance(devices, int) else None
    have = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if have == 0:
        return [
            f"{setting} asks for {wanted or 'some'} GPU(s) (accelerator={accelerator}) but this machine has "
            "no CUDA GPU: train on the CPU with trainer=cpu (one process) or trainer=ddp_sim (DDP, 2 CPU "
            "processes)"
        ]
    if wanted is not None and wanted > have:
        return [f"{setting}.devices={wanted} but this machine has {have} CUDA GPU(s)"]
    return []


def device_name_problems(name: str) -> list[str]:
    if str(name).startswith("cuda") and not torch.cuda.is_available():
        return [f"device={name} but this machine has no CUDA GPU: use device=cpu or device=auto"]
    return []


def _in_range(cfg: DictConfig, key: str, low: float, high: float | None, problems: list[str]) -> None:
    value = OmegaConf.select(cfg, key, default=None)
    if value is None or isinstance(value, str):
        return
    if value < low or (high is not None and value > high):
        bounds = f"[{low:g}, {high:g}]" if high is not None else f">= {low:g}"
        problems.append(f"{key}={value} is out of range: it must be {bounds}")


def range_problems(cfg: DictConfig) -> list[str]:
    problems: list[str] = []
    for key, low, high in (
        ("threshold.T", 0.0, 1.0),
        ("threshold.min_quality", 0.0, 1.0),
        ("threshold.max_detections", 1, None),
        ("loss.dangerous_weight", 1e-12, None),
        ("loss.distill.temperature", 1e-12, None),
        ("loss.distill.lambda_loc", 0.0, None),
        ("loss.distill.lambda_cls", 0.0, None),
        ("loss.distill.lambda_bbox", 0.0, None),
        ("data.batch_size", 1, None),
        ("data.image_size", 32, None),
        ("data.num_workers", 0, None),
        ("trainer.max_epochs", 1, None),
        ("alarm_fpr", 0.0, 1.0),
    ):
        _in_range(cfg, key, low, high, problems)
    return problems


def training_problems(cfg: DictConfig) -> list[str]:
    problems = range_problems(cfg)
    problems += device_problems(cfg.trainer.get("accelerator"), cfg.trainer.get("devices"))
    splits = ("train", "val", "test") if cfg.get("test", True) else ("train", "val")
    problems += data_problems(cfg.data, splits) if cfg.get("train", True) or cfg.get("test", True) else []
    if cfg.loss.get("distill") is not None:
        teacher = cfg.get("teacher") or {}
        path = None if _missing(teacher, "ckpt_path") else teacher.get("ckpt_path")
        problems += file_problems(
            path, "teacher checkpoint (.ckpt or official YOLOX .pth)", "teacher.ckpt_path"
        )
    ckpt = cfg.get("ckpt_path")
    if ckpt not in (None, "last"):
        problems += file_problems(
            ckpt, "checkpoint to resume", "ckpt_path"
        )  # ckpt_path=last: ResumeCheckpoint's
    return problems


def evaluation_problems(cfg: DictConfig, data_config: Callable[[], Any]) -> list[str]:
    """``data_config()``: the data module's config as evaluate.py will build it (the checkpoint's
    own data by default), called only when the checkpoint is readable."""
    problems = range_problems(cfg) + device_name_problems(cfg.device)
    if cfg.get("ckpt_path") is not None:
        problems += file_problems(cfg.ckpt_path, "DFSS checkpoint", "ckpt_path")
    if cfg.get("predictions") is not None:
        problems += file_problems(cfg.predictions, "COCO results json", "predictions")
    if not problems:
        try:
            problems += data_problems(data_config(), (cfg.split,))
        except ConfigError as error:  # e.g. a predictions file with no data to score it against
            problems.append(str(error))
    return problems


def inference_problems(cfg: DictConfig, checkpoint_key: str = "ckpt") -> list[str]:
    """dfss-predict / dfss-export: the checkpoint, the device, the unknown rule's values."""
    path = None if _missing(cfg, checkpoint_key) else cfg.get(checkpoint_key)
    problems = range_problems(cfg) + file_problems(path, "DFSS checkpoint", checkpoint_key)
    if cfg.get("device") is not None:
        problems += device_name_problems(cfg.device)
    return problems


def check(problems: list[str]) -> None:
    """Raise one :class:`StartupError` listing ``problems`` (nothing when there is none)."""
    if problems:
        listed = "\n".join(f"  - {p}" for p in problems)
        count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
        raise StartupError(f"{count} before starting; nothing was run:\n{listed}")
