"""SIGKILL the server in the middle of load: nothing half-written, every answer on disk,
timeouts resume after the restart."""

from __future__ import annotations

import copy
import json
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from svcutil import Deployment, Server, free_port

ROOT = Path(__file__).resolve().parents[2]
BASE = json.loads((ROOT / "fixtures/fhir/flagged/interaction_warfarin_aspirin.json").read_text(encoding="utf-8"))


def numbered(n: int, tag: str) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    doc["identifier"]["value"] = f"{tag}-{n:06d}"
    for e in doc["entry"]:
        if "groupIdentifier" in e["resource"]:
            e["resource"]["groupIdentifier"]["value"] = f"{tag}-{n:06d}"
    return doc


def load(server: Server, key: str, stop: threading.Event, answered: list[dict[str, Any]], tag: str) -> None:
    counter = iter(range(10**6))
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client(base_url=server.base, headers={"Authorization": f"Bearer {key}"}, timeout=10) as c:
            while not stop.is_set():
                with lock:
                    n = next(counter)
                try:
                    r = c.post("/api/v1/reviews", json=numbered(n, tag))
                except httpx.HTTPError:
                    return  # the server died under us: this request has no answer
                if r.status_code in (200, 201):
                    answered.append(r.json())

    threads = [threading.Thread(target=client) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)


def test_sigkill_mid_load_loses_no_answered_review_and_timeouts_resume(deployment: Deployment) -> None:
    from audit_engine.store.db import make_engine, utcnow
    from audit_engine.store.models import FindingRow, Prescription, Review, Task

    server = Server(deployment.env, free_port(), deployment.tmp / "server.log")
    server.start()
    answered: list[dict[str, Any]] = []
    stop = threading.Event()
    loader = threading.Thread(target=load, args=(server, deployment.key, stop, answered, "CRASH"))
    loader.start()
    deadline = time.monotonic() + 30
    while len(answered) < 40 and time.monotonic() < deadline:
        time.sleep(0.05)
    server.kill()  # mid-load: clients are still sending
    stop.set()
    loader.join(30)
    assert len(answered) >= 40

    db = make_engine(deployment.url)
    with db.connect() as c:
        reviews = {r.id: r for r in c.execute(sa.select(Review.id, Review.verdict, Review.prescription_id))}
        for a in answered:
            assert a["id"] in reviews, "an answered review is missing after the crash"
            assert reviews[a["id"]].verdict == a["verdict"]
            n = c.scalar(sa.select(sa.func.count()).select_from(FindingRow).where(FindingRow.review_id == a["id"]))
            assert n == len(a["findings"])
        # No half-written review: every prescription has its review, every recheck its task.
        orphans = c.scalar(sa.select(sa.func.count()).select_from(Prescription).where(
            ~sa.exists().where(Review.prescription_id == Prescription.id)))
        assert orphans == 0
        untasked = c.scalar(sa.select(sa.func.count()).select_from(Review).where(
            Review.verdict == "recheck", ~sa.exists().where(Task.review_id == Review.id)))
        assert untasked == 0
        pending = c.execute(sa.select(sa.func.count()).select_from(Task).where(Task.status == "pending")).scalar_one()
    assert pending >= 40

    # Time passes while the service is down: every pending task is now overdue.
    with db.begin() as c:
        c.execute(sa.update(Task).where(Task.status == "pending").values(deadline_at=utcnow() - timedelta(minutes=1)))
    server.start()
    try:
        deadline = time.monotonic() + 60
        left = pending
        while time.monotonic() < deadline:
            with db.connect() as c:
                left = c.execute(sa.select(sa.func.count()).select_from(Task).where(Task.status == "pending")).scalar_one()
            if left == 0:
                break
            time.sleep(0.3)
        assert left == 0, "the restarted worker did not fire the overdue timeouts"
        with db.connect() as c:
            outcomes = set(c.scalars(sa.select(Review.outcome).where(Review.verdict == "recheck")))
        assert outcomes == {"timeout_pass"}
        # The restarted service still answers, and the same prescription gets the same review.
        first = answered[0]
        n = int(str(first["prescription_identifier"]).rsplit("-", 1)[1])
        r = httpx.post(f"{server.base}/api/v1/reviews", json=numbered(n, "CRASH"),
                       headers={"Authorization": f"Bearer {deployment.key}"}, timeout=10)
        assert r.status_code == 200
        assert r.json()["id"] == first["id"]
    finally:
        server.stop()
        db.dispose()
