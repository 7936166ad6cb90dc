"""Helpers for the rule-language tests: write rule files into a temporary folder and load them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from audit_engine.errors import RulebaseError
from audit_engine.lang import nodes as n
from audit_engine.lang.checker import Vocabulary
from audit_engine.lang.loader import load_rulebase
from audit_engine.schema import PrescriptionFacts

# A small, fixed vocabulary so checker tests do not depend on the shipped dictionary's contents.
VOCAB = Vocabulary(
    ingredients=frozenset({"辛伐他汀", "氨氯地平", "克拉霉素", "布洛芬", "华法林", "阿司匹林", "阿莫西林", "胰岛素"}),
    classes=frozenset({"他汀类", "非甾体抗炎药", "抗菌药物", "青霉素类", "抗凝药", "钙通道阻滞剂"}),
    drugs=frozenset({"辛伐他汀", "氨氯地平", "克拉霉素", "布洛芬", "华法林", "阿司匹林", "阿莫西林", "胰岛素"}),
)

RULE_HEAD = '类别 适宜性.测试 等级 5 依据 "测试依据"'


def rule(rid: str, trigger: str, message: str = "触发", extra: str = "") -> str:
    """A complete rule around ``trigger`` (a 当/对每个/对每对 clause)."""
    return f'规则 {rid} "{rid} 标题" {{ {RULE_HEAD} {extra} {trigger} 提示 "{message}" }}\n'


@pytest.fixture
def write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """Write files under a temporary folder (which becomes the working directory)."""
    monkeypatch.chdir(tmp_path)

    def _write(name: str, text: str) -> Path:
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
        return p

    return _write


@pytest.fixture
def load(write: Callable[..., Path]) -> Callable[..., n.Rulebase]:
    """Write ``main.rules`` (plus extra files) and load it with the fixed vocabulary."""

    def _load(text: str, **files: str) -> n.Rulebase:
        for name, body in files.items():
            write(name.replace("__", "/"), body)
        return load_rulebase(write("main.rules", text), vocabulary=VOCAB)

    return _load


@pytest.fixture
def errors(load: Callable[..., n.Rulebase]) -> Callable[..., list[str]]:
    """The rendered diagnostics of loading ``main.rules`` (the load must fail)."""

    def _errors(text: str, **files: str) -> list[str]:
        with pytest.raises(RulebaseError) as info:
            load(text, **files)
        return [d.render() for d in info.value.diagnostics]

    return _errors


def item(n_: int, **fields: Any) -> dict[str, Any]:
    """An item fact dict with id and reference."""
    return {"id": f"i{n_}", "reference": f"MedicationRequest/i{n_}", **fields}


def facts(items: list[dict[str, Any]] | None = None, **entities: Any) -> PrescriptionFacts:
    return PrescriptionFacts(items=items or [], **entities)
