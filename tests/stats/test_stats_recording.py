"""What a review records for statistics at review time (real pipeline, real FHIR), and the
migration's backfill of reviews stored before: the same rows from the stored facts."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from store_support import World

from audit_engine import submission
from audit_engine.auth import principal_for_institution
from audit_engine.review import load_engine
from audit_engine.store.db import session_scope
from audit_engine.store.models import Institution, Review
from audit_engine.store.stats_models import ReviewStat, ReviewStatItem, ReviewStatRule

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "fixtures" / "fhir" / "clean" / "emergency_allergy_chlorphenamine_dexamethasone.json"
MIGRATION = ROOT / "audit_engine" / "store" / "migrations" / "versions" / "0004_review_statistics.py"


@pytest.fixture(scope="module")
def real_engine() -> Any:
    return load_engine()


def _rows(engine: sa.Engine, review_id: str) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    with engine.connect() as c:
        stat = c.execute(sa.select(ReviewStat.__table__).where(ReviewStat.review_id == review_id)).mappings().one()
        items = c.execute(sa.select(ReviewStatItem.__table__).where(ReviewStatItem.review_id == review_id)
                          .order_by(ReviewStatItem.position)).mappings().all()
        rules = c.execute(sa.select(ReviewStatRule.__table__).where(ReviewStatRule.review_id == review_id)
                          .order_by(ReviewStatRule.rule_id)).mappings().all()
    return dict(stat), [dict(i) for i in items], [dict(r) for r in rules]


def _submit(engine: sa.Engine, world: World, payload: dict[str, Any], real_engine: Any) -> str:
    with session_scope(engine) as s:
        inst = s.scalar(sa.select(Institution).where(Institution.code == "C1"))
        assert inst is not None
        rec = submission.submit_review(s, principal=principal_for_institution(inst), payload=payload, kind="bundle",
                                    engine=real_engine)
    return rec.id


def test_a_real_emergency_prescription_records_its_prescriber_scope_and_item_flags(
        engine: sa.Engine, world: World, real_engine: Any) -> None:
    payload = json.loads(FIXTURE.read_text(encoding="utf-8"))
    review_id = _submit(engine, world, payload, real_engine)
    stat, items, _rules = _rows(engine, review_id)
    assert stat["visit_type"] == "急诊" and stat["department"] == "急诊科"
    assert (stat["prescriber_code"], stat["prescriber_name"], stat["prescriber_title"]) == ("doc", "王医生", "主治医师")
    assert stat["item_count"] == 2 == len(items)
    dex, chlorphenamine = items
    assert dex["drug_id"] == "dexamethasone" and dex["injection"] and dex["essential"] and dex["on_level_list"]
    # 肌注 (intramuscular): an injection, but not the *intravenous* steroid the indicator counts.
    assert dex["iv_steroid"] is False and stat["iv_steroid"] is False and stat["injection"] is True
    assert chlorphenamine["drug_id"] == "chlorphenamine" and not chlorphenamine["antimicrobial"]
    assert stat["antimicrobial"] is False and stat["essential_items"] == sum(i["essential"] for i in items)


def test_the_same_steroid_given_intravenously_counts_as_an_emergency_iv_steroid(
        engine: sa.Engine, world: World, real_engine: Any) -> None:
    payload = json.loads(FIXTURE.read_text(encoding="utf-8"))
    order = payload["entry"][6]["resource"]
    order["dosageInstruction"][0]["route"] = {"text": "静注"}
    order["groupIdentifier"]["value"] = "RX202611230065-IV"
    stat, items, _ = _rows(engine, _submit(engine, world, payload, real_engine))
    assert items[0]["drug_id"] == "dexamethasone" and items[0]["iv_steroid"] is True and stat["iv_steroid"] is True


def _backfill_module() -> Any:
    spec = importlib.util.spec_from_file_location("migration_0005", MIGRATION)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_backfill_rebuilds_the_same_rows_from_stored_facts_and_reads_the_prescriber_from_the_raw_prescription(
        engine: sa.Engine, world: World, real_engine: Any) -> None:
    payload = json.loads(FIXTURE.read_text(encoding="utf-8"))
    payload["entry"][3]["resource"]["identifier"] = [{"system": "urn:his:staff", "value": "D0042"}]
    first = _submit(engine, world, payload, real_engine)
    recorded = _rows(engine, first)
    with session_scope(engine) as s:
        # As a review stored before this migration: no statistics rows, no prescriber identity in its facts.
        for table in (ReviewStatRule, ReviewStatItem, ReviewStat):
            s.execute(sa.delete(table.__table__).where(table.review_id == first))
        review = s.get(Review, first)
        assert review is not None
        facts = dict(review.facts)
        assert facts.pop("identity") == {"code": "D0042", "name": "王医生"}
        review.facts = facts
    with engine.begin() as conn:
        assert _backfill_module().backfill(conn) == 1
        assert _backfill_module().backfill(conn) == 0  # idempotent: only reviews without rows
    assert _rows(engine, first) == recorded
