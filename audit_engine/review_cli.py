"""``audit-engine review FILE``: review one FHIR document or brief prescription offline, print the findings."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from audit_engine.errors import AuditEngineError, IntakeError
from audit_engine.review import ReviewResult, detect_kind, finding_json, load_engine, review_payload

VERDICT_ZH = {"pass": "通过", "explain": "医师说明理由", "recheck": "药师复核", "block": "拦截"}


def read_input(file: str) -> tuple[str, str]:
    """(text, name shown in messages) of FILE, or of standard input when FILE is ``-``."""
    if file == "-":
        return sys.stdin.read(), "<stdin>"
    return Path(file).read_text(encoding="utf-8-sig"), file


def summary_text(result: ReviewResult, verdict: str, *, policy_name: str = "默认策略") -> str:
    """A review as a pharmacist reads it: the verdict, then each finding with its evidence."""
    lines = [f"审核结论：{VERDICT_ZH.get(verdict, verdict)}（{verdict}，{policy_name}）",
             f"规则库版本：{result.rulebase_version[:16]}"]
    names = {str(i.get("reference")): str(i.get("name", i.get("reference"))) for i in result.facts.items}
    if not result.findings:
        lines.append("未发现问题。")
    for k, f in enumerate(result.findings, start=1):
        lines.append("")
        lines.append(f"{k}. [等级 {f.level}] {f.rule_id} {f.title}")
        lines.append(f"   提示：{f.message}")
        if f.suggestion:
            lines.append(f"   建议：{f.suggestion}")
        if f.evidence:
            lines.append(f"   依据：{f.evidence}")
        if f.implicated:
            lines.append(f"   涉及：{'、'.join(names.get(r, r) for r in f.implicated)}")
    return "\n".join(lines)


def cmd_review(file: str, *, rulebase: str | None = None, as_json: bool | None = None) -> int:
    """``audit-engine review FILE``: review a FHIR document or a brief prescription (``-``: stdin).

    Answers in the shape it was asked in: the machine form (JSON) for a FHIR JSON document, as
    the public contract says, and a readable summary (the verdict under the default policy,
    then every finding) for a brief prescription; ``as_json`` True or False chooses either.
    Exit status 0 reviewed, 1 bad input or rulebase."""
    from audit_engine.intake.outcome import operation_outcome
    from audit_engine.policy import Policy, decide_verdict

    try:
        text, shown = read_input(file)
    except (OSError, UnicodeDecodeError) as exc:
        print(f"{file}: 无法读取：{exc}", file=sys.stderr)
        return 1
    try:
        engine = load_engine(rulebase)
        from audit_engine.brief import looks_like_brief, read_brief, review_brief

        brief = looks_like_brief(text)
        if as_json is None:
            as_json = not brief
        if brief:
            result = review_brief(read_brief(text, shown), engine)
        else:
            try:
                payload = json.loads(text)
            except json.JSONDecodeError as exc:
                print(f"{shown}: 既不是 JSON（{exc}），也不是简要处方（首词应为 患者/处方/医师/机构/诊断/药品）",
                      file=sys.stderr)
                return 1
            if not isinstance(payload, dict):
                print(f"{shown}: 顶层必须是 JSON 对象", file=sys.stderr)
                return 1
            result = review_payload(payload, kind=detect_kind(payload), engine=engine)
    except IntakeError as err:
        print(json.dumps(operation_outcome(err), ensure_ascii=False, indent=2))
        return 1
    except AuditEngineError as err:
        print(str(err), file=sys.stderr)
        return 1
    verdict = decide_verdict(result.findings, unchecked=result.unchecked, policy=Policy())
    if not as_json:
        print(summary_text(result, verdict))
        return 0
    out = {
        "prescription_id": result.prescription_id,
        "rulebase_version": result.rulebase_version,
        "verdict": verdict,
        "max_level": result.max_level,
        "unchecked": result.unchecked,
        "findings": [finding_json(f) for f in result.findings],
    }
    print(json.dumps(out, ensure_ascii=False, indent=2))
    return 0
