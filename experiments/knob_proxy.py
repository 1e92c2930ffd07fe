r"""Which scene knob makes the ``results`` preset harder, and by how much: a cheap proxy before a
calibration try.

A calibration try trains the GPU plan's teacher for 30 epochs (some 3 hours on this project's CPU).
Before spending that on a knob change, this script asks a cheaper question: how much does the
*already trained* teacher of an earlier try lose when only its **test** scenes change? For each
variant it renders a test split with the preset's knobs changed (``--num-test`` scans; train and
val are 1 scan each, unused), evaluates the checkpoint on it as ``dfss-results`` does, and prints
mAP50 next to the unchanged preset rendered the same way. A teacher trained on the harder scenes
adapts to them, so its drop will be smaller than the proxy's: the proxy ranks the knobs and bounds
the effect, it does not predict the try's figure.

Each round of variants is kept (``--round``), with the preset version its knobs are relative to:
the script refuses a round whose base is not the current preset, so an old table stays what it was.
A round is rerun at a commit where the preset had its version (results/calibration/README.md):

    # before try 3 (results-1.0): try 2's teacher
    python experiments/knob_proxy.py --round try3 \
        --ckpt results/calibration/teacher_try2/checkpoints/last.ckpt
    # before try 4 (results-1.1): try 3's teacher
    python experiments/knob_proxy.py --round try4 \
        --ckpt results/calibration/teacher_try3/checkpoints/last.ckpt
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import dataclasses
import json
from pathlib import Path

from dfss.results.plan import load_plan
from dfss.results.runner import ensure_synth_set, evaluate_checkpoint
from dfss.synth.config import load_preset

# round -> (preset version its knobs are relative to, name -> knobs changed; scene knobs only: the
# calibration rule)
ROUNDS: dict[str, tuple[str, dict[str, dict]]] = {
    "try3": (
        "results-1.0-uncalibrated",
        {
            "preset": {},
            "clutter_0.9": {"clutter": 0.9},
            "objects_3_9": {"objects_per_image": (3, 9)},
            "photons_3000": {"photons_per_pixel": 3000.0},
            "scale_0.7_1.0": {"scale_range": (0.7, 1.0)},
            # stronger settings, after the first five moved mAP50 by at most a few points
            "overlap_0.6": {"max_overlap_iou": 0.6},
            "photons_1000": {"photons_per_pixel": 1000.0},
            "scale_0.55_0.85": {"scale_range": (0.55, 0.85)},
            "objects_4_12": {"objects_per_image": (4, 12)},
            "combo": {
                "clutter": 0.9,
                "objects_per_image": (4, 12),
                "max_overlap_iou": 0.6,
                "scale_range": (0.7, 1.0),
            },
            # the strongest of each, noise and size included (what retraining cannot learn away)
            "combo_hard": {
                "clutter": 0.9,
                "objects_per_image": (4, 12),
                "max_overlap_iou": 0.6,
                "scale_range": (0.55, 0.85),
                "photons_per_pixel": 1000.0,
            },
        },
    ),
    # Try 3's teacher won back most of the 11 points its proxy lost. More objects per scan also
    # means more training boxes, which a proxy cannot see, so this round leaves objects_per_image
    # alone and tries the knobs that take information away: photon noise, size, occlusion.
    "try4": (
        "results-1.1-uncalibrated",
        {
            "preset": {},
            "photons_500": {"photons_per_pixel": 500.0},
            "photons_250": {"photons_per_pixel": 250.0},
            "scale_0.45_0.7": {"scale_range": (0.45, 0.7)},
            "overlap_0.8": {"max_overlap_iou": 0.8},
            "clutter_1.0": {"clutter": 1.0},
            "combo": {
                "clutter": 1.0,
                "max_overlap_iou": 0.8,
                "scale_range": (0.45, 0.7),
                "photons_per_pixel": 500.0,
            },
            "combo_hard": {
                "clutter": 1.0,
                "max_overlap_iou": 0.8,
                "scale_range": (0.45, 0.7),
                "photons_per_pixel": 250.0,
            },
            # added after the eight above: only photon noise moved the score, and steeply
            # (500 -> 250 photons cost 7 points), so map that curve further
            "photons_200": {"photons_per_pixel": 200.0},
            "photons_150": {"photons_per_pixel": 150.0},
        },
    ),
}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ckpt", required=True, help="a teacher trained on the preset")
    parser.add_argument("--preset", default="results")
    parser.add_argument(
        "--round", required=True, choices=sorted(ROUNDS), help="which variants: try<N> ran before try N"
    )
    parser.add_argument("--num-test", type=int, default=250)
    parser.add_argument("--data-dir", default="data/knob_proxy")
    parser.add_argument(
        "--out", help="default: results/calibration/knob_proxy (round try3), knob_proxy_<round> otherwise"
    )
    parser.add_argument("--only", nargs="*", help="variant names (default: all)")
    args = parser.parse_args(argv)
    base = load_preset(args.preset)
    version, variants = ROUNDS[args.round]
    if base.version != version:
        parser.error(
            f"round {args.round!r} changes knobs of preset version {version!r}, "
            f"but {args.preset!r} is {base.version!r}"
        )
    unknown = sorted(set(args.only or ()) - set(variants))
    if unknown:
        parser.error(f"no variant {unknown} in round {args.round!r}; it has {list(variants)}")
    if args.out is None:
        args.out = "results/calibration/knob_proxy" + ("" if args.round == "try3" else f"_{args.round}")
    rows = []
    for name, knobs in variants.items():
        if args.only and name not in args.only:
            continue
        config = dataclasses.replace(base, num_train=1, num_val=1, num_test=args.num_test, **knobs)
        root = ensure_synth_set(
            config, Path(args.data_dir) / args.round / name, f"variant {name!r}", os.cpu_count() or 1
        )
        plan = load_plan("gpu", str(root))  # its eval overrides, on this variant's set
        metrics = evaluate_checkpoint(plan.eval, Path(args.ckpt), Path(args.out) / name, None)
        row = {
            "variant": name,
            "knobs": {k: list(v) if isinstance(v, tuple) else v for k, v in knobs.items()},
            "map50": metrics["map50"],
            "map50_dangerous": metrics["map50_dangerous"],
            "map50_normal": metrics["map50_normal"],
            "map_small": metrics["map_small"],
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    reference = next((r["map50"] for r in rows if r["variant"] == "preset"), None)
    print(
        "\n| variant | knobs | test mAP50 | Δ vs preset | dangerous | normal | mAP small |\n"
        "|---|---|---|---|---|---|---|"
    )
    for r in rows:
        delta = "" if reference is None else f"{100 * (r['map50'] - reference):+.1f} pts"
        print(
            f"| {r['variant']} | {r['knobs'] or '-'} | {r['map50']:.3f} | {delta} | "
            f"{r['map50_dangerous']:.3f} | {r['map50_normal']:.3f} | {r['map_small']:.3f} |"
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = out / "summary.json"  # rows of earlier invocations (--only) are kept, a variant's newest wins
    kept = json.loads(summary.read_text())["rows"] if summary.is_file() else []
    merged = {r["variant"]: r for r in [*kept, *rows]}
    summary.write_text(
        json.dumps(
            {"ckpt": str(args.ckpt), "num_test": args.num_test, "rows": list(merged.values())}, indent=2
        )
    )
    return rows


if __name__ == "__main__":
    main()
