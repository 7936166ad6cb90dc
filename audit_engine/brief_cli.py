"""``audit-engine brief to-fhir FILE``: a brief prescription as the FHIR Bundle a HIS would send."""

from __future__ import annotations

import json
import sys
from datetime import date

from audit_engine.errors import AuditEngineError, RulebaseError


def cmd_to_fhir(file: str, *, date_text: str | None = None, identifier: str = "BRIEF-1") -> int:
    """Print the Bundle as JSON on stdout; notes on stderr; 0 converted, 1 bad brief."""
    from audit_engine.brief import read_brief, to_fhir
    from audit_engine.review_cli import read_input

    try:
        text, shown = read_input(file)
    except (OSError, UnicodeDecodeError) as exc:
        print(f"{file}: 无法读取：{exc}", file=sys.stderr)
        return 1
    try:
        day = date.fromisoformat(date_text) if date_text else date.today()
    except ValueError:
        print(f"--date 应为 YYYY-MM-DD：{date_text}", file=sys.stderr)
        return 1
    try:
        bundle, notes = to_fhir(read_brief(text, shown), today=day, identifier=identifier)
    except RulebaseError as err:
        for d in err.diagnostics:
            print(d.render(), file=sys.stderr)
        return 1
    except AuditEngineError as err:
        print(str(err), file=sys.stderr)
        return 1
    for note in notes:
        print(f"注意：{note}", file=sys.stderr)
    print(json.dumps(bundle, ensure_ascii=False, indent=2))
    return 0
