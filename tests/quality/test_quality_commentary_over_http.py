"""处方点评 over HTTP: the national code list with its source, commentary checked against it
(bad input is an OperationOutcome 4xx), the 处方合格率 per institution, and an anonymised teaching case."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from http_support import login
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from population import PATIENT_ID_CARD, PATIENT_NAME, PATIENT_PHONE, add_prescriptions
from store_support import World

from api.main import create_app
from audit_engine import auth
from audit_engine.settings import Settings
from audit_engine.store.db import session_scope


class StubEngine:
    version = "rb-quality-test"
    compiled = SimpleNamespace(rules=())


@pytest.fixture
def client(engine: sa.Engine, world: World, db_url: str, tmp_path: Path) -> Iterator[TestClient]:
    add_prescriptions(engine, institution_id=world.ids["M1"], day=date(2026, 11, 3), count=6)
    add_prescriptions(engine, institution_id=world.ids["M1"], day=date(2026, 11, 4), count=2, verdict="recheck",
                      rule="DOSE-MAX", task_status="returned", prefix="RET")
    add_prescriptions(engine, institution_id=world.ids["C1"], day=date(2026, 11, 5), count=4)
    with session_scope(engine) as s:
        auth.create_user(s, username="zk", password="pw-zk-000001", role="quality")
        auth.create_user(s, username="ys", password="pw-ys-000001", role="pharmacist", institution_code="C1")
    settings = Settings(database_url=db_url, rulebase_store_dir=str(tmp_path / "rb"), rulebase_poll_seconds=0)
    app = create_app(settings, engine_factory=lambda path: StubEngine())  # type: ignore[arg-type,return-value]
    with TestClient(app) as c:
        yield c


def outcome(r, status: int) -> str:  # type: ignore[no-untyped-def]
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/fhir+json")
    body = r.json()
    assert body["resourceType"] == "OperationOutcome"
    return " ".join(i.get("diagnostics", "") for i in body["issue"])


def test_a_manager_comments_a_sample_and_reads_the_qualification_rate(client: TestClient) -> None:
    h = login(client, "zk", "pw-zk-000001")

    codes = client.get("/api/v1/quality/comment-codes", headers=h).json()
    groups = [c["group_name"] for c in codes]
    assert (groups.count("不规范处方"), groups.count("用药不适宜处方"), groups.count("超常处方")) == (15, 9, 4)
    assert all("卫医管发〔2010〕28号" in c["source"] for c in codes)
    assert {c["code"]: c["source"] for c in codes}["B05"].endswith("第十八条第（五）项")

    r = client.post("/api/v1/quality/samples", json={"month": "2026-11", "seed": 99}, headers=h)
    assert r.status_code == 201, r.text
    sample = r.json()
    assert sample["size"] == 12 and sample["commented"] == 0 and sample["drawn_by"] == "zk"
    m1 = [i for i in sample["items"] if i["institution"] == "M1"]
    url = f"/api/v1/quality/samples/{sample['id']}/comments"

    # Refusals say what is wrong, as OperationOutcome, and write nothing.
    assert "A15" in outcome(client.put(f"{url}/{m1[0]['review_id']}", json={"judgement": "不合理", "codes": ["A1S"]},
                                       headers=h), 422)
    assert "至少需要一个" in outcome(client.put(f"{url}/{m1[0]['review_id']}", json={"judgement": "不合理"},
                                             headers=h), 422)
    assert "不应带" in outcome(client.put(f"{url}/{m1[0]['review_id']}", json={"judgement": "合理", "codes": ["A01"]},
                                        headers=h), 422)
    assert "重复" in outcome(client.put(f"{url}/{m1[0]['review_id']}",
                                      json={"judgement": "不合理", "codes": ["B05", "B05"]}, headers=h), 422)
    outcome(client.put(f"{url}/{m1[0]['review_id']}", json={"judgement": "OK"}, headers=h), 422)
    outcome(client.put(f"{url}/{m1[0]['review_id']}", json={"judgement": "合理", "codes": "A01"}, headers=h), 422)
    outcome(client.put(f"{url}/{'0' * 32}", json={"judgement": "合理"}, headers=h), 404)
    outcome(client.put(f"/api/v1/quality/samples/{'0' * 32}/comments/{m1[0]['review_id']}",
                       json={"judgement": "合理"}, headers=h), 404)
    outcome(client.post("/api/v1/quality/samples", json={"month": "2026-13"}, headers=h), 422)
    outcome(client.post("/api/v1/quality/samples", content=b"{", headers={**h, "content-type": "application/json"}),
            422)
    outcome(client.get("/api/v1/quality/qualification", headers=h), 422)
    assert client.get(f"/api/v1/quality/samples/{sample['id']}", headers=h).json()["commented"] == 0

    # Three M1 prescriptions commented: two 合理, one 不合理 (a returned one), then one changed back.
    returned = next(i for i in m1 if i["verdict"] == "recheck")
    plain = [i for i in m1 if i["verdict"] == "pass"]
    for item in plain[:2]:
        assert client.put(f"{url}/{item['review_id']}", json={"judgement": "合理"}, headers=h).status_code == 200
    r = client.put(f"{url}/{returned['review_id']}", headers=h, json={
        "judgement": "不合理", "codes": ["B05", "A12"], "note": f"{PATIENT_NAME}的剂量偏大，电话 {PATIENT_PHONE}"})
    assert r.status_code == 200, r.text
    assert [c["code"] for c in r.json()["codes"]] == ["A12", "B05"]  # in the national order
    r = client.put(f"{url}/{plain[2]['review_id']}", json={"judgement": "不合理", "codes": ["C01"]}, headers=h)
    assert client.put(f"{url}/{plain[2]['review_id']}", json={"judgement": "合理"}, headers=h).json()["codes"] == []

    q = client.get("/api/v1/quality/qualification", params={"month": "2026-11"}, headers=h).json()
    rows = {r["key"]: r["indicators"]["qualification_rate"] for r in q["rows"]}
    assert rows["M1"] == {"numerator": 3, "denominator": 4, "value": 0.75}
    assert rows["C1"] == {"numerator": 0, "denominator": 0, "value": None}
    assert q["alliance"]["indicators"]["qualification_rate"]["value"] == 0.75
    assert q["groups"] == {"不规范处方": 1, "用药不适宜处方": 1, "超常处方": 0}
    assert client.get(f"/api/v1/quality/samples/{sample['id']}", headers=h).json()["commented"] == 4

    # A teaching case: what teaches stays, whoever it names goes.
    r = client.post("/api/v1/quality/teaching-cases", headers=h, json={
        "review_id": returned["review_id"], "lesson": f"{PATIENT_NAME}（{PATIENT_ID_CARD}）：老年患者注意剂量"})
    assert r.status_code == 201, r.text
    text = json.dumps(r.json(), ensure_ascii=False)
    for secret in (PATIENT_NAME, PATIENT_ID_CARD, PATIENT_PHONE, "赵明", "RET-", returned["review_id"]):
        assert secret not in text
    case = r.json()["case"]
    assert case["patient"]["age"] == "72 岁" and case["items"][0]["name"] == "阿莫西林"
    assert case["intervention"]["decision"] == "return" and "＊＊" in case["intervention"]["reason"]
    assert [c["code"] for c in case["comment"]["codes"]] == ["A12", "B05"]
    assert r.json()["source"] == "comment"
    assert len(client.get("/api/v1/quality/teaching-cases", headers=h).json()) == 1
    assert "不合理" in outcome(client.post("/api/v1/quality/teaching-cases", json={"review_id": plain[3]["review_id"]},
                                         headers=h), 422)


def test_a_pharmacist_may_not_use_the_workspace(client: TestClient) -> None:
    h = login(client, "ys", "pw-ys-000001")
    outcome(client.post("/api/v1/quality/samples", json={"month": "2026-11"}, headers=h), 403)
    outcome(client.get("/api/v1/quality/comment-codes"), 401)


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                       max_size=3), max_leaves=8)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.dictionaries(st.sampled_from(["judgement", "codes", "note", "month", "seed", "at_least", "institution"]),
                            json_values, max_size=5))
def test_any_body_gets_an_answer_never_a_server_error(client: TestClient, body: dict) -> None:  # type: ignore[type-arg]
    h = login(client, "zk", "pw-zk-000001")
    r = client.post("/api/v1/quality/samples", json=body, headers=h)
    assert r.status_code in (201, 404, 422), r.text
    sample = client.get("/api/v1/quality/samples", headers=h).json()
    if sample:
        one = client.get(f"/api/v1/quality/samples/{sample[0]['id']}", headers=h).json()
        r = client.put(f"/api/v1/quality/samples/{one['id']}/comments/{one['items'][0]['review_id']}", json=body,
                       headers=h)
        assert r.status_code in (200, 404, 422), r.text
