"""Administration use cases: registering institutions, and an institution's verdict policy.

Registration applies the alliance's one rule for review centres: the first 县级医院
registered becomes the review centre (牵头医院); later institutions join it.


A change names only the fields it changes; the result is validated as a whole
(``Policy.__post_init__``), stored, and written to the audit log with the policy before
and after, in the caller's transaction. Later reviews use it; earlier ones keep the
snapshot that decided them.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from audit_engine import audit_log, auth
from audit_engine.errors import InvalidRequestError, NotFoundError
from audit_engine.policy import Policy
from audit_engine.store.models import Institution
from audit_engine.store.policies import policy_for, set_policy
from audit_engine.unit_of_work import UnitOfWork

POLICY_FIELDS = tuple(f.name for f in fields(Policy))
CENTRE_LEVEL = "县级医院"


def register_institution(s: Session, *, code: str, name: str, level: str) -> tuple[Institution, str]:
    """Register an institution and return it with its first API key (shown once): the first
    县级医院 becomes the review centre, every other institution joins the existing one."""
    has_centre = s.scalar(sa.select(Institution.id).where(Institution.is_centre).limit(1)) is not None
    return auth.create_institution(s, code=code, name=name, level=level,
                                   is_centre=level == CENTRE_LEVEL and not has_centre)


def development_principal(s: Session, *, code: str, name: str) -> auth.Principal:
    """For ``AUDIT_AUTH_DISABLED=1`` only: the review centre with every role, registering the
    county hospital ``code`` first when the alliance has no centre yet (its own transaction)."""
    if s.scalar(sa.select(Institution.id).where(Institution.is_centre).limit(1)) is None:
        try:
            register_institution(s, code=code, name=name, level=CENTRE_LEVEL)
            s.commit()
        except sa.exc.IntegrityError:  # another process created it first
            s.rollback()
    return auth.superuser_principal(s)


def _institution(s: Session, code: str) -> Institution:
    inst = s.scalar(sa.select(Institution).where(Institution.code == code))
    if inst is None:
        raise NotFoundError(f"Institution/{code}", f"没有机构 {code}")
    return inst


def institution_policy(s: Session, *, code: str) -> Policy:
    """The policy an institution's next review will be decided by (the defaults if none is stored)."""
    return policy_for(s, institution_id=_institution(s, code).id)


def change_policy(s: Session, *, code: str, changes: dict[str, Any], actor: audit_log.Actor) -> Policy:
    """Apply ``changes`` (field → value) to an institution's policy, store and audit it."""
    unknown = sorted(set(changes) - set(POLICY_FIELDS))
    if unknown:
        raise InvalidRequestError("Policy", f"未知的策略字段 {', '.join(unknown)}；可用字段：{', '.join(POLICY_FIELDS)}")
    inst = _institution(s, code)
    before = policy_for(s, institution_id=inst.id)
    values = dict(changes)
    if "work_days" in values:
        values["work_days"] = tuple(values["work_days"])
    try:
        after = replace(before, **values)  # validates the whole policy (InvalidRequestError)
    except TypeError as exc:  # a value of the wrong type that a comparison could not take
        raise InvalidRequestError("Policy", f"策略字段类型不符：{exc}") from exc
    set_policy(s, institution_id=inst.id, policy=after)
    audit_log.append(s, actor=actor, action="policy.updated", object_type="Institution", object_id=code,
                     institution_id=inst.id, detail={"before": before.snapshot(), "after": after.snapshot()})
    return after


# --------------------------------------------------------------------------- use cases (own their transaction)
def log_in(uow: UnitOfWork, *, username: str, password: str) -> tuple[auth.Principal, str] | None:
    """A user's principal and a fresh bearer token when the password matches, else None
    (nothing is written then)."""
    with uow as s:
        principal = auth.authenticate_user(s, username=username, password=password)
        if principal is None:
            s.rollback()
            return None
        return principal, auth.issue_token(s, principal=principal)


def update_policy(uow: UnitOfWork, *, code: str, changes: dict[str, Any], actor: audit_log.Actor) -> Policy:
    """:func:`change_policy` in its own transaction."""
    with uow as s:
        return change_policy(s, code=code, changes=changes, actor=actor)


def show_policy(uow: UnitOfWork, *, code: str) -> Policy:
    """:func:`institution_policy`, reading only."""
    with uow as s:
        return institution_policy(s, code=code)
