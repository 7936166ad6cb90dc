"""Who is calling: institution API keys, user passwords and tokens, and what each may see.

Secrets are never stored. An API key is ``ak_<key id>_<secret>``: the key id finds the row,
and the row holds only SHA-256 of the whole key (the key has 256 bits of entropy, so a
fast hash is enough and lookup stays O(1)). Passwords are hashed with argon2id
(argon2-cffi). User tokens are random and kept as SHA-256 with an expiry.

Authorization has two parts, both decided here and nowhere else:

* **What** a caller may do: :data:`PERMISSIONS` maps each operation to the roles allowed
  to perform it, and :func:`authorize` is the one check (routes declare it as a
  dependency, and the services that change something call it again before they act).
* **On which prescriptions:** :func:`visible_institution_ids`. An HIS key acts only on its
  own institution's prescriptions, whatever the institution's rank (the review centre's
  HIS included); users of a review centre (the lead county hospital, ``is_centre``) see
  every member attached to it; users with no institution work for the whole alliance.

An admin does not act on the pharmacist queue: deciding a prescription is a pharmacist's
professional act (《医疗机构处方审核规范》 第六条: 药师是处方审核工作的第一责任人), and an
administrator who is also a pharmacist is given a pharmacist account for it.
"""

from __future__ import annotations

import difflib
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.orm import Session

from audit_engine.errors import AccessDeniedError, InvalidRequestError, NotFoundError
from audit_engine.policy import Policy
from audit_engine.schema import INSTITUTION_LEVELS
from audit_engine.store.db import utcnow
from audit_engine.store.models import ApiKey, Institution, User, UserToken
from audit_engine.store.models import Policy as PolicyRow
from audit_engine.store.policies import policy_columns, stored_policy

ROLES = ("pharmacist", "quality", "admin")
HIS_ROLE = "his"
ALL_ROLES = frozenset({*ROLES, HIS_ROLE})

Operation = Literal[
    "review.submit", "review.read", "review.answer", "task.read", "queue.read", "queue.work",
    "subscription.manage", "rulebase.manage", "webhook_host.manage", "policy.manage", "stats.read",
    "quality.work",
    "retention.destroy",
]
# Who may do what. One line per operation; the README's Security table is this table.
PERMISSIONS: dict[Operation, frozenset[str]] = {
    # The HIS submits its prescriptions and answers for its doctors (explanation, CDS
    # feedback, the answer to a returned prescription).
    "review.submit": frozenset({HIS_ROLE}),
    "review.answer": frozenset({HIS_ROLE}),
    "subscription.manage": frozenset({HIS_ROLE}),
    # A review and its task are read by the HIS that sent it, by the pharmacists who review
    # it and by quality managers (处方点评); an admin manages rules, not prescriptions.
    "review.read": frozenset({HIS_ROLE, "pharmacist", "quality"}),
    "task.read": frozenset({HIS_ROLE, "pharmacist", "quality"}),
    "queue.read": frozenset({"pharmacist", "quality"}),
    # Claim, renew, release and decide: pharmacists only (see the module docstring).
    "queue.work": frozenset({"pharmacist"}),
    "rulebase.manage": frozenset({"admin"}),
    "webhook_host.manage": frozenset({"admin"}),
    "policy.manage": frozenset({"admin"}),
    "retention.destroy": frozenset({"admin"}),
    "stats.read": frozenset({"quality", "admin"}),
    # 处方点评 samples and comments, teaching cases, what-if replays of a candidate rulebase.
    "quality.work": frozenset({"quality", "admin"}),
}
ROLE_ZH = {HIS_ROLE: "机构HIS", "pharmacist": "药师", "quality": "质控", "admin": "管理员"}
# A user token's lifetime (one shift and its handover): the only place it is set; /api/v1/auth/token
# reports it as expires_in.
TOKEN_TTL = timedelta(hours=12)

_hasher = PasswordHasher()


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: an institution's HIS (``kind='institution'``) or a user.

    ``id`` is the institution id or the user id according to ``kind``. ``institution_*``
    describe the caller's own institution (None for alliance-wide users).
    """

    kind: Literal["institution", "user"]
    id: int
    username: str | None
    roles: frozenset[str]
    institution_id: int | None
    institution_code: str | None
    institution_level: str | None
    is_centre: bool
    # The institution's verdict policy when it was read with the credentials (an API key);
    # None means "look it up" (store.policies.policy_for).
    policy: Policy | None = None

    @property
    def actor(self) -> str:
        """How the audit log names this caller."""
        return (
            self.username if self.kind == "user" and self.username else f"institution:{self.institution_code}"
        )

    def has_role(self, *roles: str) -> bool:
        return bool(self.roles & set(roles))

    @property
    def his_only(self) -> bool:
        """An institution's HIS key (and nothing more): it acts on its own institution only."""
        return self.roles == frozenset({HIS_ROLE})


def may(principal: Principal, operation: Operation) -> bool:
    """Whether ``principal``'s roles allow ``operation`` (see :data:`PERMISSIONS`)."""
    return bool(principal.roles & PERMISSIONS[operation])


def authorize(principal: Principal, operation: Operation) -> None:
    """The one role check: raise AccessDeniedError (403) unless ``principal`` may do ``operation``."""
    if not may(principal, operation):
        allowed = "、".join(ROLE_ZH[r] for r in sorted(PERMISSIONS[operation]))
        raise AccessDeniedError(f"Principal/{principal.actor}", f"权限不足：{operation} 仅限 {allowed}")


def _did_you_mean(value: str, options: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(value, options, n=1, cutoff=0.3)
    return f"（是否想写 {close[0]}？）" if close else f"（可选：{'、'.join(options)}）"


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# --------------------------------------------------------------------------- institutions and keys
def create_institution(
    s: Session,
    *,
    code: str,
    name: str,
    level: str,
    is_centre: bool = False,
    centre_code: str | None = None,
) -> tuple[Institution, str]:
    """Register an institution and return it with its first API key (shown once, never stored).

    A member is attached to ``centre_code``, or to the only existing centre when there is
    exactly one. Raises InvalidRequestError for an unknown level or a duplicate code.
    """
    if level not in INSTITUTION_LEVELS:
        raise InvalidRequestError(
            f"Institution/{code}", f"未知机构级别 {level!r}{_did_you_mean(level, INSTITUTION_LEVELS)}"
        )
    if s.scalar(sa.select(Institution.id).where(Institution.code == code)) is not None:
        raise InvalidRequestError(f"Institution/{code}", "机构编码已存在")
    centre_id: int | None = None
    if not is_centre:
        if centre_code is not None:
            centre = s.scalar(
                sa.select(Institution).where(Institution.code == centre_code, Institution.is_centre)
            )
            if centre is None:
                raise NotFoundError(f"Institution/{centre_code}", "没有这个审方中心")
            centre_id = centre.id
        else:
            centres = s.scalars(sa.select(Institution.id).where(Institution.is_centre)).all()
            centre_id = centres[0] if len(centres) == 1 else None
    inst = Institution(
        code=code, name=name, level=level, is_centre=is_centre, centre_id=centre_id, created_at=utcnow()
    )
    s.add(inst)
    s.flush()
    return inst, issue_api_key(s, institution_id=inst.id)


def issue_api_key(s: Session, *, institution_id: int) -> str:
    """A new API key for an institution (older keys stay valid until revoked)."""
    key_id = secrets.token_hex(6)
    key = f"ak_{key_id}_{secrets.token_urlsafe(32)}"
    s.add(ApiKey(institution_id=institution_id, key_id=key_id, key_hash=_sha256(key), created_at=utcnow()))
    s.flush()
    return key


def revoke_api_key(s: Session, *, key_id: str) -> None:
    """Revoke a key by its key id (the part after ``ak_``); later calls with it get 401."""
    row = s.scalar(sa.select(ApiKey).where(ApiKey.key_id == key_id))
    if row is None:
        raise NotFoundError(f"ApiKey/{key_id}", "没有这个密钥")
    row.revoked_at = utcnow()
    s.flush()


def principal_for_institution(
    inst: Institution, *, roles: frozenset[str] = frozenset({HIS_ROLE})
) -> Principal:
    """The principal an institution's HIS acts as."""
    return Principal(
        kind="institution",
        id=inst.id,
        username=None,
        roles=roles,
        institution_id=inst.id,
        institution_code=inst.code,
        institution_level=inst.level,
        is_centre=inst.is_centre,
    )


# Built once, Core columns and a bind parameter: this runs on every review, where building
# an ORM select costs several times what SQLite takes to answer it. It reads the
# institution's verdict policy too, which the review needs next (one round trip less).
_KEYS: sa.Table = ApiKey.__table__  # type: ignore[assignment]
_INSTITUTIONS: sa.Table = Institution.__table__  # type: ignore[assignment]
_POLICIES: sa.Table = PolicyRow.__table__  # type: ignore[assignment]
_KEY_LOOKUP = (
    sa.select(_KEYS.c.key_hash, _KEYS.c.revoked_at, _INSTITUTIONS.c.id, _INSTITUTIONS.c.code,
              _INSTITUTIONS.c.level, _INSTITUTIONS.c.is_centre, *policy_columns())
    .join(_INSTITUTIONS, _INSTITUTIONS.c.id == _KEYS.c.institution_id)
    .outerjoin(_POLICIES, _POLICIES.c.institution_id == _INSTITUTIONS.c.id)
    .where(_KEYS.c.key_id == sa.bindparam("key_id"))
)


def principal_for_api_key(s: Session, key: str) -> Principal | None:
    """The institution holding ``key``, or None for an unknown, malformed or revoked key."""
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != "ak":
        return None
    row = s.execute(_KEY_LOOKUP, {"key_id": parts[1]}).first()
    if row is None or row.revoked_at is not None or not hmac.compare_digest(row.key_hash, _sha256(key)):
        return None
    return Principal(kind="institution", id=row.id, username=None, roles=frozenset({HIS_ROLE}),
                     institution_id=row.id, institution_code=row.code, institution_level=row.level,
                     is_centre=row.is_centre, policy=stored_policy(row))


# --------------------------------------------------------------------------- users and tokens
def create_user(
    s: Session, *, username: str, password: str, role: str, institution_code: str | None = None
) -> User:
    """Create a user with an argon2id password hash. Raises InvalidRequestError on bad input."""
    if role not in ROLES:
        raise InvalidRequestError(f"User/{username}", f"未知角色 {role!r}{_did_you_mean(role, ROLES)}")
    if len(password) < 8:
        raise InvalidRequestError(f"User/{username}", "密码至少 8 位")
    if s.scalar(sa.select(User.id).where(User.username == username)) is not None:
        raise InvalidRequestError(f"User/{username}", "用户名已存在")
    institution_id = None
    if institution_code is not None:
        institution_id = s.scalar(sa.select(Institution.id).where(Institution.code == institution_code))
        if institution_id is None:
            raise NotFoundError(f"Institution/{institution_code}", "没有这个机构")
    user = User(
        username=username,
        password_hash=_hasher.hash(password),
        role=role,
        institution_id=institution_id,
        created_at=utcnow(),
    )
    s.add(user)
    s.flush()
    return user


def principal_for_user(s: Session, user: User) -> Principal:
    inst = s.get(Institution, user.institution_id) if user.institution_id is not None else None
    return Principal(
        kind="user",
        id=user.id,
        username=user.username,
        roles=frozenset({user.role}),
        institution_id=inst.id if inst else None,
        institution_code=inst.code if inst else None,
        institution_level=inst.level if inst else None,
        is_centre=inst.is_centre if inst else False,
    )


def authenticate_user(s: Session, *, username: str, password: str) -> Principal | None:
    """The user's principal when the password matches, else None (timing does not reveal which part failed)."""
    user = s.scalar(sa.select(User).where(User.username == username, User.active))
    if user is None:
        _hasher.hash(password)  # spend the same time as a real check
        return None
    try:
        _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    return principal_for_user(s, user)


def issue_token(
    s: Session, *, principal: Principal, ttl: timedelta = TOKEN_TTL, now: datetime | None = None
) -> str:
    """A bearer token for a user principal, valid for ``ttl``."""
    if principal.kind != "user":
        raise InvalidRequestError(f"Principal/{principal.actor}", "只有用户可以获取令牌")
    token = f"ut_{secrets.token_urlsafe(32)}"
    at = now or utcnow()
    s.add(UserToken(user_id=principal.id, token_hash=_sha256(token), created_at=at, expires_at=at + ttl))
    s.flush()
    return token


def principal_for_token(s: Session, token: str, *, now: datetime | None = None) -> Principal | None:
    """The user holding an unexpired ``token``, or None."""
    row = s.scalar(sa.select(UserToken).where(UserToken.token_hash == _sha256(token)))
    if row is None or row.expires_at <= (now or utcnow()):
        return None
    user = s.get(User, row.user_id)
    if user is None or not user.active:
        return None
    return principal_for_user(s, user)


def revoke_token(s: Session, token: str) -> None:
    """Log out: the token stops working at once."""
    s.execute(sa.delete(UserToken).where(UserToken.token_hash == _sha256(token)))


def superuser_principal(s: Session) -> Principal:
    """For ``AUDIT_AUTH_DISABLED=1`` only: the (first) centre institution with every role."""
    inst = s.scalar(sa.select(Institution).where(Institution.is_centre).order_by(Institution.id))
    if inst is None:
        raise NotFoundError("Institution/centre", "尚未登记审方中心（牵头医院）")
    return principal_for_institution(inst, roles=ALL_ROLES)


# --------------------------------------------------------------------------- visibility
def visible_institution_ids(s: Session, principal: Principal) -> frozenset[int] | None:
    """Institutions whose prescriptions ``principal`` may see; None means all of them."""
    if principal.institution_id is None:
        return None
    if principal.his_only or not principal.is_centre:
        return frozenset({principal.institution_id})
    members = s.scalars(
        sa.select(Institution.id).where(Institution.centre_id == principal.institution_id)
    ).all()
    return frozenset({principal.institution_id, *members})


def can_see(s: Session, principal: Principal, institution_id: int) -> bool:
    visible = visible_institution_ids(s, principal)
    return visible is None or institution_id in visible
