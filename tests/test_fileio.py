"""Files DFSS writes follow the umask, as files made by ``open()`` do (0644 under umask 022); paths it
shows are relative to the working directory when they lie under it."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dfss.fileio import shown_path, write_json_atomic, write_text_atomic
from tests.helpers.data import CATEGORIES, TRAIN_SPECS, write_split

ROOT = Path(__file__).parents[1]


@pytest.fixture(params=[0o022, 0o027])
def umask(request) -> Iterator[int]:
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_writes_get_the_umasks_permissions_not_mkstemps_0600(umask, tmp_path):
    write_text_atomic(tmp_path / "a.txt", "x")
    write_json_atomic(tmp_path / "b.json", {"x": 1})
    plain = tmp_path / "c.txt"
    plain.write_text("x")
    expected = 0o666 & ~umask  # 0o644 under 022, 0o640 under 027
    assert mode(tmp_path / "a.txt") == mode(tmp_path / "b.json") == mode(plain) == expected


def test_the_synthetic_generator_and_the_converter_write_readable_files(umask, tmp_path):
    from dfss.synth.config import SynthConfig
    from dfss.synth.writer import generate

    generate(
        SynthConfig(image_size=64, num_train=1, num_val=1, num_test=1, objects_per_image=(1, 1)), tmp_path
    )
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".json" for p in written) and any(p.suffix in (".jpg", ".png") for p in written)
    assert {mode(p) for p in written} == {0o666 & ~umask}, {
        str(p.relative_to(tmp_path)): oct(mode(p)) for p in written
    }

    # dfss-convert coco2yolo then yolo2coco: label files, the class map and the json
    ann = write_split(tmp_path / "set", "train", TRAIN_SPECS, categories=CATEGORIES)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    run = [sys.executable, "-m", "dfss.convert.cli"]
    labels, classes, out = tmp_path / "labels", tmp_path / "classmap.yaml", tmp_path / "back.json"
    images = tmp_path / "set" / "images" / "train"
    to_yolo = ["coco2yolo", "--ann", str(ann), "--label-dir", str(labels), "--classes-out", str(classes)]
    to_coco = ["yolo2coco", "--image-dir", str(images), "--label-dir", str(labels), "--classes", str(classes)]
    for args in (to_yolo, [*to_coco, "--out", str(out)]):
        subprocess.run([*run, *args], check=True, env=env, capture_output=True)
    converted = [out, classes, *labels.rglob("*.txt")]
    assert {mode(p) for p in converted} == {0o666 & ~umask}


def test_shown_path_is_relative_under_the_working_directory_and_unchanged_outside(tmp_path, monkeypatch):
    inside = tmp_path / "work" / "results" / "teacher_s1" / "weights.pt"
    inside.parent.mkdir(parents=True)
    outside = tmp_path / "elsewhere" / "weights.pt"
    monkeypatch.chdir(tmp_path / "work")
    assert shown_path(inside) == str(Path("results") / "teacher_s1" / "weights.pt")
    assert shown_path(str(inside)) == str(Path("results") / "teacher_s1" / "weights.pt")
    assert shown_path(outside) == str(outside)
