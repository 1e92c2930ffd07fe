"""The report's figures as PNG files (matplotlib, no display needed)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from dfss.report.collect import Results, Run, stat
from dfss.report.targets import t_sweep

SUPERCATEGORY_COLOURS = {"dangerous": "#d62728", "normal": "#2ca02c", "unknown": "#bcbd22"}
ARM_COLOURS = {"teacher": "#1f77b4", "student": "#7f7f7f", "distill": "#ff7f0e", "weighted": "#9467bd"}


def arms(results: Results) -> list[tuple[str, str, list[Run]]]:
    """(key, label, runs) of the three headline models that have runs."""
    found = [
        ("teacher", "teacher (YOLOX)", results.arm("teacher")),
        ("student", "FCOS (no KD)", results.arm("student")),
        ("distill", "DFSS (FCOS + KD)", results.arm("distill")),
    ]
    return [a for a in found if a[2]]


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def per_class_ap50(results: Results, path: Path) -> Path:
    """Grouped bars: AP50 per class (mean over seeds) for teacher, FCOS, DFSS; class names coloured
    by supercategory."""
    models = arms(results)
    classes = [(row["name"], row["supercategory"]) for row in models[0][2][0].per_class]
    width = 0.8 / len(models)
    fig, ax = plt.subplots(figsize=(max(8.0, 0.55 * len(classes)), 4.2))
    x = np.arange(len(classes))
    for i, (key, label, runs) in enumerate(models):
        means = []
        for name, _ in classes:
            values = [row["ap50"] for r in runs for row in r.per_class if row["name"] == name]
            values = [v for v in values if not math.isnan(v)]
            means.append(float(np.mean(values)) if values else 0.0)
        ax.bar(x + (i - (len(models) - 1) / 2) * width, means, width, label=label, color=ARM_COLOURS[key])
    ax.set_xticks(x, [name for name, _ in classes], rotation=60, ha="right")
    for tick, (_, supercategory) in zip(ax.get_xticklabels(), classes, strict=True):
        tick.set_color(SUPERCATEGORY_COLOURS.get(supercategory, "black"))
    ax.set_ylabel("AP50 (test)")
    ax.set_ylim(0, 1)
    ax.set_title("Per-class AP50 (class names coloured by supercategory: dangerous / normal / unknown)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def _mean_curve(curves: list[tuple[float, ...]]) -> np.ndarray | None:
    return np.mean(np.array(curves), axis=0) if curves else None


def pr_curves(results: Results, recall: list[float], path: Path, best_T: float | None) -> Path:
    """Precision-recall at IoU 0.5 per supercategory (mean over classes, then over seeds)."""
    panels = ["all", "dangerous", "normal", "unknown"]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.0 * len(panels), 3.6), sharey=True)
    series = [(key, label, runs, None) for key, label, runs in arms(results)]
    if best_T is not None and results.sweep_runs:
        alpha = results.sweep_runs[0].alpha
        series.append(
            ("weighted", f"DFSS alpha={alpha:g} + unknown rule T={best_T:g}", results.sweep_runs, best_T)
        )
    for ax, panel in zip(axes, panels, strict=True):
        for key, label, runs, T in series:
            curves = [(r.pr50 if T is None else r.sweep_pr50.get(T, {})).get(panel) for r in runs]
            curve = _mean_curve([c for c in curves if c])
            if curve is not None:
                ax.plot(recall, curve, label=label, color=ARM_COLOURS[key])
        ax.set_title(panel)
        ax.set_xlabel("recall")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
    axes[0].set_ylabel("precision (IoU 0.5)")
    axes[-1].legend(fontsize=7, loc="upper right")
    return _save(fig, path)


def map_vs_epoch(results: Results, path: Path) -> Path:
    """Validation mAP50 and mAP per epoch of FCOS and DFSS (the paper's Figures 3 and 5); thin lines
    are single seeds, thick lines their mean."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, key, title in zip(
        axes, ("val/map50", "val/map"), ("val mAP50", "val mAP (IoU .5:.95)"), strict=True
    ):
        for arm, label in (("student", "FCOS (no KD)"), ("distill", "DFSS (FCOS + KD)")):
            runs = [r for r in results.arm(arm) if r.history]
            per_epoch: dict[int, list[float]] = {}
            for r in runs:
                epochs = [row["epoch"] + 1 for row in r.history if key in row]
                values = [row[key] for row in r.history if key in row]
                ax.plot(epochs, values, color=ARM_COLOURS[arm], alpha=0.3, linewidth=1)
                for e, v in zip(epochs, values, strict=True):
                    per_epoch.setdefault(e, []).append(v)
            if per_epoch:
                epochs = sorted(per_epoch)
                ax.plot(
                    epochs,
                    [np.mean(per_epoch[e]) for e in epochs],
                    color=ARM_COLOURS[arm],
                    linewidth=2.2,
                    label=f"{label} (mean of {len(runs)})",
                )
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=8)
    return _save(fig, path)


def t_sweep_plot(results: Results, path: Path) -> Path:
    """Unknown recall and AP50 against known-class mAP50, one point per T."""
    rows = t_sweep(results)
    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    known = [r.known_change * 100 for r in rows]
    ax.plot(
        known,
        [r.unknown_recall50 for r in rows],
        "o-",
        color=SUPERCATEGORY_COLOURS["unknown"],
        label="unknown recall (IoU 0.5)",
    )
    ax.plot(known, [r.unknown_ap50 for r in rows], "s--", color="#8c564b", label="unknown AP50")
    for r, x in zip(rows, known, strict=True):
        ax.annotate(
            f"T={r.T:g}", (x, r.unknown_recall50), textcoords="offset points", xytext=(4, 4), fontsize=7
        )
    ax.axvline(-1.0, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("known-class mAP50 change vs no unknown rule (points)")
    ax.set_ylabel("unknown class")
    ax.set_title("Unknown rule: threshold T sweep")
    ax.legend(fontsize=8)
    return _save(fig, path)


def alpha_plot(results: Results, path: Path) -> Path:
    """Dangerous and normal mAP50 against alpha (mean over seeds, bars: spread)."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for key, supercategory in (("map50_dangerous", "dangerous"), ("map50_normal", "normal")):
        stats = [stat(results.arm("weighted", alpha=a), key) for a in results.alphas]
        ax.errorbar(
            results.alphas,
            [s.mean for s in stats],
            yerr=[0 if s.n < 2 else s.std for s in stats],
            marker="o",
            capsize=3,
            color=SUPERCATEGORY_COLOURS[supercategory],
            label=supercategory,
        )
    ax.set_xscale("log", base=2)
    ax.set_xticks(results.alphas, [f"{a:g}" for a in results.alphas])
    ax.set_xlabel("alpha (weight of dangerous classes)")
    ax.set_ylabel("test mAP50")
    ax.set_title("Class-weighted loss")
    ax.legend(fontsize=8)
    return _save(fig, path)


def alarm_roc(results: Results, path: Path) -> Path:
    """The image alarm's ROC per model (TPR averaged over seeds on a common FPR grid)."""
    grid = np.linspace(0.0, 1.0, 201)
    fig, ax = plt.subplots(figsize=(5.0, 4.2))
    for key, label, runs in arms(results):
        curves = [
            np.interp(grid, r.roc["fpr"], r.roc["tpr"]) for r in runs if r.roc and r.roc["num_negative"]
        ]
        if curves:
            auc = stat(runs, "alarm_auc").mean
            ax.plot(grid, np.mean(curves, axis=0), color=ARM_COLOURS[key], label=f"{label} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    for rate in (0.01, 0.05, 0.10):
        ax.axvline(rate, color="grey", linewidth=0.6, alpha=0.5)
    ax.set_xlabel("false-alarm rate (clean images that alarm)")
    ax.set_ylabel("threat images that alarm")
    ax.set_title("Image alarm: any dangerous detection >= s")
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)
