"""The teacher's mosaic recipe, A/B: the first mosaic (every object halved) against the fixed one.

The first ``MosaicMixup`` resized its whole ``2S x 2S`` canvas to ``S x S``: with ``mosaic_prob=1``
the teacher never saw an object at the size it is tested at. The fix zooms a window of the canvas
(objects at 1.0x on average) and, as YOLOX, closes mosaic and mixup for the last epochs. This trains
the CPU plan's teacher (YOLOX-nano, the 256 px small set, 30 epochs) with the teacher experiment's
augmentation (mosaic 1.0, mixup 0.5, L1 from epoch 25) in three arms and prints their test metrics:

* ``halved``: ``data.mosaic_scale=[0.5,0.5]`` (exactly the first version's geometry), never closed;
* ``zoom``: the default window zoom ``(0.6, 1.8)``, never closed;
* ``zoom+close``: the default zoom, mosaic and mixup off from epoch 25 (the teacher experiment now).

    python experiments/mosaic_ab.py [--seeds 1 2] [--jobs 2] [--out results/mosaic_ab]

Each run is its own process (the results runner's ``run_parallel``, logs in ``<out>/logs/``), one
torch thread, ``--jobs`` at a time, about 4 minutes each on this project's CPU; finished runs are
not retrained. Writes ``<out>/summary.json`` and the table, ``<out>/summary.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dfss.results.plan import RunSpec, load_plan  # noqa: E402
from dfss.results.runner import ensure_data, eval_dir_name, run_parallel  # noqa: E402

COMMON = ["data.mosaic_prob=1.0", "data.mixup_prob=0.5", "module.l1_from_epoch=25"]
ARMS = {
    "halved": ["data.mosaic_scale=[0.5,0.5]", "data.close_mosaic_epoch=null"],
    "zoom": ["data.close_mosaic_epoch=null"],
    "zoom+close": ["data.close_mosaic_epoch=25"],
}
KEYS = ("map50", "map", "map50_dangerous", "map50_normal", "map_small")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--out", default="results/mosaic_ab")
    parser.add_argument("--data-dir", default="data/synth_small")
    args = parser.parse_args(argv)
    plan = load_plan("cpu", args.data_dir)
    ensure_data(plan, workers=os.cpu_count() or 1)
    out = Path(args.out).resolve()
    base = [
        f"experiment={plan.stages['teacher'].experiment}",
        *plan.common,
        *COMMON,
        f"trainer.max_epochs={args.epochs}",
        "data.num_workers=1",
    ]
    # Each arm is a teacher run of the results runner: its own process, resumed when cut, evaluated once.
    specs = [
        RunSpec(
            name=f"{arm}_s{seed}",
            role="teacher",
            experiment=plan.stages["teacher"].experiment,
            seed=seed,
            overrides=(*base[1:], *ARMS[arm], f"seed={seed}"),
        )
        for seed in args.seeds
        for arm in ARMS
    ]
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    failures = run_parallel(
        plan,
        specs,
        out,
        {spec.name: [None] for spec in specs},
        args.jobs,
        lambda spec, result: seconds.update({spec.name: result.get("seconds_train", 0.0)}),
    )
    if failures:
        raise SystemExit("\n".join(failures))
    earlier = (
        json.loads((out / "summary.json").read_text())["runs"] if (out / "summary.json").is_file() else {}
    )
    rows: dict[str, list[dict]] = {arm: [] for arm in ARMS}
    for spec in specs:
        arm = spec.name.rsplit("_s", 1)[0]
        # A run trained by an earlier call keeps the training time that call measured.
        took = seconds[spec.name] or next(
            (r["seconds_train"] for r in earlier.get(arm, []) if r["seed"] == spec.seed), 0.0
        )
        metrics = json.loads((out / spec.name / eval_dir_name() / "metrics.json").read_text())
        rows[arm].append(
            {"seed": spec.seed, "seconds_train": round(took, 1), **{k: metrics[k] for k in KEYS}}
        )
    summary = {"arms": {arm: ARMS[arm] for arm in ARMS}, "common": base, "runs": rows}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    lines = [
        f"# test split of {args.data_dir}, seeds {args.seeds}, mean ± std over seeds",
        "| arm | " + " | ".join(KEYS) + " |",
        "|---|" + "---|" * len(KEYS),
    ]
    for arm, values in rows.items():
        cells = []
        for key in KEYS:
            column = np.array([v[key] for v in values])
            cells.append(
                f"{column.mean():.3f} ± {column.std(ddof=1):.3f}" if len(column) > 1 else f"{column[0]:.3f}"
            )
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return summary


if __name__ == "__main__":
    main()
