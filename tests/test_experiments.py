"""The experiment scripts (``experiments/``): their statistics on the committed CPU-plan results, and
tiny runs of the ones that train."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
import torch

from tests.helpers.scripts import bench_script, script_rows

CPU_RESULTS = Path(__file__).parents[1] / "results" / "cpu"
EXPERIMENTS = Path(__file__).parents[1] / "experiments"


def _rows(script: str, *args: str) -> list[dict]:
    return script_rows("experiments", script, *args)


def test_compare_arms_pairs_seeds_and_calls_an_interval_with_zero_no_difference(capsys):
    compare = bench_script("compare_arms", "experiments")
    assert compare.t_975(1) == 12.706 and compare.t_975(11) == 2.228 and compare.t_975(100) == 1.96
    mean, low, high = compare.interval([0.1, 0.3])  # mean 0.2, sd 0.1414, t(1) 12.706
    assert mean == pytest.approx(0.2) and high - mean == pytest.approx(12.706 * 0.1414214 / 2**0.5, rel=1e-5)
    assert low == pytest.approx(2 * mean - high)
    compare.main([f"--arm=fcos={CPU_RESULTS}:student", f"--arm=dfss={CPU_RESULTS}:distill"])
    out = capsys.readouterr().out
    student = compare.parse_arm(f"fcos={CPU_RESULTS}:student").runs
    distill = compare.parse_arm(f"dfss={CPU_RESULTS}:distill").runs
    diff = statistics.fmean(distill[s].metrics["map50"] - student[s].metrics["map50"] for s in (1, 2))
    assert f"{diff:+.3f} [" in out and "no significant difference" in out  # 2 seeds: a wide interval


@pytest.mark.integration
def test_scratch_norm_trains_both_r50_builds_from_one_seed(synth_tiny):
    rows = _rows(
        "scratch_norm.py", "--data", str(synth_tiny), "--images", "4", "--size", "64", "--steps", "2"
    )
    head, *results = rows
    assert head["images"] == 4 and head["steps"] == 2
    assert [(r["norm"], r["trainable_backbone_layers"]) for r in results] == [("frozen_bn", 3), ("bn", 5)]
    # One seed, one batch: both start from the same heads on the same scans, so the first losses are
    # close; the builds differ only in the backbone.
    assert abs(results[0]["first_loss"] - results[1]["first_loss"]) < 0.5
    assert all(r["last5_min"] > 0 for r in results)


def test_knob_proxy_changes_scene_knobs_only_and_refuses_a_round_of_another_preset_version(tmp_path):
    from dfss.synth.config import load_preset

    knob_proxy = bench_script("knob_proxy", "experiments")
    scene_knobs = {"clutter", "max_overlap_iou", "objects_per_image", "scale_range", "photons_per_pixel"}
    for name, (_version, variants) in knob_proxy.ROUNDS.items():
        assert variants["preset"] == {}, name  # every round measures its own baseline
        for knobs in variants.values():
            assert set(knobs) <= scene_knobs, (name, knobs)
    current = load_preset("results").version
    stale = [name for name, (version, _) in knob_proxy.ROUNDS.items() if version != current]
    assert stale  # try3's round was relative to results-1.0
    for name in stale:
        with pytest.raises(SystemExit):  # before rendering or loading anything
            knob_proxy.main(
                ["--round", name, "--ckpt", str(tmp_path / "none.ckpt"), "--data-dir", str(tmp_path)]
            )
    # a misspelt --only name is refused, not silently skipped (a round on the current preset)
    knob_proxy.ROUNDS["now"] = (current, {"preset": {}, "photons_150": {"photons_per_pixel": 150.0}})
    with pytest.raises(SystemExit):
        knob_proxy.main(
            [
                "--round",
                "now",
                "--ckpt",
                "x",
                "--data-dir",
                str(tmp_path),
                "--out",
                str(tmp_path / "out"),
                "--only",
                "photons_15",
            ]
        )
    assert not any(tmp_path.iterdir())


def test_auroc_is_the_mann_whitney_probability_with_ties_counted_half():
    separation = bench_script("quality_separation", "experiments")
    assert separation.auroc(torch.tensor([0.9, 0.8]), torch.tensor([0.1, 0.2, 0.3])) == 1.0
    assert separation.auroc(torch.tensor([0.1]), torch.tensor([0.9, 0.8])) == 0.0
    assert separation.auroc(torch.tensor([0.5, 0.5]), torch.tensor([0.5])) == 0.5  # all ties
    # 0.6 beats 0.2 and ties 0.6 (1.5 of 2); 0.1 beats nothing (0 of 2): 1.5 / 4
    assert separation.auroc(torch.tensor([0.6, 0.1]), torch.tensor([0.2, 0.6])) == pytest.approx(0.375)


def test_quality_tally_counts_objects_background_and_flags_per_threshold():
    separation = bench_script("quality_separation", "experiments")
    # points on a 4 x 4 grid at 8 px steps; a known box over the top-left 2 x 2, an unknown one bottom-right
    ys, xs = torch.meshgrid(torch.arange(4) * 8.0 + 4, torch.arange(4) * 8.0 + 4, indexing="ij")
    points = torch.stack([xs.flatten(), ys.flatten()], dim=1)
    boxes = torch.tensor([[0.0, 0.0, 16.0, 16.0], [16.0, 16.0, 32.0, 32.0]])
    unknown = torch.tensor([False, True])
    inside_known = (points[:, 0] < 16) & (points[:, 1] < 16)
    inside_unknown = (points[:, 0] > 16) & (points[:, 1] > 16)
    q = torch.where(inside_known | inside_unknown, 0.9, 0.3)
    q[3] = 0.7  # one background point (x 28, y 4) looks like an object
    p_max = torch.where(inside_known, 0.8, 0.05)
    tally = separation.Tally((0.1,), min_quality=0.5)
    tally.add_image(points, q, p_max, boxes, unknown)
    figures = tally.figures()
    assert figures["known_hit"] == 1.0 and figures["unknown_hit"] == 1.0
    assert figures["bg_over_min"] == pytest.approx(1 / 8)  # 8 background points, one at 0.7
    assert figures["bg_flagged@0.1"] == 1.0  # that point, in the one image
    assert figures["unknown_flagged@0.1"] == 1.0
    assert figures["auroc"] == 1.0  # box interiors 0.9 against background 0.3 / 0.7
    tally = separation.Tally((0.1,), min_quality=0.95)  # nothing reaches the floor
    tally.add_image(points, q, p_max, boxes, unknown)
    assert tally.figures()["unknown_hit"] == 0.0 and tally.figures()["bg_flagged@0.1"] == 0.0


def test_unknown_errors_places_each_unknown_detection_and_ranks_the_right_ones_first(tmp_path):
    errors = bench_script("unknown_errors", "experiments")
    from pycocotools.coco import COCO

    gt = COCO()
    gt.dataset = {
        "images": [{"id": 1, "width": 100, "height": 100}, {"id": 2, "width": 100, "height": 100}],
        "categories": [
            {"id": 1, "name": "knife", "supercategory": "dangerous"},
            {"id": 9, "name": "unknown", "supercategory": "unknown"},
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 9, "bbox": [0, 0, 20, 20], "area": 400, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [50, 50, 20, 20], "area": 400, "iscrowd": 0},
            {"id": 3, "image_id": 2, "category_id": 9, "bbox": [10, 10, 30, 30], "area": 900, "iscrowd": 0},
        ],
    }
    gt.createIndex()
    predictions = [
        {"image_id": 1, "category_id": 9, "bbox": [0, 0, 20, 20], "score": 0.2},  # on the unknown object
        {"image_id": 1, "category_id": 9, "bbox": [50, 50, 20, 20], "score": 0.9},  # on the knife
        {"image_id": 1, "category_id": 9, "bbox": [50, 50, 10, 10], "score": 0.8},  # part of the knife
        {"image_id": 1, "category_id": 9, "bbox": [85, 0, 10, 10], "score": 0.7},  # background
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 20, 20], "score": 0.6},  # the unknown named a knife
        {"image_id": 2, "category_id": 1, "bbox": [10, 10, 30, 30], "score": 0.1},  # named, below 0.3
    ]
    figures = errors.diagnose(gt, predictions, known_score=0.3)
    assert figures["unknown_objects"] == 2 and figures["unknown_dets"] == 4
    assert (figures["on_unknown"], figures["on_known"], figures["on_part"], figures["on_background"]) == (
        0.25,
        0.25,
        0.25,
        0.25,
    )
    assert figures["named_known"] == 0.5 and figures["known_score_median"] == pytest.approx(0.35)
    assert figures["score_true"] == 0.2 and figures["score_false"] == 0.8
    # one of two unknown objects found, behind three false ones: precision 1/4 at recall 1/2
    assert figures["recall50"] == 0.5
    # COCO's 101 recall points: precision 1/4 at the 51 points up to recall 1/2, none beyond
    assert figures["ap50"] == pytest.approx(51 * 0.25 / 101)
    assert figures["ap50_ranked"] == pytest.approx(51 / 101)  # ranked first: precision 1 up to 1/2
    # apart from known detections >= 0.3: the true unknown goes (the knife detection at 0.6 covers it),
    # the three false ones stay (no known detection over them)
    assert figures["ap50_apart"] == 0.0 and figures["recall50_apart"] == 0.0
    assert errors.diagnose(gt, predictions, known_score=0.7)["recall50_apart"] == 0.5  # nothing removed

    # the unknown categories are the class table's: a configured supercategory name, not "unknown" only
    gt.dataset["categories"][1]["supercategory"] = "novel"
    gt.createIndex()
    assert errors.diagnose(gt, predictions, unknown_supercategories=("novel",)) == figures
    with pytest.raises(SystemExit, match="no category of supercategory"):
        errors.diagnose(gt, predictions)
    gt.dataset["categories"][1]["supercategory"] = "unknown"
    gt.createIndex()

    (tmp_path / "eval_T0.2").mkdir()
    (tmp_path / "eval_T0.2" / "predictions.json").write_text(json.dumps(predictions))
    (tmp_path / "eval_T0.2" / "run.json").write_text(json.dumps({"unknown_threshold": 0.2}))
    ann = tmp_path / "test.json"
    ann.write_text(json.dumps(gt.dataset))
    rows = errors.main(
        [str(tmp_path / "eval_T0.2"), "--annotations", str(ann), "--out", str(tmp_path / "out")]
    )
    assert rows[0]["T"] == 0.2 and rows[0]["ap50_ranked"] == figures["ap50_ranked"]
    assert "| 0.2 | 4 | 0.126 | 0.500 | 0.505 |" in (tmp_path / "out" / "unknown_errors.md").read_text()
