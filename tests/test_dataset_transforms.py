import json

import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from dfss.data.batch import DetectionBatch, collate_detection
from dfss.data.classes import ClassTable
from dfss.data.coco import CocoDetection
from dfss.data.mosaic import MosaicMixup
from dfss.data.transforms import (
    Letterbox,
    RandomScaleLetterbox,
    build_eval_transforms,
    build_train_transforms,
    letterbox_to_original,
)
from tests.helpers.data import PALETTE


def _dataset(root, split="train", transforms=None):
    data = json.loads((root / "annotations" / f"{split}.json").read_text())
    table = ClassTable.from_categories(data["categories"])
    return CocoDetection(data, root / "images" / split, table, transforms)


def _assert_boxes_hold_their_colour(image, boxes, tolerance=40.0):
    """Each box k must still frame the patch painted PALETTE[k] (checked on its inner 60%)."""
    for k, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
        w, h = x2 - x1, y2 - y1
        xa, xb = int(x1 + 0.2 * w + 0.5), int(x2 - 0.2 * w)
        ya, yb = int(y1 + 0.2 * h + 0.5), int(y2 - 0.2 * h)
        if xb <= xa or yb <= ya:
            continue
        mean = image[:, ya:yb, xa:xb].float().mean(dim=(1, 2))
        expected = torch.tensor(PALETTE[k], dtype=torch.float32)
        assert torch.allclose(mean, expected, atol=tolerance), (k, mean.tolist(), PALETTE[k])


def test_dataset_yields_xyxy_pixels_contiguous_labels_and_coco_ids(tiny_xray):
    ds = _dataset(tiny_xray)
    assert len(ds) == 6
    image, target = ds[0]
    assert isinstance(image, tv_tensors.Image) and image.dtype == torch.uint8 and image.shape == (3, 64, 96)
    assert target["boxes"].tolist() == [[8, 8, 28, 20], [50, 30, 80, 50]]
    assert target["labels"].tolist() == [0, 1]  # knife (id 3) -> 0, phone (id 7) -> 1
    assert target["category_ids"].tolist() == [3, 7]
    assert target["image_id"] == 1 and target["orig_size"].tolist() == [64, 96]
    _assert_boxes_hold_their_colour(image, target["boxes"], tolerance=1)


def test_negatives_are_kept_and_crowd_boxes_stay_out_of_training_targets(tiny_xray):
    ds = _dataset(tiny_xray)
    _, negative = ds[2]
    assert negative["boxes"].shape == (0, 4) and negative["labels"].shape == (0,)
    _, with_crowd = ds[3]
    assert with_crowd["category_ids"].tolist() == [7]  # the iscrowd knife is not a training target
    assert len(ds.coco.imgToAnns[4]) == 2  # ... but stays in the index for evaluation


def test_unknown_objects_stay_out_of_targets(tiny_xray):
    ds = _dataset(tiny_xray, "test")
    _, target = ds[0]
    assert target["category_ids"].tolist() == [3]
    assert [a["category_id"] for a in ds.coco.imgToAnns[1]] == [3, 20]


def test_letterbox_then_inverse_gives_back_the_original_boxes(tiny_xray):
    ds = _dataset(tiny_xray, transforms=build_eval_transforms(128))
    raw = _dataset(tiny_xray)
    for index in range(len(ds)):
        image, target = ds[index]
        _, original = raw[index]
        assert image.shape == (3, 128, 128)
        restored = letterbox_to_original(target["boxes"].as_subclass(torch.Tensor), target["orig_size"], 128)
        assert torch.allclose(restored, original["boxes"].as_subclass(torch.Tensor), atol=1e-4)
        _assert_boxes_hold_their_colour(image, target["boxes"])


def test_letterbox_pads_right_and_bottom_with_white(tiny_xray):
    image, target = _dataset(tiny_xray, transforms=Letterbox(128))[0]  # 96x64 -> 128x85, padded below
    assert image[:, 86:, :].min() == 255
    assert target["boxes"].canvas_size == (128, 128)


def test_horizontal_flip_twice_is_identity_and_once_mirrors(tiny_xray):
    ds = _dataset(tiny_xray)
    image, target = ds[0]
    flip = v2.RandomHorizontalFlip(p=1.0)
    flipped_image, flipped = flip(image, target)
    x1, y1, x2, y2 = target["boxes"][0].tolist()
    assert flipped["boxes"][0].tolist() == [96 - x2, y1, 96 - x1, y2]
    _assert_boxes_hold_their_colour(flipped_image, flipped["boxes"], tolerance=1)
    back_image, back = flip(flipped_image, flipped)
    assert torch.equal(back_image, image) and torch.equal(back["boxes"], target["boxes"])


@pytest.mark.parametrize("seed", range(6))
def test_scale_jitter_keeps_boxes_on_their_content(tiny_xray, seed):
    torch.manual_seed(seed)
    transforms = v2.Compose([RandomScaleLetterbox(128, (0.5, 1.5)), v2.RandomHorizontalFlip(0.5)])
    for index in range(len(_dataset(tiny_xray))):
        image, target = _dataset(tiny_xray, transforms=transforms)[index]
        assert image.shape == (3, 128, 128)
        boxes = target["boxes"]
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= 128).all()
        assert len(boxes) == len(target["labels"]) == len(target["category_ids"])
        _assert_boxes_hold_their_colour(image, boxes)


def test_training_pipeline_changes_pixels_not_geometry_of_photometric_jitter(tiny_xray):
    torch.manual_seed(0)
    train = build_train_transforms(128, hflip=0.0, scale_jitter=None, brightness=0.5, contrast=0.5)
    evaluation = build_eval_transforms(128)
    image_t, target_t = _dataset(tiny_xray, transforms=train)[0]
    image_e, target_e = _dataset(tiny_xray, transforms=evaluation)[0]
    assert torch.equal(target_t["boxes"], target_e["boxes"])
    assert not torch.equal(image_t, image_e)


def test_mosaic_and_mixup_keep_boxes_on_their_content(tiny_xray):
    torch.manual_seed(0)
    base = _dataset(tiny_xray, transforms=build_eval_transforms(96))
    mosaic = MosaicMixup(base, 96, mosaic_prob=1.0, mixup_prob=0.0)
    total = 0
    for index in range(len(mosaic)):
        image, target = mosaic[index]
        assert image.shape == (3, 96, 96)
        boxes = target["boxes"]
        assert len(boxes) == len(target["labels"]) == len(target["category_ids"])
        assert ((boxes[:, 2] - boxes[:, 0]) >= 1).all()
        for x1, y1, x2, y2 in boxes.round().int().tolist():
            if x2 - x1 >= 6 and y2 - y1 >= 6:  # the inside of every box is painted, never white
                assert image[:, y1 + 2 : y2 - 2, x1 + 2 : x2 - 2].float().mean() < 230
        total += len(boxes)
    assert total > 0
    mixed = MosaicMixup(base, 96, mosaic_prob=0.0, mixup_prob=1.0, mixup_mode="multiply")
    image, target = mixed[0]
    assert len(target["boxes"]) >= len(base[0][1]["boxes"])  # boxes of both images
    assert image.float().mean() <= base[0][0].float().mean()  # multiplying transmissions only darkens


class _OneSquare(torch.utils.data.Dataset):
    """``n`` white 96 px images, each with one dark ``side`` px square box at a random place."""

    def __init__(self, n=8, side=20):
        generator = torch.Generator().manual_seed(0)
        self.side = side
        self.corners = torch.randint(0, 96 - side, (n, 2), generator=generator).tolist()

    def __len__(self):
        return len(self.corners)

    def __getitem__(self, index):
        (x, y), side = self.corners[index], self.side
        image = torch.full((3, 96, 96), 255, dtype=torch.uint8)
        image[:, y : y + side, x : x + side] = 40
        boxes = tv_tensors.BoundingBoxes(
            [[x, y, x + side, y + side]], format="XYXY", canvas_size=(96, 96), dtype=torch.float32
        )
        target = {"boxes": boxes, "labels": torch.tensor([1]), "category_ids": torch.tensor([1])}
        target |= {"image_id": index, "orig_size": torch.tensor([96, 96])}
        return tv_tensors.Image(image), target


def _zooms(mosaic, draws=300):
    """Side of every box the mosaic window did not cut, over its own side: the objects' zoom.

    The boxes are small (4 px), so that leaving out the cut ones hardly favours small zooms.
    """
    torch.manual_seed(0)
    zooms = []
    for i in range(draws):
        _, target = mosaic[i % len(mosaic)]
        for x1, y1, x2, y2 in target["boxes"].tolist():
            if min(x1, y1) > 0.5 and max(x2, y2) < 95.5:  # not cut by the window's edge
                zooms += [(x2 - x1) / mosaic.dataset.side, (y2 - y1) / mosaic.dataset.side]
    return torch.tensor(zooms)


def test_mosaic_keeps_the_objects_scale_on_average():
    zooms = _zooms(MosaicMixup(_OneSquare(side=4), 96, mosaic_prob=1.0, mixup_prob=0.0))
    assert len(zooms) > 300
    assert 0.9 < zooms.mean() < 1.1  # as tested; resizing the 2S canvas to S halved every object
    assert zooms.min() > 0.58 and zooms.max() < 1.83 and zooms.std() > 0.2  # spread over (0.6, 1.8)
    narrow = _zooms(MosaicMixup(_OneSquare(side=4), 96, mosaic_prob=1.0, mixup_prob=0.0, scale=(0.8, 0.9)))
    assert narrow.min() > 0.78 and narrow.max() < 0.92
    with pytest.raises(ValueError, match=r"0\.5 <= low"):
        MosaicMixup(_OneSquare(), 96, scale=(0.25, 1.0))


def test_mosaic_and_mixup_close_at_their_epoch():
    base = _OneSquare()
    mosaic = MosaicMixup(base, 96, mosaic_prob=1.0, mixup_prob=1.0, close_epoch=3)
    torch.manual_seed(0)
    mosaic.set_epoch(2)
    assert mosaic.active and len(mosaic[0][1]["boxes"]) > 1  # tiles of four images plus a mixup partner
    mosaic.set_epoch(3)
    assert not mosaic.active
    image, target = mosaic[5]
    assert torch.equal(image, base[5][0]) and torch.equal(target["boxes"], base[5][1]["boxes"])
    assert MosaicMixup(base, 96, close_epoch=None).active


def test_collate_stacks_images_and_keeps_variable_box_counts(tiny_xray):
    ds = _dataset(tiny_xray, transforms=build_eval_transforms(64))
    batch = collate_detection([ds[i] for i in range(4)])
    assert isinstance(batch, DetectionBatch)
    assert batch.images.shape == (4, 3, 64, 64) and batch.images.dtype == torch.uint8
    assert [len(b) for b in batch.boxes] == [2, 1, 0, 1]
    assert batch.image_ids.tolist() == [1, 2, 3, 4]
    assert batch.orig_sizes.tolist() == [[64, 96], [96, 64], [80, 80], [64, 96]]
    assert batch.num_boxes == 4 and len(batch) == 4
    assert type(batch.boxes[0]) is torch.Tensor  # plain tensors, not tv_tensors


def test_collate_of_different_sizes_gives_a_list(tiny_xray):
    ds = _dataset(tiny_xray)
    batch = collate_detection([ds[0], ds[1]])
    assert isinstance(batch.images, list) and batch.images[0].shape == (3, 64, 96)
