"""The one settings object: every ``AUDIT_*`` environment variable, read and validated once.

No other module reads the environment. The service validates the settings when it starts
(``audit-engine`` refuses to run with a bad value and names the variable); the HTTP routes get
them as a dependency (``api.deps.SettingsDep``), the worker and the command-line tools as an
argument. Code deep in the core that has no caller to hand them down (the intake limits, the
statistics time zone) asks :func:`get_settings`, which is cached, never an import-time global.

Test-only variables (``AUDIT_TEST_POSTGRES_URL``) belong to the tests, not here.
"""

from __future__ import annotations

import difflib
import logging
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from audit_engine.errors import AuditEngineError

log = logging.getLogger("audit_engine.settings")

ENV_PREFIX = "AUDIT_"
DEFAULT_DATABASE_URL = "sqlite:///data/audit.sqlite"
# Intake limits: one submission is one prescription with its patient context.
MAX_BODY_BYTES = 2_000_000
MAX_ENTRIES = 2000
MAX_DEPTH = 64
# Orders (MedicationRequests) under review in one prescription. 处方管理办法 (卫生部令第53号)
# 第六条 caps a western / 中成药 prescription at 5 drugs; a 饮片 prescription has no cap, and a
# large decoction or 膏方 has 30-50 herbs. 60 leaves room for all of these.
MAX_ORDERS = 60
# The background worker (audit_engine/worker.py).
WORKER_INTERVAL = 1.0
CHAIN_CHECK_SECONDS = 10.0
# Read by the test harness, not by the product (AUDIT_ENGINE_FACTORY: api/main.py's test hook).
NOT_SETTINGS = frozenset({"AUDIT_TEST_POSTGRES_URL", "AUDIT_ENGINE_FACTORY"})


class ConfigurationError(AuditEngineError):
    """One or more ``AUDIT_*`` variables have values the service cannot run with."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("bad configuration:\n" + "\n".join(f"  {p}" for p in problems))


def _rate_limit(text: str) -> str:
    """``"10/15 minutes"`` or ``"off"`` (the ``limits`` notation, see api/throttle.py)."""
    from limits import parse

    if text.strip().lower() == "off":
        return text
    try:
        parse(text)
    except ValueError:
        raise ValueError(f"not a rate limit: {text!r} (write e.g. '10/15 minutes', or 'off')") from None
    return text


class Settings(BaseSettings):
    """Everything the service, the worker and the tools are configured by (README, "Configuration")."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_ignore_empty=True, frozen=True, populate_by_name=True, extra="forbid",
    )

    # --- storage and rulebase
    database_url: str = Field(default=DEFAULT_DATABASE_URL, description="SQLAlchemy URL (AUDIT_DATABASE_URL)")
    rulebase_path: str | None = Field(
        default=None, validation_alias="AUDIT_RULEBASE",
        description="rulebase folder (AUDIT_RULEBASE); unset: the shipped rulebase/")
    rulebase_store_dir: str = Field(
        default="data/rulebases", validation_alias="AUDIT_RULEBASE_STORE",
        description="where uploaded rulebase versions are written for loading (AUDIT_RULEBASE_STORE)")
    rulebase_poll_seconds: float = Field(
        default=2.0, ge=0,
        description="how often a process asks the DB which rulebase version is active, and the audit chain's state")

    # --- security
    auth_disabled: bool = Field(default=False, description="AUDIT_AUTH_DISABLED=1: local development only")
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

    # --- intake limits (audit_engine/intake/limits.py)
    max_body_bytes: int = Field(default=MAX_BODY_BYTES, gt=0, description="larger request bodies get 413")
    max_entries: int = Field(default=MAX_ENTRIES, gt=0, description="more Bundle entries get 413")
    max_depth: int = Field(default=MAX_DEPTH, gt=0, description="deeper JSON nesting gets 422")
    max_orders: int = Field(default=MAX_ORDERS, gt=0,
                            description="more orders under review in one prescription get 413")

    # --- time limits
    review_budget_ms: float = Field(
        default=5000.0, gt=0,
        description="AUDIT_REVIEW_BUDGET_MS: a review still running after this long stops, and the "
                    "institution's fail mode decides (open: pass, closed: pharmacist); the review records why")
    long_poll_max_seconds: float = Field(default=60.0, ge=0)
    keep_alive_seconds: float = Field(
        default=5.0, gt=0, description="AUDIT_KEEP_ALIVE_SECONDS: an idle keep-alive connection is closed after this")
    header_timeout_seconds: float = Field(
        default=10.0, gt=0,
        description="AUDIT_HEADER_TIMEOUT_SECONDS: a client must send a request's headers within this, "
                    "from connecting or from the end of its previous response (slow-header clients)")
    body_timeout_seconds: float = Field(
        default=60.0, gt=0,
        description="AUDIT_BODY_TIMEOUT_SECONDS: the whole request body must arrive within this (slow-body clients)")

    # --- background worker and process
    worker_interval: float = Field(
        default=WORKER_INTERVAL, gt=0, description="seconds between the background worker's rounds")
    chain_check_seconds: float = Field(
        default=CHAIN_CHECK_SECONDS, gt=0, description="how often the worker verifies the audit chain (AUDIT_CHAIN_CHECK_SECONDS)")
    log_level: Literal["critical", "error", "warning", "info", "debug", "trace"] = Field(
        default="info", description="uvicorn log level (AUDIT_LOG_LEVEL)")

    # --- statistics
    stats_timezone: str = Field(
        default="Asia/Shanghai", description="the alliance's time zone: a review counts in its local month there")
    monitored_drugs: Path | None = Field(
        default=None, description="the key monitored drugs CSV (AUDIT_MONITORED_DRUGS); unset: the shipped seed")

    # --- the rulebase command line (audit-engine rulebase …)
    admin_user: str | None = Field(default=None, description="AUDIT_ADMIN_USER; unset: asked on the terminal")
    admin_password: SecretStr | None = Field(
        default=None, description="AUDIT_ADMIN_PASSWORD; unset: asked on the terminal")

    @field_validator("login_attempts_per_user", "login_attempts_per_address", "requests_per_credential",
                     "bad_credentials_per_address")
    @classmethod
    def _is_rate_limit(cls, v: str) -> str:
        return _rate_limit(v)

    @field_validator("database_url")
    @classmethod
    def _url_has_scheme(cls, v: str) -> str:
        if "://" not in v:
            raise ValueError(f"must be a SQLAlchemy URL such as postgresql+psycopg://user@host/db, got {v!r}")
        return v

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_log_level(cls, v: Any) -> Any:
        return v.strip().lower() if isinstance(v, str) else v

    @field_validator("stats_timezone")
    @classmethod
    def _is_time_zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r} (an IANA name such as Asia/Shanghai)") from None
        return v

    @field_validator("monitored_drugs")
    @classmethod
    def _is_file(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_file():
            raise ValueError(f"no such file: {str(v)!r}")
        return v

    @property
    def time_zone(self) -> ZoneInfo:
        return ZoneInfo(self.stats_timezone)


def env_name(field: str) -> str:
    """The environment variable that sets ``field``."""
    info = Settings.model_fields[field]
    if isinstance(info.validation_alias, str):
        return info.validation_alias
    return f"{ENV_PREFIX}{field.upper()}"


def known_variables() -> frozenset[str]:
    return frozenset(env_name(f) for f in Settings.model_fields) | NOT_SETTINGS


def _problems(err: ValidationError) -> list[str]:
    out = []
    for e in err.errors(include_url=False):
        field = str(e["loc"][0]) if e["loc"] else ""
        name = env_name(field) if field in Settings.model_fields else (field or "settings")
        message = str(e["msg"]).removeprefix("Value error, ")
        shown = e.get("input")
        got = f" (got {shown!r})" if isinstance(shown, str | int | float) and "got " not in message else ""
        out.append(f"{name}: {message}{got}")
    return out


def _unknown_variables(environ: dict[str, str]) -> list[str]:
    """``AUDIT_*`` variables no setting reads (a typo would otherwise be silently ignored)."""
    known = known_variables()
    out = []
    for name in sorted(n for n in environ if n.startswith(ENV_PREFIX) and n not in known):
        close = difflib.get_close_matches(name, sorted(known), n=1)
        out.append(f"{name} is not a setting" + (f" (did you mean {close[0]}?)" if close else ""))
    return out


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, validated (uncached; tests call this after monkeypatching).

    Raises ConfigurationError naming every bad variable at once. An unknown ``AUDIT_*`` name
    is logged as a warning, with the closest real one.
    """
    for warning in _unknown_variables(dict(os.environ)):
        log.warning("environment: %s", warning)
    try:
        return Settings(**overrides)
    except ValidationError as err:
        raise ConfigurationError(_problems(err)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, loaded once (``get_settings.cache_clear()`` to reload)."""
    return load_settings()
