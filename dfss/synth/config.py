"""The generator's configuration: a frozen dataclass and the presets in ``dfss/synth/presets/*.yaml``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

SPLITS = ("train", "val", "test")
IMAGE_FORMATS = ("jpg", "png")
SCENE_WIDTH_CM = 64.0  # the image spans this many cm whatever its pixel size (10 px/cm at 640 px)


@dataclass(frozen=True)
class SynthConfig:
    """Everything that determines a generated set; two equal configs give byte-identical output."""

    seed: int = 0
    image_size: int = 640  # square images, pixels
    num_train: int = 4000
    num_val: int = 500
    num_test: int = 1000
    objects_per_image: tuple[int, int] = (2, 6)  # labelled known-class objects, inclusive range
    max_overlap_iou: float = 0.3  # between boxes of labelled objects (rejection sampling)
    clutter: float = 0.6  # 0 = empty bag, 1 = packed with clothes, cables and small items
    photons_per_pixel: float = 10000.0  # unattenuated photon count; lower = noisier
    unknown_per_test_image: tuple[int, int] = (0, 2)  # unknown objects per test image, inclusive range
    scale_range: tuple[float, float] = (0.85, 1.15)  # factor on real-world object size
    image_format: str = (
        "jpg"  # "jpg" (as public X-ray sets ship; ~110 kB at 640 px) or lossless "png" (~530 kB)
    )
    jpeg_quality: int = 95
    png_compress_level: int = 1
    version: str = "1.0"

    def __post_init__(self) -> None:
        # yaml/omegaconf hand lists; keep the frozen value hashable and typed.
        for name in ("objects_per_image", "unknown_per_test_image", "scale_range"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.image_size < 32:
            raise ValueError(f"image_size must be >= 32, got {self.image_size}")
        for name in ("num_train", "num_val", "num_test"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        for name in ("objects_per_image", "unknown_per_test_image"):
            low, high = getattr(self, name)
            if not 0 <= low <= high:
                raise ValueError(f"{name} must be (min, max) with 0 <= min <= max, got {(low, high)}")
        if not 0.0 <= self.max_overlap_iou <= 1.0:
            raise ValueError(f"max_overlap_iou must be in [0, 1], got {self.max_overlap_iou}")
        if not 0.0 <= self.clutter <= 1.0:
            raise ValueError(f"clutter must be in [0, 1], got {self.clutter}")
        if self.photons_per_pixel <= 0:
            raise ValueError("photons_per_pixel must be > 0")
        if not 0 < self.scale_range[0] <= self.scale_range[1]:
            raise ValueError(f"scale_range must be (low, high) with 0 < low <= high, got {self.scale_range}")
        if self.image_format not in IMAGE_FORMATS:
            raise ValueError(f"image_format must be one of {IMAGE_FORMATS}, got {self.image_format!r}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError("jpeg_quality must be in 1..100")
        if not 0 <= self.png_compress_level <= 9:
            raise ValueError("png_compress_level must be in 0..9")

    @property
    def px_per_cm(self) -> float:
        return self.image_size / SCENE_WIDTH_CM

    def num_images(self, split: str) -> int:
        return {"train": self.num_train, "val": self.num_val, "test": self.num_test}[split]

    def to_yaml_dict(self) -> dict:
        """Hydra-style mapping: ``_target_`` plus every field (tuples as lists)."""
        fields = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}
        return {"_target_": f"{__name__}.SynthConfig", **fields}


def config_from_mapping(mapping: dict) -> SynthConfig:
    """Build from a ``_target_`` + fields mapping (a preset or a saved ``synth.yaml``)."""
    fields = {k: v for k, v in mapping.items() if k != "_target_"}
    target = mapping.get("_target_", f"{__name__}.SynthConfig")
    if target != f"{__name__}.SynthConfig":
        raise ValueError(f"expected _target_ {__name__}.SynthConfig, got {target!r}")
    known = {f.name for f in dataclasses.fields(SynthConfig)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ValueError(f"unknown SynthConfig fields {unknown}; known: {sorted(known)}")
    return SynthConfig(**fields)


def preset_names() -> list[str]:
    folder = resources.files("dfss.synth").joinpath("presets")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_preset(name_or_path: str) -> SynthConfig:
    """A packaged preset by name (``small``, ``benchmark``) or any yaml file path."""
    if name_or_path.endswith((".yaml", ".yml")):
        text = Path(name_or_path).read_text(encoding="utf-8")
    else:
        entry = resources.files("dfss.synth").joinpath("presets", f"{name_or_path}.yaml")
        if not entry.is_file():
            raise ValueError(f"no synth preset {name_or_path!r}; available: {preset_names()}")
        text = entry.read_text(encoding="utf-8")
    return config_from_mapping(yaml.safe_load(text))
