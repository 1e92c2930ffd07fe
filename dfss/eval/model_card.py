"""A short markdown model card for a checkpoint (``evaluate.py ... model_card=true``).

What a screening team needs before deploying a model: what it is and how it was trained, the data
it was scored on, its classes with their supercategories and AP, the COCO figures overall and per
supercategory, the alarm operating point, the input size and post-processing, and its speed on the
machine the card was written on (measured there, on random images of the input size).
"""

from __future__ import annotations

import math
import statistics
import time
from datetime import datetime, timezone
from typing import Any

import torch
from torch import nn

from dfss.device import describe_device
from dfss.eval.coco_metrics import CocoMetrics
from dfss.eval.inference import run_model
from dfss.fileio import shown_path
from dfss.models.postprocess import PostProcessConfig, postprocess
from dfss.precision import FP32


def _f(x: Any, digits: int = 3) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


@torch.no_grad()
def measure_speed(
    model: nn.Module,
    image_size: int,
    device: torch.device,
    postprocess_config: PostProcessConfig,
    precision: str = FP32,
    batch_sizes: tuple[int, ...] = (1, 8),
    repeats: int = 5,
) -> dict[int, dict[str, float]]:
    """Median ms per batch and images/s of forward + post-processing (decode, unknown rule, NMS) on
    random ``uint8`` images, after two warm-up batches."""
    speed = {}
    generator = torch.Generator().manual_seed(0)
    for batch in batch_sizes:
        images = torch.randint(
            0, 256, (batch, 3, image_size, image_size), dtype=torch.uint8, generator=generator
        )
        images = images.to(device)
        times = []
        for i in range(repeats + 2):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            postprocess(run_model(model, images, precision), postprocess_config, input_size=image_size)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i >= 2:
                times.append(time.perf_counter() - start)
        ms = 1000 * statistics.median(times)
        speed[batch] = {"ms_per_batch": ms, "img_per_s": 1000 * batch / ms}
    return speed


def render_model_card(
    *,
    checkpoint: dict[str, Any],
    ckpt_path: str,
    result: CocoMetrics,
    info: dict[str, Any],
    ann_path: str,
    num_images: int,
    speed: dict[int, dict[str, float]],
    device: torch.device,
    num_parameters: int,
) -> str:
    cfg = checkpoint["dfss_config"]
    metrics = result.metrics
    loss = cfg.get("loss", {})
    distill = loss.get("distill")
    teacher = (cfg.get("teacher") or {}).get("ckpt_path") if distill else None
    supercategories = sorted({c.supercategory for c in result.per_class})
    lines = [
        f"# Model card: `{ckpt_path}`",
        "",
        f"Written by `evaluate.py` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.",
        "",
        "## Model",
        "",
        f"- **Architecture**: `{cfg['model']['net']['_target_']}`, {num_parameters / 1e6:.2f} M parameters; "
        f"{info['weights']} weights of epoch {checkpoint.get('epoch', '?')} "
        f"(step {checkpoint.get('global_step', '?')}).",
        f"- **Training**: experiment `{cfg.get('experiment_name', '?')}`, seed {cfg.get('seed')}, "
        f"{cfg.get('trainer', {}).get('max_epochs', '?')} epochs "
        f"on `{cfg.get('data', {}).get('root', '?')}` "
        f"at {cfg.get('data', {}).get('image_size', '?')} px; "
        f"dangerous-class weight alpha = {loss.get('dangerous_weight', 1.0):g}"
        + (f"; distilled from `{shown_path(teacher)}`" if teacher else "; no distillation")
        + ".",
        f"- **Input**: RGB `uint8`, letterboxed to {info['image_size']} x {info['image_size']} px "
        "(the model normalises).",
        f"- **Post-processing**: score >= {info['postprocess']['score_threshold']:g}, "
        "class-wise NMS at IoU "
        f"{info['postprocess']['nms_iou']:g}, "
        f"at most {info['postprocess']['max_detections']} detections per image; "
        + (
            f"unknown rule T = {info['unknown_threshold']:g} "
            f"(object quality >= {info['unknown_min_quality']:g})."
            if info["unknown_threshold"] > 0
            else "unknown rule off (T = 0)."
        ),
        "",
        "## Evaluation data",
        "",
        f"`{ann_path}` ({info['split']} split): {num_images} images, "
        f"{sum(c.num_gt for c in result.per_class)} objects.",
        "",
        "| | mAP50 | mAP (IoU .5:.95) |",
        "|---|---|---|",
        f"| all classes | {_f(metrics.get('map50'))} | {_f(metrics.get('map'))} |",
        *(
            f"| {s} | {_f(metrics.get(f'map50_{s}'))} | {_f(metrics.get(f'map_{s}'))} |"
            for s in supercategories
        ),
        "",
        "## Classes",
        "",
        "| class | supercategory | objects | AP50 | AP |",
        "|---|---|---|---|---|",
        *(
            f"| {c.name} | {c.supercategory} | {c.num_gt} | {_f(c.ap50)} | {_f(c.ap)} |"
            for c in result.per_class
        ),
        "",
        "## Operating point (image alarm: any dangerous detection scoring >= s)",
        "",
        "| figure | value |",
        "|---|---|",
        f"| alarm ROC AUC | {_f(metrics.get('alarm_auc'))} |",
        *(
            f"| threat images caught at {100 * rate:g} % false alarms | "
            f"{_f(metrics.get(f'alarm_tpr_at_fpr_{rate:g}'))} |"
            for rate in (0.01, 0.05, 0.1)
        ),
        f"| alarm score s for at most {100 * metrics.get('alarm_fpr_target', math.nan):g} % false alarms | "
        f"{_f(metrics.get('alarm_score_at_fpr'))} (catches {_f(metrics.get('alarm_tpr'))}, "
        f"false alarms {_f(metrics.get('alarm_fpr'))}) |",
        *(
            f"| dangerous objects found at {point:g} false detections per image | "
            f"{_f(metrics.get(f'dangerous_recall_at_fppi_{point:g}'))} |"
            for point in (0.1, 0.5, 1.0)
        ),
        "",
        f"## Speed on this machine: {describe_device(device)}, {info.get('precision', '32-true')}",
        "",
        "Forward + post-processing on random images of the input size (median of 5 after 2 warm-up batches); "
        "reading and letterboxing files is not included.",
        "",
        "| batch | ms per batch | images/s |",
        "|---|---|---|",
        *(f"| {b} | {s['ms_per_batch']:.1f} | {s['img_per_s']:.1f} |" for b, s in speed.items()),
        "",
    ]
    return "\n".join(lines)
