"""The national 处方点评 codes: 《医院处方点评管理规范（试行）》（卫医管发〔2010〕28号）第十七–十九条.

``data/comment_codes.csv`` holds the 28 items, each row citing its article and item:
A01–A15 不规范处方, B01–B09 用药不适宜处方, C01–C04 超常处方.
"""

from __future__ import annotations

import csv
import difflib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from audit_engine.errors import InvalidRequestError

CSV_PATH = Path(__file__).resolve().parent / "data" / "comment_codes.csv"
JUDGEMENTS = ("合理", "不合理")
GROUPS = (("irregular", "不规范处方"), ("inappropriate", "用药不适宜处方"), ("excessive", "超常处方"))


@dataclass(frozen=True, slots=True)
class CommentCode:
    """One national 点评 item."""

    code: str
    group: str
    group_name: str
    item: int
    text: str
    source: str


@lru_cache(maxsize=1)
def all_codes() -> tuple[CommentCode, ...]:
    with CSV_PATH.open(encoding="utf-8", newline="") as f:
        return tuple(CommentCode(r["code"], r["group"], r["group_name"], int(r["item"]), r["text"], r["source"])
                     for r in csv.DictReader(f))


def by_code() -> dict[str, CommentCode]:
    return {c.code: c for c in all_codes()}


def validate(judgement: str, codes: list[str]) -> list[str]:
    """The codes of a comment, checked: 合理 has none; 不合理 has at least one, each a national
    code, none twice. Every problem is reported at once (InvalidRequestError, HTTP 422)."""
    if judgement not in JUDGEMENTS:
        raise InvalidRequestError("judgement", f"judgement 应为 合理 或 不合理，收到 {judgement!r}")
    problems: list[tuple[str, str]] = []
    known = by_code()
    if judgement == "合理" and codes:
        problems.append(("codes", "合理的处方不应带点评代码"))
    if judgement == "不合理" and not codes:
        problems.append(("codes", "不合理的处方至少需要一个点评代码（A01–A15 不规范处方、B01–B09 用药不适宜处方、"
                                  "C01–C04 超常处方）"))
    seen: set[str] = set()
    for n, code in enumerate(codes):
        if code not in known:
            close = difflib.get_close_matches(str(code).upper(), list(known), n=1, cutoff=0.5)
            hint = f"（是否指 {close[0]}？）" if close else ""
            problems.append((f"codes[{n}]", f"未知的点评代码 {code!r}{hint}"))
        elif code in seen:
            problems.append((f"codes[{n}]", f"点评代码 {code} 重复"))
        seen.add(code)
    if len(problems) == 1:
        raise InvalidRequestError(*problems[0])
    if problems:
        raise InvalidRequestError(problems[0][0], "；".join(f"{where}：{message}" for where, message in problems))
    order = {c.code: n for n, c in enumerate(all_codes())}
    return sorted(codes, key=order.__getitem__)
