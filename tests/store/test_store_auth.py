"""Credentials are hashed at rest; keys, passwords and tokens authenticate only while valid."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from audit_engine import auth
from audit_engine.errors import InvalidRequestError, NotFoundError
from audit_engine.store.db import session_scope, utcnow
from audit_engine.store.models import ApiKey, User, UserToken


def test_api_key_authenticates_its_institution_and_is_stored_only_as_a_hash(engine, world) -> None:
    key = world.keys["M1"]
    with session_scope(engine) as s:
        p = auth.principal_for_api_key(s, key)
        assert p is not None and (p.kind, p.institution_code, p.institution_level) == ("institution", "M1", "乡镇卫生院")
        stored = s.scalars(sa.select(ApiKey)).all()
        assert all(key not in (r.key_hash, r.key_id) for r in stored)
        assert all(len(r.key_hash) == 64 for r in stored)


def test_an_api_key_brings_its_institutions_stored_policy_or_the_defaults(engine, world) -> None:
    """The key lookup reads the verdict policy in the same statement (the review needs it next)."""
    from audit_engine.policy import Policy
    from audit_engine.store.policies import policy_for, set_policy

    with session_scope(engine) as s:
        p = auth.principal_for_api_key(s, world.keys["M1"])
        assert p is not None and p.policy == Policy()
    stored = Policy(explain_at=2, recheck_at=4, block_at=9, fail_mode="open", work_start="08:00", work_end="17:30",
                    work_days=(1, 2, 3, 4, 5), timeout_minutes=20, timeout_action="escalate", answer_hours=12)
    with session_scope(engine) as s:
        set_policy(s, institution_id=world.ids["M1"], policy=stored)
    with session_scope(engine) as s:
        p = auth.principal_for_api_key(s, world.keys["M1"])
        assert p is not None and p.policy == stored == policy_for(s, institution_id=world.ids["M1"])
        other = auth.principal_for_api_key(s, world.keys["M2"])
        assert other is not None and other.policy == Policy()


@pytest.mark.parametrize("mangle", [lambda k: k[:-1] + ("A" if k[-1] != "A" else "B"), lambda k: "ak_nope_x", lambda k: "", lambda k: k.replace("ak_", "bk_")])
def test_a_wrong_or_malformed_key_is_refused(engine, world, mangle) -> None:
    with session_scope(engine) as s:
        assert auth.principal_for_api_key(s, mangle(world.keys["M1"])) is None


def test_a_revoked_key_stops_working_and_a_new_key_works(engine, world) -> None:
    key = world.keys["M1"]
    with session_scope(engine) as s:
        new_key = auth.issue_api_key(s, institution_id=world.ids["M1"])
        auth.revoke_api_key(s, key_id=key.split("_")[1])
    with session_scope(engine) as s:
        assert auth.principal_for_api_key(s, key) is None
        assert auth.principal_for_api_key(s, new_key) is not None


def test_unknown_level_suggests_the_closest(engine) -> None:
    with pytest.raises(InvalidRequestError) as caught, session_scope(engine) as s:
        auth.create_institution(s, code="X1", name="某卫生院", level="乡镇卫生所")
    assert "乡镇卫生院" in str(caught.value) and caught.value.location == "Institution/X1"


def test_a_member_is_attached_to_the_named_centre(engine, world) -> None:
    with session_scope(engine) as s:
        inst, _ = auth.create_institution(s, code="M3", name="二县社区卫生服务中心", level="社区卫生服务中心", centre_code="C2")
        assert inst.centre_id == world.ids["C2"]
        with pytest.raises(NotFoundError):
            auth.create_institution(s, code="M4", name="x", level="村卫生室", centre_code="M1")


def test_passwords_are_argon2id_and_only_the_right_one_logs_in(engine) -> None:
    with session_scope(engine) as s:
        auth.create_user(s, username="zhang", password="s3cret-pw!", role="pharmacist")
    with session_scope(engine) as s:
        row = s.scalar(sa.select(User).where(User.username == "zhang"))
        assert row is not None and row.password_hash.startswith("$argon2id$") and "s3cret" not in row.password_hash
        assert auth.authenticate_user(s, username="zhang", password="wrong-password") is None
        assert auth.authenticate_user(s, username="nobody", password="s3cret-pw!") is None
        p = auth.authenticate_user(s, username="zhang", password="s3cret-pw!")
        assert p is not None and p.kind == "user" and p.roles == frozenset({"pharmacist"})


def test_unknown_role_and_short_password_are_refused(engine) -> None:
    with session_scope(engine) as s:
        with pytest.raises(InvalidRequestError, match="pharmacist"):
            auth.create_user(s, username="li", password="long enough", role="pharmacists")
        with pytest.raises(InvalidRequestError, match="8"):
            auth.create_user(s, username="li", password="short", role="admin")


def test_tokens_are_hashed_and_expire(engine, world) -> None:
    now = utcnow()
    with session_scope(engine) as s:
        token = auth.issue_token(s, principal=world.ph_c1, ttl=timedelta(minutes=30), now=now)
    with session_scope(engine) as s:
        assert token not in [r.token_hash for r in s.scalars(sa.select(UserToken))]
        p = auth.principal_for_token(s, token, now=now + timedelta(minutes=29))
        assert p is not None and p.username == "ph_c1" and p.is_centre
        assert auth.principal_for_token(s, token, now=now + timedelta(minutes=31)) is None
        assert auth.principal_for_token(s, token + "x", now=now) is None
        auth.revoke_token(s, token)
    with session_scope(engine) as s:
        assert auth.principal_for_token(s, token, now=now) is None


def test_institutions_cannot_get_user_tokens(engine, world) -> None:
    with pytest.raises(InvalidRequestError), session_scope(engine) as s:
        auth.issue_token(s, principal=world.his_m1)


def test_visibility_his_keys_own_only_centre_users_members_alliance_users_all(engine, world) -> None:
    ids = world.ids
    with session_scope(engine) as s:
        assert auth.visible_institution_ids(s, world.his_m1) == {ids["M1"]}
        assert auth.visible_institution_ids(s, world.ph_m1) == {ids["M1"]}
        assert auth.visible_institution_ids(s, world.ph_c1) == {ids["C1"], ids["M1"]}
        # The centre's HIS is one institution's software, whatever that institution's rank.
        assert auth.visible_institution_ids(s, world.his_c2) == {ids["C2"]}
        assert auth.visible_institution_ids(s, world.quality) is None


def test_every_operation_admits_exactly_the_roles_of_the_permission_table(engine, world) -> None:
    from audit_engine.errors import AccessDeniedError

    for operation, roles in auth.PERMISSIONS.items():
        for role in (*auth.ROLES, auth.HIS_ROLE):
            principal = auth.Principal(kind="user", id=1, username="u", roles=frozenset({role}), institution_id=None,
                                       institution_code=None, institution_level=None, is_centre=False)
            if role in roles:
                auth.authorize(principal, operation)
            else:
                with pytest.raises(AccessDeniedError):
                    auth.authorize(principal, operation)
    # An admin does not act on the queue: deciding is a pharmacist's professional act.
    assert auth.PERMISSIONS["queue.work"] == {"pharmacist"}


def test_development_superuser_is_the_centre_with_every_role(engine, world) -> None:
    with session_scope(engine) as s:
        p = auth.superuser_principal(s)
    assert p.institution_code == "C1" and p.is_centre and {"pharmacist", "admin", "quality", "his"} <= p.roles


def test_the_readmes_security_table_is_the_permission_table() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Roles and what each credential may do", 1)[1].split("\n### ", 1)[0]
    columns = ("his", "pharmacist", "quality", "admin")
    documented: dict[str, set[str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 + len(columns) and cells[0].startswith("`"):
            documented[cells[0].strip("`")] = {role for role, mark in zip(columns, cells[2:], strict=True) if mark}
    assert documented == {op: set(roles) for op, roles in auth.PERMISSIONS.items()}
