"""HTTP helpers shared by the API tests that log users in."""

from __future__ import annotations

from fastapi.testclient import TestClient


def login(client: TestClient, username: str, password: str) -> dict[str, str]:
    """The Authorization header of a freshly issued user token (the log-in must succeed)."""
    r = client.post("/api/v1/auth/token", data={"username": username, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}
