"""The ``audit-engine`` command line: a thin dispatcher over the pipeline's stages.

Each sub-command imports its stage lazily, so ``audit-engine check`` does not load the
web stack and ``serve`` does not pay for what it does not use.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from audit_engine.settings import Settings


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="audit-engine", description="县域集中审方 prescription pre-review engine")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="upgrade the database schema and start the HTTP service")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--demo", action="store_true", help="load demo institutions, users and prescriptions")
    s.add_argument("--reset-demo", action="store_true",
                   help="with --demo: empty a demo database and create the demo afresh (new keys and passwords)")
    s.add_argument("--workers", type=int, default=1,
                   help="API processes under uvicorn's supervisor (more than 1 needs PostgreSQL)")
    s.add_argument("--no-worker", dest="worker", action="store_false",
                   help="do not run the background worker beside the API (run `audit-engine worker` yourself)")

    sub.add_parser("worker", help="run the background worker (leases, timeouts, webhooks) until SIGTERM")

    c = sub.add_parser("check", help="parse, check and compile a rulebase; print file:line:col diagnostics")
    c.add_argument("path")

    t = sub.add_parser("test", help="run the test cases written in the rule files")
    t.add_argument("path")

    r = sub.add_parser("review", help="review one prescription offline (FHIR JSON or the brief form; - for stdin)")
    r.add_argument("file", help="a FHIR Bundle / CDS request / MedicationRequest, or a brief prescription; - = stdin")
    r.add_argument("--rulebase", default=None, help="rulebase folder (default: AUDIT_RULEBASE or the shipped one)")
    shape = r.add_mutually_exclusive_group()
    shape.add_argument("--json", dest="as_json", action="store_true", default=None,
                       help="print the machine form (JSON); the default for a FHIR JSON file")
    shape.add_argument("--text", dest="as_json", action="store_false",
                       help="print the readable summary; the default for a brief prescription")

    b = sub.add_parser("brief", help="brief prescriptions (the short form of the rule test cases)")
    b_sub = b.add_subparsers(dest="action", required=True)
    bf = b_sub.add_parser("to-fhir", help="convert a brief prescription to a FHIR R4 Bundle (JSON on stdout)")
    bf.add_argument("file", help="the brief prescription; - = stdin")
    bf.add_argument("--date", default=None, help="prescription date YYYY-MM-DD (default: today)")
    bf.add_argument("--identifier", default="BRIEF-1", help="prescription number written into the Bundle")

    from audit_engine.rulebase_cli import add_subparser as add_rulebase

    add_rulebase(sub)

    inst = sub.add_parser("institution", help="manage member institutions")
    inst_sub = inst.add_subparsers(dest="action", required=True)
    ia = inst_sub.add_parser("add", help="register an institution and print its API key once")
    ia.add_argument("code")
    ia.add_argument("name")
    ia.add_argument("--level", required=True, help="县级医院, 乡镇卫生院, 社区卫生服务中心 or 村卫生室")

    audit = sub.add_parser("audit", help="the audit log")
    audit_sub = audit.add_subparsers(dest="action", required=True)
    audit_sub.add_parser("verify", help="verify the whole hash chain; exit 1 naming the first bad entry")
    from audit_engine.admin_commands import add_policy_parser

    add_policy_parser(sub)

    user = sub.add_parser("user", help="manage users")
    user_sub = user.add_subparsers(dest="action", required=True)
    ua = user_sub.add_parser("add", help="create a user; the password is read from standard input")
    ua.add_argument("username")
    ua.add_argument("--role", required=True, choices=["pharmacist", "quality", "admin"])
    ua.add_argument("--institution", default=None)

    wh = sub.add_parser("webhook-host", help="manage an institution's allowlist of webhook hosts (audited)")
    wh.add_argument("action", choices=["add", "remove", "list"])
    wh.add_argument("code", help="institution code")
    wh.add_argument("host", nargs="?", default=None, help="host name or IP address (add, remove)")
    from audit_engine.stats.report_cli import add_parser as add_report_parser

    add_report_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from audit_engine.settings import ConfigurationError, get_settings

    args = _parser().parse_args(argv)
    get_settings.cache_clear()  # the command starts here: read the environment as it is now
    try:
        settings = get_settings()  # validated before any command runs: a bad value names its variable
    except ConfigurationError as err:
        print(f"audit-engine: {err}", file=sys.stderr)
        return 2
    try:
        return _dispatch(args, settings)
    except BrokenPipeError:
        # The reader went away (``audit-engine check rulebase/ | head``): stop quietly, as
        # Unix tools do, instead of printing a traceback. Point stdout at /dev/null so the
        # interpreter's final flush does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    if args.command in ("check", "test"):
        from audit_engine.lang import commands

        return commands.cmd_check(args.path) if args.command == "check" else commands.cmd_test(args.path)
    if args.command == "review":
        from audit_engine import review_cli

        return review_cli.cmd_review(args.file, rulebase=args.rulebase or settings.rulebase_path,
                                     as_json=args.as_json)
    if args.command == "audit":
        from audit_engine import chain_check

        return chain_check.cmd_verify(settings.database_url)
    if args.command == "webhook-host":
        from audit_engine.webhook_hosts_cli import cmd_webhook_host

        return cmd_webhook_host(args.action, args.code, args.host, url=settings.database_url)
    if args.command == "report":
        from audit_engine.stats.report_cli import cmd_report

        return cmd_report(args, settings.database_url)
    if args.command == "rulebase":
        from audit_engine import rulebase_cli

        return rulebase_cli.cmd_rulebase(
            args.action, url=args.url, database_url=args.database_url, path=getattr(args, "path", None),
            version=getattr(args, "version", None), label=getattr(args, "label", None),
            limit=getattr(args, "limit", 200), as_json=args.json, settings=settings)
    if args.command == "brief":
        from audit_engine import brief_cli

        return brief_cli.cmd_to_fhir(args.file, date_text=args.date, identifier=args.identifier)
    if args.command in ("policy", "institution", "user"):
        from audit_engine import admin_commands

        if args.command == "policy":
            return admin_commands.cmd_policy(args, settings.database_url)
        if args.command == "institution":
            return admin_commands.cmd_institution_add(args.code, args.name, level=args.level,
                                                      database_url=settings.database_url)
        return admin_commands.cmd_user_add(args.username, role=args.role, institution=args.institution,
                                           database_url=settings.database_url)
    from api import server  # the web stack: only the service's own processes need it

    if args.command == "serve":
        return server.cmd_serve(host=args.host, port=args.port, demo=args.demo, workers=args.workers,
                                reset_demo=args.reset_demo, worker=args.worker)
    assert args.command == "worker", args.command
    return server.cmd_worker()


if __name__ == "__main__":
    sys.exit(main())
