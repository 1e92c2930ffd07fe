"""Every step type of DFSS next to torchvision's FCOS-R50, measured in one process: the issue-6 table.

Same random uint8 images and boxes (8 per image) for all; median of the timed steps after warm-up
(``torch.compile`` compiles during warm-up); each step synchronised on CUDA. Rows:

- ``tv_train``: torchvision ``fcos_resnet50_fpn`` full training step (its transform, assignment,
  losses, backward, SGD) — the baseline of the training targets.
- ``net_only``: our FCOS-R50 student, forward + a trivial loss on every output + backward + SGD
  (no assignment, no detection loss): the network's own cost.
- ``student``: our FCOS-R50 student full step (batched assignment + focal/GIoU/centerness/DFL + bwd + SGD).
- ``student_eager``: the same without ``torch.compile`` (what compile buys).
- ``distill``: the student step + frozen YOLOX-s teacher forward + the three KD terms.
- ``teacher``: YOLOX-s full step (batched SimOTA + losses + bwd + SGD); ``assign_frac`` is the time of
  the SimOTA assignment alone (same outputs, timed separately) over the step time.
- ``tv_infer`` / ``infer``: eval forward + decode + (ours: unknown rule) + NMS at the batch size;
  ``*_bs1``: the same at batch 1 (latency).

Ratios (``x``) are to the torchvision row of the same kind; ``mib/img`` is the peak memory of the
step (CUDA allocator; on CPU the rise of the peak RSS, approximate) over the batch size.

    python bench/steps_speed.py                  # CPU: 256 px, batch 2, eager
    python bench/steps_speed.py --device cuda    # 640 px, batch 16, bf16, channels_last, compile
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
from collections.abc import Callable
from dataclasses import dataclass

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

from dfss.distill import DistillationLoss
from dfss.models.fcos import FCOSCriterion, fcos_r50
from dfss.models.outputs import DenseOutputs
from dfss.models.postprocess import PostProcessConfig, postprocess
from dfss.models.yolox import YOLOXCriterion, yolox_s

BOXES_PER_IMAGE = 8


@dataclass(frozen=True)
class Settings:
    device: torch.device
    size: int
    batch: int
    classes: int
    steps: int
    warmup: int
    bf16: bool
    channels_last: bool
    compile: bool


def make_inputs(s: Settings, seed: int = 0) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (s.batch, 3, s.size, s.size), dtype=torch.uint8, generator=g)
    boxes, labels = [], []
    for _ in range(s.batch):
        centre = torch.rand(BOXES_PER_IMAGE, 2, generator=g) * s.size
        half = (0.02 + 0.23 * torch.rand(BOXES_PER_IMAGE, 2, generator=g)) * s.size
        boxes.append(torch.cat([centre - half, centre + half], 1).clamp(0, s.size).to(s.device))
        labels.append(torch.randint(0, s.classes, (BOXES_PER_IMAGE,), generator=g).to(s.device))
    images = images.to(s.device)
    if s.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images, boxes, labels


def autocast(s: Settings):
    return torch.autocast(s.device.type, dtype=torch.bfloat16) if s.bf16 else contextlib.nullcontext()


def prepare(model: nn.Module, s: Settings, *, compile: bool) -> nn.Module:
    model = model.to(s.device)
    if s.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if compile:
        model.compile()  # in place: parameter names (and checkpoints) unchanged
    return model


def sgd(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)


def full_step(
    model: nn.Module,
    criterion: nn.Module,
    opt: torch.optim.Optimizer,
    s: Settings,
    images: Tensor,
    boxes: list[Tensor],
    labels: list[Tensor],
) -> Callable[[], None]:
    """One training step: forward, assignment + all losses (the criterion), backward, SGD."""

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with autocast(s):
            loss = criterion(model(images), boxes, labels)["loss"]
        loss.backward()
        opt.step()

    return step


def distill_step(
    student: nn.Module,
    teacher: nn.Module,
    criterion: nn.Module,
    opt: torch.optim.Optimizer,
    s: Settings,
    images: Tensor,
    boxes: list[Tensor],
    labels: list[Tensor],
) -> Callable[[], None]:
    """One distillation step: the student's full step + the frozen teacher's forward + the KD terms."""
    kd = DistillationLoss(sync_normalizers=False)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with autocast(s):
            out = student(images)
            assigned = criterion.assign(out, boxes, labels)
            loss = criterion.loss_from_targets(out, assigned)["loss"]
            with torch.no_grad():
                teacher_out = teacher(images)
            loss = loss + kd(out, teacher_out, student_positive=assigned.foreground_mask)["loss_kd"]
        loss.backward()
        opt.step()

    return step


def trivial_loss(out: DenseOutputs) -> Tensor:
    parts = [out.cls_logits, out.box_regression, out.quality_logits]
    if out.box_distribution_logits is not None:
        parts.append(out.box_distribution_logits)
    return sum(p.float().mean() for p in parts)


PROFILE: set[str] = set()  # step names to profile (--profile)


def profile(name: str, step: Callable[[], object], s: Settings) -> None:
    """``torch.profiler`` over 3 calls after warm-up: the top operators of the step, by self time."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if s.device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(3):
            step()
        if s.device.type == "cuda":
            torch.cuda.synchronize()
    key = "self_device_time_total" if s.device.type == "cuda" else "self_cpu_time_total"
    print(f"# profile of {name} (3 steps), by {key}")
    print(prof.key_averages().table(sort_by=key, row_limit=15))


def measure(name: str, step: Callable[[], object], s: Settings, batch: int, **extra) -> dict:
    with PeakMemory(s.device) as memory:
        seconds = time_calls(step, s.device, s.warmup, s.steps)
    if name in PROFILE:
        profile(name, step, s)
    median = statistics.median(seconds)
    release_memory(s.device)
    row = {
        "bench": "steps_speed",
        "step": name,
        "img_per_s": round(batch / median, 2),
        "ms": round(1e3 * median, 2),
        "mib_per_img": None if memory.mib is None else round(memory.mib / batch, 1),
        **extra,
    }
    # At once, so that a run cut short by a time limit (a lent GPU's) still shows the steps it timed.
    print(f"# measured {json.dumps(row)}", flush=True)
    return row


def tv_train_step(
    tv: nn.Module,
    opt: torch.optim.Optimizer,
    s: Settings,
    images: Tensor,
    boxes: list[Tensor],
    labels: list[Tensor],
) -> Callable[[], None]:
    """torchvision's FCOS training step: its transform, assignment and losses, backward, SGD."""
    targets = [{"boxes": b, "labels": lab} for b, lab in zip(boxes, labels, strict=True)]

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with autocast(s):
            loss = sum(tv(list(images.float().div(255).unbind(0)), targets).values())
        loss.backward()
        opt.step()

    return step


def torchvision_rows(s: Settings, images: Tensor, boxes: list[Tensor], labels: list[Tensor]) -> list[dict]:
    """torchvision's FCOS-R50: training step, inference at the batch size and at batch 1."""
    rows = []
    tv = fcos_resnet50_fpn(
        weights=None,
        weights_backbone=None,
        num_classes=s.classes,
        min_size=s.size,
        max_size=s.size,
        score_thresh=0.05,
    ).to(s.device)
    tv.train()
    rows.append(measure("tv_train", tv_train_step(tv, sgd(tv), s, images, boxes, labels), s, s.batch))
    tv.eval()

    @torch.inference_mode()
    def tv_infer(x: Tensor) -> None:
        with autocast(s):
            tv(list(x.float().div(255).unbind(0)))

    rows.append(measure("tv_infer", lambda: tv_infer(images), s, s.batch))
    rows.append(measure("tv_infer_bs1", lambda: tv_infer(images[:1]), s, 1))
    return rows


def student_rows(s: Settings, images: Tensor, boxes: list[Tensor], labels: list[Tensor]) -> list[dict]:
    """Our FCOS-R50 student: network only, full step, distillation step, inference."""
    rows = []
    student = prepare(fcos_r50(s.classes, box_head="distribution"), s, compile=s.compile)
    criterion = FCOSCriterion(s.classes).to(s.device)
    opt = sgd(student)

    def net_only() -> None:
        opt.zero_grad(set_to_none=True)
        with autocast(s):
            loss = trivial_loss(student(images))
        loss.backward()
        opt.step()

    student.train()
    rows.append(measure("net_only", net_only, s, s.batch))
    rows.append(measure("student", full_step(student, criterion, opt, s, images, boxes, labels), s, s.batch))

    # ---- distillation: + frozen YOLOX-s teacher and the KD terms ----------------------------------
    teacher = prepare(yolox_s(s.classes), s, compile=s.compile).eval().requires_grad_(False)
    step = distill_step(student, teacher, criterion, opt, s, images, boxes, labels)
    rows.append(measure("distill", step, s, s.batch))

    # ---- inference with decode, unknown rule and NMS ----------------------------------------------
    student.eval()
    post = PostProcessConfig(score_threshold=0.05, unknown_threshold=0.1)
    sizes = torch.full((s.batch, 2), s.size, device=s.device)

    @torch.inference_mode()
    def infer(x: Tensor) -> None:
        with autocast(s):
            out = student(x)
        postprocess(out, post, s.size, sizes[: len(x)])

    rows.append(measure("infer", lambda: infer(images), s, s.batch))
    rows.append(measure("infer_bs1", lambda: infer(images[:1]), s, 1))
    return rows


def eager_student_row(s: Settings, images: Tensor, boxes: list[Tensor], labels: list[Tensor]) -> dict:
    """What compile buys: the student's full step without it."""
    model = prepare(fcos_r50(s.classes, box_head="distribution"), s, compile=False).train()
    criterion = FCOSCriterion(s.classes).to(s.device)
    return measure(
        "student_eager", full_step(model, criterion, sgd(model), s, images, boxes, labels), s, s.batch
    )


def teacher_row(s: Settings, images: Tensor, boxes: list[Tensor], labels: list[Tensor]) -> dict:
    """The YOLOX-s teacher's full step with batched SimOTA, and the share of the assignment."""
    yolox = prepare(yolox_s(s.classes), s, compile=s.compile).train()
    ycrit = YOLOXCriterion(s.classes).to(s.device)
    row = measure("teacher", full_step(yolox, ycrit, sgd(yolox), s, images, boxes, labels), s, s.batch)
    with torch.no_grad(), autocast(s):
        fixed = yolox(images)
    assign_ms = 1e3 * statistics.median(
        time_calls(lambda: ycrit.assign(fixed, boxes, labels), s.device, 3, s.steps)
    )
    row["assign_ms"] = round(assign_ms, 2)
    row["assign_frac"] = round(assign_ms / row["ms"], 3)
    return row


def run(s: Settings) -> list[dict]:
    inputs = make_inputs(s)
    rows = torchvision_rows(s, *inputs)
    release_memory(s.device)
    rows += student_rows(s, *inputs)
    release_memory(s.device)
    if s.compile:
        rows.append(eager_student_row(s, *inputs))
        release_memory(s.device)
    rows.append(teacher_row(s, *inputs))
    release_memory(s.device)
    by = {r["step"]: r for r in rows}
    for r in rows:
        base = (
            by["tv_infer_bs1"]
            if r["step"].endswith("bs1")
            else by["tv_infer" if "infer" in r["step"] else "tv_train"]
        )
        r["x_tv"] = round(r["img_per_s"] / base["img_per_s"], 3)
    by["student"]["x_net_only"] = round(by["student"]["img_per_s"] / by["net_only"]["img_per_s"], 3)
    by["distill"]["x_student"] = round(by["distill"]["img_per_s"] / by["student"]["img_per_s"], 3)
    by["infer_bs1"]["latency_x_tv"] = round(by["infer_bs1"]["ms"] / by["tv_infer_bs1"]["ms"], 3)
    return rows


TARGETS = {  # step -> (key, comparison, threshold, words)
    "student": [
        ("x_tv", ">=", 2.0, "student step vs torchvision"),
        ("x_net_only", ">=", 0.85, "vs network-only"),
    ],
    "distill": [("x_student", ">=", 0.80, "distill step vs student step")],
    "teacher": [("assign_frac", "<=", 0.15, "SimOTA share of the teacher step")],
    "infer": [("x_tv", ">=", 3.0, "inference bs16 vs torchvision")],
    "infer_bs1": [("latency_x_tv", "<=", 0.5, "latency bs1 vs torchvision")],
}


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu"
    )
    p.add_argument("--image-size", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--steps", type=int)
    p.add_argument("--warmup", type=int)
    p.add_argument("--classes", type=int, default=85)
    p.add_argument("--no-bf16", action="store_true", help="(cuda) fp32 instead of bf16 autocast")
    p.add_argument("--no-channels-last", action="store_true")
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--threads", type=int, default=None, help="default 1 on cpu")
    p.add_argument("--profile", nargs="*", default=[], help="step names to profile, e.g. student teacher")
    a = p.parse_args(argv)
    PROFILE.update(a.profile)
    gpu = a.device == "cuda"
    torch.set_num_threads(a.threads or (torch.get_num_threads() if gpu else 1))
    if gpu:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    s = Settings(
        device=torch.device(a.device),
        size=a.image_size or (640 if gpu else 256),
        batch=a.batch_size or (16 if gpu else 2),
        classes=a.classes,
        steps=a.steps or (20 if gpu else 4),
        warmup=a.warmup if a.warmup is not None else (8 if gpu else 2),
        bf16=gpu and not a.no_bf16,
        channels_last=gpu and not a.no_channels_last,
        compile=gpu and not a.no_compile,
    )
    torch.manual_seed(0)
    head = {
        "bench": "steps_speed_header",
        "device": device_name(s.device),
        **machine(),
        "image_size": s.size,
        "batch_size": s.batch,
        "classes": s.classes,
        "bf16": s.bf16,
        "channels_last": s.channels_last,
        "compile": s.compile,
        "warmup": s.warmup,
        "steps": s.steps,
    }
    rows = run(s)
    head["load_avg_1m_at_end"] = load_average()
    print(
        f"# steps_speed  {head['date']}  {head['device']}  torch {head['torch']}  "
        f"{s.size}px  batch {s.batch}  "
        f"bf16 {s.bf16}  channels_last {s.channels_last}  compile {s.compile}  threads {head['threads']}"
    )
    print(f"{'step':<16}{'img/s':>10}{'ms':>10}{'x tv':>8}{'MiB/img':>9}  other")
    for r in rows:
        other = {
            k: v for k, v in r.items() if k in ("x_net_only", "x_student", "assign_frac", "latency_x_tv")
        }
        mib = "n/a" if r["mib_per_img"] is None else f"{r['mib_per_img']:.0f}"
        print(
            f"{r['step']:<16}{r['img_per_s']:>10.2f}{r['ms']:>10.1f}{r['x_tv']:>8.2f}{mib:>9}  {other or ''}"
        )
    print("# targets:")
    by = {r["step"]: r for r in rows}
    for step, checks in TARGETS.items():
        for key, op, threshold, words in checks:
            value = by[step][key]
            met = value >= threshold if op == ">=" else value <= threshold
            print(f"#   {words:<36} {value:>7.3f}  (target {op} {threshold})  {'met' if met else 'MISSED'}")
    print_json_lines(head, rows)
    return rows


if __name__ == "__main__":
    main()
