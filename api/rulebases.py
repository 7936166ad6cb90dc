"""Rulebase versions: stored in the database, materialised to a local folder to load.

A version is the set of its files (``relative path -> text``), kept in
``rulebase_versions`` so every replica can load it; ``version`` is the compiled rulebase's
content hash, the same string every review records. Exactly one row is ``active``;
activation and rollback flip it inside one transaction, and each process notices within
its poll interval (``api.runtime``).
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from audit_engine.errors import Diagnostic, InputIssue, IntakeError, RulebaseError
from audit_engine.settings import Settings

ALLOWED_SUFFIXES = (".rules", ".csv", ".md", ".txt")
MAX_FILES = 2000


@dataclass(frozen=True, slots=True)
class Checked:
    """The outcome of validating a set of files: a compiled rulebase or every diagnostic."""

    version: str | None
    compiled: Any | None
    diagnostics: tuple[Diagnostic, ...]
    rule_count: int = 0

    @property
    def ok(self) -> bool:
        return self.compiled is not None


def _bad(message: str, expression: str | None = None) -> IntakeError:
    return IntakeError([InputIssue("invalid", message, expression=expression)], status=422)


def clean_path(name: str) -> str:
    """A safe relative POSIX path inside the rulebase folder, or IntakeError."""
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or any(part in ("..", "") for part in p.parts) or not p.parts:
        raise _bad(f"文件路径不安全：{name!r}", expression=f"files['{name}']")
    if p.suffix.lower() not in ALLOWED_SUFFIXES:
        raise _bad(f"不支持的文件类型：{name!r}（只接受 {', '.join(ALLOWED_SUFFIXES)}）", expression=f"files['{name}']")
    return p.as_posix()


def files_from_zip(data: bytes) -> dict[str, str]:
    """The rulebase files of a zip archive (a single top folder is stripped)."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise _bad("上传的内容不是有效的 zip 文件") from None
    names = [n for n in zf.namelist() if not n.endswith("/") and not n.startswith("__MACOSX/")]
    if len(names) > MAX_FILES:
        raise _bad(f"文件过多（{len(names)} > {MAX_FILES}）")
    tops = {n.split("/", 1)[0] for n in names}
    # "county/base.rules, county/tables/x.csv": strip the wrapping folder; "tables/x.csv" alone: keep it.
    strip = (len(tops) == 1 and all("/" in n for n in names)
             and any(n.count("/") == 1 and n.endswith(".rules") for n in names))
    out: dict[str, str] = {}
    for n in names:
        rel = n.split("/", 1)[1] if strip else n
        if PurePosixPath(rel).suffix.lower() not in ALLOWED_SUFFIXES:
            continue
        out[clean_path(rel)] = decode(zf.read(n), rel)
    if not out:
        raise _bad("zip 中没有 .rules 或 .csv 文件")
    return out


def decode(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _bad(f"{name}: 文件不是 UTF-8 编码", expression=f"files['{name}']") from None


def files_from_json(doc: Mapping[str, Any]) -> dict[str, str]:
    """``{"files": {"path": "text", ...}}`` → files."""
    files = doc.get("files")
    if not isinstance(files, dict) or not files:
        raise _bad("需要 files 对象：{\"路径\": \"文件内容\"}", expression="files")
    out: dict[str, str] = {}
    for name, text in files.items():
        if not isinstance(text, str):
            raise _bad(f"{name}: 文件内容必须是字符串", expression=f"files['{name}']")
        out[clean_path(str(name))] = text
    if len(out) > MAX_FILES:
        raise _bad(f"文件过多（{len(out)} > {MAX_FILES}）")
    return out


def files_of_folder(folder: Path) -> dict[str, str]:
    """Every rulebase file under ``folder`` (the shipped rulebase, registered at first start)."""
    out: dict[str, str] = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.suffix.lower() in ALLOWED_SUFFIXES:
            out[p.relative_to(folder).as_posix()] = p.read_text(encoding="utf-8-sig")
    return out


def files_digest(files: Mapping[str, str]) -> str:
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode())
        h.update(b"\0")
        h.update(files[name].encode())
        h.update(b"\0")
    return h.hexdigest()


def materialise(files: Mapping[str, str], settings: Settings, *, key: str | None = None) -> Path:
    """Write ``files`` to a folder under the local store (idempotent; the key names the folder)."""
    root = Path(settings.rulebase_store_dir)
    folder = root / (key or files_digest(files))
    if folder.is_dir():
        return folder
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".tmp-"))
    for name, text in files.items():
        target = tmp / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    try:
        os.replace(tmp, folder)  # atomic: a concurrent process sees all files or none
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # another process won the race; its copy is identical
    return folder


def check_files(files: Mapping[str, str], settings: Settings) -> Checked:
    """Parse, check and compile; collect every diagnostic instead of raising."""
    from audit_engine.lang.compiler import compile_rulebase
    from audit_engine.lang.loader import load_rulebase

    folder = materialise(files, settings)
    try:
        rb = load_rulebase(folder)
        compiled = compile_rulebase(rb)
    except RulebaseError as err:
        return Checked(None, None, tuple(_relative(d, folder) for d in err.diagnostics))
    return Checked(str(compiled.version), compiled, (), rule_count=len(getattr(rb, "rules", ()) or ()))


def _relative(d: Diagnostic, folder: Path) -> Diagnostic:
    """Diagnostics name the uploaded file, not our cache folder."""
    try:
        rel = Path(d.file).resolve().relative_to(folder.resolve()).as_posix()
    except (ValueError, OSError):
        return d
    return Diagnostic(rel, d.line, d.col, d.message, d.source_line, d.hint, d.end_col)


def _model() -> Any:
    from audit_engine.store.models import RulebaseVersion

    return RulebaseVersion


def active_version(db: sa.Engine, settings: Settings) -> tuple[str, str] | None:
    """(version, local folder) of the active version: one indexed row, then a folder cached on disk."""
    model = _model()
    with Session(db) as s:
        row = s.execute(sa.select(model.version).where(model.status == "active").limit(1)).scalar_one_or_none()
        if row is None:
            return None
        folder = Path(settings.rulebase_store_dir) / f"v-{row[:40]}"
        if not folder.is_dir():
            files = s.execute(sa.select(model.files).where(model.version == row)).scalar_one()
            folder = materialise(files, settings, key=f"v-{row[:40]}")
        return row, str(folder)


def register_shipped(db: sa.Engine, *, version: str, folder: Path) -> str:
    """Record the configured (shipped) rulebase; returns the version that is active afterwards.

    The first start activates it, so rollback always has a target. A later release that
    ships a different rulebase takes over too, unless an administrator activated the current
    version through the API: their choice stays, and the new shipped version waits,
    uploaded, for them to activate it.
    """
    model = _model()
    for _ in range(3):
        try:
            return _register(db, model, version=version, folder=folder)
        except sa.exc.IntegrityError:
            continue  # another process registered it at the same moment: look again
    return version


def _chosen_by_admin(s: Session, version: str) -> bool:
    """Whether someone activated (or rolled back to) ``version`` through the API."""
    from audit_engine.store.models import AuditEntry

    q = sa.select(AuditEntry.id).where(
        AuditEntry.object_type == "rulebase", AuditEntry.object_id == version[:64],
        AuditEntry.action.in_(("rulebase.activated", "rulebase.rolled_back"))).limit(1)
    return s.scalar(q) is not None


def _register(db: sa.Engine, model: Any, *, version: str, folder: Path) -> str:
    from audit_engine.store.db import utcnow

    with Session(db) as s, s.begin():
        active = s.scalar(sa.select(model).where(model.status == "active").limit(1))
        row = s.get(model, version)
        if row is None:
            row = model(version=version, label="随系统发布的规则库", files=files_of_folder(folder), status="uploaded",
                        uploaded_by="system", uploaded_at=utcnow())
            s.add(row)
        if active is None or (active.version != version and not _chosen_by_admin(s, active.version)):
            if active is not None:
                active.status = "retired"
            s.flush()
            row.status = "active"
            row.activated_at = utcnow()
            return version
        return str(active.version)


# --------------------------------------------------------------------------- lifecycle
# Upload, activation, rollback and listing, shared by the HTTP routes (api/routes/rulebase.py)
# and the command line (audit-engine rulebase …, direct database mode), so both apply the same
# checks and write the same audit entries.


class LifecycleError(Exception):
    """A lifecycle step that cannot be done: ``status`` is the HTTP status the API answers."""

    def __init__(self, status: int, message: str, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


def store_version(session: Session, principal: Any, files: Mapping[str, str], label: str | None,
                  checked: Checked) -> tuple[Any, bool]:
    """Store a checked version (uploaded, not active); (row, created). Idempotent on content."""
    from audit_engine.store.db import utcnow

    model = _model()
    assert checked.version is not None
    row = session.get(model, checked.version)
    if row is not None:
        return row, False
    row = model(version=checked.version, label=label, files=dict(files), status="uploaded",
                uploaded_by=principal.actor, uploaded_at=utcnow())
    session.add(row)
    audit(session, principal, "rulebase.uploaded", str(checked.version))
    session.commit()
    return row, True


def get_version(session: Session, version: str) -> Any:
    """The stored version ``version``, or a unique prefix of one (LifecycleError 404/409 otherwise)."""
    model = _model()
    row = session.get(model, version)
    if row is not None:
        return row
    if len(version) >= 6 and all(c in "0123456789abcdef" for c in version):
        found = session.scalars(sa.select(model).where(model.version.startswith(version)).limit(2)).all()
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise LifecycleError(409, f"版本前缀 {version} 对应多个版本，请多写几位", "conflict")
    raise LifecycleError(404, f"没有规则库版本 {version}", "not-found")


def list_versions(session: Session) -> list[Any]:
    model = _model()
    return list(session.scalars(sa.select(model).order_by(model.uploaded_at.desc())).all())


def activate_version(session: Session, principal: Any, row: Any) -> None:
    """Make ``row`` the active version (one transaction) and record rulebase.activated."""
    make_active(session, principal, row, action="rulebase.activated")


def rollback_version(session: Session, principal: Any) -> Any:
    """Re-activate the most recently activated other version; LifecycleError 409 when none."""
    model = _model()
    current = session.scalar(sa.select(model).where(model.status == "active"))
    q = sa.select(model).where(model.activated_at.is_not(None), model.status != "active")
    previous = session.scalar(q.order_by(model.activated_at.desc()).limit(1))
    if previous is None:
        raise LifecycleError(409, "没有可回滚的先前版本", "conflict")
    make_active(session, principal, previous, action="rulebase.rolled_back",
                detail={"from": current.version if current else None})
    return previous


def make_active(session: Session, principal: Any, row: Any, *, action: str,
                detail: dict[str, Any] | None = None) -> None:
    """One transaction: retire the active row, activate this one (stamping when)."""
    from audit_engine.store.db import utcnow

    model = _model()
    try:
        session.execute(sa.update(model).where(model.status == "active", model.version != row.version)
                        .values(status="retired"))
        row.status = "active"
        row.activated_at = utcnow()
        audit(session, principal, action, row.version, detail)
        session.commit()
    except BaseException:
        session.rollback()
        raise


def audit(session: Session, principal: Any, action: str, version: str, detail: dict[str, Any] | None = None) -> None:
    from audit_engine import audit_log

    audit_log.append(session, actor=audit_log.Actor.of(principal), action=action, object_type="rulebase",
                     object_id=version[:64], detail=detail or {})


def row_json(row: Any) -> dict[str, Any]:
    """A stored version as the API and the command line show it."""
    return {
        "version": row.version,
        "label": row.label,
        "status": row.status,
        "active": row.status == "active",
        "uploaded_by": row.uploaded_by,
        "uploaded_at": row.uploaded_at.isoformat(timespec="seconds") + "Z" if row.uploaded_at else None,
        "activated_at": row.activated_at.isoformat(timespec="seconds") + "Z" if row.activated_at else None,
        "files": sorted(row.files),
    }


def diag_json(d: Diagnostic) -> dict[str, Any]:
    return {"file": d.file, "line": d.line, "col": d.col, "message": d.message, "hint": d.hint, "text": d.render()}
