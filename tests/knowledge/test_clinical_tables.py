"""The issue 9 knowledge tables hold what the rules assume: valid renal bands that tighten as the
kidney worsens, enough renally cleared drugs, and non-daily schedules of drugs the dictionary knows."""

from __future__ import annotations

import functools
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from audit_engine import clinical, units
from audit_engine.knowledge.dictionary import load_dictionary
from audit_engine.lang.loader import load_rulebase
from audit_engine.lang.tables import TableData

RULEBASE = Path(__file__).resolve().parents[2] / "rulebase"
BAND = re.compile(r"^(CrCl|eGFR)<(\d+)$")


@functools.cache
def tables() -> dict[str, TableData]:
    return dict(load_rulebase(RULEBASE).tables)


def _amount(q: Any) -> float:
    return float(q.value)


def test_every_renal_band_is_a_label_the_facts_produce() -> None:
    for r in tables()["肾剂量分段"].rows:
        m = BAND.match(r["分段"])
        assert m and int(m.group(2)) in clinical.RENAL_CUTS, (r["_line"], r["分段"])


def test_renal_bands_cover_at_least_thirty_dictionary_drugs() -> None:
    names = load_dictionary().drug_names()
    drugs = {r["药品"] for r in tables()["肾剂量分段"].rows}
    assert len(drugs) >= 30
    assert drugs <= names, drugs - names
    for must in ("左氧氟沙星", "加巴喷丁", "别嘌醇", "二甲双胍", "阿昔洛韦", "普瑞巴林"):
        assert must in drugs


def test_a_worse_kidney_never_allows_a_larger_daily_dose() -> None:
    by_drug: dict[tuple[str, str], list[tuple[int, float]]] = defaultdict(list)
    for r in tables()["肾剂量分段"].rows:
        m = BAND.match(r["分段"])
        assert m is not None
        by_drug[(r["药品"], m.group(1))].append((int(m.group(2)), _amount(r["日上限"])))
    for key, bands in by_drug.items():
        limits = [limit for _, limit in sorted(bands)]  # lowest cut (worst kidney) first
        assert limits == sorted(limits), key


def test_each_drug_uses_one_estimate() -> None:
    estimates: dict[str, set[str]] = defaultdict(set)
    for r in tables()["肾剂量分段"].rows:
        estimates[r["药品"]].add(r["分段"].split("<")[0])
    assert {d: e for d, e in estimates.items() if len(e) > 1} == {}


def test_the_renal_table_no_longer_holds_dose_ceilings() -> None:
    assert {r["处置"] for r in tables()["肾功能"].rows} <= {"禁用", "慎用"}


def test_schedules_name_dictionary_drugs_with_their_non_daily_strength() -> None:
    d = load_dictionary()
    for r in tables()["给药方案"].rows:
        drug = d.by_name(r["药品"])
        assert drug is not None, r["药品"]
        assert 0 < r["频次上限"] < 1, r["_line"]
        threshold = _amount(r["剂量不低于"])
        strengths = [s.amount * units.lookup(s.unit).factor for s in drug.strengths
                     if units.lookup(s.unit).dimension == r["剂量不低于"].dimension]
        assert strengths and max(strengths) >= threshold, (r["药品"], threshold, strengths)


def test_weekly_alendronate_and_oral_methotrexate_are_blocked_when_daily() -> None:
    rows = {r["药品"]: r for r in tables()["给药方案"].rows}
    assert rows["甲氨蝶呤"]["等级"] >= 8 and rows["甲氨蝶呤"]["肿瘤除外"] is True
    assert rows["阿仑膦酸钠"]["等级"] >= 8 and _amount(rows["阿仑膦酸钠"]["剂量不低于"]) > 10  # 10 mg daily is a real regimen
