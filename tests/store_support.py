"""Test support for the store: throw-away databases on SQLite and PostgreSQL, and a fake pipeline.

Used by tests/store, tests/queue, tests/api and the benchmarks; it lives under tests/ so that the
product imports no pytest. ``AUDIT_TEST_POSTGRES_URL`` (a test-only variable, read here) names the
PostgreSQL server. A PostgreSQL database is a
fresh schema with a random name in database ``test``, dropped afterwards; the engine's
``search_path`` points at it, so migrations and queries never see another run's tables.
Under ``CI=true`` an unreachable PostgreSQL is a failure, never a skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import quote

import pytest
import sqlalchemy as sa

from audit_engine.findings import Finding
from audit_engine.review import ReviewResult
from audit_engine.schema import FactIssue, PrescriptionFacts

DEFAULT_TEST_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def postgres_base_url() -> str:
    return os.environ.get("AUDIT_TEST_POSTGRES_URL", DEFAULT_TEST_POSTGRES)


def postgres_problem() -> str | None:
    """Why PostgreSQL cannot be used here, or None when it can."""
    engine = sa.create_engine(postgres_base_url(), connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        return None
    except Exception as exc:
        return f"PostgreSQL at {postgres_base_url()} unreachable: {type(exc).__name__}: {exc}"
    finally:
        engine.dispose()


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@contextmanager
def temporary_postgres() -> Iterator[str]:
    """A URL whose ``search_path`` is a brand-new schema; the schema is dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = sa.create_engine(postgres_base_url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    base = sa.make_url(postgres_base_url())
    url = base.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.dispose()


@contextmanager
def required_postgres() -> Iterator[str]:
    """``temporary_postgres`` for a test; when PostgreSQL is unreachable the test fails under
    CI=true (PostgreSQL tests must run there) and is skipped elsewhere."""
    problem = postgres_problem()
    if problem is not None:
        if in_ci():
            pytest.fail(f"{problem} (CI=true: PostgreSQL tests must run)")
        pytest.skip(problem)
    with temporary_postgres() as url:
        yield url


@contextmanager
def temporary_sqlite(folder: str) -> Iterator[str]:
    path = os.path.join(folder, f"audit-{uuid.uuid4().hex[:8]}.sqlite")
    yield f"sqlite:///{quote(path)}"


# --------------------------------------------------------------------------- a fake pipeline
def medication_bundle(
    identifier: str | None,
    *,
    drugs: tuple[str, ...] = ("阿莫西林胶囊",),
    encounter_class: str = "AMB",
    levels: tuple[int, ...] = (),
    control: str | None = None,
    unknown_drug: bool = False,
) -> dict[str, Any]:
    """A small, real-looking FHIR R4 collection Bundle. The ``extension`` under
    ``meta.tag`` carries what :class:`FakePipeline` should find (levels, control class),
    so a store test states its scenario in the payload itself."""
    entries: list[dict[str, Any]] = [
        {
            "resource": {
                "resourceType": "Encounter",
                "id": "enc1",
                "status": "in-progress",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": encounter_class},
            }
        }
    ]
    for n, drug in enumerate(drugs, 1):
        mr: dict[str, Any] = {
            "resourceType": "MedicationRequest",
            "id": f"mr{n}",
            "status": "draft",
            "intent": "order",
            "medicationCodeableConcept": {"text": drug},
            "subject": {"reference": "Patient/p1"},
            "encounter": {"reference": "Encounter/enc1"},
            "authoredOn": "2026-11-23",
            "dosageInstruction": [{"text": "每日三次，每次1粒"}],
        }
        if identifier is not None:
            mr["groupIdentifier"] = {"system": "urn:his:prescription", "value": identifier}
        entries.append({"resource": mr})
    scenario = {"levels": list(levels), "control": control, "unknown_drug": unknown_drug}
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "meta": {"tag": [{"system": "urn:test:scenario", "code": "store", "display": _dumps(scenario)}]},
        "entry": entries,
    }


def _dumps(obj: Any) -> str:
    import json

    return json.dumps(obj, ensure_ascii=False, sort_keys=True)


class FakePipeline:
    """A stand-in for ``review_payload``: reads the scenario tag of :func:`medication_bundle`.

    ``fail_with`` makes it raise (an internal failure, to exercise fail open / closed);
    ``calls`` counts invocations.
    """

    def __init__(self, *, version: str = "rb-test-1", fail_with: BaseException | None = None) -> None:
        self.version = version
        self.fail_with = fail_with
        self.calls = 0

    def __call__(
        self,
        payload: dict[str, Any],
        *,
        kind: str,
        engine: Any,
        client_institution: dict[str, Any] | None = None,
        today: date | None = None,
    ) -> ReviewResult:
        import json

        self.calls += 1
        if self.fail_with is not None:
            raise self.fail_with
        scenario = json.loads(payload["meta"]["tag"][0]["display"])
        mrs = [e["resource"] for e in payload["entry"] if e["resource"]["resourceType"] == "MedicationRequest"]
        enc = next(e["resource"] for e in payload["entry"] if e["resource"]["resourceType"] == "Encounter")
        identifier = mrs[0].get("groupIdentifier", {}).get("value") if mrs else None
        items: list[dict[str, Any]] = []
        for mr in mrs:
            item: dict[str, Any] = {"id": mr["id"], "reference": f"MedicationRequest/{mr['id']}",
                                    "name": mr["medicationCodeableConcept"]["text"]}
            if not scenario["unknown_drug"]:
                item["drug_id"] = mr["medicationCodeableConcept"]["text"]
            if scenario["control"]:
                item["control"] = scenario["control"]
            items.append(item)
        issues = [FactIssue("UNKNOWN_DRUG", "药品无法识别", item=items[0]["id"])] if scenario["unknown_drug"] else []
        refs = tuple(i["reference"] for i in items)
        findings = tuple(
            Finding(
                rule_id=f"TEST-{n:03d}", title=f"测试规则 {n}", category="适宜性", subtype="剂量",
                level=level, message=f"测试发现 {n}", evidence="测试依据", implicated=refs[:1],
            )
            for n, level in enumerate(sorted(scenario["levels"], reverse=True), 1)
        )
        facts = PrescriptionFacts(
            prescription={"type": "急诊" if enc["class"]["code"] == "EMER" else "门诊", "item_count": len(items)},
            institution=dict(client_institution or {}),
            items=items,
            issues=issues,
            prescription_id=identifier,
        )
        return ReviewResult(identifier, facts, findings, self.version, refs, {"intake": 0.1, "engine": 0.1})


ReviewFn = Callable[..., Any]


# --------------------------------------------------------------------------- a small alliance
@dataclass(frozen=True)
class World:
    """Two alliances: centre C1 with member M1, centre C2 with member M2, plus users.

    Principals: ``his_*`` are the institutions' HIS (API keys in ``keys``); ``ph_c1`` a
    centre pharmacist, ``ph_m1`` a member pharmacist, ``ph_c2`` the other centre's,
    ``quality`` an alliance-wide quality manager.
    """

    ids: dict[str, int]
    keys: dict[str, str]
    principals: dict[str, Any]

    def __getattr__(self, name: str) -> Any:
        try:
            return self.principals[name]
        except KeyError:
            raise AttributeError(name) from None


_PASSWORD_HASH: str | None = None
TEST_PASSWORD = "correct horse battery"


def build_world(engine: sa.Engine) -> World:
    """Create the institutions and users of :class:`World` (one argon2 hash per process)."""
    global _PASSWORD_HASH
    from audit_engine import auth
    from audit_engine.store.db import session_scope, utcnow
    from audit_engine.store.models import User

    if _PASSWORD_HASH is None:
        _PASSWORD_HASH = auth._hasher.hash(TEST_PASSWORD)
    ids: dict[str, int] = {}
    keys: dict[str, str] = {}
    principals: dict[str, Any] = {}
    with session_scope(engine) as s:
        for code, name, level, centre, of in (
            ("C1", "一县人民医院", "县级医院", True, None),
            ("M1", "一县城关镇卫生院", "乡镇卫生院", False, "C1"),
            ("C2", "二县人民医院", "县级医院", True, None),
            ("M2", "二县河口村卫生室", "村卫生室", False, "C2"),
        ):
            inst, key = auth.create_institution(s, code=code, name=name, level=level, is_centre=centre, centre_code=of)
            ids[code], keys[code] = inst.id, key
            principals[f"his_{code.lower()}"] = auth.principal_for_institution(inst)
        for username, role, inst_code in (
            ("ph_c1", "pharmacist", "C1"),
            ("ph2_c1", "pharmacist", "C1"),
            ("ph_m1", "pharmacist", "M1"),
            ("ph_c2", "pharmacist", "C2"),
            ("quality", "quality", None),
        ):
            user = User(
                username=username, password_hash=_PASSWORD_HASH, role=role,
                institution_id=ids[inst_code] if inst_code else None, created_at=utcnow(),
            )
            s.add(user)
            s.flush()
            principals[username] = auth.principal_for_user(s, user)
    return World(ids, keys, principals)


# --------------------------------------------------------------------------- worker processes
def ok_sender(url: str, body: bytes, headers: dict[str, str]) -> int:
    """A webhook receiver that accepts everything (picklable, for worker processes)."""
    return 200


def drain_in_process(url: str, now_iso: str) -> tuple[int, int]:
    """Run worker passes at a fixed instant until two in a row find nothing to do.

    Meant as a ``multiprocessing`` target (spawn): returns (timeouts fired, deliveries sent)
    by this process, so a test can add up what several processes did.
    """
    from datetime import datetime

    from audit_engine import worker
    from audit_engine.store.db import make_engine

    eng = make_engine(url)
    fired = sent = idle = 0
    try:
        while idle < 2:
            report = worker.tick(eng, now=datetime.fromisoformat(now_iso), sender=ok_sender)
            fired += report.timeouts
            sent += report.deliveries.attempted
            idle = idle + 1 if not (report.timeouts or report.deliveries.attempted) else 0
    finally:
        eng.dispose()
    return fired, sent


def allow_webhook_host(s: Any, *, institution_id: int, host: str) -> None:
    """Put ``host`` on an institution's webhook allowlist (what an admin does with
    ``audit-engine webhook-host add``), without an admin principal."""
    from audit_engine.store.db import utcnow
    from audit_engine.store.models import WebhookAllowedHost

    s.add(WebhookAllowedHost(institution_id=institution_id, host=host, added_by="test", created_at=utcnow()))
    s.flush()
