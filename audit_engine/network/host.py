"""Our own durable_rules host: rulesets, sessions and the firing loop, over the C core.

We drive ``durable_rules_engine`` (the C core of durable-rules 2.0.28) directly instead of
``durable.engine.Host`` because the Python host

* starts daemon timer threads that call ``start_action`` on every registered ruleset every
  0.2 s — they could take a pending action of an in-flight review on another thread;
* runs every action through closures, promises and a JSON round trip of the session state,
  which is most of the cost of a small review;
* keeps one name -> ruleset directory (a name registers once per process), which gets in
  the way of two versions living side by side during a swap.

What the core needs, measured on 2.0.28 (see ARCHITECTURE.md and tests/engine/):

* ``assert_facts`` returns ``(code, state_handle)``: code 0 = handled, 1 = some fact matched
  no rule (MessageNotHandled), 2 = already asserted (MessageObserved). Both are normal.
* The actions a batch made pending are taken with ``start_action_for_state`` and then
  ``complete_and_start_action`` until it returns nothing; each is ``{rule: {alias: fact}}``.
* ``delete_state(sid)`` of a session whose facts all matched nothing branches on
  uninitialised memory in the core (valgrind) and can kill the process (SIGSEGV). Every session is therefore opened by a sentinel fact that a no-op rule always
  matches, in the same batch, before anything else.
* At most 1,024 live sessions per ruleset: the caller bounds concurrency below that.
"""

from __future__ import annotations

import itertools
import json
import threading
from dataclasses import dataclass
from typing import Any

import durable_rules_engine as _core

from audit_engine.errors import AuditEngineError

SENTINEL_TYPE = "open"
SENTINEL_RULE = "__open"
_SENTINEL_ACTION = '{"' + SENTINEL_RULE + '"'

_sids = itertools.count(1)
_sid_lock = threading.Lock()


class NetworkError(AuditEngineError):
    """The durable_rules core refused a ruleset or a fact (its error code is in the message)."""


def new_sid() -> str:
    """A process-unique session id (one per shard per evaluation)."""
    with _sid_lock:
        return str(next(_sids))


@dataclass(slots=True)
class RulesetHandle:
    """One registered ruleset of the C core."""

    name: str
    handle: int
    deleted: bool = False


def register(name: str, definition_json: str) -> RulesetHandle:
    """Create a ruleset in the C core from its JSON definition (never mutated, never shared)."""
    try:
        handle = _core.create_ruleset(name, definition_json)
    except _core.error as exc:
        raise NetworkError(f"durable_rules refused ruleset {name}: {exc}") from exc
    return RulesetHandle(name, handle)


def unregister(ruleset: RulesetHandle) -> None:
    """Free a ruleset once nothing can evaluate on it any more."""
    if not ruleset.deleted:
        ruleset.deleted = True
        _core.delete_ruleset(ruleset.handle)


def run_session(ruleset: RulesetHandle, sid: str, facts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Assert ``facts`` in a fresh session ``sid`` and return every action that fired.

    ``facts`` must start with the sentinel ``{"sid": sid, "t": SENTINEL_TYPE}`` and every
    fact must carry ``sid``; the session is always deleted afterwards, so the ruleset's
    memory stays flat. The caller serialises work per session (one thread owns ``sid``).
    """
    handle = ruleset.handle
    fired: list[dict[str, Any]] = []
    try:
        result = _core.assert_facts(handle, json.dumps(facts, ensure_ascii=False))
    except _core.error as exc:
        # Not knowing whether anything matched, deleting the session could be the SIGSEGV
        # above; one leaked session is the lesser harm (the compiler's caps make this moot).
        raise NetworkError(f"durable_rules refused the facts of {ruleset.name}: {exc}") from exc
    try:
        state = result[1]
        action = _core.start_action_for_state(handle, state)
        if action:
            raw: str | None = action[1]
            while raw:
                if not raw.startswith(_SENTINEL_ACTION):  # the sentinel's firing carries nothing
                    fired.append(json.loads(raw))
                raw = _core.complete_and_start_action(handle, state)
    finally:
        _core.delete_state(handle, sid)
    return fired


def session_exists(ruleset: RulesetHandle, sid: str) -> bool:
    """Whether the core still holds state for ``sid`` (error 309 means it does not)."""
    try:
        _core.get_state(ruleset.handle, sid)
    except _core.error:
        return False
    return True
