"""``dfss-predict``: a real checkpoint run over image files, drawn, summarised, and its errors.

The tiny checkpoint (two training steps) detects nothing useful, so what it finds is not tested;
that it finds exactly what the evaluation path finds on the same files is. Colours and alarms are
tested on known detections, where the right answer is known.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dfss.config import compose_config
from dfss.data.classes import ClassTable
from dfss.data.datamodule import XrayDataModule
from dfss.data.errors import DataError
from dfss.errors import ConfigError
from dfss.eval.image_files import find_images
from dfss.eval.inference import predict_split
from dfss.models.checkpoints import (
    build_model_from_checkpoint,
    class_table_of,
    postprocess_config_of,
    read_checkpoint,
)
from dfss.models.postprocess import UnknownRule
from dfss.precision import prepare_for_inference
from dfss.predict import draw_image, drawn_image_paths, image_summary, run
from dfss.preflight import StartupError
from dfss.viz import SUPERCATEGORY_COLOURS
from tests.helpers.cli import cli_env
from tests.helpers.data import CATEGORIES

ROOT = Path(__file__).parents[1]
RED, GREEN, YELLOW = (SUPERCATEGORY_COLOURS[k] for k in ("dangerous", "normal", "unknown"))
# Sizes (width, height) unlike the 128 px model input, so boxes must be mapped back from the letterbox.
SCAN_SIZES = [(200, 150), (96, 160), (170, 170), (128, 100), (150, 220)]


@pytest.fixture(scope="session")
def scans(synth_tiny, tmp_path_factory) -> Path:
    """The synthetic test images resized to odd sizes, as a data set (json + folder) and a plain folder;
    saved as PNG, so that the drawings (written in their input's format) keep exact colours."""
    source = json.loads((synth_tiny / "annotations" / "test.json").read_text())
    root = tmp_path_factory.mktemp("scans")
    (root / "images" / "test").mkdir(parents=True)
    images = []
    for info, (width, height) in zip(source["images"], SCAN_SIZES, strict=True):
        pixels = Image.open(synth_tiny / "images" / "test" / info["file_name"]).resize((width, height))
        name = Path(info["file_name"]).with_suffix(".png").name
        pixels.save(root / "images" / "test" / name)
        images.append({"id": info["id"], "file_name": name, "width": width, "height": height})
    document = {"images": images, "annotations": [], "categories": source["categories"]}
    (root / "annotations").mkdir()
    for split in ("train", "test"):
        (root / "annotations" / f"{split}.json").write_text(json.dumps(document))
    return root


def _predict_cfg(ckpt: Path, input_: Path | str, output: Path, *overrides: str):
    base = [f"ckpt={ckpt}", f"input={input_}", f"output={output}", "num_workers=0", "device=cpu"]
    return compose_config("predict", [*base, *overrides], output)


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="session")
def predicted(student_ckpt, scans, tmp_path_factory) -> Path:
    """dfss-predict's ``run`` on the scan folder, without drawing: its output folder."""
    out = tmp_path_factory.mktemp("predicted")
    run(_predict_cfg(student_ckpt, scans / "images" / "test", out, "batch_size=2", "draw=false"))
    return out


@pytest.mark.integration
@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
@pytest.mark.parametrize(
    "rule", [[], ["threshold=unknown", "threshold.T=0.2"]], ids=["no_rule", "unknown_rule"]
)
def test_predictions_equal_the_evaluation_paths_in_original_pixels(
    student_ckpt, scans, tmp_path, rule, precision
):
    out = tmp_path / "out"
    overrides = ("batch_size=2", "draw=false", f"precision={precision}", *rule)
    run(_predict_cfg(student_ckpt, scans / "images" / "test", out, *overrides))
    assert json.loads((out / "run.json").read_text())["precision"] == precision
    checkpoint = read_checkpoint(student_ckpt)
    table = class_table_of(checkpoint, student_ckpt)
    config = UnknownRule(T=0.2 if rule else 0.0).apply(postprocess_config_of(checkpoint))
    model = build_model_from_checkpoint(checkpoint, table.num_classes, student_ckpt).eval()
    cpu = torch.device("cpu")
    assert prepare_for_inference(model, cpu, precision) == precision
    datamodule = XrayDataModule(scans, image_size=128, eval_batch_size=2, num_workers=0, pin_memory=False)
    datamodule.setup("test")
    evaluated = predict_split(model, datamodule, "test", config, cpu, precision)

    id_of_file = {i["file_name"]: i["id"] for i in datamodule.datasets["test"].coco.dataset["images"]}
    entries = json.loads((out / "images.json").read_text())["images"]
    assert [Path(e["file_name"]).name for e in entries] == sorted(id_of_file)  # ids: sorted input order
    assert [e["id"] for e in entries] == list(range(1, len(SCAN_SIZES) + 1))
    eval_id_of = {e["id"]: id_of_file[Path(e["file_name"]).name] for e in entries}
    ours = json.loads((out / "predictions.json").read_text())
    assert ours and len(ours) == len(evaluated)
    num_unknown = sum(p["category_id"] in table.unknown_ids for p in ours)
    assert num_unknown > 0 if rule else num_unknown == 0  # the unknown rule is this run's
    for mine, theirs in zip(ours, evaluated, strict=True):
        assert eval_id_of[mine["image_id"]] == theirs["image_id"]
        assert mine["category_id"] == theirs["category_id"]
        assert mine["bbox"] == pytest.approx(theirs["bbox"], abs=1e-3)
        assert mine["score"] == pytest.approx(theirs["score"], abs=1e-5)
    size_of = {e["id"]: (e["width"], e["height"]) for e in entries}
    for p in ours:  # original pixels: inside each file, and past the 128 px canvas where a file is larger
        x, y, w, h = p["bbox"]
        width, height = size_of[p["image_id"]]
        assert x >= 0 and y >= 0 and x + w <= width + 1e-3 and y + h <= height + 1e-3
    assert max(p["bbox"][0] + p["bbox"][2] for p in ours) > 128


def _table(dangerous: str = "dangerous") -> ClassTable:
    categories = [{**c, "supercategory": dangerous} if c["name"] == "knife" else c for c in CATEGORIES]
    return ClassTable.from_categories(categories, dangerous_supercategories=(dangerous,))


def _detection(category_id: int, bbox: list[float], score: float) -> dict:
    return {"image_id": 1, "category_id": category_id, "bbox": bbox, "score": score}


@pytest.mark.parametrize("dangerous", ["dangerous", "threat"])
def test_drawn_boxes_are_red_green_yellow_by_the_tables_supercategory(dangerous):
    table = _table(dangerous)
    category_of = {c.coco_id: c for c in (*table.known, *table.unknown)}
    image = torch.full((3, 100, 160), 255, dtype=torch.uint8)
    detections = [
        _detection(3, [5, 5, 40, 40], 0.9),  # knife: dangerous
        _detection(7, [60, 5, 40, 40], 0.8),  # phone: normal
        _detection(20, [115, 5, 40, 40], 0.7),  # mystery: the unknown category
        _detection(3, [5, 55, 40, 40], 0.1),  # below the drawing threshold
    ]
    drawn = draw_image(image, detections, category_of, table, min_score=0.3).permute(1, 2, 0).numpy()
    for x, colour in ((5, RED), (60, GREEN), (115, YELLOW)):
        bottom = drawn[44, x + 20]  # the middle of the box's bottom edge (its label is at the top)
        right = drawn[25, x + 39]
        assert tuple(bottom) == colour and tuple(right) == colour
        assert tuple(drawn[30, x + 20]) == (255, 255, 255)  # only the outline and label are drawn
    assert (drawn[5:25, 115:155].sum(axis=-1) < 150).any()  # black text on the yellow box's label tag
    assert (drawn[55:, :] == 255).all()  # the 0.1 box is not drawn
    assert (image == 255).all()  # the input is not drawn on


def test_alarm_follows_the_dangerous_scores():
    table = _table()
    category_of = {c.coco_id: c for c in (*table.known, *table.unknown)}
    entry = {"id": 4, "file_name": "bag.png"}
    knife, phone, mystery = (_detection(c, [1, 2, 3, 4], s) for c, s in ((3, 0.6), (7, 0.99), (20, 0.99)))

    def summary(detections, alarm_score):
        return image_summary(entry, detections, category_of, table, alarm_score)

    assert summary([knife, phone, mystery], 0.5) == {
        "file": "bag.png",
        "image_id": 4,
        "alarm": True,
        "dangerous": [{"name": "knife", "score": 0.6, "bbox": [1, 2, 3, 4]}],
        "num_detections": 3,
        "num_unknown": 1,
    }
    assert summary([knife], 0.6)["alarm"]  # at the threshold
    assert not summary([knife, phone, mystery], 0.61)["alarm"]  # confident normal and unknown: no alarm
    assert summary([knife, phone, mystery], 0.61)["dangerous"] == []
    second = {**knife, "score": 0.8}
    assert [d["score"] for d in summary([knife, second], 0.5)["dangerous"]] == [0.8, 0.6]
    assert not summary([], 0.0)["alarm"]


@pytest.mark.integration
def test_cli_on_a_folder_writes_drawings_json_and_summary(student_ckpt, scans, predicted, tmp_path):
    table = class_table_of(read_checkpoint(student_ckpt), student_ckpt)
    dangerous_ids = {c.coco_id for c in table.known if table.is_dangerous(c)}
    category_of = {c.coco_id: c for c in (*table.known, *table.unknown)}
    # An alarm threshold between images: some have a dangerous detection scoring above it, some not.
    best = {}
    for p in json.loads((predicted / "predictions.json").read_text()):
        if p["category_id"] in dangerous_ids:
            best[p["image_id"]] = max(best.get(p["image_id"], 0.0), p["score"])
    scores = sorted(set(best.values()))
    assert len(scores) >= 2
    alarm_score = round((scores[len(scores) // 2 - 1] + scores[len(scores) // 2]) / 2, 6)

    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "dfss.predict",
            f"ckpt={student_ckpt}",
            f"input={scans / 'images' / 'test'}",
            f"output={out}",
            f"alarm_score={alarm_score}",
            "draw_score=0.0",
            "batch_size=3",
            "num_workers=1",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=cli_env(),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = sorted(p.name for p in (scans / "images" / "test").iterdir())
    assert sorted(p.name for p in out.glob("*.png")) == names
    predictions = json.loads((out / "predictions.json").read_text())
    summaries = _lines(out / "summary.jsonl")
    assert [Path(s["file"]).name for s in summaries] == names
    alarms = []
    for image_id, summary in enumerate(summaries, start=1):
        found = [p for p in predictions if p["image_id"] == image_id]
        dangerous = [p["score"] for p in found if p["category_id"] in dangerous_ids]
        assert summary["alarm"] == any(s >= alarm_score for s in dangerous)
        assert [d["score"] for d in summary["dangerous"]] == sorted(s for s in dangerous if s >= alarm_score)[
            ::-1
        ]
        alarms.append(summary["alarm"])
        # The most confident box is drawn last: its top edge has its class's colour.
        top = max(found, key=lambda p: p["score"])
        x, y, w, _ = top["bbox"]
        drawn = np.asarray(Image.open(out / names[image_id - 1]).convert("RGB"))
        colour = RED if top["category_id"] in dangerous_ids else GREEN
        assert category_of[top["category_id"]].supercategory != "unknown"  # threshold=none here
        assert tuple(drawn[int(y), (int(x) + int(x + w)) // 2]) == colour
    assert any(alarms) and not all(alarms)  # the chosen alarm score splits the images
    assert "alarm" in proc.stdout and names[0] in proc.stdout  # the printed table
    info = json.loads((out / "run.json").read_text())
    assert info["num_images"] == len(names) and info["num_alarms"] == sum(alarms)
    assert info["alarm_score"] == alarm_score and info["unknown_threshold"] == 0.0


@pytest.mark.integration
def test_unreadable_image_exits_2_naming_the_file(student_ckpt, scans, tmp_path):
    folder = tmp_path / "bags"
    folder.mkdir()
    good = next((scans / "images" / "test").iterdir())
    (folder / "a.png").write_bytes(good.read_bytes())
    (folder / "b_truncated.png").write_bytes(good.read_bytes()[:300])  # a valid header, cut short
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "dfss.predict",
            f"ckpt={student_ckpt}",
            f"input={folder}",
            f"output={tmp_path / 'out'}",
            "num_workers=1",  # the error crosses a DataLoader worker
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=cli_env(),
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    message = (proc.stdout + proc.stderr).strip().splitlines()
    assert any("DataError" in line and "b_truncated.png" in line for line in message)
    assert "Traceback" not in proc.stderr


@pytest.mark.integration
def test_bad_inputs_are_data_errors_naming_the_path(student_ckpt, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not a scan")
    with pytest.raises(DataError, match=re.escape(f"no images in folder {empty}")):
        run(_predict_cfg(student_ckpt, empty, tmp_path / "o1"))
    with pytest.raises(DataError, match=re.escape(f"input not found: {tmp_path / 'nope'}")):
        run(_predict_cfg(student_ckpt, tmp_path / "nope", tmp_path / "o2"))
    with pytest.raises(DataError, match=re.escape(f"no files match {tmp_path}/bags/*.png")):
        run(_predict_cfg(student_ckpt, f"{tmp_path}/bags/*.png", tmp_path / "o3"))
    with pytest.raises(DataError, match=r"unreadable image file .*notes.txt"):  # a named file is read
        run(_predict_cfg(student_ckpt, empty / "notes.txt", tmp_path / "o4"))
    assert not any((tmp_path / o).exists() for o in ("o1", "o2", "o3", "o4"))


@pytest.mark.integration
def test_settings_that_cannot_work_are_config_errors(student_ckpt, scans, tmp_path):
    folder = scans / "images" / "test"
    with pytest.raises(ConfigError, match="would overwrite the input image"):
        run(_predict_cfg(student_ckpt, folder, folder))
    with pytest.raises(StartupError, match=r"ckpt is not set: ckpt=<DFSS checkpoint>"):
        run(compose_config("predict", [f"input={folder}"], tmp_path))
    with pytest.raises(StartupError, match=r"alarm_score=1.5 is out of range: it must be \[0, 1\]"):
        run(_predict_cfg(student_ckpt, folder, tmp_path, "alarm_score=1.5"))


def test_inputs_are_found_sorted_and_drawn_under_their_names(tmp_path):
    for name in ("b.png", "a.JPG", "c.tif", "notes.txt", "sub/d.png", "sub/deeper/e.jpeg"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in find_images(tmp_path)] == ["a.JPG", "b.png", "c.tif"]  # not recursive
    found = find_images(f"{tmp_path}/**/*.[jJpP]*")
    assert [p.relative_to(tmp_path).as_posix() for p in found] == [
        "a.JPG",
        "b.png",
        "sub/d.png",
        "sub/deeper/e.jpeg",
    ]
    out = tmp_path / "out"
    drawn = drawn_image_paths([*found, tmp_path / "c.tif"], out)
    assert [p.relative_to(out).as_posix() for p in drawn] == [
        "a.JPG",
        "b.png",
        "sub/d.png",
        "sub/deeper/e.jpeg",
        "c.tif.png",  # formats other than PNG and JPEG are drawn as PNG, beside nothing they could clash with
    ]
    assert find_images(tmp_path / "b.png") == [tmp_path / "b.png"]


def test_dfss_predict_is_a_console_script():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["dfss-predict"] == "dfss.predict:main"
