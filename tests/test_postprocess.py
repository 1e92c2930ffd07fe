import math

import pytest
import torch

from dfss.data.classes import ClassTable
from dfss.models.outputs import DenseOutputs
from dfss.models.postprocess import (
    PostProcessConfig,
    detections_to_coco,
    postprocess,
)
from tests.helpers.data import CATEGORIES

LOW = -12.0  # a logit whose sigmoid is ~6e-6


def _outputs(cls_logits, box_regression, quality_logits, points, strides, levels, box_format="ltrb"):
    return DenseOutputs(
        points=torch.tensor(points, dtype=torch.float32),
        strides=torch.tensor(strides, dtype=torch.float32),
        num_points_per_level=tuple(levels),
        cls_logits=torch.tensor(cls_logits, dtype=torch.float32),
        box_regression=torch.tensor(box_regression, dtype=torch.float32),
        quality_logits=torch.tensor(quality_logits, dtype=torch.float32),
        box_format=box_format,
    )


def _logit(p):
    return math.log(p / (1 - p))


# Three points on one level (stride 8) and one on a second level (stride 16); 3 classes.
POINTS = [[12.0, 12.0], [14.0, 12.0], [40.0, 40.0], [24.0, 24.0]]
STRIDES = [8.0, 8.0, 8.0, 16.0]
LEVELS = [3, 1]
UNIT_BOX = [1.0, 1.0, 1.0, 1.0]  # 1 stride on each side


def test_fcos_score_is_sqrt_of_class_times_centerness_and_box_is_decoded():
    cls = [[[_logit(0.8), LOW, LOW], [LOW] * 3, [LOW] * 3, [LOW] * 3]]
    ctr = [[_logit(0.5), LOW, LOW, LOW]]
    out = _outputs(cls, [[UNIT_BOX] * 4], ctr, POINTS, STRIDES, LEVELS)
    dets = postprocess(out, PostProcessConfig(score_threshold=0.05), input_size=64)
    boxes, scores, labels = dets.per_image(0)
    assert labels.tolist() == [0]
    assert scores[0].item() == pytest.approx(math.sqrt(0.8 * 0.5), rel=1e-5)
    assert boxes[0].tolist() == [4.0, 4.0, 20.0, 20.0]


def test_yolox_score_is_objectness_times_class():
    cls = [[[LOW, _logit(0.9), LOW]] + [[LOW] * 3] * 3]
    obj = [[_logit(0.6), LOW, LOW, LOW]]
    reg = [[[0.0, 0.0, math.log(2.0), math.log(1.0)]] * 4]  # w = 2 strides, h = 1 stride
    out = _outputs(cls, reg, obj, POINTS, STRIDES, LEVELS, box_format="yolox")
    boxes, scores, labels = postprocess(out, PostProcessConfig(), input_size=64).per_image(0)
    assert labels.tolist() == [1]
    assert scores[0].item() == pytest.approx(0.54, rel=1e-5)
    assert torch.allclose(boxes[0], torch.tensor([4.0, 8.0, 20.0, 16.0]))


def test_nms_is_class_wise():
    # Points 0 and 1 predict almost the same box; same class -> one survives, other class -> both.
    ctr = [[3.0, 3.0, LOW, LOW]]
    same = [[[3.0, LOW, LOW], [2.0, LOW, LOW], [LOW] * 3, [LOW] * 3]]
    other = [[[3.0, LOW, LOW], [LOW, 2.0, LOW], [LOW] * 3, [LOW] * 3]]
    config = PostProcessConfig(nms_iou=0.5)
    _, scores, labels = postprocess(
        _outputs(same, [[UNIT_BOX] * 4], ctr, POINTS, STRIDES, LEVELS), config, 64
    ).per_image(0)
    assert labels.tolist() == [0]
    _, scores, labels = postprocess(
        _outputs(other, [[UNIT_BOX] * 4], ctr, POINTS, STRIDES, LEVELS), config, 64
    ).per_image(0)
    assert sorted(labels.tolist()) == [0, 1] and scores[0] >= scores[1]


def test_unknown_rule_adds_unknown_detections_for_objects_no_class_names():
    # Point 0: object (quality 0.9) whose best class prob is 0.1 -> also unknown when T = 0.2.
    # Point 2: object with class prob 0.7 -> known only.
    cls = [[[_logit(0.1), _logit(0.05), LOW], [LOW] * 3, [LOW, LOW, _logit(0.7)], [LOW] * 3]]
    quality = [[_logit(0.9), LOW, _logit(0.9), LOW]]
    out = _outputs(cls, [[UNIT_BOX] * 4], quality, POINTS, STRIDES, LEVELS)
    _, scores, labels = postprocess(out, PostProcessConfig(unknown_threshold=0.2), 64).per_image(0)
    assert sorted(labels.tolist()) == [0, 1, 2, 3]  # 3 = K = unknown, added beside point 0's classes
    assert scores[labels == 3].item() == pytest.approx(0.9 * (1 - 0.1), rel=1e-5)  # object and unnamed
    assert scores.tolist() == sorted(scores.tolist(), reverse=True)
    # T = 0 disables the rule: the same known detections, no unknown one.
    _, off_scores, off_labels = postprocess(out, PostProcessConfig(unknown_threshold=0.0), 64).per_image(0)
    assert sorted(off_labels.tolist()) == [0, 1, 2]
    assert torch.equal(scores[labels < 3], off_scores)
    # A point that is not confidently an object never becomes unknown.
    weak = _outputs(cls, [[UNIT_BOX] * 4], [[_logit(0.3), LOW, LOW, LOW]], POINTS, STRIDES, LEVELS)
    _, _, labels = postprocess(weak, PostProcessConfig(unknown_threshold=0.2), 64).per_image(0)
    assert 3 not in labels.tolist()


@pytest.mark.parametrize("box_format", ["ltrb", "yolox"])
def test_unknown_rule_never_changes_the_known_detections(box_format):
    """Random outputs with many object-like, unnamed points (the case where the old rule filled the
    cap with unknowns): known detections are identical with T = 0 and T > 0; unknowns have their cap."""
    g = torch.Generator().manual_seed(0)
    n, k = 400, 4
    points = torch.rand(n, 2, generator=g) * 200 + 20
    out = DenseOutputs(
        points=points,
        strides=torch.full((n,), 8.0),
        num_points_per_level=(300, 100),
        cls_logits=torch.randn(2, n, k, generator=g) * 2 - 3,  # mostly low class probabilities
        box_regression=torch.rand(2, n, 4, generator=g) * 2,
        quality_logits=torch.randn(2, n, generator=g) + 1,  # mostly "something is there"
        box_format=box_format,
    )
    base = PostProcessConfig(score_threshold=0.01, max_detections=30, unknown_max_detections=12)
    off = postprocess(out, base, 256)
    assert off.valid.sum(dim=1).tolist() == [30, 30]  # the known cap is reached: the case that matters
    for T in (0.05, 0.3, 1.0):
        on = postprocess(out, PostProcessConfig(**{**base.__dict__, "unknown_threshold": T}), 256)
        for i in range(2):
            boxes, scores, labels = on.per_image(i)
            known = labels < k
            ref_boxes, ref_scores, ref_labels = off.per_image(i)
            assert torch.equal(boxes[known], ref_boxes) and torch.equal(scores[known], ref_scores)
            assert torch.equal(labels[known], ref_labels)
            assert 0 < (~known).sum() <= 12
            assert scores.tolist() == sorted(scores.tolist(), reverse=True)


def test_batched_equals_one_image_at_a_time_and_respects_max_detections():
    torch.manual_seed(0)
    n, k = 40, 4
    points = torch.rand(n, 2) * 64
    strides = torch.full((n,), 8.0)
    outputs = DenseOutputs(
        points=points,
        strides=strides,
        num_points_per_level=(25, 15),
        cls_logits=torch.randn(3, n, k) * 2,
        box_regression=torch.rand(3, n, 4) * 2,
        quality_logits=torch.randn(3, n),
        box_format="ltrb",
    )
    config = PostProcessConfig(score_threshold=0.1, nms_iou=0.5, topk_per_level=12, max_detections=7)
    batched = postprocess(outputs, config, 64)
    assert batched.valid.sum(1).max() <= 7
    for b in range(3):
        single = DenseOutputs(
            points,
            strides,
            (25, 15),
            outputs.cls_logits[b : b + 1],
            outputs.box_regression[b : b + 1],
            outputs.quality_logits[b : b + 1],
            "ltrb",
        )
        one = postprocess(single, config, 64)
        for got, want in zip(batched.per_image(b), one.per_image(0), strict=True):
            assert torch.equal(got, want)
        scores = batched.per_image(b)[1]
        assert torch.all(scores[:-1] >= scores[1:])


def test_boxes_are_mapped_back_to_the_original_image():
    # A 200x100 (w x h) scan letterboxed into 64: scale 0.32 -> 64 x 32, padded below.
    cls = [[[3.0, LOW, LOW]] + [[LOW] * 3] * 3]
    out = _outputs(cls, [[UNIT_BOX] * 4], [[3.0, LOW, LOW, LOW]], POINTS, STRIDES, LEVELS)
    boxes, _, _ = postprocess(out, PostProcessConfig(), 64, orig_sizes=torch.tensor([[100, 200]])).per_image(
        0
    )
    assert torch.allclose(boxes[0], torch.tensor([4.0, 4.0, 20.0, 20.0]) / 0.32, atol=1e-4)


def test_coco_results_use_the_dataset_ids_and_its_unknown_category():
    table = ClassTable.from_categories(CATEGORIES)  # known ids [3, 7, 11], unknown id 20
    cls = [[[_logit(0.1), LOW, LOW], [LOW] * 3, [LOW, LOW, _logit(0.7)], [LOW] * 3]]
    quality = [[_logit(0.9), LOW, _logit(0.9), LOW]]
    out = _outputs(cls, [[UNIT_BOX] * 4], quality, POINTS, STRIDES, LEVELS)
    dets = postprocess(out, PostProcessConfig(unknown_threshold=0.2), 64)
    results = detections_to_coco(dets, torch.tensor([42]), table)
    assert {r["category_id"] for r in results} == {3, 11, 20}  # point 0: known (id 3) and unknown (20)
    assert all(r["image_id"] == 42 for r in results)
    by_cat = {r["category_id"]: r for r in results}
    assert by_cat[11]["bbox"] == pytest.approx([32.0, 32.0, 16.0, 16.0])
    no_unknown = ClassTable.from_categories([c for c in CATEGORIES if c["supercategory"] != "unknown"])
    with pytest.raises(ValueError, match="no category whose supercategory"):
        detections_to_coco(dets, torch.tensor([42]), no_unknown)
    assert detections_to_coco(dets, [42], table) == results  # image ids as a plain list, as a user has them
    with pytest.raises(ValueError, match="2 image ids for a batch of 1 images"):
        detections_to_coco(dets, [42, 43], table)


def test_config_is_checked():
    with pytest.raises(ValueError, match="unknown_threshold"):
        PostProcessConfig(unknown_threshold=1.5)
    with pytest.raises(ValueError, match="score_mode"):
        PostProcessConfig(score_mode="max")


def _checkpoint_config(net: str, distill: dict | None) -> dict:
    return {
        "dfss_config": {
            "model": {"net": {"_target_": net}},
            "loss": {"dangerous_weight": 1.0, "distill": distill},
        }
    }


def test_the_rule_knows_which_quality_outputs_are_an_objectness(caplog):
    from dfss.models.checkpoints import quality_is_objectness, warn_if_rule_without_objectness

    yolox = _checkpoint_config("dfss.models.yolox.yolox_nano", None)
    fcos = _checkpoint_config("dfss.models.fcos.fcos_r18", None)
    dfss = _checkpoint_config("dfss.models.fcos.fcos_r18", {"lambda_loc": 1 / 3, "loc_points": "all"})
    no_loc = _checkpoint_config("dfss.models.fcos.fcos_r18", {"lambda_loc": 0.0, "loc_points": "all"})
    positives_only = _checkpoint_config(
        "dfss.models.fcos.fcos_r18", {"lambda_loc": 1.0, "loc_points": "student_positive"}
    )
    found = [quality_is_objectness(c) for c in (yolox, fcos, dfss, no_loc, positives_only)]
    assert found == [True, False, True, False, False]
    rule_on, rule_off = PostProcessConfig(unknown_threshold=0.1), PostProcessConfig()
    with caplog.at_level("WARNING", logger="dfss.models.checkpoints"):
        warn_if_rule_without_objectness(dfss, rule_on, "dfss.ckpt")
        warn_if_rule_without_objectness(fcos, rule_off, "fcos.ckpt")
        assert not caplog.records  # a taught centerness, or no rule: nothing to say
        warn_if_rule_without_objectness(fcos, rule_on, "fcos.ckpt")
    assert "fcos.ckpt is an FCOS trained without the KD loc term" in caplog.text
