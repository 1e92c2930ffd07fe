"""Calibrate the ``results`` preset without a GPU: the GPU plan's teacher, trained on the CPU.

The GPU plan (``dfss/results/plans/gpu.yaml``) fixes the teacher's schedule in epochs — YOLOX-s,
30 epochs, batch 32, on the 320 px ``results`` set — so its test mAP50, the figure the preset is
calibrated on (0.60-0.75), does not depend on the machine that trains it. This script runs exactly
that stage's config (read from the plan, so the two cannot drift apart) with ``trainer=cpu``
(fp32 instead of bf16 autocast; no channels_last or compile), one torch thread and one loader
worker, a ``last.ckpt`` after every epoch, then evaluates ``last.ckpt`` on the test split as
``dfss-results`` does and prints the verdict. ``calibration.json`` names the preset and its
version; once the preset is frozen, ``dfss-report`` quotes the record of its version.

About 10 minutes an epoch on one core of this project's machine, so some 5 hours in all. Run it
again after an interruption (a session's end) and it continues from ``last.ckpt``; a finished run
is only evaluated.

    python experiments/calibrate_cpu.py                      # results/calibration/teacher_try1
    python experiments/calibrate_cpu.py --name teacher_try2  # another try (after changing the preset)
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
from pathlib import Path

from dfss.config import compose_config
from dfss.fileio import write_json_atomic
from dfss.report.paper import CALIBRATION_RANGE, in_calibration_range
from dfss.results.plan import expand, load_plan
from dfss.results.runner import LAST, ensure_data, evaluate_checkpoint
from dfss.synth.config import load_preset


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--name", default="teacher_try1", help="run folder under --out")
    parser.add_argument("--out", default="results/calibration")
    parser.add_argument("--data-dir", default="data/synth_results")
    parser.add_argument("--plan", default="gpu")
    args = parser.parse_args(argv)
    plan = load_plan(args.plan, args.data_dir)
    ensure_data(plan, workers=os.cpu_count() or 1)  # refuses a --data-dir made with other knobs
    preset = load_preset(plan.synth_preset)
    teacher = next(spec for spec in expand(plan) if spec.role == "teacher")
    run_dir = Path(args.out).resolve() / args.name
    overrides = [
        f"experiment={teacher.experiment}",
        *teacher.overrides,
        "trainer=cpu",
        "data.num_workers=1",
        "test=false",
        "trainer.enable_progress_bar=false",
        "callbacks.rich_progress_bar=null",
        "callbacks.resume_checkpoint.every_n_train_steps=63",  # about one epoch of 2000 images at batch 32
    ]
    if not (run_dir / "metrics.json").is_file():
        from dfss.train import run as train

        if (run_dir / LAST).is_file():
            overrides.append(f"ckpt_path={run_dir / LAST}")
        print("train.py " + " ".join(overrides), flush=True)
        train(compose_config("train", overrides, run_dir))
    metrics = evaluate_checkpoint(plan.eval, run_dir / LAST, run_dir / "eval", None)
    map50 = metrics["map50"]
    verdict = (
        "in range: freeze the preset"
        if in_calibration_range(map50)
        else "out of range: change scene knobs only"
    )
    summary = {
        "run": str(run_dir),
        "teacher_test_map50": map50,
        "range": list(CALIBRATION_RANGE),
        "verdict": verdict,
        "map50_dangerous": metrics.get("map50_dangerous"),
        "map50_normal": metrics.get("map50_normal"),
        # which benchmark this calibrates: dfss-report quotes the record of the preset's version
        "preset": plan.synth_preset,
        "preset_version": preset.version,
        "data_dir": plan.data_dir,
    }
    write_json_atomic(run_dir / "calibration.json", summary, indent=2)  # dfss-report reads it
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
