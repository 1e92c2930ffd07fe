"""``dfss-demo``: the main job end to end on the embedded synthetic data, sized for a CPU.

1. train the YOLOX teacher (``experiment=demo_teacher``),
2. train the FCOS student on labels alone — the paper's baseline (``experiment=demo_student``),
3. distil the student from the teacher — DFSS (``experiment=demo_distill``),
4. evaluate all three on the test split, and DFSS again with the unknown rule (``threshold=unknown``),

then print the paper's comparison (Table 1 / Figure 5: teacher, FCOS, DFSS; overall, dangerous,
normal, unknown) and write it as ``summary.md`` and ``summary.json`` in the demo folder. Every stage
is the real pipeline (Hydra config, Lightning Trainer, W&B offline run files, COCO evaluation);
each lands in its own sub-folder. Extra ``key=value`` arguments go to every training stage.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from datetime import datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from dfss.config import compose_config
from dfss.evaluate import run as evaluate
from dfss.report.paper import PAPER_MODELS
from dfss.train import run as train

PAPER = PAPER_MODELS  # the paper's figures on its private data, for orientation (mAP50 / mmAP)
COLUMNS = ("map50", "map", "map50_dangerous", "map50_normal", "map50_unknown")
ROWS = (
    ("teacher", "teacher (YOLOX)", "none"),
    ("student", "FCOS (no KD)", "none"),
    ("distill", "DFSS (FCOS + KD)", "none"),
    ("distill", "DFSS + unknown rule", "unknown"),
)


def _fmt(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.3f}"


def run_demo(
    data_root: str, out_dir: Path, overrides: list[str], unknown_t: float = 0.1, logger: str = "wandb"
) -> dict:
    common = [f"data.root={data_root}", f"logger={logger}", *overrides]
    console = Console(width=max(Console().width, 110))
    checkpoints: dict[str, Path] = {}
    timings: dict[str, float] = {}
    for stage, extra in (
        ("teacher", []),
        ("student", []),
        ("distill", [f"teacher.ckpt_path={out_dir / 'teacher' / 'checkpoints' / 'last.ckpt'}"]),
    ):
        console.rule(f"[bold]demo: {stage}")
        start = time.perf_counter()
        train(
            compose_config(
                "train", [f"experiment=demo_{stage}", "test=false", *common, *extra], out_dir / stage
            )
        )
        timings[f"train_{stage}"] = time.perf_counter() - start
        checkpoints[stage] = out_dir / stage / "checkpoints" / "last.ckpt"
    results: dict[str, dict[str, float]] = {}
    for stage, _, threshold in ROWS:
        key = f"{stage}_{threshold}"
        console.rule(f"[bold]demo: evaluate {stage} (unknown rule: {threshold})")
        overrides_eval = [
            f"data.root={data_root}",
            f"ckpt_path={checkpoints[stage]}",
            f"threshold={threshold}",
        ]
        if threshold == "unknown":
            overrides_eval.append(f"threshold.T={unknown_t}")
        results[key] = evaluate(compose_config("eval", overrides_eval, out_dir / f"eval_{key}"))
    summary = {
        "results": results,
        "paper": PAPER,
        "checkpoints": {k: str(v) for k, v in checkpoints.items()},
        "seconds": timings,
        "unknown_T": unknown_t,
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    (out_dir / "summary.md").write_text(summary_markdown(results, unknown_t))
    print_table(results, unknown_t, console)
    console.print(f"demo folder: {out_dir}")
    return summary


def summary_markdown(results: dict[str, dict[str, float]], unknown_t: float) -> str:
    lines = [
        "| model | mAP50 | mAP | dangerous mAP50 | normal mAP50 | unknown AP50 | paper mAP50 / mAP |",
        "|---|---|---|---|---|---|---|",
    ]
    for stage, title, threshold in ROWS:
        metrics = results[f"{stage}_{threshold}"]
        paper = PAPER[stage] if threshold == "none" else None
        cells = [_fmt(metrics.get(c)) for c in COLUMNS]
        ref = f"{paper['map50']:.3f} / {paper['map']:.3f}" if paper else "-"
        name = f"{title} (T={unknown_t})" if threshold == "unknown" else title
        lines.append(f"| {name} | {' | '.join(cells)} | {ref} |")
    return "\n".join(lines) + "\n"


def print_table(results: dict[str, dict[str, float]], unknown_t: float, console: Console) -> None:
    table = Table(title="DFSS demo: test split of the small synthetic set (paper: its own private data)")
    for header in ("model", "mAP50", "mAP", "dang. mAP50", "norm. mAP50", "unk. AP50", "paper mAP50/mAP"):
        table.add_column(header, justify="left" if header == "model" else "right")
    for stage, title, threshold in ROWS:
        metrics = results[f"{stage}_{threshold}"]
        paper = PAPER[stage] if threshold == "none" else None
        name = f"{title} T={unknown_t}" if threshold == "unknown" else title
        ref = f"{paper['map50']:.3f}/{paper['map']:.3f}" if paper else "-"
        table.add_row(name, *(_fmt(metrics.get(c)) for c in COLUMNS), ref)
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="dfss-demo",
        description=__doc__.split("\n\n")[0],
        epilog="example: dfss-demo --data data/synth_small   (extra: dfss-demo trainer.max_epochs=2)",
    )
    parser.add_argument(
        "--data", default="data/synth_small", help="data set root (dfss-synth --preset small)"
    )
    parser.add_argument("--out", default=None, help="demo folder (default: logs/demo/<date_time>)")
    parser.add_argument("--unknown-t", type=float, default=0.1, help="T of the unknown rule for the last row")
    parser.add_argument("--logger", default="wandb", help="logger group option for the training runs")
    parser.add_argument("overrides", nargs="*", help="key=value Hydra overrides for every training stage")
    args = parser.parse_args(argv)
    if not (Path(args.data) / "annotations" / "test.json").is_file():
        parser.error(
            f"no synthetic set at {args.data}: run `dfss-synth --preset small --out {args.data}` first"
        )
    out_dir = Path(args.out or Path("logs") / "demo" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")).resolve()
    run_demo(str(Path(args.data).resolve()), out_dir, args.overrides, args.unknown_t, args.logger)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
