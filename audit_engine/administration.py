"""Administration use cases: an institution's verdict policy, read and changed by an admin.

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

from audit_engine import audit_log
from audit_engine.errors import InvalidRequestError, NotFoundError
from audit_engine.policy import Policy, policy_for, set_policy
from audit_engine.store.models import Institution

POLICY_FIELDS = tuple(f.name for f in fields(Policy))


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
