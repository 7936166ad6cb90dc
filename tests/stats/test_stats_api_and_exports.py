"""The statistics over HTTP: roles and visibility, errors as OperationOutcome, and the same
numbers in the API, the XLSX, the CSV and the FHIR MeasureReport for the same period."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from http_support import login
from openpyxl import load_workbook
from scenario import run_scenario
from store_support import World

from api.main import create_app
from audit_engine import auth
from audit_engine.settings import Settings
from audit_engine.stats.definitions import SLICE_CODES
from audit_engine.store.db import session_scope


class StubEngine:
    """What the service needs of an engine here: a version and the active rules' ids and titles."""

    version = "rb-stats-test"
    compiled = SimpleNamespace(rules=(SimpleNamespace(id="R-L5", title="五级规则"),
                                      SimpleNamespace(id="R-NEVER", title="从不触发的规则")))


@pytest.fixture
def client(engine: sa.Engine, world: World, db_url: str, tmp_path: Path) -> Iterator[TestClient]:
    for name in ("review_operations_one_month.json", "prescribing_indicators_from_the_items.json",
                 "homogenisation_spread_and_outlier.json"):
        run_scenario(engine, world, name, checks_too=False)
    with session_scope(engine) as s:
        auth.create_user(s, username="zk_all", password="pw-zk-all-1", role="quality")
        auth.create_user(s, username="zk_m1", password="pw-zk-m1-1", role="quality", institution_code="M1")
        auth.create_user(s, username="ys", password="pw-yaoshi-1", role="pharmacist", institution_code="C1")
    settings = Settings(database_url=db_url, rulebase_store_dir=str(tmp_path / "rb"), rulebase_poll_seconds=0)
    app = create_app(settings, engine_factory=lambda path: StubEngine())  # type: ignore[arg-type,return-value]
    with TestClient(app) as c:
        yield c


NOV = {"from": "2026-11-01", "to": "2026-11-30"}


def test_a_pharmacist_is_refused_and_an_anonymous_caller_must_log_in(client: TestClient) -> None:
    r = client.get("/api/v1/stats/indicators", params=NOV, headers=login(client, "ys", "pw-yaoshi-1"))
    assert r.status_code == 403 and r.json()["resourceType"] == "OperationOutcome"
    assert client.get("/api/v1/stats/indicators", params=NOV).status_code == 401


def test_bad_parameters_get_an_operation_outcome_naming_the_parameter(client: TestClient) -> None:
    h = login(client, "zk_all", "pw-zk-all-1")
    for params, where in (({**NOV, "group_by": "ward"}, "group_by"), ({"from": "2026-11", "to": "x"}, "from"),
                          ({**NOV, "type": "住院"}, "type"), ({**NOV, "institution": "NOPE"}, "NOPE")):
        r = client.get("/api/v1/stats/indicators", params=params, headers=h)
        assert 400 <= r.status_code < 500, r.text
        body = r.json()
        assert body["resourceType"] == "OperationOutcome" and where in json.dumps(body, ensure_ascii=False)
    r = client.get("/api/v1/stats/report", params={"month": "2026-13"}, headers=h)
    assert 400 <= r.status_code < 500 and "month" in r.text
    r = client.get("/api/v1/stats/report", params={"month": "2026-11", "year": "2026"}, headers=h)
    assert 400 <= r.status_code < 500 and r.json()["resourceType"] == "OperationOutcome"


def test_a_member_quality_user_sees_only_its_institution(client: TestClient) -> None:
    h = login(client, "zk_m1", "pw-zk-m1-1")
    body = client.get("/api/v1/stats/indicators", params=NOV, headers=h).json()
    assert [r["key"] for r in body["rows"]] == ["M1"]
    assert client.get("/api/v1/stats/indicators", params={**NOV, "institution": "C2"}, headers=h).status_code == 404
    report = client.get("/api/v1/stats/report", params={"month": "2026-11", "format": "csv"}, headers=h).text
    assert {row["institution_code"] for row in csv.DictReader(io.StringIO(report.lstrip("\ufeff")))} == {"M1", "ALLIANCE"}


def _api_figures(client: TestClient, h: dict[str, str]) -> dict[tuple[str, str, str], tuple[Any, Any, Any]]:
    out = {}
    for scope, vt in (("合计", None), ("门诊", "门诊"), ("急诊", "急诊")):
        params = {**NOV, "group_by": "institution", **({"type": vt} if vt else {})}
        body = client.get("/api/v1/stats/indicators", params=params, headers=h).json()
        targets = [(r["key"], r["indicators"]) for r in body["rows"]] + [("ALLIANCE", body["alliance"]["indicators"])]
        for key, ind in targets:
            for code in SLICE_CODES:
                v = ind[code]
                out[(scope, key, code)] = (v["numerator"], v["denominator"], v["value"])
    return out


def _num(x: Any) -> Any:
    if x in ("", None):
        return None
    f = float(x)
    return int(f) if f.is_integer() else f


def test_the_api_xlsx_csv_and_measure_report_give_the_same_numbers(client: TestClient) -> None:
    h = login(client, "zk_all", "pw-zk-all-1")
    api = _api_figures(client, h)
    assert api[("合计", "ALLIANCE", "prescriptions")][0] == 34  # 12 + 6 + 16 prescriptions in November
    norm = {k: tuple(_num(x) for x in v) for k, v in api.items()}

    r = client.get("/api/v1/stats/report", params={"month": "2026-11", "format": "csv"}, headers=h)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    from_csv = {(x["scope"], x["institution_code"], x["indicator"]): (_num(x["numerator"]), _num(x["denominator"]),
                                                                      _num(x["value"])) for x in rows}
    assert from_csv == norm

    r = client.get("/api/v1/stats/report", params={"month": "2026-11", "format": "xlsx"}, headers=h)
    assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
    wb = load_workbook(io.BytesIO(r.content), read_only=True)
    assert {"总览", "指标明细", "同质化", "规则效果", "用药监测", "指标定义"} <= set(wb.sheetnames)
    detail = list(wb["指标明细"].iter_rows(min_row=2, values_only=True))
    from_xlsx = {(d[2], d[3], d[5]): (_num(d[7]), _num(d[8]), _num(d[9])) for d in detail}
    assert from_xlsx == norm
    definitions = {row[0]: row for row in wb["指标定义"].iter_rows(min_row=2, values_only=True) if row and row[0]}
    assert "本医共体口径" in definitions["flag_rate"][6] and "WHO" in definitions["antimicrobial_rate"][6]
    assert all(definitions[c][3] and definitions[c][4] for c in SLICE_CODES)

    r = client.get("/api/v1/stats/report", params={"month": "2026-11", "format": "measure-report"}, headers=h)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/fhir+json")
    bundle = r.json()
    from fhir.resources.R4B.bundle import Bundle

    Bundle.model_validate(bundle)  # a valid R4(B) Bundle of MeasureReports
    from_mr: dict[tuple[str, str, str], tuple[Any, Any, Any]] = {}
    for entry in bundle["entry"]:
        report = entry["resource"]
        assert report["type"] == "summary" and report["period"] == {"start": "2026-11-01", "end": "2026-11-30"}
        scope = report["extension"][0]["valueString"]
        for group in report["group"]:
            code = group["code"]["coding"][0]["code"]
            targets = [("ALLIANCE", group)] + [(st["value"]["coding"][0]["code"], st)
                                               for strat in group.get("stratifier", []) for st in strat["stratum"]]
            for key, g in targets:
                pops = {p["code"]["coding"][0]["code"]: p["count"] for p in g["population"]}
                score = g.get("measureScore", {}).get("value")
                want = norm[(scope, key, code)]
                assert score == (None if want[2] is None else pytest.approx(want[2])), (scope, key, code)
                if "denominator" in pops:
                    assert (pops["numerator"], pops["denominator"]) == (want[0], want[1]), (scope, key, code)
                from_mr[(scope, key, code)] = want
    assert set(from_mr) == set(norm)


def test_the_rule_audit_lists_rules_with_examples_and_the_silent_ones(client: TestClient) -> None:
    h = login(client, "zk_all", "pw-zk-all-1")
    body = client.get("/api/v1/stats/rules", params=NOV, headers=h).json()
    rules = {r["rule_id"]: r for r in body["rules"]}
    assert rules["R-L5"]["indicators"]["hits"]["numerator"] == 3  # M1-D, M1-G, C1-B
    assert rules["R-L5"]["examples"] and rules["R-L5"]["examples"][0]["pharmacist_decision"] == "approve"
    assert [s["rule_id"] for s in body["silent"]] == ["R-NEVER"]


def test_spread_monitoring_and_prescriber_feedback_answer(client: TestClient) -> None:
    h = login(client, "zk_all", "pw-zk-all-1")
    spread = client.get("/api/v1/stats/spread", params={"from": "2026-10-01", "to": "2026-11-30"}, headers=h).json()
    assert [m["month"] for m in spread["months"]] == ["2026-10", "2026-11"]
    assert spread["months"][1]["spread"]["flag_rate"]["n"] == 4
    mon = client.get("/api/v1/stats/monitoring", params={"month": "2026-11"}, headers=h).json()
    m1 = next(i for i in mon["institutions"] if i["institution"] == "M1")
    outpatient = next(f for f in m1["figures"] if f["code"] == "antimicrobial_rate" and f["type"] == "门诊")
    assert (outpatient["numerator"], outpatient["denominator"]) == (2, 18)
    assert [d["name"] for d in m1["monitored_drugs"]] == ["奥拉西坦"]
    fb = client.get("/api/v1/stats/prescribers", params={"month": "2026-11", "institution": "M1"}, headers=h).json()
    (zhao,) = [p for p in fb["prescribers"] if p["prescriber"] == "D101"]
    assert zhao["name"] == "赵明" and zhao["alliance_flag_rate"]["denominator"] == 34
    assert len(zhao["problems"]) == 3 and all(p["example_review_id"] for p in zhao["problems"])


def test_the_openapi_description_documents_every_statistics_route_with_its_answers(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for path in ("indicators", "report", "spread", "rules", "monitoring", "prescribers", "definitions"):
        op = spec["paths"][f"/api/v1/stats/{path}"]["get"]
        assert {"200", "401", "403"} <= set(op["responses"]), path
        if path != "report":
            assert "$ref" in json.dumps(op["responses"]["200"]["content"]["application/json"]["schema"]), path
    example = spec["components"]["schemas"]["IndicatorsOut"]["examples"][0]
    assert example["rows"][0]["indicators"]["flag_rate"] == {"numerator": 3, "denominator": 40, "value": 0.075}
