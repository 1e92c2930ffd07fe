"""Scans on disk for prediction: finding them (a file, a folder or a glob) and reading them in batches.

Each file is read as the data sets read theirs (:func:`dfss.data.io.load_rgb`: any mode to 8-bit
RGB) and letterboxed by the evaluation transforms (:func:`dfss.data.transforms.build_eval_transforms`),
so a model sees a file exactly as evaluation shows it. Nothing is skipped: a path that is not there,
a folder without images, a glob that matches nothing and a file that cannot be read are each a
:class:`~dfss.data.errors.DataError` naming the path.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors

from dfss.data.errors import DataError
from dfss.data.io import load_rgb, read_image_size

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
_GLOB_CHARACTERS = frozenset("*?[")


def find_images(spec: str | os.PathLike) -> list[Path]:
    """The files ``spec`` names: one image file; a folder's images (by extension, sorted by name, not
    recursive); or every file a glob matches (sorted; ``**`` recurses)."""
    text = os.path.expanduser(str(spec))
    path = Path(text)
    if path.is_file():
        return [path]
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not images:
            raise DataError(f"no images in folder {path} (looked for {', '.join(IMAGE_EXTENSIONS)} files)")
        return images
    if _GLOB_CHARACTERS & set(text):
        matches = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        if not matches:
            raise DataError(f"no files match {text}")
        return matches
    raise DataError(f"input not found: {text} (give an image file, a folder or a glob)")


def image_entries(paths: Sequence[Path]) -> list[dict]:
    """COCO ``images`` entries (``id`` = position + 1, ``file_name``, ``width``, ``height``) read from
    the file headers: a file that is not an image fails here, before any model runs."""
    entries = []
    for index, path in enumerate(paths):
        width, height = read_image_size(path)
        entries.append({"id": index + 1, "file_name": str(path), "width": width, "height": height})
    return entries


@dataclass(frozen=True)
class ImageBatch:
    """``B`` files, letterboxed for the model, with their original pixels when asked for."""

    indices: torch.Tensor  # int64 [B] positions in the file list
    images: torch.Tensor  # uint8 [B, 3, S, S] letterboxed (the model normalises)
    orig_sizes: torch.Tensor  # int64 [B, 2] (height, width) of the files
    originals: list[torch.Tensor]  # per image uint8 [3, H_i, W_i]; empty unless with_originals

    def __len__(self) -> int:
        return len(self.indices)


class ImageSample(NamedTuple):
    index: int  # position in the file list
    image: torch.Tensor  # uint8 [3, S, S] letterboxed
    orig_size: tuple[int, int]  # (height, width) of the file
    original: torch.Tensor | None  # uint8 [3, H, W] as read, when asked for


class ImageFiles(Dataset):
    """One :class:`ImageSample` per file of ``paths``, letterboxed by ``transforms``."""

    def __init__(self, paths: Sequence[Path], transforms: Callable, *, with_originals: bool = True) -> None:
        self.paths = list(paths)
        self.transforms = transforms
        self.with_originals = with_originals

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> ImageSample:
        original = torch.from_numpy(load_rgb(self.paths[index])).permute(2, 0, 1).contiguous()
        image = self.transforms(tv_tensors.Image(original)).as_subclass(torch.Tensor)
        height, width = original.shape[1:]
        return ImageSample(index, image, (height, width), original if self.with_originals else None)


def collate_images(samples: Sequence[ImageSample]) -> ImageBatch:
    return ImageBatch(
        indices=torch.tensor([s.index for s in samples], dtype=torch.int64),
        images=torch.stack([s.image for s in samples]),
        orig_sizes=torch.tensor([s.orig_size for s in samples], dtype=torch.int64),
        originals=[s.original for s in samples if s.original is not None],
    )
