"""The class list shipped in ``classes.yaml`` and the procedural builder of each class."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType

import numpy as np
import yaml

from dfss.synth import clutter, electronics, everyday, threats
from dfss.synth.geometry import Part

Builder = Callable[[np.random.Generator], tuple[Part, ...]]
UNKNOWN_SUPERCATEGORY = "unknown"

BUILDERS: MappingProxyType[str, Builder] = MappingProxyType(
    {**threats.BUILDERS, **electronics.BUILDERS, **everyday.BUILDERS, "unknown": clutter.unknown_object}
)


@dataclass(frozen=True)
class Category:
    """One class of the synthetic set; ``coco_id`` is its 1-based position in ``classes.yaml``."""

    coco_id: int
    name: str
    supercategory: str
    parts: str  # what it is built from, for humans

    @property
    def is_unknown(self) -> bool:
        return self.supercategory == UNKNOWN_SUPERCATEGORY

    def to_coco(self) -> dict:
        return {"id": self.coco_id, "name": self.name, "supercategory": self.supercategory}


def load_categories() -> tuple[Category, ...]:
    """Read ``dfss/synth/classes.yaml``; every class must have a builder."""
    text = resources.files("dfss.synth").joinpath("classes.yaml").read_text(encoding="utf-8")
    entries = yaml.safe_load(text)["categories"]
    categories = tuple(
        Category(i + 1, str(e["name"]), str(e["supercategory"]), str(e.get("parts", "")))
        for i, e in enumerate(entries)
    )
    missing = [c.name for c in categories if c.name not in BUILDERS]
    if missing:
        raise ValueError(f"classes.yaml lists classes without a builder: {missing}")
    return categories
