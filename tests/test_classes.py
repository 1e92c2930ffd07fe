import pytest
import torch

from dfss.data.classes import ClassTable
from dfss.data.errors import ClassTableError
from tests.helpers.data import CATEGORIES


def test_labels_follow_ascending_coco_id_whatever_the_json_order():
    table = ClassTable.from_categories(CATEGORIES)
    assert table.coco_ids == [3, 7, 11]
    assert table.names == ["knife", "phone", "keys"]
    assert [c.label for c in table.known] == [0, 1, 2]
    assert table.label_of(11) == 2
    assert table.num_classes == 3


def test_unknown_category_is_not_a_training_class_but_stays_listed():
    table = ClassTable.from_categories(CATEGORIES)
    assert table.unknown_ids == [20]
    assert table.unknown[0].label == -1
    with pytest.raises(KeyError):
        table.label_of(20)
    assert table.coco_ids_of("unknown") == [20]
    assert table.coco_ids_of("normal") == [7, 11]


def test_class_weights_and_dangerous_mask_come_from_supercategories():
    table = ClassTable.from_categories(CATEGORIES)
    assert table.dangerous_mask().tolist() == [True, False, False]
    assert torch.equal(table.class_weights(2.0), torch.tensor([2.0, 1.0, 1.0]))
    assert torch.equal(table.class_weights(1.0), torch.ones(3))


def test_supercategory_names_come_from_config():
    cats = [
        {"id": 1, "name": "gun", "supercategory": "threat"},
        {"id": 2, "name": "cup", "supercategory": "benign"},
        {"id": 3, "name": "?", "supercategory": "novel"},
    ]
    table = ClassTable.from_categories(
        cats, dangerous_supercategories=["threat"], unknown_supercategories=["novel"]
    )
    assert table.class_weights(4.0).tolist() == [4.0, 1.0]
    assert table.unknown_ids == [3]


def test_missing_supercategory_names_the_category():
    cats = [{"id": 5, "name": "knife", "supercategory": "dangerous"}, {"id": 9, "name": "phone"}]
    with pytest.raises(ClassTableError, match=r"ann\.json: category id 9 \('phone'\) has no 'supercategory'"):
        ClassTable.from_categories(cats, source="ann.json")


def test_dangerous_supercategory_that_matches_nothing_is_an_error():
    with pytest.raises(ClassTableError, match=r"dangerous supercategory \['weapons'\] matches no category"):
        ClassTable.from_categories(CATEGORIES, dangerous_supercategories=["weapons"])


def test_duplicate_category_id_is_an_error():
    cats = [*CATEGORIES, {"id": 7, "name": "tablet", "supercategory": "normal"}]
    with pytest.raises(ClassTableError, match="duplicate category id 7"):
        ClassTable.from_categories(cats)


def test_negative_weight_is_refused():
    with pytest.raises(ValueError, match="dangerous_weight"):
        ClassTable.from_categories(CATEGORIES).class_weights(-1.0)
