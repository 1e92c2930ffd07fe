"""The Lightning data module: validated COCO splits -> transformed, batched detection samples."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import DataLoader, Dataset

from dfss.data.batch import collate_detection
from dfss.data.classes import DEFAULT_DANGEROUS_SUPERCATEGORIES, DEFAULT_UNKNOWN_SUPERCATEGORIES, ClassTable
from dfss.data.coco import CocoDetection
from dfss.data.errors import DataError
from dfss.data.mosaic import MosaicMixup
from dfss.data.sampling import EpochDataLoader, ResumableSampler, SeededDataset
from dfss.data.transforms import build_eval_transforms, build_train_transforms
from dfss.data.validate import ValidationResult, validate_coco
from dfss.errors import ConfigError

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")
STAGE_OF_SPLIT = {"train": "fit", "val": "validate", "test": "test"}  # the setup() stage that loads a split


class SkipUnreadable(Dataset):
    """Training samples whose image cannot be read at load time are replaced, logged and reported.

    Validation at set-up checks every file, but a file can change or vanish during a days-long run
    (or be checked with ``image_check=header`` only). With ``on_error=skip`` such a sample is
    replaced by the next readable one; each replacement is logged as a warning and appended as one
    json line (file, image id, error) to ``report_path`` — nothing is dropped silently. With
    ``on_error=fail`` the loader is not wrapped and the error names the file and image id.
    """

    MAX_TRIES = 16

    def __init__(self, dataset: Dataset, report_path: Path | None) -> None:
        self.dataset = dataset
        self.report_path = report_path

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        for offset in range(self.MAX_TRIES):
            try:
                return self.dataset[(index + offset) % len(self)]
            except DataError as error:
                log.warning("skipping a training sample: %s", error)
                if self.report_path is not None:
                    self.report_path.parent.mkdir(parents=True, exist_ok=True)
                    with open(self.report_path, "a", encoding="utf-8") as f:  # one line per event (O_APPEND)
                        f.write(
                            json.dumps({"index": (index + offset) % len(self), "error": str(error)}) + "\n"
                        )
        raise DataError(
            f"{self.MAX_TRIES} training images in a row could not be read (last at index {index})"
        )


class XrayDataModule(L.LightningDataModule):
    """Train/val/test splits of a COCO X-ray data set with supercategory-tagged categories.

    Each split is a COCO json plus an image folder, both relative to ``root`` (absolute paths are
    kept as they are). At :meth:`setup` every split used by the stage is checked by
    :func:`dfss.data.validate.validate_coco`: with ``on_error="fail"`` (default) anything that
    would lose data raises a :class:`~dfss.data.validate.DataValidationError` listing every problem;
    with ``"skip"`` those images/annotations are dropped and the report is logged and written to
    ``report_dir/data_report_<split>.json``. A training image that becomes unreadable after
    set-up fails the run naming it (``fail``) or is replaced by the next one and reported in
    ``report_dir/data_skipped_during_training.jsonl`` (``skip``, see :class:`SkipUnreadable`).
    All splits must share the same known classes.

    ``batch_size`` is per device (per DDP process); Lightning gives each rank its own shard of the
    training set through a ``DistributedSampler``. Transforms default to
    :func:`build_train_transforms` / :func:`build_eval_transforms` at ``image_size``; mosaic and
    mixup (teacher training) turn on with ``mosaic_prob`` / ``mixup_prob`` > 0: the training split is
    then letterboxed, composed by :class:`~dfss.data.mosaic.MosaicMixup`, and the training
    transforms (scale jitter, flip, photometric) run on the composed image, as YOLOX does. The mosaic
    zooms by ``r ~ U(mosaic_scale)`` (objects at their own size on average), and from epoch
    ``close_mosaic_epoch`` on neither mosaic nor mixup is applied (YOLOX's last "no-aug" epochs).

    The training order and every random augmentation are functions of ``(seed, epoch, sample)``
    (:mod:`dfss.data.sampling`), whatever the worker count; the module's ``state_dict`` records how
    far the current epoch got, so a run resumed from a mid-epoch checkpoint continues with exactly
    the batches the interrupted run had not trained on yet. ``seed`` defaults to the run's global
    seed (``seed_everything``). ``global_batch_size``, when set, is split evenly over the devices
    (``batch_size`` is then ignored) and must be divisible by their number.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        train_ann: str = "annotations/train.json",
        val_ann: str = "annotations/val.json",
        test_ann: str = "annotations/test.json",
        train_images: str = "images/train",
        val_images: str = "images/val",
        test_images: str = "images/test",
        image_size: int = 640,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 2,
        pin_memory: bool = True,
        dangerous_supercategories: Sequence[str] = DEFAULT_DANGEROUS_SUPERCATEGORIES,
        unknown_supercategories: Sequence[str] = DEFAULT_UNKNOWN_SUPERCATEGORIES,
        on_error: str = "fail",
        image_check: str = "decode",
        train_transforms: Callable | None = None,
        eval_transforms: Callable | None = None,
        mosaic_prob: float = 0.0,
        mixup_prob: float = 0.0,
        mixup_mode: str = "multiply",
        mosaic_scale: Sequence[float] = (0.6, 1.8),
        close_mosaic_epoch: int | None = None,
        report_dir: str | Path | None = None,
        seed: int | None = None,
        global_batch_size: int | None = None,
    ) -> None:
        super().__init__()
        if batch_size <= 0:
            raise ConfigError(f"data.batch_size must be positive, got {batch_size}")
        if global_batch_size is not None and global_batch_size <= 0:
            raise ConfigError(f"data.global_batch_size must be positive, got {global_batch_size}")
        if on_error not in ("fail", "skip"):
            raise ConfigError(f"data.on_error must be 'fail' or 'skip', got {on_error!r}")
        self.root = Path(root)
        self.ann_files = {"train": train_ann, "val": val_ann, "test": test_ann}
        self.image_dirs = {"train": train_images, "val": val_images, "test": test_images}
        self.image_size = int(image_size)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.dangerous_supercategories = tuple(dangerous_supercategories)
        self.unknown_supercategories = tuple(unknown_supercategories)
        self.on_error = on_error
        self.image_check = image_check
        self.train_transforms = train_transforms or build_train_transforms(self.image_size)
        self.eval_transforms = eval_transforms or build_eval_transforms(self.image_size)
        self.mosaic_prob = mosaic_prob
        self.mixup_prob = mixup_prob
        self.mixup_mode = mixup_mode
        self.mosaic_scale = tuple(mosaic_scale)
        self.close_mosaic_epoch = close_mosaic_epoch
        self.report_dir = Path(report_dir) if report_dir is not None else None
        self.seed = seed
        self.global_batch_size = global_batch_size
        self.datasets: dict[str, Dataset] = {}
        self.reports: dict[str, ValidationResult] = {}
        self._resume_state: dict[str, int] | None = None

    # ---- paths and classes ---------------------------------------------------------------------
    def ann_path(self, split: str) -> Path:
        return self.root / self.ann_files[split]

    def image_dir(self, split: str) -> Path:
        return self.root / self.image_dirs[split]

    def _class_table_of(self, categories: list, source: Path) -> ClassTable:
        return ClassTable.from_categories(
            categories,
            dangerous_supercategories=self.dangerous_supercategories,
            unknown_supercategories=self.unknown_supercategories,
            source=str(source),
        )

    @cached_property
    def class_table(self) -> ClassTable:
        """Classes of the training json (read on first use; usable before :meth:`setup`)."""
        path = self.ann_path("train")
        try:
            with open(path, encoding="utf-8") as f:
                categories = json.load(f).get("categories")
        except FileNotFoundError:
            raise DataError(f"annotation file not found: {path}") from None
        except (json.JSONDecodeError, AttributeError) as exc:
            raise DataError(f"{path}: not a COCO json object ({exc})") from None
        if not isinstance(categories, list):
            raise DataError(f"{path}: 'categories' must be a list")
        return self._class_table_of(categories, path)

    # ---- setup ---------------------------------------------------------------------------------
    def _load_split(self, split: str) -> CocoDetection:
        ann, images = self.ann_path(split), self.image_dir(split)
        result = validate_coco(
            ann,
            images,
            on_error=self.on_error,
            image_check=self.image_check,
            num_workers=self.num_workers,
            unknown_supercategories=self.unknown_supercategories,
        )
        self.reports[split] = result
        report = result.report
        if report.problems:
            rank_zero_warn(f"data validation of the {split} split:\n{report.summary()}")
            if self.report_dir is not None:
                self.report_dir.mkdir(parents=True, exist_ok=True)
                report.write_json(self.report_dir / f"data_report_{split}.json")
        table = self._class_table_of(result.dataset["categories"], ann)
        if table.known != self.class_table.known:
            raise DataError(
                f"{ann}: its known classes differ from those of {self.ann_path('train')}; every split "
                f"must list the same categories (same ids, names and supercategories)"
            )
        transforms = (
            self.train_transforms if split == "train" and not self._uses_mosaic else self.eval_transforms
        )
        dataset = CocoDetection(result.dataset, images, self.class_table, transforms)
        rank_zero_info(
            f"{split}: {len(dataset)} images ({report.num_negative_images} negatives), "
            f"{report.num_annotations_kept} annotations from {ann}"
        )
        return dataset

    @property
    def _uses_mosaic(self) -> bool:
        return self.mosaic_prob > 0 or self.mixup_prob > 0

    def setup(self, stage: str | None = None) -> None:
        splits = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}.get(
            stage or "", SPLITS
        )
        for split in splits:
            if split in self.datasets:
                continue
            dataset = self._load_split(split)
            if split == "train" and self._uses_mosaic:
                dataset = MosaicMixup(
                    dataset,
                    self.image_size,
                    mosaic_prob=self.mosaic_prob,
                    mixup_prob=self.mixup_prob,
                    mixup_mode=self.mixup_mode,
                    scale=self.mosaic_scale,
                    close_epoch=self.close_mosaic_epoch,
                    transforms=self.train_transforms,
                )
            self.datasets[split] = dataset

    # ---- loaders -------------------------------------------------------------------------------
    def _world(self) -> tuple[int, int]:
        """(number of processes, this process's rank) of the attached trainer, else (1, 0)."""
        trainer = getattr(self, "trainer", None)
        return (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)

    @property
    def device_batch_size(self) -> int:
        """Training batch size of one device: ``batch_size``, or ``global_batch_size`` split evenly."""
        return self.batch_size_for(self._world()[0])

    def batch_size_for(self, world: int) -> int:
        """The per-device training batch size with ``world`` processes (a clear error if it cannot be)."""
        if self.global_batch_size is None:
            return self.batch_size
        if self.global_batch_size % world:
            lower = self.global_batch_size // world * world
            raise ConfigError(
                f"data.global_batch_size={self.global_batch_size} cannot be split over {world} devices "
                f"(trainer.devices x trainer.num_nodes); use a multiple of {world} such as "
                f"{lower or world} or {lower + world}, or set data.batch_size (per device) instead"
            )
        return self.global_batch_size // world

    def _loader(self, split: str, *, train: bool) -> DataLoader:
        if split not in self.datasets:
            raise RuntimeError(f"the {split} split is not set up; call setup() first")
        dataset = self.datasets[split]
        sampler = None
        batch_size = self.device_batch_size if train else self.eval_batch_size
        if train:
            world, rank = self._world()
            sampler = ResumableSampler(
                dataset, num_replicas=world, rank=rank, shuffle=True, seed=self.seed, drop_last=False
            )
            if self._resume_state is not None:
                done = self._resume_state["batches_done"] * batch_size
                sampler.resume(self._resume_state["epoch"], done)
                self._resume_state = None
            if self.on_error == "skip":
                report = self.report_dir / "data_skipped_during_training.jsonl" if self.report_dir else None
                dataset = SkipUnreadable(dataset, report)
            dataset = SeededDataset(dataset)
        return (EpochDataLoader if train else DataLoader)(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            drop_last=train and len(sampler or dataset) > batch_size,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory and torch.accelerator.is_available(),  # nothing to pin for on a CPU
            persistent_workers=self.num_workers > 0,
            collate_fn=collate_detection,
        )

    # ---- resuming ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Where training is in the current epoch (saved in every checkpoint by Lightning)."""
        trainer = getattr(self, "trainer", None)
        if trainer is None or trainer.state.fn != TrainerFn.FITTING:
            return {}
        return {
            "epoch": int(trainer.current_epoch),
            "batches_done": int(trainer.fit_loop.epoch_loop.batch_progress.current.processed),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._resume_state = dict(state_dict) if state_dict else None

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)
