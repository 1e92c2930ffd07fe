"""Does a model's quality output say "something is there"? The unknown rule's premise, measured.

The unknown rule flags a point whose quality ``q`` (YOLOX objectness, FCOS centerness, as
probabilities) is at least ``min_quality`` and whose best class probability is below ``T``. That is
sound only where ``q`` separates objects from background on *every* point. This script runs trained
checkpoints over a split and measures, with every ground-truth box of the split's json (unknown
objects included, which training never saw):

- ``auroc``: the probability that a point in the central half of an object's box has a higher ``q``
  than a point outside every box (1 = perfect separation, 0.5 = none), all pyramid levels;
- ``q_bg_mean`` / ``q_bg_p99``: ``q`` on background points, and ``bg_over_min``: the share of them
  at or above ``min_quality`` (0.5, the rule's default);
- ``known_hit`` / ``unknown_hit``: the share of known / unknown objects with at least one point
  inside their box at ``q ≥ min_quality``;
- at each ``T``: ``bg_flagged``, background points per image the rule would flag, and
  ``unknown_flagged``, the share of unknown objects with at least one flagged point inside.

    python experiments/quality_separation.py --data data/synth_small \\
        --model "YOLOX teacher=results/cpu/teacher_s1" --model "FCOS=results/cpu/student_s1" ...

Each ``--model`` is ``LABEL=RUN_FOLDER`` (its ``checkpoints/last.ckpt``) or ``LABEL=FILE.ckpt``;
the same label given twice (two seeds) is reported as the mean ± std over them. Writes a markdown
table (stdout and ``--out``/quality_separation.md) and the per-checkpoint figures as json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import hydra
import torch
from torch import Tensor

from dfss.config import compose_config
from dfss.data.transforms import letterbox_shape
from dfss.device import resolve_device
from dfss.eval.inference import run_model
from dfss.evaluate import data_config
from dfss.models.checkpoints import build_model_from_checkpoint, check_classes, read_dfss_checkpoint
from dfss.precision import prepare_for_inference

LAST = Path("checkpoints") / "last.ckpt"


def auroc(positive: Tensor, negative: Tensor) -> float:
    """P(a random positive scores above a random negative), ties counted half (Mann–Whitney U)."""
    if positive.numel() == 0 or negative.numel() == 0:
        return float("nan")
    scores = torch.cat([positive, negative]).double()
    order = scores.argsort()
    ranks = torch.empty_like(scores)
    ranks[order] = torch.arange(1, scores.numel() + 1, dtype=torch.float64)
    # average ranks over ties
    unique, inverse = torch.unique(scores, return_inverse=True)
    sums = torch.zeros(unique.numel(), dtype=torch.float64).index_add_(0, inverse, ranks)
    counts = torch.zeros(unique.numel(), dtype=torch.float64).index_add_(0, inverse, torch.ones_like(ranks))
    ranks = (sums / counts)[inverse]
    n_pos, n_neg = positive.numel(), negative.numel()
    u = ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


@dataclass
class Tally:
    """Running sums over the images of a split."""

    thresholds: tuple[float, ...]
    min_quality: float
    q_object: list[Tensor] = field(default_factory=list)
    q_background: list[Tensor] = field(default_factory=list)
    known_objects: int = 0
    known_hits: int = 0
    unknown_objects: int = 0
    unknown_hits: int = 0
    images: int = 0
    bg_flagged: dict[float, int] = field(default_factory=lambda: defaultdict(int))
    unknown_flagged: dict[float, int] = field(default_factory=lambda: defaultdict(int))

    def add_image(self, points: Tensor, q: Tensor, p_max: Tensor, boxes: Tensor, unknown: Tensor) -> None:
        """One image: ``points [N, 2]``, ``q``/``p_max [N]``, ``boxes [M, 4]`` xyxy in input pixels,
        ``unknown [M]`` bool (the box's category is an unknown one)."""
        self.images += 1
        x, y = points[:, 0:1], points[:, 1:2]  # [N, 1]
        inside = (x >= boxes[:, 0]) & (x <= boxes[:, 2]) & (y >= boxes[:, 1]) & (y <= boxes[:, 3])  # [N, M]
        cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
        hw, hh = (boxes[:, 2] - boxes[:, 0]) / 4, (boxes[:, 3] - boxes[:, 1]) / 4
        central = ((x - cx).abs() <= hw) & ((y - cy).abs() <= hh)
        background = ~inside.any(dim=1)
        self.q_object.append(q[central.any(dim=1)])
        self.q_background.append(q[background])
        hit = (inside & (q >= self.min_quality)[:, None]).any(dim=0)  # [M]
        self.known_objects += int((~unknown).sum())
        self.known_hits += int((hit & ~unknown).sum())
        self.unknown_objects += int(unknown.sum())
        self.unknown_hits += int((hit & unknown).sum())
        for T in self.thresholds:
            flagged = (q >= self.min_quality) & (p_max < T)
            self.bg_flagged[T] += int((flagged & background).sum())
            self.unknown_flagged[T] += int(((inside & flagged[:, None]).any(dim=0) & unknown).sum())

    def figures(self) -> dict[str, float]:
        q_obj, q_bg = torch.cat(self.q_object), torch.cat(self.q_background)
        out = {
            "auroc": auroc(q_obj, q_bg),
            "q_object_mean": float(q_obj.mean()),
            "q_bg_mean": float(q_bg.mean()),
            "q_bg_p99": float(q_bg.quantile(0.99)),
            "bg_over_min": float((q_bg >= self.min_quality).float().mean()),
            "known_hit": self.known_hits / max(self.known_objects, 1),
            "unknown_hit": self.unknown_hits / max(self.unknown_objects, 1),
            "known_objects": self.known_objects,
            "unknown_objects": self.unknown_objects,
            "images": self.images,
        }
        for T in self.thresholds:
            out[f"bg_flagged@{T:g}"] = self.bg_flagged[T] / max(self.images, 1)
            out[f"unknown_flagged@{T:g}"] = self.unknown_flagged[T] / max(self.unknown_objects, 1)
        return out


def checkpoint_path(spec: str) -> Path:
    path = Path(spec)
    return path if path.suffix == ".ckpt" else path / LAST


@torch.no_grad()
def measure(
    ckpt: Path,
    data_overrides: list[str],
    split: str,
    thresholds: tuple[float, ...],
    min_quality: float,
    device_name: str = "cpu",
    precision: str = "auto",
) -> dict[str, float]:
    """The figures of one checkpoint on ``split``."""
    checkpoint = read_dfss_checkpoint(ckpt, "measure")
    image_size = int(checkpoint["dfss_config"]["data"]["image_size"])
    cfg = compose_config("eval", data_overrides, output_dir=Path("/tmp"))
    datamodule = hydra.utils.instantiate(data_config(cfg, checkpoint), image_size=image_size)
    check_classes(checkpoint, datamodule.class_table, ckpt)
    datamodule.setup("test" if split == "test" else "validate")
    coco = datamodule.datasets[split].coco
    unknown_ids = set(datamodule.class_table.unknown_ids)
    device = resolve_device(device_name)
    model = build_model_from_checkpoint(checkpoint, datamodule.class_table.num_classes, ckpt).eval()
    resolved = prepare_for_inference(model, device, precision)
    tally = Tally(thresholds, min_quality)
    loader = datamodule.test_dataloader() if split == "test" else datamodule.val_dataloader()
    for batch in loader:
        outputs = run_model(model, batch.images.to(device), resolved)
        q = outputs.quality_logits.sigmoid().cpu()
        p_max = outputs.cls_logits.sigmoid().amax(dim=-1).cpu()
        points = outputs.points.cpu()
        for i, image_id in enumerate(batch.image_ids.tolist()):
            height, width = batch.orig_sizes[i].tolist()
            new_h, new_w = letterbox_shape(height, width, image_size)
            scale = torch.tensor([new_w / width, new_h / height] * 2)
            anns = [a for a in coco.imgToAnns.get(image_id, []) if not a.get("iscrowd", 0)]
            xywh = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
            boxes = torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1) * scale
            unknown = torch.tensor([a["category_id"] in unknown_ids for a in anns], dtype=torch.bool)
            tally.add_image(points, q[i], p_max[i], boxes, unknown)
    return tally.figures()


def summarise(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f}"


def table(figures: dict[str, list[dict[str, float]]], thresholds: tuple[float, ...]) -> str:
    columns = ["auroc", "q_object_mean", "q_bg_mean", "q_bg_p99", "bg_over_min", "known_hit", "unknown_hit"]
    for T in thresholds:
        columns += [f"bg_flagged@{T:g}", f"unknown_flagged@{T:g}"]
    lines = ["| model | runs | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
    for label, runs in figures.items():
        cells = [summarise([r[c] for r in runs]) for c in columns]
        lines.append(f"| {label} | {len(runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", required=True, metavar="LABEL=RUN_FOLDER|CKPT")
    parser.add_argument("--data", default="data/synth_small", help="data root (data.root)")
    parser.add_argument("--split", default="test", choices=("val", "test"))
    parser.add_argument("--T", type=float, nargs="+", default=[0.1, 0.2], help="unknown thresholds")
    parser.add_argument("--min-quality", type=float, default=0.5)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--out", type=Path, help="folder for quality_separation.{md,json}")
    args = parser.parse_args(argv)
    thresholds = tuple(args.T)
    figures: dict[str, list[dict[str, float]]] = defaultdict(list)
    raw = []
    for spec in args.model:
        label, _, where = spec.partition("=")
        if not label or not where:
            parser.error(f"--model {spec!r}: expected LABEL=RUN_FOLDER or LABEL=FILE.ckpt")
        ckpt = checkpoint_path(where)
        data = [f"data.root={args.data}"]
        result = measure(ckpt, data, args.split, thresholds, args.min_quality, precision=args.precision)
        figures[label].append(result)
        raw.append({"label": label, "checkpoint": str(ckpt), **result})
        print(f"{label}: {ckpt}: auroc {result['auroc']:.3f}", file=sys.stderr)
    text = table(figures, thresholds)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "quality_separation.md").write_text(text + "\n")
        settings = {"split": args.split, "data": args.data, "min_quality": args.min_quality}
        record = {**settings, "T": list(thresholds), "runs": raw}
        (args.out / "quality_separation.json").write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
