"""Throttling: failed logins per user name and per client address, requests per credential,
and requests with bad credentials per client address; each refusal is a 429
OperationOutcome with Retry-After. Limits are settings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from apiworld import World, build_world
from dbutil import fresh_database
from pydantic import ValidationError

from audit_engine.settings import Settings, load_settings

BAD_KEY = "ak_000000000000_notarealkeynotarealkeynotarealkeynotareal"


def world_with(tmp_path: Path, **limits: str) -> Iterator[World]:
    for url in fresh_database("sqlite", tmp_path):
        yield from build_world(url, tmp_path, **limits)


def login(w: World, username: str, password: str) -> tuple[int, dict, dict]:
    r = w.client.post("/api/v1/auth/token", data={"username": username, "password": password})
    return r.status_code, r.json(), dict(r.headers)


def assert_throttled(status: int, body: dict, headers: dict) -> None:
    assert status == 429
    assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["code"] == "throttled"
    assert headers["content-type"].startswith("application/fhir+json")
    assert 1 <= int(headers["retry-after"]) <= 15 * 60


@pytest.fixture
def default_world(tmp_path: Path) -> Iterator[World]:
    yield from world_with(tmp_path)


def test_ten_wrong_passwords_lock_the_user_name_even_against_the_right_one(default_world: World) -> None:
    w = default_world
    for _ in range(10):
        assert login(w, "yaoshi", "wrong-password")[0] == 401
    assert_throttled(*login(w, "yaoshi", "pw-yaoshi-1"))
    # Another user from the same address is not locked by yaoshi's failures (30 per address).
    assert login(w, "zhikong", "pw-zhikong-1")[0] == 200


def test_successful_logins_do_not_use_up_the_attempts(default_world: World) -> None:
    w = default_world
    for _ in range(12):
        assert login(w, "yaoshi", "pw-yaoshi-1")[0] == 200
    assert login(w, "yaoshi", "wrong-password")[0] == 401


def test_failures_across_many_user_names_lock_the_client_address(tmp_path: Path) -> None:
    for w in world_with(tmp_path, login_attempts_per_address="5/15 minutes"):
        for i in range(5):
            assert login(w, f"guess{i}", "wrong-password")[0] == 401
        assert_throttled(*login(w, "yaoshi", "pw-yaoshi-1"))


def test_requests_with_bad_keys_are_refused_without_a_lookup_after_the_limit(tmp_path: Path) -> None:
    for w in world_with(tmp_path, bad_credentials_per_address="20/minute"):
        bad = {"Authorization": f"Bearer {BAD_KEY}"}
        for _ in range(20):
            assert w.client.get("/api/v1/subscriptions", headers=bad).status_code == 401
        r = w.client.post("/api/v1/reviews", json={"resourceType": "Bundle"}, headers=bad)
        assert_throttled(r.status_code, r.json(), dict(r.headers))
        # Requests carrying credentials from that address wait too; public routes still answer.
        assert w.client.get("/api/v1/subscriptions", headers=w.his()).status_code == 429
        assert w.client.get("/health").status_code == 200


def test_requests_without_credentials_do_not_count_as_bad_credentials(tmp_path: Path) -> None:
    for w in world_with(tmp_path, bad_credentials_per_address="3/minute"):
        for _ in range(10):
            assert w.client.get("/api/v1/subscriptions").status_code == 401
        assert w.client.get("/api/v1/subscriptions", headers=w.his()).status_code == 200


def test_each_credential_has_its_own_request_rate(tmp_path: Path) -> None:
    for w in world_with(tmp_path, requests_per_credential="5/minute"):
        for _ in range(5):
            assert w.client.get("/api/v1/subscriptions", headers=w.his()).status_code == 200
        r = w.client.get("/api/v1/subscriptions", headers=w.his())
        assert_throttled(r.status_code, r.json(), dict(r.headers))
        r = w.client.post("/api/v1/reviews", json={"resourceType": "Bundle"}, headers=w.his())  # the hot path too
        assert r.status_code == 429
        assert w.client.get("/api/v1/subscriptions", headers=w.his(w.other_member_key)).status_code == 200


def test_limits_are_settings_read_from_the_environment_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUDIT_DATABASE_URL", "sqlite://")
    monkeypatch.setenv("AUDIT_LOGIN_ATTEMPTS_PER_USER", "3/5 minutes")
    monkeypatch.setenv("AUDIT_REQUESTS_PER_CREDENTIAL", "off")
    settings = load_settings()
    assert settings.login_attempts_per_user == "3/5 minutes" and settings.requests_per_credential == "off"
    assert settings.login_attempts_per_address == "30/15 minutes"
    with pytest.raises(ValidationError, match="not a rate limit"):
        Settings(database_url="sqlite://", bad_credentials_per_address="lots")
