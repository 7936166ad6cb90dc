"""``audit-engine webhook-host add|remove|list CODE [HOST]``: the webhook host allowlist from
the server's shell (the same service calls as the admin API, audited as ``cli:<OS user>``)."""

from __future__ import annotations

import getpass
import sys

from audit_engine import webhooks
from audit_engine.auth import Principal
from audit_engine.errors import ServiceError


def cli_admin() -> Principal:
    """Whoever runs the command on the server acts as an admin; the audit log names the OS user."""
    try:
        who = getpass.getuser()
    except Exception:  # no user name in this environment (e.g. a container without /etc/passwd)
        who = "unknown"
    return Principal(kind="user", id=0, username=f"cli:{who}", roles=frozenset({"admin"}), institution_id=None,
                     institution_code=None, institution_level=None, is_centre=False)


def cmd_webhook_host(action: str, code: str, host: str | None = None, *, url: str) -> int:
    """Add, remove or list an institution's allowed webhook hosts; 0 on success, 1 on a refusal."""
    from audit_engine.store.db import make_engine, session_scope, upgrade_schema

    db_url = url
    upgrade_schema(db_url)
    db = make_engine(db_url)
    try:
        with session_scope(db) as s:
            if action == "list":
                for row in webhooks.allowed_hosts(s, institution_code=code):
                    print(f"{row.host}\t{row.added_by}\t{row.created_at:%Y-%m-%d %H:%M}")
                return 0
            if host is None:
                print("错误：需要主机名或 IP 地址", file=sys.stderr)
                return 1
            if action == "add":
                added = webhooks.allow_host(s, institution_code=code, host=host, principal=cli_admin())
                print(f"已允许机构 {code} 的 webhook 回调主机 {added.host}")
            else:
                stopped = webhooks.remove_host(s, institution_code=code, host=host, principal=cli_admin())
                print(f"已移除机构 {code} 的回调主机 {webhooks.normalise_host(host)}；停用订阅 {stopped} 个")
    except ServiceError as err:
        print(f"错误：{err.message}（{err.location}）", file=sys.stderr)
        return 1
    finally:
        db.dispose()
    return 0
