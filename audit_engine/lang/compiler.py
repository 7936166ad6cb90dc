"""Checked rulebase -> sharded durable_rules rulesets with routing (pure, deterministic).

What runs where
---------------
* **In the network** (durable_rules): matching every native atom (a fact property against
  a constant, see ``audit_engine.network.alpha``), the and/or/not combination of all atoms
  of a rule, its scope and conditional overrides (institution level / code, prescription
  type, department, dates), and the pair join of ``对每对`` rules.
* **On the host, before asserting** (``audit_engine.network.derive``): *derived fields* —
  atoms the network cannot express: table lookups (``TableData.lookup``), ordered-enum
  comparisons, counts and any/all quantifiers, comparisons of two fields, prefixes and
  substrings. Each becomes a bool property named ``d<rule>_<n>`` (rule = its position in the
  rulebase), specified as data (``DerivedField``) and tested by the network as ``{name: true}``.
  Its ``key`` (``structural_key``) is shared by every field with the same meaning, whatever
  rule it comes from, so the host evaluates a repeated atom once per binding.
* **On the host, after firing**: turning matches into Findings (level by institution,
  message, implicated items), with the reference renderer.

Facts are flat: one per item (type ``it``, with ``idx`` and the context properties the
shard reads copied in as ``patient__age_years`` ...), one per prescription (``rx``) where a
shard has prescription-level rules, and one per ordered pair of items (``pr``: ``ia``, ``ib``
and the pair-derived fields) where a pair rule has an atom reading both items. A pair rule
is ``all: [a: item, b: item (, p: pair with ia == a.idx and ib == b.idx)]``: the core never
binds one fact to two aliases, so a and b are distinct items; only *equality* joins are
used because non-equality joins (``$neq``/``$lt`` against another fact) crash the core
(SIGSEGV, jruizgit/rules #381; reproduced in tests/engine). Disjunctions that span roles
are split into several branches (DNF, at most ``MAX_BRANCHES``; beyond that the whole
condition becomes one pair-derived field). A branch with nothing to test on either item
matches the pair fact alone, and a shard whose pair branches all require some pair-derived
field to be true is only sent the pair facts where one is (``Shard.pair_gate``).

Sharding and routing
--------------------
A rule whose condition requires, as a top-level conjunct, that its (first) item equals or
contains a constant on an identity field (药品编码 / 名称 / ATC / 成分 / 类别) gets routing
keys like ``ingredients:阿莫西林``. Keyed rules are packed into shards grouped by key; the
rest go to general shards. A prescription visits the shards of its items' keys plus the
general ones, so rules that cannot match cost nothing; a keyed shard of item rules is sent
only the items that hold one of its keys. Keyed shards hold at most ``MAX_KEYED_BRANCHES``
branches (a session's cost grows with its ruleset's size), general ones at most
``MAX_SHARD_BRANCHES`` (so no node has 512+ children and no fact matches 64+ branches),
and every fact at most ``MAX_PROPS`` properties (the core's limit is 253).

Sessions (``audit_engine.network.host``): one per shard visited per evaluation, opened by
a sentinel fact that the no-op rule ``__open`` matches (deleting a session whose facts
matched nothing kills the process — the catch-alls below do not prevent that, the sentinel
does), with one catch-all per fact type that never fires but keeps ``assert_facts`` from
stopping at an unmatched fact, and deleted afterwards.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from audit_engine.lang import nodes as n
from audit_engine.network import alpha, host
from audit_engine.network.alpha import All, Any_, Formula, Leaf, Lowering
from audit_engine.network.ir import (
    ITEM_TYPE,
    PAIR_TYPE,
    ROUTE_FIELDS,
    RX_TYPE,
    Branch,
    CompiledRulebase,
    DerivedField,
    Shard,
    SourceKey,
)

COMPILER_VERSION = "1"
MAX_SHARD_BRANCHES = 56  # + sentinel + 3 catch-alls = 60 rules per ruleset (core limit: 64 per fact)
# A session's cost grows with the size of its ruleset (measured: ~7 us at 10 rules, ~110 us
# at 400, one fact), so keyed shards stay small: a prescription pays for the rules its
# drugs name, not for whatever else shares their shard.
MAX_KEYED_BRANCHES = 16
MAX_PROPS = 240  # core limit 253 properties per fact, with t / sid / idx
MAX_BRANCHES = 16  # DNF disjuncts of one pair rule before it falls back to one derived field
# The core caps the expressions of one node (error 113, ERR_EXPRESSION_LIMIT_EXCEEDED). In
# ``_size`` units (an atom 1, each $and/$or 2 more) the smallest refused test measured here was
# 49 (thousands of random and/or trees; none of 44 or less was refused): a larger test falls
# back to one derived field, like a pair rule with too many branches.
MAX_TEST_SIZE = 40
_ROLE_FACT = {"a": "item", "b": "item", "p": "pair", "rx": "rx"}


@dataclass(slots=True)
class _RuleOut:
    index: int
    rule: n.Rule
    kind: str
    branches: list[dict[str, list[dict[str, Any]]]]
    derived: list[DerivedField]
    props: list[alpha.Prop]
    keys: tuple[str, ...]


@dataclass(slots=True)
class _ShardBuild:
    keys: set[str] = field(default_factory=set)
    rules: list[_RuleOut] = field(default_factory=list)
    branch_count: int = 0
    item_props: set[str] = field(default_factory=set)
    rx_props: set[str] = field(default_factory=set)
    pair_props: int = 0
    by_key: bool = False


def compile_rulebase(rulebase: n.Rulebase) -> CompiledRulebase:
    """Compile a checked rulebase. Pure: the same rulebase always gives the same output."""
    version = hashlib.sha256(f"compiler {COMPILER_VERSION}\n{rulebase.source_hash}".encode()).hexdigest()
    outs = [_lower_rule(i, r) for i, r in enumerate(rulebase.rules) if r.trigger is not None]
    keyed = sorted((o for o in outs if o.keys), key=lambda o: (o.keys[0], o.index))
    general = [o for o in outs if not o.keys]
    builds = (_pack([o for o in keyed if o.kind == "item"], MAX_KEYED_BRANCHES, by_key=True)
              + _pack([o for o in keyed if o.kind != "item"], MAX_KEYED_BRANCHES, by_key=False)
              + _pack(general, MAX_SHARD_BRANCHES, by_key=False))
    prefix = f"rb{version[:12]}"
    shards: list[Shard] = []
    routes: dict[str, list[int]] = defaultdict(list)
    general_idx: list[int] = []
    for si, b in enumerate(builds):
        shards.append(_emit(f"{prefix}_{si:04d}", b))
        if b.keys:
            for k in sorted(b.keys):
                routes[k].append(si)
        else:
            general_idx.append(si)
    return CompiledRulebase(
        version=version,
        rulebase=rulebase,
        rules=rulebase.rules,
        shards=tuple(shards),
        routes=MappingProxyType({k: tuple(v) for k, v in sorted(routes.items())}),
        general=tuple(general_idx),
    )


# ---------------------------------------------------------------------------- one rule


def _lower_rule(index: int, rule: n.Rule) -> _RuleOut:
    trig = rule.trigger
    derived: list[DerivedField] = []
    binds: dict[str, tuple[str, ...]]
    if isinstance(trig, n.ForEach):
        kind, roles, ctx, binds = "item", {trig.var: "a"}, "a", {"a": (trig.var,)}
    elif isinstance(trig, n.ForEachPair):
        kind, roles, ctx = "pair", {trig.first: "a", trig.second: "b"}, "a"
        binds = {"a": (trig.first,), "b": (trig.second,), "p": (trig.first, trig.second)}
    else:
        assert isinstance(trig, n.When)
        kind, roles, ctx, binds = "rx", {}, "rx", {"rx": ()}

    def derive(cond: n.Cond, role: str) -> str:
        name = f"d{index}_{len(derived)}"
        key = structural_key(cond, binds[role])
        derived.append(DerivedField(name, _ROLE_FACT[role], cond, binds[role], rule.id, key))  # type: ignore[arg-type]
        return name

    low = Lowering(roles, ctx, derive)
    assert trig is not None
    scope = _scope_formula(rule, ctx, low)
    formula: Formula = All((scope, low.lower(trig.cond)))
    if kind == "pair":
        branches = _dnf(formula)
        if branches is None or len(branches) > MAX_BRANCHES or any(
                _size(t) > MAX_TEST_SIZE for br in branches for tests in br.values() for t in tests):
            # Too many role-crossing disjunctions, or a test too large for the core: the host
            # decides the whole condition per ordered pair; the network still tests the scope
            # and joins the pair.
            derived.clear()
            scope_test = _test(scope)
            branches = [{"a": [] if scope_test is None else [scope_test], "p": [{derive(trig.cond, "p"): True}]}]
    else:
        whole = _test(formula)
        if whole is not None and _size(whole) > MAX_TEST_SIZE:
            # Too large for the core: the host decides the condition, the network the scope.
            derived.clear()
            scope_test = _test(scope)
            decided = {derive(trig.cond, ctx): True}
            whole = decided if scope_test is None else {"$and": [scope_test, decided]}
        branches = [{ctx: [] if whole is None else [whole]}]
    return _RuleOut(index, rule, kind, branches, derived, low.props, _route_keys(trig, roles))


def structural_key(cond: n.Cond, binds: tuple[str, ...]) -> str:
    """What a derived field means, as a string that is equal for two fields only when they
    hold the same value for the same bound items: the runtime evaluates each key once per
    item / ordered pair / prescription (``runtime.Network._match``).

    ``Evaluator.cond`` reads the condition, the rulebase's tables, the facts and the bindings,
    nothing else: not the rule (its scope and institution overrides are tested by the network,
    never inside a derived field), so the rule is not part of the key, and tables and facts are
    the same for every field of one evaluation. Left out of the condition, since they do not
    change its meaning: spans, and a field's spelling as written (``FieldRef.field``; the
    evaluator reads ``entity`` and ``name``). Variables are renamed: the ones bound to the
    fact's items to their position in ``binds``, quantifier variables to their nesting depth
    (``X.成分`` in one rule and ``Y.成分`` in another give the same key); any other variable
    (an entity) stays as written. Everything else — node types, operators, literals and
    units, tables, columns, entity and field names, collections — is kept. The key is the
    repr of that nested tuple (a str caches its hash; interned, equal keys are one object).
    """
    bound: dict[str, Any] = {v: ("bound", i) for i, v in enumerate(binds)}
    return sys.intern(repr((len(binds), _canon(cond, bound, 0))))


def _canon(x: Any, names: dict[str, Any], depth: int) -> Any:
    if isinstance(x, tuple):
        return tuple(_canon(y, names, depth) for y in x)
    if not dataclasses.is_dataclass(x):
        return x  # str, number, bool or None
    if isinstance(x, n.Quantified | n.Count):
        names = {**names, x.var: ("quantified", depth)}
        depth += 1
    out: list[Any] = [type(x).__name__]
    for f in dataclasses.fields(x):
        if f.name == "span" or (f.name == "field" and isinstance(x, n.FieldRef)):
            continue
        v = getattr(x, f.name)
        out.append(names.get(v, v) if f.name == "var" else _canon(v, names, depth))
    return tuple(out)


def _scope_formula(rule: n.Rule, role: str, low: Lowering) -> Formula:
    """The rule's scope and its conditional overrides, as native context tests."""

    def prop(entity: str, key: str) -> str:
        return low._prop(role, entity, key)

    def member(entity: str, key: str, values: frozenset[str] | tuple[str, ...]) -> dict[str, Any]:
        p = prop(entity, key)
        tests = [{p: v} for v in sorted(values)]
        return alpha._any(tests) if tests else alpha.NEVER

    def admits(scope: n.Scope) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for entity, key, values in (
            ("institution", "level", scope.institution_levels),
            ("prescription", "type", scope.prescription_types),
            ("prescription", "department", scope.departments),
            ("institution", "code", scope.institution_codes),
        ):
            if values is not None:
                out.append(member(entity, key, values))
        if scope.effective is not None:
            out.append({"$gte": {prop("prescription", "date"): scope.effective}})
        if scope.expires is not None:
            out.append({"$lt": {prop("prescription", "date"): scope.expires}})
        return out

    parts: list[Formula] = [Leaf(role, t) for t in admits(rule.effective_scope)]
    for v in rule.variants:
        if v.target is None:
            continue
        key = "level" if v.target.key == "institution_level" else "code"
        p = prop("institution", key)
        not_target = {"$or": [{"$nex": {p: 1}}, alpha._all([{"$neq": {p: x}} for x in sorted(set(v.target.values))])]}
        if v.disable:
            parts.append(Leaf(role, not_target))
        elif v.scope:
            narrowed = admits(n.Scope.of(v.scope))
            if narrowed:
                parts.append(Leaf(role, {"$or": [not_target, alpha._all(narrowed)]}))
    return All(tuple(parts))


def _test(f: Formula) -> dict[str, Any] | None:
    """One role's formula as a core test; None means "always true"."""
    if isinstance(f, Leaf):
        return f.test
    parts = [t for t in (_test(p) for p in f.parts)]
    if isinstance(f, All):
        kept = [t for t in parts if t is not None]
        return None if not kept else kept[0] if len(kept) == 1 else {"$and": kept}
    if any(t is None for t in parts):
        return None
    tests = [t for t in parts if t is not None]
    return alpha.NEVER if not tests else tests[0] if len(tests) == 1 else {"$or": tests}


def _size(test: dict[str, Any]) -> int:
    """How much of the core's per-node expression budget a test uses (see MAX_TEST_SIZE)."""
    if len(test) == 1:
        op, parts = next(iter(test.items()))
        if op in ("$and", "$or") and isinstance(parts, list):
            return 2 + sum(_size(p) for p in parts)
    return 1


def _roles(f: Formula) -> set[str]:
    if isinstance(f, Leaf):
        return {f.role}
    out: set[str] = set()
    for p in f.parts:
        out |= _roles(p)
    return out


def _dnf(f: Formula) -> list[dict[str, list[dict[str, Any]]]] | None:
    """Disjuncts, each a role -> conjunction of tests; None when it grows past MAX_BRANCHES."""
    roles = _roles(f)
    if len(roles) <= 1:
        t = _test(f)
        role = next(iter(roles), "a")
        return [{role: [] if t is None else [t]}]
    if isinstance(f, Any_):
        out: list[dict[str, list[dict[str, Any]]]] = []
        for p in f.parts:
            sub = _dnf(p)
            if sub is None:
                return None
            out.extend(sub)
            if len(out) > MAX_BRANCHES:
                return None
        return out
    assert isinstance(f, All)
    acc: list[dict[str, list[dict[str, Any]]]] = [{}]
    for p in f.parts:
        sub = _dnf(p)
        if sub is None:
            return None
        acc = [{r: a.get(r, []) + s.get(r, []) for r in set(a) | set(s)} for a in acc for s in sub]
        if len(acc) > MAX_BRANCHES:
            return None
    return acc


def _route_keys(trig: n.Trigger, roles: dict[str, str]) -> tuple[str, ...]:
    """Routing keys from the first top-level conjunct that pins an item identity field."""
    if isinstance(trig, n.When):
        return ()
    conjuncts = list(_conjuncts(trig.cond))
    order = [trig.var] if isinstance(trig, n.ForEach) else [trig.first, trig.second]
    for var in order:
        for c in conjuncts:
            keys = _keys_of(c, var)
            if keys:
                return keys
    return ()


def _conjuncts(c: n.Cond) -> list[n.Cond]:
    if isinstance(c, n.And):
        return [x for op in c.operands for x in _conjuncts(op)]
    return [c]


def _keys_of(c: n.Cond, var: str) -> tuple[str, ...]:
    def ref_ok(e: n.Expr) -> n.FieldRef | None:
        if isinstance(e, n.FieldRef) and e.entity == "item" and e.var == var and e.name in ROUTE_FIELDS:
            return e
        return None

    lit = (n.Text, n.Symbol)
    if isinstance(c, n.Compare) and c.op == "=":
        for a, b in ((c.left, c.right), (c.right, c.left)):
            r = ref_ok(a)
            if r is not None and isinstance(b, lit):
                return (f"{r.name}:{b.value}",)
    if isinstance(c, n.Contains):
        r = ref_ok(c.container)
        if r is not None and isinstance(c.item, lit) and r.name in ("ingredients", "classes"):
            return (f"{r.name}:{c.item.value}",)
    if isinstance(c, n.In):
        r = ref_ok(c.value)
        if r is not None and c.options and all(isinstance(o, lit) for o in c.options):
            return tuple(sorted({f"{r.name}:{o.value}" for o in c.options}))  # type: ignore[union-attr]
    return ()


# ---------------------------------------------------------------------------- shards


def _pair_props(o: _RuleOut) -> int:
    return sum(1 for d in o.derived if d.on == "pair")


def _fact_props(o: _RuleOut) -> tuple[set[str], set[str]]:
    item = {p.prop for p in o.props if p.role != "rx"} | {d.name for d in o.derived if d.on == "item"}
    item |= {alpha.empty_flag(p.prop) for p in o.props if p.textset and p.role != "rx"}
    rx = {p.prop for p in o.props if p.role == "rx"} | {d.name for d in o.derived if d.on == "rx"}
    rx |= {alpha.empty_flag(p.prop) for p in o.props if p.textset and p.role == "rx"}
    return item, rx


def _pack(outs: list[_RuleOut], capacity: int, *, by_key: bool) -> list[_ShardBuild]:
    """Fill shards in order (keyed rules arrive sorted by key, so a key's rules sit together)."""
    builds: list[_ShardBuild] = []
    cur = _ShardBuild(by_key=by_key)
    for o in outs:
        item, rx = _fact_props(o)
        nb = len(o.branches)
        fits = (cur.branch_count + nb <= capacity
                and len(cur.item_props | item) <= MAX_PROPS and len(cur.rx_props | rx) <= MAX_PROPS
                and cur.pair_props + _pair_props(o) <= MAX_PROPS)
        if cur.rules and not fits:
            builds.append(cur)
            cur = _ShardBuild(by_key=by_key)
        cur.rules.append(o)
        cur.branch_count += nb
        cur.item_props |= item
        cur.rx_props |= rx
        cur.pair_props += _pair_props(o)
        cur.keys.update(o.keys)
    if cur.rules:
        builds.append(cur)
    return builds


def _emit(name: str, b: _ShardBuild) -> Shard:
    definition: dict[str, Any] = {
        host.SENTINEL_RULE: {"all": [{"m": {"t": host.SENTINEL_TYPE}}]},
    }
    # Catch-alls: every fact type matches an alpha node (so assert_facts never stops early)
    # yet never fires (it waits for a fact type nobody asserts), costing no action.
    for t in (ITEM_TYPE, RX_TYPE, PAIR_TYPE):
        definition[f"__all_{t}"] = {"all": [{"m": {"t": t}}, {"n": alpha.NEVER}]}
    branches: list[Branch] = []
    derived: list[DerivedField] = []
    props: dict[str, SourceKey] = {}
    needs_rx = needs_pairs = False
    # Pair facts are asserted only when one of these pair-derived fields is true, if every
    # branch that reads a pair fact requires one of them (else None: always asserted).
    pair_gate: set[str] | None = set()
    for o in b.rules:
        derived.extend(o.derived)
        for p in o.props:
            src = SourceKey(p.prop, p.entity, p.key, p.textset)
            prev = props.get(f"{'rx' if p.role == 'rx' else 'it'}:{p.prop}")
            if prev is None or (src.empty_flag and not prev.empty_flag):
                props[f"{'rx' if p.role == 'rx' else 'it'}:{p.prop}"] = src
        for bi, br in enumerate(o.branches):
            bname = f"r{o.index}_{bi}"
            if "p" in br and pair_gate is not None:
                pair_names = {d.name for d in o.derived if d.on == "pair"}
                required = _required_fields({"$and": br["p"]}, pair_names)
                pair_gate = pair_gate | required if required else None
            branches.append(Branch(bname, o.index, o.kind))  # type: ignore[arg-type]
            if o.kind == "rx":
                needs_rx = True
                definition[bname] = {"all": [{"m": _typed(RX_TYPE, br.get("rx", []))}]}
            elif o.kind == "item":
                definition[bname] = {"all": [{"m": _typed(ITEM_TYPE, br.get("a", []))}]}
            elif "p" in br and not br.get("a") and not br.get("b"):
                # Nothing to test on either item: the pair fact alone (one per ordered pair
                # of distinct items) is the match; joining it back to two items costs only.
                needs_pairs = True
                definition[bname] = {"all": [{"p": _typed(PAIR_TYPE, br["p"])}]}
            else:
                facts: list[dict[str, Any]] = [{"a": _typed(ITEM_TYPE, br.get("a", []))},
                                               {"b": _typed(ITEM_TYPE, br.get("b", []))}]
                if "p" in br:
                    needs_pairs = True
                    join = [{"ia": {"a": "idx"}}, {"ib": {"b": "idx"}}, *br["p"]]
                    facts.append({"p": _typed(PAIR_TYPE, join)})
                definition[bname] = {"all": facts}
    item_props = tuple(v for k, v in sorted(props.items()) if k.startswith("it:"))
    rx_props = tuple(v for k, v in sorted(props.items()) if k.startswith("rx:"))
    return Shard(
        name=name,
        keys=tuple(sorted(b.keys)),
        definition=json.dumps(definition, ensure_ascii=False, sort_keys=True),
        branches=tuple(branches),
        item_props=item_props,
        rx_props=rx_props,
        derived=tuple(derived),
        needs_rx=needs_rx,
        needs_pairs=needs_pairs,
        items_by_key=b.by_key,
        pair_gate=tuple(sorted(pair_gate)) if pair_gate else (),
    )


def _required_fields(test: dict[str, Any], names: set[str]) -> set[str] | None:
    """Fields among ``names`` of which at least one is true whenever ``test`` holds (the
    first such set found in a conjunction, the union over a disjunction), or None."""
    if len(test) != 1:
        return None
    (key, value), = test.items()
    if key in names and value is True:
        return {key}
    if key == "$and" and isinstance(value, list):
        for t in value:
            found = _required_fields(t, names) if isinstance(t, dict) else None
            if found:
                return found
        return None
    if key == "$or" and isinstance(value, list) and value:
        union: set[str] = set()
        for t in value:
            found = _required_fields(t, names) if isinstance(t, dict) else None
            if not found:
                return None
            union |= found
        return union
    return None


def _typed(fact_type: str, tests: list[dict[str, Any]]) -> dict[str, Any]:
    return {"$and": [{"t": fact_type}, *tests]} if tests else {"t": fact_type}
