"""What a review records for statistics, at review time, in the review's own transaction.

``record_review_statistics`` is called once by ``submission.submit_review`` after the
review and its findings are inserted. It reads the facts the pipeline established (never
stored JSON) and writes ``review_stats``, ``review_stat_items`` and ``review_stat_rules``
(``store/stats_models.py``). The migration's backfill (0005) calls :func:`stat_rows` on
the facts and findings stored with older reviews: the one place that parses stored JSON.

Item flags, and what an item the dictionary cannot identify counts as:

* **antimicrobial**: the dictionary gives the drug an antimicrobial grade (抗菌药物分级,
  ``drugs.csv antimicrobial_grade``). An unidentified drug is not counted.
* **injection**: the dictionary's form is an injection, or the order's route is 静滴, 静注,
  肌注 or 皮下. An unidentified drug counts when its route says so.
* **essential**: the dictionary's ``基药`` flag (国家基本药物目录 2018年版, 国卫药政发〔2018〕31号;
  ``drugs.csv flags``). An unidentified drug is not counted as essential.
* **iv_steroid**: a systemic corticosteroid (ATC H02) given 静滴 or 静注.
* **on_level_list**: *not* implicated by a ``LEG-OFF-FORMULARY`` finding (the rule that
  checks the alliance formulary for the prescribing institution's level). An unidentified
  drug counts as **off** the list: the formulary is a list of dictionary drugs, so a drug the
  dictionary cannot name is on no list the system holds (and it goes to a pharmacist anyway,
  through ``SYS-UNKNOWN-DRUG``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from audit_engine.stats.periods import local_date, month_key
from audit_engine.store.stats_models import ReviewStat, ReviewStatItem, ReviewStatRule

OFF_FORMULARY_RULE = "LEG-OFF-FORMULARY"
INJECTION_ROUTES = frozenset({"静滴", "静注", "肌注", "皮下"})
IV_ROUTES = frozenset({"静滴", "静注"})
VISIT_TYPES = ("门诊", "急诊")

_INSERT_STAT = cast(sa.Table, ReviewStat.__table__).insert()
_INSERT_ITEMS = cast(sa.Table, ReviewStatItem.__table__).insert()
_INSERT_RULES = cast(sa.Table, ReviewStatRule.__table__).insert()


def _is_systemic_steroid(item: Mapping[str, Any]) -> bool:
    atc = item.get("atc")
    if isinstance(atc, str) and atc.startswith("H02"):
        return True
    classes = item.get("classes")
    return isinstance(classes, list) and "H02" in classes


def item_flags(item: Mapping[str, Any], *, off_list: bool) -> dict[str, Any]:
    """The statistics flags of one item fact dict (see the module docstring)."""
    known = "drug_id" in item
    route = item.get("route")
    injection = bool(item.get("injection")) or route in INJECTION_ROUTES
    return {
        "drug_id": item.get("drug_id") if known else None,
        "antimicrobial": known and bool(item.get("antimicrobial_grade")),
        "injection": injection,
        "essential": known and bool(item.get("essential")),
        "iv_steroid": known and _is_systemic_steroid(item) and route in IV_ROUTES,
        "on_level_list": known and not off_list,
    }


def _written_names(payload: Any) -> dict[str, str]:
    """MedicationRequest id → the drug as written (text or first display), found anywhere in a
    payload: used only for items the dictionary could not identify."""
    out: dict[str, str] = {}
    stack = [payload]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            if node.get("resourceType") == "MedicationRequest" and isinstance(node.get("id"), str):
                concept = node.get("medicationCodeableConcept") or {}
                name = concept.get("text") if isinstance(concept, dict) else None
                if not name and isinstance(concept, dict):
                    name = next((c.get("display") for c in concept.get("coding") or []
                                 if isinstance(c, dict) and c.get("display")), None)
                if not name and isinstance(node.get("medicationReference"), dict):
                    name = node["medicationReference"].get("display")
                if isinstance(name, str) and name:
                    out[node["id"]] = name[:200]
            stack.extend(v for v in node.values() if isinstance(v, dict | list))
    return out


def prescriber_from_payload(payload: Any) -> dict[str, str]:
    """Code and name of the only Practitioner in a payload (backfill of reviews recorded
    before facts carried the prescriber's identity); {} when there is none or several."""
    found: list[dict[str, Any]] = []
    stack = [payload]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            if node.get("resourceType") == "Practitioner":
                found.append(node)
            stack.extend(v for v in node.values() if isinstance(v, dict | list))
    if len(found) != 1:
        return {}
    return _identity_json(found[0])


def _identity_json(practitioner: Mapping[str, Any]) -> dict[str, str]:
    """{code, name} of a Practitioner as JSON: the first identifier value (else the id) and the
    name's text (else family + given, written together as Chinese names are)."""
    out: dict[str, str] = {}
    code = next((i.get("value") for i in practitioner.get("identifier") or []
                 if isinstance(i, dict) and i.get("value")), None) or practitioner.get("id")
    if isinstance(code, str) and code:
        out["code"] = code[:200]
    for name in practitioner.get("name") or []:
        if not isinstance(name, dict):
            continue
        text = name.get("text") or (str(name.get("family") or "") + "".join(str(g) for g in name.get("given") or []))
        if text:
            out["name"] = str(text)[:200]
            break
    return out


def stat_rows(
    *,
    review_id: str,
    institution_id: int,
    created_at: datetime,
    verdict: str,
    facts: Mapping[str, Any],
    findings: Iterable[tuple[str, Sequence[str]]],
    payload: Any = None,
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """The rows of the three statistics tables for one review.

    ``facts`` is the facts as a plain dict (``PrescriptionFacts`` as stored with the review);
    ``findings`` are (rule id, implicated references); ``payload`` (the submission) is read
    only for the written names of unidentified drugs and, when the facts lack it, the prescriber.
    """
    day = local_date(created_at)
    prescription = facts.get("prescription") or {}
    prescriber = facts.get("prescriber") or {}
    identity = facts.get("identity") or {}
    if not identity and payload is not None:
        identity = prescriber_from_payload(payload)
    visit = prescription.get("type")
    visit_type = visit if visit in VISIT_TYPES else None
    items: list[dict[str, Any]] = [i for i in facts.get("items") or [] if isinstance(i, dict)]
    finding_list = list(findings)
    off_list_refs = {ref for rule, refs in finding_list if rule == OFF_FORMULARY_RULE for ref in refs}
    written = _written_names(payload) if payload is not None and any("drug_id" not in i for i in items) else {}
    item_rows: list[dict[str, Any]] = []
    for n, item in enumerate(items):
        flags = item_flags(item, off_list=item.get("reference") in off_list_refs)
        name = item.get("name") if flags["drug_id"] else written.get(str(item.get("id")))
        item_rows.append({
            "review_id": review_id, "position": n, "institution_id": institution_id, "local_date": day,
            "visit_type": visit_type, "drug_name": (str(name)[:200] if name else None), **flags,
        })
    hits: dict[str, int] = {}
    for rule, _refs in finding_list:
        hits[rule] = hits.get(rule, 0) + 1
    rule_rows = [
        {"review_id": review_id, "rule_id": rule[:64], "institution_id": institution_id, "local_date": day,
         "visit_type": visit_type, "findings": count}
        for rule, count in sorted(hits.items())
    ]
    dept = prescription.get("department")
    stat = {
        "review_id": review_id,
        "institution_id": institution_id,
        "created_at": created_at,
        "local_date": day,
        "local_month": month_key(day),
        "visit_type": visit_type,
        "department": str(dept)[:200] if dept else None,
        "prescriber_code": (identity.get("code") or None),
        "prescriber_name": (identity.get("name") or None),
        "prescriber_title": prescriber.get("title"),
        "verdict": verdict,
        "item_count": len(items),
        "antimicrobial": any(r["antimicrobial"] for r in item_rows),
        "injection": any(r["injection"] for r in item_rows),
        "essential": any(r["essential"] for r in item_rows),
        "iv_steroid": any(r["iv_steroid"] for r in item_rows),
        "essential_items": sum(1 for r in item_rows if r["essential"]),
        "off_list_items": sum(1 for r in item_rows if not r["on_level_list"]),
    }
    return stat, item_rows, rule_rows


def insert_stat_rows(
    s: Session | sa.Connection,
    rows: Iterator[tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]]
    | list[tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]],
) -> int:
    """Insert many reviews' statistics rows (executemany per table); returns the reviews written."""
    stats: list[dict[str, Any]] = []
    items: list[dict[str, Any]] = []
    rules: list[dict[str, Any]] = []
    for stat, item_rows, rule_rows in rows:
        stats.append(stat)
        items.extend(item_rows)
        rules.extend(rule_rows)
    if stats:
        s.execute(_INSERT_STAT, stats)
    if items:
        s.execute(_INSERT_ITEMS, items)
    if rules:
        s.execute(_INSERT_RULES, rules)
    return len(stats)


def record_review_statistics(
    s: Session, *, review_row: Mapping[str, Any], findings: Iterable[Any], payload: Any = None
) -> None:
    """Record one new review's statistics (called by ``submit_review``, same transaction).

    ``review_row`` is the inserted review (id, institution_id, created_at, verdict, and its
    facts as stored); ``findings`` are ``Finding`` objects.
    """
    stat, item_rows, rule_rows = stat_rows(
        review_id=review_row["id"],
        institution_id=review_row["institution_id"],
        created_at=review_row["created_at"],
        verdict=review_row["verdict"],
        facts=review_row.get("facts") or {},
        findings=((f.rule_id, tuple(f.implicated)) for f in findings),
        payload=payload,
    )
    s.execute(_INSERT_STAT, stat)
    if item_rows:
        s.execute(_INSERT_ITEMS, item_rows)
    if rule_rows:
        s.execute(_INSERT_RULES, rule_rows)
