"""Departments and practitioners: idempotent upserts, validated titles, lookups by local code."""

from __future__ import annotations

import pytest

from audit_engine.errors import InvalidRequestError, NotFoundError
from audit_engine.store import reference
from audit_engine.store.db import session_scope


def test_a_roster_import_is_idempotent_and_updates_what_changed(engine, world) -> None:
    with session_scope(engine) as s:
        d1 = reference.upsert_department(s, institution_code="M1", code="ER", name="急诊科")
        assert reference.upsert_department(s, institution_code="M1", code="ER", name="急诊医学科") == d1
        first = reference.upsert_practitioner(
            s, institution_code="M1", code="D001", name="王医生", title="主治医师",
            rights=["抗菌药物处方权"], department_code="ER",
        )
        again = reference.upsert_practitioner(
            s, institution_code="M1", code="D001", name="王医生", title="副主任医师",
            rights=["抗菌药物处方权", "麻醉药品和第一类精神药品处方权", "抗菌药物处方权"], department_code="ER",
        )
    assert again.id == first.id and again.title == "副主任医师" and again.department == "急诊医学科"
    assert again.rights == ("抗菌药物处方权", "麻醉药品和第一类精神药品处方权")
    with session_scope(engine) as s:
        assert reference.practitioner(s, institution_code="M1", code="D001") == again
        assert reference.practitioner(s, institution_code="M2", code="D001") is None


def test_an_unknown_title_suggests_the_closest(engine, world) -> None:
    with pytest.raises(InvalidRequestError) as caught, session_scope(engine) as s:
        reference.upsert_practitioner(s, institution_code="M1", code="D002", name="李医生", title="主冶医师")
    assert "主治医师" in str(caught.value) and caught.value.location == "Practitioner/M1/D002"


def test_unknown_institution_or_department_is_named(engine, world) -> None:
    with session_scope(engine) as s:
        with pytest.raises(NotFoundError, match="机构"):
            reference.upsert_department(s, institution_code="NOPE", code="ER", name="急诊科")
        with pytest.raises(NotFoundError) as caught:
            reference.upsert_practitioner(s, institution_code="M1", code="D3", name="赵", department_code="PED")
        assert caught.value.location == "Department/M1/PED"
