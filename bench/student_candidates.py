"""Which FCOS is a deployable student: parameters, forward GFLOPs, latency and training speed of the
candidates beside the YOLOX-s teacher, at the benchmark's 320 px, in one process.

A student is only worth distilling for a low-power device if it is lighter than its teacher in
FLOPs *and* in latency. FCOS's head (4 conv layers on each pyramid level, twice) dominates a light
backbone's cost as it widens, so the candidates vary the FPN/head width of the MobileNetV3 student.
Rows:

- ``yolox_s``: the teacher (reference: ``x teacher`` = its figure over the row's);
- ``fcos_mnv3_h{64,96,128,256}``: FCOS-MobileNetV3 with that FPN/head width (128: the model's default);
- ``fcos_r18_h64``: the CPU demo's student.

Columns: parameters (M); forward GFLOPs per image (``torch.utils.flop_counter``: multiply-adds
counted as 2 FLOPs, convolutions and matmuls only); eval-mode latency at batch 1 (median of
``--steps`` calls, ms); the full training step (forward, assignment, losses, backward, SGD) in
images/s at ``--batch-size``, in the precision ``trainer=cpu`` would pick here (bf16 + channels_last
where the CPU computes bf16 natively, else float32); and for the students the distillation step
(student step + the teacher's forward + the three KD terms) in images/s, the rate a DFSS run trains
at. Speed says nothing of accuracy: the short accuracy probe is a training run per candidate.

    python bench/student_candidates.py                        # 320 px, batch 8, 2 threads
    python bench/student_candidates.py --only fcos_mnv3_h64 fcos_mnv3_h128 --steps 3
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from dataclasses import replace

import torch
from _common import device_name, load_average, machine, print_json_lines, release_memory, time_calls
from steps_speed import Settings, autocast, distill_step, full_step, make_inputs, prepare, sgd
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from dfss.models.fcos import FCOSCriterion, fcos_mobilenetv3, fcos_r18
from dfss.models.yolox import YOLOXCriterion, yolox_s
from dfss.precision import native_bf16

TEACHER = "yolox_s"
CANDIDATES: dict[str, Callable[[int], nn.Module]] = {
    TEACHER: lambda k: yolox_s(k),
    **{
        f"fcos_mnv3_h{c}": (lambda k, c=c: fcos_mobilenetv3(k, box_head="distribution", fpn_channels=c))
        for c in (64, 96, 128, 256)
    },
    "fcos_r18_h64": lambda k: fcos_r18(k, box_head="distribution", fpn_channels=64),
}


def forward_gflops(model: nn.Module, size: int) -> float:
    """GFLOPs of one eval-mode forward of one ``size`` x ``size`` image."""
    image = torch.randint(0, 256, (1, 3, size, size), dtype=torch.uint8)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model.eval()(image)
    return counter.get_total_flops() / 1e9


def latency_ms(model: nn.Module, s: Settings) -> float:
    image = make_inputs(replace(s, batch=1))[0]
    model.eval()
    with torch.no_grad(), autocast(s):
        seconds = time_calls(lambda: model(image), s.device, s.warmup, s.steps)
    return 1e3 * statistics.median(seconds)


def train_img_per_s(step: Callable[[], None], s: Settings) -> float:
    return s.batch / statistics.median(time_calls(step, s.device, s.warmup, s.steps))


def measure(name: str, s: Settings, teacher: nn.Module) -> dict:
    torch.manual_seed(0)
    model = prepare(CANDIDATES[name](s.classes), s, compile=False)
    row = {
        "bench": "student_candidates",
        "model": name,
        "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "gflops": round(forward_gflops(model, s.size), 2),
        "latency_bs1_ms": round(latency_ms(model, s), 1),
    }
    inputs = make_inputs(s)
    model.train()
    if name == TEACHER:
        step = full_step(model, YOLOXCriterion(s.classes), sgd(model), s, *inputs)
    else:
        criterion = FCOSCriterion(s.classes, average_across_ranks=False)
        step = full_step(model, criterion, sgd(model), s, *inputs)
    row["train_img_per_s"] = round(train_img_per_s(step, s), 2)
    if name != TEACHER:
        kd = distill_step(model, teacher, criterion, sgd(model), s, *inputs)
        row["distill_img_per_s"] = round(train_img_per_s(kd, s), 2)
    release_memory(s.device)
    print(f"# measured {row}", flush=True)
    return row


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image-size", type=int, default=320)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--classes", type=int, default=20)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, all cores)")
    p.add_argument("--only", nargs="*", choices=list(CANDIDATES), help="these rows (and the teacher) only")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device("cpu")
    native = native_bf16(device)
    s = Settings(
        device=device,
        size=a.image_size,
        batch=a.batch_size,
        classes=a.classes,
        steps=a.steps,
        warmup=a.warmup,
        bf16=native,
        channels_last=native,
        compile=False,
    )
    names = [TEACHER, *(n for n in (a.only or CANDIDATES) if n != TEACHER)]
    teacher = prepare(yolox_s(s.classes), s, compile=False).eval().requires_grad_(False)
    head = {
        "bench": "student_candidates_header",
        "device": device_name(device),
        **machine(),
        "precision": "bf16 + channels_last" if native else "float32",
        "image_size": s.size,
        "batch_size": s.batch,
        "classes": s.classes,
        "warmup": s.warmup,
        "steps": s.steps,
    }
    rows = [measure(name, s, teacher) for name in names]
    head["load_avg_1m_at_end"] = load_average()
    ref = rows[0]
    for r in rows:
        r["gflops_x_teacher"] = round(r["gflops"] / ref["gflops"], 3)
        r["latency_x_teacher"] = round(r["latency_bs1_ms"] / ref["latency_bs1_ms"], 3)
    print(
        f"# student_candidates  {head['date']}  {head['device']}  torch {head['torch']}  {s.size}px  "
        f"batch {s.batch}  threads {head['threads']}  {head['precision']}"
    )
    print(
        f"{'model':<16}{'params M':>9}{'GFLOPs':>8}{'x teacher':>10}{'bs1 ms':>8}{'x teacher':>10}"
        f"{'train img/s':>12}{'distill img/s':>14}"
    )
    for r in rows:
        distill = r.get("distill_img_per_s")
        print(
            f"{r['model']:<16}{r['params_m']:>9.2f}{r['gflops']:>8.2f}{r['gflops_x_teacher']:>10.2f}"
            f"{r['latency_bs1_ms']:>8.1f}{r['latency_x_teacher']:>10.2f}{r['train_img_per_s']:>12.2f}"
            f"{'-' if distill is None else f'{distill:.2f}':>14}"
        )
    print_json_lines(head, rows)
    return rows


if __name__ == "__main__":
    main()
