"""Validate a COCO json and its image folder before training: ``dfss-validate ANN.json --images DIR``.

Bad input gets a clear error or a counted, reported fix — never silence. Every problem of the file is
found in one pass and reported with the file, image id and annotation id it concerns. With
``on_error="fail"`` (default) anything that loses data raises :class:`DataValidationError`; with
``on_error="skip"`` the offending images/annotations are dropped and listed in the report. Lossless
fixes (a box sticking out of its image is clipped) are applied and counted in both modes. Fatal
problems (unparsable json, missing supercategory, duplicate category id) raise in both modes.

The checks themselves live in :mod:`dfss.data.validate_checks`; this module assembles the report,
the cleaned dataset and the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dfss.data.classes import DEFAULT_UNKNOWN_SUPERCATEGORIES
from dfss.data.errors import DataError
from dfss.data.validate_checks import (
    BOX_ENTIRELY_OUTSIDE,
    BOX_OUTSIDE_IMAGE,
    CLIPPED,
    DEGENERATE_BOX,
    DROPPED_ANNOTATION,
    DROPPED_IMAGE,
    DUPLICATE_ANNOTATION_ID,
    DUPLICATE_CATEGORY_ID,
    DUPLICATE_IMAGE_ID,
    FATAL,
    IMAGE_CHECKS,
    KINDS,
    MALFORMED_JSON,
    MISSING_IMAGE,
    MISSING_SUPERCATEGORY,
    ORPHAN_ANNOTATION,
    SIZE_MISMATCH,
    UNKNOWN_CATEGORY,
    UNREADABLE_IMAGE,
    Problem,
    check_annotations,
    check_categories,
    check_image_entries,
    check_image_files,
    load_coco_json,
)
from dfss.fileio import write_json_atomic

__all__ = [
    "BOX_ENTIRELY_OUTSIDE",
    "BOX_OUTSIDE_IMAGE",
    "CLIPPED",
    "DEGENERATE_BOX",
    "DROPPED_ANNOTATION",
    "DROPPED_IMAGE",
    "DUPLICATE_ANNOTATION_ID",
    "DUPLICATE_CATEGORY_ID",
    "DUPLICATE_IMAGE_ID",
    "FATAL",
    "KINDS",
    "MALFORMED_JSON",
    "MISSING_IMAGE",
    "MISSING_SUPERCATEGORY",
    "ORPHAN_ANNOTATION",
    "SIZE_MISMATCH",
    "UNKNOWN_CATEGORY",
    "UNREADABLE_IMAGE",
    "DataValidationError",
    "Problem",
    "ValidationReport",
    "ValidationResult",
    "main",
    "validate_coco",
]

ON_ERROR = ("fail", "skip")
_STAGE_OF_ACTION = {FATAL: 0, DROPPED_IMAGE: 1, DROPPED_ANNOTATION: 2, CLIPPED: 2}


@dataclass(frozen=True)
class ValidationReport:
    """Everything the validator found, plus what the cleaned dataset keeps."""

    ann_file: str
    image_dir: str
    on_error: str
    problems: tuple[Problem, ...]
    num_images: int  # in the input json
    num_annotations: int
    num_images_kept: int  # in the cleaned dataset (what skip mode keeps)
    num_annotations_kept: int
    num_negative_images: int  # images kept with no annotations
    num_unknown_annotations: int = 0  # kept annotations whose category has an unknown supercategory
    num_images_emptied: int = 0  # kept images that had annotations in the json but lost them all

    def counts(self) -> dict[str, int]:
        """Problems per kind, for the kinds that occur, in :data:`KINDS` order."""
        counter = Counter(p.kind for p in self.problems)
        return {kind: counter[kind] for kind in KINDS if counter[kind]}

    @property
    def loses_data(self) -> bool:
        return any(p.loses_data for p in self.problems)

    @property
    def fatal(self) -> bool:
        return any(p.action == FATAL for p in self.problems)

    @property
    def fails(self) -> bool:
        """Whether :func:`validate_coco` raises for this report."""
        return self.fatal or (self.on_error == "fail" and self.loses_data)

    def summary(self, max_examples: int = 5) -> str:
        """Human-readable totals, then per kind its count, action and first examples."""
        kept = "would keep with on_error=skip" if self.fails and not self.fatal else "kept"
        lines = [
            f"validated {self.ann_file} (images in {self.image_dir}), on_error={self.on_error}",
            f"  images:      {self.num_images} in json, {self.num_images_kept} {kept} "
            f"({self.num_negative_images} without annotations, kept as negatives)",
            f"  annotations: {self.num_annotations} in json, {self.num_annotations_kept} {kept} "
            f"({self.num_unknown_annotations} of an unknown supercategory)",
        ]
        if self.num_images_emptied:
            lines.append(
                f"  note: {self.num_images_emptied} kept images lost all their annotations to the drops "
                "and now count as negatives; check they really hold no object"
            )
        if not self.problems:
            lines.append("  no problems found")
            return "\n".join(lines)
        num_losing = sum(p.loses_data for p in self.problems)
        num_fatal = sum(p.action == FATAL for p in self.problems)
        lines.append(
            f"  problems:    {len(self.problems)} ({num_fatal} fatal, {num_losing - num_fatal} losing data, "
            f"{len(self.problems) - num_losing} fixed without loss)"
        )
        for kind, count in self.counts().items():
            of_kind = [p for p in self.problems if p.kind == kind]
            actions = ", ".join(sorted({p.action for p in of_kind}))
            lines.append(f"  {kind}: {count} [{actions}]")
            lines.extend(f"    - {p.message}" for p in of_kind[:max_examples])
            if count > max_examples:
                lines.append(f"    ... and {count - max_examples} more (all listed in the json report)")
        verdict = "FAILED" if self.fails else ("OK with fixes" if self.problems else "OK")
        lines.append(f"  result: {verdict}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Json-serialisable: totals, counts per kind and every problem."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "problems"}
        return {
            **fields,
            "fatal": self.fatal,
            "loses_data": self.loses_data,
            "counts": self.counts(),
            "problems": [dataclasses.asdict(p) for p in self.problems],
        }

    def write_json(self, path: str | os.PathLike) -> None:
        write_json_atomic(path, self.to_dict(), indent=1)


@dataclass(frozen=True)
class ValidationResult:
    dataset: dict  # the cleaned COCO dict: boxes clipped; in skip mode data-losing entries removed
    report: ValidationReport


class DataValidationError(DataError):
    """Raised when validation fails; ``str()`` is the report summary plus a hint on what to do."""

    def __init__(self, report: ValidationReport) -> None:
        self.report = report
        if report.fatal:
            self.hint = "fix the json: fatal problems cannot be skipped (on_error=skip does not help)"
        else:
            self.hint = (
                "fix the data, or set on_error=skip "
                "(data.on_error=skip; --on-error skip on the command line) "
                "to drop them with a report"
            )
        super().__init__(f"{report.summary()}\n{self.hint}")


def validate_coco(
    ann_file: str | os.PathLike,
    image_dir: str | os.PathLike,
    *,
    on_error: str = "fail",
    image_check: str = "decode",
    num_workers: int = 0,
    unknown_supercategories: Sequence[str] = DEFAULT_UNKNOWN_SUPERCATEGORIES,
) -> ValidationResult:
    """Check a COCO json and its images; return the cleaned dataset and the report.

    ``image_check``: ``"decode"`` fully decodes every image (catches truncated files), ``"header"``
    reads only the size, ``"none"`` does not touch the image files at all. ``num_workers > 0`` runs
    the image checks on that many threads; the report is the same whatever the count.

    Raises :class:`DataValidationError` if anything is fatal, or if ``on_error == "fail"`` and
    anything loses data; :class:`DataError` if the json file or the image folder does not exist.
    """
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
    if image_check not in IMAGE_CHECKS:
        raise ValueError(f"image_check must be one of {IMAGE_CHECKS}, got {image_check!r}")
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    ann_path, image_path = Path(ann_file), Path(image_dir)
    if not ann_path.is_file():
        raise DataError(f"annotation file not found: {ann_path}")
    if image_check != "none" and not image_path.is_dir():
        raise DataError(f"image folder not found: {image_path} (annotation file {ann_path})")
    src = str(ann_path)

    def report_of(problems: list[Problem], **totals: int) -> ValidationReport:
        problems = sorted(problems, key=_problem_order)  # stable: per-id order of the checks is kept
        return ValidationReport(src, str(image_path), on_error, tuple(problems), **totals)

    data, problems = load_coco_json(ann_path)
    if data is None:
        empty = dict.fromkeys(("num_images", "num_annotations", "num_images_kept", "num_annotations_kept"), 0)
        raise DataValidationError(report_of(problems, **empty, num_negative_images=0))

    supercategory_of, problems = check_categories(data["categories"], src=src)
    images, declared_image_ids, image_problems = check_image_entries(data["images"], src=src)
    file_problems = check_image_files(
        images.values(), image_path, image_check=image_check, num_workers=num_workers
    )
    checked = check_annotations(
        data["annotations"],
        src=src,
        images=images,
        declared_image_ids=declared_image_ids,
        category_ids=supercategory_of.keys(),
    )
    problems += image_problems + file_problems + checked.problems

    bad_files = {p.image_id for p in file_problems}
    kept_images = [img for img in images.values() if img["id"] not in bad_files]
    kept_ids = {img["id"] for img in kept_images}
    kept_anns = [ann for ann in checked.kept if ann["image_id"] in kept_ids]
    annotated_ids = {ann["image_id"] for ann in kept_anns}
    ids_in_json = {a.get("image_id") for a in data["annotations"] if isinstance(a, dict)}
    unknown = set(unknown_supercategories)
    report = report_of(
        problems,
        num_images=len(data["images"]),
        num_annotations=len(data["annotations"]),
        num_images_kept=len(kept_images),
        num_annotations_kept=len(kept_anns),
        num_negative_images=len(kept_ids - annotated_ids),
        num_unknown_annotations=sum(supercategory_of[a["category_id"]] in unknown for a in kept_anns),
        num_images_emptied=len((kept_ids - annotated_ids) & ids_in_json),
    )
    if report.fails:
        raise DataValidationError(report)
    return ValidationResult({**data, "images": kept_images, "annotations": kept_anns}, report)


def _problem_order(p: Problem) -> tuple:
    """Fatal first, then image problems by image id, then annotation problems by annotation id."""
    stage = _STAGE_OF_ACTION[p.action]
    key_id = p.image_id if stage == 1 else p.ann_id if stage == 2 else None
    return (stage, key_id is None, key_id if key_id is not None else 0)


# ---- command line ------------------------------------------------------------------------------
_EPILOG = """\
example:
  dfss-validate data/train.json --images data/images --on-error skip \\
      --report runs/train_validation.json --write-clean data/train_clean.json

exit codes: 0 clean, only lossless fixes (clipped boxes), or problems dropped with --on-error skip;
            1 validation failed (fatal problem, or data would be lost with --on-error fail);
            2 usage error (bad option, missing json file or image folder).
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dfss-validate",
        description="Check a COCO json and its images: report every problem, "
        "optionally write a cleaned json.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("ann_file", metavar="ANN.json", help="COCO annotation file")
    parser.add_argument("--images", required=True, metavar="DIR", help="folder the file_name entries are in")
    parser.add_argument(
        "--on-error",
        choices=ON_ERROR,
        default="fail",
        help="fail on anything that loses data (default), or drop it and report",
    )
    parser.add_argument(
        "--image-check",
        choices=IMAGE_CHECKS,
        default="decode",
        help="decode every image fully (default, catches truncated files), read headers only, or skip",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=min(8, os.cpu_count() or 1),
        metavar="N",
        help="threads for the image checks (default: %(default)s; 0 runs them in this thread)",
    )
    parser.add_argument(
        "--unknown-supercategories",
        nargs="+",
        default=list(DEFAULT_UNKNOWN_SUPERCATEGORIES),
        metavar="NAME",
        help="supercategories counted as 'unknown' in the summary (default: unknown)",
    )
    parser.add_argument(
        "--max-examples",
        type=int,
        default=5,
        metavar="N",
        help="examples printed per problem kind (default: 5)",
    )
    parser.add_argument("--report", metavar="PATH", help="write the full report (every problem) as json")
    parser.add_argument(
        "--write-clean", metavar="PATH", help="write the cleaned json (only if validation passes)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """The ``dfss-validate`` command; returns the exit code."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    if args.workers < 0:
        print("dfss-validate: error: --workers must be >= 0", file=sys.stderr)
        return 2
    try:
        result = validate_coco(
            args.ann_file,
            args.images,
            on_error=args.on_error,
            image_check=args.image_check,
            num_workers=args.workers,
            unknown_supercategories=tuple(args.unknown_supercategories),
        )
    except DataValidationError as exc:
        print(exc.report.summary(args.max_examples))
        print(exc.hint)
        if args.report:
            exc.report.write_json(args.report)
            print(f"report written to {args.report}")
        if args.write_clean:
            print(f"validation failed: {args.write_clean} not written", file=sys.stderr)
        return 1
    except DataError as exc:  # the json file or the image folder does not exist
        print(f"dfss-validate: error: {exc}", file=sys.stderr)
        return 2
    print(result.report.summary(args.max_examples))
    if args.report:
        result.report.write_json(args.report)
        print(f"report written to {args.report}")
    if args.write_clean:
        write_json_atomic(args.write_clean, result.dataset, indent=1)
        print(f"cleaned json written to {args.write_clean}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
