"""Verdict policy: findings + an institution's thresholds → pass / explain / recheck / block.

Each institution sets the levels (county 0-9 scale) at which the doctor must explain, a
pharmacist must recheck, and the prescription is blocked; whether an internal failure
fails open or closed; the pharmacists' working hours; and what happens when nobody
decides in time. Everything here is pure: the stored policies are read and written by
``store/policies.py``. Every review stores ``Policy.snapshot()`` of the policy that decided it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from audit_engine.errors import InvalidRequestError
from audit_engine.findings import Finding

VERDICTS = ("pass", "explain", "recheck", "block")  # ordered, mildest first
Verdict = Literal["pass", "explain", "recheck", "block"]
FailMode = Literal["open", "closed"]
TimeoutAction = Literal["pass", "escalate"]


@dataclass(frozen=True, slots=True)
class Policy:
    """One institution's verdict policy.

    A finding of level >= ``block_at`` blocks, >= ``recheck_at`` goes to a pharmacist,
    >= ``explain_at`` needs the doctor's reason, anything lower passes (the defaults follow
    the county hospital scheme in DOMAIN.md: 3 pop-up, 5 pharmacist, 8 hard block).
    ``fail_mode`` "closed" sends a review whose engine failed to a pharmacist; "open"
    passes it (and says so on the review). Working hours are local wall-clock times in
    ``timezone`` on ISO ``work_days``; the timeout clock runs only inside them.

    When nobody decides a task in time, ``timeout_action`` applies, but a timeout passes a
    prescription only if its highest finding level is at most ``timeout_pass_max_level``
    (default 7: level 8, 禁用 on the county scale, and above are escalated instead, whatever
    the institution's own ``block_at``), and never one whose engine failed under fail mode
    "closed". ``timeout_pass_max_level = 10`` lets a timeout pass any level.
    """

    explain_at: int = 3
    recheck_at: int = 5
    block_at: int = 8
    fail_mode: FailMode = "closed"
    work_start: str = "00:00"
    work_end: str = "24:00"
    work_days: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7)
    timezone: str = "Asia/Shanghai"
    timeout_minutes: int = 15
    timeout_action: TimeoutAction = "pass"
    answer_hours: int = 24
    timeout_pass_max_level: int = 7

    def __post_init__(self) -> None:
        problems = list(self.problems())
        if problems:
            raise InvalidRequestError("Policy", "；".join(problems))

    def problems(self) -> Iterable[str]:
        """Every reason this policy is unusable (empty when it is fine)."""
        if not 0 <= self.explain_at <= self.recheck_at <= self.block_at <= 10:
            yield f"阈值须满足 0 ≤ explain_at ≤ recheck_at ≤ block_at ≤ 10，实际为 {self.explain_at}/{self.recheck_at}/{self.block_at}"
        if self.fail_mode not in ("open", "closed"):
            yield f"fail_mode 须为 open 或 closed，实际为 {self.fail_mode!r}"
        if self.timeout_action not in ("pass", "escalate"):
            yield f"timeout_action 须为 pass 或 escalate，实际为 {self.timeout_action!r}"
        if not 0 <= self.timeout_pass_max_level <= 10:
            yield f"timeout_pass_max_level 须在 0..10 之间，实际为 {self.timeout_pass_max_level}"
        if self.timeout_minutes < 1:
            yield "timeout_minutes 须为正整数"
        if self.answer_hours < 1:
            yield "answer_hours 须为正整数"
        try:
            if _minutes(self.work_end) <= _minutes(self.work_start):
                yield f"work_end 须晚于 work_start，实际为 {self.work_start}–{self.work_end}"
        except ValueError:
            yield f"work_start / work_end 须为 HH:MM，实际为 {self.work_start!r} / {self.work_end!r}"
        if not self.work_days or any(d not in range(1, 8) for d in self.work_days):
            yield f"work_days 须为 1..7 的星期数，实际为 {list(self.work_days)}"
        try:
            ZoneInfo(self.timezone)
        except Exception:
            yield f"未知时区 {self.timezone!r}"

    def snapshot(self) -> dict[str, Any]:
        """JSON-able copy stored on every review it decides."""
        d = asdict(self)
        d["work_days"] = list(self.work_days)
        return d

    @classmethod
    def from_snapshot(cls, data: dict[str, Any]) -> Policy:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if "work_days" in known:
            known["work_days"] = tuple(known["work_days"])
        return cls(**known)

    # --- working-time arithmetic -----------------------------------------------------------
    def deadline(self, start: datetime, minutes: int | None = None) -> datetime:
        """Naive-UTC instant when ``minutes`` (default ``timeout_minutes``) of working time
        have passed since naive-UTC ``start``. Outside working hours the clock waits."""
        tz = ZoneInfo(self.timezone)
        remaining = timedelta(minutes=self.timeout_minutes if minutes is None else minutes)
        local = start.replace(tzinfo=ZoneInfo("UTC")).astimezone(tz).replace(tzinfo=None)
        open_m, close_m = _minutes(self.work_start), _minutes(self.work_end)
        for _ in range(400):  # a year and a bit of days: always enough for a sane policy
            day = local.date()
            if day.isoweekday() in self.work_days and close_m > open_m:
                day_open = datetime.combine(day, time()) + timedelta(minutes=open_m)
                day_close = datetime.combine(day, time()) + timedelta(minutes=close_m)
                begin = max(local, day_open)
                if begin < day_close:
                    if begin + remaining <= day_close:
                        return _to_utc(begin + remaining, tz)
                    remaining -= day_close - begin
            local = datetime.combine(day + timedelta(days=1), time())
        raise InvalidRequestError("Policy", "工作时间配置无法在一年内累计到超时时长")

    def is_working_time(self, at: datetime) -> bool:
        """Whether naive-UTC ``at`` falls inside the pharmacists' working hours."""
        local = at.replace(tzinfo=ZoneInfo("UTC")).astimezone(ZoneInfo(self.timezone))
        m = local.hour * 60 + local.minute
        return local.isoweekday() in self.work_days and _minutes(self.work_start) <= m < _minutes(
            self.work_end
        )


def _minutes(hhmm: str) -> int:
    h, _, m = hhmm.partition(":")
    value = int(h) * 60 + int(m)
    if not (0 <= int(m) < 60 and 0 <= value <= 24 * 60):
        raise ValueError(hhmm)
    return value


def _to_utc(local: datetime, tz: ZoneInfo) -> datetime:
    return local.replace(tzinfo=tz).astimezone(ZoneInfo("UTC")).replace(tzinfo=None)


def decide_verdict(findings: Iterable[Finding], *, unchecked: bool, policy: Policy) -> Verdict:
    """The verdict for ``findings`` under ``policy``: pure, and monotone in the highest level.

    A review with facts the system could not establish (``unchecked``) is at least
    ``recheck``: what the system cannot check goes to a pharmacist, never silently through.
    """
    top = max((f.level for f in findings), default=0)
    verdict: Verdict
    if top >= policy.block_at:
        verdict = "block"
    elif top >= policy.recheck_at:
        verdict = "recheck"
    elif top >= policy.explain_at:
        verdict = "explain"
    else:
        verdict = "pass"
    if unchecked and VERDICTS.index(verdict) < VERDICTS.index("recheck"):
        verdict = "recheck"
    return verdict


def timeout_passes(policy: Policy, *, max_level: int, engine_failed: bool = False) -> bool:
    """Whether a task reaching its deadline under ``policy`` is passed (超时通过); False means
    it is escalated. A pass needs ``timeout_action`` "pass", a highest finding level at most
    ``timeout_pass_max_level``, and a review the engine actually checked (under fail mode
    "closed" an engine failure was sent to a pharmacist precisely so that someone looks)."""
    if policy.timeout_action != "pass" or max_level > policy.timeout_pass_max_level:
        return False
    return not (engine_failed and policy.fail_mode == "closed")


def failure_verdict(policy: Policy) -> Verdict:
    """The verdict when the engine itself failed: fail open passes, fail closed goes to a pharmacist."""
    return "pass" if policy.fail_mode == "open" else "recheck"
