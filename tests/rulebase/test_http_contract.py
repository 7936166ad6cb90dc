"""The seed rulebase behind the real HTTP service (CONTRACT.md), fixture by fixture.

Each prescription is posted by an institution of its own level (its API key) to
``POST /api/v1/reviews`` and, as a CDS Hooks order-sign request, to ``POST /cds-services/{id}``.
Clean prescriptions get verdict ``pass`` and no warning or critical card; flagged ones get
their rules as warning/critical cards that implicate the right MedicationRequests.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from audit_engine.policy import VERDICTS

from .conftest import RULEBASE, clean_paths, flagged_params, read_json
from .test_fixtures import cds_request

SERVICE = "/cds-services/county-prescription-review"
ROOT_FIXTURES = RULEBASE.parent / "fixtures" / "fhir"
LEVEL_CODES = {"县级医院": "DC-0001", "乡镇卫生院": "DC-1203", "社区卫生服务中心": "DC-2101", "村卫生室": "DC-1203-07"}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, str]]]:
    from api.main import create_app
    from audit_engine import auth
    from audit_engine.review import load_engine
    from audit_engine.settings import Settings
    from audit_engine.store.db import make_engine, session_scope, upgrade_schema

    tmp = tmp_path_factory.mktemp("seed-http")
    url = f"sqlite:///{tmp / 'audit.sqlite'}"
    upgrade_schema(url)
    keys: dict[str, str] = {}
    db = make_engine(url)
    with session_scope(db) as s:
        for level, code in LEVEL_CODES.items():
            _, keys[level] = auth.create_institution(s, code=code, name=f"示范县{level}", level=level,
                                                     is_centre=level == "县级医院")
    db.dispose()
    engine = load_engine(RULEBASE)
    cfg = Settings(database_url=url, rulebase_store_dir=str(tmp / "rulebases"), rulebase_poll_seconds=0)
    with TestClient(create_app(cfg, engine_factory=lambda _path: engine)) as client:
        yield client, keys


def _post_both(service: tuple[TestClient, dict[str, str]], path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    client, keys = service
    bundle = read_json(path)
    request, institution = cds_request(bundle)
    headers = {"Authorization": f"Bearer {keys[institution['level']]}"}
    native = client.post("/api/v1/reviews", json=bundle, headers=headers)
    assert native.status_code in (200, 201), native.text
    cds = client.post(SERVICE, json=request, headers=headers)
    assert cds.status_code == 200, cds.text
    return native.json(), cds.json()


@pytest.mark.parametrize("path", clean_paths(), ids=lambda p: p.stem)
def test_clean_prescription_passes_with_no_warning_card(service: Any, path: Path) -> None:
    review, cds = _post_both(service, path)
    assert review["verdict"] == "pass", review["findings"]
    loud = [c for c in cds["cards"] if c["indicator"] != "info"]
    assert loud == []
    assert cds["extension"]["review"]["verdict"] == "pass"


@pytest.mark.parametrize("path", flagged_params())
def test_flagged_prescription_gets_cards_implicating_the_right_drugs(service: Any, path: Path) -> None:
    expect = read_json(path.with_suffix(".expect.json"))
    review, cds = _post_both(service, path)
    assert VERDICTS.index(review["verdict"]) >= VERDICTS.index(expect["minimum_verdict"]), review["findings"]
    assert VERDICTS.index(cds["extension"]["review"]["verdict"]) >= VERDICTS.index(expect["minimum_verdict"])
    for rule_id in expect["expected_rule_ids"]:
        cards = [c for c in cds["cards"] if c["source"]["topic"]["code"] == rule_id]
        assert cards, f"no card for {rule_id}: {[c['source']['topic']['code'] for c in cds['cards']]}"
        assert {c["indicator"] for c in cards} <= {"warning", "critical"}
        implicated = {ref for c in cards for ref in c["extension"]["implicated"]}
        assert set(expect["expected_implicated"]) <= implicated


def test_the_seed_rulebase_gives_a_reused_number_the_verdict_of_its_new_content(
    service: tuple[TestClient, dict[str, str]],
) -> None:
    """P-0001 is clean, then the doctor adds clarithromycin to simvastatin and the HIS keeps the
    number; and a HIS without prescription numbers sends two prescriptions whose orders are both
    numbered 1, 2, 3. The second submission gets its own verdict, never the first one's."""
    client, keys = service
    headers = {"Authorization": f"Bearer {keys['县级医院']}"}
    versions = ROOT_FIXTURES / "versions"
    for first, second in (
        ("p0001_v1_simvastatin_alone_clean", "p0001_v2_clarithromycin_added_same_number_dangerous"),
        ("draft_orders_1_2_3_no_number_first_prescription", "draft_orders_1_2_3_no_number_second_prescription"),
    ):
        a = client.post("/api/v1/reviews", json=read_json(versions / f"{first}.json"), headers=headers)
        b = client.post("/api/v1/reviews", json=read_json(versions / f"{second}.json"), headers=headers)
        assert (a.status_code, b.status_code) == (201, 201), b.text
        assert a.json()["verdict"] == "pass" and a.json()["findings"] == []
        assert b.json()["verdict"] == "block" and not b.json()["replayed"]
        assert any(f["level"] >= 8 and len(f["implicated"]) == 2 for f in b.json()["findings"])  # the interaction
