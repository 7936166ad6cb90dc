"""Administration from the command line: ``audit-engine institution add``, ``user add`` and
``policy show|set``, against the database named by ``AUDIT_DATABASE_URL`` (its schema is
upgraded first).

``policy set`` is the same use case as ``PATCH /api/v1/institutions/{code}/policy``
(``administration``); the change is audited with the operating-system user as the actor.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from dataclasses import fields
from typing import Any

from audit_engine.policy import Policy


def add_policy_parser(sub: Any) -> None:
    pol = sub.add_parser("policy", help="show or change an institution's verdict policy (audited)")
    pol_sub = pol.add_subparsers(dest="action", required=True)
    show = pol_sub.add_parser("show", help="print an institution's policy as JSON")
    show.add_argument("code")
    change = pol_sub.add_parser("set", help="change some fields of an institution's policy")
    change.add_argument("code")
    for f in fields(Policy):
        flag = "--" + f.name.replace("_", "-")
        if f.name == "work_days":
            change.add_argument(flag, dest=f.name, type=_days, help="ISO weekdays, e.g. 1,2,3,4,5")
        else:
            kind = int if f.type in ("int", int) else str
            change.add_argument(flag, dest=f.name, type=kind, default=None)


def _days(text: str) -> list[int]:
    try:
        return [int(d) for d in text.split(",") if d.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"星期须为逗号分隔的 1..7，实际为 {text!r}") from exc


def cmd_policy(args: argparse.Namespace, database_url: str) -> int:
    from audit_engine import administration
    from audit_engine.audit_log import Actor
    from audit_engine.errors import ServiceError
    from audit_engine.store.db import make_engine, session_scope, upgrade_schema

    upgrade_schema(database_url)
    db = make_engine(database_url)
    try:
        with session_scope(db) as s:
            if args.action == "show":
                policy = administration.institution_policy(s, code=args.code)
            else:
                changes = {name: getattr(args, name) for name in administration.POLICY_FIELDS
                           if getattr(args, name, None) is not None}
                if not changes:
                    print("没有要修改的字段（见 audit-engine policy set --help）", file=sys.stderr)
                    return 2
                actor = Actor("system", None, f"cli:{getpass.getuser()}")
                policy = administration.change_policy(s, code=args.code, changes=changes, actor=actor)
    except ServiceError as err:
        print(f"错误：{err.message}（{err.location}）", file=sys.stderr)
        return 1
    finally:
        db.dispose()
    print(json.dumps(policy.snapshot(), ensure_ascii=False, indent=2))
    return 0


def cmd_institution_add(code: str, name: str, *, level: str, database_url: str) -> int:
    """``audit-engine institution add``: register an institution, print its API key once.

    The first 县级医院 registered becomes the review centre (牵头医院); later institutions join it.
    """
    from audit_engine import administration
    from audit_engine.errors import ServiceError
    from audit_engine.store.db import make_engine, session_scope, upgrade_schema

    upgrade_schema(database_url)
    db = make_engine(database_url)
    try:
        with session_scope(db) as s:
            inst, key = administration.register_institution(s, code=code, name=name, level=level)
            centre = inst.is_centre
    except ServiceError as err:
        print(f"错误：{err.message}（{err.location}）", file=sys.stderr)
        return 1
    finally:
        db.dispose()
    role = "（审方中心/牵头医院）" if centre else ""
    print(f"已登记机构 {code} {name}（{level}）{role}")
    print(f"API 密钥（只显示这一次，请妥善保存）：{key}")
    return 0


def cmd_user_add(username: str, *, role: str, institution: str | None = None, database_url: str) -> int:
    """``audit-engine user add``: create a user; the password comes from standard input."""
    from audit_engine import auth
    from audit_engine.errors import ServiceError
    from audit_engine.store.db import make_engine, session_scope, upgrade_schema

    if sys.stdin.isatty():
        password = getpass.getpass("密码：")
        if getpass.getpass("再次输入密码：") != password:
            print("两次输入的密码不一致", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if len(password) < 8:
        print("密码至少 8 个字符", file=sys.stderr)
        return 1
    upgrade_schema(database_url)
    db = make_engine(database_url)
    try:
        with session_scope(db) as s:
            auth.create_user(s, username=username, password=password, role=role, institution_code=institution)
    except ServiceError as err:
        print(f"错误：{err.message}（{err.location}）", file=sys.stderr)
        return 1
    finally:
        db.dispose()
    print(f"已创建用户 {username}（{role}{'，' + institution if institution else ''}）")
    return 0
