"""float32 against bf16 + channels_last, side by side in one process: what ``precision: auto`` buys.

Every row is timed twice on the same random uint8 images and boxes (8 per image): float32 eager
(``32-true``), then bf16 autocast + channels_last weights and inputs (``bf16-mixed``, what
``trainer=cpu`` picks on a CPU with native bf16); ``--compile`` adds a third column, the bf16 step
through ``torch.compile`` (its compile time, ``compile_s``, in the JSON lines; torchvision's
baseline is not compiled). Median of the timed steps after
warm-up; ``MiB/img`` is the rise of the peak memory over the step (CUDA allocator; on a CPU the
process's peak RSS, approximate) per image. Rows:

- ``tv_fcos_r50``: torchvision's ``fcos_resnet50_fpn`` full training step (its transform,
  assignment, losses, backward, SGD): the baseline (``x tv`` = its float32 time over the row's).
- ``fcos_r50`` / ``fcos_r18`` / ``fcos_mobilenetv3`` / ``fcos_mnv3_h64`` / ``yolox_nano`` /
  ``yolox_s``: DFSS's full training step of that model (assignment + every loss + backward + SGD);
  ``fcos_r18_h64`` / ``fcos_mnv3_h64``: with a 64-channel FPN and head (the demo's student is
  ``fcos_r18_h64``; it was ``fcos_mnv3_h64`` before bf16).
- ``distill_r18``: the FCOS-R18 student step + a frozen YOLOX-s teacher forward + the three KD terms.
- ``infer_r18`` / ``tv_infer``: eval forward + decode + unknown rule + NMS (FCOS-R18 / torchvision).

    python bench/precision_speed.py                       # CPU, 320 px, batch 4, 2 threads
    python bench/precision_speed.py --compile --only fcos_r18
    python bench/precision_speed.py --emulated-bf16       # bf16 columns on a CPU without native bf16

On a CPU without native bf16 only the float32 column is timed by default: ``precision: auto``
trains in float32 there, and the emulated bf16 step is many times slower (minutes a row).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from _common import device_name, load_average, machine, print_json_lines, release_memory
from steps_speed import (
    Settings,
    autocast,
    distill_step,
    full_step,
    make_inputs,
    measure,
    prepare,
    sgd,
    tv_train_step,
)
from torch import nn
from torchvision.models.detection import fcos_resnet50_fpn

from dfss.models.fcos import FCOSCriterion, fcos_mobilenetv3, fcos_r18, fcos_r50
from dfss.models.postprocess import PostProcessConfig, postprocess
from dfss.models.yolox import YOLOXCriterion, yolox_nano, yolox_s
from dfss.precision import native_bf16

Step = Callable[[], None]
Build = Callable[[Settings, tuple], Step]


def _fcos_step(builder: Callable[..., nn.Module], **kwargs) -> Build:
    def build(s: Settings, inputs: tuple) -> Step:
        model = prepare(builder(s.classes, box_head="distribution", **kwargs), s, compile=s.compile).train()
        return full_step(model, FCOSCriterion(s.classes, average_across_ranks=False), sgd(model), s, *inputs)

    return build


def _yolox_step(builder: Callable[..., nn.Module]) -> Build:
    def build(s: Settings, inputs: tuple) -> Step:
        model = prepare(builder(s.classes), s, compile=s.compile).train()
        return full_step(model, YOLOXCriterion(s.classes), sgd(model), s, *inputs)

    return build


def _distill_step(s: Settings, inputs: tuple) -> Step:
    student = prepare(fcos_r18(s.classes, box_head="distribution"), s, compile=s.compile).train()
    teacher = prepare(yolox_s(s.classes), s, compile=s.compile).eval().requires_grad_(False)
    criterion = FCOSCriterion(s.classes, average_across_ranks=False)
    return distill_step(student, teacher, criterion, sgd(student), s, *inputs)


def _tv_model(s: Settings) -> nn.Module:
    model = fcos_resnet50_fpn(
        weights=None,
        weights_backbone=None,
        num_classes=s.classes,
        min_size=s.size,
        max_size=s.size,
        score_thresh=0.05,
    ).to(s.device)
    return model.to(memory_format=torch.channels_last) if s.channels_last else model


def _tv_train(s: Settings, inputs: tuple) -> Step:
    model = _tv_model(s).train()
    return tv_train_step(model, sgd(model), s, *inputs)


def _tv_infer(s: Settings, inputs: tuple) -> Step:
    images = inputs[0]
    model = _tv_model(s).eval()

    @torch.inference_mode()
    def step() -> None:
        with autocast(s):
            model(list(images.float().div(255).unbind(0)))

    return step


def _infer_r18(s: Settings, inputs: tuple) -> Step:
    images = inputs[0]
    model = prepare(fcos_r18(s.classes, box_head="distribution"), s, compile=s.compile).eval()
    post = PostProcessConfig(score_threshold=0.05, unknown_threshold=0.1)
    sizes = torch.full((len(images), 2), s.size, device=s.device)

    @torch.inference_mode()
    def step() -> None:
        with autocast(s):
            out = model(images)
        postprocess(out.float(), post, s.size, sizes)

    return step


ROWS: dict[str, tuple[Build, str]] = {  # name -> (builder, baseline row)
    "tv_fcos_r50": (_tv_train, "tv_fcos_r50"),
    "fcos_r50": (_fcos_step(fcos_r50), "tv_fcos_r50"),
    "fcos_r18": (_fcos_step(fcos_r18), "tv_fcos_r50"),
    "fcos_r18_h64": (_fcos_step(fcos_r18, fpn_channels=64), "tv_fcos_r50"),
    "fcos_mobilenetv3": (_fcos_step(fcos_mobilenetv3), "tv_fcos_r50"),
    "fcos_mnv3_h64": (_fcos_step(fcos_mobilenetv3, fpn_channels=64), "tv_fcos_r50"),
    "yolox_nano": (_yolox_step(yolox_nano), "tv_fcos_r50"),
    "yolox_s": (_yolox_step(yolox_s), "tv_fcos_r50"),
    "distill_r18": (_distill_step, "tv_fcos_r50"),
    "tv_infer": (_tv_infer, "tv_infer"),
    "infer_r18": (_infer_r18, "tv_infer"),
}
MODES = {
    "fp32": dict(bf16=False, channels_last=False, compile=False),
    "bf16_cl": dict(bf16=True, channels_last=True, compile=False),
    "bf16_cl_compile": dict(bf16=True, channels_last=True, compile=True),
}
TARGETS = {"fcos_r50": 2.0, "fcos_r18": 2.0, "distill_r18": 1.5}  # speed-up of bf16_cl over fp32


def time_row(name: str, base: Settings, mode: str, inputs_cache: dict) -> dict:
    s = Settings(**{**base.__dict__, **MODES[mode]})
    key = s.channels_last
    if key not in inputs_cache:
        inputs_cache[key] = make_inputs(s)
    torch.manual_seed(0)
    start = time.perf_counter()
    step = ROWS[name][0](s, inputs_cache[key])
    if s.compile:
        step()  # the first call compiles
    setup_s = time.perf_counter() - start
    row = measure(f"{name}/{mode}", step, s, s.batch)
    row.update(row=name, mode=mode, bench="precision_speed")
    if s.compile:
        row["compile_s"] = round(setup_s, 1)
    del step
    release_memory(s.device)
    return row


def timed_modes(native: bool, emulated_bf16: bool, compile: bool) -> list[str]:
    """float32, and the bf16 columns where the device computes bf16 natively (or asked to anyway)."""
    bf16_modes = ["bf16_cl", *(["bf16_cl_compile"] if compile else [])]
    return ["fp32", *(bf16_modes if native or emulated_bf16 else [])]


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--image-size", type=int, default=320)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--classes", type=int, default=20)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, all cores)")
    p.add_argument("--compile", action="store_true", help="add the bf16 + channels_last + compile column")
    p.add_argument("--only", nargs="*", choices=list(ROWS), help="these rows (and their baselines) only")
    p.add_argument(
        "--emulated-bf16",
        action="store_true",
        help="time bf16 on a CPU without native bf16 too (emulated: many times slower, minutes a row; "
        "precision: auto trains in float32 there)",
    )
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    base = Settings(
        device=torch.device(a.device),
        size=a.image_size,
        batch=a.batch_size,
        classes=a.classes,
        steps=a.steps,
        warmup=a.warmup,
        bf16=False,
        channels_last=False,
        compile=False,
    )
    names = list(ROWS) if not a.only else list(dict.fromkeys(n for o in a.only for n in (ROWS[o][1], o)))
    native = native_bf16(base.device)
    modes = timed_modes(native, a.emulated_bf16, a.compile)
    head = {
        "bench": "precision_speed_header",
        "device": device_name(base.device),
        **machine(),
        "native_bf16": native,
        "image_size": base.size,
        "batch_size": base.batch,
        "classes": base.classes,
        "warmup": base.warmup,
        "steps": base.steps,
        "modes": modes,
    }
    rows, inputs_cache = [], {}
    for name in names:
        for mode in modes:
            if not (MODES[mode]["compile"] and name.startswith("tv_")):  # torchvision's is not compiled
                rows.append(time_row(name, base, mode, inputs_cache))
    head["load_avg_1m_at_end"] = load_average()
    by = {(r["row"], r["mode"]): r for r in rows}
    for r in rows:
        r["x_fp32"] = round(by[(r["row"], "fp32")]["ms"] / r["ms"], 3)
        r["x_tv"] = round(by[(ROWS[r["row"]][1], "fp32")]["ms"] / r["ms"], 3)
    print(
        f"# precision_speed  {head['date']}  {head['device']}  torch {head['torch']}  {base.size}px  "
        f"batch {base.batch}  threads {head['threads']}  native bf16 {head['native_bf16']}"
    )
    header = f"{'row':<18}" + "".join(f"{m + ' ms':>22}{'MiB/img':>9}" for m in modes)
    print(header + f"{'x fp32':>8}{'x tv fp32':>11}")
    for name in names:
        cells = ""
        for m in modes:
            if (name, m) not in by:
                cells += f"{'-':>22}{'-':>9}"
                continue
            mib = by[(name, m)]["mib_per_img"]
            cells += f"{by[(name, m)]['ms']:>22.1f}{'n/a' if mib is None else f'{mib:.0f}':>9}"
        fast = by[(name, [m for m in modes if (name, m) in by][-1])]
        print(f"{name:<18}{cells}{fast['x_fp32']:>8.2f}{fast['x_tv']:>11.2f}")
    if "bf16_cl" not in modes:
        print(
            "# no bf16 columns: this CPU has no native bf16, so precision: auto trains in float32 here "
            "(--emulated-bf16 times the emulation anyway)"
        )
    print("# targets (bf16 + channels_last over float32, same step):")
    for name, target in TARGETS.items():
        if (name, "bf16_cl") in by:
            value = by[(name, "bf16_cl")]["x_fp32"]
            print(
                f"#   {name:<14} {value:>6.2f}x  (target >= {target})  "
                f"{'met' if value >= target else 'MISSED'}"
            )
    print_json_lines(head, rows)
    return rows


if __name__ == "__main__":
    main()
