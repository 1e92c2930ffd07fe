"""The class table: COCO categories -> contiguous training labels, supercategories and class weights.

Built from the json's ``categories`` whatever their ids or order (1-based, sparse, unordered).
Training labels ``0..K-1`` follow ascending COCO id (as pycocotools' ``getCatIds`` and mmdetection's
``cat2label`` do). Categories whose supercategory is one of ``unknown_supercategories`` are not
training classes; they stay listed in :attr:`ClassTable.unknown` for evaluation and the unknown rule.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import torch

from dfss.data.errors import ClassTableError
from dfss.errors import ConfigError

# The supercategories a class table takes as dangerous and as unknown unless told otherwise (the
# data config's ``dangerous_supercategories`` / ``unknown_supercategories``).
DEFAULT_DANGEROUS_SUPERCATEGORIES: tuple[str, ...] = ("dangerous",)
DEFAULT_UNKNOWN_SUPERCATEGORIES: tuple[str, ...] = ("unknown",)


@dataclass(frozen=True)
class ClassInfo:
    """One category of the json."""

    name: str
    coco_id: int
    supercategory: str
    label: int  # contiguous training label, -1 for unknown categories


@dataclass(frozen=True)
class ClassTable:
    """Known (training) classes in label order, plus the unknown categories kept for evaluation."""

    known: tuple[ClassInfo, ...]
    unknown: tuple[ClassInfo, ...]
    dangerous_supercategories: tuple[str, ...]
    unknown_supercategories: tuple[str, ...]

    @classmethod
    def from_categories(
        cls,
        categories: Iterable[Mapping],
        *,
        dangerous_supercategories: Sequence[str] = DEFAULT_DANGEROUS_SUPERCATEGORIES,
        unknown_supercategories: Sequence[str] = DEFAULT_UNKNOWN_SUPERCATEGORIES,
        source: str = "<categories>",
    ) -> ClassTable:
        """Build the table from COCO ``categories`` entries; ``source`` names the file in errors."""
        dangerous = tuple(dangerous_supercategories)
        unknown = tuple(unknown_supercategories)
        overlap = set(dangerous) & set(unknown)
        if overlap:
            raise ClassTableError(
                f"supercategories {sorted(overlap)} are configured as both dangerous and unknown"
            )
        entries = []
        seen_ids: dict[int, str] = {}
        for cat in categories:
            for key in ("id", "name"):
                if key not in cat:
                    raise ClassTableError(f"{source}: category {dict(cat)!r} has no '{key}'")
            cat_id, name = int(cat["id"]), str(cat["name"])
            sup = cat.get("supercategory")
            if sup is None or str(sup).strip() == "":
                raise ClassTableError(
                    f"{source}: category id {cat_id} ('{name}') has no 'supercategory'; "
                    "every category needs one "
                    f"(e.g. one of {sorted({*dangerous, *unknown, 'normal'})})"
                )
            if cat_id in seen_ids:
                raise ClassTableError(
                    f"{source}: duplicate category id {cat_id} ('{seen_ids[cat_id]}' and '{name}')"
                )
            seen_ids[cat_id] = name
            entries.append((cat_id, name, str(sup)))
        if not entries:
            raise ClassTableError(f"{source}: 'categories' is empty")
        entries.sort()
        known, unknown_infos = [], []
        for cat_id, name, sup in entries:
            if sup in unknown:
                unknown_infos.append(ClassInfo(name, cat_id, sup, -1))
            else:
                known.append(ClassInfo(name, cat_id, sup, len(known)))
        if not known:
            raise ClassTableError(f"{source}: every category is 'unknown'; there is nothing to train on")
        present = {info.supercategory for info in known}
        missing = [s for s in dangerous if s not in present]
        if missing:
            raise ClassTableError(
                f"{source}: dangerous supercategory {missing} matches no category; "
                "the supercategories present are "
                f"{sorted(present | {i.supercategory for i in unknown_infos})}"
            )
        return cls(tuple(known), tuple(unknown_infos), dangerous, unknown)

    # ---- lookups -------------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        """Number of training classes K (unknown categories excluded)."""
        return len(self.known)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.known]

    @property
    def coco_ids(self) -> list[int]:
        return [c.coco_id for c in self.known]

    def label_of(self, coco_id: int) -> int:
        """Contiguous label of a known category; KeyError for unknown or absent ids."""
        return self.label_by_coco_id[coco_id]

    @cached_property
    def label_by_coco_id(self) -> dict[int, int]:
        """``{coco id: training label}`` of the known classes."""
        return {c.coco_id: c.label for c in self.known}

    @property
    def unknown_ids(self) -> list[int]:
        return [c.coco_id for c in self.unknown]

    def is_dangerous(self, info: ClassInfo) -> bool:
        return info.supercategory in self.dangerous_supercategories

    def coco_ids_of(self, supercategory: str) -> list[int]:
        """COCO ids of every category (known or unknown) with this supercategory."""
        return [c.coco_id for c in (*self.known, *self.unknown) if c.supercategory == supercategory]

    @property
    def supercategories(self) -> list[str]:
        """Supercategory names in first-seen label order (unknown last)."""
        return list(dict.fromkeys(c.supercategory for c in (*self.known, *self.unknown)))

    # ---- tensors for losses ------------------------------------------------------------------
    def dangerous_mask(self) -> torch.Tensor:
        """Bool ``[K]``: True where the training class is dangerous."""
        return torch.tensor([self.is_dangerous(c) for c in self.known], dtype=torch.bool)

    def class_weights(self, dangerous_weight: float) -> torch.Tensor:
        """α_c as float ``[K]``: ``dangerous_weight`` for dangerous classes, 1 otherwise (paper §2.2)."""
        if not dangerous_weight >= 0:
            raise ConfigError(f"dangerous_weight must be >= 0, got {dangerous_weight}")
        weights = torch.ones(self.num_classes, dtype=torch.float32)
        weights[self.dangerous_mask()] = float(dangerous_weight)
        return weights

    def describe(self) -> str:
        """A one-screen text table of the classes."""
        lines = [f"{'label':>5}  {'coco id':>7}  {'supercategory':<14} name"]
        for c in (*self.known, *self.unknown):
            label = str(c.label) if c.label >= 0 else "-"
            lines.append(f"{label:>5}  {c.coco_id:>7}  {c.supercategory:<14} {c.name}")
        return "\n".join(lines)
