"""Reference data: departments and practitioners (职称 and special prescribing rights).

The HIS usually sends the prescriber's title and rights in FHIR (CONTRACT.md, China
profile); these tables hold what an institution registers centrally, keyed by its local
codes, so a review can fall back on them and statistics can group by department. Upserts
are idempotent: re-importing an institution's roster changes only what changed.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from audit_engine.errors import InvalidRequestError, NotFoundError
from audit_engine.schema import TITLES
from audit_engine.store.models import Department, Institution, Practitioner


@dataclass(frozen=True, slots=True)
class PractitionerRecord:
    id: int
    institution_code: str
    code: str
    name: str
    title: str | None
    rights: tuple[str, ...]
    department: str | None


def institution_id_of(s: Session, code: str) -> int:
    found = s.scalar(sa.select(Institution.id).where(Institution.code == code))
    if found is None:
        raise NotFoundError(f"Institution/{code}", "没有这个机构")
    return int(found)


def upsert_department(s: Session, *, institution_code: str, code: str, name: str) -> int:
    """Create or rename a department; returns its id."""
    inst = institution_id_of(s, institution_code)
    row = s.scalar(sa.select(Department).where(Department.institution_id == inst, Department.code == code))
    if row is None:
        row = Department(institution_id=inst, code=code, name=name)
        s.add(row)
    else:
        row.name = name
    s.flush()
    return row.id


def upsert_practitioner(
    s: Session,
    *,
    institution_code: str,
    code: str,
    name: str,
    title: str | None = None,
    rights: Iterable[str] = (),
    department_code: str | None = None,
) -> PractitionerRecord:
    """Create or update a prescriber. ``title`` must be one of schema.TITLES (with a hint if not)."""
    if title is not None and title not in TITLES:
        close = difflib.get_close_matches(title, TITLES, n=1, cutoff=0.3)
        hint = f"（是否想写 {close[0]}？）" if close else f"（可选：{'、'.join(TITLES)}）"
        raise InvalidRequestError(f"Practitioner/{institution_code}/{code}", f"未知职称 {title!r}{hint}")
    inst = institution_id_of(s, institution_code)
    dept_id: int | None = None
    if department_code is not None:
        dept_id = s.scalar(
            sa.select(Department.id).where(Department.institution_id == inst, Department.code == department_code)
        )
        if dept_id is None:
            raise NotFoundError(f"Department/{institution_code}/{department_code}", "没有这个科室")
    row = s.scalar(sa.select(Practitioner).where(Practitioner.institution_id == inst, Practitioner.code == code))
    if row is None:
        row = Practitioner(institution_id=inst, code=code)
        s.add(row)
    row.name, row.title, row.rights, row.department_id = name, title, sorted(set(rights)), dept_id
    s.flush()
    return _record(s, row, institution_code)


def practitioner(s: Session, *, institution_code: str, code: str) -> PractitionerRecord | None:
    """A registered prescriber by the institution's local code, or None."""
    row = s.scalar(
        sa.select(Practitioner)
        .join(Institution, Practitioner.institution_id == Institution.id)
        .where(Institution.code == institution_code, Practitioner.code == code)
    )
    return _record(s, row, institution_code) if row is not None else None


def _record(s: Session, row: Practitioner, institution_code: str) -> PractitionerRecord:
    dept = s.scalar(sa.select(Department.name).where(Department.id == row.department_id)) if row.department_id else None
    return PractitionerRecord(row.id, institution_code, row.code, row.name, row.title, tuple(row.rights), dept)
