"""Collecting predictions over a whole evaluation split, across DDP ranks, and scoring them once."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch.distributed as dist


@dataclass
class PredictionStore:
    """COCO results of the images this process evaluated, in the order it saw them."""

    results_by_image: dict[int, list[dict]] = field(default_factory=dict)

    def add(self, image_ids: list[int], results: list[dict]) -> None:
        for image_id in image_ids:
            self.results_by_image.setdefault(image_id, [])
        for result in results:
            self.results_by_image[result["image_id"]].append(result)

    def clear(self) -> None:
        self.results_by_image = {}

    def gather(self) -> tuple[list[int], list[dict]]:
        """All ranks' images and results, each image once.

        A ``DistributedSampler`` pads the last batches by repeating images, so an image can be
        evaluated on two ranks; its results are taken from the lowest rank that has it.
        """
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            per_rank: list[dict[int, list[dict]] | None] = [None] * dist.get_world_size()
            dist.all_gather_object(per_rank, self.results_by_image)
        else:
            per_rank = [self.results_by_image]
        merged: dict[int, list[dict]] = {}
        for rank_results in per_rank:
            for image_id, results in (rank_results or {}).items():
                merged.setdefault(image_id, results)
        image_ids = sorted(merged)
        return image_ids, [r for image_id in image_ids for r in merged[image_id]]
