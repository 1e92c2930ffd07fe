"""dfss.convert: VOC / YOLO <-> COCO converters, the class map and the dfss-convert CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from PIL import Image
from pycocotools.coco import COCO

from dfss.convert.classmap import ClassMap, load_class_map, parse_class_map
from dfss.convert.cli import main
from dfss.convert.coco_io import build_coco, format_summary, read_coco, write_coco
from dfss.convert.voc import read_voc, write_voc
from dfss.convert.yolo import read_yolo, without_crowd, write_yolo
from dfss.data.classes import ClassTable
from dfss.data.errors import DataError
from tests.helpers.data import TRAIN_SPECS, write_split

CLASSMAP_YAML = """classes:
  knife: dangerous
  gun: dangerous
  phone: normal
  unknown: unknown
"""


# ---- fixtures and helpers ----------------------------------------------------------------------
@pytest.fixture
def classmap_path(tmp_path: Path) -> Path:
    path = tmp_path / "classmap.yaml"
    path.write_text(CLASSMAP_YAML)
    return path


@pytest.fixture
def class_map(classmap_path: Path) -> ClassMap:
    return load_class_map(classmap_path)


def _image(path: Path, width: int, height: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), (200, 200, 200)).save(path)
    return path


def _voc_xml(filename: str, size: tuple[int, int] | None, objects: list[tuple]) -> str:
    """objects: (name, xmin, ymin, xmax, ymax, difficult)."""
    size_xml = (
        ""
        if size is None
        else f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>"
    )
    objs = "".join(
        f"<object><name>{n}</name><difficult>{d}</difficult>"
        f"<bndbox><xmin>{a}</xmin><ymin>{b}</ymin><xmax>{c}</xmax><ymax>{e}</ymax></bndbox></object>"
        for n, a, b, c, e, d in objects
    )
    return f"<annotation><folder>VOC</folder><filename>{filename}</filename>{size_xml}{objs}</annotation>"


def _voc_set(root: Path, files: dict[str, tuple[tuple[int, int], list[tuple]]]) -> tuple[Path, Path]:
    """A VOC folder: {image name: ((w, h), objects)} -> (xml_dir, image_dir)."""
    xml_dir, image_dir = root / "Annotations", root / "JPEGImages"
    xml_dir.mkdir(parents=True, exist_ok=True)
    for name, (size, objects) in files.items():
        _image(image_dir / name, *size)
        (xml_dir / f"{Path(name).stem}.xml").write_text(_voc_xml(name, size, objects))
    return xml_dir, image_dir


def _raw_voc_objects(xml_dir: Path) -> dict[str, list[tuple]]:
    """Parse VOC files with ElementTree directly (independent of the reader under test)."""
    out = {}
    for path in sorted(xml_dir.rglob("*.xml")):
        root = ET.parse(path).getroot()
        objects = []
        for obj in root.findall("object"):
            box = obj.find("bndbox")
            coords = tuple(int(box.findtext(t)) for t in ("xmin", "ymin", "xmax", "ymax"))
            objects.append((obj.findtext("name"), *coords, int(obj.findtext("difficult"))))
        out[root.findtext("filename")] = sorted(objects)
    return out


def _yolo_lines(path: Path) -> list[tuple[int, float, float, float, float]]:
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    return [(int(r[0]), *(float(v) for v in r[1:])) for r in rows]


# ---- class map ---------------------------------------------------------------------------------
def test_class_map_order_gives_coco_ids_and_supercategories(class_map: ClassMap) -> None:
    assert class_map.categories() == [
        {"id": 1, "name": "knife", "supercategory": "dangerous"},
        {"id": 2, "name": "gun", "supercategory": "dangerous"},
        {"id": 3, "name": "phone", "supercategory": "normal"},
        {"id": 4, "name": "unknown", "supercategory": "unknown"},
    ]
    assert parse_class_map(class_map.to_yaml()).categories() == class_map.categories()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("classes:\n  knife: dangerous\n  knife: normal\n", "duplicate key 'knife'"),
        ("classes:\n  knife: dangerous\n  gun:\n", "class 'gun' has supercategory None"),
        ("classes:\n  knife: ''\n", "class 'knife' has supercategory ''"),
        ("classes:\n  1: dangerous\n", "class name 1 is a int"),
        ("classes: [knife, gun]\n", "'classes' must be a mapping"),
        ("knife: dangerous\n", "needs a top-level 'classes'"),
        ("classes: {}\n", "the class map is empty"),
        ("classes:\n  knife: [dangerous\n", "invalid class map yaml"),
    ],
)
def test_bad_class_map_is_an_error_naming_the_yaml(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "bad_map.yaml"
    path.write_text(text)
    with pytest.raises(DataError) as err:
        load_class_map(path)
    assert str(path) in str(err.value)
    assert fragment in str(err.value)


# ---- VOC -> COCO -------------------------------------------------------------------------------
def test_voc_box_converts_to_documented_coco_coordinates(tmp_path: Path, class_map: ClassMap) -> None:
    # VOC pixels 11..50 (x) and 21..80 (y), 1-based inclusive -> COCO x1=10, y1=20, w=40, h=60
    xml_dir, image_dir = _voc_set(tmp_path, {"a.png": ((100, 90), [("gun", 11, 21, 50, 80, 0)])})
    coco = build_coco(read_voc(xml_dir, image_dir, class_map).images, class_map, description="t")
    assert coco["images"] == [{"id": 1, "file_name": "a.png", "width": 100, "height": 90}]
    [ann] = coco["annotations"]
    assert ann["bbox"] == [10.0, 20.0, 40.0, 60.0]
    assert ann["area"] == 2400.0
    assert ann["category_id"] == 2 and ann["iscrowd"] == 0 and ann["id"] == 1


def test_voc_missing_size_is_read_from_the_image_header(tmp_path: Path, class_map: ClassMap) -> None:
    xml_dir, image_dir = tmp_path / "ann", tmp_path / "img"
    xml_dir.mkdir()
    _image(image_dir / "x.png", 64, 48)
    (xml_dir / "x.xml").write_text(_voc_xml("x.png", None, [("knife", 1, 1, 10, 10, 0)]))
    [record] = read_voc(xml_dir, image_dir, class_map).images
    assert (record.width, record.height) == (64, 48)


@pytest.mark.parametrize(
    ("policy", "iscrowd", "skipped"), [("crowd", [0, 1], 0), ("keep", [0, 0], 0), ("drop", [0], 1)]
)
def test_voc_difficult_policies(
    tmp_path: Path, class_map: ClassMap, policy: str, iscrowd: list[int], skipped: int
) -> None:
    objects = [("knife", 1, 1, 10, 10, 0), ("gun", 5, 5, 20, 20, 1)]
    xml_dir, image_dir = _voc_set(tmp_path, {"a.png": ((32, 32), objects)})
    conversion = read_voc(xml_dir, image_dir, class_map, difficult=policy)
    coco = build_coco(conversion.images, class_map, description="t")
    assert [a["iscrowd"] for a in coco["annotations"]] == iscrowd
    assert sum(n for _, n in conversion.skipped) == skipped


def test_voc_unknown_class_name_is_an_error_naming_file_and_name(tmp_path: Path, class_map: ClassMap) -> None:
    xml_dir, image_dir = _voc_set(
        tmp_path, {"a.png": ((32, 32), [("knife", 1, 1, 9, 9, 0), ("Hammer", 2, 2, 8, 8, 0)])}
    )
    with pytest.raises(DataError) as err:
        read_voc(xml_dir, image_dir, class_map)
    assert str(xml_dir / "a.xml") in str(err.value) and "'Hammer'" in str(err.value)


def test_voc_unknown_names_skip_counts_the_skipped_objects(tmp_path: Path, class_map: ClassMap) -> None:
    xml_dir, image_dir = _voc_set(
        tmp_path,
        {
            "a.png": ((32, 32), [("knife", 1, 1, 9, 9, 0), ("Hammer", 2, 2, 8, 8, 0)]),
            "b.png": ((32, 32), [("Hammer", 3, 3, 8, 8, 0)]),
        },
    )
    conversion = read_voc(xml_dir, image_dir, class_map, unknown_names="skip")
    assert conversion.skipped == (("object named 'Hammer' is not in the class map", 2),)
    assert [b.category for r in conversion.images for b in r.boxes] == ["knife"]
    assert "skipped 2: object named 'Hammer'" in format_summary(conversion, class_map, title="t")


def test_voc_missing_image_names_xml_and_image(tmp_path: Path, class_map: ClassMap) -> None:
    xml_dir, image_dir = tmp_path / "ann", tmp_path / "img"
    xml_dir.mkdir()
    image_dir.mkdir()
    (xml_dir / "a.xml").write_text(_voc_xml("gone.jpg", (10, 10), []))
    with pytest.raises(DataError) as err:
        read_voc(xml_dir, image_dir, class_map)
    assert str(xml_dir / "a.xml") in str(err.value) and str(image_dir / "gone.jpg") in str(err.value)


def test_voc_malformed_xml_names_the_file(tmp_path: Path, class_map: ClassMap) -> None:
    xml_dir, image_dir = _voc_set(tmp_path, {"a.png": ((8, 8), [])})
    (xml_dir / "broken.xml").write_text("<annotation><filename>a.png</filename>")
    with pytest.raises(DataError, match=r"broken\.xml: malformed xml"):
        read_voc(xml_dir, image_dir, class_map)


def test_voc_coco_voc_round_trip_reproduces_boxes_exactly(tmp_path: Path, class_map: ClassMap) -> None:
    files = {
        "b.jpg": ((120, 80), [("knife", 1, 1, 120, 80, 0), ("phone", 33, 7, 61, 45, 1)]),
        "a.png": ((50, 70), [("gun", 10, 12, 10, 30, 0), ("unknown", 2, 3, 40, 69, 0)]),  # 1 px wide gun
        "c.png": ((20, 20), []),
    }
    xml_dir, image_dir = _voc_set(tmp_path / "src", files)
    ann = tmp_path / "ann.json"
    write_coco(ann, build_coco(read_voc(xml_dir, image_dir, class_map).images, class_map, description="t"))
    _, from_json = read_coco(ann)
    assert write_voc(from_json, tmp_path / "out") == 3
    assert _raw_voc_objects(tmp_path / "out") == _raw_voc_objects(xml_dir)
    assert _raw_voc_objects(tmp_path / "out")["c.png"] == []


# ---- YOLO -> COCO ------------------------------------------------------------------------------
def _yolo_set(root: Path) -> tuple[Path, Path, dict[str, str]]:
    """images/{a.png, sub/b.jpg, neg.png} with labels for a and sub/b; returns dirs and label texts."""
    image_dir, label_dir = root / "images", root / "labels"
    _image(image_dir / "a.png", 64, 48)
    _image(image_dir / "sub" / "b.jpg", 100, 50)
    _image(image_dir / "neg.png", 16, 16)
    labels = {
        "a": "0 0.5 0.5 0.25 0.5\n2 0.123456789 0.3 0.1 0.2\n",
        "sub/b": "\n3 0.7 0.61 0.33 0.4\n1 0.25 0.5 0.5 1.0\n",
    }
    for key, text in labels.items():
        (label_dir / key).parent.mkdir(parents=True, exist_ok=True)
        (label_dir / f"{key}.txt").write_text(text)
    return image_dir, label_dir, labels


def test_yolo_to_coco_pixels_negatives_and_relative_names(tmp_path: Path, class_map: ClassMap) -> None:
    image_dir, label_dir, _ = _yolo_set(tmp_path)
    conversion = read_yolo(image_dir, label_dir, class_map)
    coco = build_coco(conversion.images, class_map, description="t")
    assert [(i["id"], i["file_name"], i["width"], i["height"]) for i in coco["images"]] == [
        (1, "a.png", 64, 48),
        (2, "neg.png", 16, 16),
        (3, "sub/b.jpg", 100, 50),
    ]
    first = coco["annotations"][0]  # knife, centre (32, 24), size 16 x 24 on a 64 x 48 image
    assert first["image_id"] == 1 and first["category_id"] == 1
    assert first["bbox"] == pytest.approx([24.0, 12.0, 16.0, 24.0], abs=1e-9)
    assert [a["id"] for a in coco["annotations"]] == [1, 2, 3, 4]
    assert not [a for a in coco["annotations"] if a["image_id"] == 2]
    assert "negatives, without any box: 1" in format_summary(conversion, class_map, title="t")


def test_yolo_coco_yolo_round_trip_within_1e6(tmp_path: Path, class_map: ClassMap) -> None:
    image_dir, label_dir, labels = _yolo_set(tmp_path / "src")
    ann = tmp_path / "ann.json"
    write_coco(ann, build_coco(read_yolo(image_dir, label_dir, class_map).images, class_map, description="t"))
    json_map, from_json = read_coco(ann)
    out = tmp_path / "out_labels"
    assert write_yolo(from_json, json_map, out) == 3
    for key in labels:
        got, want = _yolo_lines(out / f"{key}.txt"), _yolo_lines(label_dir / f"{key}.txt")
        assert [g[0] for g in got] == [w[0] for w in want]
        assert [g[1:] for g in got] == [pytest.approx(w[1:], abs=1e-6) for w in want]
    assert (out / "neg.txt").read_text() == ""


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("0 0.5 0.5 0.2", "expected 5 fields"),
        ("0 0.5 half 0.2 0.2", "not all numbers"),
        ("x 0.5 0.5 0.2 0.2", "not an integer"),
        ("4 0.5 0.5 0.2 0.2", "class index 4 is out of range"),
        ("0 0.5 0.5 20 0.2", "normalised to [0, 1]"),
    ],
)
def test_bad_yolo_line_names_file_and_line(
    tmp_path: Path, class_map: ClassMap, line: str, fragment: str
) -> None:
    image_dir, label_dir = tmp_path / "images", tmp_path / "labels"
    _image(image_dir / "a.png", 10, 10)
    label_dir.mkdir()
    (label_dir / "a.txt").write_text(f"1 0.5 0.5 0.2 0.2\n{line}\n")
    with pytest.raises(DataError) as err:
        read_yolo(image_dir, label_dir, class_map)
    assert f"{label_dir / 'a.txt'} line 2" in str(err.value)
    assert fragment in str(err.value)


def test_yolo_label_without_image_is_an_error(tmp_path: Path, class_map: ClassMap) -> None:
    image_dir, label_dir, _ = _yolo_set(tmp_path)
    (label_dir / "orphan.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    with pytest.raises(DataError, match=r"orphan\.txt: label file has no image"):
        read_yolo(image_dir, label_dir, class_map)


def test_coco_to_yolo_drops_crowd_and_counts_it(class_map: ClassMap) -> None:
    from dfss.convert.coco_io import Box, Conversion, ImageRecord

    record = ImageRecord("a.png", 10, 10, (Box("knife", 0, 0, 5, 5), Box("gun", 1, 1, 4, 4, iscrowd=True)))
    dropped = without_crowd(Conversion((record,)))
    assert [b.category for b in dropped.images[0].boxes] == ["knife"]
    assert dropped.skipped == (("iscrowd box of 'gun' (YOLO has no ignore regions)", 1),)


def test_build_coco_numbers_images_in_file_name_order_and_rejects_duplicates(class_map: ClassMap) -> None:
    from dfss.convert.coco_io import Box, ImageRecord

    records = [
        ImageRecord("z.png", 10, 10, (Box("gun", 0, 0, 2, 2),)),
        ImageRecord("a.png", 10, 10, (Box("knife", 1, 1, 3, 4),)),
    ]
    coco = build_coco(records, class_map, description="t")
    assert [(i["id"], i["file_name"]) for i in coco["images"]] == [(1, "a.png"), (2, "z.png")]
    assert [(a["id"], a["image_id"], a["category_id"]) for a in coco["annotations"]] == [(1, 1, 1), (2, 2, 2)]
    with pytest.raises(DataError, match="duplicate image file names"):
        build_coco([*records, records[0]], class_map, description="t")


def test_read_coco_orders_classes_by_ascending_category_id(tmp_path: Path) -> None:
    ann = tmp_path / "sparse.json"
    categories = [
        {"id": 7, "name": "phone", "supercategory": "normal"},
        {"id": 3, "name": "gun", "supercategory": "dangerous"},
    ]
    image = {"id": 1, "file_name": "a.png", "width": 10, "height": 10}
    box = {"id": 1, "image_id": 1, "category_id": 7, "bbox": [1, 2, 3, 4], "iscrowd": 0}
    ann.write_text(json.dumps({"images": [image], "annotations": [box], "categories": categories}))
    class_map, conversion = read_coco(ann)
    assert class_map.names == ("gun", "phone")
    write_yolo(conversion, class_map, tmp_path / "labels")
    assert _yolo_lines(tmp_path / "labels" / "a.txt") == [(1, 0.25, 0.4, 0.3, 0.4)]


# ---- output json and CLI -----------------------------------------------------------------------
def test_cli_voc2coco_output_loads_in_pycocotools_and_class_table(
    tmp_path: Path, classmap_path: Path, capsys: pytest.CaptureFixture
) -> None:
    xml_dir, image_dir = _voc_set(
        tmp_path,
        {
            "a.png": ((40, 30), [("knife", 1, 1, 10, 10, 0), ("phone", 5, 5, 20, 20, 1)]),
            "b.png": ((8, 8), []),
        },
    )
    out = tmp_path / "out" / "ann.json"
    argv = ["voc2coco", "--xml-dir", str(xml_dir), "--image-dir", str(image_dir)]
    assert main([*argv, "--classes", str(classmap_path), "--out", str(out)]) == 0
    assert "images: 2 (negatives, without any box: 1)" in capsys.readouterr().out
    assert not [p for p in out.parent.iterdir() if p.name != "ann.json"]  # no temp file left behind

    coco = COCO(str(out))
    assert sorted(coco.getImgIds()) == [1, 2]
    assert [a["iscrowd"] for a in coco.loadAnns(coco.getAnnIds(imgIds=[1]))] == [0, 1]
    table = ClassTable.from_categories(json.loads(out.read_text())["categories"], source=str(out))
    assert table.names == ["knife", "gun", "phone"]
    assert [c.supercategory for c in table.known] == ["dangerous", "dangerous", "normal"]
    assert [c.name for c in table.unknown] == ["unknown"]


def test_cli_yolo2coco_then_coco2yolo_and_coco2voc(tmp_path: Path, classmap_path: Path) -> None:
    image_dir, label_dir, _ = _yolo_set(tmp_path)
    ann = tmp_path / "ann.json"
    argv = ["yolo2coco", "--image-dir", str(image_dir), "--label-dir", str(label_dir)]
    assert main([*argv, "--classes", str(classmap_path), "--out", str(ann)]) == 0
    assert len(json.loads(ann.read_text())["annotations"]) == 4

    out_labels, out_map = tmp_path / "yolo_out", tmp_path / "map_out.yaml"
    assert (
        main(["coco2yolo", "--ann", str(ann), "--label-dir", str(out_labels), "--classes-out", str(out_map)])
        == 0
    )
    assert load_class_map(out_map).categories() == load_class_map(classmap_path).categories()
    assert [r[0] for r in _yolo_lines(out_labels / "sub" / "b.txt")] == [3, 1]

    assert main(["coco2voc", "--ann", str(ann), "--xml-dir", str(tmp_path / "voc")]) == 0
    voc = _raw_voc_objects(tmp_path / "voc")
    assert sorted(voc) == ["a.png", "neg.png", "sub/b.jpg"]
    assert ("knife", 25, 13, 40, 36, 0) in voc["a.png"]  # COCO [24, 12, 16, 24] -> VOC 1-based inclusive


def test_cli_bad_input_exits_2_with_one_line_naming_the_file(
    tmp_path: Path, classmap_path: Path, capsys: pytest.CaptureFixture
) -> None:
    image_dir, label_dir, _ = _yolo_set(tmp_path)
    (label_dir / "a.txt").write_text("0 0.5 0.5 0.1\n")
    out = tmp_path / "ann.json"
    argv = ["yolo2coco", "--image-dir", str(image_dir), "--label-dir", str(label_dir)]
    assert main([*argv, "--classes", str(classmap_path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"{label_dir / 'a.txt'} line 1" in err
    assert not out.exists()


def test_cli_output_into_a_closed_pipe_is_no_traceback(tmp_path: Path) -> None:
    """``dfss-convert ... | head``: the reader may leave before the summary is printed."""
    ann = write_split(tmp_path / "set", "train", TRAIN_SPECS)
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before dfss-convert writes a byte
    args = ["coco2yolo", "--ann", str(ann), "--label-dir", str(tmp_path / "labels")]
    done = subprocess.run(
        [sys.executable, "-m", "dfss.convert.cli", *args, "--classes-out", str(tmp_path / "c.yaml")],
        stdout=write_end,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1])),
    )
    os.close(write_end)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert (tmp_path / "c.yaml").is_file()  # the conversion itself was done
