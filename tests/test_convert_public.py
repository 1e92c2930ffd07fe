"""dfss-convert public: SIXray, OPIXray, HiXray, PIDray and CLCXray in their published layouts.

Each sample below is written by hand in the set's own layout (folders, file names, annotation
format and known quirks); the expected COCO boxes are worked out by hand in the comments.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from dfss.convert.classmap import load_class_map, parse_class_map
from dfss.convert.cli import main
from dfss.convert.public import PUBLIC_SETS, default_class_map, read_public
from dfss.convert.public.common import class_lookup
from dfss.data.classes import ClassTable
from dfss.data.datamodule import XrayDataModule
from dfss.data.errors import DataError

# Each set's classes in its official spelling and order (the sources are in the class map yamls).
_SET_CLASSES = {
    "sixray": ["Gun", "Knife", "Wrench", "Pliers", "Scissors", "Hammer"],
    "opixray": ["Folding_Knife", "Straight_Knife", "Scissor", "Utility_Knife", "Multi-tool_Knife"],
    "hixray": [
        "Portable_Charger_1",
        "Portable_Charger_2",
        "Water",
        "Laptop",
        "Mobile_Phone",
        "Tablet",
        "Cosmetic",
        "Nonmetallic_Lighter",
    ],
    "pidray": [
        "Baton",
        "Pliers",
        "Hammer",
        "Powerbank",
        "Scissors",
        "Wrench",
        "Gun",
        "Bullet",
        "Sprayer",
        "HandCuffs",
        "Knife",
        "Lighter",
    ],
    "clcxray": [
        "blade",
        "scissors",
        "knife",
        "dagger",
        "SwissArmyKnife",
        "PlasticBottle",
        "Cans",
        "VacuumCup",
        "GlassBottle",
        "CartonDrinks",
        "Tin",
        "SprayCans",
    ],
}


# ---- helpers -----------------------------------------------------------------------------------
def _image(path: Path, width: int, height: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), (180, 190, 200)).save(path)
    return path


def _text(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding=encoding)
    return path


def _convert(*argv: str | Path) -> int:
    return main(["public", *(str(a) for a in argv)])


def _coco(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _rows(coco: dict) -> tuple[list[tuple], list[tuple]]:
    """(id, file_name, width, height) per image; (id, image_id, category_id, bbox, area, iscrowd) per box."""
    images = [(i["id"], i["file_name"], i["width"], i["height"]) for i in coco["images"]]
    anns = [
        (a["id"], a["image_id"], a["category_id"], a["bbox"], a["area"], a["iscrowd"])
        for a in coco["annotations"]
    ]
    return images, anns


def _one_line_error(capsys: pytest.CaptureFixture) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


# ---- OPIXray: <root>/<split>/<split>_annotation/<id>.txt, <split>_image/<id>.jpg --------------
def _opixray(root: Path) -> Path:
    train = root / "OPIXray_Dataset" / "train"
    _image(train / "train_image" / "009000.jpg", 120, 80)
    _image(train / "train_image" / "009001.jpg", 64, 48)
    _image(train / "train_image" / "009002.jpg", 50, 50)
    ann = train / "train_annotation"
    _text(ann / "009000.txt", "009000.jpg Straight_Knife 10 20 50 60\n009000.jpg Scissor 0 0 30 40\n")
    _text(ann / "009001.txt", "009001.jpg Multi-tool_Knife 5 6 25 30\n")
    _text(ann / "009002.txt", "")  # an image without objects
    _text(train / "train_knife.txt", "009000\n009001\n009002\n")
    return root / "OPIXray_Dataset"


def test_opixray_train_split_to_exact_coco_with_linked_images(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    root, out = _opixray(tmp_path), tmp_path / "data" / "opixray"
    assert _convert("--set", "opixray", "--root", root, "--split", "train", "--out", out) == 0
    summary = capsys.readouterr().out
    assert "images: 3 (negatives, without any box: 1)" in summary and "no problems found" in summary

    coco = _coco(out / "annotations" / "train.json")
    images, anns = _rows(coco)
    assert images == [(1, "009000.jpg", 120, 80), (2, "009001.jpg", 64, 48), (3, "009002.jpg", 50, 50)]
    # corners as written: (10, 20)-(50, 60) -> [10, 20, 40, 40]; (5, 6)-(25, 30) -> [5, 6, 20, 24]
    assert anns == [
        (1, 1, 2, [10.0, 20.0, 40.0, 40.0], 1600.0, 0),
        (2, 1, 3, [0.0, 0.0, 30.0, 40.0], 1200.0, 0),
        (3, 2, 5, [5.0, 6.0, 20.0, 24.0], 480.0, 0),
    ]
    assert coco["categories"] == [
        {"id": 1, "name": "Folding_Knife", "supercategory": "dangerous"},
        {"id": 2, "name": "Straight_Knife", "supercategory": "dangerous"},
        {"id": 3, "name": "Scissor", "supercategory": "dangerous"},
        {"id": 4, "name": "Utility_Knife", "supercategory": "dangerous"},
        {"id": 5, "name": "Multi-tool_Knife", "supercategory": "dangerous"},
    ]
    link = out / "images" / "train"
    assert link.is_symlink() and link.resolve() == (root / "train" / "train_image").resolve()


def test_opixray_output_is_what_the_data_module_reads(tmp_path: Path) -> None:
    root, out = _opixray(tmp_path), tmp_path / "data"
    assert _convert("--set", "opixray", "--root", root, "--split", "train", "--out", out) == 0
    dm = XrayDataModule(out, val_ann="annotations/train.json", val_images="images/train", image_size=64)
    dm.setup("fit")
    assert [c.name for c in dm.class_table.known] == list(default_class_map("opixray").names)
    assert len(dm.datasets["train"]) == 3
    assert dm.reports["train"].report.num_annotations_kept == 3


def test_opixray_ids_list_picks_images_and_names_a_missing_one(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    root, out = _opixray(tmp_path), tmp_path / "data"
    level3 = _text(root / "train" / "train_knife-3.txt", "009001.jpg\n\n")  # listed with a suffix
    argv = ["--set", "opixray", "--root", root, "--split", "train", "--ids", level3]
    assert _convert(*argv, "--out-split", "occl3", "--out", out) == 0
    assert _rows(_coco(out / "annotations" / "occl3.json"))[0] == [(1, "009001.jpg", 64, 48)]

    _text(level3, "009001\n009777\n")
    assert _convert(*argv, "--out", tmp_path / "other") == 2
    err = _one_line_error(capsys)
    assert f"{level3} line 2" in err and "'009777'" in err


def test_opixray_chinese_class_names_of_the_earlier_release(tmp_path: Path) -> None:
    root = _opixray(tmp_path)
    ann = root / "train" / "train_annotation"
    _text(
        ann / "009000.txt", "009000.jpg 直刀 10 20 50 60\n009000.jpg 剪刀 0 0 30 40\n", encoding="utf-8-sig"
    )
    _text(ann / "009001.txt", "009001.jpg 多功能刀 5 6 25 30\n")
    split = read_public("opixray", root, "train", default_class_map("opixray"))
    names = [[b.category for b in r.boxes] for r in split.conversion.images]
    assert names == [["Straight_Knife", "Scissor"], ["Multi-tool_Knife"], []]


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("009001.jpg Multi-tool_Knife 5 6 25", "expected 'image_name category x1 y1 x2 y2', got 5 fields"),
        ("009001.jpg Multi-tool_Knife 5 six 25 30", "y1 is 'six', not a number"),
        ("009001.jpg Axe 5 6 25 30", "class name 'Axe' is not in the class map"),
    ],
)
def test_bad_opixray_line_exits_2_naming_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture, line: str, fragment: str
) -> None:
    root, out = _opixray(tmp_path), tmp_path / "data"
    bad = _text(root / "train" / "train_annotation" / "009001.txt", f"009001.jpg Scissor 1 1 9 9\n{line}\n")
    assert _convert("--set", "opixray", "--root", root, "--split", "train", "--out", out) == 2
    err = _one_line_error(capsys)
    assert f"{bad} line 2" in err and fragment in err
    assert not (out / "annotations" / "train.json").exists()


def test_unknown_class_names_can_be_skipped_and_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    root, out = _opixray(tmp_path), tmp_path / "data"
    _text(root / "train" / "train_annotation" / "009001.txt", "009001.jpg Axe 5 6 25 30\n")
    argv = ["--set", "opixray", "--root", root, "--split", "train", "--out", out]
    assert _convert(*argv, "--unknown-names", "skip") == 0
    assert "skipped 1: object named 'Axe' is not in the class map" in capsys.readouterr().out
    assert len(_coco(out / "annotations" / "train.json")["annotations"]) == 2


# ---- HiXray: same layout, .TIFF or .jpg images, names with spaces and non-ASCII characters -----
def test_hixray_tiff_and_non_ascii_names_and_boxes_outside(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    test = tmp_path / "HiXray" / "test"
    _image(test / "test_image" / "scan 01.jpg", 100, 60)
    _image(test / "test_image" / "行李_02.TIFF", 80, 80)
    _text(
        test / "test_annotation" / "scan 01.txt",
        "scan 01.jpg Mobile_Phone 10 10 40 30\n"
        "scan 01.jpg Portable_Charger_1 200 10 240 30\n",  # starts right of the 100 px image: left out
    )
    _text(
        test / "test_annotation" / "行李_02.txt",
        "行李_02.TIFF Nonmetallic_Lighter 0 0 8 9\n行李_02.TIFF Water 70 70 90 90\n",
        encoding="utf-8-sig",  # a byte-order mark
    )
    out = tmp_path / "data"
    assert _convert("--set", "hixray", "--root", tmp_path / "HiXray", "--split", "test", "--out", out) == 0
    summary = capsys.readouterr().out
    assert "skipped 1: box entirely outside its image" in summary
    assert (
        "box_outside_image: 1" in summary
    )  # Water (70, 70)-(90, 90) on 80 x 80: kept, clipped by the validator

    coco = _coco(out / "annotations" / "test.json")
    images, anns = _rows(coco)
    assert images == [(1, "scan 01.jpg", 100, 60), (2, "行李_02.TIFF", 80, 80)]
    assert anns == [
        (1, 1, 5, [10.0, 10.0, 30.0, 20.0], 600.0, 0),
        (2, 2, 8, [0.0, 0.0, 8.0, 9.0], 72.0, 0),
        (3, 2, 3, [70.0, 70.0, 20.0, 20.0], 400.0, 0),
    ]
    supercategory = {c["name"]: c["supercategory"] for c in coco["categories"]}
    assert supercategory == {
        "Portable_Charger_1": "dangerous",
        "Portable_Charger_2": "dangerous",
        "Water": "normal",
        "Laptop": "normal",
        "Mobile_Phone": "normal",
        "Tablet": "normal",
        "Cosmetic": "normal",
        "Nonmetallic_Lighter": "dangerous",
    }


def test_txt_layout_reads_utf8_class_names_of_a_users_class_map(tmp_path: Path) -> None:
    # HiXray's repository also holds a compiled loader (MuBo/data/__pycache__/SIXray.cpython-37.pyc)
    # for a txt set with Chinese class names (power banks with and without a core): utf-8, BOM or not.
    test = tmp_path / "Battery" / "test"
    _image(test / "test_image" / "core_001.jpg", 40, 30)
    _text(
        test / "test_annotation" / "core_001.txt",
        "core_001.jpg 带电芯充电宝 1 2 11 12\n",
        encoding="utf-8-sig",
    )
    class_map = parse_class_map("classes:\n  带电芯充电宝: dangerous\n  不带电芯充电宝: normal\n")
    split = read_public("hixray", tmp_path / "Battery", "test", class_map)
    [record] = split.conversion.images
    assert [(b.category, b.x1, b.y1, b.x2, b.y2) for b in record.boxes] == [("带电芯充电宝", 1, 2, 11, 12)]


def test_missing_image_for_an_annotation_file_names_both(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    test = tmp_path / "HiXray" / "test"
    (test / "test_image").mkdir(parents=True)
    ann = _text(test / "test_annotation" / "a.txt", "a.jpg Laptop 1 1 5 5\n")
    assert (
        _convert("--set", "hixray", "--root", tmp_path / "HiXray", "--split", "test", "--out", tmp_path / "o")
        == 2
    )
    err = _one_line_error(capsys)
    assert f"{ann}: no image {test / 'test_image' / 'a'}." in err


# ---- SIXray: JPEGImage/, positive-Annotation/**.xml (VOC), ImageSet csv lists ------------------
def _voc(filename: str, size: tuple[int, int] | None, objects: list[tuple]) -> str:
    """objects: (name or None, xmin, ymin, xmax, ymax); labelImg-style VOC as SIXray ships."""
    size_xml = (
        ""
        if size is None
        else f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>"
    )
    objs = "".join(
        "<object>"
        + ("" if name is None else f"<name>{name}</name>")
        + "<pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>"
        + f"<bndbox><xmin>{a}</xmin><ymin>{b}</ymin><xmax>{c}</xmax><ymax>{d}</ymax></bndbox></object>"
        for name, a, b, c, d in objects
    )
    return (
        f"<annotation><folder>JPEGImage</folder><filename>{filename}</filename>{size_xml}{objs}</annotation>"
    )


def _sixray(root: Path) -> Path:
    six = root / "SIXray"
    for name, size in {
        "P00001": (100, 80),
        "P00002": (60, 40),
        "P00003": (50, 50),
        "N0000001": (30, 20),
    }.items():
        _image(six / "JPEGImage" / f"{name}.jpg", *size)
    xml = six / "positive-Annotation" / "Annotation"
    # Gun: VOC 1-based 11..50 x 21..80 -> [10, 20, 40, 60]; an object with no <name>; 'knife' in lower case
    _text(
        xml / "P00001.xml",
        _voc("P00001.jpg", (100, 80), [("Gun", 11, 21, 50, 80), (None, 3, 3, 9, 9), ("knife", 1, 1, 10, 10)]),
    )
    _text(xml / "P00002.xml", _voc("P00002.jpg", None, [("Hammer", 5, 5, 20, 30)]))  # no <size>: 60 x 40
    _text(
        six / "ImageSet" / "10" / "train.csv",
        "name,Gun,Knife,Wrench,Pliers,Scissors\n"
        "P00001,1,1,-1,-1,-1\n"
        "N0000001,-1,-1,-1,-1,-1\n"
        "P00003,-1,1,-1,-1,-1\n",  # labelled positive, but no xml: left out, counted
    )
    return six


def test_sixray_positive_split_reads_every_xml(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root, out = _sixray(tmp_path), tmp_path / "data"
    assert _convert("--set", "sixray", "--root", root, "--split", "positive", "--out", out) == 0
    assert "skipped 1: object without a <name>" in capsys.readouterr().out
    coco = _coco(out / "annotations" / "positive.json")
    images, anns = _rows(coco)
    assert images == [(1, "P00001.jpg", 100, 80), (2, "P00002.jpg", 60, 40)]
    assert anns == [
        (1, 1, 1, [10.0, 20.0, 40.0, 60.0], 2400.0, 0),
        (2, 1, 2, [0.0, 0.0, 10.0, 10.0], 100.0, 0),
        (3, 2, 6, [4.0, 4.0, 16.0, 26.0], 416.0, 0),
    ]
    assert [(c["name"], c["supercategory"]) for c in coco["categories"]] == [
        ("Gun", "dangerous"),
        ("Knife", "dangerous"),
        ("Wrench", "normal"),
        ("Pliers", "normal"),
        ("Scissors", "dangerous"),
        ("Hammer", "dangerous"),
    ]


def test_sixray_csv_list_adds_negatives_and_leaves_out_unboxed_positives(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    root, out = _sixray(tmp_path), tmp_path / "data"
    assert _convert("--set", "sixray", "--root", root, "--split", "ImageSet/10/train.csv", "--out", out) == 0
    summary = capsys.readouterr().out
    assert "skipped 1: image labelled positive in the list but without a box annotation" in summary
    images, anns = _rows(_coco(out / "annotations" / "train.json"))  # named after the csv
    assert images == [(1, "N0000001.jpg", 30, 20), (2, "P00001.jpg", 100, 80)]
    assert [(a[1], a[2]) for a in anns] == [(2, 1), (2, 2)]


def test_sixray_unknown_class_names_the_xml(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = _sixray(tmp_path)
    bad = _text(
        root / "positive-Annotation" / "Annotation" / "P00002.xml",
        _voc("P00002.jpg", None, [("Axe", 1, 1, 5, 5)]),
    )
    assert _convert("--set", "sixray", "--root", root, "--split", "positive", "--out", tmp_path / "o") == 2
    err = _one_line_error(capsys)
    assert f"{bad}: object 0 ('Axe')" in err and "not in the class map" in err


# ---- PIDray: annotations/xray_{train,test_easy,test_hard,test_hidden}.json, images per split ---
_PIDRAY_CATEGORIES = [
    {"id": i, "name": name, "supercategory": "prohibited"} for i, name in enumerate(_SET_CLASSES["pidray"], 1)
]


def _pidray(root: Path, widths: tuple[int, int, int] = (80, 70, 40)) -> Path:
    pid = root / "pidray"
    for i, (w, h) in enumerate([(80, 60), (70, 50), (40, 40)], start=1):
        _image(pid / "hidden" / f"xray_hidden{i:05d}.png", w, h)
    images = [
        {"id": i, "file_name": f"xray_hidden{i:05d}.png", "width": w, "height": h}
        for i, (w, h) in enumerate(zip(widths, (60, 50, 40), strict=True), start=1)
    ]
    polygon = [[10.5, 20, 40.5, 20, 40.5, 35, 10.5, 35]]
    annotations = [
        {
            "id": 11,
            "image_id": 1,
            "category_id": 7,
            "bbox": [10.5, 20, 30, 15],
            "area": 450,
            "iscrowd": 0,
            "segmentation": polygon,
        },
        {"id": 12, "image_id": 1, "category_id": 12, "bbox": [5, 5, 0, 10], "area": 0, "iscrowd": 0},
        {"id": 13, "image_id": 2, "category_id": 10, "bbox": [1, 2, 3, 4], "area": 12, "iscrowd": 0},
    ]  # image 3 has none: an image without objects
    body = {"images": images, "annotations": annotations, "categories": _PIDRAY_CATEGORIES}
    _text(pid / "annotations" / "xray_test_hidden.json", json.dumps(body))
    return pid


def test_pidray_hidden_split_from_its_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root, out = _pidray(tmp_path), tmp_path / "data"
    assert _convert("--set", "pidray", "--root", root, "--split", "hidden", "--out", out) == 0
    assert "skipped 1: box with no area" in capsys.readouterr().out
    coco = _coco(out / "annotations" / "hidden.json")
    images, anns = _rows(coco)
    assert images == [
        (1, "xray_hidden00001.png", 80, 60),
        (2, "xray_hidden00002.png", 70, 50),
        (3, "xray_hidden00003.png", 40, 40),
    ]
    assert anns == [(1, 1, 7, [10.5, 20.0, 30.0, 15.0], 450.0, 0), (2, 2, 10, [1.0, 2.0, 3.0, 4.0], 12.0, 0)]
    categories = {c["id"]: (c["name"], c["supercategory"]) for c in coco["categories"]}
    assert categories[7] == ("Gun", "dangerous") and categories[10] == ("HandCuffs", "normal")
    assert (out / "images" / "hidden").resolve() == (root / "hidden").resolve()


def test_pidray_unknown_category_names_json_and_annotation(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    root = _pidray(tmp_path)
    ann_path = root / "annotations" / "xray_test_hidden.json"
    body = _coco(ann_path)
    body["categories"].append({"id": 13, "name": "Axe", "supercategory": "prohibited"})
    body["annotations"][2]["category_id"] = 13
    ann_path.write_text(json.dumps(body))
    assert _convert("--set", "pidray", "--root", root, "--split", "hidden", "--out", tmp_path / "o") == 2
    err = _one_line_error(capsys)
    assert f"{ann_path}: annotation id 13: class name 'Axe'" in err


def test_pidray_size_that_disagrees_with_the_image_fails_validation(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    root, out = _pidray(tmp_path, widths=(100, 70, 40)), tmp_path / "data"  # the png is 80 wide
    assert _convert("--set", "pidray", "--root", root, "--split", "hidden", "--out", out) == 2
    captured = capsys.readouterr()
    assert "size_mismatch: 1" in captured.out
    err = captured.err
    assert (
        err.count("\n") == 1
        and f"{out / 'annotations' / 'hidden.json'} was written but fails validation" in err
    )


def test_pidray_unknown_split_lists_the_splits(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert (
        _convert("--set", "pidray", "--root", _pidray(tmp_path), "--split", "val", "--out", tmp_path / "o")
        == 2
    )
    assert "PIDray's splits are ['train', 'easy', 'hard', 'hidden'], not 'val'" in _one_line_error(capsys)


# ---- CLCXray: annotations/instances_{split}2017.json, images in {split}2017/ ------------------
def test_clcxray_train_split_to_a_json_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    clc = tmp_path / "CLCXray"
    _image(clc / "train2017" / "000001.jpg", 90, 70)
    _image(clc / "train2017" / "000002.jpg", 90, 70)
    names = _SET_CLASSES["clcxray"]  # the official spelling and order (the authors' CLASSES)
    body = {
        "images": [
            {"id": 7, "file_name": "000002.jpg", "width": 90, "height": 70},
            {"id": 3, "file_name": "000001.jpg", "width": 90, "height": 70},
        ],
        "annotations": [
            {"id": 1, "image_id": 3, "category_id": 5, "bbox": [1, 1, 10, 10], "area": 100, "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 12, "bbox": [20, 30, 40, 20], "area": 800, "iscrowd": 1},
        ],
        "categories": [{"id": i, "name": n} for i, n in enumerate(names, start=1)],
    }
    _text(clc / "annotations" / "instances_train2017.json", json.dumps(body))
    out = tmp_path / "clcxray_train.json"
    assert _convert("--set", "clcxray", "--root", clc, "--split", "train", "--out", out) == 0
    assert f"(images: {clc / 'train2017'})" in capsys.readouterr().out

    coco = _coco(out)
    images, anns = _rows(coco)
    assert images == [(1, "000001.jpg", 90, 70), (2, "000002.jpg", 90, 70)]  # renumbered by file name
    assert anns == [
        (1, 1, 5, [1.0, 1.0, 10.0, 10.0], 100.0, 0),
        (2, 2, 12, [20.0, 30.0, 40.0, 20.0], 800.0, 1),
    ]
    assert [(c["name"], c["supercategory"]) for c in coco["categories"]][4:6] == [
        ("SwissArmyKnife", "dangerous"),
        ("PlasticBottle", "normal"),
    ]


def test_clcxray_missing_json_lists_the_json_files_there(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    clc = tmp_path / "CLCXray"
    _text(clc / "annotations" / "instances_train2017.json", "{}")
    assert _convert("--set", "clcxray", "--root", clc, "--split", "val", "--out", tmp_path / "o") == 2
    err = _one_line_error(capsys)
    assert f"{clc / 'annotations' / 'instances_val2017.json'} does not exist" in err
    assert "['instances_train2017.json']" in err


def test_malformed_coco_json_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    clc = tmp_path / "CLCXray"
    bad = _text(clc / "annotations" / "instances_train2017.json", '{"images": [')
    (clc / "train2017").mkdir()
    assert _convert("--set", "clcxray", "--root", clc, "--split", "train", "--out", tmp_path / "o") == 2
    assert f"{bad}: malformed json" in _one_line_error(capsys)


# ---- class maps ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(PUBLIC_SETS))
def test_default_class_map_lists_the_sets_classes_with_dfss_supercategories(name: str) -> None:
    class_map = default_class_map(name)
    assert list(class_map.names) == _SET_CLASSES[name]
    assert set(class_map.supercategories) <= {"dangerous", "normal"}
    table = ClassTable.from_categories(class_map.categories())
    assert table.num_classes == len(_SET_CLASSES[name]) and not table.unknown


def test_public_classes_writes_a_map_that_classes_reads_back_edited(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    mine = tmp_path / "my_opixray.yaml"
    assert main(["public-classes", "--set", "opixray", "--out", str(mine)]) == 0
    assert load_class_map(mine).categories() == default_class_map("opixray").categories()
    mine.write_text(mine.read_text().replace("Scissor: dangerous", "Scissor: normal"))
    root, out = _opixray(tmp_path), tmp_path / "data"
    assert (
        _convert("--set", "opixray", "--root", root, "--split", "train", "--classes", mine, "--out", out) == 0
    )
    categories = _coco(out / "annotations" / "train.json")["categories"]
    assert categories[2] == {"id": 3, "name": "Scissor", "supercategory": "normal"}


def test_names_match_ignoring_case_spaces_underscores_and_hyphens(tmp_path: Path) -> None:
    lookup = class_lookup(default_class_map("clcxray"))
    assert lookup["swissarmyknife"] == "SwissArmyKnife"
    clc = tmp_path / "CLCXray"
    _image(clc / "test2017" / "a.jpg", 20, 20)
    body = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 20, "height": 20}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]}],
        "categories": [{"id": 1, "name": "Swiss army-knife"}],
    }
    _text(clc / "annotations" / "instances_test2017.json", json.dumps(body))
    split = read_public("clcxray", clc, "test", default_class_map("clcxray"))
    assert [b.category for b in split.conversion.images[0].boxes] == ["SwissArmyKnife"]


def test_class_map_names_that_collide_once_normalised_are_an_error() -> None:
    class_map = parse_class_map(
        "classes:\n  Straight_Knife: dangerous\n  straight knife: normal\n", source="m.yaml"
    )
    with pytest.raises(
        DataError, match=r"m\.yaml: class names 'Straight_Knife' and 'straight knife' are the same"
    ):
        class_lookup(class_map)


def test_out_images_link_to_another_folder_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root, out = _opixray(tmp_path), tmp_path / "data"
    (out / "images").mkdir(parents=True)
    (out / "images" / "train").symlink_to(tmp_path, target_is_directory=True)
    assert _convert("--set", "opixray", "--root", root, "--split", "train", "--out", out) == 2
    assert f"{out / 'images' / 'train'} already links to {tmp_path.resolve()}" in _one_line_error(capsys)
