"""The FCOS student: shapes, gradients, assignment, losses and class weights, torchvision parity, weights."""

from __future__ import annotations

import itertools
import logging
import math

import pytest
import torch
from torchvision.models import resnet50
from torchvision.models.detection import FCOS as TorchvisionFCOS
from torchvision.models.detection import fcos_resnet50_fpn
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.ops import sigmoid_focal_loss as tv_sigmoid_focal_loss
from torchvision.ops.feature_pyramid_network import LastLevelP6P7
from torchvision.ops.misc import FrozenBatchNorm2d

from dfss.models.fcos import (
    FCOS,
    FCOS_VARIANTS,
    FCOSCriterion,
    assign_fcos_targets,
    distribution_focal_loss,
    fcos_mobilenetv3,
    fcos_r18,
    fcos_r50,
    load_torchvision_fcos_weights,
    make_points,
)
from dfss.models.outputs import DenseOutputs

NUM_CLASSES = 5
STRIDES = (8, 16, 32, 64, 128)


def torchvision_recipe(num_classes: int, **kwargs) -> FCOS:
    """``fcos_r50`` as torchvision builds it for pretrained weights (frozen BN, 3 trainable stages)."""
    return fcos_r50(num_classes, norm="frozen_bn", trainable_backbone_layers=3, **kwargs)


def tiny_batch(size: int = 64) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """Two uint8 images (the second without boxes) and their ground truth."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (2, 3, size, size), dtype=torch.uint8, generator=generator)
    scale = size / 64
    boxes = [
        torch.tensor([[4.0, 6.0, 40.0, 50.0], [20.0, 24.0, 36.0, 34.0], [0.0, 0.0, 63.0, 63.0]]) * scale,
        torch.zeros(0, 4),
    ]
    labels = [torch.tensor([1, 3, 0]), torch.zeros(0, dtype=torch.int64)]
    return images, boxes, labels


def level_sizes(size: int) -> list[tuple[int, int]]:
    return [(math.ceil(size / s), math.ceil(size / s)) for s in STRIDES]


# ---------------------------------------------------------------- model outputs


@pytest.mark.parametrize("box_head", ["scalar", "distribution"])
@pytest.mark.parametrize("variant", sorted(FCOS_VARIANTS))
def test_output_shapes(variant: str, box_head: str) -> None:
    torch.manual_seed(0)
    model = FCOS_VARIANTS[variant](NUM_CLASSES, box_head=box_head, num_bins=9).eval()
    images, _, _ = tiny_batch(128)
    with torch.no_grad():
        out = model(images)
    num_points = sum(h * w for h, w in level_sizes(128))  # 256 + 64 + 16 + 4 + 1
    assert isinstance(out, DenseOutputs) and out.box_format == "ltrb"
    assert out.num_points_per_level == (256, 64, 16, 4, 1)
    assert out.points.shape == (num_points, 2) and out.strides.shape == (num_points,)
    assert out.cls_logits.shape == (2, num_points, NUM_CLASSES)
    assert out.box_regression.shape == (2, num_points, 4) and (out.box_regression >= 0).all()
    assert out.quality_logits.shape == (2, num_points)
    if box_head == "distribution":
        assert out.box_distribution_logits.shape == (2, num_points, 4, 9)
        expectation = (out.box_distribution_logits.softmax(-1) * torch.arange(9.0)).sum(-1)
        torch.testing.assert_close(out.box_regression, expectation)
    else:
        assert out.box_distribution_logits is None
    # Logits, not probabilities: the class bias starts at the 0.01 prior.
    assert out.cls_logits.mean() < -3
    # Points: torchvision's anchor centres (i·s) for the R-50 parity path, cell centres otherwise.
    offset = 0.0 if variant == "fcos_r50" else 0.5
    assert out.points[:3].tolist() == [
        [offset * 8, offset * 8],
        [(1 + offset) * 8, offset * 8],
        [(2 + offset) * 8, offset * 8],
    ]
    assert out.points[16].tolist() == [offset * 8, (1 + offset) * 8]  # row-major: second row of P3
    assert out.strides[255] == 8 and out.strides[256] == 16 and out.strides[-1] == 128


def test_model_normalises_its_input_and_does_not_branch_on_training() -> None:
    torch.manual_seed(0)
    model = torchvision_recipe(NUM_CLASSES)  # FrozenBN + GroupNorm: no batch statistics anywhere
    images, _, _ = tiny_batch(64)
    with torch.no_grad():
        train_out = model.train()(images)
        eval_out = model.eval()(images)
        float_out = model(images.float())  # float 0–255 is the same input
        manual = (images.float() / 255 - torch.tensor([0.485, 0.456, 0.406])[:, None, None]) / torch.tensor(
            [0.229, 0.224, 0.225]
        )[:, None, None]
        features = list(model.backbone(manual).values())
        head_logits = model.head(features).cls_logits
    assert torch.equal(train_out.cls_logits, eval_out.cls_logits)
    assert torch.equal(train_out.box_regression, eval_out.box_regression)
    assert torch.equal(float_out.cls_logits, eval_out.cls_logits)
    torch.testing.assert_close(head_logits, eval_out.cls_logits, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("variant", "box_head"),
    [
        ("fcos_r50", "scalar"),
        ("fcos_r18", "scalar"),
        ("fcos_r18", "distribution"),
        ("fcos_mobilenetv3", "scalar"),
    ],
)
def test_every_parameter_receives_a_gradient(variant: str, box_head: str) -> None:
    torch.manual_seed(0)
    model = FCOS_VARIANTS[variant](NUM_CLASSES, box_head=box_head).train()
    # timm zero-initialises the last BN of each residual block, which (by design) blocks the
    # gradient of the branch's earlier layers at step 0; give them unit scale for this check.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            torch.nn.init.ones_(module.weight)
    images, boxes, labels = tiny_batch(64)
    losses = FCOSCriterion(NUM_CLASSES)(model(images), boxes, labels)
    assert set(losses) == {"loss_cls", "loss_box", "loss_ctr", "loss"} | (
        {"loss_dfl"} if box_head == "distribution" else set()
    )
    assert all(torch.isfinite(v) for v in losses.values())
    losses["loss"].backward()
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    assert trainable
    no_grad = [name for name, p in trainable if p.grad is None or not p.grad.abs().sum() > 0]
    assert no_grad == []
    assert all(torch.isfinite(p.grad).all() for _, p in trainable)
    if variant == "fcos_r50":  # without weights torchvision's default too: everything trains
        assert model.backbone.body.conv1.weight.requires_grad
        assert len(trainable) == len(list(model.parameters()))


# ---------------------------------------------------------------- assignment


def assign_points(points, strides, per_level, boxes, labels):
    return assign_fcos_targets(
        torch.tensor(points, dtype=torch.float32),
        torch.tensor(strides, dtype=torch.float32),
        per_level,
        [torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)],
        [torch.tensor(labels, dtype=torch.int64)],
    )


def test_assignment_point_inside_versus_outside_and_on_the_edge() -> None:
    # A 16×40 box centred at (8, 20): all three P3 points pass centre sampling (|dx| < 12 px) and
    # the scale range; only "strictly inside" separates them.
    targets = assign_points([[8, 20], [16, 20], [18, 20]], [8, 8, 8], (3,), [[0, 0, 16, 40]], [2])
    assert targets.foreground_mask[0].tolist() == [True, False, False]  # inside, on the edge, outside
    assert targets.labels[0].tolist() == [2, -1, -1]
    assert targets.matched_gt_index[0].tolist() == [0, -1, -1]
    assert targets.ltrb_targets[0, 0].tolist() == [1.0, 2.5, 1.0, 2.5]  # pixels / stride 8
    assert targets.ltrb_targets[0, 1].tolist() == [0.0] * 4
    assert targets.centerness_targets[0].tolist() == [1.0, 0.0, 0.0]
    assert (
        targets.box_targets[0, 0].tolist() == [0, 0, 16, 40] and targets.box_targets[0, 1].tolist() == [0] * 4
    )


def test_assignment_centre_sampling_radius() -> None:
    # A wide box centred at x = 50: 1.5 strides = 12 px around the centre.
    targets = assign_points([[61, 15], [63, 15], [80, 15]], [8, 8, 8], (3,), [[0, 0, 100, 30]], [0])
    assert targets.foreground_mask[0].tolist() == [True, False, False]
    left, top, right, bottom = (61 / 8, 15 / 8, 39 / 8, 15 / 8)
    expected = math.sqrt(min(left, right) / max(left, right) * min(top, bottom) / max(top, bottom))
    assert targets.centerness_targets[0, 0].item() == pytest.approx(expected, rel=1e-6)


def test_assignment_scale_range_picks_the_level() -> None:
    # The same point on four levels (strides 8, 16, 32, 64); the box's max side distance is 100 px.
    # Bounds: (0, 64), (64, 128), (128, 256), (256, inf) → only stride 16.
    points = [[100, 100]] * 4
    targets = assign_points(points, [8, 16, 32, 64], (1, 1, 1, 1), [[0, 0, 200, 200]], [1])
    assert targets.foreground_mask[0].tolist() == [False, True, False, False]
    # Max distance 800 px: beyond every upper bound (the last level's would be 8·64 = 512) but ∞.
    targets = assign_points(points, [8, 16, 32, 64], (1, 1, 1, 1), [[-700, -700, 900, 900]], [1])
    assert targets.foreground_mask[0].tolist() == [False, False, False, True]


@pytest.mark.parametrize("small_first", [True, False])
def test_assignment_ambiguity_goes_to_the_smaller_box(small_first: bool) -> None:
    big, small = [0, 0, 60, 60], [10, 10, 40, 40]
    boxes, labels = ([small, big], [4, 0]) if small_first else ([big, small], [0, 4])
    targets = assign_points([[28, 28]], [8], (1,), boxes, labels)
    assert targets.labels[0].tolist() == [4]
    assert targets.matched_gt_index[0].tolist() == [0 if small_first else 1]
    assert targets.box_targets[0, 0].tolist() == small


def test_image_without_boxes_is_all_background_and_has_zero_box_loss() -> None:
    points, strides = make_points(level_sizes(64), STRIDES, 0.5)
    per_level = tuple(h * w for h, w in level_sizes(64))
    _, boxes, labels = tiny_batch(64)
    targets = assign_fcos_targets(points, strides, per_level, boxes, labels)
    assert targets.foreground_mask[0].any() and not targets.foreground_mask[1].any()
    assert (targets.labels[1] == -1).all() and (targets.matched_gt_index[1] == -1).all()
    assert (targets.box_targets[1] == 0).all() and (targets.centerness_targets[1] == 0).all()

    torch.manual_seed(0)
    model = fcos_r18(NUM_CLASSES)
    out = model(tiny_batch(64)[0][1:])  # the empty image alone
    losses = FCOSCriterion(NUM_CLASSES)(out, boxes[1:], labels[1:])
    assert losses["loss_box"].item() == 0.0 and losses["loss_ctr"].item() == 0.0
    assert losses["loss_cls"] > 0  # every point is a negative
    losses["loss"].backward()
    assert model.head.regression_head.bbox_reg.weight.grad.abs().sum() == 0  # no box gradient at all


def reference_assign_one_image(points, strides, per_level, boxes, labels, radius=1.5):
    """Per-image, per-box loop: later (smaller, then lower-index) boxes overwrite earlier ones."""
    lower, upper = strides * 4, strides * 8
    lower[: per_level[0]] = 0
    upper[-per_level[-1] :] = float("inf")
    matched = torch.full((len(points),), -1)
    areas = [float((b[2] - b[0]) * (b[3] - b[1])) for b in boxes]
    order = sorted(range(len(boxes)), key=lambda g: (areas[g], g), reverse=True)
    for g in order:
        x0, y0, x1, y1 = boxes[g].tolist()
        for n, ((x, y), s) in enumerate(zip(points.tolist(), strides.tolist(), strict=True)):
            dist = [x - x0, y - y0, x1 - x, y1 - y]
            centre_ok = max(abs(x - (x0 + x1) / 2), abs(y - (y0 + y1) / 2)) < radius * s
            if min(dist) > 0 and centre_ok and lower[n] < max(dist) < upper[n]:
                matched[n] = g
    return matched, torch.where(matched >= 0, labels[matched.clamp(min=0)], -1) if len(boxes) else matched


def test_batched_assignment_equals_per_image_reference() -> None:
    generator = torch.Generator().manual_seed(3)
    sizes = [(16, 16), (8, 8), (4, 4)]  # three levels of a 128 px image, strides 8, 16, 32
    points, strides = make_points(sizes, (8, 16, 32), 0.5)
    per_level = (256, 64, 16)
    boxes, labels = [], []
    for count in (7, 0, 3, 12):
        xy = torch.rand(count, 2, generator=generator) * 110
        wh = torch.rand(count, 2, generator=generator) * 120 + 4
        boxes.append(torch.cat([xy, xy + wh], dim=1))
        labels.append(torch.randint(0, NUM_CLASSES, (count,), generator=generator))
    targets = assign_fcos_targets(points, strides, per_level, boxes, labels)
    assert targets.foreground_mask.sum() > 20  # the random case is not trivially empty
    for i in range(len(boxes)):
        matched, matched_labels = reference_assign_one_image(
            points, strides.clone(), per_level, boxes[i], labels[i]
        )
        assert torch.equal(targets.matched_gt_index[i], matched)
        assert torch.equal(targets.labels[i], matched_labels)
        fg = matched >= 0
        assert torch.equal(targets.box_targets[i][fg], boxes[i][matched[fg]])


# ---------------------------------------------------------------- losses and class weights


def random_outputs(
    size: int = 64, box_head: str = "scalar", num_bins: int = 9, seed: int = 0
) -> DenseOutputs:
    generator = torch.Generator().manual_seed(seed)
    points, strides = make_points(level_sizes(size), STRIDES, 0.5)
    n = len(points)
    distribution = None
    box = torch.rand(2, n, 4, generator=generator) * 4
    if box_head == "distribution":
        distribution = torch.randn(2, n, 4, num_bins, generator=generator)
        box = (distribution.softmax(-1) * torch.arange(float(num_bins))).sum(-1)
    return DenseOutputs(
        points=points,
        strides=strides,
        num_points_per_level=tuple(h * w for h, w in level_sizes(size)),
        cls_logits=torch.randn(2, n, NUM_CLASSES, generator=generator) - 2,
        box_regression=box,
        quality_logits=torch.randn(2, n, generator=generator),
        box_format="ltrb",
        box_distribution_logits=distribution,
    )


def test_unit_class_weights_reproduce_the_unweighted_loss_exactly() -> None:
    outputs = random_outputs()
    _, boxes, labels = tiny_batch(64)
    plain = FCOSCriterion(NUM_CLASSES)(outputs, boxes, labels)
    ones = FCOSCriterion(NUM_CLASSES, class_weights=torch.ones(NUM_CLASSES))(outputs, boxes, labels)
    assert all(torch.equal(plain[k], ones[k]) for k in plain)


def test_class_weight_scales_exactly_the_positive_part_of_the_dangerous_class() -> None:
    outputs = random_outputs()
    _, boxes, labels = tiny_batch(64)
    dangerous = 1  # the first box's class
    alphas = torch.ones(NUM_CLASSES)
    alphas[dangerous] = 2.0
    criterion = FCOSCriterion(NUM_CLASSES)
    plain = criterion(outputs, boxes, labels)
    weighted = FCOSCriterion(NUM_CLASSES, class_weights=alphas)(outputs, boxes, labels)

    targets = criterion.assign(outputs, boxes, labels)
    positives = (targets.labels == dangerous).float()  # [B, N] target = 1 in column `dangerous`
    assert positives.sum() > 0
    elementwise = tv_sigmoid_focal_loss(outputs.cls_logits[..., dangerous], positives, reduction="none")
    positive_part = (elementwise * positives).sum() / targets.foreground_mask.sum()
    torch.testing.assert_close(weighted["loss_cls"] - plain["loss_cls"], positive_part, rtol=1e-5, atol=1e-7)
    assert torch.equal(weighted["loss_box"], plain["loss_box"]) and torch.equal(
        weighted["loss_ctr"], plain["loss_ctr"]
    )
    # A weight on a class absent from the batch changes nothing (it is not a negative-part weight).
    absent = torch.ones(NUM_CLASSES)
    absent[2] = 5.0
    assert torch.equal(
        FCOSCriterion(NUM_CLASSES, class_weights=absent)(outputs, boxes, labels)["loss_cls"],
        plain["loss_cls"],
    )


def test_class_weights_shape_is_checked() -> None:
    with pytest.raises(ValueError, match="shape"):
        FCOSCriterion(NUM_CLASSES, class_weights=torch.ones(NUM_CLASSES + 1))


def test_distribution_focal_loss() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(50, 4, 9, generator=generator)
    targets = torch.rand(50, 4, generator=generator) * 9  # some beyond the last bin: clamped
    assert (distribution_focal_loss(logits, targets, reduction="none") >= 0).all()
    # Integer targets inside [0, R − 1) (the last bin is reachable only up to R − 1 − 0.01).
    integer_targets = torch.randint(0, 8, (50, 4), generator=generator).float()
    perfect = 50.0 * torch.nn.functional.one_hot(integer_targets.long(), 9).float()
    assert distribution_focal_loss(perfect, integer_targets).item() < 1e-6
    assert distribution_focal_loss(logits, integer_targets) > 1.0
    # At y = 2.3 the minimum is the 70/30 split on bins 2 and 3 (value: its entropy).
    split = torch.full((9,), -1e4)
    split[2], split[3] = math.log(0.7), math.log(0.3)
    entropy = -(0.7 * math.log(0.7) + 0.3 * math.log(0.3))
    y = torch.tensor(2.3)
    assert distribution_focal_loss(split, y).item() == pytest.approx(entropy, rel=1e-5)
    skewed = split.clone()
    skewed[2], skewed[3] = math.log(0.8), math.log(0.2)
    assert distribution_focal_loss(skewed, y) > distribution_focal_loss(split, y)


def test_criterion_adds_the_dfl_term_with_the_distribution_head() -> None:
    outputs = random_outputs(box_head="distribution")
    _, boxes, labels = tiny_batch(64)
    losses = FCOSCriterion(NUM_CLASSES, dfl_weight=0.5)(outputs, boxes, labels)
    assert losses["loss_dfl"] > 0
    expected = losses["loss_cls"] + losses["loss_box"] + losses["loss_ctr"] + 0.5 * losses["loss_dfl"]
    torch.testing.assert_close(losses["loss"], expected)


# ---------------------------------------------------------------- torchvision parity


def torchvision_fcos_frozen_bn(num_classes: int, size: int) -> TorchvisionFCOS:
    """``fcos_resnet50_fpn`` as torchvision builds it for pretrained weights (FrozenBN), no resize."""
    body = resnet50(weights=None, norm_layer=FrozenBatchNorm2d)
    backbone = _resnet_fpn_extractor(body, 3, returned_layers=[2, 3, 4], extra_blocks=LastLevelP6P7(256, 256))
    return TorchvisionFCOS(backbone, num_classes, min_size=size, max_size=size)


@pytest.fixture(scope="module")
def parity_models() -> tuple[TorchvisionFCOS, torch.nn.Module]:
    torch.manual_seed(0)
    reference = torchvision_fcos_frozen_bn(NUM_CLASSES, 128)
    # Push the random head off its near-zero init so boxes and centerness are non-trivial.
    with torch.no_grad():
        reference.head.regression_head.bbox_reg.bias.uniform_(0.5, 3.0)
        reference.head.regression_head.bbox_ctrness.bias.fill_(0.3)
        reference.head.classification_head.cls_logits.bias.uniform_(-3.0, 0.0)
    ours = torchvision_recipe(NUM_CLASSES)
    ours.load_state_dict(reference.state_dict())  # strict: identical module names
    return reference.train(), ours.train()


def test_parity_head_outputs_and_points_match_torchvision(parity_models) -> None:
    reference, ours = parity_models
    images, _, _ = tiny_batch(128)
    with torch.no_grad():
        image_list, _ = reference.transform([image.float() / 255 for image in images])
        assert image_list.tensors.shape[-2:] == (128, 128)  # no resize, no padding
        features = list(reference.backbone(image_list.tensors).values())
        head = reference.head(features)
        anchors = reference.anchor_generator(image_list, features)[0]
        out = ours(images)
    diffs = {
        "cls": (head["cls_logits"] - out.cls_logits).abs().max().item(),
        "box": (head["bbox_regression"] - out.box_regression).abs().max().item(),
        "ctr": (head["bbox_ctrness"].squeeze(-1) - out.quality_logits).abs().max().item(),
    }
    assert max(diffs.values()) <= 1e-5, diffs
    assert torch.equal((anchors[:, :2] + anchors[:, 2:]) / 2, out.points)


@pytest.mark.parametrize("size", [(320, 320), (640, 640), (400, 400), (320, 448)])
def test_points_are_torchvisions_anchor_centres_at_every_input_size(parity_models, size) -> None:
    """At sizes 128 does not divide, torchvision steps P7 by image size // grid size (106 px at 320),
    not 128; our points follow it (strides stay nominal: they scale the regression)."""
    from torchvision.models.detection.image_list import ImageList

    reference, ours = parity_models
    height, width = size
    images = torch.zeros(1, 3, height, width, dtype=torch.uint8)
    with torch.no_grad():
        out = ours(images)
        features = list(ours.backbone(ours.normalize(images)).values())
        anchors = reference.anchor_generator(ImageList(images.float(), [(height, width)]), features)[0]
    assert torch.equal((anchors[:, :2] + anchors[:, 2:]) / 2, out.points)
    assert torch.equal(out.strides.unique(), torch.tensor([8.0, 16.0, 32.0, 64.0, 128.0]))
    if size == (320, 320):  # the benchmark's size: the 3 x 3 P7 grid
        assert out.points[-9:, 0].unique().tolist() == [0.0, 106.0, 212.0]


def test_parity_losses_match_torchvision(parity_models) -> None:
    reference, ours = parity_models
    images, boxes, labels = tiny_batch(128)
    expected = reference(
        [image.float() / 255 for image in images],
        [{"boxes": b, "labels": t} for b, t in zip(boxes, labels, strict=True)],
    )
    criterion = FCOSCriterion(NUM_CLASSES, class_weights=torch.ones(NUM_CLASSES))
    outputs = ours(images)
    assert criterion.assign(outputs, boxes, labels).foreground_mask.sum() >= 10
    losses = criterion(outputs, boxes, labels)
    pairs = {"classification": "loss_cls", "bbox_regression": "loss_box", "bbox_ctrness": "loss_ctr"}
    diffs = {theirs: (expected[theirs] - losses[mine]).abs().item() for theirs, mine in pairs.items()}
    assert all(expected[k] > 0.05 for k in pairs), expected  # non-trivial values
    assert max(diffs.values()) <= 1e-5, diffs


# ---------------------------------------------------------------- weights


@pytest.fixture(scope="module")
def coco_like_checkpoint(tmp_path_factory) -> tuple:
    torch.manual_seed(1)
    model = fcos_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91)
    path = tmp_path_factory.mktemp("weights") / "fcos_resnet50_fpn_coco-random.pth"
    torch.save(model.state_dict(), path)
    return path, model.state_dict()


def test_checkpoint_round_trip_with_class_count_change(coco_like_checkpoint, caplog) -> None:
    path, state = coco_like_checkpoint
    torch.manual_seed(0)
    model = torchvision_recipe(NUM_CLASSES)
    with torch.no_grad():  # as if trained before: the load must reset the layer, not keep it
        model.head.classification_head.cls_logits.bias.fill_(7.0)
    with caplog.at_level(logging.WARNING):
        report = load_torchvision_fcos_weights(model, path)
    logits_keys = ("head.classification_head.cls_logits.weight", "head.classification_head.cls_logits.bias")
    assert sorted(report.reinitialized) == sorted(logits_keys) and report.file_num_classes == 91
    assert "re-initialised" in caplog.text
    loaded = model.state_dict()
    same = [k for k in loaded if k not in logits_keys]
    assert len(same) > 300 and all(torch.equal(loaded[k], state[k]) for k in same)
    assert loaded[logits_keys[0]].shape == (NUM_CLASSES, 256, 3, 3)
    assert torch.allclose(loaded[logits_keys[1]], torch.full((NUM_CLASSES,), -math.log(99)))

    same_classes = fcos_r50(91, weights=path)  # through the builder, nothing re-initialised
    assert all(torch.equal(v, state[k]) for k, v in same_classes.state_dict().items())


def test_wrong_weights_files_give_clear_errors(coco_like_checkpoint, tmp_path) -> None:
    path, state = coco_like_checkpoint
    model = torchvision_recipe(NUM_CLASSES)
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="not a loadable PyTorch weights file"):
        load_torchvision_fcos_weights(model, text)
    with pytest.raises(FileNotFoundError):
        load_torchvision_fcos_weights(model, tmp_path / "missing.pth")
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"weights": state, "epoch": 3}, wrapped)  # a wrapper key none of the usual layouts have
    with pytest.raises(ValueError, match=r"not a bare state dict or one under \['model', 'state_dict'"):
        load_torchvision_fcos_weights(model, wrapped)
    classifier = tmp_path / "resnet50.pth"
    torch.save(resnet50(weights=None).state_dict(), classifier)
    with pytest.raises(
        ValueError, match=r"missing keys \(\d+\): backbone\.body\..*unexpected keys \(\d+\): bn1\.bias"
    ):
        load_torchvision_fcos_weights(model, classifier)
    distribution = torchvision_recipe(NUM_CLASSES, box_head="distribution")
    before = {k: v.clone() for k, v in distribution.state_dict().items()}
    with pytest.raises(ValueError, match=r"head\.regression_head\.bbox_reg\.weight: file \(4, 256, 3, 3\)"):
        load_torchvision_fcos_weights(distribution, path)
    assert all(torch.equal(v, before[k]) for k, v in distribution.state_dict().items())  # untouched


def test_r50_from_scratch_has_learning_batch_norm_and_no_frozen_stage(coco_like_checkpoint) -> None:
    frozen = torchvision_recipe(NUM_CLASSES)  # torchvision's recipe for pretrained weights
    assert any(isinstance(m, FrozenBatchNorm2d) for m in frozen.modules())
    assert not frozen.backbone.body.conv1.weight.requires_grad
    path, _ = coco_like_checkpoint
    with_weights = fcos_r50(91, weights=path)  # the default with weights: that recipe
    assert any(isinstance(m, FrozenBatchNorm2d) for m in with_weights.modules())
    assert not with_weights.backbone.body.conv1.weight.requires_grad
    scratch = fcos_r50(NUM_CLASSES).train()  # the default without weights: learning BN, all trainable
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in scratch.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in scratch.backbone.body.modules()) == 53
    assert all(p.requires_grad for p in scratch.parameters())
    # Same parameter names as torchvision's model: only the BN step counters are added.
    assert set(scratch.state_dict()) - set(frozen.state_dict()) == {
        k for k in scratch.state_dict() if k.endswith("num_batches_tracked")
    }
    images, boxes, labels = tiny_batch(64)
    running = scratch.backbone.body.bn1.running_mean.clone()
    FCOSCriterion(NUM_CLASSES)(scratch(images), boxes, labels)["loss"].backward()
    assert not torch.equal(running, scratch.backbone.body.bn1.running_mean)  # statistics are learnt
    assert scratch.backbone.body.conv1.weight.grad.abs().sum() > 0
    # learning batch norm from the file's statistics: the file loads (its BN has no step counters)
    fine_tune = fcos_r50(91, weights=path, norm="bn")
    assert torch.equal(fine_tune.backbone.body.bn1.running_mean, with_weights.backbone.body.bn1.running_mean)
    with pytest.raises(ValueError, match=r"norm must be one of \['bn', 'frozen_bn'\], got 'gn'"):
        fcos_r50(NUM_CLASSES, norm="gn")


# ---------------------------------------------------------------- training


def test_a_few_sgd_steps_reduce_the_loss() -> None:
    torch.manual_seed(0)
    model = fcos_mobilenetv3(NUM_CLASSES).train()
    images, boxes, labels = tiny_batch(64)
    criterion = FCOSCriterion(NUM_CLASSES)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    history = []
    for _ in range(8):
        loss = criterion(model(images), boxes, labels)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(loss.item())
    assert all(math.isfinite(v) for v in history)
    assert history[-1] < 0.6 * history[0], history
    assert sum(b < a for a, b in itertools.pairwise(history)) >= 6, history  # falls nearly every step


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_forward_and_criterion_do_not_sync_the_host() -> None:
    torch.manual_seed(0)
    model = fcos_r18(NUM_CLASSES, box_head="distribution").cuda().train()
    criterion = FCOSCriterion(NUM_CLASSES, class_weights=torch.full((NUM_CLASSES,), 2.0)).cuda()
    images, boxes, labels = tiny_batch(64)
    images, boxes, labels = images.cuda(), [b.cuda() for b in boxes], [t.cuda() for t in labels]
    criterion(model(images), boxes, labels)["loss"].backward()  # warm-up (allocator, cuDNN)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        losses = criterion(model(images), boxes, labels)
        losses["loss"].backward()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert torch.isfinite(losses["loss"]).item()


@pytest.mark.parametrize("layout", ["bare", "model", "state_dict", "ddp", "no_step_counters"])
def test_one_weights_option_takes_the_usual_file_layouts(layout, tmp_path):
    """``model.net.weights`` for every FCOS: a bare state dict, ``{"model": ...}`` (torchvision's
    reference scripts), ``{"state_dict": ...}``, DDP's ``module.`` prefix, no ``num_batches_tracked``."""
    from dfss.models.fcos import fcos_r18

    torch.manual_seed(0)
    source = fcos_r18(NUM_CLASSES, fpn_channels=32)
    state = source.state_dict()
    payload = {
        "bare": state,
        "model": {"model": state, "epoch": torch.tensor(3)},
        "state_dict": {"state_dict": state},
        "ddp": {f"module.{k}": v for k, v in state.items()},
        "no_step_counters": {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")},
    }[layout]
    path = tmp_path / "w.pth"
    torch.save(payload, path)
    torch.manual_seed(1)
    loaded = fcos_r18(NUM_CLASSES, fpn_channels=32, weights=path)
    for key, value in source.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(loaded.state_dict()[key], value), key


def test_a_weights_file_of_another_model_names_what_does_not_fit(tmp_path):
    from dfss.models.fcos import fcos_r18
    from dfss.models.weights import WeightsError

    path = tmp_path / "w.pth"
    torch.save(fcos_r18(NUM_CLASSES, fpn_channels=32).state_dict(), path)
    with pytest.raises(WeightsError, match=r"w\.pth does not fit FCOS: shape mismatches"):
        fcos_r18(NUM_CLASSES, fpn_channels=64, weights=path)
