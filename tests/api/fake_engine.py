"""A stand-in rules engine for API and service tests: the HTTP layer is under test, not the rules.

It flags a few well-known pairs the way the county rulebase does (same rule ids as the
seed fixtures expect where they exist) and can be told to fail, to exercise the
fail-open / fail-closed policy.
"""

from __future__ import annotations

import hashlib
import threading
import time
from typing import Any

from audit_engine.findings import Finding
from audit_engine.schema import PrescriptionFacts

# (ingredient a, ingredient b, rule id, level)
PAIRS = (
    ("辛伐他汀", "克拉霉素", "DDI-TABLE", 8),
    ("华法林", "阿司匹林", "DDI-WARFARIN-ASPIRIN", 5),
    ("氯吡格雷", "奥美拉唑", "DDI-CLOPIDOGREL-PPI", 3),
)


class FakeEngine:
    """Duck-types audit_engine.engine.Engine: version, evaluate, evaluate_versioned, swap."""

    def __init__(self, version: str = "fake-v1") -> None:
        self.version = version
        self.fail = False
        self.calls = 0
        self.hold = threading.Event()  # set: evaluations wait (a long review in progress)
        self.entered = threading.Event()  # set by an evaluation that started waiting
        self._lock = threading.Lock()

    def swap(self, compiled: Any) -> None:
        self.version = str(getattr(compiled, "version", compiled))

    def evaluate_versioned(self, facts: PrescriptionFacts, *, deadline: float | None = None
                           ) -> tuple[str, list[Finding]]:
        """(version that evaluated, findings), as audit_engine.engine.Engine answers; when
        ``hold`` is set, ``entered`` is set and the evaluation waits for ``hold`` to clear."""
        version = self.version
        if self.hold.is_set():
            self.entered.set()
            while self.hold.is_set():
                time.sleep(0.01)
        return version, self.evaluate(facts)

    def evaluate(self, facts: PrescriptionFacts) -> list[Finding]:
        with self._lock:
            self.calls += 1
        if self.fail:
            raise RuntimeError("injected engine failure")
        names = {str(i.get("name")): str(i.get("reference")) for i in facts.items if i.get("name")}
        out: list[Finding] = []
        for a, b, rule, level in PAIRS:
            if a in names and b in names:
                out.append(Finding(rule_id=rule, title=f"{a}与{b}相互作用", category="适宜性", subtype="相互作用",
                                   level=level, message=f"{a}与{b}合用存在相互作用风险", evidence="测试规则",
                                   implicated=(names[a], names[b]), suggestion=f"避免{a}与{b}合用"))
        for item in facts.items:
            days = item.get("days")
            if isinstance(days, (int, float)) and days > 7 and facts.prescription.get("type") == "门诊":
                out.append(Finding(rule_id="FORM-DAYS-OUTPATIENT", title="门诊处方超过7日用量", category="规范性",
                                   subtype="用量天数", level=3, message=f"{item.get('name')} 用药 {days} 天，超过门诊 7 日",
                                   evidence="处方管理办法第十九条", implicated=(str(item.get("reference")),)))
        return out


def fake_factory(path: str | None) -> FakeEngine:
    return FakeEngine("fake-" + hashlib.sha256(str(path).encode()).hexdigest()[:12] if path else "fake-v1")
