"""``audit-engine rulebase push|validate|dry-run|activate|rollback|list``: a rulebase to production.

Two ways to reach production, with the same checks and audit entries:

* ``--url http://审方中心:8000`` talks to a running service over HTTP, logged in as an admin
  user (the API's own checks, audit entries and immediate swap on activation);
* ``--database-url postgresql://…`` works on the database directly, through the same lifecycle
  functions the API routes call (``audit_engine.rulebase_lifecycle``), after checking the admin's password against
  the users table; running services pick an activation up within their poll interval.

The user name and password come from the settings ``AUDIT_ADMIN_USER`` / ``AUDIT_ADMIN_PASSWORD``,
else are asked for on the terminal. Every failure is a message and exit status 1, never a traceback.
"""

from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TextIO

if TYPE_CHECKING:
    from audit_engine.settings import Settings


class CliError(Exception):
    """A step that failed: the message is printed, the exit status is 1."""


class Target(Protocol):
    """Where the rulebase versions live: a running service or the database."""

    def validate(self, files: dict[str, str]) -> dict[str, Any]: ...
    def push(self, files: dict[str, str], label: str | None) -> dict[str, Any]: ...
    def versions(self) -> list[dict[str, Any]]: ...
    def dry_run(self, version: str, limit: int) -> dict[str, Any]: ...
    def activate(self, version: str) -> dict[str, Any]: ...
    def rollback(self) -> dict[str, Any]: ...
    def close(self) -> None: ...


def credentials(settings: Settings, stdin: TextIO | None = None) -> tuple[str, str]:
    """(user, password): from AUDIT_ADMIN_USER / AUDIT_ADMIN_PASSWORD, else asked on the terminal."""
    user = settings.admin_user
    password = settings.admin_password.get_secret_value() if settings.admin_password is not None else None
    stdin = stdin or sys.stdin
    if user and password:
        return user, password
    if not stdin.isatty():
        raise CliError("需要管理员用户名和密码：设置 AUDIT_ADMIN_USER 与 AUDIT_ADMIN_PASSWORD，或在终端中运行以输入")
    if not user:
        user = input("管理员用户名：").strip()
    if not password:
        password = getpass.getpass("密码：")
    return user, password


def _outcome_text(body: Any) -> str:
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        return "；".join(str(i.get("diagnostics") or i.get("details", {}).get("text") or i.get("code"))
                        for i in body.get("issue", []))
    return json.dumps(body, ensure_ascii=False)[:500]


class HttpTarget:
    """A running service, reached over HTTP with an admin's bearer token."""

    def __init__(self, url: str, user: str, password: str, *, timeout: float = 300.0) -> None:
        import httpx

        self._client = httpx.Client(base_url=url.rstrip("/"), timeout=timeout)
        try:
            r = self._client.post("/api/v1/auth/token", data={"username": user, "password": password})
        except httpx.HTTPError as exc:
            self._client.close()
            raise CliError(f"无法连接审方服务 {url}：{exc}") from None
        if r.status_code != 200:
            self._client.close()
            raise CliError(f"登录失败（HTTP {r.status_code}）：{_outcome_text(self._json(r))}")
        self._client.headers["Authorization"] = f"Bearer {r.json()['access_token']}"

    @staticmethod
    def _json(r: Any) -> Any:
        try:
            return r.json()
        except ValueError:
            return {"text": r.text[:500]}

    def _call(self, method: str, path: str, *, ok: tuple[int, ...] = (200, 201), **kw: Any) -> Any:
        import httpx

        try:
            r = self._client.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise CliError(f"请求失败：{method} {path}：{exc}") from None
        body = self._json(r)
        if r.status_code not in ok:
            raise CliError(f"HTTP {r.status_code}：{_outcome_text(body)}")
        return body

    def validate(self, files: dict[str, str]) -> dict[str, Any]:
        body: dict[str, Any] = self._call("POST", "/api/v1/rulebases/validate", ok=(200, 422), json={"files": files})
        return body

    def push(self, files: dict[str, str], label: str | None) -> dict[str, Any]:
        body: dict[str, Any] = self._call("POST", "/api/v1/rulebases", ok=(200, 201, 422),
                                          json={"files": files, "label": label})
        return body

    def versions(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/api/v1/rulebases")["versions"])

    def dry_run(self, version: str, limit: int) -> dict[str, Any]:
        body: dict[str, Any] = self._call("POST", f"/api/v1/rulebases/{version}/dry-run", params={"limit": limit})
        return body

    def activate(self, version: str) -> dict[str, Any]:
        body: dict[str, Any] = self._call("POST", f"/api/v1/rulebases/{version}/activate")
        return body

    def rollback(self) -> dict[str, Any]:
        body: dict[str, Any] = self._call("POST", "/api/v1/rulebases/rollback")
        return body

    def close(self) -> None:
        self._client.close()


class DatabaseTarget:
    """The database itself, through the lifecycle functions the API routes use."""

    def __init__(self, database_url: str, user: str, password: str, settings: Settings) -> None:
        from sqlalchemy.orm import Session

        from audit_engine import auth
        from audit_engine.store.db import make_engine
        from audit_engine.unit_of_work import UnitOfWork

        self.settings = settings.model_copy(update={"database_url": database_url})
        self._db = make_engine(database_url)
        self._session = Session(self._db)
        self._uow = UnitOfWork(self._session)
        try:
            principal = auth.authenticate_user(self._session, username=user, password=password)
            self._session.commit()
        except Exception as exc:
            self.close()
            raise CliError(f"无法读取数据库 {database_url}：{type(exc).__name__}: {exc}") from None
        if principal is None:
            self.close()
            raise CliError("用户名或密码错误")
        if not principal.has_role("admin"):
            self.close()
            raise CliError(f"用户 {user} 不是管理员（admin），不能管理规则库")
        self.principal = principal

    def _row(self, version: str) -> Any:
        from audit_engine import rulebase_lifecycle as rulebases

        try:
            return rulebases.get_version(self._uow, version)
        except rulebases.LifecycleError as err:
            raise CliError(err.message) from None

    def validate(self, files: dict[str, str]) -> dict[str, Any]:
        from audit_engine import rulebase_lifecycle as rulebases

        checked = rulebases.check_files(files, self.settings)
        return {"ok": checked.ok, "version": checked.version, "rules": checked.rule_count,
                "diagnostics": [rulebases.diag_json(d) for d in checked.diagnostics]}

    def push(self, files: dict[str, str], label: str | None) -> dict[str, Any]:
        from audit_engine import rulebase_lifecycle as rulebases

        checked = rulebases.check_files(files, self.settings)
        if not checked.ok or checked.version is None:
            return {"ok": False, "diagnostics": [rulebases.diag_json(d) for d in checked.diagnostics]}
        row, _ = rulebases.store_version(self._uow, self.principal, files, label, checked)
        return {"ok": True, **rulebases.row_json(row), "rules": checked.rule_count}

    def versions(self) -> list[dict[str, Any]]:
        from audit_engine import rulebase_lifecycle as rulebases

        return [rulebases.row_json(r) for r in rulebases.list_versions(self._uow)]

    def dry_run(self, version: str, limit: int) -> dict[str, Any]:
        from audit_engine.rulebase_dry_run import dry_run

        row = self._row(version)
        return dry_run(self._session, row=row, principal=self.principal, settings=self.settings, limit=limit)

    def activate(self, version: str) -> dict[str, Any]:
        from audit_engine import rulebase_lifecycle as rulebases

        row = self._row(version)
        rulebases.activate_version(self._uow, self.principal, row)
        return {**rulebases.row_json(row), "serving": None}

    def rollback(self) -> dict[str, Any]:
        from audit_engine import rulebase_lifecycle as rulebases

        try:
            row = rulebases.rollback_version(self._uow, self.principal)
        except rulebases.LifecycleError as err:
            raise CliError(err.message) from None
        return {**rulebases.row_json(row), "serving": None}

    def close(self) -> None:
        self._session.close()
        self._db.dispose()


def read_folder(path: str) -> dict[str, str]:
    """The rulebase files of a folder, as the API receives them."""
    from audit_engine.rulebase_lifecycle import files_of_folder

    folder = Path(path)
    if not folder.is_dir():
        raise CliError(f"{path} 不是规则库目录")
    try:
        files = files_of_folder(folder)
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"无法读取 {path}：{exc}") from None
    if not any(name.endswith(".rules") for name in files):
        raise CliError(f"{path} 中没有 .rules 文件")
    return files


def _print_diagnostics(body: dict[str, Any], out: TextIO) -> None:
    diags = body.get("diagnostics", [])
    for d in diags:
        print(d.get("text") or f"{d['file']}:{d['line']}:{d['col']}: {d['message']}", file=out)
    print(f"{len(diags)} 个错误", file=out)


def run(action: str, *, target: Target, path: str | None = None, version: str | None = None,
        label: str | None = None, limit: int = 200, as_json: bool = False, out: TextIO | None = None) -> int:
    """One sub-command against ``target``; prints a readable report (or JSON); the exit status."""
    out = out or sys.stdout
    if action in ("validate", "push"):
        assert path is not None
        files = read_folder(path)
        body = target.validate(files) if action == "validate" else target.push(files, label)
        if as_json:
            print(json.dumps(body, ensure_ascii=False, indent=2), file=out)
            return 0 if body.get("ok") else 1
        if not body.get("ok"):
            _print_diagnostics(body, out)
            return 1
        if action == "validate":
            print(f"校验通过：{body.get('rules')} 条规则，版本 {body.get('version')}", file=out)
        else:
            print(f"已上传版本 {body['version']}（{body.get('rules')} 条规则，状态 {body['status']}；未激活）", file=out)
            print(f"下一步：audit-engine rulebase dry-run {body['version'][:12]}，"
                  f"再 audit-engine rulebase activate {body['version'][:12]}", file=out)
        return 0
    if action == "list":
        rows = target.versions()
        if as_json:
            print(json.dumps(rows, ensure_ascii=False, indent=2), file=out)
            return 0
        for r in rows:
            mark = "*" if r["active"] else " "
            print(f"{mark} {r['version'][:16]}  {r['status']:<8} {r.get('uploaded_at') or '':<20} "
                  f"{r.get('uploaded_by') or '':<10} {r.get('label') or ''}", file=out)
        print(f"共 {len(rows)} 个版本（* 为正在使用的版本）", file=out)
        return 0
    if action == "dry-run":
        assert version is not None
        report = target.dry_run(version, limit)
        if as_json:
            print(json.dumps(report, ensure_ascii=False, indent=2), file=out)
            return 0
        print(f"试运行版本 {report['version'][:16]}：重审最近 {report['examined']} 张处方，"
              f"结论变化 {report['verdict_changes']} 张，发现变化 {report['finding_changes']} 张，"
              f"无法重审 {report['failed']} 张", file=out)
        for transition, count in report.get("transitions", {}).items():
            print(f"  {transition}：{count}", file=out)
        for c in report.get("changes", [])[:20]:
            if "error" in c:
                print(f"  审核 {c['review_id']}：{c['error']}", file=out)
            else:
                print(f"  {c['prescription_identifier']}（{c['institution']}）{c['old_verdict']}→{c['new_verdict']}"
                      f" 新增 {','.join(c['rules_added']) or '无'} 去除 {','.join(c['rules_removed']) or '无'}", file=out)
        return 0
    if action in ("activate", "rollback"):
        row = target.activate(version or "") if action == "activate" else target.rollback()
        if as_json:
            print(json.dumps(row, ensure_ascii=False, indent=2), file=out)
            return 0
        verb = "已激活" if action == "activate" else "已回滚到"
        serving = row.get("serving")
        print(f"{verb}版本 {row['version']}（{row.get('label') or '无标签'}）", file=out)
        print(f"服务正在使用：{serving}" if serving else "各服务进程将在轮询间隔内切换到该版本", file=out)
        return 0
    raise CliError(f"未知操作 {action}")


def cmd_rulebase(action: str, *, url: str | None, database_url: str | None, path: str | None = None,
                 version: str | None = None, label: str | None = None, limit: int = 200,
                 as_json: bool = False, settings: Settings) -> int:
    """``audit-engine rulebase ACTION``: connect, run, report; 0 done, 1 failed."""
    if bool(url) == bool(database_url):
        print("请指定 --url（运行中的服务）或 --database-url（直接操作数据库）之一", file=sys.stderr)
        return 2
    target: Target | None = None
    try:
        user, password = credentials(settings)
        target = (HttpTarget(url, user, password) if url
                  else DatabaseTarget(str(database_url), user, password, settings))
        return run(action, target=target, path=path, version=version, label=label, limit=limit, as_json=as_json)
    except CliError as err:
        print(f"错误：{err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("已取消", file=sys.stderr)
        return 1
    except Exception as err:  # a database or network fault: a message, never a traceback
        print(f"错误：{type(err).__name__}: {err}", file=sys.stderr)
        return 1
    finally:
        if target is not None:
            target.close()


def add_subparser(sub: Any) -> None:
    """The ``rulebase`` sub-command and its actions, on the CLI's sub-parsers."""
    rb = sub.add_parser("rulebase", help="put a rulebase into production: push, validate, dry-run, activate, rollback, list")
    rb_sub = rb.add_subparsers(dest="action", required=True)
    for name, helptext in (("push", "upload a rulebase folder as a new version (checked; not activated)"),
                           ("validate", "check a rulebase folder on the service without storing it"),
                           ("dry-run", "re-review recent prescriptions with a stored version; report changes"),
                           ("activate", "make a stored version the one every review uses"),
                           ("rollback", "re-activate the previously active version"),
                           ("list", "list the stored versions")):
        a = rb_sub.add_parser(name, help=helptext)
        if name in ("push", "validate"):
            a.add_argument("path", help="the rulebase folder")
        if name in ("dry-run", "activate"):
            a.add_argument("version", help="the version (or its first 6+ characters)")
        if name == "push":
            a.add_argument("--label", default=None, help="a label for the version, e.g. 2026年第4季度")
        if name == "dry-run":
            a.add_argument("--limit", type=int, default=200, help="how many recent prescriptions to re-review")
        where = a.add_mutually_exclusive_group(required=True)
        where.add_argument("--url", help="a running service, e.g. http://127.0.0.1:8000 (admin login)")
        where.add_argument("--database-url", help="the database itself (SQLAlchemy URL; admin password checked)")
        a.add_argument("--json", action="store_true", help="print the service's JSON answer")
