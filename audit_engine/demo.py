"""``serve --demo``: a small county alliance with a day of prescriptions, reviewed for real.

Creates one lead county hospital (the review centre) and members of every level, their
departments and prescribers, a user for each role, and API keys (printed once); then sends
the shipped sample prescriptions (fixtures/fhir) through the real pipeline as each
member's HIS would, plus one prescription that was returned to its doctor and came back
modified (so the workbench has a history to show).

The demo queue stays workable: every demo institution's policy gives the pharmacists
``DEMO_TIMEOUT_MINUTES`` and then *escalates* (never passes) a task nobody decided, and while
the service runs :class:`DemoFeed` sends a further sample every ``DEMO_FEED_SECONDS``, as a
county's clinics would through the morning.

Running it again creates nothing and cannot show secrets again (only hashes are stored):
it lists the users and says how to start afresh (``serve --demo --reset-demo``, which
refuses on a database that holds anything but the demo alliance).
"""

from __future__ import annotations

import copy
import json
import secrets
import sys
import threading
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import sqlalchemy as sa

from audit_engine.policy import Policy
from audit_engine.schema import INSTITUTION_LEVELS

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "fhir"

INSTITUTIONS = (
    # code, name, level, is_centre
    ("LEAD001", "县人民医院（医共体牵头医院）", "县级医院", True),
    ("TOWN01", "城关镇卫生院", "乡镇卫生院", False),
    ("TOWN02", "青山乡卫生院", "乡镇卫生院", False),
    ("COMM01", "东城社区卫生服务中心", "社区卫生服务中心", False),
    ("VIL01", "柳树村卫生室", "村卫生室", False),
    ("VIL02", "石桥村卫生室", "村卫生室", False),
)

DEPARTMENTS = {
    "县级医院": (("NK", "内科"), ("EK", "儿科"), ("JZ", "急诊科"), ("HX", "呼吸内科")),
    "乡镇卫生院": (("QK", "全科"), ("EK", "儿科")),
    "社区卫生服务中心": (("QK", "全科"),),
    "村卫生室": (("ZS", "诊室"),),
}

PRACTITIONERS = {
    "县级医院": (("D001", "王建国", "主任医师", ["麻醉药品和第一类精神药品处方权", "抗菌药物处方权"]),
                ("D002", "李芳", "主治医师", ["抗菌药物处方权"]), ("D003", "张伟", "住院医师", [])),
    "乡镇卫生院": (("D101", "赵明", "主治医师", ["抗菌药物处方权"]), ("D102", "孙丽", "住院医师", [])),
    "社区卫生服务中心": (("D201", "周强", "主治医师", []),),
    "村卫生室": (("D301", "吴大山", "乡村医生", []),),
}

# Long enough to open the workbench any time in the first hour; escalation, not a silent pass.
DEMO_TIMEOUT_MINUTES = 90
DEMO_POLICY = Policy(timeout_minutes=DEMO_TIMEOUT_MINUTES, timeout_action="escalate")
DEMO_FEED_SECONDS = 120.0
RETURNED_SAMPLE = "flagged/interaction_warfarin_aspirin.json"
MODIFIED_SAMPLE = FIXTURES / "modified" / "interaction_warfarin_aspirin_modified_dose_and_ppi.json"
RETURN_REASON = "华法林与阿司匹林合用出血风险高：请将华法林减量并加用胃黏膜保护药，或停用阿司匹林"

USERS = (
    ("yaoshi1", "pharmacist", "LEAD001"),
    ("yaoshi2", "pharmacist", "LEAD001"),
    ("zhikong", "quality", "LEAD001"),
    ("guanli", "admin", None),
)


def _say(out: TextIO, text: str = "") -> None:
    print(text, file=out, flush=True)


def demo_prescriptions() -> list[tuple[str, dict[str, Any]]]:
    """(file name, Bundle) of every shipped sample prescription."""
    found = []
    for folder in ("clean", "flagged"):
        for p in sorted((FIXTURES / folder).glob("*.json")):
            if p.name.endswith(".expect.json"):
                continue
            try:
                found.append((f"{folder}/{p.name}", json.loads(p.read_text(encoding="utf-8"))))
            except (OSError, ValueError):
                continue
    return found


def _level_of(bundle: dict[str, Any]) -> str | None:
    """The institution level the sample was written for (its Organization's type text)."""
    for entry in bundle.get("entry", []):
        res = entry.get("resource") or {}
        if res.get("resourceType") == "Organization" and "partOf" not in res:
            for t in res.get("type") or []:
                if isinstance(t, dict) and t.get("text") in INSTITUTION_LEVELS:
                    return str(t["text"])
    return None


def _for_institution(bundle: dict[str, Any], code: str, suffix: str = "") -> dict[str, Any]:
    """The same prescription as member ``code`` would send it: its own prescription numbers
    (``suffix`` makes a fresh one), and the member itself as the Organization, so the facts
    name the institution that sent it."""
    doc = copy.deepcopy(bundle)
    name, level = next((n, lv) for c, n, lv, _ in INSTITUTIONS if c == code)
    ident = doc.get("identifier")
    if isinstance(ident, dict) and isinstance(ident.get("value"), str):
        ident["value"] = f"{code}-{ident['value']}{suffix}"
    for entry in doc.get("entry", []):
        res = entry.get("resource") or {}
        if res.get("resourceType") == "Organization" and "partOf" not in res:
            res["identifier"] = [{"system": "urn:cn:county:institution", "value": code}]
            res["name"] = name
            res["type"] = [{"text": level}]
        if res.get("resourceType") == "MedicationRequest":
            for ident in res.get("identifier", []) or []:
                if isinstance(ident.get("value"), str):
                    ident["value"] = f"{code}-{ident['value']}{suffix}"
            if isinstance(res.get("groupIdentifier"), dict) and isinstance(res["groupIdentifier"].get("value"), str):
                res["groupIdentifier"]["value"] = f"{code}-{res['groupIdentifier']['value']}{suffix}"
    return doc


def load_demo(url: str, *, out: TextIO = sys.stdout, engine: Any = None) -> dict[str, Any]:
    """Create the demo alliance (once) and review a day of prescriptions; returns a summary
    (``engine``: the rules engine used, for :class:`DemoFeed`; None when it could not load)."""
    from audit_engine import auth
    from audit_engine.store.db import make_engine, session_scope
    from audit_engine.store.models import Department, Institution, Practitioner
    from audit_engine.store.policies import set_policy

    db = make_engine(url)
    summary: dict[str, Any] = {"created": False, "keys": {}, "passwords": {}, "reviews": 0, "history": 0, "engine": None}
    try:
        with session_scope(db) as s:
            exists = s.scalar(sa.select(Institution.id).where(Institution.code == INSTITUTIONS[0][0])) is not None
            if not exists:
                summary["created"] = True
                for code, name, level, centre in INSTITUTIONS:
                    inst, key = auth.create_institution(s, code=code, name=name, level=level, is_centre=centre,
                                                        centre_code=None if centre else INSTITUTIONS[0][0])
                    summary["keys"][code] = key
                    set_policy(s, institution_id=inst.id, policy=DEMO_POLICY)
                    for dcode, dname in DEPARTMENTS[level]:
                        s.add(Department(institution_id=inst.id, code=dcode, name=dname))
                    s.flush()
                    for pcode, pname, title, rights in PRACTITIONERS[level]:
                        s.add(Practitioner(institution_id=inst.id, code=pcode, name=pname, title=title, rights=rights))
                for username, role, inst_code in USERS:
                    password = secrets.token_urlsafe(9)
                    auth.create_user(s, username=username, password=password, role=role, institution_code=inst_code)
                    summary["passwords"][username] = password
        if summary["created"]:
            _print_secrets(summary, out)
        else:
            _print_existing(db, out)
        engine = engine if engine is not None else _load_engine(out)
        summary["engine"] = engine
        if engine is not None:
            summary["reviews"] = _review_day(db, out, engine)
            if summary["created"]:
                _returned_and_modified(db, out, engine)
            from audit_engine.stats.demo_history import load_history

            # Months of history built from the day's reviews, for the statistics (issue 12).
            summary["history"] = load_history(url, out=out)
            from audit_engine.quality.demo_candidate import add_candidate

            summary["candidate"] = add_candidate(url, out=out)  # a rulebase to replay in /quality (issue 13)
            _say(out, f"演示队列：{_open_tasks(db)} 个任务待药师处理；每个任务 {DEMO_TIMEOUT_MINUTES} 分钟后超时升级"
                      f"（不会自动通过），服务运行期间每 {DEMO_FEED_SECONDS:.0f} 秒到达一张新处方。")
    finally:
        db.dispose()
    return summary


def _load_engine(out: TextIO) -> Any:
    from audit_engine.review import load_engine

    try:
        return load_engine()
    except Exception as exc:  # the demo still serves; /health tells the same story
        _say(out, f"规则库无法加载，跳过演示审方：{exc}")
        return None


def _open_tasks(db: sa.Engine) -> int:
    from audit_engine.store.db import read_scope
    from audit_engine.store.models import Task

    with read_scope(db) as s:
        return int(s.scalar(sa.select(sa.func.count(Task.id)).where(Task.status.in_(("pending", "escalated", "claimed"))))
                   or 0)


def _print_existing(db: sa.Engine, out: TextIO) -> None:
    """A second ``serve --demo``: what exists, and how to get fresh credentials."""
    from audit_engine.store.db import read_scope
    from audit_engine.store.models import Institution, User

    with read_scope(db) as s:
        users = s.execute(sa.select(User.username, User.role, Institution.code)
                          .outerjoin(Institution, Institution.id == User.institution_id).order_by(User.id)).all()
    _say(out, "=" * 72)
    _say(out, "演示数据已存在，本次未新建机构、用户或密钥。现有用户：")
    for username, role, code in users:
        _say(out, f"  用户 {username:8} 角色 {role:10} 机构 {code or '（全医共体）'}")
    _say(out, "密码与 API 密钥只在创建时显示一次（库中只存哈希），无法再次显示。需要新的：")
    _say(out, "  · 重建演示数据（清空本库，重新生成机构、用户、密钥与处方）：audit-engine serve --demo --reset-demo")
    _say(out, "  · 或只新建一个药师：audit-engine user add 用户名 --role pharmacist --institution LEAD001（从标准输入读密码）")
    _say(out, "=" * 72)


def reset_demo(url: str, *, out: TextIO = sys.stdout) -> bool:
    """``serve --demo --reset-demo``: drop every table and migrate afresh, but only on a
    database that holds nothing but the demo alliance; returns False (and says why) otherwise."""
    from alembic import command
    from alembic.config import Config

    from audit_engine.store.db import MIGRATIONS_DIR, make_engine, read_scope, upgrade_schema
    from audit_engine.store.models import Institution

    db = make_engine(url)
    try:
        with read_scope(db) as s:
            codes = set(s.scalars(sa.select(Institution.code)))
        foreign = sorted(codes - {c for c, *_ in INSTITUTIONS})
        if foreign:
            _say(out, f"拒绝重置：数据库中有演示以外的机构（{'、'.join(foreign[:5])}），--reset-demo 只用于演示数据库。")
            return False
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        with db.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "base")
    finally:
        db.dispose()
    upgrade_schema(url)
    _say(out, "演示数据库已清空并重建结构，正在重新生成演示数据……")
    return True


def _print_secrets(summary: dict[str, Any], out: TextIO) -> None:
    _say(out, "=" * 72)
    _say(out, "演示医共体已创建。以下密钥与密码只显示这一次：")
    for code, name, level, _ in INSTITUTIONS:
        _say(out, f"  机构 {code:8} {name}（{level}）  API 密钥: {summary['keys'][code]}")
    for username, role, inst in USERS:
        _say(out, f"  用户 {username:8} 角色 {role:10} 机构 {inst or '（全医共体）':8} 密码: {summary['passwords'][username]}")
    _say(out, "=" * 72)


def _principals(db: sa.Engine) -> dict[str, Any]:
    from audit_engine.auth import principal_for_institution
    from audit_engine.store.db import session_scope
    from audit_engine.store.models import Institution

    with session_scope(db) as s:
        members = {c: s.scalar(sa.select(Institution).where(Institution.code == c)) for c, *_ in INSTITUTIONS}
        return {c: principal_for_institution(i) for c, i in members.items() if i is not None}


def _sender(bundle: dict[str, Any], n: int, principals: dict[str, Any]) -> str:
    """A sample written for a village clinic is sent by a village clinic: level rules then
    judge it as intended, and the pharmacist sees one institution, not two."""
    level = _level_of(bundle)
    same_level = [c for c, _, lv, _ in INSTITUTIONS if lv == level and c in principals]
    pool = same_level or sorted(principals)
    return pool[n % len(pool)]


def _review_day(db: sa.Engine, out: TextIO, engine: Any) -> int:
    """Send every sample prescription from a rotating member; idempotent by prescription number."""
    from audit_engine.errors import AuditEngineError
    from audit_engine.store.db import session_scope
    from audit_engine.submission import submit_review

    samples = demo_prescriptions()
    if not samples:
        _say(out, "未找到示例处方（fixtures/fhir），跳过演示审方。")
        return 0
    principals = _principals(db)
    counts: dict[str, int] = {}
    reviewed = replayed = 0
    for n, (name, bundle) in enumerate(samples):
        code = _sender(bundle, n, principals)
        try:
            with session_scope(db) as s:
                record = submit_review(s, principal=principals[code], payload=_for_institution(bundle, code),
                                       kind="bundle", engine=engine)
        except AuditEngineError as exc:
            _say(out, f"  跳过 {name}：{exc}")
            continue
        reviewed += 1
        replayed += bool(record.replayed)
        counts[record.verdict] = counts.get(record.verdict, 0) + 1
    shown = "，".join(f"{k} {v}" for k, v in sorted(counts.items()))
    if replayed == reviewed:
        _say(out, f"演示审方：{reviewed} 张示例处方此前已审核（{shown}），本次未重复审核。")
    else:
        _say(out, f"演示审方：{reviewed} 张处方已通过真实审方流程（{shown}）。重复运行不会重复审核。")
    return reviewed


def _returned_and_modified(db: sa.Engine, out: TextIO, engine: Any) -> None:
    """One prescription with a history: pharmacist yaoshi2 returned it to the doctor, who sent
    it back modified (warfarin reduced, omeprazole added); the modified version waits in the queue."""
    from audit_engine import auth, queue
    from audit_engine.errors import AuditEngineError
    from audit_engine.store.db import session_scope
    from audit_engine.store.models import Task, User
    from audit_engine.submission import submit_review

    original = dict(demo_prescriptions()).get(RETURNED_SAMPLE)
    if original is None or not MODIFIED_SAMPLE.is_file():
        return
    principals = _principals(db)
    code = "LEAD001"
    try:
        with session_scope(db) as s:
            first = submit_review(s, principal=principals[code], payload=_for_institution(original, code, "-R"),
                                  kind="bundle", engine=engine)
        if first.task is None:
            return
        with session_scope(db) as s:
            user = s.scalar(sa.select(User).where(User.username == "yaoshi2"))
            if user is None:
                return
            pharmacist = auth.principal_for_user(s, user)
            queue.claim(s, task_id=first.task.id, principal=pharmacist)
            queue.decide(s, task_id=first.task.id, principal=pharmacist, decision="return", reason=RETURN_REASON)
        modified = json.loads(MODIFIED_SAMPLE.read_text(encoding="utf-8"))
        with session_scope(db) as s:
            submit_review(s, principal=principals[code], payload=_for_institution(modified, code, "-R"), kind="bundle",
                          engine=engine, replaces_review_id=first.id)
            status = s.scalar(sa.select(Task.status).where(Task.review_id == first.id))
    except (AuditEngineError, KeyError) as exc:
        _say(out, f"  跳过打回—修改示例：{exc}")
        return
    _say(out, f"演示历史：一张处方被 yaoshi2 打回、医生修改后重新提交（原任务 {status}），修改版在队列中。")


class DemoFeed:
    """While the demo serves, a further sample prescription arrives every ``interval_s``
    (flagged and clean samples in turn, from the member the sample was written for), each
    with a fresh prescription number, through the real pipeline."""

    def __init__(self, url: str, engine: Any, *, interval_s: float = DEMO_FEED_SECONDS,
                 out: TextIO = sys.stdout) -> None:
        self.url, self.engine, self.interval_s, self.out = url, engine, interval_s, out
        self.stop_event = threading.Event()
        self.sent = 0
        self._thread = threading.Thread(target=self._run, name="demo-feed", daemon=True)
        flagged = [x for x in demo_prescriptions() if x[0].startswith("flagged/")]
        clean = [x for x in demo_prescriptions() if x[0].startswith("clean/")]
        # Mostly prescriptions that need a pharmacist, with a clean one now and then.
        self.samples = [x for pair in zip(flagged, flagged[1:] + flagged[:1], clean, strict=False) for x in pair]

    def start(self) -> None:
        if self.samples:
            self._thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        if self._thread.is_alive():
            self._thread.join(10)

    def send_one(self) -> str | None:
        """Send the next sample now; returns its verdict (None when it was refused)."""
        from audit_engine.errors import AuditEngineError
        from audit_engine.store.db import make_engine, session_scope
        from audit_engine.submission import submit_review

        name, bundle = self.samples[self.sent % len(self.samples)]
        db = make_engine(self.url)
        try:
            principals = _principals(db)
            code = _sender(bundle, self.sent, principals)
            suffix = f"-L{datetime.now():%H%M%S}{self.sent:03d}"
            with session_scope(db) as s:
                record = submit_review(s, principal=principals[code], payload=_for_institution(bundle, code, suffix),
                                       kind="bundle", engine=self.engine)
            return str(record.verdict)
        except AuditEngineError as exc:
            _say(self.out, f"演示新处方 {name} 未能提交：{exc}")
            return None
        finally:
            self.sent += 1
            db.dispose()

    def _run(self) -> None:
        while not self.stop_event.wait(self.interval_s):
            try:
                self.send_one()
            except Exception as exc:  # a database hiccup must not end the feed
                _say(self.out, f"演示新处方提交失败：{type(exc).__name__}: {exc}")
