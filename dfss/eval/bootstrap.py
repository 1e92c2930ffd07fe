"""A bootstrap over test images for AP50: intervals for single-run figures and paired differences.

mAP is not a mean over images, so resampling images means re-accumulating COCO's precision. A
:class:`MatchRecord` keeps what that needs and nothing more, from one pycocotools ``evaluate()``
(IoU 0.5, all areas, up to 100 detections per image and class, as ``map50``): every detection's
image, class, score and whether it matched a ground-truth box (or is ignored), and the number of
counted ground-truth boxes per image and class. It is small (``matches50.npz`` beside an
evaluation's ``metrics.json``, about 12 bytes a detection), so it can be committed where
``predictions.json`` cannot.

A bootstrap sample is a count per image (how often it was drawn, multinomial); COCO's
accumulation is then a weighted one: detections sorted by score once, true and false positives
summed with their image's count, precision made monotone, read at COCO's 101 recall thresholds.
With every count 1 it is COCO's AP50 exactly (``tests/test_bootstrap.py`` checks it against
``COCOeval``). Two runs evaluated on the same images share the counts of each sample
(:func:`image_counts`), so their difference is paired image by image.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pycocotools.coco import COCO

from dfss.fileio import open_atomic

RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)
FILE_NAME = "matches50.npz"


@dataclass(frozen=True)
class MatchRecord:
    image_ids: np.ndarray  # [I] COCO image ids, sorted
    class_ids: np.ndarray  # [K] COCO category ids
    gt_counts: np.ndarray  # [I, K] counted (not ignored) ground-truth boxes
    det_image: np.ndarray  # [D] index into image_ids
    det_class: np.ndarray  # [D] index into class_ids
    det_score: np.ndarray  # [D]
    det_match: np.ndarray  # [D] bool: matched a ground-truth box at IoU 0.5
    det_ignore: np.ndarray  # [D] bool: matched an ignored (crowd) box: neither true nor false

    @classmethod
    def from_coco(
        cls, gt: COCO, results: Sequence[dict], image_ids: Sequence[int] | None = None
    ) -> MatchRecord:
        """Match ``results`` against ``gt`` with pycocotools (bbox, all areas, 100 detections)."""
        from pycocotools.cocoeval import COCOeval

        with contextlib.redirect_stdout(io.StringIO()):
            dt = gt.loadRes([dict(r) for r in results]) if results else COCO()
            evaluator = COCOeval(gt, dt, iouType="bbox")
            if image_ids is not None:
                evaluator.params.imgIds = sorted(image_ids)
            evaluator.params.iouThrs = np.array([0.5])
            evaluator.evaluate()
        params = evaluator.params
        images, classes = list(params.imgIds), list(params.catIds)
        gt_counts = np.zeros((len(images), len(classes)), dtype=np.int32)
        columns: dict[str, list] = {"image": [], "class": [], "score": [], "match": [], "ignore": []}
        max_det = params.maxDets[-1]
        # evalImgs is ordered [class][area][image]; area range 0 is "all"
        per_class = len(params.areaRng) * len(images)
        for k in range(len(classes)):
            for i in range(len(images)):
                entry = evaluator.evalImgs[k * per_class + i]
                if entry is None:
                    continue
                gt_counts[i, k] = int(np.count_nonzero(np.asarray(entry["gtIgnore"]) == 0))
                scores = np.asarray(entry["dtScores"][:max_det], dtype=np.float64)
                columns["image"].append(np.full(len(scores), i))
                columns["class"].append(np.full(len(scores), k))
                columns["score"].append(scores)
                columns["match"].append(np.asarray(entry["dtMatches"])[0, :max_det] > 0)
                columns["ignore"].append(np.asarray(entry["dtIgnore"])[0, :max_det].astype(bool))
        joined = {key: (np.concatenate(v) if v else np.zeros(0)) for key, v in columns.items()}
        return cls(
            image_ids=np.asarray(images, dtype=np.int64),
            class_ids=np.asarray(classes, dtype=np.int64),
            gt_counts=gt_counts,
            det_image=joined["image"].astype(np.int32),
            det_class=joined["class"].astype(np.int32),
            det_score=joined["score"].astype(np.float32),
            det_match=joined["match"].astype(bool),
            det_ignore=joined["ignore"].astype(bool),
        )

    def save(self, path: str | os.PathLike) -> None:
        with open_atomic(path, "wb") as f:
            np.savez_compressed(f, **{k: getattr(self, k) for k in self.__dataclass_fields__})

    @classmethod
    def load(cls, path: str | os.PathLike) -> MatchRecord:
        with np.load(path) as data:
            return cls(**{k: data[k] for k in cls.__dataclass_fields__})

    def ap50(self, counts: np.ndarray | None = None) -> np.ndarray:
        """``[B, K]`` AP50 per class for each row of image ``counts`` ``[B, I]`` (default: every image
        once, COCO's own AP50); ``nan`` for a class without counted ground truth in that sample."""
        if counts is None:
            counts = np.ones((1, len(self.image_ids)))
        counts = np.asarray(counts, dtype=np.float64)
        out = np.full((len(counts), len(self.class_ids)), np.nan)
        positives = counts @ self.gt_counts  # [B, K]
        for k in range(len(self.class_ids)):
            mine = np.flatnonzero((self.det_class == k) & ~self.det_ignore)
            order = mine[np.argsort(-self.det_score[mine], kind="mergesort")]
            weights = counts[:, self.det_image[order]]  # [B, D_k]
            tp = np.cumsum(weights * self.det_match[order], axis=1)
            fp = np.cumsum(weights * ~self.det_match[order], axis=1)
            for b in range(len(counts)):
                n_pos = positives[b, k]
                if n_pos <= 0:
                    continue
                out[b, k] = _interpolated_ap(tp[b], fp[b], n_pos)
        return out


def _interpolated_ap(tp: np.ndarray, fp: np.ndarray, n_pos: float) -> float:
    """COCOeval.accumulate's AP for one class at one IoU: precision made non-increasing, read at the
    101 recall thresholds (0 past the last recall reached)."""
    if tp.size == 0:
        return 0.0
    recall = tp / n_pos
    precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    index = np.searchsorted(recall, RECALL_THRESHOLDS, side="left")
    q = np.zeros(len(RECALL_THRESHOLDS))
    inside = index < len(recall)
    q[inside] = precision[index[inside]]
    return float(q.mean())


def image_counts(num_images: int, samples: int = 1000, seed: int = 0) -> np.ndarray:
    """``[samples, num_images]`` bootstrap counts: how often each image is drawn in each resample."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(num_images, np.full(num_images, 1.0 / num_images), size=samples)


def mean_over(ap: np.ndarray, columns: np.ndarray | None = None) -> np.ndarray:
    """``[B]`` mean AP50 over the classes in ``columns`` (default all) that have ground truth in
    each sample (COCO leaves out classes without ground truth)."""
    picked = ap if columns is None else ap[:, columns]
    with np.errstate(invalid="ignore"), _quiet_nanmean():
        return np.nanmean(picked, axis=1)


@contextlib.contextmanager
def _quiet_nanmean():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-nan row is nan, said in the result
        yield


def percentile_interval(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The central ``level`` interval of bootstrap ``samples`` (nan samples left out)."""
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return math.nan, math.nan
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


def same_images(*records: MatchRecord) -> None:
    """A ValueError unless the records were evaluated on the same images and classes (pairing)."""
    first = records[0]
    for other in records[1:]:
        if not np.array_equal(first.image_ids, other.image_ids) or not np.array_equal(
            first.class_ids, other.class_ids
        ):
            raise ValueError("the records were not evaluated on the same images and classes: no pairing")
