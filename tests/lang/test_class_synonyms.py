"""A class written the way it is said on the ward is answered with the dictionary's name."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from audit_engine.knowledge.dictionary import load_dictionary
from audit_engine.lang.synonyms import CLASS_SYNONYMS
from audit_engine.lang.tables import hint_for

from .conftest import rule

Errors = Callable[..., list[str]]


def test_every_synonym_names_classes_of_the_shipped_dictionary() -> None:
    classes = set(load_dictionary().class_names())
    for word, targets in CLASS_SYNONYMS.items():
        assert set(targets) <= classes, (word, set(targets) - classes)
        assert word not in classes, f"{word} is itself a class: it needs no synonym"


def test_antibiotic_suggests_antimicrobials_not_the_nearest_spelling(errors: Errors) -> None:
    (msg,) = errors(rule("R1", '对每个 药品 满足 药品.类别 包含 "抗生素"'))
    assert "药品字典中没有药物类别“抗生素” (是否应为“抗菌药物”？)" in msg
    assert "维生素" not in msg


def test_an_ambiguous_everyday_name_offers_each_meaning() -> None:
    classes = load_dictionary().class_names()
    assert hint_for("消炎药", classes) == "是否应为“抗菌药物”或“非甾体抗炎药”？"


@pytest.mark.parametrize(("word", "expected"), [("PPI", "质子泵抑制剂"), ("ppi", "质子泵抑制剂"), ("降脂药", "调脂药")])
def test_abbreviations_and_everyday_names(word: str, expected: str) -> None:
    assert hint_for(word, load_dictionary().class_names()) == f"是否应为“{expected}”？"


def test_a_synonym_whose_class_is_not_among_the_choices_falls_back_to_spelling() -> None:
    assert hint_for("抗生素", ["维生素类"]) == "是否应为“维生素类”？"
