"""The background worker: expired leases, timeouts and webhook deliveries.

All state lives in the database, so a worker can be killed and restarted at any moment
and any number of workers (one per API process, or separate processes) may run against one
PostgreSQL: each step takes its rows ``FOR UPDATE SKIP LOCKED`` in its own short
transaction, so every timeout fires once and every delivery is sent by one worker at a
time. On SQLite the write lock serialises the steps instead.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from audit_engine import audit_log, chain_check, queue, webhooks
from audit_engine.settings import CHAIN_CHECK_SECONDS, WORKER_INTERVAL
from audit_engine.store.db import make_engine, session_scope, utcnow

log = logging.getLogger("audit_engine.worker")


@dataclass(frozen=True, slots=True)
class TickReport:
    """What one pass of the worker did."""

    released: int
    timeouts: int
    deliveries: webhooks.DeliveryReport
    sealed: int = 0
    chain: str | None = None  # the audit chain's state when this pass checked it


def tick(
    engine: sa.Engine, *, now: datetime | None = None, sender: webhooks.Sender | None = None,
    chain: chain_check.ChainMonitor | None = None,
) -> TickReport:
    """One pass: release expired leases, fire due timeouts, send due webhooks, seal the audit
    chain, and verify its tail when ``chain`` is given (each step its own transaction)."""
    at = now or utcnow()
    with session_scope(engine) as s:
        released = queue.release_expired_leases(s, now=at)
    with session_scope(engine) as s:
        timeouts = queue.apply_timeouts(s, now=at)
    report = webhooks.deliver_due_in_steps(engine, now=at, sender=sender or webhooks.httpx_sender())
    with session_scope(engine) as s:  # last, so this pass's own entries are chained too
        sealed = audit_log.seal(s)
    state = chain_check.run_check(engine, chain, now=at).state if chain is not None else None
    return TickReport(released, timeouts, report, sealed, state)


def run_worker(
    url: str | sa.Engine,
    stop_event: threading.Event,
    *,
    interval_s: float = WORKER_INTERVAL,
    sender: webhooks.Sender | None = None,
    chain_check_s: float = CHAIN_CHECK_SECONDS,
) -> None:
    """Loop :func:`tick` until ``stop_event`` is set. A failing pass is logged and retried on
    the next one; the loop itself never dies of a database hiccup. Every ``chain_check_s``
    seconds (the setting ``AUDIT_CHAIN_CHECK_SECONDS``, passed in by ``audit-engine worker``) a
    pass also verifies the audit chain's tail and a slice of its older entries
    (``chain_check.ChainMonitor``)."""
    engine = url if isinstance(url, sa.Engine) else make_engine(url)
    send = sender or webhooks.httpx_sender()
    every = chain_check_s
    monitor = chain_check.ChainMonitor()
    next_check = time.monotonic()
    from audit_engine.quality.replay import run_replays  # what-if replays: their own thread, long chunks

    threading.Thread(target=run_replays, args=(engine, stop_event), name="replays", daemon=True).start()
    try:
        while not stop_event.is_set():
            try:
                due = time.monotonic() >= next_check
                if due:
                    next_check = time.monotonic() + every
                report = tick(engine, sender=send, chain=monitor if due else None)
                if report.released or report.timeouts or report.deliveries.attempted or report.sealed:
                    log.info("worker: %s", report)
            except Exception:  # keep the loop alive; the next pass retries from the database state
                log.exception("worker pass failed")
            stop_event.wait(interval_s)
    finally:
        if not isinstance(url, sa.Engine):
            engine.dispose()
