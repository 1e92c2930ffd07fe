"""``docs/results.md``: the paper-style tables, the targets and the embedded plots."""

from __future__ import annotations

import math
from datetime import datetime, timezone

from dfss.report import paper
from dfss.report.collect import Results, Run, stat
from dfss.report.stats import BOOTSTRAP_SAMPLES, interval, paired_difference
from dfss.report.targets import best_alpha, best_T, calibration, t_sweep, verdicts

HEADLINE = (("teacher", "teacher (YOLOX)"), ("student", "FCOS (no KD)"), ("distill", "DFSS (FCOS + KD)"))
SUPERS = ("", "_dangerous", "_normal", "_unknown")
ABLATIONS = {
    "kd_loc_only": "centerness<->objectness term alone",
    "kd_cls_only": "class-distribution term alone",
    "kd_bbox_only": "box-distribution term alone",
    "kd_no_loc": "without centerness<->objectness",
    "kd_no_cls": "without the class distribution",
    "kd_no_bbox": "without the box distribution",
    "kd_softmax": "softmax KL for classes (instead of Bernoulli)",
}


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(r) + " |" for r in rows),
    ]


def _f(x: float, digits: int = 3) -> str:
    return "-" if x is None or math.isnan(x) else f"{x:.{digits}f}"


def _pts(x: float) -> str:
    return "-" if math.isnan(x) else f"{100 * x:+.1f}"


def _model_table(results: Results, prefix: str) -> list[str]:
    """One row per headline model (and DFSS with the unknown rule): overall and per supercategory."""
    header = [
        "model",
        f"{prefix} overall",
        f"{prefix} dangerous",
        f"{prefix} normal",
        f"{prefix} unknown",
        "seeds",
        f"paper {prefix}",
    ]
    key = "map50" if prefix == "mAP50" else "map"
    rows = []
    for role, title in HEADLINE:
        runs = results.arm(role)
        if runs:
            ref = paper.PAPER_MODELS[role][key]
            rows.append([title, *(stat(runs, key + s).fmt() for s in SUPERS), str(len(runs)), f"{ref:.3f}"])
    choice = best_T(results)
    if choice is not None:
        runs = results.sweep_runs
        alpha = runs[0].alpha
        ref = f"{paper.PAPER_UNKNOWN_MAP:.2f} (unknown mAP)" if key == "map" else "-"
        rows.append(
            [
                f"DFSS, alpha={alpha:g}, unknown rule T={choice.T:g}",
                *(stat(runs, key + s, choice.T).fmt() for s in SUPERS),
                str(len(runs)),
                ref,
            ]
        )
    return _table(header, rows)


DIFFERENCE_KEYS = (
    ("map50", "mAP50"),
    ("map", "mAP"),
    ("map50_dangerous", "dangerous mAP50"),
    ("map50_normal", "normal mAP50"),
)


def _difference_table(results: Results) -> list[str]:
    """DFSS minus FCOS, per figure, with its 95 % interval."""
    student, distill = results.arm("student"), results.arm("distill")
    if not student or not distill:
        return []
    rows = [[title, paired_difference(distill, student, key).fmt()] for key, title in DIFFERENCE_KEYS]
    return ["", *_table(["DFSS − FCOS", "difference (95 % interval)"], rows)]


def _weighted_table(results: Results) -> list[str]:
    base = results.arm("distill")
    rows = []
    for alpha in results.alphas:
        runs = results.arm("weighted", alpha=alpha)
        if not runs:
            continue
        gain_d = paired_difference(runs, base, "map50_dangerous").fmt()
        gain_n = paired_difference(runs, base, "map50_normal").fmt()
        rows.append(
            [
                f"alpha = {alpha:g}" + (" (DFSS)" if alpha == 1 else ""),
                stat(runs, "map50").fmt(),
                stat(runs, "map50_dangerous").fmt(),
                stat(runs, "map50_normal").fmt(),
                gain_d if alpha != 1 else "",
                gain_n if alpha != 1 else "",
                str(len(runs)),
            ]
        )
    ce, weighted = paper.PAPER_WEIGHTED["ce"], paper.PAPER_WEIGHTED["weighted"]
    rows.append(
        [
            "paper: CE loss",
            f"{ce['overall']:.3f}",
            f"{ce['dangerous']:.3f}",
            f"{ce['normal']:.3f}",
            "",
            "",
            "-",
        ]
    )
    rows.append(
        [
            "paper: weighted loss (alpha = 2)",
            f"{weighted['overall']:.3f}",
            f"{weighted['dangerous']:.3f}",
            f"{weighted['normal']:.3f}",
            _pts(weighted["dangerous"] - ce["dangerous"]),
            _pts(weighted["normal"] - ce["normal"]),
            "-",
        ]
    )
    header = [
        "model",
        "mAP50",
        "dangerous mAP50",
        "normal mAP50",
        "Δ dangerous vs DFSS (95 % interval)",
        "Δ normal vs DFSS (95 % interval)",
        "seeds",
    ]
    return _table(header, rows)


def _known_change(runs: list[Run], T: float) -> str:
    """Known mAP50 at T minus without the rule, run by run, with its 95 % t-interval."""
    diffs = [r.sweep[T]["map50_known"] - r.metrics["map50_known"] for r in runs if T in r.sweep]
    if not diffs:
        return "-"
    mean, low, high = interval(diffs)
    if math.isnan(low):
        return f"{100 * mean:+.1f}"
    verdict = "" if low > 0 or high < 0 else " (no significant difference)"
    return f"{100 * mean:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]{verdict}"


def _t_table(results: Results) -> list[str]:
    rows = [
        [
            f"{r.T:g}" + (" (no rule)" if r.T == 0 else ""),
            _f(r.unknown_ap50),
            _f(r.unknown_recall50),
            _f(stat(results.sweep_runs, "map50_known", r.T or None).mean),
            _known_change(results.sweep_runs, r.T) if r.T else "",
        ]
        for r in t_sweep(results)
    ]
    header = ["T", "unknown AP50", "unknown recall50", "known mAP50", "Δ known (points, 95 % interval)"]
    return _table(header, rows)


def _ablation_table(results: Results) -> list[str]:
    rows = []
    for variant in results.variants:
        runs = results.arm("ablation", variant=variant)
        if not runs:
            continue
        seeds = {r.seed for r in runs}
        full = [r for r in results.arm("distill") if r.seed in seeds]
        delta = paired_difference(runs, full, "map50").fmt() if full else "-"
        rows.append(
            [
                f"`{variant}`",
                ABLATIONS.get(variant, ""),
                stat(runs, "map50").fmt(),
                stat(runs, "map").fmt(),
                stat(runs, "map50_dangerous").fmt(),
                stat(runs, "map50_normal").fmt(),
                delta,
            ]
        )
    seeds = {r.seed for v in results.variants for r in results.arm("ablation", variant=v)}
    full = [r for r in results.arm("distill") if r.seed in seeds]
    if full:
        rows.insert(
            0,
            [
                "`distill`",
                "all three terms, Bernoulli class KL (DFSS)",
                stat(full, "map50").fmt(),
                stat(full, "map").fmt(),
                stat(full, "map50_dangerous").fmt(),
                stat(full, "map50_normal").fmt(),
                "",
            ],
        )
    header = [
        "loss",
        "what",
        "mAP50",
        "mAP",
        "dangerous mAP50",
        "normal mAP50",
        "Δ mAP50 vs DFSS (95 % interval)",
    ]
    return _table(header, rows)


def _ablation_noise(results: Results) -> list[str]:
    """How far DFSS itself moves between seeds: the yardstick for the one-seed ablation deltas."""
    seeds = sorted({r.seed for v in results.variants for r in results.arm("ablation", variant=v)})
    values = sorted((r.metrics["map50"], r.seed) for r in results.arm("distill"))
    if len(values) < 2 or not seeds:
        return []
    (low, low_seed), (high, high_seed) = values[0], values[-1]
    return [
        f"Seed noise: the ablations ran with seed {', '.join(map(str, seeds))} only, and DFSS itself scored "
        f"{_f(low)} (seed {low_seed}) to {_f(high)} (seed {high_seed}) mAP50 over its {len(values)} seeds, "
        f"{_pts(high - low).lstrip('+')} points apart: "
        "a Δ smaller than that is within seed-to-seed variation.",
        "",
    ]


def _per_class_table(results: Results) -> list[str]:
    models = [(title, results.arm(role)) for role, title in HEADLINE if results.arm(role)]
    first = models[0][1][0]
    rows = []
    for row in first.per_class:
        cells = [row["name"], row["supercategory"], str(int(row["num_gt"]))]
        for _, runs in models:
            values = [c["ap50"] for r in runs for c in r.per_class if c["name"] == row["name"]]
            values = [v for v in values if not math.isnan(v)]
            cells.append(_f(sum(values) / len(values)) if values else "-")
        rows.append(cells)
    return _table(["class", "supercategory", "test objects", *(t for t, _ in models)], rows)


SCREENING = (
    ("alarm_auc", "alarm AUC"),
    ("alarm_tpr_at_fpr_0.01", "TPR @ FPR 1 %"),
    ("alarm_tpr_at_fpr_0.05", "TPR @ FPR 5 %"),
    ("alarm_tpr_at_fpr_0.1", "TPR @ FPR 10 %"),
    ("alarm_score_at_fpr", "alarm score for FPR 5 %"),
    ("dangerous_recall_at_fppi_0.1", "dangerous recall @ 0.1 FP/image"),
    ("dangerous_recall_at_fppi_0.5", "@ 0.5 FP/image"),
    ("dangerous_recall_at_fppi_1", "@ 1 FP/image"),
)


def _screening_table(results: Results) -> list[str]:
    rows = []
    for role, title in HEADLINE:
        runs = results.arm(role)
        if runs:
            rows.append([title, *(stat(runs, key).fmt() for key, _ in SCREENING)])
    for alpha in results.alphas[1:]:
        runs = results.arm("weighted", alpha=alpha)
        if runs:
            rows.append([f"DFSS, alpha = {alpha:g}", *(stat(runs, key).fmt() for key, _ in SCREENING)])
    return _table(["model", *(label for _, label in SCREENING)], rows)


def _runs_table(results: Results) -> list[str]:
    def row(r: Run) -> list[str]:
        return [
            r.name,
            r.role,
            str(r.seed),
            _f(r.metrics.get("map50", math.nan)),
            _f(r.metrics.get("map", math.nan)),
            _f(r.seconds_train, 0),
        ]

    return _table(
        ["run", "stage", "seed", "test mAP50", "test mAP", "train s"],
        [
            *(row(r) for r in results.runs),
            *([p.name, p.role, str(p.seed), "-", "-", "not finished"] for p in results.pending),
        ],
    )


def _in_progress(results: Results) -> list[str]:
    """The banner of a plan still under way (``dfss-report --partial``): what is missing."""
    if not results.pending:
        return []
    total = len(results.runs) + len(results.pending)
    return [
        f"> **A plan still under way.** {len(results.runs)} of its {total} runs have finished; not yet: "
        f"{', '.join(f'`{p.name}`' for p in results.pending)}. Every table, plot and target below "
        "covers the finished runs only (a target that needs a missing run is left out or n/a); "
        f"`dfss-results --plan {results.plan['name']}` resumes the rest.",
        "",
    ]


def wall_clock(index: dict) -> str:
    """The invocations' wall-clock time (with parallel jobs, less than the runs' time summed)."""
    calls = index.get("invocations") or []
    if not calls:
        return ""
    jobs = sorted({c.get("jobs", 1) for c in calls})
    minutes = sum(c["seconds"] for c in calls) / 60
    return (
        f"; wall clock {minutes:.1f} min over {len(calls)} invocation{'s' if len(calls) > 1 else ''} of "
        f"`dfss-results` ({', '.join(map(str, jobs))} run{'s' if jobs[-1] > 1 else ''} at a time)"
    )


def render(results: Results, images: dict[str, str], source: str) -> str:
    """The whole report; ``images`` maps a plot's key to its path relative to the report."""
    index = results.index
    plan = results.plan
    synth = index.get("synth") or {}
    env = index.get("environment", {})
    total = sum(r.seconds_train for r in results.runs if not math.isnan(r.seconds_train))
    calib = calibration(results)
    lines = [
        "# DFSS results on the synthetic X-ray benchmark",
        "",
        f"Generated by `dfss-report` from `{source}` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC "
        "— every figure below is read from the runs' `metrics.json`, `per_class.csv`, `pr_curves.json` "
        "and `metrics_history.jsonl`; nothing is typed in by hand except the paper's numbers.",
        "",
        *(
            [
                f"> **Not the benchmark.** These figures come from the `{plan['name']}` plan "
                f"({plan.get('description', '')}): "
                "they show every experiment and every table working end to end, "
                "not what the method achieves. "
                "The GPU plan (`make results`) is the comparison that counts.",
                "",
            ]
            if plan["synth_preset"] not in paper.CALIBRATED_PRESETS
            else []
        ),
        *_in_progress(results),
        f"- **Plan** `{plan['name']}`: {plan.get('description', '')}",
        f"- **Data**: `dfss-synth --preset {plan['synth_preset']}` (version `{synth.get('version', '?')}`, "
        f"{synth.get('image_size', '?')} px, {synth.get('num_train', '?')} / {synth.get('num_val', '?')} / "
        f"{synth.get('num_test', '?')} train / val / test images); every figure is on the **test** split.",
        f"- **Machine**: {env.get('device', '?')} (CUDA: {env.get('cuda', '?')}), "
        f"torch {env.get('torch', '?')}; "
        f"training took {total / 60:.1f} min in all "
        + (
            "(a run stopped and resumed counts every part) "
            if index.get("counts_stopped_parts")
            else "(a run resumed after an interruption counts its last part only) "
        )
        + f"({index.get('started', '?')} → {index.get('finished', 'unfinished')}){wall_clock(index)}.",
        f"- **Calibration** of the benchmark: {calib.target} — measured {calib.measured}: {calib.status}.",
        "- Figures are `mean ± sample std` over seeds (a single value: one seed). The paper's numbers are on "
        "its own private data: they orient, they do not compare like for like.",
        "- Differences are the mean with its 95 % interval: paired by seed (Student's t) where the arms "
        "share two or more seeds; for one seed, an image bootstrap of that pair "
        f"({BOOTSTRAP_SAMPLES} resamples of the test images, the same for both runs; it covers the test "
        "set's sampling, not the seed's). An interval that contains 0 is reported as "
        "*no significant difference*, never as a gain.",
        "",
        "## Targets",
        "",
        *_table(
            ["target", "measured (mean over seeds)", "status"],
            [[v.target, v.measured, v.status] for v in verdicts(results)],
        ),
        "",
        "## (1)–(3) Teacher, FCOS, DFSS (the paper's Figure 5)",
        "",
        *_model_table(results, "mAP50"),
        *_difference_table(results),
        "",
        *_model_table(results, "mAP"),
        "",
        "## Learning curves (the paper's Figures 3 and 5)",
        "",
        f"![mAP vs epoch]({images['map_vs_epoch']})",
        "",
        "## (4) Class-weighted loss (the paper's Table 1)",
        "",
        "alpha = 1 is the DFSS run itself (the same configuration and seeds). The paper fine-tuned its "
        "weighted model from the distillation checkpoint; "
        "here every alpha trains from scratch on the same schedule.",
        "",
        *_weighted_table(results),
        "",
        f"![alpha sweep]({images['alpha']})",
        "",
    ]
    choice = best_alpha(results)
    if choice is not None:
        lines += [
            f"Best alpha by the rule of the target (largest dangerous gain with normal loss <= "
            f"{100 * paper.TARGET_NORMAL_LOSS:.1f} points, else the largest gain): **{choice.alpha:g}**.",
            "",
        ]
    lines += ["## (5) Unknown threshold T (re-scoring, no retraining)", ""]
    if results.sweep_runs:
        runs = results.sweep_runs
        lines += [
            f"The runs with alpha = {runs[0].alpha:g} ({', '.join(r.name for r in runs)}), "
            "evaluated again with the "
            "unknown rule at each T: a point whose centerness says *object* but whose best class probability "
            "is below T is reported as `unknown`. "
            "Known mAP50 is the mean AP50 over the dangerous and normal classes.",
            "",
            *_t_table(results),
            "",
            f"![T sweep]({images['t_sweep']})",
            "",
        ]
    else:
        lines += [f"No run with alpha = {results.plan['unknown_alpha']:g} has finished yet.", ""]
    lines += [
        "## (6) KD ablations",
        "",
        *(
            [*_ablation_table(results), "", *_ablation_noise(results)]
            if results.arm("ablation")
            else ["No ablation run has finished yet.", ""]
        ),
        "## Per-class AP50",
        "",
        f"![per-class AP50]({images['per_class']})",
        "",
        *_per_class_table(results),
        "",
        "## Precision–recall per supercategory (IoU 0.5)",
        "",
        f"![PR curves]({images['pr']})",
        "",
        "## Screening operating point",
        "",
        "An image alarms when any dangerous detection scores at least s. TPR: share of the test images "
        "holding a dangerous object that alarm; FPR: share of the clean ones that do (the ROC below). "
        "Object level: the share of dangerous objects found (right class, IoU >= 0.5) while allowing "
        "that many false dangerous detections per image.",
        "",
        *_screening_table(results),
        "",
        f"![alarm ROC]({images['roc']})",
        "",
        "## Runs",
        "",
        *_runs_table(results),
        "",
        "Each run is `python train.py experiment=<file> <overrides>`; `dfss-results --plan "
        f"{plan['name']} --dry-run` prints every command of this plan. `make report` rebuilds this page.",
        "",
    ]
    return "\n".join(lines)
