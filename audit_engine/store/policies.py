"""Institutions' verdict policies in the database: read (also joined into other queries) and stored.

The stored policy's columns are named as the fields of ``audit_engine.policy.Policy``; an
institution without a stored row gets the defaults.
"""

from __future__ import annotations

import functools
from dataclasses import fields
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from audit_engine.policy import Policy
from audit_engine.store.db import utcnow
from audit_engine.store.models import Policy as PolicyRow

# The stored policy's columns are named as the fields of Policy.
_POLICY_COLUMNS = tuple(f.name for f in fields(Policy))


@functools.cache
def policy_columns() -> tuple[sa.Column[Any], ...]:
    """The stored policy's columns, named as the fields of ``Policy`` (for a query that reads
    a policy along with something else: see ``stored_policy``)."""
    table: sa.Table = PolicyRow.__table__  # type: ignore[assignment]
    return tuple(table.c[name] for name in _POLICY_COLUMNS)


@functools.cache
def _policy_select() -> sa.Select[Any]:
    """Built once (Core columns, a bind parameter): it runs on every review."""
    columns = policy_columns()
    return sa.select(*columns).where(columns[0].table.c.institution_id == sa.bindparam("institution_id"))


def policy_for(s: Session, *, institution_id: int) -> Policy:
    """The stored policy of an institution, or the defaults when it has none."""
    return stored_policy(s.execute(_policy_select(), {"institution_id": institution_id}).first())


def stored_policy(row: Any) -> Policy:
    """The policy in a row holding ``policy_columns()``: the defaults when there is no row,
    or when an outer join found no stored policy (the columns are then NULL)."""
    if row is None or row.explain_at is None:
        return Policy()
    return Policy.from_snapshot(dict(row._mapping))


def set_policy(s: Session, *, institution_id: int, policy: Policy) -> None:
    """Store (insert or replace) an institution's policy; later reviews use it."""
    row = s.get(PolicyRow, institution_id)
    if row is None:
        row = PolicyRow(institution_id=institution_id)
        s.add(row)
    for name, value in policy.snapshot().items():  # the columns are named as the fields
        setattr(row, name, value)
    row.updated_at = utcnow()
    s.flush()
