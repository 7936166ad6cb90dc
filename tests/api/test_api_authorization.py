"""Who may call what: every route of the app × every kind of caller, with the status each gets.

The table is read against ``app.routes``: a route without a row (or a row without a route)
fails the test, so a new endpoint cannot ship without saying who may call it. Each row is
one line: the request (built fresh for each caller by an ``arrange`` function, so one
caller's success never changes what the next one sees) and the eight expected statuses.

Callers, in column order:
  anon       no credentials
  bad        a well-formed but unknown API key
  own        TOWN01's HIS key, on TOWN01's prescription
  centre     the review centre's (LEAD001) HIS key, on TOWN01's prescription
  ph_centre  a pharmacist of the centre (sees its members)
  ph_member  a pharmacist of another member (VIL01), on TOWN01's prescription
  quality    a quality manager of the centre
  admin      an alliance-wide admin
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from apiworld import World, build_world, load_fixture
from dbutil import fresh_database

try:  # FastAPI >= 0.16x wraps included routers; older versions list the routes themselves
    from fastapi.routing import iter_route_contexts
except ImportError:  # pragma: no cover - depends on the installed FastAPI
    iter_route_contexts = None

KINDS = ("anon", "bad", "own", "centre", "ph_centre", "ph_member", "quality", "admin")
SERVICE = "/cds-services/county-prescription-review"
RECHECK = "flagged/interaction_warfarin_aspirin.json"  # the stand-in engine says: level 5, recheck
EXPLAIN = "flagged/interaction_clopidogrel_omeprazole.json"  # level 3: the doctor must explain


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def table_world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("authz")
    for url in fresh_database(request.param, tmp):
        # Throttling has tests of its own; here one caller sends many requests with a bad key.
        yield from build_world(url, tmp, requests_per_credential="off", bad_credentials_per_address="off")


def headers_of(w: World, kind: str) -> dict[str, str]:
    return {
        "anon": {},
        "bad": {"Authorization": "Bearer ak_000000000000_notarealkeynotarealkeynotarealkeynotareal"},
        "own": w.his(w.member_key),
        "centre": w.his(w.centre_key),
        "ph_centre": w.user("pharmacist"),
        "ph_member": w.user("member_pharmacist"),
        "quality": w.user("quality"),
        "admin": w.user("admin"),
    }[kind]


def fresh(rel: str) -> dict[str, Any]:
    """The fixture with new prescription identifiers, so each submission is a new prescription."""
    doc = load_fixture(rel)
    tag = uuid.uuid4().hex[:8]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("identifier", "groupIdentifier"):
                    for ident in value if isinstance(value, list) else [value]:
                        if isinstance(ident, dict) and isinstance(ident.get("value"), str):
                            ident["value"] = f"{ident['value']}-{tag}"
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(doc)
    return doc


def order_sign(bundle: dict[str, Any]) -> dict[str, Any]:
    orders = [e for e in bundle["entry"] if e["resource"]["resourceType"] == "MedicationRequest"]
    patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    return {"hook": "order-sign", "hookInstance": str(uuid.uuid4()),
            "context": {"userId": "Practitioner/doc-1", "patientId": patient["id"],
                        "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": orders}},
            "prefetch": {"patient": patient}}


# --------------------------------------------------------------------------- arrangements (TOWN01's resources)
def member_review(w: World, rel: str = RECHECK) -> dict[str, Any]:
    r = w.client.post("/api/v1/reviews", json=fresh(rel), headers=w.his(w.member_key))
    assert r.status_code == 201, r.text
    return dict(r.json())


def claimed_task(w: World) -> str:
    member_review(w)
    r = w.client.post("/api/v1/queue/claim", headers=w.user("pharmacist"))
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def returned_task(w: World) -> str:
    tid = claimed_task(w)
    r = w.client.post(f"/api/v1/tasks/{tid}/decision", json={"decision": "return", "reason": "请核对剂量"},
                      headers=w.user("pharmacist"))
    assert r.status_code == 200, r.text
    return tid


def member_card(w: World) -> str:
    r = w.client.post(SERVICE, json=order_sign(fresh(EXPLAIN)), headers=w.his(w.member_key))
    assert r.status_code == 200 and r.json()["cards"], r.text
    return str(r.json()["cards"][0]["uuid"])


def member_subscription(w: World) -> int:
    r = w.client.post("/api/v1/subscriptions", json={"url": "https://his.example.cn/cb"}, headers=w.his(w.member_key))
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def allowed_host(w: World) -> str:
    host = f"h{uuid.uuid4().hex[:8]}.his.county.local"
    r = w.client.post("/api/v1/admin/institutions/TOWN01/webhook-hosts", json={"host": host},
                      headers=w.user("admin"))
    assert r.status_code == 201, r.text
    return host


def this_month() -> str:
    """The alliance's current month (Asia/Shanghai, UTC+8), where a review made now counts."""
    return (datetime.now(UTC) + timedelta(hours=8)).strftime("%Y-%m")


Request = tuple[str, dict[str, Any]]  # (url, keyword arguments of the client call)


@dataclass(frozen=True)
class Row:
    request: Callable[[World], Request]
    expect: tuple[int, ...]  # one status per caller kind, in KINDS order

    def __post_init__(self) -> None:
        assert len(self.expect) == len(KINDS)


def plain(url: str) -> Callable[[World], Request]:
    return lambda w: (url, {})


PUBLIC = (200,) * 8
STATS = (401, 401, 403, 403, 403, 403, 200, 200)
BAD_RULES = {"json": {"files": {"main.rules": "这不是一条规则"}}}

#                                                                          anon bad own centre ph_c ph_m qual admin
TABLE: dict[tuple[str, str], Row] = {
    ("GET", "/openapi.json"): Row(plain("/openapi.json"), PUBLIC),
    ("GET", "/docs"): Row(plain("/docs"), PUBLIC),
    ("GET", "/docs/oauth2-redirect"): Row(plain("/docs/oauth2-redirect"), PUBLIC),
    ("GET", "/static-offline-docs"): Row(plain("/static-offline-docs/swagger-ui.css"), PUBLIC),
    ("GET", "/favicon.ico"): Row(plain("/favicon.ico"), PUBLIC),
    ("GET", "/"): Row(plain("/"), PUBLIC),
    ("GET", "/workbench"): Row(plain("/workbench"), PUBLIC),
    ("GET", "/static"): Row(plain("/static/workbench.js"), PUBLIC),
    ("GET", "/health"): Row(plain("/health"), PUBLIC),
    ("GET", "/cds-services"): Row(plain("/cds-services"), PUBLIC),
    ("POST", "/api/v1/auth/token"): Row(
        lambda w: ("/api/v1/auth/token", {"data": {"username": "yaoshi", "password": "pw-yaoshi-1"}}), PUBLIC),
    ("POST", "/cds-services/{service_id}"): Row(
        lambda w: (SERVICE, {"json": order_sign(fresh(EXPLAIN))}), (401, 401, 200, 200, 403, 403, 403, 403)),
    ("POST", "/cds-services/{service_id}/feedback"): Row(
        lambda w: (f"{SERVICE}/feedback", {"json": {"feedback": [
            {"card": member_card(w), "outcome": "overridden", "outcomeTimestamp": "2026-11-23T08:00:00Z"}]}}),
        (401, 401, 200, 404, 403, 403, 403, 403)),
    ("POST", "/api/v1/reviews"): Row(
        lambda w: ("/api/v1/reviews", {"json": fresh(RECHECK)}), (401, 401, 201, 201, 403, 403, 403, 403)),
    ("GET", "/api/v1/reviews/{review_id}"): Row(
        lambda w: (f"/api/v1/reviews/{member_review(w)['id']}", {}), (401, 401, 200, 404, 200, 404, 200, 403)),
    ("POST", "/api/v1/reviews/{review_id}/explanation"): Row(
        lambda w: (f"/api/v1/reviews/{member_review(w, EXPLAIN)['id']}/explanation", {"json": {"reason": "已告知"}}),
        (401, 401, 200, 404, 403, 403, 403, 403)),
    ("POST", "/api/v1/queue/claim"): Row(
        lambda w: (member_review(w) and "/api/v1/queue/claim", {}), (401, 401, 403, 403, 200, 204, 403, 403)),
    ("GET", "/api/v1/tasks"): Row(plain("/api/v1/tasks"), (401, 401, 403, 403, 200, 200, 200, 403)),
    ("GET", "/api/v1/tasks/{task_id}"): Row(
        lambda w: (f"/api/v1/tasks/{member_review(w)['task']['id']}", {}), (401, 401, 200, 404, 200, 404, 200, 403)),
    ("GET", "/api/v1/queue"): Row(plain("/api/v1/queue"), (401, 401, 403, 403, 200, 200, 200, 403)),
    ("GET", "/api/v1/tasks/{task_id}/history"): Row(
        lambda w: (f"/api/v1/tasks/{member_review(w)['task']['id']}/history", {}),
        (401, 401, 403, 403, 200, 404, 200, 403)),
    ("POST", "/api/v1/tasks/{task_id}/claim"): Row(
        lambda w: (f"/api/v1/tasks/{member_review(w)['task']['id']}/claim", {}),
        (401, 401, 403, 403, 200, 404, 403, 403)),
    ("POST", "/api/v1/tasks/{task_id}/decision"): Row(
        lambda w: (f"/api/v1/tasks/{claimed_task(w)}/decision", {"json": {"decision": "approve"}}),
        (401, 401, 403, 403, 200, 404, 403, 403)),
    ("POST", "/api/v1/tasks/{task_id}/answer"): Row(
        lambda w: (f"/api/v1/tasks/{returned_task(w)}/answer", {"json": {"answer": "insist", "reason": "已监测INR"}}),
        (401, 401, 200, 404, 403, 403, 403, 403)),
    # The centre's own allowlist is empty: its HIS may subscribe, but not to TOWN01's host.
    ("POST", "/api/v1/subscriptions"): Row(
        lambda w: ("/api/v1/subscriptions", {"json": {"url": "https://his.example.cn/cb"}}),
        (401, 401, 201, 422, 403, 403, 403, 403)),
    ("GET", "/api/v1/subscriptions"): Row(plain("/api/v1/subscriptions"), (401, 401, 200, 200, 403, 403, 403, 403)),
    ("DELETE", "/api/v1/subscriptions/{subscription_id}"): Row(
        lambda w: (f"/api/v1/subscriptions/{member_subscription(w)}", {}), (401, 401, 204, 404, 403, 403, 403, 403)),
    ("GET", "/api/v1/admin/institutions/{code}/webhook-hosts"): Row(
        plain("/api/v1/admin/institutions/TOWN01/webhook-hosts"), (401, 401, 403, 403, 403, 403, 403, 200)),
    ("POST", "/api/v1/admin/institutions/{code}/webhook-hosts"): Row(
        lambda w: ("/api/v1/admin/institutions/TOWN01/webhook-hosts", {"json": {"host": "10.12.0.8"}}),
        (401, 401, 403, 403, 403, 403, 403, 201)),
    ("DELETE", "/api/v1/admin/institutions/{code}/webhook-hosts/{host}"): Row(
        lambda w: (f"/api/v1/admin/institutions/TOWN01/webhook-hosts/{allowed_host(w)}", {}),
        (401, 401, 403, 403, 403, 403, 403, 200)),
    ("GET", "/api/v1/institutions/{code}/policy"): Row(
        plain("/api/v1/institutions/TOWN01/policy"), (401, 401, 403, 403, 403, 403, 403, 200)),
    ("PATCH", "/api/v1/institutions/{code}/policy"): Row(
        lambda w: ("/api/v1/institutions/TOWN01/policy", {"json": {"timeout_minutes": 45}}),
        (401, 401, 403, 403, 403, 403, 403, 200)),
    # The quality workspace (处方点评, teaching cases, what-if replay): quality managers and admins.
    ("GET", "/quality"): Row(plain("/quality"), PUBLIC),
    ("GET", "/api/v1/quality/comment-codes"): Row(plain("/api/v1/quality/comment-codes"), (401, 401, 403, 403, 403, 403, 200, 200)),
    ("POST", "/api/v1/quality/samples"): Row(
        lambda w: (member_review(w) and "/api/v1/quality/samples", {"json": {"month": this_month()}}),
        (401, 401, 403, 403, 403, 403, 201, 201)),
    ("GET", "/api/v1/quality/samples"): Row(plain("/api/v1/quality/samples"), (401, 401, 403, 403, 403, 403, 200, 200)),
    ("GET", "/api/v1/quality/samples/{sample_id}"): Row(plain("/api/v1/quality/samples/nosuchsample"), (401, 401, 403, 403, 403, 403, 404, 404)),
    ("PUT", "/api/v1/quality/samples/{sample_id}/comments/{review_id}"): Row(
        lambda w: ("/api/v1/quality/samples/nosuchsample/comments/nosuchreview", {"json": {"judgement": "合理"}}),
        (401, 401, 403, 403, 403, 403, 404, 404)),
    ("GET", "/api/v1/quality/qualification"): Row(plain("/api/v1/quality/qualification?month=2026-11"), (401, 401, 403, 403, 403, 403, 200, 200)),
    ("POST", "/api/v1/quality/teaching-cases"): Row(
        lambda w: ("/api/v1/quality/teaching-cases", {"json": {}}), (401, 401, 403, 403, 403, 403, 422, 422)),
    ("GET", "/api/v1/quality/teaching-cases"): Row(plain("/api/v1/quality/teaching-cases"), (401, 401, 403, 403, 403, 403, 200, 200)),
    ("GET", "/api/v1/quality/candidates"): Row(plain("/api/v1/quality/candidates"), (401, 401, 403, 403, 403, 403, 200, 200)),
    ("POST", "/api/v1/quality/replays"): Row(lambda w: ("/api/v1/quality/replays", {"json": {}}), (401, 401, 403, 403, 403, 403, 422, 422)),
    ("POST", "/api/v1/rulebases/{version}/replay"): Row(
        plain("/api/v1/rulebases/nosuchversion/replay"), (401, 401, 403, 403, 403, 403, 404, 404)),
    ("GET", "/api/v1/quality/replays"): Row(plain("/api/v1/quality/replays"), (401, 401, 403, 403, 403, 403, 200, 200)),
    ("GET", "/api/v1/quality/replays/{job_id}"): Row(plain("/api/v1/quality/replays/nosuchjob"), (401, 401, 403, 403, 403, 403, 404, 404)),
    ("POST", "/api/v1/rulebases/validate"): Row(
        lambda w: ("/api/v1/rulebases/validate", BAD_RULES), (401, 401, 403, 403, 403, 403, 403, 422)),
    ("POST", "/api/v1/rulebases"): Row(
        lambda w: ("/api/v1/rulebases", BAD_RULES), (401, 401, 403, 403, 403, 403, 403, 422)),
    ("GET", "/api/v1/rulebases"): Row(plain("/api/v1/rulebases"), (401, 401, 403, 403, 403, 403, 403, 200)),
    ("POST", "/api/v1/rulebases/{version}/dry-run"): Row(
        plain("/api/v1/rulebases/nosuchversion/dry-run"), (401, 401, 403, 403, 403, 403, 403, 404)),
    ("POST", "/api/v1/rulebases/{version}/activate"): Row(
        plain("/api/v1/rulebases/nosuchversion/activate"), (401, 401, 403, 403, 403, 403, 403, 404)),
    # Statistics: quality managers and admins; a quality manager of the centre sees its members.
    ("GET", "/api/v1/stats/indicators"): Row(
        plain("/api/v1/stats/indicators?from=2026-11-01&to=2026-11-30"), STATS),
    ("GET", "/api/v1/stats/report"): Row(plain("/api/v1/stats/report?month=2026-11&format=csv"), STATS),
    ("GET", "/api/v1/stats/spread"): Row(plain("/api/v1/stats/spread?from=2026-11-01&to=2026-11-30"), STATS),
    ("GET", "/api/v1/stats/rules"): Row(plain("/api/v1/stats/rules?from=2026-11-01&to=2026-11-30"), STATS),
    ("GET", "/api/v1/stats/monitoring"): Row(plain("/api/v1/stats/monitoring?month=2026-11"), STATS),
    ("GET", "/api/v1/stats/prescribers"): Row(plain("/api/v1/stats/prescribers?month=2026-11"), STATS),
    ("GET", "/api/v1/stats/definitions"): Row(plain("/api/v1/stats/definitions"), STATS),
    ("POST", "/api/v1/rulebases/rollback"): Row(
        plain("/api/v1/rulebases/rollback"), (401, 401, 403, 403, 403, 403, 403, 409)),
}


def app_routes(w: World) -> set[tuple[str, str]]:
    """(method, path) of every route the app serves (HEAD aside), mounts included."""
    out: set[tuple[str, str]] = set()
    app_routes = w.client.app.routes  # type: ignore[attr-defined]
    flat = [c.original_route for c in iter_route_contexts(app_routes)] if iter_route_contexts else app_routes
    for route in flat:
        methods = getattr(route, "methods", None) or {"GET"}
        out.update((m, route.path) for m in methods if m != "HEAD")  # type: ignore[attr-defined]
    return out


def test_every_route_of_the_app_has_a_row_in_the_authorization_table(table_world: World) -> None:
    routes = app_routes(table_world)
    assert sorted(routes - TABLE.keys()) == [], "routes without an authorization row"
    assert sorted(TABLE.keys() - routes) == [], "rows for routes the app does not serve"


@pytest.mark.parametrize("route", list(TABLE), ids=[f"{m} {p}" for m, p in TABLE])
def test_each_kind_of_caller_gets_the_status_the_table_says(table_world: World, route: tuple[str, str]) -> None:
    w = table_world
    row = TABLE[route]
    got: dict[str, int] = {}
    for kind in KINDS:
        url, kwargs = row.request(w)
        kwargs = copy.deepcopy(kwargs)
        r = w.client.request(route[0], url, headers=headers_of(w, kind), **kwargs)
        got[kind] = r.status_code
        if r.status_code >= 400:
            assert r.headers["content-type"].startswith("application/fhir+json") or route[1].startswith(
                "/api/v1/rulebases"), (kind, r.text)
    assert got == dict(zip(KINDS, row.expect, strict=True))


def test_an_admin_token_cannot_act_on_the_queue_and_the_domain_says_why(table_world: World) -> None:
    r = table_world.client.post("/api/v1/queue/claim", headers=table_world.user("admin"))
    assert r.status_code == 403
    assert "queue.work" in r.json()["issue"][0]["diagnostics"]


def test_the_centres_his_key_cannot_answer_a_members_returned_prescription(table_world: World) -> None:
    w = table_world
    tid = returned_task(w)
    answer = {"answer": "insist", "reason": "双签"}
    assert w.client.post(f"/api/v1/tasks/{tid}/answer", json=answer, headers=w.his(w.centre_key)).status_code == 404
    task = w.client.get(f"/api/v1/tasks/{tid}", headers=w.his(w.member_key)).json()
    assert task["status"] == "returned"  # untouched by the refused answer


def test_a_pharmacist_token_cannot_submit_a_prescription_even_with_an_institution(table_world: World) -> None:
    w = table_world
    for path, body in (("/api/v1/reviews", fresh(RECHECK)), (SERVICE, order_sign(fresh(RECHECK)))):
        r = w.client.post(path, json=body, headers=w.user("pharmacist"))
        assert r.status_code == 403 and r.json()["resourceType"] == "OperationOutcome"




def test_the_openapi_document_lists_who_may_be_refused_and_how(table_world: World) -> None:
    doc = table_world.client.get("/openapi.json").json()
    assert "HTTPValidationError" not in str(doc)
    post_reviews = doc["paths"]["/api/v1/reviews"]["post"]["responses"]
    assert {"200", "201", "401", "403", "413", "422", "429"} <= post_reviews.keys()
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            for status, answer in operation["responses"].items():
                if status.startswith("4"):
                    assert answer["content"]["application/fhir+json"]["schema"] == {
                        "$ref": "#/components/schemas/OperationOutcome"}, (method, path, status)
            if operation.get("security"):  # authenticated: a refusal of each kind is documented
                assert {"401", "403", "429"} <= operation["responses"].keys(), (method, path)
