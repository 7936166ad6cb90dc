"""Alembic environment: runs on the connection handed over by ``store.db.upgrade_schema``."""

from __future__ import annotations

from alembic import context

from audit_engine.store import (
    quality_models,  # noqa: F401  (the quality workspace tables, 0005)
    stats_models,  # noqa: F401  (registers the statistics tables on Base)
)
from audit_engine.store.db import make_engine
from audit_engine.store.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("no database: run migrations through audit_engine.store.db.upgrade_schema(url)")
    engine = make_engine(url)
    with engine.begin() as conn:
        context.configure(connection=conn, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; use audit_engine.store.db.upgrade_schema")
run_migrations_online()
