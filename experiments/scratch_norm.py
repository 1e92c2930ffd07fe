"""FCOS-R50 from random init: torchvision's frozen-BN recipe against learning batch norm.

Without pretrained weights, torchvision's recipe (FrozenBatchNorm2d at its initial statistics, the
stem and first stage frozen) is the identity normalisation over a frozen random stem. This trains
both builds from the same seed on the same few scans of the small synthetic set (fitting them:
trainability, not accuracy) and prints the training loss of each, side by side.

    python experiments/scratch_norm.py                  # 8 scans at 160 px, batch 8, 80 SGD steps
    python experiments/scratch_norm.py --steps 20
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dfss.models.fcos import FCOSCriterion
from dfss.models.fcos.model import fcos_r50

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from _common import machine, print_json_lines

VARIANTS = {  # name -> fcos_r50 keyword arguments
    "frozen_bn, 3 stages (torchvision)": {"norm": "frozen_bn", "trainable_backbone_layers": 3},
    "bn, 5 stages (from scratch)": {"norm": "bn", "trainable_backbone_layers": 5},
}


def load_scans(
    root: Path, count: int, size: int
) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor], int]:
    coco = json.loads((root / "annotations" / "train.json").read_text())
    known = sorted(c["id"] for c in coco["categories"] if c["supercategory"] != "unknown")
    label_of = {cat: i for i, cat in enumerate(known)}
    images, boxes, labels = [], [], []
    for info in coco["images"][:count]:
        with Image.open(root / "images" / "train" / info["file_name"]) as picture:
            pixels = np.asarray(picture.convert("RGB").resize((size, size)))
        images.append(torch.from_numpy(pixels.copy()).permute(2, 0, 1))
        sx, sy = size / info["width"], size / info["height"]
        anns = [
            a for a in coco["annotations"] if a["image_id"] == info["id"] and a["category_id"] in label_of
        ]
        xywh = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
        boxes.append(
            torch.stack(
                [
                    xywh[:, 0] * sx,
                    xywh[:, 1] * sy,
                    (xywh[:, 0] + xywh[:, 2]) * sx,
                    (xywh[:, 1] + xywh[:, 3]) * sy,
                ],
                dim=1,
            )
        )
        labels.append(torch.tensor([label_of[a["category_id"]] for a in anns], dtype=torch.int64))
    return torch.stack(images), boxes, labels, len(known)


def train(kwargs: dict, images, boxes, labels, num_classes: int, steps: int, seed: int) -> list[float]:
    torch.manual_seed(seed)
    model = fcos_r50(num_classes, box_head="distribution", **kwargs).train()
    criterion = FCOSCriterion(num_classes)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    losses = []
    for step in range(steps):
        for group in optimizer.param_groups:  # the student recipe's warm-up, then flat
            group["lr"] = 0.01 * min(1.0, (step + 1) / 10)
        optimizer.zero_grad(set_to_none=True)
        loss = criterion(model(images), boxes, labels)["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 10.0)  # trainer.gradient_clip_val
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default=str(Path(__file__).parents[1] / "data" / "synth_small"))
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    images, boxes, labels, num_classes = load_scans(Path(args.data), args.images, args.size)
    head = {
        "bench": "scratch_norm_header",
        **machine(),
        "images": len(images),
        "size": args.size,
        "steps": args.steps,
        "seed": args.seed,
        "data": args.data,
    }
    rows = []
    for name, kwargs in VARIANTS.items():
        start = time.perf_counter()
        losses = train(kwargs, images, boxes, labels, num_classes, args.steps, args.seed)
        tail = losses[-min(5, len(losses)) :]
        rows.append(
            {
                "bench": "scratch_norm",
                "variant": name,
                **kwargs,
                "first_loss": round(losses[0], 3),
                "last5_mean": round(statistics.fmean(tail), 3),
                "last5_min": round(min(tail), 3),
                "last5_max": round(max(tail), 3),
                "seconds": round(time.perf_counter() - start, 1),
            }
        )
    print(
        f"# scratch_norm  {head['date']}  {len(images)} scans, {args.size} px, "
        f"{args.steps} SGD steps, seed {args.seed}"
    )
    print(f"{'variant':<36}{'first':>8}{'last 5 (mean, min-max)':>26}")
    for r in rows:
        print(
            f"{r['variant']:<36}{r['first_loss']:>8.3f}    "
            f"{r['last5_mean']:.3f} ({r['last5_min']:.3f}-{r['last5_max']:.3f})"
        )
    print_json_lines(head, rows)
    return rows


if __name__ == "__main__":
    main()
