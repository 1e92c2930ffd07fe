import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate

from dfss.config import compose_config
from dfss.data.errors import DataError
from dfss.evaluate import data_config, run

ROOT = Path(__file__).parents[1]


def _ground_truth_as_predictions(root: Path) -> list[dict]:
    data = json.loads((root / "annotations" / "test.json").read_text())
    return [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9}
        for a in data["annotations"]
    ]


def _cfg(root: Path, predictions: Path, output_dir: Path):
    return compose_config(
        "eval", [f"data.root={root}", f"predictions={predictions}", "data.num_workers=0"], output_dir
    )


def test_perfect_predictions_score_one_and_results_are_written(tiny_xray, tmp_path):
    predictions = tmp_path / "preds.json"
    predictions.write_text(json.dumps(_ground_truth_as_predictions(tiny_xray)))
    metrics = run(_cfg(tiny_xray, predictions, tmp_path / "out"))
    assert metrics["map"] == pytest.approx(1.0) and metrics["map_unknown"] == pytest.approx(1.0)
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["map50_dangerous"] == pytest.approx(
        1.0
    )
    rows = list(csv.DictReader((tmp_path / "out" / "per_class.csv").read_text().splitlines()))
    assert {r["name"] for r in rows} == {"knife", "phone", "keys", "mystery"}
    curves = json.loads((tmp_path / "out" / "pr_curves.json").read_text())
    assert len(curves["recall"]) == 101 and curves["recall"][-1] == 1.0
    assert set(curves["precision50"]) == {"all", "dangerous", "normal", "unknown"}
    assert curves["precision50"]["dangerous"] == pytest.approx([1.0] * 101)  # perfect: precision 1 everywhere
    # Screening figures: every dangerous object found with no false positive; the ROC file is the one scored.
    assert metrics["dangerous_recall_at_fppi_0.1"] == 1.0
    roc = json.loads((tmp_path / "out" / "roc.json").read_text())
    assert roc["fpr"][0] == 0.0 and roc["tpr"][-1] == 1.0 and roc["thresholds"][0] is None
    if roc["num_negative"]:
        assert metrics["alarm_auc"] == pytest.approx(np.trapezoid(roc["tpr"], roc["fpr"])) == 1.0


def test_predictions_for_images_outside_the_split_are_refused(tiny_xray, tmp_path):
    predictions = tmp_path / "preds.json"
    predictions.write_text(
        json.dumps([{"image_id": 999, "category_id": 3, "bbox": [0, 0, 5, 5], "score": 1.0}])
    )
    with pytest.raises(DataError, match=r"image ids \[999\] are not in the test split"):
        run(_cfg(tiny_xray, predictions, tmp_path / "out"))


@pytest.mark.integration
def test_evaluate_py_runs_from_the_command_line(tiny_xray, tmp_path):
    predictions = tmp_path / "preds.json"
    predictions.write_text(json.dumps(_ground_truth_as_predictions(tiny_xray)[:1]))
    out = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "evaluate.py"),
            f"predictions={predictions}",
            f"data.root={tiny_xray}",
            "data.num_workers=0",
            f"hydra.run.dir={out}",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["map_dangerous"] == pytest.approx(1.0) and metrics["map_unknown"] == 0.0
    assert (out / "eval.log").exists()


def test_scoring_a_predictions_file_needs_the_data_it_is_scored_against(tmp_path):
    from dfss.preflight import StartupError

    predictions = tmp_path / "preds.json"
    predictions.write_text("[]")
    cfg = compose_config("eval", [f"predictions={predictions}"], tmp_path / "out")
    with pytest.raises(StartupError, match=r"give data.root=<set> \(or data=<option>\)"):
        run(cfg)


def test_the_printed_alarm_area_says_how_many_images_it_rests_on(tiny_xray, tmp_path):
    from dfss.eval.coco_metrics import evaluate_coco

    predictions = _ground_truth_as_predictions(tiny_xray)
    cfg = _cfg(tiny_xray, tmp_path / "p.json", tmp_path / "out")
    datamodule = instantiate(data_config(cfg, None))
    datamodule.setup("test")
    result = evaluate_coco(datamodule.datasets["test"].coco, predictions, datamodule.class_table)
    line = next(line for line in result.table().splitlines() if line.startswith("alarm_auc "))
    roc = result.roc
    assert f"(of {roc.num_positive} images with a dangerous object, {roc.num_negative} without)" in line
    assert roc.num_positive + roc.num_negative == 2  # the tiny test split
