"""Webhooks point only where an admin allowed: http(s), a host on the institution's allowlist,
never the service's own machine; at most 20 active subscriptions; ids too large for the
database are a 422, not a 500. On SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from apiworld import World

from audit_engine import webhooks
from audit_engine.store.db import make_engine


def subscribe(w: World, url: str, key: str | None = None) -> tuple[int, dict]:
    r = w.client.post("/api/v1/subscriptions", json={"url": url}, headers=w.his(key))
    return r.status_code, r.json()


def test_an_institution_holds_at_most_twenty_active_subscriptions(any_world: World) -> None:
    w = any_world
    for i in range(webhooks.MAX_ACTIVE_SUBSCRIPTIONS):
        status, body = subscribe(w, f"https://his.example.cn/cb/{i}")
        assert status == 201, body
    status, body = subscribe(w, "https://his.example.cn/cb/one-too-many")
    assert status == 409 and body["resourceType"] == "OperationOutcome"
    assert "20" in body["issue"][0]["diagnostics"]
    # Deleting one makes room again; other institutions are not affected by TOWN01's count.
    first = w.client.get("/api/v1/subscriptions", headers=w.his()).json()["subscriptions"][0]["id"]
    assert w.client.delete(f"/api/v1/subscriptions/{first}", headers=w.his()).status_code == 204
    assert subscribe(w, "https://his.example.cn/cb/again")[0] == 201


def test_a_host_not_on_the_allowlist_is_refused_with_the_way_to_allow_it(any_world: World) -> None:
    status, body = subscribe(any_world, "https://10.20.30.40/audit/callback")
    assert status == 422
    assert "白名单" in body["issue"][0]["diagnostics"] and "webhook-host add" in body["issue"][0]["diagnostics"]


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8000/cb", "http://localhost/cb", "http://[::1]/cb", "http://0.0.0.0/cb",
    "http://169.254.169.254/latest/meta-data", "http://[::ffff:127.0.0.1]/cb", "ftp://his.example.cn/cb",
    "https://user:pw@his.example.cn/cb", "https://his.example.cn:99999/cb",
])
def test_loopback_link_local_non_http_and_malformed_urls_are_refused(world: World, url: str) -> None:
    status, body = subscribe(world, url)
    assert status == 422 and body["resourceType"] == "OperationOutcome", body


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "0.0.0.0", "169.254.169.254", "not a host"])
def test_an_admin_cannot_allowlist_the_services_own_machine_or_nonsense(world: World, host: str) -> None:
    r = world.client.post("/api/v1/admin/institutions/TOWN01/webhook-hosts", json={"host": host},
                          headers=world.user("admin"))
    assert r.status_code == 422 and r.json()["resourceType"] == "OperationOutcome"


def test_the_address_the_service_answers_on_is_refused_even_when_allowlisted(world: World) -> None:
    w = world
    # The test client reaches the app as http://testserver:80, so that is "this service".
    assert w.client.post("/api/v1/admin/institutions/TOWN01/webhook-hosts", json={"host": "testserver"},
                         headers=w.user("admin")).status_code == 201
    status, body = subscribe(w, "http://testserver/api/v1/reviews")
    assert status == 422 and "本服务自己的地址" in body["issue"][0]["diagnostics"]
    assert subscribe(w, "http://testserver:8080/cb")[0] == 201  # another port on that host is another service


def test_private_addresses_are_fine_once_an_admin_allowed_them(any_world: World) -> None:
    w = any_world
    r = w.client.post("/api/v1/admin/institutions/TOWN01/webhook-hosts", json={"host": "10.20.30.40"},
                      headers=w.user("admin"))
    assert r.status_code == 201 and r.json()["host"] == "10.20.30.40" and r.json()["added_by"] == "guanli"
    assert subscribe(w, "https://10.20.30.40/audit/callback")[0] == 201
    # The allowlist is per institution: VIL01 may not use TOWN01's host.
    assert subscribe(w, "https://10.20.30.40/audit/callback", key=w.other_member_key)[0] == 422


def test_removing_a_host_deactivates_its_subscriptions_and_both_changes_are_audited(any_world: World) -> None:
    from audit_engine.store.models import AuditEntry as AuditLog

    w = any_world
    admin = w.user("admin")
    w.client.post("/api/v1/admin/institutions/TOWN01/webhook-hosts", json={"host": "His.County.Local."}, headers=admin)
    assert subscribe(w, "https://his.county.local/cb")[0] == 201
    assert subscribe(w, "https://his.example.cn/cb")[0] == 201
    r = w.client.delete("/api/v1/admin/institutions/TOWN01/webhook-hosts/his.county.local", headers=admin)
    assert r.status_code == 200 and r.json() == {"host": "his.county.local", "subscriptions_deactivated": 1}
    urls = [s["url"] for s in w.client.get("/api/v1/subscriptions", headers=w.his()).json()["subscriptions"]]
    assert urls == ["https://his.example.cn/cb"]
    listed = w.client.get("/api/v1/admin/institutions/TOWN01/webhook-hosts", headers=admin).json()["hosts"]
    assert [h["host"] for h in listed] == ["his.example.cn"]
    db = make_engine(w.url)
    try:
        with db.connect() as conn:
            rows = conn.execute(sa.select(AuditLog.action, AuditLog.actor_name, AuditLog.detail)
                                .where(AuditLog.action.like("webhook_host.%")).order_by(AuditLog.id)).all()
    finally:
        db.dispose()
    assert [(a, n) for a, n, _ in rows] == [("webhook_host.allowed", "guanli"), ("webhook_host.removed", "guanli")]
    assert rows[1][2] == {"host": "his.county.local", "subscriptions_deactivated": 1}
    assert w.client.delete("/api/v1/admin/institutions/TOWN01/webhook-hosts/his.county.local",
                           headers=admin).status_code == 404
    assert w.client.get("/api/v1/admin/institutions/NOPE/webhook-hosts", headers=admin).status_code == 404


@pytest.mark.parametrize("sub_id", [2**31, 2**63, 2**64 + 7, 10**30, 0, -1])
def test_a_subscription_id_beyond_the_databases_integers_is_a_422_not_a_500(any_world: World, sub_id: int) -> None:
    r = any_world.client.delete(f"/api/v1/subscriptions/{sub_id}", headers=any_world.his())
    assert r.status_code == 422 and r.json()["resourceType"] == "OperationOutcome"


def test_the_largest_subscription_id_the_database_holds_is_a_plain_404(any_world: World) -> None:
    r = any_world.client.delete(f"/api/v1/subscriptions/{2**31 - 1}", headers=any_world.his())
    assert r.status_code == 404


def test_the_real_sender_refuses_a_host_that_resolves_to_this_machine() -> None:
    send = webhooks.httpx_sender(timeout_s=1)
    with pytest.raises(ConnectionRefusedError, match="回环"):
        send("http://localhost:9/cb", b"{}", {})
    assert webhooks.resolved_refusal("http://10.20.30.40/cb") is None
