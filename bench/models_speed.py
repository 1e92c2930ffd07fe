"""Training and inference speed of every DFSS detector next to torchvision's ``fcos_resnet50_fpn``.

Everything is measured in one process with the same settings, the same random images and the same
random boxes (8 per image, as in ``shared/notes/anchors.md``):

- **train**: one full step = forward + target assignment + all losses + backward + SGD step.
  Ours: ``model(images)`` → ``criterion(outputs, boxes, labels)["loss"]``; torchvision: its train-mode
  ``model(images, targets)``, which returns its losses (its resize/normalise transform included).
- **infer**: eval-mode forward *including* decode + NMS at the batch size. Ours: ``model(images)``
  → :func:`dfss.models.postprocess.postprocess`; torchvision: its eval-mode forward, which does its
  own post-processing. ``lat``: the same at batch 1, in ms.
- ``x tv``: speed-up over torchvision's FCOS-R50 measured in this run (> 1 = faster).
- peak memory: on CUDA ``torch.cuda.max_memory_allocated`` per phase; on CPU the rise of the
  process's peak RSS (``VmHWM``, reset per phase) over its RSS at the start of the phase — an
  approximation (allocator caches, shared pages), printed as such.

Uint8 → float conversion is inside the timed step for every model (ours normalise inside
``forward``; torchvision gets ``images.float() / 255`` in the step). Warm-up steps are excluded; the
figure is the median of the timed steps, each bracketed by ``torch.cuda.synchronize()`` on CUDA.

Post-processing load depends on the scores, and untrained scores are arbitrary (FCOS's prior puts
every point near 0.07, YOLOX's near 1e-4). ``--score-threshold`` (default 0) is applied to every
model, torchvision's ``score_thresh`` included, so by default every model sends its full per-level
top-k candidates to NMS: the same, worst-case load for all. ``dets/img`` shows what came out.

    python bench/models_speed.py                          # CPU here: 256 px, batch 2
    python bench/models_speed.py --device cuda --bf16 --channels-last   # 640 px, batch 16
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from _common import (
    PeakMemory,
    device_name,
    load_average,
    machine,
    print_json_lines,
    release_memory,
    time_calls,
)
from torch import Tensor, nn
from torchvision.models.detection import fcos_resnet50_fpn

from dfss.models.fcos import FCOS_VARIANTS, FCOSCriterion
from dfss.models.postprocess import PostProcessConfig, postprocess
from dfss.models.yolox import YOLOX_VARIANTS, YOLOXCriterion

BASELINE = "tv_fcos_r50"
BOXES_PER_IMAGE = 8  # as in the anchors note
# name -> (builder, criterion class). Each builder's defaults, plus the distribution box head on r18.
VARIANTS: dict[str, tuple[Callable[[int], nn.Module], type[nn.Module]]] = {
    "fcos_r50": (FCOS_VARIANTS["fcos_r50"], FCOSCriterion),
    "fcos_r18": (FCOS_VARIANTS["fcos_r18"], FCOSCriterion),
    "fcos_r18_dist": (partial(FCOS_VARIANTS["fcos_r18"], box_head="distribution"), FCOSCriterion),
    "fcos_mobilenetv3": (FCOS_VARIANTS["fcos_mobilenetv3"], FCOSCriterion),
    "yolox_nano": (YOLOX_VARIANTS["yolox_nano"], YOLOXCriterion),
    "yolox_tiny": (YOLOX_VARIANTS["yolox_tiny"], YOLOXCriterion),
    "yolox_s": (YOLOX_VARIANTS["yolox_s"], YOLOXCriterion),
    "yolox_m": (YOLOX_VARIANTS["yolox_m"], YOLOXCriterion),
    "yolox_l": (YOLOX_VARIANTS["yolox_l"], YOLOXCriterion),
}
DEFAULT_VARIANTS = [
    "fcos_r50",
    "fcos_r18",
    "fcos_r18_dist",
    "fcos_mobilenetv3",
    "yolox_nano",
    "yolox_tiny",
    "yolox_s",
]
LARGE_VARIANTS = ["yolox_m", "yolox_l"]


@dataclass(frozen=True)
class Settings:
    device: torch.device
    image_size: int
    batch_size: int
    num_classes: int
    steps: int
    warmup: int
    bf16: bool
    channels_last: bool
    score_threshold: float


@dataclass(frozen=True)
class Inputs:
    """The same random images and boxes for every model."""

    images: Tensor  # uint8 [B, 3, S, S] on the device
    boxes: list[Tensor]  # per image float32 [8, 4] xyxy px
    labels: list[Tensor]  # per image int64 [8]


def make_inputs(settings: Settings, seed: int = 0) -> Inputs:
    generator = torch.Generator().manual_seed(seed)
    size, batch = settings.image_size, settings.batch_size
    images = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=generator)
    boxes, labels = [], []
    for _ in range(batch):
        # Centres anywhere, sides 4%–50% of the image, clipped to the canvas.
        centre = torch.rand(BOXES_PER_IMAGE, 2, generator=generator) * size
        half = (0.02 + 0.23 * torch.rand(BOXES_PER_IMAGE, 2, generator=generator)) * size
        xyxy = torch.cat([centre - half, centre + half], dim=1).clamp(0, size)
        boxes.append(xyxy.to(settings.device))
        labels.append(
            torch.randint(0, settings.num_classes, (BOXES_PER_IMAGE,), generator=generator).to(
                settings.device
            )
        )
    images = images.to(settings.device)
    if settings.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return Inputs(images, boxes, labels)


def time_settings(step: Callable[[], object], settings: Settings) -> list[float]:
    return time_calls(step, settings.device, settings.warmup, settings.steps)


# ---- the steps ----------------------------------------------------------------------------------
def autocast(settings: Settings):
    if settings.bf16 and settings.device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def make_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    # lr is irrelevant to speed; small so a random-init model stays finite over the timed steps.
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.SGD(params, lr=1e-4, momentum=0.9, weight_decay=1e-4)


class OursRunner:
    """A DFSS detector: raw outputs, its criterion, batched ``postprocess``."""

    def __init__(self, name: str, settings: Settings) -> None:
        builder, criterion_cls = VARIANTS[name]
        self.model = builder(settings.num_classes).to(settings.device)
        self.criterion = criterion_cls(settings.num_classes).to(settings.device)
        self.settings = settings
        self.post_config = PostProcessConfig(score_threshold=settings.score_threshold)

    def train_step(self, inputs: Inputs, optimizer: torch.optim.Optimizer) -> Tensor:
        optimizer.zero_grad(set_to_none=True)
        with autocast(self.settings):
            losses = self.criterion(self.model(inputs.images), inputs.boxes, inputs.labels)
        losses["loss"].backward()
        optimizer.step()
        return losses["loss"].detach()

    @torch.inference_mode()
    def infer(self, images: Tensor) -> Tensor:
        with autocast(self.settings):
            outputs = self.model(images)
        orig_sizes = torch.full((len(images), 2), self.settings.image_size, device=images.device)
        detections = postprocess(outputs, self.post_config, self.settings.image_size, orig_sizes)
        return detections.valid.sum()


class TorchvisionRunner:
    """torchvision's ``fcos_resnet50_fpn``: losses in train mode, detections in eval mode."""

    def __init__(self, settings: Settings) -> None:
        size = settings.image_size
        self.model = fcos_resnet50_fpn(
            weights=None,
            weights_backbone=None,
            num_classes=settings.num_classes,
            min_size=size,
            max_size=size,
            score_thresh=settings.score_threshold,
        ).to(settings.device)
        self.settings = settings

    def _image_list(self, images: Tensor) -> list[Tensor]:
        return list(images.float().div(255.0).unbind(0))

    def train_step(self, inputs: Inputs, optimizer: torch.optim.Optimizer) -> Tensor:
        optimizer.zero_grad(set_to_none=True)
        targets = [{"boxes": b, "labels": lab} for b, lab in zip(inputs.boxes, inputs.labels, strict=True)]
        with autocast(self.settings):
            losses = self.model(self._image_list(inputs.images), targets)
        loss = sum(losses.values())
        loss.backward()
        optimizer.step()
        return loss.detach()

    @torch.inference_mode()
    def infer(self, images: Tensor) -> int:
        with autocast(self.settings):
            detections = self.model(self._image_list(images))
        return sum(len(d["boxes"]) for d in detections)


def count_params(model: nn.Module) -> tuple[float, float]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total / 1e6, trainable / 1e6


def measure(name: str, settings: Settings, inputs: Inputs) -> dict:
    """Inference (batch and batch 1) on the fresh model first, then training steps."""
    runner = TorchvisionRunner(settings) if name == BASELINE else OursRunner(name, settings)
    model = runner.model
    if settings.channels_last:
        model.to(memory_format=torch.channels_last)
    params_m, trainable_m = count_params(model)
    batch = settings.batch_size

    model.eval()
    with PeakMemory(settings.device) as infer_memory:
        infer_s = time_settings(lambda: runner.infer(inputs.images), settings)
    num_detections = int(runner.infer(inputs.images))
    latency_s = time_settings(lambda: runner.infer(inputs.images[:1]), settings)

    model.train()
    optimizer = make_optimizer(model)
    last_loss: dict[str, Tensor] = {}

    def train_step() -> None:
        last_loss["loss"] = runner.train_step(inputs, optimizer)

    with PeakMemory(settings.device) as train_memory:
        train_s = time_settings(train_step, settings)
    final_loss = float(last_loss["loss"])
    train_med, infer_med, latency_med = (statistics.median(s) for s in (train_s, infer_s, latency_s))
    return {
        "bench": "models_speed",
        "model": name,
        "params_m": round(params_m, 2),
        "trainable_params_m": round(trainable_m, 2),
        "train_img_per_s": round(batch / train_med, 2),
        "train_ms_per_step": round(1e3 * train_med, 1),
        "infer_img_per_s": round(batch / infer_med, 2),
        "infer_ms_per_batch": round(1e3 * infer_med, 1),
        "latency_bs1_ms": round(1e3 * latency_med, 1),
        "detections_per_image": round(num_detections / batch, 1),
        "train_peak_mib": None if train_memory.mib is None else round(train_memory.mib, 1),
        "infer_peak_mib": None if infer_memory.mib is None else round(infer_memory.mib, 1),
        "final_train_loss": round(final_loss, 4),
        "train_ms_all": [round(1e3 * s, 1) for s in train_s],
    }


def add_ratios(rows: list[dict]) -> None:
    base = next(r for r in rows if r["model"] == BASELINE)
    for row in rows:
        row["train_x_tv"] = round(row["train_img_per_s"] / base["train_img_per_s"], 3)
        row["infer_x_tv"] = round(row["infer_img_per_s"] / base["infer_img_per_s"], 3)
        row["latency_x_tv"] = round(base["latency_bs1_ms"] / row["latency_bs1_ms"], 3)


# ---- report -------------------------------------------------------------------------------------
def header(settings: Settings) -> dict:
    return {
        "bench": "models_speed_header",
        "device": device_name(settings.device),
        **machine(),
        "image_size": settings.image_size,
        "batch_size": settings.batch_size,
        "num_classes": settings.num_classes,
        "boxes_per_image": BOXES_PER_IMAGE,
        "warmup": settings.warmup,
        "steps": settings.steps,
        "bf16_autocast": settings.bf16,
        "channels_last": settings.channels_last,
        "cudnn_benchmark": settings.device.type == "cuda" and torch.backends.cudnn.benchmark,
        "score_threshold": settings.score_threshold,
    }


def print_table(head: dict, rows: list[dict]) -> None:
    on_cpu = head["device"].startswith("CPU")
    mem_note = "peak RSS rise over the phase start, approx." if on_cpu else "CUDA max_memory_allocated"
    print(
        f"# models_speed  {head['date']}  device: {head['device']}  torch {head['torch']}  "
        f"torchvision {head['torchvision']}  timm {head['timm']}"
    )
    print(
        f"# threads {head['threads']}  image {head['image_size']}x{head['image_size']}  "
        f"batch {head['batch_size']}  "
        f"classes {head['num_classes']}  boxes/img {head['boxes_per_image']}  warm-up {head['warmup']}  "
        f"timed {head['steps']} (median)  bf16 {head['bf16_autocast']}  "
        f"channels_last {head['channels_last']}  "
        f"score_thresh {head['score_threshold']}  load avg {head['load_avg_1m_at_start']} -> "
        f"{head['load_avg_1m_at_end']} on {head['cpus_available']} cpus"
    )
    print(
        "# train = fwd + assignment + losses + bwd + SGD step; infer = fwd + decode + NMS; "
        f"x tv = speed-up over {BASELINE} (>1 faster); memory: {mem_note}"
    )

    def mib(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.0f}"

    columns = (
        f"{'model':<18}{'params M':>9}{'train img/s':>12}{'ms/step':>9}{'x tv':>7}"
        f"{'infer img/s':>12}{'x tv':>7}{'lat bs1 ms':>11}{'x tv':>7}{'dets/img':>9}"
        f"{'train MiB':>10}{'infer MiB':>10}"
    )
    print(columns)
    print("-" * len(columns))
    for r in rows:
        print(
            f"{r['model']:<18}{r['params_m']:>9.2f}{r['train_img_per_s']:>12.2f}"
            f"{r['train_ms_per_step']:>9.1f}"
            f"{r['train_x_tv']:>7.2f}{r['infer_img_per_s']:>12.2f}{r['infer_x_tv']:>7.2f}"
            f"{r['latency_bs1_ms']:>11.1f}{r['latency_x_tv']:>7.2f}{r['detections_per_image']:>9.1f}"
            f"{mib(r['train_peak_mib']):>10}{mib(r['infer_peak_mib']):>10}"
        )
    print_json_lines(head, rows)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda if available")
    parser.add_argument("--image-size", type=int, default=None, help="default 640 on cuda, 256 on cpu")
    parser.add_argument("--batch-size", type=int, default=None, help="default 16 on cuda, 2 on cpu")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 30 cuda, 5 cpu)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps (default 10 cuda, 3 cpu)")
    parser.add_argument(
        "--variants", nargs="+", default=None, choices=sorted(VARIANTS), help=f"default {DEFAULT_VARIANTS}"
    )
    parser.add_argument("--large", action="store_true", help=f"also {LARGE_VARIANTS}")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (cuda only)")
    parser.add_argument("--channels-last", action="store_true", help="channels_last models and images")
    parser.add_argument("--num-classes", type=int, default=85, help="as in the anchors note (default 85)")
    parser.add_argument("--score-threshold", type=float, default=0.0, help="for every model (default 0)")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch.set_num_threads; default 1 on cpu (on shared cores, spinning OpenMP threads made "
        "multi-thread timings erratic, 5-20x slower), torch's default on cuda",
    )
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device")
    if args.bf16 and device.type != "cuda":
        raise SystemExit("--bf16 is autocast on cuda only")
    on_gpu = device.type == "cuda"
    threads = args.threads if args.threads is not None else (None if on_gpu else 1)
    if threads is not None:
        torch.set_num_threads(threads)
    if on_gpu:
        torch.backends.cudnn.benchmark = True  # fixed input size; applies to every model alike
    settings = Settings(
        device=device,
        image_size=args.image_size or (640 if on_gpu else 256),
        batch_size=args.batch_size or (16 if on_gpu else 2),
        num_classes=args.num_classes,
        steps=args.steps or (30 if on_gpu else 5),
        warmup=args.warmup if args.warmup is not None else (10 if on_gpu else 3),
        bf16=args.bf16,
        channels_last=args.channels_last,
        score_threshold=args.score_threshold,
    )
    if settings.image_size % 128:
        print(f"# note: image size {settings.image_size} is not a multiple of 128 (FCOS P7 stride)")
    names = list(args.variants or DEFAULT_VARIANTS) + (LARGE_VARIANTS if args.large else [])
    names = [BASELINE] + [n for n in dict.fromkeys(names) if n != BASELINE]
    torch.manual_seed(args.seed)
    inputs = make_inputs(settings, seed=args.seed)
    head = header(settings)  # date and load average at the start
    rows = []
    for name in names:
        torch.manual_seed(args.seed)
        rows.append(measure(name, settings, inputs))
        release_memory(settings.device)  # the model, optimizer and grads went out of scope
    add_ratios(rows)
    head["load_avg_1m_at_end"] = load_average()
    print_table(head, rows)
    return rows


if __name__ == "__main__":
    main()
