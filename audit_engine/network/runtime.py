"""One registered version of a compiled rulebase: facts in, matches out, findings built.

A ``Network`` registers every shard of a ``CompiledRulebase`` in the C core, and evaluates
a prescription by (1) routing it to the shards its items' keys name plus the general
ones, (2) building each shard's flat facts (only the properties that shard reads, plus its
derived fields, by closures compiled once per network: ``derive.predicates``), (3) running one fresh session per shard (sentinel first, batch assert,
collect actions, delete the session), and (4) turning the matches into Findings with the
reference semantics (``audit_engine.network.derive``).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from audit_engine.errors import BudgetExceededError
from audit_engine.findings import Finding
from audit_engine.network import closures, derive, host
from audit_engine.network.alpha import CONTEXT_ENTITIES, empty_flag
from audit_engine.network.ir import ITEM_TYPE, PAIR_TYPE, ROUTE_FIELDS, RX_TYPE, CompiledRulebase, Shard
from audit_engine.schema import PrescriptionFacts


def item_route_keys(item: dict[str, Any]) -> set[str]:
    """The routing keys an item offers (compare ``compiler._route_keys``)."""
    keys: set[str] = set()
    for f in ROUTE_FIELDS:
        v = item.get(f)
        if isinstance(v, str):
            keys.add(f"{f}:{v}")
        elif isinstance(v, list | tuple):
            keys.update(f"{f}:{x}" for x in v if isinstance(x, str))
    return keys


# A derived field as the runtime evaluates it: (fact property, DerivedField.key, the
# variables its closure binds, the closure) - see ``derive.predicates``.
_Derived = tuple[str, str, tuple[str, ...], closures.Pred]


class _ShardRuntime:
    """A registered shard and its precomputed fact layout."""

    def __init__(self, shard: Shard, index: int,
                 preds: dict[str, tuple[tuple[str, ...], closures.Pred]],
                 screens: dict[str, tuple[int, closures.Screen]]) -> None:
        self.shard = shard
        self.index = index
        self.handle = host.register(shard.name, shard.definition)
        self.item_src = tuple((k.prop, k.entity, k.key, empty_flag(k.prop) if k.empty_flag else None)
                              for k in shard.item_props)
        self.rx_src = tuple((k.prop, k.entity, k.key, empty_flag(k.prop) if k.empty_flag else None)
                            for k in shard.rx_props)
        self.item_derived = _derived(shard, "item", preds)
        self.rx_derived = _derived(shard, "rx", preds)
        self.pair_derived = _derived(shard, "pair", preds)
        # The gate fields are evaluated first: a pair with all of them false is skipped
        # before the shard's other pair fields cost anything.
        gate = set(shard.pair_gate)
        self.pair_gated = tuple(d for d in self.pair_derived if d[0] in gate)
        self.pair_rest = tuple(d for d in self.pair_derived if d[0] not in gate)
        self.gate_screens = tuple(screens.get(d[1]) for d in self.pair_gated)
        self.branches = {b.name: b for b in shard.branches}


def _derived(shard: Shard, on: str, preds: dict[str, tuple[tuple[str, ...], closures.Pred]]
             ) -> tuple[_Derived, ...]:
    return tuple((d.name, d.key, *preds[d.key]) for d in shard.derived if d.on == on)


def _fill(fact: dict[str, Any], src: tuple[tuple[str, str, str, str | None], ...],
          item: dict[str, Any] | None, ctx: dict[str, dict[str, Any]]) -> None:
    for prop, entity, key, flag in src:
        source = item if entity == "item" else ctx[entity]
        v = source.get(key) if source is not None else None
        if v is None:
            continue
        fact[prop] = v
        if flag is not None and not v and isinstance(v, list | tuple):
            fact[flag] = True


class Network:
    """A compiled rulebase registered in the core; counts evaluations in flight so that a
    retired version is freed only when the last one finishes."""

    def __init__(self, compiled: CompiledRulebase) -> None:
        self.compiled = compiled
        self.version = compiled.version
        self._shards: list[_ShardRuntime] = []
        preds = derive.predicates(compiled)
        screens = derive.screens(compiled)
        try:
            for i, s in enumerate(compiled.shards):
                self._shards.append(_ShardRuntime(s, i, preds, screens))
        except BaseException:
            for r in self._shards:
                host.unregister(r.handle)
            raise
        self._lock = threading.Lock()
        self._inflight = 0
        self._retired = False
        # At most 1,024 live sessions per ruleset: bound concurrent evaluations well below.
        self._slots = threading.BoundedSemaphore(512)
        self._maker = derive.FindingMaker(compiled)

    # ------------------------------------------------------------------ lifecycle
    def acquire(self) -> bool:
        with self._lock:
            if self._retired:
                return False
            self._inflight += 1
            return True

    def release(self) -> None:
        with self._lock:
            self._inflight -= 1
            free = self._retired and self._inflight == 0
        if free:
            self._free()

    def retire(self) -> None:
        with self._lock:
            self._retired = True
            free = self._inflight == 0
        if free:
            self._free()

    def _free(self) -> None:
        for r in self._shards:
            host.unregister(r.handle)

    # ------------------------------------------------------------------ evaluation
    def shards_for(self, facts: PrescriptionFacts) -> list[_ShardRuntime]:
        return [self._shards[i] for i in sorted(self._route(facts)[0])]

    def _route(self, facts: PrescriptionFacts) -> tuple[set[int], list[set[int]]]:
        """(shards to visit, per item the shards its own keys route to)."""
        routes = self.compiled.routes
        chosen = set(self.compiled.general)
        per_item: list[set[int]] = []
        for item in facts.items:
            mine: set[int] = set()
            for k in item_route_keys(item):
                mine.update(routes.get(k, ()))
            per_item.append(mine)
            chosen |= mine
        return chosen, per_item

    def evaluate(self, facts: PrescriptionFacts, *, deadline: float | None = None) -> list[Finding]:
        """The findings for ``facts``; past ``deadline`` (``time.monotonic()``, checked before
        each session and each row of pairs) it raises BudgetExceededError."""
        ev = derive.evaluator(self.compiled, facts)
        with self._slots:
            matches = self._match(facts, ev, deadline=deadline)
        return self._maker.findings(ev, matches)

    def _match(self, facts: PrescriptionFacts, ev: Any = None, *, deadline: float | None = None) -> derive.Matches:
        ctx = {e: getattr(facts, e) for e in CONTEXT_ENTITIES}
        items = facts.items
        if ev is None:
            ev = derive.evaluator(self.compiled, facts)
        m = derive.Matches()
        chosen, per_item = self._route(facts)
        # Derived values of this evaluation by (DerivedField.key, bound item positions): the
        # same atom (one table lookup on the same item, say) recurs in many rules and shards
        # and is evaluated once.
        memo: dict[tuple[str, tuple[int, ...]], bool] = {}
        # Items of equal content (copies of one order) get one class: a derived field reads
        # the bound items' content, never their position, so it is evaluated once per class
        # (pair of classes) and n copies cost what one does.
        cls = content_classes(items)
        started = time.monotonic()
        for si in sorted(chosen):
            _check(deadline, started)
            sr = self._shards[si]
            sid = host.new_sid()
            batch: list[dict[str, Any]] = [{"sid": sid, "t": host.SENTINEL_TYPE}]
            by_key = sr.shard.items_by_key
            for idx, item in enumerate(items):
                if by_key and si not in per_item[idx]:
                    continue  # every rule here needs a key this item does not have
                f: dict[str, Any] = {"sid": sid, "t": ITEM_TYPE, "idx": idx}
                _fill(f, sr.item_src, item, ctx)
                at: tuple[int, ...] = (cls[idx],)
                for name, key, binds, pred in sr.item_derived:
                    v = memo.get((key, at))
                    if v is None:
                        v = memo[key, at] = bool(pred(ev, {binds[0]: item}))
                    f[name] = v
                batch.append(f)
            if sr.shard.needs_rx:
                f = {"sid": sid, "t": RX_TYPE}
                _fill(f, sr.rx_src, None, ctx)
                for name, key, _, pred in sr.rx_derived:
                    v = memo.get((key, ()))
                    if v is None:
                        v = memo[key, ()] = bool(pred(ev, {}))
                    f[name] = v
                batch.append(f)
            if sr.shard.needs_pairs:
                batch.extend(self._pair_facts(sr, sid, items, cls, ev, memo, deadline, started))
            for action in host.run_session(sr.handle, sid, batch):
                for name, binding in action.items():
                    br = sr.branches.get(name)
                    if br is None:
                        continue  # the sentinel
                    if br.kind == "item":
                        m.items.add((br.rule, binding["m"]["idx"]))
                    elif br.kind == "pair":
                        if "p" in binding and "a" not in binding:
                            m.pairs.add((br.rule, binding["p"]["ia"], binding["p"]["ib"]))
                        else:
                            m.pairs.add((br.rule, binding["a"]["idx"], binding["b"]["idx"]))
                    else:
                        m.rx.add(br.rule)
        return m

    @staticmethod
    def _pair_facts(sr: _ShardRuntime, sid: str, items: list[dict[str, Any]], cls: list[int], ev: Any,
                    memo: dict[tuple[str, tuple[int, ...]], bool], deadline: float | None = None,
                    started: float = 0.0) -> list[dict[str, Any]]:
        """The shard's pair facts: one per ordered pair of distinct items, or, when the shard
        has a gate (``Shard.pair_gate``), only those with a gate field true.

        Gate fields are evaluated first, and a gate field with a screen
        (``derive.screens``) is false without evaluation on every pair whose item fails the
        screen: with n orders the screens cost n tests a field, and only the pairs that
        pass them cost a lookup."""
        out: list[dict[str, Any]] = []
        if not sr.shard.pair_gate:
            for i, a in enumerate(items):
                _check(deadline, started)
                for j, b in enumerate(items):
                    if i != j:
                        out.append(_pair_fact(sr.pair_derived, sid, i, j, a, b, (cls[i], cls[j]), ev, memo, {}))
            return out
        # Per gate field: (role screened, per class: passes) or None (no screen).
        first = {c: items[k] for k, c in reversed(list(enumerate(cls)))}
        passes: list[tuple[int, list[bool]] | None] = []
        for scr in sr.gate_screens:
            if scr is None:
                passes.append(None)
            else:
                role, screen = scr
                passes.append((role, [bool(screen(ev, first[c])) for c in range(len(first))]))
        gated = tuple(zip(sr.pair_gated, passes, strict=True))
        for i, a in enumerate(items):
            _check(deadline, started)
            for j, b in enumerate(items):
                if i == j:
                    continue
                at = (cls[i], cls[j])
                gate: dict[str, Any] = {}
                open_ = False
                for (name, key, binds, pred), ok in gated:
                    if ok is not None and not ok[1][at[ok[0]]]:
                        gate[name] = False
                        continue
                    v = memo.get((key, at))
                    if v is None:
                        v = memo[key, at] = bool(pred(ev, {binds[0]: a, binds[1]: b}))
                    gate[name] = v
                    open_ = open_ or v
                if open_:  # else no branch can match this pair
                    out.append(_pair_fact(sr.pair_rest, sid, i, j, a, b, at, ev, memo, gate))
        return out


def _pair_fact(derived: tuple[_Derived, ...], sid: str, i: int, j: int, a: dict[str, Any], b: dict[str, Any],
               at: tuple[int, int], ev: Any, memo: dict[tuple[str, tuple[int, ...]], bool],
               known: dict[str, Any]) -> dict[str, Any]:
    f: dict[str, Any] = {"sid": sid, "t": PAIR_TYPE, "ia": i, "ib": j, **known}
    for name, key, binds, pred in derived:
        v = memo.get((key, at))
        if v is None:
            v = memo[key, at] = bool(pred(ev, {binds[0]: a, binds[1]: b}))
        f[name] = v
    return f


def _check(deadline: float | None, started: float) -> None:
    if deadline is not None:
        now = time.monotonic()
        if now > deadline:
            raise BudgetExceededError("engine", (deadline - started) * 1000, (now - started) * 1000)


def content_classes(items: list[dict[str, Any]]) -> list[int]:
    """Per item, a class number equal for items whose facts are equal apart from the order's
    id and reference (copies of one order)."""
    seen: dict[tuple[Any, ...], int] = {}
    out: list[int] = []
    for item in items:
        key = tuple(sorted((k, _frozen(v)) for k, v in item.items() if k not in _IDENTITY_KEYS))
        out.append(seen.setdefault(key, len(seen)))
    return out


# What tells two orders apart without being a fact any rule reads (``schema.FIELDS`` has
# neither): a derived field never sees them.
_IDENTITY_KEYS = frozenset({"id", "reference"})


def _frozen(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((str(k), _frozen(v)) for k, v in value.items()))
    return value
