"""Tests of the synthetic dual-energy X-ray generator (tiny images, a few seconds in all)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO

from dfss.data.classes import ClassTable
from dfss.synth import cli
from dfss.synth.catalog import BUILDERS, load_categories
from dfss.synth.config import SPLITS, SynthConfig, load_preset
from dfss.synth.geometry import Part, rect
from dfss.synth.materials import Material
from dfss.synth.raster import add_patch, rasterise
from dfss.synth.render import LOW_WEIGHT, colourise, display_transmission, transmissions
from dfss.synth.scene import compose_scene
from dfss.synth.writer import generate

TINY = SynthConfig(
    seed=5,
    image_size=96,
    num_train=4,
    num_val=2,
    num_test=4,
    objects_per_image=(2, 4),
    unknown_per_test_image=(1, 2),
    clutter=0.5,
)


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "set"
    generate(TINY, out, workers=1)
    return out


def test_layout_and_coco(tiny_set: Path) -> None:
    assert (tiny_set / "synth.yaml").is_file()
    category_lists = []
    for split in SPLITS:
        coco = COCO(str(tiny_set / "annotations" / f"{split}.json"))
        images = coco.loadImgs(coco.getImgIds())
        assert [img["id"] for img in images] == list(range(1, TINY.num_images(split) + 1))
        for img in images:
            assert (tiny_set / "images" / split / img["file_name"]).is_file()
            assert img["file_name"] == f"{img['id']:06d}.jpg"
        ann_ids = coco.getAnnIds()
        assert ann_ids == list(range(1, len(ann_ids) + 1))
        category_lists.append(coco.dataset["categories"])
    assert category_lists[0] == category_lists[1] == category_lists[2]
    assert [c["id"] for c in category_lists[0]] == list(range(1, 22))
    table = ClassTable.from_categories(category_lists[0])
    assert sum(table.is_dangerous(c) for c in table.known) == 8
    assert sum(not table.is_dangerous(c) for c in table.known) == 12
    assert [c.name for c in table.unknown] == ["unknown"]


def test_unknown_only_in_test_and_boxes_inside(tiny_set: Path) -> None:
    for split in SPLITS:
        doc = json.loads((tiny_set / "annotations" / f"{split}.json").read_text())
        unknown_id = next(c["id"] for c in doc["categories"] if c["supercategory"] == "unknown")
        unknown_count = sum(a["category_id"] == unknown_id for a in doc["annotations"])
        assert (unknown_count > 0) if split == "test" else (unknown_count == 0)
        assert doc["annotations"], f"{split} has no objects"
        for ann in doc["annotations"]:
            x, y, w, h = ann["bbox"]
            assert x >= 0 and y >= 0 and w >= 1 and h >= 1
            assert x + w <= TINY.image_size and y + h <= TINY.image_size
            assert 0 < ann["area"] <= w * h and ann["iscrowd"] == 0


def test_same_seed_identical_other_seed_differs_any_worker_count(tiny_set: Path, tmp_path: Path) -> None:
    generate(TINY, tmp_path / "again", workers=2)
    assert _digest(tmp_path / "again") == _digest(tiny_set)
    small = dataclasses.replace(TINY, num_train=1, num_val=0, num_test=0)
    generate(small, tmp_path / "a", workers=1)
    generate(dataclasses.replace(small, seed=6), tmp_path / "b", workers=1)
    assert (tmp_path / "a/images/train/000001.jpg").read_bytes() != (
        tmp_path / "b/images/train/000001.jpg"
    ).read_bytes()


def test_boxes_are_tight_to_rendered_pixels() -> None:
    rng = np.random.default_rng(0)
    config = dataclasses.replace(TINY, image_size=128, clutter=0.0)
    for name, builder in BUILDERS.items():
        patch = rasterise(
            builder(rng), angle_deg=float(rng.uniform(0, 360)), px_per_cm=config.px_per_cm, mirror=False
        )
        assert patch is not None, name
        mask = patch.mask
        assert mask[0].any() and mask[-1].any() and mask[:, 0].any() and mask[:, -1].any(), name
        assert patch.area == int((patch.att_high > 0).sum())
    # In a composed scene every box lies fully inside the image.
    scene = compose_scene(config, load_categories(), include_unknown=True, rng=np.random.default_rng(3))
    assert scene.objects
    for obj in scene.objects:
        x, y, w, h = (int(v) for v in obj.bbox_xywh)
        assert x >= 0 and x + w <= 128 and y >= 0 and y + h <= 128


def test_overlap_is_darker_and_composes_multiplicatively() -> None:
    size = 64
    low, high = np.zeros((size, size), np.float32), np.zeros((size, size), np.float32)
    plate = rasterise(
        [Part(Material.ALUMINIUM, 0.5, rect(4.0, 2.0))], angle_deg=0, px_per_cm=10.0, mirror=False
    )
    add_patch(low, high, plate, 2, 2)  # covers x 2..42, y 2..22
    add_patch(low, high, plate, 20, 12)  # covers x 20..60, y 12..32: overlap x 20..42, y 12..22
    trans_low, trans_high = transmissions(low, high, photons_per_pixel=1e12, rng=np.random.default_rng(0))
    brightness = display_transmission(trans_low, trans_high)
    only_a, only_b, both = brightness[6, 8], brightness[28, 50], brightness[17, 30]
    assert both < only_a and both < only_b
    # Beer–Lambert: attenuations add, so transmissions multiply (up to the 0.3 % detector gain spread).
    assert low[17, 30] == pytest.approx(low[6, 8] + low[28, 50], rel=1e-6)
    assert high[17, 30] == pytest.approx(high[6, 8] + high[28, 50], rel=1e-6)
    assert both == pytest.approx(only_a * only_b, rel=0.02)
    assert only_a == pytest.approx(np.exp(-0.5 * (0.25 * 0.750 + 0.75 * 0.460)), rel=0.02)


def test_metal_is_bluer_than_organic_at_equal_transmission() -> None:
    target = 0.5

    def pixel(material: Material) -> np.ndarray:
        mu = LOW_WEIGHT * material.mu_low + (1 - LOW_WEIGHT) * material.mu_high
        thickness = -np.log(target) / mu
        t_low = np.full((4, 4), np.exp(-material.mu_low * thickness), np.float32)
        t_high = np.full((4, 4), np.exp(-material.mu_high * thickness), np.float32)
        assert display_transmission(t_low, t_high)[0, 0] == pytest.approx(target, rel=1e-4)
        return colourise(t_low, t_high)[0, 0].astype(int)

    steel, water, aluminium = pixel(Material.STEEL), pixel(Material.ORGANIC), pixel(Material.ALUMINIUM)
    assert steel[2] - steel[0] > 60 and water[0] - water[2] > 60  # blue vs orange
    assert aluminium[1] > aluminium[0] and aluminium[1] > aluminium[2]  # green
    assert abs(int(steel.sum()) - int(water.sum())) < 200  # similar brightness, different hue


def test_presets_load() -> None:
    small, benchmark = load_preset("small"), load_preset("benchmark")
    assert (small.image_size, small.num_train, small.num_val, small.num_test) == (256, 240, 60, 80)
    assert small.objects_per_image == (2, 5)
    assert (benchmark.image_size, benchmark.num_train, benchmark.num_val, benchmark.num_test) == (
        640,
        4000,
        500,
        1000,
    )
    with pytest.raises(ValueError):
        dataclasses.replace(small, max_overlap_iou=1.5)


def test_placement_respects_max_overlap() -> None:
    config = dataclasses.replace(
        TINY, image_size=192, objects_per_image=(6, 6), max_overlap_iou=0.0, clutter=0.0
    )
    scene = compose_scene(config, load_categories(), include_unknown=False, rng=np.random.default_rng(1))
    boxes = [o.bbox_xywh for o in scene.objects]
    assert len(boxes) >= 2
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            overlap_x = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
            overlap_y = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
            assert overlap_x <= 0 or overlap_y <= 0


def test_cli_refuses_to_overwrite_without_force(tmp_path: Path, capsys) -> None:
    args = [
        "--preset",
        "small",
        "--out",
        str(tmp_path / "s"),
        "--image-size",
        "64",
        "--num-train",
        "1",
        "--num-val",
        "1",
        "--num-test",
        "1",
    ]
    assert cli.main(args) == 0
    marker = tmp_path / "s/annotations/test.json"
    first = marker.read_bytes()
    assert cli.main(args) == 1
    assert "--force" in capsys.readouterr().err
    assert cli.main([*args, "--force", "--seed", "9"]) == 0
    assert marker.read_bytes() != first
