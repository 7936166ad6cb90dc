"""``audit-engine report``: write a period's statistics report to a file, so a county can
schedule it (cron, Windows Task Scheduler) without the HTTP service.

    audit-engine report --month 2026-11 --format xlsx -o 2026-11.xlsx
    audit-engine report --half 2026-H2 --format csv -o 2026-H2.csv
    audit-engine report --year 2026 --format measure-report -o 2026.json [--institution TOWN01]

It reads ``AUDIT_DATABASE_URL`` (upgrading the schema first, as ``serve`` does) and reports
for the whole alliance, or for one institution with ``--institution``. Exit status 0 on
success, 1 on bad arguments or an unwritable file (a message, never a traceback).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rp = sub.add_parser("report", help="write the statistics report of a month, half-year or year to a file")
    period = rp.add_mutually_exclusive_group(required=True)
    period.add_argument("--month", help="YYYY-MM")
    period.add_argument("--half", help="YYYY-H1 or YYYY-H2")
    period.add_argument("--year", help="YYYY")
    rp.add_argument("--format", default="xlsx", choices=["xlsx", "csv", "measure-report"])
    rp.add_argument("-o", "--output", required=True, help="file to write ('-' for standard output)")
    rp.add_argument("--institution", default=None, help="only this institution (code)")


def cmd_report(args: argparse.Namespace, url: str) -> int:
    from audit_engine.auth import Principal
    from audit_engine.errors import ServiceError
    from audit_engine.stats.export import render
    from audit_engine.stats.periods import one_period
    from audit_engine.stats.reports import report_data
    from audit_engine.store.db import make_engine, read_scope, upgrade_schema

    try:
        period = one_period(month=args.month, half=args.half, year=args.year)
    except ServiceError as err:
        print(f"错误：{err.message}（{err.location}）", file=sys.stderr)
        return 1
    upgrade_schema(url)
    db = make_engine(url)
    try:
        with read_scope(db) as s:
            # The operator of the machine reports for the whole alliance (as ``institution add`` acts).
            operator = Principal(kind="user", id=0, username="audit-engine report", roles=frozenset({"admin"}),
                                 institution_id=None, institution_code=None, institution_level=None,
                                 is_centre=False)
            data = report_data(s, principal=operator, period=period, institution=args.institution)
        body = render(data, args.format)
    except ServiceError as err:
        print(f"错误：{err.message}（{err.location}）", file=sys.stderr)
        return 1
    finally:
        db.dispose()
    try:
        if args.output == "-":
            sys.stdout.buffer.write(body)
            sys.stdout.flush()
        else:
            Path(args.output).write_bytes(body)
    except OSError as exc:
        print(f"错误：无法写入 {args.output}：{exc.strerror or exc}", file=sys.stderr)
        return 1
    if args.output != "-":
        rows = sum(len(f.rows) for f in data.scopes.values())
        print(f"已写入 {args.output}（{period.label}，{len(data.institutions)} 家机构，{rows} 行指标）", file=sys.stderr)
    return 0
