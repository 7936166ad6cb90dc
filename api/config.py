"""Service settings, read from the environment once and validated when they load."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, field_validator


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


class Settings(BaseModel, frozen=True):
    """Everything the HTTP service is configured by (see CONTRACT.md, "Environment")."""

    database_url: str = Field(description="SQLAlchemy URL (AUDIT_DATABASE_URL)")
    rulebase_path: str | None = Field(default=None, description="rulebase folder (AUDIT_RULEBASE)")
    auth_disabled: bool = Field(default=False, description="AUDIT_AUTH_DISABLED=1: local development only")
    max_body_bytes: int = Field(default=2_000_000, gt=0, description="larger request bodies get 413")
    rulebase_poll_seconds: float = Field(
        default=2.0, ge=0,
        description="how often a process asks the DB which rulebase version is active, and the audit chain's state"
    )
    long_poll_max_seconds: float = Field(default=60.0, ge=0)
    token_ttl_seconds: int = Field(default=8 * 3600, gt=0)
    rulebase_store_dir: str = Field(default="data/rulebases", description="where uploaded rulebase versions live")
    review_budget_ms: float = Field(
        default=5000.0, gt=0,
        description="AUDIT_REVIEW_BUDGET_MS: a review still running after this long stops, and the "
                    "institution's fail mode decides (open: pass, closed: pharmacist); the review records why")
    keep_alive_seconds: float = Field(
        default=5.0, gt=0, description="AUDIT_KEEP_ALIVE_SECONDS: an idle keep-alive connection is closed after this")
    header_timeout_seconds: float = Field(
        default=10.0, gt=0,
        description="AUDIT_HEADER_TIMEOUT_SECONDS: a client must send a request's headers within this, "
                    "from connecting or from the end of its previous response (slow-header clients)")
    body_timeout_seconds: float = Field(
        default=60.0, gt=0,
        description="AUDIT_BODY_TIMEOUT_SECONDS: the whole request body must arrive within this (slow-body clients)")
    # Throttling (api/throttle.py): "N/period" in the `limits` notation, or "off".
    login_attempts_per_user: str = Field(
        default="10/15 minutes", description="failed logins per user name before 429 (AUDIT_LOGIN_ATTEMPTS_PER_USER)")
    login_attempts_per_address: str = Field(
        default="30/15 minutes",
        description="failed logins per client address before 429 (AUDIT_LOGIN_ATTEMPTS_PER_ADDRESS)")
    requests_per_credential: str = Field(
        default="100/second", description="requests per API key or user token (AUDIT_REQUESTS_PER_CREDENTIAL)")
    bad_credentials_per_address: str = Field(
        default="20/minute",
        description="requests with missing or bad credentials per client address (AUDIT_BAD_CREDENTIALS_PER_ADDRESS)")

    @field_validator("login_attempts_per_user", "login_attempts_per_address", "requests_per_credential",
                     "bad_credentials_per_address")
    @classmethod
    def _is_rate_limit(cls, v: str) -> str:
        from api.throttle import parse_limit

        parse_limit(v)
        return v

    @field_validator("database_url")
    @classmethod
    def _url_has_scheme(cls, v: str) -> str:
        if "://" not in v:
            raise ValueError(f"AUDIT_DATABASE_URL must be a SQLAlchemy URL, got {v!r}")
        return v


_THROTTLE_SETTINGS = ("login_attempts_per_user", "login_attempts_per_address", "requests_per_credential",
                      "bad_credentials_per_address")


def _default_database_url() -> str:
    try:
        from audit_engine.store.db import database_url

        return database_url()
    except ImportError:  # the store is not importable yet: the documented default
        Path("data").mkdir(exist_ok=True)
        return "sqlite:///data/audit.sqlite"


def load_settings() -> Settings:
    """Build settings from the environment (uncached; tests call this after monkeypatching)."""
    throttling: dict[str, Any] = {name: os.environ[f"AUDIT_{name.upper()}"] for name in _THROTTLE_SETTINGS
                                  if os.environ.get(f"AUDIT_{name.upper()}")}
    return Settings(
        database_url=os.environ.get("AUDIT_DATABASE_URL") or _default_database_url(),
        rulebase_path=os.environ.get("AUDIT_RULEBASE") or None,
        auth_disabled=_flag("AUDIT_AUTH_DISABLED"),
        max_body_bytes=int(os.environ.get("AUDIT_MAX_BODY_BYTES", "2000000")),
        rulebase_poll_seconds=float(os.environ.get("AUDIT_RULEBASE_POLL_SECONDS", "2.0")),
        long_poll_max_seconds=float(os.environ.get("AUDIT_LONG_POLL_MAX_SECONDS", "60")),
        rulebase_store_dir=os.environ.get("AUDIT_RULEBASE_STORE", "data/rulebases"),
        review_budget_ms=float(os.environ.get("AUDIT_REVIEW_BUDGET_MS", "5000")),
        keep_alive_seconds=float(os.environ.get("AUDIT_KEEP_ALIVE_SECONDS", "5")),
        header_timeout_seconds=float(os.environ.get("AUDIT_HEADER_TIMEOUT_SECONDS", "10")),
        body_timeout_seconds=float(os.environ.get("AUDIT_BODY_TIMEOUT_SECONDS", "60")),
        **throttling,
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, loaded once."""
    return load_settings()
