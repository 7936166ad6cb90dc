"""Test cases written in rule files: a prescription in brief -> PrescriptionFacts, and running them.

A brief is a list of words per entity (``患者 年龄 64 岁 体重 60 kg 妊娠``). A field name takes
the value words its type needs (a number and unit, a word, or quoted strings); a bare enum
value sets its field (``门诊``, ``村卫生室``, ``住院医师``, ``女``); a bare boolean field means
true (``是``/``否`` may follow). The first word of ``药品`` is the drug name, resolved through
the drug dictionary; then a dose (``40 mg``), a frequency (``每日1次``, ``q8h``, ``bid`` ...),
days (``7 天``), a route (``口服``) and flags (``按需``, ``超量理由``). The daily dose is dose ×
frequency, per-kg doses follow when the weight is known, the population band from the age.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from audit_engine import dosing, schema, units
from audit_engine.errors import Diagnostic
from audit_engine.findings import Finding
from audit_engine.lang import nodes as n
from audit_engine.lang.tables import hint_for, source_line

_NUM_UNIT = re.compile(r"^(\d+(?:\.\d+)?)(.*)$")
_TRUE_WORDS = {"是": True, "true": True, "否": False, "false": False}


def frequency_word(word: str) -> tuple[float | None, bool] | None:
    """(per day, prn) for a frequency word, or None if the word is not one."""
    if _NUM_UNIT.match(word) or word in ("是", "否"):
        return None
    reading = dosing.frequency_from_text(word)
    if reading is None:
        return None
    return reading.per_day, reading.prn


def _population(age_days: int, age_years: int) -> str:
    from audit_engine.clinical import population

    return population(age_days, age_years)


@dataclass
class _Words:
    """A cursor over a brief's words, with diagnostics."""

    words: tuple[n.Word, ...]
    diags: list[Diagnostic]
    i: int = 0

    def peek(self) -> n.Word | None:
        return self.words[self.i] if self.i < len(self.words) else None

    def take(self) -> n.Word | None:
        w = self.peek()
        self.i += w is not None
        return w

    def error(self, w: n.Word | n.Brief | n.TestCase | n.Expectation, message: str, hint: str | None = None) -> None:
        s = w.span
        end = s.end_col if s.end_line == s.line and s.end_col > s.col else None
        self.diags.append(Diagnostic(s.file, s.line, s.col, message, source_line(s.file, s.line), hint, end))

    def skip_values(self) -> None:
        """After an unknown word, skip the values that belonged to it (numbers, units, strings)."""
        while (w := self.peek()) is not None and (w.quoted or _NUM_UNIT.match(w.text) or w.text in units.UNITS):
            self.i += 1

    def quantity(self, after: n.Word) -> tuple[float, str | None] | None:
        """A number with an optional unit (attached ``40mg`` or as the next word)."""
        w = self.take()
        m = _NUM_UNIT.match(w.text) if w is not None and not w.quoted else None
        if w is None or m is None:
            self.error(w or after, f"“{after.text}”后应为数值")
            return None
        unit = m.group(2) or None
        nxt = self.peek()
        if unit is None and nxt is not None and not nxt.quoted and nxt.text in units.UNITS:
            unit = self.take().text  # type: ignore[union-attr]
        return float(m.group(1)), unit


def _enum_owner(entity: str, word: str) -> schema.Field | None:
    for f in schema.FIELDS:
        if f.entity == entity and f.type == "enum" and word in f.values:
            return f
    return None


_SINGLE = ("patient", "prescription", "prescriber", "institution")


def _read_fields(entity: str, cur: _Words, out: dict[str, Any], brief: n.Brief,
                 others: dict[str, dict[str, Any]] | None = None) -> None:
    """Fill ``out`` (the entity's fact dict) from the remaining words of a brief. A word that
    is no field of ``entity`` but of exactly one other single entity goes there."""
    while (w := cur.take()) is not None:
        target_entity, target = entity, out
        owner = _enum_owner(entity, w.text) if not w.quoted else None
        f = schema.field_of(entity, w.text) if not w.quoted else None
        if owner is None and f is None and not w.quoted and others:
            found = [(e, _enum_owner(e, w.text), schema.field_of(e, w.text)) for e in _SINGLE if e != entity]
            found = [x for x in found if x[1] is not None or x[2] is not None]
            if len(found) == 1:
                target_entity, owner, f = found[0]
                target = others[target_entity]
        if owner is not None:
            target[owner.name] = w.text
            continue
        if f is None:
            cur.error(w, f"未知的{schema.ENTITIES[entity]}信息“{w.text}”", hint_for(w.text, schema.field_names(entity)))
            cur.skip_values()
            continue
        _read_value(f, w, cur, target)


def _read_value(f: schema.Field, w: n.Word, cur: _Words, out: dict[str, Any]) -> None:
    if f.type == "bool":
        nxt = cur.peek()
        if nxt is not None and not nxt.quoted and nxt.text in _TRUE_WORDS:
            cur.take()
            out[f.name] = _TRUE_WORDS[nxt.text]
        else:
            out[f.name] = True
        return
    if f.type == "textset":
        values: list[str] = []
        while (nxt := cur.peek()) is not None and nxt.quoted:
            values.append(nxt.text)
            cur.take()
        if not values:
            cur.error(w, f"“{w.text}”后应为带引号的文字")
        out[f.name] = sorted(set(out.get(f.name, [])) | set(values))
        return
    if f.type in ("text", "enum"):
        v = cur.take()
        if v is None:
            cur.error(w, f"“{w.text}”后缺少取值")
            return
        if f.type == "enum" and v.text not in f.values:
            cur.error(v, f"“{v.text}”不是“{f.zh}”的取值，可选：{' / '.join(f.values)}", hint_for(v.text, f.values))
            return
        out[f.name] = v.text
        return
    q = cur.quantity(w)
    if q is None:
        return
    value, unit = q
    if f.variants:  # age
        _set_age(value, unit or "岁", w, cur, out)
        return
    if unit is not None and f.unit is not None:
        try:
            value = units.convert(value, unit, f.unit)
        except units.UnitError as err:
            cur.error(w, f"“{f.zh}”的单位应与 {f.unit} 同类：{err}")
            return
    out[f.name] = int(value) if f.type == "int" else value


def _set_age(value: float, unit: str, w: n.Word, cur: _Words, out: dict[str, Any]) -> None:
    try:
        u = units.lookup(unit)
    except units.UnitError:
        cur.error(w, f"未知的年龄单位“{unit}”", hint_for(unit, ["岁", "月", "天", "周"]))
        return
    if u.dimension == "age_years":
        days = int(value * 365.25)
        months = int(value * 12)
    elif u.dimension == "age_months":
        days, months = int(value * 30.44), int(value)
    elif u.dimension == "time":
        days = int(value * u.factor)
        months = int(days / 30.44)
    else:
        cur.error(w, f"年龄的单位应为 岁 / 月 / 天，不能是“{unit}”")
        return
    out.update(age_years=months // 12, age_months=months, age_days=days)


def _read_item(brief: n.Brief, index: int, cur: _Words, dictionary: Any | None,
               patient: dict[str, Any]) -> dict[str, Any]:
    item: dict[str, Any] = {"id": f"item{index}", "reference": f"MedicationRequest/item{index}"}
    name = cur.take()
    if name is None:
        cur.error(brief, "“药品”后应写药品名称")
        return item
    # A name with a form word (阿莫西林胶囊) narrows the drug to that form, as in real input.
    drug = (dictionary.by_name(name.text) or dictionary.resolve([], text=name.text)) if dictionary is not None else None
    if dictionary is not None and drug is None:
        cur.error(name, f"药品字典中没有“{name.text}”", hint_for(name.text, dictionary.drug_names()))
    if drug is not None:
        item.update(drug.item_fields())
    else:
        item["name"] = name.text
    dose: tuple[str, float] | None = None
    per_day: float | None = None
    while (w := cur.take()) is not None:
        m = _NUM_UNIT.match(w.text) if not w.quoted else None
        if m is not None:
            cur.i -= 1
            q = cur.quantity(w)
            if q is None:
                continue
            value, unit = q
            dim = units.UNITS[unit].dimension if unit in units.UNITS else None
            if dim == "time":
                item["days"] = units.convert(value, unit or "天", "天")
            elif dim is not None and unit is not None:
                dose = drug.canonical_dose(value, unit) if drug is not None else None
                item["dose_unit"] = unit  # as written, for messages (render.format_field)
                if dose is None and dim in dosing.DOSE_KEYS:
                    dose = (dim, value * units.UNITS[unit].factor)
                if dose is None:
                    cur.error(w, f"无法把“{value:g} {unit}”换算为剂量（mg / mL / IU）")
            else:
                cur.error(w, f"“{w.text}”需要单位（剂量如 mg，天数如 天）",
                          hint_for(unit, units.known_units()) if unit else None)
            continue
        freq = frequency_word(w.text) if not w.quoted else None
        if freq is not None and w.text not in ("按需", "prn"):
            per_day = freq[0] if freq[0] is not None else per_day
            if freq[1]:
                item["prn"] = True
            continue
        if not w.quoted and w.text in schema.ROUTES:
            item["route"] = w.text
            continue
        if not w.quoted and w.text in ("按需", "prn"):
            item["prn"] = True
            continue
        cur.i -= 1
        _read_fields_one("item", cur, item)
    if dose is not None:
        dim, value = dose
        if dim not in dosing.DOSE_KEYS:
            cur.error(name, f"剂量的单位类别“{dim}”不是 mg / mL / IU")
        else:
            daily = {dim: value * per_day} if per_day is not None else {}
            item.update(dosing.dose_facts({dim: value}, daily, patient.get("weight")))
    if per_day is not None:
        item["frequency"] = per_day
    return item


def _read_fields_one(entity: str, cur: _Words, out: dict[str, Any]) -> None:
    w = cur.take()
    if w is None:
        return
    f = schema.field_of(entity, w.text) if not w.quoted else None
    if f is None:
        cur.error(w, f"未知的药品信息“{w.text}”",
                  hint_for(w.text, [*schema.field_names(entity), *schema.ROUTES, "按需", "每日1次", "bid", "tid"]))
        cur.skip_values()
        return
    _read_value(f, w, cur, out)


def build_facts(case: n.TestCase, dictionary: Any | None = None) -> tuple[schema.PrescriptionFacts, list[Diagnostic]]:
    """The facts a test brief describes, and any problems with the brief."""
    if dictionary is None:
        from audit_engine.knowledge.dictionary import (
            load_dictionary,  # a broken dictionary is an error, not "no drugs"
        )

        dictionary = load_dictionary()
    diags: list[Diagnostic] = []
    facts = schema.PrescriptionFacts(prescription_id=f"test:{case.name}")
    targets = {"patient": facts.patient, "prescription": facts.prescription, "prescriber": facts.prescriber,
               "institution": facts.institution}
    briefs = sorted(case.briefs, key=lambda b: b.entity != "patient")  # weight before per-kg doses
    for b in briefs:
        cur = _Words(b.words, diags)
        if b.entity in targets:
            _read_fields(b.entity, cur, targets[b.entity], b, targets)
        elif b.entity == "diagnosis":
            code = cur.take()
            if code is None:
                cur.error(b, "“诊断”后应写 ICD-10 编码")
                continue
            dx: dict[str, Any] = {"code": code.text}
            _read_fields("diagnosis", cur, dx, b)
            facts.diagnoses.append(dx)
    for b in case.briefs:
        if b.entity == "item":
            facts.items.append(_read_item(b, len(facts.items) + 1, _Words(b.words, diags), dictionary, facts.patient))
    p = facts.patient
    if "age_days" in p and "population" not in p:
        p["population"] = _population(p["age_days"], p["age_years"])
    if "renal_bands" not in p and ("egfr" in p or "crcl" in p):  # derived as the fact normaliser does
        from audit_engine.clinical import renal_bands

        p["renal_bands"] = renal_bands(p.get("egfr"), p.get("crcl"))
    for item in facts.items:  # 注射剂 / 缓控释 written in a brief imply the form class, as real facts do
        if "form_class" in item:
            continue
        if item.get("injection"):
            item["form_class"] = "注射剂"
        elif item.get("sustained_release"):
            item["form_class"] = "缓控释制剂"
        elif item.get("injection") is False and item.get("sustained_release") is False:
            item["form_class"] = "其他剂型"
    if facts.diagnoses:
        p["diagnosis_codes"] = sorted(set(p.get("diagnosis_codes", [])) | {d["code"] for d in facts.diagnoses})
        if any(d.get("chronic") for d in facts.diagnoses):
            p.setdefault("chronic", True)
    title = facts.prescriber.get("title")
    if title and "antimicrobial_grade" not in facts.prescriber:
        from audit_engine.facts import GRADE_BY_TITLE  # the China profile's title → grade: one table

        grade = GRADE_BY_TITLE.get(title)
        if grade:
            facts.prescriber["antimicrobial_grade"] = grade
    rx = facts.prescription
    rx["item_count"] = len(facts.items)
    herbal = [i.get("herbal") for i in facts.items]
    if all(h is not None for h in herbal):
        rx["has_herbal"] = any(herbal)
        rx["has_western"] = not all(herbal) if herbal else False
    return facts, diags


def check_case(case: n.TestCase, rule_ids: set[str], dictionary: Any | None = None) -> list[Diagnostic]:
    """Problems with a test case: unknown brief words or drugs, unknown rule ids, no 期望."""
    _, diags = build_facts(case, dictionary)
    cur = _Words((), diags)
    if not case.expectations:
        cur.error(case, f"测试“{case.name}”没有“期望”")
    for exp in case.expectations:
        for rid in exp.rule_ids:
            if rid not in rule_ids:
                cur.error(exp, f"期望中的规则 {rid} 不存在", hint_for(rid, rule_ids))
    return diags


@dataclass(frozen=True)
class CaseResult:
    """The outcome of one test case: ``failures`` is empty when it passed."""

    case: n.TestCase
    findings: tuple[Finding, ...]
    failures: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.failures


def judge(case: n.TestCase, findings: list[Finding]) -> list[str]:
    """What the findings get wrong against the case's expectations (Chinese sentences)."""
    fired: dict[str, list[int]] = {}
    for f in findings:
        fired.setdefault(f.rule_id, []).append(f.level)
    problems: list[str] = []
    for exp in case.expectations:
        if exp.fires:
            for rid, level in zip(exp.rule_ids, exp.levels, strict=True):
                if rid not in fired:
                    problems.append(f"期望触发 {rid}，但未触发")
                elif level is not None and level not in fired[rid]:
                    problems.append(f"期望 {rid} 等级 {level}，实际等级 {'/'.join(map(str, fired[rid]))}")
        elif not exp.rule_ids:
            if findings:
                problems.append(f"期望无任何触发，但触发了 {'、'.join(sorted(fired))}")
        else:
            for rid in exp.rule_ids:
                if rid in fired:
                    problems.append(f"期望不触发 {rid}，但触发了")
    return problems


def run_case(case: n.TestCase, evaluate: Callable[[schema.PrescriptionFacts], list[Finding]],
             dictionary: Any | None = None) -> CaseResult:
    """Build the facts of ``case``, evaluate them, and judge the findings."""
    facts, _ = build_facts(case, dictionary)
    findings = evaluate(facts)
    return CaseResult(case, tuple(findings), tuple(judge(case, findings)))
