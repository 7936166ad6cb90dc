"""Statistics at scale: generate N reviews over I institutions and M months, then time the
quality manager's queries (issue 12).

    # PostgreSQL, 1,000,000 reviews (keeps the database for re-measuring with --measure-only)
    python benchmarks/bench_stats.py --db postgresql --reviews 1000000 --keep
    python benchmarks/bench_stats.py --db postgresql --measure-only --name bench_stats
    python benchmarks/bench_stats.py --db postgresql --drop --name bench_stats
    # the embedded SQLite default, 100,000 reviews
    python benchmarks/bench_stats.py --db sqlite --reviews 100000

Rows are bulk-loaded (COPY on PostgreSQL, executemany in large transactions on SQLite) with
the shape real reviews record: a prescription, a review, its findings, its statistics rows
(``audit_engine.stats.recording.stat_rows`` itself computes them, from facts shaped as the
pipeline writes them), a task for each ``recheck`` with the pharmacist's decision, the
doctor's answer after a return, and CDS feedback on ``explain`` reviews, in time order (as
reviews arrive: a month's rows lie together on disk). Distributions:
volumes by level (county hospital ≫ township ≫ village), 门诊 85% / 急诊 15%, verdicts
pass 68% / explain 15% / recheck 13% / block 4%, 1–6 items (mean ≈ 2.4), rule hits Zipf-like
over 150 rules, decisions approve 70% / reject 8% / return 15% / timeout 7%, returns answered
modify 80% / insist 15%, one member with a high antimicrobial rate. The prescription's raw
JSON and the review's facts are stored compact (statistics never read them; the hot tables
are the statistics tables, tasks and feedback).

Each query is run ``--repeat`` times after one warm-up run; the median is printed.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from audit_engine.auth import Principal
from audit_engine.stats.export import render
from audit_engine.stats.indicators import indicators
from audit_engine.stats.periods import day_range, month_period, year_period
from audit_engine.stats.recording import stat_rows
from audit_engine.stats.reports import report_data
from audit_engine.store.db import make_engine, upgrade_schema

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
YEAR = 2026
LEVEL_WEIGHTS = {"县级医院": 30.0, "乡镇卫生院": 4.0, "社区卫生服务中心": 3.0, "村卫生室": 0.6}
DRUGS = [  # (drug_id, name, antimicrobial, injection route, essential, steroid)
    ("amoxicillin", "阿莫西林", True, None, True, False), ("cefuroxime", "头孢呋辛", True, None, True, False),
    ("ceftriaxone", "头孢曲松", True, "静滴", True, False), ("levofloxacin", "左氧氟沙星", True, None, True, False),
    ("azithromycin", "阿奇霉素", True, None, True, False), ("amlodipine", "氨氯地平", False, None, True, False),
    ("metformin", "二甲双胍", False, None, True, False), ("atorvastatin", "阿托伐他汀", False, None, True, False),
    ("omeprazole", "奥美拉唑", False, None, True, False), ("ibuprofen", "布洛芬", False, None, True, False),
    ("sodium_chloride", "氯化钠", False, "静滴", True, False), ("glucose", "葡萄糖", False, "静滴", True, False),
    ("dexamethasone", "地塞米松", False, "静注", True, True), ("methylprednisolone", "甲泼尼龙", False, "静滴", True, True),
    ("ambroxol", "氨溴索", False, None, False, False), ("valsartan", "缬沙坦", False, None, True, False),
    ("nifedipine", "硝苯地平", False, None, True, False), ("insulin", "胰岛素", False, "皮下", True, False),
    ("vitamin_c", "维生素C", False, None, True, False), ("paracetamol", "对乙酰氨基酚", False, None, True, False),
]
UNKNOWN = ["奥拉西坦注射液", "依达拉奉注射液", "自拟方", "长春西汀注射液"]
RULES = [f"RULE-{n:03d}" for n in range(150)]


def _principal() -> Principal:
    return Principal(kind="user", id=0, username="bench", roles=frozenset({"quality"}), institution_id=None,
                     institution_code=None, institution_level=None, is_centre=False)


def _institutions(n: int) -> list[tuple[str, str, str, bool]]:
    out = [("LEAD001", "县人民医院", "县级医院", True)]
    levels = ["乡镇卫生院"] * 12 + ["社区卫生服务中心"] * 5 + ["村卫生室"] * 12
    for k in range(n - 1):
        level = levels[k % len(levels)]
        out.append((f"M{k + 1:03d}", f"{level}{k + 1}", level, False))
    return out


class Generator:
    """Deterministic rows of one review at a time (``random.Random(seed)``)."""

    def __init__(self, seed: int, institution_ids: list[int], levels: list[str], months: int, total: int) -> None:
        self.r = random.Random(seed)
        self.total = total
        self.serial = 0
        self.days = (date(YEAR + (months // 12), months % 12 + 1, 1) - date(YEAR, 1, 1)).days if months < 12 else 365
        self.ids = institution_ids
        weights = [LEVEL_WEIGHTS[lv] for lv in levels]
        self.cum = list(_cumsum(weights))
        self.outlier = institution_ids[min(3, len(institution_ids) - 1)]
        self.months = months
        self.rule_weights = list(_cumsum([1 / (k + 1) for k in range(len(RULES))]))

    def hexid(self) -> str:
        return f"{self.r.getrandbits(128):032x}"

    def review(self) -> dict[str, Any]:
        r = self.r
        inst = self.ids[_pick(self.cum, r.random() * self.cum[-1])]
        # Reviews arrive in time order, as they do in production (a month's rows lie together on disk).
        day = date(YEAR, 1, 1) + timedelta(days=self.serial * self.days // self.total)
        self.serial += 1
        created = datetime(day.year, day.month, day.day, r.randint(0, 11), r.randint(0, 59), r.randint(0, 59))
        emergency = r.random() < 0.15
        n_items = min(6, 1 + int(r.expovariate(1 / 1.4)))
        anti_p = 0.45 if inst == self.outlier else 0.12
        items = []
        for k in range(n_items):
            if r.random() < 0.02:
                items.append({"id": f"m{k}", "reference": f"MedicationRequest/m{k}", "_written": r.choice(UNKNOWN),
                              "route": "静滴"})
                continue
            if k == 0 and r.random() < anti_p:
                d = DRUGS[r.randrange(5)]
            else:
                d = DRUGS[5 + r.randrange(len(DRUGS) - 5)]
            item: dict[str, Any] = {"id": f"m{k}", "reference": f"MedicationRequest/m{k}", "drug_id": d[0],
                                    "name": d[1], "essential": d[4], "route": d[3] or "口服"}
            if d[2]:
                item["antimicrobial_grade"] = "非限制使用级"
            if d[3]:
                item["injection"] = True
            if d[5]:
                item["atc"] = "H02AB02"
            items.append(item)
        u = r.random()
        verdict = "pass" if u < 0.68 else "explain" if u < 0.83 else "recheck" if u < 0.96 else "block"
        findings: list[tuple[str, list[str]]] = []
        if verdict != "pass":
            for _ in range(1 + (r.random() < 0.3)):
                rule = RULES[_pick(self.rule_weights, r.random() * self.rule_weights[-1])]
                findings.append((rule, [items[r.randrange(len(items))]["reference"]]))
        if any("_written" in i for i in items):
            findings.append(("SYS-UNKNOWN-DRUG", [next(i["reference"] for i in items if "_written" in i)]))
        if r.random() < 0.03:
            findings.append(("LEG-OFF-FORMULARY", [items[0]["reference"]]))
        return {"institution_id": inst, "created_at": created, "emergency": emergency, "items": items,
                "verdict": verdict, "findings": findings}


def _cumsum(xs: list[float]) -> list[float]:
    total, out = 0.0, []
    for x in xs:
        total += x
        out.append(total)
    return out


def _pick(cum: list[float], u: float) -> int:
    lo, hi = 0, len(cum) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if cum[mid] < u:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _t(v: Any) -> str:
    """A COPY text-format field."""
    if v is None:
        return r"\N"
    if isinstance(v, bool):
        return "t" if v else "f"
    if isinstance(v, datetime):
        return v.isoformat(sep=" ")
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, dict | list):
        v = json.dumps(v, ensure_ascii=False, separators=(",", ":"))
    return str(v).replace("\\", "\\\\").replace("\t", " ").replace("\n", " ")


COLUMNS: dict[str, tuple[str, ...]] = {
    "prescriptions": ("id", "institution_id", "identifier", "kind", "raw", "raw_sha256", "received_at",
                      "retention_class", "retain_until"),
    "reviews": ("id", "prescription_id", "institution_id", "rulebase_version", "verdict", "outcome", "max_level",
                "unchecked", "emergency", "items", "facts", "policy", "fail_mode", "engine_failed", "timings_ms",
                "created_at", "decided_at"),
    "findings": ("review_id", "position", "rule_id", "title", "category", "subtype", "level", "message", "evidence",
                 "implicated"),
    "tasks": ("id", "review_id", "institution_id", "status", "emergency", "escalated", "max_level", "created_at",
              "deadline_at", "decision", "reason", "decided_by", "decided_at", "doctor_answer", "doctor_reason",
              "closed_at", "version"),
    "feedback": ("review_id", "rule_id", "outcome", "reason", "created_at"),
    "review_stats": ("review_id", "institution_id", "created_at", "local_date", "local_month", "visit_type",
                     "department", "prescriber_code", "prescriber_name", "prescriber_title", "verdict", "item_count",
                     "antimicrobial", "injection", "essential", "iv_steroid", "essential_items", "off_list_items"),
    "review_stat_items": ("review_id", "position", "institution_id", "local_date", "visit_type", "drug_id",
                          "drug_name", "antimicrobial", "injection", "essential", "iv_steroid", "on_level_list"),
    "review_stat_rules": ("review_id", "rule_id", "institution_id", "local_date", "visit_type", "findings"),
}
LEVEL_OF = {"pass": 0, "explain": 3, "recheck": 5, "block": 8}
OUTCOME_OF = {"pass": "system_pass", "explain": "awaiting_reason", "recheck": "pending", "block": "auto_return"}
DEPTS = ["内科", "外科", "儿科", "急诊科", "全科", "妇产科"]
TITLES = ["主任医师", "副主任医师", "主治医师", "住院医师", "乡村医生"]


def rows_of(g: Generator, spec: dict[str, Any]) -> dict[str, list[tuple[Any, ...]]]:
    r = g.r
    rx_id, review_id = g.hexid(), g.hexid()
    created: datetime = spec["created_at"]
    verdict = spec["verdict"]
    inst = spec["institution_id"]
    prescriber = r.randrange(20)
    facts = {"prescription": {"type": "急诊" if spec["emergency"] else "门诊", "department": DEPTS[prescriber % 6]},
             "prescriber": {"title": TITLES[prescriber % 5]},
             "identity": {"code": f"D{prescriber:03d}", "name": f"医师{prescriber:02d}"},
             "items": [{k: v for k, v in i.items() if k != "_written"} for i in spec["items"]]}
    payload = {"entry": [{"resource": {"resourceType": "MedicationRequest", "id": i["id"],
                                       "medicationCodeableConcept": {"text": i["_written"]}}}
                         for i in spec["items"] if "_written" in i]}
    stat, items, rules = stat_rows(review_id=review_id, institution_id=inst, created_at=created, verdict=verdict,
                                   facts=facts, findings=spec["findings"], payload=payload)
    raw = json.dumps({"resourceType": "Bundle", "n": rx_id[:8]})
    out: dict[str, list[tuple[Any, ...]]] = {k: [] for k in COLUMNS}
    out["prescriptions"].append((rx_id, inst, rx_id[:12], "cds", raw, "0" * 64, created, "ordinary",
                                 date(created.year + 1, created.month, min(created.day, 28))))
    out["reviews"].append((review_id, rx_id, inst, "rb-bench", verdict, OUTCOME_OF[verdict], LEVEL_OF[verdict],
                           False, spec["emergency"], [i["reference"] for i in spec["items"]], {}, {}, "closed",
                           False, {}, created, None if verdict == "recheck" else created))
    for n, (rule, refs) in enumerate(spec["findings"]):
        out["findings"].append((review_id, n, rule, f"规则{rule}", "适宜性", "剂量", LEVEL_OF[verdict] or 1,
                                "提示", "依据", refs))
    out["review_stats"].append(tuple(stat[c] for c in COLUMNS["review_stats"]))
    out["review_stat_items"].extend(tuple(i[c] for c in COLUMNS["review_stat_items"]) for i in items)
    out["review_stat_rules"].extend(tuple(x[c] for c in COLUMNS["review_stat_rules"]) for x in rules)
    if verdict == "recheck":
        u = r.random()
        decided_at = created + timedelta(seconds=r.randint(20, 600))
        decision, status, answer, closed = ("approve", "approved", None, decided_at)
        if u < 0.08:
            decision, status = "reject", "rejected"
        elif u < 0.23:
            decision, status, closed = "return", "returned", None
            v = r.random()
            if v < 0.8:
                answer, status, closed = "modify", "modified", decided_at + timedelta(minutes=10)
            elif v < 0.95:
                answer, status, closed = "insist", "double_signed", decided_at + timedelta(minutes=10)
        elif u < 0.30:
            decision, status = "timeout_pass", "timeout_passed"
        out["tasks"].append((g.hexid(), review_id, inst, status, spec["emergency"], False, 5, created,
                             created + timedelta(minutes=15), decision, None if decision == "approve" else "理由",
                             "system" if decision == "timeout_pass" else "yaoshi", decided_at, answer,
                             "理由" if answer == "insist" else None, closed, 2))
    elif verdict == "explain" and r.random() < 0.6:
        rule = spec["findings"][0][0] if spec["findings"] else None
        outcome = "overridden" if r.random() < 0.7 else "accepted"
        out["feedback"].append((review_id, rule, outcome, "已说明" if outcome == "overridden" else None,
                                created + timedelta(seconds=30)))
    return out


def load(url: str, n: int, institutions: int, months: int, seed: int, chunk: int = 20000) -> float:
    """Create the schema and the institutions, then bulk-load ``n`` reviews; returns seconds."""
    upgrade_schema(url)
    db = make_engine(url)
    t0 = time.perf_counter()
    insts = _institutions(institutions)
    with db.begin() as c:
        for code, name, level, centre in insts:
            c.execute(sa.text("INSERT INTO institutions (code, name, level, is_centre, created_at) "
                              "VALUES (:c, :n, :l, :ce, :at)"),
                      {"c": code, "n": name, "l": level, "ce": centre, "at": datetime(YEAR, 1, 1)})
        ids = [row[0] for row in c.execute(sa.text("SELECT id FROM institutions ORDER BY id"))]
        lead = ids[0]
        c.execute(sa.text("UPDATE institutions SET centre_id = :lead WHERE id <> :lead"), {"lead": lead})
    g = Generator(seed, ids, [lv for _, _, lv, _ in insts], months, n)
    postgres = db.dialect.name == "postgresql"
    done = 0
    while done < n:
        batch = min(chunk, n - done)
        tables: dict[str, list[tuple[Any, ...]]] = {k: [] for k in COLUMNS}
        for _ in range(batch):
            for k, rows in rows_of(g, g.review()).items():
                tables[k].extend(rows)
        if postgres:
            raw = db.raw_connection()
            try:
                cur = raw.cursor()
                for table, rows in tables.items():
                    if not rows:
                        continue
                    buf = io.StringIO()
                    for row in rows:
                        buf.write("\t".join(_t(v) for v in row))
                        buf.write("\n")
                    with cur.copy(f"COPY {table} ({', '.join(COLUMNS[table])}) FROM STDIN") as cp:  # type: ignore[attr-defined]
                        cp.write(buf.getvalue())
                raw.commit()
            finally:
                raw.close()
        else:
            with db.begin() as c:
                for table, rows in tables.items():
                    if rows:
                        cols = COLUMNS[table]
                        stmt = sa.text(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join(':' + x for x in cols)})")
                        c.execute(stmt, [dict(zip(cols, [json.dumps(v) if isinstance(v, dict | list) else v
                                                         for v in row], strict=True)) for row in rows])
        done += batch
        el = time.perf_counter() - t0
        print(f"  loaded {done:>9,} reviews  {el:7.1f} s  ({done / el:,.0f}/s)", flush=True)
    with db.begin() as c:
        c.exec_driver_sql("ANALYZE")
    db.dispose()
    return time.perf_counter() - t0


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    fn()  # warm-up
    times, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), result


def measure(url: str, repeat: int, month: str = f"{YEAR}-11") -> dict[str, float]:
    from sqlalchemy.orm import Session

    db = make_engine(url)
    principal = _principal()
    out: dict[str, float] = {}
    try:
        with db.connect() as c:
            out["reviews"] = c.execute(sa.text("SELECT count(*) FROM review_stats")).scalar_one()
            out["reviews_in_month"] = c.execute(sa.text("SELECT count(*) FROM review_stats WHERE local_month = :m"),
                                                {"m": month}).scalar_one()
        mp = month_period(month)
        yp = year_period(str(YEAR))
        cases: dict[str, Callable[[Session], Any]] = {
            "month_by_institution_ms": lambda s: indicators(s, principal=principal, period=mp, group_by="institution"),
            "year_by_institution_ms": lambda s: indicators(s, principal=principal, period=yp, group_by="institution"),
            "month_by_rule_ms": lambda s: indicators(s, principal=principal, period=mp, group_by="rule"),
            "month_by_prescriber_ms": lambda s: indicators(s, principal=principal, period=mp, group_by="prescriber"),
            "monthly_xlsx_ms": lambda s: render(report_data(s, principal=principal, period=mp), "xlsx"),
        }
        for name, case in cases.items():
            def run(case: Callable[[Session], Any] = case) -> Any:
                with Session(db) as s:
                    try:
                        return case(s)
                    finally:
                        s.rollback()
            ms, result = timed(run, repeat)
            out[name] = round(ms, 1)
            extra = f"  ({len(result)} bytes)" if isinstance(result, bytes) else f"  ({len(result['rows'])} rows)"
            print(f"  {name:26} {ms:9.1f} ms{extra}", flush=True)
        _ = day_range  # the API's parser of from/to; the cases above use the same Period objects
    finally:
        db.dispose()
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", choices=("postgresql", "sqlite"), default="postgresql")
    p.add_argument("--reviews", type=int, default=100_000)
    p.add_argument("--institutions", type=int, default=30)
    p.add_argument("--months", type=int, default=12)
    p.add_argument("--seed", type=int, default=12)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--name", default=None, help="PostgreSQL database name (default: a fresh bench_stats_<random>)")
    p.add_argument("--keep", action="store_true", help="keep the PostgreSQL database for --measure-only")
    p.add_argument("--measure-only", action="store_true")
    p.add_argument("--drop", action="store_true", help="drop the named PostgreSQL database and exit")
    args = p.parse_args()
    if args.db == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{tmp}/bench.sqlite"
            print(f"loading {args.reviews:,} reviews into SQLite", flush=True)
            secs = load(url, args.reviews, args.institutions, args.months, args.seed)
            print(f"loaded in {secs:.0f} s", flush=True)
            print(json.dumps(measure(url, args.repeat), ensure_ascii=False))
        return 0
    name = args.name or f"bench_stats_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    try:
        if args.drop:
            with admin.connect() as c:
                c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            print(f"dropped {name}")
            return 0
        if not args.measure_only:
            with admin.connect() as c:
                c.exec_driver_sql(f'CREATE DATABASE "{name}"')
            print(f"loading {args.reviews:,} reviews into PostgreSQL database {name}", flush=True)
            secs = load(url, args.reviews, args.institutions, args.months, args.seed)
            print(f"loaded in {secs:.0f} s", flush=True)
        print(json.dumps(measure(url, args.repeat), ensure_ascii=False))
    finally:
        if not args.keep and not args.measure_only:
            with admin.connect() as c:
                c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
