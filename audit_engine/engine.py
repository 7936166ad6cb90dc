"""The rules engine: a compiled rulebase running in durable_rules, swappable at run time.

``Engine(compiled).evaluate(facts)`` returns the same findings as the reference interpreter
(``audit_engine.lang.interpreter.evaluate``), sorted. It is safe to call from many threads:
each evaluation uses its own sessions (one per shard visited), and sessions are always
deleted afterwards so memory stays flat. ``swap(new)`` replaces the rulebase atomically:
evaluations that already started finish on the old version, whose rulesets are freed when
the last of them returns. How the rulebase becomes rulesets is in
``audit_engine.lang.compiler``; the session mechanics are in ``audit_engine.network``.
"""

from __future__ import annotations

import threading
from pathlib import Path

from audit_engine.findings import Finding
from audit_engine.lang.compiler import compile_rulebase
from audit_engine.network.host import NetworkError
from audit_engine.network.ir import CompiledRulebase
from audit_engine.network.runtime import Network
from audit_engine.schema import PrescriptionFacts

__all__ = ["CompiledRulebase", "Engine", "compile_rulebase"]


class Engine:
    """Evaluates prescriptions against the current compiled rulebase."""

    def __init__(self, compiled: CompiledRulebase) -> None:
        self._swap_lock = threading.Lock()
        self._network = Network(compiled)

    @classmethod
    def from_path(cls, path: str | Path) -> Engine:
        """Load, check and compile the rulebase at ``path`` (raises errors.RulebaseError)."""
        return cls(load_compiled(path))

    @property
    def version(self) -> str:
        """The content hash of the compiled rulebase evaluations start on now."""
        return self._network.version

    @property
    def compiled(self) -> CompiledRulebase:
        return self._network.compiled

    def evaluate(self, facts: PrescriptionFacts) -> list[Finding]:
        """Every finding of the current rulebase for ``facts``, sorted like the interpreter's."""
        return self.evaluate_versioned(facts)[1]

    def evaluate_versioned(self, facts: PrescriptionFacts, *, deadline: float | None = None
                           ) -> tuple[str, list[Finding]]:
        """(version evaluated with, findings): the version is exact even during a swap.
        Past ``deadline`` (``time.monotonic()``) it raises errors.BudgetExceededError."""
        while True:
            net = self._network
            if net.acquire():
                break
            if net is self._network:
                raise NetworkError("the engine is closed")
            # ``net`` was retired between the read and acquire: the new one is in place.
        try:
            return net.version, net.evaluate(facts, deadline=deadline)
        finally:
            net.release()

    def swap(self, compiled: CompiledRulebase) -> str:
        """Make ``compiled`` current; returns the previous version. The new rulesets are
        registered before anything changes, so a failure leaves the old version running."""
        new = Network(compiled)
        with self._swap_lock:
            old, self._network = self._network, new
        old.retire()
        return old.version

    def swap_path(self, path: str | Path) -> str:
        """Load, check, compile and swap in the rulebase at ``path``. A rulebase that fails
        to load or check raises errors.RulebaseError and the current one stays."""
        return self.swap(load_compiled(path))

    def close(self) -> None:
        """Free the rulesets (evaluations in flight finish first)."""
        self._network.retire()


def load_compiled(path: str | Path) -> CompiledRulebase:
    """``load_rulebase`` (parse, check, tables) then ``compile_rulebase``."""
    from audit_engine.lang.loader import load_rulebase

    return compile_rulebase(load_rulebase(path))
