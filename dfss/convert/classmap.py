"""The class map: which class names a converted set has, in which order, and their supercategories.

Format (yaml), an ordered mapping from class name to supercategory under ``classes``::

    classes:
      knife: dangerous
      gun: dangerous
      phone: normal
      unknown: unknown

* COCO category ids are ``1..K`` in file order; ``supercategory`` is the value.
* For YOLO label files, class index ``i`` (0-based) is the i-th entry.
* Names are matched exactly (case and spaces count). Quote names that yaml would read as something
  else (``"yes"``, ``"1"``, ``"null"``). Duplicate names and empty supercategories are errors.
* The supercategories DFSS training understands are ``dangerous``, ``normal`` and ``unknown``
  (unknown categories are not training classes; they are kept for evaluation).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from dfss.data.errors import DataError

FORMAT_HINT = "expected 'classes:' followed by indented 'name: supercategory' lines"

FORMAT_HELP = """class map yaml: an ordered mapping from class name to supercategory, e.g.
  classes:
    knife: dangerous
    gun: dangerous
    phone: normal
    unknown: unknown
COCO ids are 1..K in this order; YOLO class index i (0-based) is the i-th entry."""


@dataclass(frozen=True)
class ClassMap:
    """Class names in COCO-id order (id = position + 1) with one supercategory each."""

    names: tuple[str, ...]
    supercategories: tuple[str, ...]
    source: str = "<class map>"

    def __post_init__(self) -> None:
        if len(self.names) != len(self.supercategories):
            raise DataError(
                f"{self.source}: {len(self.names)} names but {len(self.supercategories)} supercategories"
            )
        if not self.names:
            raise DataError(f"{self.source}: the class map is empty")
        seen: set[str] = set()
        for name, sup in zip(self.names, self.supercategories, strict=True):
            if not isinstance(name, str) or not name.strip():
                raise DataError(
                    f"{self.source}: class name {name!r} is not a non-empty string (quote it in yaml)"
                )
            if not isinstance(sup, str) or not sup.strip():
                raise DataError(
                    f"{self.source}: class '{name}' has supercategory {sup!r}; it needs a non-empty string"
                )
            if name in seen:
                raise DataError(f"{self.source}: duplicate class name '{name}'")
            seen.add(name)

    @classmethod
    def from_mapping(cls, mapping: Mapping, *, source: str = "<class map>") -> ClassMap:
        """Build from ``{name: supercategory}`` in insertion order."""
        return cls(tuple(mapping.keys()), tuple(mapping.values()), source)

    @classmethod
    def from_categories(cls, categories: Iterable[Mapping], *, source: str = "<categories>") -> ClassMap:
        """Build from COCO ``categories`` ordered by ascending id (the order YOLO indices follow)."""
        entries = []
        for cat in categories:
            if "id" not in cat or "name" not in cat:
                raise DataError(f"{source}: category {dict(cat)!r} needs 'id' and 'name'")
            entries.append((int(cat["id"]), str(cat["name"]), cat.get("supercategory")))
        entries.sort(key=lambda entry: entry[0])
        ids = [cat_id for cat_id, _, _ in entries]
        if len(set(ids)) != len(ids):
            raise DataError(f"{source}: duplicate category ids in {ids}")
        return cls(tuple(n for _, n, _ in entries), tuple(s for _, _, s in entries), source)

    def index_by_name(self) -> dict[str, int]:
        """``{name: 0-based index}``; the COCO id is index + 1."""
        return {name: i for i, name in enumerate(self.names)}

    def categories(self) -> list[dict]:
        """COCO ``categories`` entries, ids ``1..K``."""
        return [
            {"id": i + 1, "name": name, "supercategory": sup}
            for i, (name, sup) in enumerate(zip(self.names, self.supercategories, strict=True))
        ]

    def to_yaml(self) -> str:
        """The yaml text :func:`load_class_map` reads back to an equal map."""
        body = {"classes": dict(zip(self.names, self.supercategories, strict=True))}
        return yaml.safe_dump(body, sort_keys=False, allow_unicode=True, default_flow_style=False)


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that rejects duplicate mapping keys (PyYAML keeps the last one silently)."""


def _construct_unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict:
    loader.flatten_mapping(node)
    seen: set = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
        except TypeError:  # unhashable key: construct_mapping reports it
            continue
        if duplicate:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def parse_class_map(text: str, *, source: str = "<class map>") -> ClassMap:
    """Parse the yaml text of a class map; :class:`DataError` naming ``source`` when it is invalid."""
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())
        raise DataError(f"{source}: invalid class map yaml: {detail}") from None
    if not isinstance(data, dict) or "classes" not in data:
        raise DataError(f"{source}: a class map needs a top-level 'classes' mapping; {FORMAT_HINT}")
    extra = sorted(str(k) for k in data if k != "classes")
    if extra:
        raise DataError(f"{source}: unexpected top-level keys {extra}; only 'classes' is read")
    classes = data["classes"]
    if not isinstance(classes, dict):
        raise DataError(
            f"{source}: 'classes' must be a mapping of name: supercategory, "
            f"got {type(classes).__name__}; {FORMAT_HINT}"
        )
    for name, sup in classes.items():
        if not isinstance(name, str):
            raise DataError(
                f"{source}: class name {name!r} is a {type(name).__name__}, not a string; quote it"
            )
        if not isinstance(sup, str):
            raise DataError(
                f"{source}: class '{name}' has supercategory {sup!r}; it needs a non-empty string"
            )
    return ClassMap.from_mapping(classes, source=source)


def load_class_map(path: str | Path) -> ClassMap:
    """Read and validate a class map yaml file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"cannot read class map {path}: {exc.strerror or exc}") from None
    return parse_class_map(text, source=str(path))
