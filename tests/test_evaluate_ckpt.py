"""``evaluate.py ckpt_path=...``: a real checkpoint (trained for two steps) run over a split and scored.

The tiny checkpoint detects nothing useful, so what its metrics *are* is not tested here; the
mapping of boxes to original pixels and of labels to category ids is tested with an oracle
detector through :func:`dfss.eval.inference.predict_split`, where the right answer scores AP 1.
"""

from __future__ import annotations

import csv
import json
import math
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from dfss.config import compose_config
from dfss.data.datamodule import XrayDataModule
from dfss.data.transforms import letterbox_shape
from dfss.device import resolve_device
from dfss.errors import ConfigError
from dfss.eval.bootstrap import MatchRecord, mean_over
from dfss.eval.coco_metrics import evaluate_coco
from dfss.eval.inference import predict_split
from dfss.evaluate import run
from dfss.models.checkpoints import CheckpointError
from dfss.models.outputs import DenseOutputs
from dfss.models.postprocess import PostProcessConfig
from dfss.preflight import StartupError

ROOT = Path(__file__).parents[1]
METRIC_KEYS = {
    "map",
    "map50",
    "map75",
    "map_small",
    "map_medium",
    "map_large",
    *(f"{prefix}_{s}" for prefix in ("map", "map50", "recall50") for s in ("dangerous", "normal", "unknown")),
    "map_known",
    "map50_known",
    "alarm_auc",
    "alarm_on_unknown",
    "alarm_auc_dangerous_only",
    "alarm_auc_with_unknown",
    *(f"alarm_tpr_at_fpr_{rate}" for rate in ("0.01", "0.05", "0.1")),
    "alarm_fpr_target",
    "alarm_score_at_fpr",
    "alarm_tpr",
    "alarm_fpr",
    *(f"dangerous_recall_at_fppi_{point}" for point in ("0.1", "0.5", "1")),
}


_compose = compose_config


def _eval_cfg(root: Path, output_dir: Path, *overrides: str):
    return _compose("eval", [f"data.root={root}", "data.num_workers=0", *overrides], output_dir)


def _same_metrics(a: dict[str, float], b: dict[str, float]) -> bool:
    return a.keys() == b.keys() and all((math.isnan(a[k]) and math.isnan(b[k])) or a[k] == b[k] for k in a)


def _categories(root: Path, split: str = "test") -> tuple[dict, list[dict]]:
    data = json.loads((root / "annotations" / f"{split}.json").read_text())
    return {i["id"]: i for i in data["images"]}, data["categories"]


@pytest.fixture(scope="session")
def ckpt_eval(synth_tiny, student_ckpt, tmp_path_factory) -> tuple[dict[str, float], Path]:
    """The checkpoint evaluated with the defaults (test split, no unknown rule): metrics, run folder."""
    out = tmp_path_factory.mktemp("eval")
    return run(_eval_cfg(synth_tiny, out, f"ckpt_path={student_ckpt}")), out


def _predictions(run_dir: Path) -> list[dict]:
    return json.loads((run_dir / "predictions.json").read_text())


@pytest.mark.integration
def test_checkpoint_evaluation_writes_metrics_per_class_and_coco_predictions(synth_tiny, ckpt_eval):
    metrics, out = ckpt_eval
    assert set(metrics) == METRIC_KEYS
    assert _same_metrics(json.loads((out / "metrics.json").read_text()), metrics)
    images, categories = _categories(synth_tiny)
    rows = list(csv.DictReader((out / "per_class.csv").read_text().splitlines()))
    assert {r["name"] for r in rows} == {c["name"] for c in categories}
    predictions = _predictions(out)
    assert predictions and all(p.keys() == {"image_id", "category_id", "bbox", "score"} for p in predictions)
    assert {p["image_id"] for p in predictions} <= images.keys()
    known_ids = {c["id"] for c in categories if c["supercategory"] != "unknown"}
    assert {p["category_id"] for p in predictions} <= known_ids  # T = 0: no unknown detections
    for p in predictions:  # xywh inside the original image
        x, y, w, h = p["bbox"]
        image = images[p["image_id"]]
        assert w > 0 and h > 0 and x >= 0 and y >= 0
        assert x + w <= image["width"] + 1e-3 and y + h <= image["height"] + 1e-3
    info = json.loads((out / "run.json").read_text())
    assert info["image_size"] == 128  # the checkpoint's training size, not the data config's 256
    assert info["unknown_threshold"] == 0.0 and info["num_unknown"] == 0
    assert info["num_detections"] == len(predictions) and info["weights"] == "model"  # no EMA in a student
    # the image bootstrap's record gives the evaluation's AP50, class by class and as the mean
    record = MatchRecord.load(out / "matches50.npz")
    assert len(record.det_score) == len(predictions) and len(record.image_ids) == len(images)
    ap50 = dict(zip(record.class_ids.tolist(), record.ap50()[0], strict=True))
    by_name = {c["name"]: c["id"] for c in categories}
    for row in rows:
        expected, ours = float(row["ap50"]), ap50[by_name[row["name"]]]
        assert (math.isnan(expected) and math.isnan(ours)) or ours == pytest.approx(expected, abs=1e-12)
    assert mean_over(record.ap50())[0] == pytest.approx(metrics["map50"], abs=1e-12)


@pytest.mark.integration
def test_rescoring_predictions_json_gives_the_same_metrics(synth_tiny, ckpt_eval, tmp_path):
    metrics, out = ckpt_eval
    again = run(_eval_cfg(synth_tiny, tmp_path / "b", f"predictions={out / 'predictions.json'}"))
    assert _same_metrics(metrics, again)
    assert (out / "per_class.csv").read_text() == (tmp_path / "b" / "per_class.csv").read_text()
    assert json.loads((tmp_path / "b" / "run.json").read_text())["num_detections"] > 0
    assert not (tmp_path / "b" / "predictions.json").exists()  # a scored file is not copied


@pytest.mark.integration
def test_model_card_holds_the_checkpoints_facts_figures_operating_point_and_speed(
    synth_tiny, student_ckpt, ckpt_eval, tmp_path
):
    metrics, _ = ckpt_eval
    out = tmp_path / "card"
    again = run(_eval_cfg(synth_tiny, out, f"ckpt_path={student_ckpt}", "model_card=true"))
    assert _same_metrics(again, metrics)  # writing the card changes no figure
    card = (out / "model_card.md").read_text()
    assert f"# Model card: `{student_ckpt}`" in card
    assert "fcos" in card.lower() and "128 x 128 px" in card and "no distillation" in card
    assert f"| all classes | {metrics['map50']:.3f} | {metrics['map']:.3f} |" in card
    assert (
        "| alarm ROC AUC | "
        f"{'-' if math.isnan(metrics['alarm_auc']) else format(metrics['alarm_auc'], '.3f')} |" in card
    )
    _, categories = _categories(synth_tiny)
    for category in categories:  # every class with its supercategory
        assert f"| {category['name']} | {category['supercategory']} |" in card
    speed = re.findall(r"^\| (1|8) \| ([0-9.]+) \| ([0-9.]+) \|$", card, flags=re.M)
    assert [b for b, _, _ in speed] == ["1", "8"] and all(float(ms) > 0 for _, ms, _ in speed)
    with pytest.raises(ConfigError, match="model_card=true needs ckpt_path"):
        run(_eval_cfg(synth_tiny, tmp_path / "x", f"predictions={tmp_path / 'none.json'}", "model_card=true"))


@pytest.mark.integration
def test_unknown_rule_labels_with_the_data_sets_unknown_category(
    synth_tiny, student_ckpt, ckpt_eval, tmp_path
):
    _, categories = _categories(synth_tiny)
    unknown_ids = {c["id"] for c in categories if c["supercategory"] == "unknown"}
    assert unknown_ids
    overrides = ["threshold=unknown", "threshold.T=0.9", "threshold.min_quality=0.0"]
    run(_eval_cfg(synth_tiny, tmp_path / "high", f"ckpt_path={student_ckpt}", *overrides))

    high, off = _predictions(tmp_path / "high"), _predictions(ckpt_eval[1])
    # Two training steps leave every class probability far below 0.9: every object-like point is
    # also reported unknown, and the rule only adds: the known detections are exactly those of T = 0.
    unknown = [p for p in high if p["category_id"] in unknown_ids]
    assert unknown and {p["category_id"] for p in unknown} == unknown_ids
    assert [p for p in high if p["category_id"] not in unknown_ids] == off
    assert off and not {p["category_id"] for p in off} & unknown_ids  # T = 0 labels none
    info = json.loads((tmp_path / "high" / "run.json").read_text())
    assert info["unknown_threshold"] == 0.9 and info["num_unknown"] == len(unknown)


@pytest.mark.integration
def test_ema_weights_are_preferred(synth_tiny, student_ckpt, ckpt_eval, tmp_path):
    checkpoint = torch.load(student_ckpt, weights_only=True)
    state = checkpoint["state_dict"]
    ema = {f"ema.module.{k[len('model.') :]}": v.clone() for k, v in state.items() if k.startswith("model.")}
    for key in ema:  # EMA weights that are certain of everything: scores near 1
        if key.endswith(("cls_logits.bias", "bbox_ctrness.bias")):
            ema[key].fill_(8.0)
    checkpoint["state_dict"] = {**state, **ema}
    path = tmp_path / "ema.ckpt"
    torch.save(checkpoint, path)

    run(_eval_cfg(synth_tiny, tmp_path / "ema", f"ckpt_path={path}"))
    raw_scores = [p["score"] for p in _predictions(ckpt_eval[1])]
    ema_scores = [p["score"] for p in _predictions(tmp_path / "ema")]
    assert json.loads((tmp_path / "ema" / "run.json").read_text())["weights"] == "ema"
    assert max(raw_scores) < 0.9 < min(ema_scores)


@pytest.mark.integration
def test_checkpoint_of_other_classes_is_refused_naming_both(student_ckpt, tiny_xray, tmp_path):
    with pytest.raises(
        CheckpointError, match=r"trained on classes \[\(1, 'knife'\).*data set has \[.*'keys'"
    ):
        run(_eval_cfg(tiny_xray, tmp_path / "out", f"ckpt_path={student_ckpt}"))


def test_missing_or_unsafe_checkpoint_is_a_checkpoint_error(synth_tiny, tmp_path):
    from dfss.preflight import StartupError

    with pytest.raises(StartupError, match=r"ckpt_path: DFSS checkpoint not found: .*nope\.ckpt"):
        run(_eval_cfg(synth_tiny, tmp_path / "out", f"ckpt_path={tmp_path / 'nope.ckpt'}"))
    unsafe = tmp_path / "unsafe.ckpt"
    torch.save({"state_dict": {}, "payload": Path("x")}, unsafe)  # a pickled object, not plain data
    with pytest.raises(CheckpointError, match=r"cannot load .* safely"):
        run(_eval_cfg(synth_tiny, tmp_path / "out", f"ckpt_path={unsafe}"))


@pytest.mark.parametrize("both", [True, False])
def test_exactly_one_of_ckpt_path_and_predictions(synth_tiny, tmp_path, both):
    overrides = ["ckpt_path=model.ckpt", "predictions=preds.json"] if both else []
    with pytest.raises(ValueError, match=f"exactly one of ckpt_path.*{'both' if both else 'neither'}"):
        run(_eval_cfg(synth_tiny, tmp_path / "out", *overrides))


@pytest.mark.integration
def test_multirun_over_t_rescores_one_checkpoint(synth_tiny, student_ckpt, tmp_path):
    sweep = tmp_path / "sweep"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "evaluate.py"),
            f"ckpt_path={student_ckpt}",
            "-m",  # after an override, as users write it (the entry point moves it to the front)
            f"data.root={synth_tiny}",
            "data.num_workers=0",
            "threshold=unknown",
            "threshold.min_quality=0.0",
            "threshold.T=0,0.9",
            f"hydra.sweep.dir={sweep}",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = {}
    for job in ("0", "1"):
        info = json.loads((sweep / job / "run.json").read_text())
        assert set(json.loads((sweep / job / "metrics.json").read_text())) == METRIC_KEYS
        runs[info["unknown_threshold"]] = info
    assert set(runs) == {0.0, 0.9}
    assert runs[0.0]["num_unknown"] == 0 and runs[0.9]["num_unknown"] > 0
    # the rule adds unknown detections to the same known ones
    assert runs[0.9]["num_detections"] - runs[0.9]["num_unknown"] == runs[0.0]["num_detections"]
    # the sweep's summary: one row per T, with the unknown and known figures side by side
    rows = list(csv.DictReader((sweep / "summary.csv").read_text().splitlines()))
    assert [r["threshold.T"] for r in rows] == ["0", "0.9"] and all(r["status"] == "done" for r in rows)
    assert rows[0]["map50_known"] == rows[1]["map50_known"]  # the rule never costs a known detection
    assert (sweep / "summary.md").read_text().count("\n") == 4  # header, rule, two jobs
    assert "labelled unknown" in (sweep / "1" / "eval.log").read_text()


class OracleDetector(nn.Module):
    """Test double: for each image (batch size 1, loader order) one point per object of the json,
    on the letterboxed canvas; known objects score their class, unknown ones no class but high quality."""

    def __init__(self, objects_per_image: list[list[tuple[list[float], int | None]]], num_classes: int):
        super().__init__()
        self.remaining = list(objects_per_image)
        self.num_classes = num_classes

    def forward(self, images: torch.Tensor) -> DenseOutputs:
        assert images.shape[0] == 1
        objects = self.remaining.pop(0)
        boxes = torch.tensor([box for box, _ in objects])  # [N, 4] xyxy on the canvas
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        cls_logits = torch.full((1, len(objects), self.num_classes), -10.0)
        for i, (_, label) in enumerate(objects):
            if label is not None:
                cls_logits[0, i, label] = 10.0
        return DenseOutputs(
            points=centres,
            strides=torch.ones(len(objects)),
            num_points_per_level=(len(objects),),
            cls_logits=cls_logits,
            box_regression=torch.cat([centres - boxes[:, :2], boxes[:, 2:] - centres], dim=1)[None],
            quality_logits=torch.full((1, len(objects)), 10.0),
            box_format="ltrb",
        )


def test_predict_split_maps_boxes_to_original_pixels_and_labels_to_category_ids(tiny_xray):
    datamodule = XrayDataModule(tiny_xray, image_size=128, eval_batch_size=1, num_workers=0, pin_memory=False)
    datamodule.setup("test")
    table = datamodule.class_table
    gt = datamodule.datasets["test"].coco
    objects_per_image = []
    for batch in datamodule.test_dataloader():
        (image_id,) = batch.image_ids.tolist()
        height, width = batch.orig_sizes[0].tolist()
        scale = letterbox_shape(height, width, 128)[1] / width
        objects = []
        for ann in gt.loadAnns(gt.getAnnIds(imgIds=[image_id])):
            x, y, w, h = ann["bbox"]
            label = table.label_by_coco_id.get(ann["category_id"])  # None for the unknown category
            objects.append(([x * scale, y * scale, (x + w) * scale, (y + h) * scale], label))
        objects_per_image.append(objects)

    def predict(threshold: float) -> list[dict]:
        oracle = OracleDetector(objects_per_image, table.num_classes).eval()
        config = PostProcessConfig(unknown_threshold=threshold)
        return predict_split(oracle, datamodule, "test", config, torch.device("cpu"))

    without_rule = evaluate_coco(gt, predict(0.0), table)
    known_ap = [c.ap for c in without_rule.per_class if c.supercategory != "unknown" and c.num_gt]
    assert known_ap and known_ap == pytest.approx([1.0] * len(known_ap))  # boxes in original pixels
    assert without_rule.metrics["map_unknown"] == 0.0  # the unknown object has no class to score
    with_rule = predict(0.5)
    # The json's own ids, the unknown object under the data set's unknown category.
    assert {p["category_id"] for p in with_rule} == {a["category_id"] for a in gt.dataset["annotations"]}
    assert {p["category_id"] for p in with_rule} & set(table.unknown_ids)
    metrics = evaluate_coco(gt, with_rule, table).metrics
    assert metrics["map_unknown"] == pytest.approx(1.0) and metrics["map"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="eval mode"):
        predict_split(
            OracleDetector(objects_per_image, 3), datamodule, "test", PostProcessConfig(), torch.device("cpu")
        )


def test_the_cpu_is_described_by_its_model_name_where_the_system_gives_one(tmp_path):
    from dfss.device import cpu_model

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9R14\nflags\t: fpu\n")
    assert cpu_model(str(info)) == f"AMD EPYC 9R14, {platform.machine()}"
    info.write_text("processor\t: 0\n")
    assert cpu_model(str(info)) == (platform.processor() or platform.machine())
    assert cpu_model(str(tmp_path / "missing")) == (platform.processor() or platform.machine())


def test_device_names():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="device must be"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            resolve_device("cuda")


@pytest.mark.integration
def test_evaluation_defaults_to_the_checkpoints_own_data_and_takes_any_part_of_it_overridden(
    synth_tiny, student_ckpt, ckpt_eval, tmp_path
):
    metrics, _ = ckpt_eval
    # nothing about the data on the command line: the set the checkpoint was trained on, its test split
    own = run(_compose("eval", [f"ckpt_path={student_ckpt}", "data.num_workers=0"], tmp_path / "own"))
    assert _same_metrics(own, metrics)
    facts = json.loads((tmp_path / "own" / "run.json").read_text())
    assert facts["split"] == "test" and facts["num_detections"] > 0
    # one key replaced, the rest the checkpoint's: a copy of the set elsewhere
    copy = tmp_path / "copy"
    shutil.copytree(synth_tiny, copy)
    moved = run(_compose("eval", [f"ckpt_path={student_ckpt}", f"data.root={copy}"], tmp_path / "moved"))
    assert _same_metrics(moved, metrics)
    # a root the checkpoint's data is not at: the start-up check names it
    with pytest.raises(StartupError, match=rf"data.root={tmp_path / 'nowhere'} does not exist"):
        run(
            _compose(
                "eval", [f"ckpt_path={student_ckpt}", f"data.root={tmp_path / 'nowhere'}"], tmp_path / "x"
            )
        )


@pytest.mark.integration
def test_evaluation_logs_a_wandb_run_like_training(synth_tiny, student_ckpt, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "eval"
    run(_compose("eval", [f"ckpt_path={student_ckpt}", "data.num_workers=0", "logger=wandb"], out))
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("run-*.wandb")), "no W&B run file written"
    tables = list((runs[0] / "files" / "media" / "table").rglob("*per_class_ap*.table.json"))
    assert len(tables) == 1 and "supercategory" in tables[0].read_text()
    record = next(runs[0].glob("run-*.wandb")).read_bytes()  # the run's records (protobuf)
    assert b"test/map50" in record and b"test/map50_dangerous" in record and b"test/alarm_auc" in record
