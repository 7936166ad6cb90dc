"""Administration from the command line: ``audit-engine policy show|set``.

The same use case as ``PATCH /api/v1/institutions/{code}/policy`` (``administration``), against
the database named by ``AUDIT_DATABASE_URL``; the change is audited with the operating-system
user as the actor.
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
