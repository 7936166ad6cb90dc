"""``serve --demo``: a small county alliance with a day of prescriptions, reviewed for real.

Creates one lead county hospital (the review centre) and members of every level, their
departments and prescribers, a user for each role, and API keys (printed once); then sends
the shipped sample prescriptions (fixtures/fhir) through the real pipeline as each
member's HIS would. Running it again changes nothing and prints no secrets.
"""

from __future__ import annotations

import copy
import json
import secrets
import sys
from pathlib import Path
from typing import Any, TextIO

import sqlalchemy as sa

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


def _for_institution(bundle: dict[str, Any], code: str) -> dict[str, Any]:
    """The same prescription as member ``code`` would send it: its own prescription numbers,
    and the member itself as the Organization, so the facts name the institution that sent it."""
    doc = copy.deepcopy(bundle)
    name, level = next((n, lv) for c, n, lv, _ in INSTITUTIONS if c == code)
    ident = doc.get("identifier")
    if isinstance(ident, dict) and isinstance(ident.get("value"), str):
        ident["value"] = f"{code}-{ident['value']}"
    for entry in doc.get("entry", []):
        res = entry.get("resource") or {}
        if res.get("resourceType") == "Organization" and "partOf" not in res:
            res["identifier"] = [{"system": "urn:cn:county:institution", "value": code}]
            res["name"] = name
            res["type"] = [{"text": level}]
        if res.get("resourceType") == "MedicationRequest":
            for ident in res.get("identifier", []) or []:
                if isinstance(ident.get("value"), str):
                    ident["value"] = f"{code}-{ident['value']}"
            if isinstance(res.get("groupIdentifier"), dict) and isinstance(res["groupIdentifier"].get("value"), str):
                res["groupIdentifier"]["value"] = f"{code}-{res['groupIdentifier']['value']}"
    return doc


def load_demo(url: str, *, out: TextIO = sys.stdout, engine: Any = None) -> dict[str, Any]:
    """Create the demo alliance (once) and review a day of prescriptions; returns a summary."""
    from audit_engine import auth
    from audit_engine.store.db import make_engine, session_scope
    from audit_engine.store.models import Department, Institution, Practitioner

    db = make_engine(url)
    summary: dict[str, Any] = {"created": False, "keys": {}, "passwords": {}, "reviews": 0}
    try:
        with session_scope(db) as s:
            exists = s.scalar(sa.select(Institution.id).where(Institution.code == INSTITUTIONS[0][0])) is not None
            if not exists:
                summary["created"] = True
                for code, name, level, centre in INSTITUTIONS:
                    inst, key = auth.create_institution(s, code=code, name=name, level=level, is_centre=centre,
                                                        centre_code=None if centre else INSTITUTIONS[0][0])
                    summary["keys"][code] = key
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
            _say(out, "演示数据已存在：未新建机构、用户或密钥（密钥只在首次创建时显示）。")
        summary["reviews"] = _review_day(db, out, engine)
        from audit_engine.stats.demo_history import load_history

        summary["history"] = load_history(url, out=out)  # months of history for the statistics (issue 12)
    finally:
        db.dispose()
    return summary


def _print_secrets(summary: dict[str, Any], out: TextIO) -> None:
    _say(out, "=" * 72)
    _say(out, "演示医共体已创建。以下密钥与密码只显示这一次：")
    for code, name, level, _ in INSTITUTIONS:
        _say(out, f"  机构 {code:8} {name}（{level}）  API 密钥: {summary['keys'][code]}")
    for username, role, inst in USERS:
        _say(out, f"  用户 {username:8} 角色 {role:10} 机构 {inst or '（全医共体）':8} 密码: {summary['passwords'][username]}")
    _say(out, "=" * 72)


def _review_day(db: sa.Engine, out: TextIO, engine: Any) -> int:
    """Send every sample prescription from a rotating member; idempotent by prescription number."""
    from audit_engine.auth import principal_for_institution
    from audit_engine.errors import AuditEngineError
    from audit_engine.store.db import session_scope
    from audit_engine.store.models import Institution
    from audit_engine.store.reviews import submit_review

    samples = demo_prescriptions()
    if not samples:
        _say(out, "未找到示例处方（fixtures/fhir），跳过演示审方。")
        return 0
    if engine is None:
        from audit_engine.review import load_engine

        try:
            engine = load_engine()
        except Exception as exc:  # the demo still serves; /health tells the same story
            _say(out, f"规则库无法加载，跳过演示审方：{exc}")
            return 0
    with session_scope(db) as s:
        members = {c: s.scalar(sa.select(Institution).where(Institution.code == c)) for c, *_ in INSTITUTIONS}
        principals = {c: principal_for_institution(i) for c, i in members.items() if i is not None}
    codes = sorted(principals)
    counts: dict[str, int] = {}
    reviewed = 0
    for n, (name, bundle) in enumerate(samples):
        # A sample written for a village clinic is sent by a village clinic: level rules then
        # judge it as intended, and the pharmacist sees one institution, not two.
        level = _level_of(bundle)
        same_level = [c for c, _, lv, _ in INSTITUTIONS if lv == level and c in principals]
        pool = same_level or codes
        code = pool[n % len(pool)]
        try:
            with session_scope(db) as s:
                record = submit_review(s, principal=principals[code], payload=_for_institution(bundle, code),
                                       kind="bundle", engine=engine)
        except AuditEngineError as exc:
            _say(out, f"  跳过 {name}：{exc}")
            continue
        reviewed += 1
        counts[record.verdict] = counts.get(record.verdict, 0) + 1
    shown = "，".join(f"{k} {v}" for k, v in sorted(counts.items()))
    _say(out, f"演示审方：{reviewed} 张处方已通过真实审方流程（{shown}）。重复运行不会重复审核。")
    return reviewed
