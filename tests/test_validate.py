"""The data validator: one test per problem kind, plus one-pass reporting, determinism and the CLI."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dfss.data import validate as v
from dfss.data.errors import DataError
from dfss.data.validate import DataValidationError, main, validate_coco

# ---- tiny real datasets ------------------------------------------------------------------------
CATEGORIES = [
    {"id": 1, "name": "knife", "supercategory": "dangerous"},
    {"id": 2, "name": "bottle", "supercategory": "normal"},
    {"id": 7, "name": "blob", "supercategory": "unknown"},
]


def write_image(path: Path, width: int, height: int, seed: int = 0) -> Path:
    """A real noise image (noise so that a cut file is truncated mid-data, not mid-padding)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def make_dataset(tmp_path: Path) -> tuple[dict, Path]:
    """Three images (one in a sub-folder, one JPEG, one negative), three annotations."""
    image_dir = tmp_path / "images"
    write_image(image_dir / "a.png", 32, 24, seed=1)
    write_image(image_dir / "sub" / "b.jpg", 40, 30, seed=2)
    write_image(image_dir / "c.png", 20, 20, seed=3)
    dataset = {
        "info": {"description": "tiny"},
        "images": [
            {"id": 1, "file_name": "a.png", "width": 32, "height": 24},
            {"id": 2, "file_name": "sub/b.jpg", "width": 40, "height": 30},
            {"id": 3, "file_name": "c.png", "width": 20, "height": 20},
        ],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 1, "bbox": [2, 3, 10, 8], "area": 80, "iscrowd": 0},
            {"id": 11, "image_id": 1, "category_id": 2, "bbox": [4.5, 5, 6, 7], "area": 42, "iscrowd": 0},
            {"id": 12, "image_id": 2, "category_id": 7, "bbox": [0, 0, 40, 30], "area": 1200, "iscrowd": 0},
        ],
        "categories": copy.deepcopy(CATEGORIES),
    }
    return dataset, image_dir


def write_json(tmp_path: Path, dataset) -> Path:
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(dataset))
    return path


def run(tmp_path: Path, dataset, image_dir: Path, **kwargs) -> v.ValidationResult:
    return validate_coco(write_json(tmp_path, dataset), image_dir, **kwargs)


def failure(tmp_path: Path, dataset, image_dir: Path, **kwargs) -> DataValidationError:
    with pytest.raises(DataValidationError) as info:
        run(tmp_path, dataset, image_dir, **kwargs)
    return info.value


def only(report: v.ValidationReport, kind: str) -> v.Problem:
    assert report.counts() == {kind: 1}, report.summary()
    return report.problems[0]


def ids(entries: list[dict]) -> list[int]:
    return [e["id"] for e in entries]


def assert_fails_then_skips(tmp_path, dataset, image_dir, kind, *, names, images, annotations):
    """Fail mode raises naming the problem; skip mode keeps exactly ``images``/``annotations``."""
    error = failure(tmp_path, dataset, image_dir)
    assert kind in str(error)
    for name in names:
        assert name in str(error)
    assert error.report.fails and error.report.loses_data and not error.report.fatal
    assert "on_error=skip" in str(error)
    result = run(tmp_path, dataset, image_dir, on_error="skip")
    assert ids(result.dataset["images"]) == images
    assert ids(result.dataset["annotations"]) == annotations
    assert result.report.num_images_kept == len(images)
    assert result.report.num_annotations_kept == len(annotations)
    return result.report


# ---- clean data --------------------------------------------------------------------------------
def test_clean_dataset_has_no_problems_and_is_returned_unchanged(tmp_path):
    dataset, image_dir = make_dataset(tmp_path)
    result = run(tmp_path, dataset, image_dir)
    assert result.report.problems == ()
    assert result.dataset == dataset
    report = result.report
    assert (report.num_images, report.num_annotations) == (3, 3)
    assert (report.num_images_kept, report.num_annotations_kept) == (3, 3)
    assert report.num_negative_images == 1  # c.png, kept as a negative
    assert report.num_unknown_annotations == 1  # the 'blob' on b.jpg
    assert not report.loses_data and not report.fatal
    assert "no problems found" in report.summary()


# ---- whole-file structure ----------------------------------------------------------------------
def test_unparsable_json_is_fatal_with_line_and_column(tmp_path):
    path = tmp_path / "ann.json"
    path.write_text('{"images": [],\n  "annotations": [,]}')
    for on_error in ("fail", "skip"):
        with pytest.raises(DataValidationError) as info:
            validate_coco(path, tmp_path, on_error=on_error)
        problem = only(info.value.report, v.MALFORMED_JSON)
        assert problem.action == v.FATAL and problem.file == str(path)
        assert "line 2, column 19" in problem.message
        assert "cannot be skipped" in str(info.value)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ([], "top level is a json list"),
        ({"images": [], "annotations": []}, "no 'categories'"),
        ({"images": {}, "annotations": [], "categories": []}, "'images' is a dict, expected a list"),
    ],
)
def test_bad_top_level_is_fatal(tmp_path, content, expected):
    error = failure(tmp_path, content, tmp_path, on_error="skip")
    problem = only(error.report, v.MALFORMED_JSON)
    assert problem.action == v.FATAL
    assert expected in problem.message


def test_malformed_image_entry_drops_that_image_and_its_annotations(tmp_path):
    dataset, image_dir = make_dataset(tmp_path)
    del dataset["images"][0]["width"]
    report = assert_fails_then_skips(
        tmp_path,
        dataset,
        image_dir,
        v.MALFORMED_JSON,
        names=["image id 1", "no 'width'"],
        images=[2, 3],
        annotations=[12],
    )
    problem = only(report, v.MALFORMED_JSON)
    assert (problem.image_id, problem.ann_id, problem.action) == (1, None, v.DROPPED_IMAGE)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"bbox": [1, 2, 3]}, "'bbox' must be 4 numbers"),
        ({"bbox": [1, 2, "3", 4]}, "'bbox' must be 4 numbers"),
        ({"category_id": None}, "'category_id' must be an integer"),
        ({"image_id": "1"}, "'image_id' must be an integer"),
    ],
)
def test_malformed_annotation_drops_that_annotation(tmp_path, change, expected):
    dataset, image_dir = make_dataset(tmp_path)
    dataset["annotations"][1].update(change)
    report = assert_fails_then_skips(
        tmp_path,
        dataset,
        image_dir,
        v.MALFORMED_JSON,
        names=["annotation id 11", expected],
        images=[1, 2, 3],
        annotations=[10, 12],
    )
    problem = only(report, v.MALFORMED_JSON)
    assert (problem.ann_id, problem.action, problem.loses_data) == (11, v.DROPPED_ANNOTATION, True)


def test_annotation_without_bbox_is_malformed(tmp_path):
    dataset, image_dir = make_dataset(tmp_path)
    del dataset["annotations"][0]["bbox"]
    error = failure(tmp_path, dataset, image_dir)
    problem = only(error.report, v.MALFORMED_JSON)
    assert (
        problem.ann_id == 10 and "no 'bbox'" in problem.message and "image id 1, 'a.png'" in problem.message
    )


# ---- image files -------------------------------------------------------------------------------
def test_missing_image(tmp_path):
    dataset, image_dir = make_dataset(tmp_path)
    (image_dir / "a.png").unlink()
    report = assert_fails_then_skips(
        tmp_path,
        dataset,
        image_dir,
        v.MISSING_IMAGE,
        names=["a.png", "image id 1"],
        images=[2, 3],
        annotations=[12],
    )
    problem = only(report, v.MISSING_IMAGE)
    assert (problem.image_id, problem.action, problem.file) == (1, v.DROPPED_IMAGE, str(image_dir / "a.png"))


@pytest.mark.parametrize("file_name", ["a.png", "sub/b.jpg"])
def test_truncated_image_is_caught_by_full_decode_only(tmp_path, file_name):
    dataset, image_dir = make_dataset(tmp_path)
    truncate(image_dir / file_name)
    image_id = 1 if file_name == "a.png" else 2
    kept_anns = [12] if image_id == 1 else [10, 11]
    report = assert_fails_then_skips(
        tmp_path,
        dataset,
        image_dir,
        v.UNREADABLE_IMAGE,
        names=[file_name, f"image id {image_id}"],
        images=[i for i in (1, 2, 3) if i != image_id],
        annotations=kept_anns,
    )
    problem = only(report, v.UNREADABLE_IMAGE)
    assert (problem.image_id, problem.action, problem.file) == (
        image_id,
        v.DROPPED_IMAGE,
        str(image_dir / file_name),
    )
    # the header is intact, so a header-only check does not see it (documented trade-off)
    assert run(tmp_path, dataset, image_dir, image_check="header").report.problems == ()


def test_corrupt_image_is_caught_by_header_check_too(tmp_path):
    dataset, image_dir = make_dataset(tmp_path)
    (image_dir / "c.png").write_bytes(np.random.default_rng(0).bytes(500))
    for image_check in ("decode", "header"):
        error = failure(tmp_path, dataset, image_dir, image_check=image_check)
        problem = only(error.report, v.UNREADABLE_IMAGE)
        assert problem.image_id == 3 and "c.png" in problem.message
    assert run(tmp_path, dataset, image_dir, image_check="none").report.problems == ()


def test_size_mismatch(tmp_path):
    dataset, image_dir = make_dataset(tmp_path)
    dataset["images"][1]["width"] = 41
    report = assert_fails_then_skips(
        tmp_path,
        dataset,
        image_dir,
        v.SIZE_MISMATCH,
        names=["sub/b.jpg", "image id 2", "40x30", "41x30"],
        images=[1, 3],
        annotations=[10, 11],
    )
    assert only(report, v.SIZE_MISMATCH).action == v.DROPPED_IMAGE
    assert run(tmp_path, dataset, image_dir, image_check="header", on_error="skip").report.counts() == {
        v.SIZE_MISMATCH: 1
    }


def test_image_check_none_does_not_touch_files(tmp_path):
    dataset, _ = make_dataset(tmp_path)
    result = run(tmp_path, dataset, tmp_path / "nowhere", image_check="none")
    assert result.report.problems == () and result.dataset == dataset


# ---- categories --------------------------------------------------------------------------------
@pytest.mark.parametrize("supercategory", [None, "", "  "])
def test_missing_supercategory_is_fatal_in_both_modes(tmp_path, supercategory):
    dataset, image_dir = make_dataset(tmp_path)
    if supercategory is None:
        del dataset["categories"][1]["supercategory"]
    else:
        dataset["categories"][1]["supercategory"] = supercategory
    for on_error in ("fail", "skip"):
        error = failure(tmp_path, dataset, image_dir, on_error=on_error)
        problem = only(error.report, v.MISSING_SUPERCATEGORY)
        assert problem.action == v.FATAL
        assert "category id 2 ('bottle')" in problem.message
        assert "'dangerous', 'normal' or 'unknown'" in problem.message
        assert "cannot be skipped" in str(error)


def test_duplicate_category_id_is_fatal(tmp_path):
    dataset, image_dir = make_dataset(tmp_path)
    dataset["categories"].append({"id": 2, "name": "flask", "supercategory": "normal"})
    error = failure(tmp_path, dataset, image_dir, on_error="skip")
    problem = only(error.report, v.DUPLICATE_CATEGORY_ID)
    assert (
        problem.action == v.FATAL
        and "duplicate category id 2" in problem.message
        and "flask" in problem.message
    )


def test_unknown_category(tmp_path):
    dataset, image_dir = make_dataset(tmp_path)
    dataset["annotations"][0]["category_id"] = 99
    report = assert_fails_then_skips(
        tmp_path,
        dataset,
        image_dir,
        v.UNKNOWN_CATEGORY,
        names=["annotation id 10", "image id 1", "category id 99"],
        images=[1, 2, 3],
        annotations=[11, 12],
    )
    problem = only(report, v.UNKNOWN_CATEGORY)
    assert (problem.image_id, problem.ann_id, problem.action) == (1, 10, v.DROPPED_ANNOTATION)


# ---- ids ---------------------------------------------------------------------------------------
def test_duplicate_image_id_drops_the_later_entry(tmp_path):
    dataset, image_dir = make_dataset(tmp_path)
    dataset["images"][2]["id"] = 1  # c.png claims image id 1 too
    report = assert_fails_then_skips(
        tmp_path,
        dataset,
        image_dir,
        v.DUPLICATE_IMAGE_ID,
        names=["duplicate image id 1", "c.png", "a.png"],
        images=[1, 2],
        annotations=[10, 11, 12],
    )
    assert only(report, v.DUPLICATE_IMAGE_ID).action == v.DROPPED_IMAGE
    result = run(tmp_path, dataset, image_dir, on_error="skip")
    assert [img["file_name"] for img in result.dataset["images"]] == ["a.png", "sub/b.jpg"]


def test_duplicate_annotation_id_drops_the_later_entry(tmp_path):
    dataset, image_dir = make_dataset(tmp_path)
    dataset["annotations"][2]["id"] = 10
    report = assert_fails_then_skips(
        tmp_path,
        dataset,
        image_dir,
        v.DUPLICATE_ANNOTATION_ID,
        names=["duplicate annotation id 10", "image id 2"],
        images=[1, 2, 3],
        annotations=[10, 11],
    )
    problem = only(report, v.DUPLICATE_ANNOTATION_ID)
    assert (problem.image_id, problem.ann_id, problem.action) == (2, 10, v.DROPPED_ANNOTATION)
    result = run(tmp_path, dataset, image_dir, on_error="skip")
    assert result.dataset["annotations"][0]["image_id"] == 1  # the first one is kept


def test_orphan_annotation(tmp_path):
    dataset, image_dir = make_dataset(tmp_path)
    dataset["annotations"][1]["image_id"] = 42
    report = assert_fails_then_skips(
        tmp_path,
        dataset,
        image_dir,
        v.ORPHAN_ANNOTATION,
        names=["annotation id 11", "image id 42"],
        images=[1, 2, 3],
        annotations=[10, 12],
    )
    problem = only(report, v.ORPHAN_ANNOTATION)
    assert (problem.image_id, problem.ann_id, problem.action) == (42, 11, v.DROPPED_ANNOTATION)


# ---- boxes -------------------------------------------------------------------------------------
def test_box_partly_outside_is_clipped_and_counted_without_failing(tmp_path):
    dataset, image_dir = make_dataset(tmp_path)
    dataset["annotations"][0]["bbox"] = [-2, 20, 10, 8]  # a.png is 32x24: sticks out left and bottom
    dataset["annotations"][1]["bbox"] = [30.5, 5, 6, 7]  # sticks out right
    path = write_json(tmp_path, dataset)
    original = path.read_text()
    for on_error in ("fail", "skip"):
        result = validate_coco(path, image_dir, on_error=on_error)
        report = result.report
        assert report.counts() == {v.BOX_OUTSIDE_IMAGE: 2}
        assert [(p.ann_id, p.action, p.loses_data) for p in report.problems] == [
            (10, v.CLIPPED, False),
            (11, v.CLIPPED, False),
        ]
        assert (
            not report.loses_data and "annotation id 10 (image id 1, 'a.png')" in report.problems[0].message
        )
        boxes = [ann["bbox"] for ann in result.dataset["annotations"]]
        assert boxes == [[0, 20, 8, 4], [30.5, 5, 1.5, 7], [0, 0, 40, 30]]
        assert result.report.num_annotations_kept == 3
    assert path.read_text() == original and dataset["annotations"][0]["bbox"] == [-2, 20, 10, 8]


@pytest.mark.parametrize("bbox", [[32, 0, 5, 5], [-10, 3, 10, 4], [5, 24, 3, 3]])
def test_box_entirely_outside_is_dropped(tmp_path, bbox):
    dataset, image_dir = make_dataset(tmp_path)
    dataset["annotations"][0]["bbox"] = bbox
    report = assert_fails_then_skips(
        tmp_path,
        dataset,
        image_dir,
        v.BOX_ENTIRELY_OUTSIDE,
        names=["annotation id 10", "entirely outside"],
        images=[1, 2, 3],
        annotations=[11, 12],
    )
    assert only(report, v.BOX_ENTIRELY_OUTSIDE).action == v.DROPPED_ANNOTATION


@pytest.mark.parametrize(
    ("bbox", "expected"),
    [
        ([2, 3, 0, 8], "zero or negative"),
        ([2, 3, 10, -1], "zero or negative"),
        ([math.nan, 3, 10, 8], "non-finite"),
        ([2, 3, math.inf, 8], "non-finite"),
    ],
)
def test_degenerate_box_is_dropped(tmp_path, bbox, expected):
    dataset, image_dir = make_dataset(tmp_path)
    dataset["annotations"][0]["bbox"] = bbox  # json.dumps writes NaN / Infinity, which json.loads reads
    report = assert_fails_then_skips(
        tmp_path,
        dataset,
        image_dir,
        v.DEGENERATE_BOX,
        names=["annotation id 10", "image id 1", expected],
        images=[1, 2, 3],
        annotations=[11, 12],
    )
    problem = only(report, v.DEGENERATE_BOX)
    assert (problem.ann_id, problem.action) == (10, v.DROPPED_ANNOTATION)


# ---- one pass, negatives, determinism -----------------------------------------------------------
def broken_dataset(tmp_path: Path) -> tuple[dict, Path]:
    """Several problems of different kinds at once."""
    dataset, image_dir = make_dataset(tmp_path)
    write_image(image_dir / "d.png", 16, 16, seed=4)
    write_image(image_dir / "e.png", 16, 16, seed=5)
    dataset["images"] += [
        {"id": 5, "file_name": "e.png", "width": 16, "height": 16},
        {"id": 4, "file_name": "d.png", "width": 16, "height": 16},
        {"id": 6, "file_name": "gone.png", "width": 16, "height": 16},
    ]
    (image_dir / "c.png").unlink()  # image 3: missing
    truncate(image_dir / "a.png")  # image 1: unreadable
    dataset["annotations"] += [
        {"id": 20, "image_id": 4, "category_id": 1, "bbox": [10, 10, 10, 10]},  # clipped
        {"id": 14, "image_id": 5, "category_id": 5, "bbox": [1, 1, 2, 2]},  # unknown category
        {"id": 13, "image_id": 4, "category_id": 2, "bbox": [1, 1, 0, 2]},  # degenerate
        {"id": 15, "image_id": 9, "category_id": 2, "bbox": [1, 1, 2, 2]},  # orphan
    ]
    return dataset, image_dir


def test_every_problem_is_reported_in_one_pass(tmp_path):
    dataset, image_dir = broken_dataset(tmp_path)
    error = failure(tmp_path, dataset, image_dir)
    report = error.report
    assert report.counts() == {
        v.MISSING_IMAGE: 2,
        v.UNREADABLE_IMAGE: 1,
        v.ORPHAN_ANNOTATION: 1,
        v.UNKNOWN_CATEGORY: 1,
        v.DEGENERATE_BOX: 1,
        v.BOX_OUTSIDE_IMAGE: 1,
    }
    assert [(p.image_id, p.ann_id) for p in report.problems] == [
        (1, None),
        (3, None),
        (6, None),
        (4, 13),
        (5, 14),
        (9, 15),
        (4, 20),
    ]
    for name in ("a.png", "c.png", "gone.png", "annotation id 13", "annotation id 14", "annotation id 15"):
        assert name in str(error)
    result = run(tmp_path, dataset, image_dir, on_error="skip")
    assert ids(result.dataset["images"]) == [2, 5, 4]
    assert ids(result.dataset["annotations"]) == [12, 20]
    assert result.dataset["annotations"][1]["bbox"] == [10, 10, 6, 6]
    assert result.report.num_negative_images == 1  # e.png: its only annotation had an unknown category
    assert result.report.num_images_emptied == 1
    assert result.report.to_dict()["problems"] == [dataclass_dict(p) for p in report.problems]


def dataclass_dict(problem: v.Problem) -> dict:
    return {
        k: getattr(problem, k)
        for k in ("kind", "message", "file", "image_id", "ann_id", "action", "loses_data")
    }


def test_report_is_the_same_whatever_the_worker_count(tmp_path):
    dataset, image_dir = broken_dataset(tmp_path)
    for index in range(7, 27):  # enough images for the thread pool to finish out of order
        write_image(image_dir / f"n{index}.png", 8 + index, 8, seed=index)
        dataset["images"].append(
            {"id": index, "file_name": f"n{index}.png", "width": 8 + index, "height": 8 + index % 2}
        )
    serial = run(tmp_path, dataset, image_dir, on_error="skip", num_workers=0)
    threaded = run(tmp_path, dataset, image_dir, on_error="skip", num_workers=2)
    assert threaded.report == serial.report and threaded.dataset == serial.dataset
    assert serial.report.counts()[v.SIZE_MISMATCH] == 10
    mismatched = [p.image_id for p in serial.report.problems if p.kind == v.SIZE_MISMATCH]
    assert mismatched == sorted(mismatched) == list(range(7, 27, 2))


def test_summary_lists_counts_and_first_examples(tmp_path):
    dataset, image_dir = make_dataset(tmp_path)
    for ann in dataset["annotations"][:2]:
        ann["category_id"] = 50
    dataset["annotations"].append({"id": 9, "image_id": 3, "category_id": 51, "bbox": [1, 1, 2, 2]})
    report = run(tmp_path, dataset, image_dir, on_error="skip").report
    text = report.summary(max_examples=2)
    assert "unknown_category: 3 [dropped_annotation]" in text
    assert "annotation id 9 " in text and "annotation id 10 " in text and "annotation id 11 " not in text
    assert "... and 1 more" in text
    assert "annotations: 4 in json, 1 kept" in text


def test_invalid_options_raise(tmp_path):
    dataset, image_dir = make_dataset(tmp_path)
    with pytest.raises(ValueError, match="on_error"):
        run(tmp_path, dataset, image_dir, on_error="ignore")
    with pytest.raises(ValueError, match="image_check"):
        run(tmp_path, dataset, image_dir, image_check="full")
    with pytest.raises(DataError, match="annotation file not found"):
        validate_coco(tmp_path / "absent.json", image_dir)
    with pytest.raises(DataError, match="image folder not found"):
        run(tmp_path, dataset, tmp_path / "absent")


# ---- command line ------------------------------------------------------------------------------
def test_cli_exit_codes_report_and_clean_json(tmp_path, capsys):
    dataset, image_dir = make_dataset(tmp_path)
    path = write_json(tmp_path, dataset)
    assert main([str(path), "--images", str(image_dir)]) == 0
    assert "no problems found" in capsys.readouterr().out

    dataset["annotations"][0]["bbox"] = [2, 3, 10, 0]  # degenerate
    dataset["annotations"][1]["bbox"] = [30, 5, 6, 7]  # clipped
    path = write_json(tmp_path, dataset)
    report_path, clean_path = tmp_path / "out" / "report.json", tmp_path / "clean.json"
    args = [
        str(path),
        "--images",
        str(image_dir),
        "--report",
        str(report_path),
        "--write-clean",
        str(clean_path),
    ]
    assert main(args) == 1
    out = capsys.readouterr()
    assert "degenerate_box: 1" in out.out and "on_error=skip" in out.out
    assert not clean_path.exists() and "not written" in out.err
    report = json.loads(report_path.read_text())
    assert report["counts"] == {v.DEGENERATE_BOX: 1, v.BOX_OUTSIDE_IMAGE: 1}
    assert report["loses_data"] is True and report["fatal"] is False
    assert [(p["kind"], p["ann_id"], p["action"]) for p in report["problems"]] == [
        (v.DEGENERATE_BOX, 10, v.DROPPED_ANNOTATION),
        (v.BOX_OUTSIDE_IMAGE, 11, v.CLIPPED),
    ]

    assert main([*args, "--on-error", "skip", "--workers", "2"]) == 0
    clean = json.loads(clean_path.read_text())
    assert ids(clean["annotations"]) == [11, 12] and clean["annotations"][0]["bbox"] == [30, 5, 2, 7]
    assert json.loads(report_path.read_text())["num_annotations_kept"] == 2
    assert [p.name for p in clean_path.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_cli_usage_errors_and_help(tmp_path, capsys):
    dataset, image_dir = make_dataset(tmp_path)
    path = write_json(tmp_path, dataset)
    assert main([str(path)]) == 2  # --images missing
    assert main([str(path), "--images", str(image_dir), "--on-error", "ignore"]) == 2
    assert main([str(tmp_path / "absent.json"), "--images", str(image_dir)]) == 2
    assert "annotation file not found" in capsys.readouterr().err
    assert main(["--help"]) == 0
    assert "example:" in capsys.readouterr().out


def test_cli_fatal_fails_even_in_skip_mode(tmp_path, capsys):
    dataset, image_dir = make_dataset(tmp_path)
    del dataset["categories"][0]["supercategory"]
    path = write_json(tmp_path, dataset)
    assert main([str(path), "--images", str(image_dir), "--on-error", "skip"]) == 1
    assert "missing_supercategory: 1 [fatal]" in capsys.readouterr().out
