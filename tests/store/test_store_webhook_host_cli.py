"""``audit-engine webhook-host add|list|remove``: the allowlist from the server's shell,
audited under the OS user's name, on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa

from audit_engine import cli
from audit_engine.store.db import session_scope
from audit_engine.store.models import AuditEntry


def test_an_operator_adds_lists_and_removes_a_host_and_each_change_is_audited(
    engine: sa.Engine, world, db_url: str, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("AUDIT_DATABASE_URL", db_url)
    assert cli.main(["webhook-host", "add", "M1", "10.12.0.8"]) == 0
    assert cli.main(["webhook-host", "add", "M1", "HIS.Town.Local"]) == 0
    capsys.readouterr()
    assert cli.main(["webhook-host", "list", "M1"]) == 0
    listed = [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == ["10.12.0.8", "his.town.local"]
    assert cli.main(["webhook-host", "remove", "M1", "10.12.0.8"]) == 0
    with session_scope(engine) as s:
        rows = s.execute(sa.select(AuditEntry.action, AuditEntry.actor_name, AuditEntry.detail)
                         .where(AuditEntry.action.like("webhook_host.%")).order_by(AuditEntry.id)).all()
    assert [r.action for r in rows] == ["webhook_host.allowed", "webhook_host.allowed", "webhook_host.removed"]
    assert all(r.actor_name.startswith("cli:") for r in rows)
    assert rows[2].detail == {"host": "10.12.0.8", "subscriptions_deactivated": 0}


def test_the_command_refuses_loopback_and_unknown_institutions_with_a_message(
    engine: sa.Engine, world, db_url: str, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("AUDIT_DATABASE_URL", db_url)
    assert cli.main(["webhook-host", "add", "M1", "127.0.0.1"]) == 1
    assert "回环" in capsys.readouterr().err
    assert cli.main(["webhook-host", "add", "NOPE", "10.0.0.1"]) == 1
    assert "没有这个机构" in capsys.readouterr().err
    assert cli.main(["webhook-host", "remove", "M1", "10.9.9.9"]) == 1
