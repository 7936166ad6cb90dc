"""``serve --demo``: a candidate rulebase to replay, so the what-if view has something to show.

The candidate is the active rulebase plus two lines in ``overrides.rules``, as a county would
try them before activating: the rule that pharmacists approve most often in the demo's history
(the noisiest) drops to level 2 (record and release), and the next one is disabled. It is
stored uploaded, not active.
Running it again adds nothing.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import TextIO

import sqlalchemy as sa

from audit_engine.store.db import make_engine, session_scope, utcnow
from audit_engine.store.models import FindingRow, RulebaseVersion, Task

LABEL = "演示候选：最噪声的规则降为记录放行（等级 2），次噪声的规则停用"


def noisiest_rules(s: sa.orm.Session) -> list[str]:
    """The two rules most often on prescriptions the pharmacists approved."""
    q = (sa.select(FindingRow.rule_id, sa.func.count()).join(Task, Task.review_id == FindingRow.review_id)
         .where(Task.status == "approved", ~FindingRow.rule_id.startswith("SYS-"))
         .group_by(FindingRow.rule_id).order_by(sa.func.count().desc(), FindingRow.rule_id).limit(2))
    return [str(r[0]) for r in s.execute(q)]


def _shipped_files() -> dict[str, str]:
    from audit_engine.review import default_rulebase_path

    folder = default_rulebase_path()
    return {p.relative_to(folder).as_posix(): p.read_text(encoding="utf-8-sig") for p in sorted(folder.rglob("*"))
            if p.is_file() and p.suffix.lower() in (".rules", ".csv", ".md", ".txt")}


def add_candidate(url: str, *, out: TextIO = sys.stdout) -> str | None:
    """Store the demo's candidate version (once); returns its version, or None when there is none to make."""
    from audit_engine.engine import load_compiled

    db = make_engine(url)
    try:
        with session_scope(db) as s:
            if s.scalar(sa.select(RulebaseVersion.version).where(RulebaseVersion.label == LABEL)) is not None:
                return None
            active = s.scalar(sa.select(RulebaseVersion).where(RulebaseVersion.status == "active"))
            # On the first start nothing is registered yet: the service will activate the shipped one.
            files = dict(active.files) if active is not None else _shipped_files()
            rules = noisiest_rules(s)
            if not rules or "overrides.rules" not in files:
                return None
            lines = [f"覆盖 {rules[0]} {{ 等级 2 }}", *(f"覆盖 {r} {{ 停用 }}" for r in rules[1:])]
            files["overrides.rules"] = files["overrides.rules"].rstrip("\n") + f"\n\n# {LABEL}\n" + "\n".join(lines) + "\n"
            with tempfile.TemporaryDirectory(prefix="candidate-") as folder:
                for name, text in files.items():
                    target = Path(folder) / name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text(text, encoding="utf-8")
                version = str(load_compiled(folder).version)
            if s.get(RulebaseVersion, version) is None:
                s.add(RulebaseVersion(version=version, label=LABEL, files=files, status="uploaded",
                                      uploaded_by="system", uploaded_at=utcnow()))
        print(f"演示候选规则库：{'；'.join(lines)}（版本 {version[:12]}，未激活），可在 /quality 的“规则试运行”中重放。",
              file=out, flush=True)
        return version
    except Exception as exc:  # the demo still serves without a candidate
        print(f"演示候选规则库未生成：{exc}", file=out, flush=True)
        return None
    finally:
        db.dispose()
