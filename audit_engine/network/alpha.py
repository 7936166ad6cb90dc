"""Conditions -> durable_rules tests: which atoms the network tests natively, and how.

A condition is first pushed into negation normal form. Each atom is then either

* **native** — one fact property against a constant: numbers (``$lt``/``$lte``/``$gt``/
  ``$gte``/equality/``$neq``, the literal converted to the property's unit), text and enum
  equality, bool flags, textset membership (``$iany``/``$iall``), presence (``$ex``/``$nex``);
  its negation is spelled out explicitly (``not x < 5`` = ``x`` absent or ``x >= 5``),
  because the core has no ``not`` and an absent property fails every comparison, exactly
  as the two-valued semantics of ``nodes.py`` require; or
* **derived** — anything else (table lookups, ordered enums, counts and quantifiers,
  two fields compared, prefixes, substrings): the host computes it as a bool property
  (``audit_engine.network.derive``) and the network tests ``{name: true}``.

The result is a small formula of ``Leaf(role, json)`` joined by ``And``/``Or``. A role is the
fact a test runs on: "a" (the item, or the first item of a pair; context properties are
copied into every item fact), "b" (the second item of a pair), "p" (the pair fact) or "rx".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from audit_engine import schema, units
from audit_engine.lang import nodes as n

CONTEXT_ENTITIES = ("patient", "prescription", "prescriber", "institution")
NEVER: dict[str, Any] = {"t": "__never"}
_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "=": "=", "!=": "!="}
_NEG = {"<": ">=", "<=": ">", ">": "<=", ">=": "<", "=": "!=", "!=": "="}
_CORE_OP = {"<": "$lt", "<=": "$lte", ">": "$gt", ">=": "$gte", "!=": "$neq"}


@dataclass(frozen=True, slots=True)
class Leaf:
    role: str
    test: dict[str, Any]


@dataclass(frozen=True, slots=True)
class All:
    parts: tuple[Formula, ...]


@dataclass(frozen=True, slots=True)
class Any_:
    parts: tuple[Formula, ...]


Formula = Leaf | All | Any_


@dataclass(frozen=True, slots=True)
class Prop:
    """A fact property a native test reads: its role, name and source."""

    role: str
    prop: str
    entity: str
    key: str
    textset: bool


def context_prop(entity: str, key: str) -> str:
    """The name of a context fact copied into item and rx facts."""
    return f"{entity}__{key}"


def empty_flag(prop: str) -> str:
    return f"{prop}__empty"


class Lowering:
    """Lowers one rule's condition. ``roles`` maps a bound item variable to its role;
    ``context_role`` is where context properties live; ``derive(cond, role)`` registers a
    derived field and returns its property name. ``props`` collects what native tests read.
    """

    def __init__(self, roles: dict[str, str], context_role: str,
                 derive: Callable[[n.Cond, str], str]) -> None:
        self.roles = roles
        self.context_role = context_role
        self.derive = derive
        self.props: list[Prop] = []

    # ------------------------------------------------------------------ NNF
    def lower(self, cond: n.Cond, negated: bool = False) -> Formula:
        if isinstance(cond, n.Not):
            return self.lower(cond.operand, not negated)
        if isinstance(cond, n.And | n.Or):
            parts = tuple(self.lower(c, negated) for c in cond.operands)
            conj = isinstance(cond, n.And) != negated
            return All(parts) if conj else Any_(parts)
        if isinstance(cond, n.In) and self._ref(cond.value) is not None:
            eqs = tuple(n.Compare("=", cond.value, o, cond.span) for o in cond.options)
            return self.lower(n.Or(eqs, cond.span), negated)
        if isinstance(cond, n.Between) and self._ref(cond.value) is not None:
            both = (n.Compare(">=", cond.value, cond.low, cond.span), n.Compare("<=", cond.value, cond.high, cond.span))
            return self.lower(n.And(both, cond.span), negated)
        native = self.native(cond)
        if native is not None:
            role, pos, neg = native
            return Leaf(role, neg if negated else pos)
        role = self.role_of(cond)
        name = self.derive(cond, role)
        return Leaf(role, {name: not negated})

    # ------------------------------------------------------------------ roles
    def role_of(self, cond: n.Cond) -> str:
        """The role a derived atom lives on, from the trigger variables it reads."""
        used = {self.roles[v] for v in free_item_vars(cond) if v in self.roles}
        if len(used) > 1:
            return "p"
        return used.pop() if used else self.context_role

    def _ref(self, expr: n.Expr) -> tuple[str, str, schema.Field] | None:
        """(role, property prefix entity, field) of a FieldRef readable natively, or None."""
        if not isinstance(expr, n.FieldRef):
            return None
        fld = schema.field_of(expr.entity, expr.name)
        if fld is None:
            return None
        if expr.entity in CONTEXT_ENTITIES:
            return self.context_role, expr.entity, fld
        if expr.entity == "item" and expr.var in self.roles:
            return self.roles[expr.var], "item", fld
        return None

    def _prop(self, role: str, entity: str, key: str, textset: bool = False) -> str:
        prop = key if entity == "item" else context_prop(entity, key)
        self.props.append(Prop(role, prop, entity, key, textset))
        return prop

    # ------------------------------------------------------------------ atoms
    def native(self, cond: n.Cond) -> tuple[str, dict[str, Any], dict[str, Any]] | None:
        """(role, test, negated test) for a natively testable atom, else None."""
        if isinstance(cond, n.Compare):
            return self._compare(cond)
        if isinstance(cond, n.Contains):
            ref = self._ref(cond.container)
            if ref is None or ref[2].type != "textset" or not isinstance(cond.item, n.Text | n.Symbol):
                return None
            role, entity, fld = ref
            return self._contains(role, self._prop(role, entity, fld.name, True), cond.item.value)
        if isinstance(cond, n.Known):
            ref = self._ref(cond.ref)
            if ref is None:
                return None
            role, entity, fld = ref
            props = [self._prop(role, entity, k) for k in fld.keys]
            pos = _any([{"$ex": {p: 1}} for p in props])
            neg = _all([{"$nex": {p: 1}} for p in props])
            return role, pos, neg
        if isinstance(cond, n.Truthy):
            ref = self._ref(cond.ref)
            if ref is None or ref[2].type != "bool":
                return None
            role, entity, fld = ref
            p = self._prop(role, entity, fld.name)
            return role, {p: True}, {"$or": [{"$nex": {p: 1}}, {p: False}]}
        return None

    def _compare(self, cond: n.Compare) -> tuple[str, dict[str, Any], dict[str, Any]] | None:
        op: str = cond.op
        field_side, lit = cond.left, cond.right
        if not isinstance(field_side, n.FieldRef):
            op, field_side, lit = _FLIP[op], cond.right, cond.left
        ref = self._ref(field_side)
        if ref is None or not isinstance(lit, n.Number | n.Text | n.Symbol | n.Bool):
            return None
        role, entity, fld = ref
        if fld.type == "bool":
            if not isinstance(lit, n.Bool) or op not in ("=", "!="):
                return None
            p = self._prop(role, entity, fld.name)
            want = lit.value if op == "=" else not lit.value
            return role, {p: want}, {"$or": [{"$nex": {p: 1}}, {p: not want}]}
        if fld.type in ("int", "number", "quantity"):
            if not isinstance(lit, n.Number) or isinstance(lit.value, bool):
                return None
            resolved = number_in_field_unit(fld, lit)
            if resolved is None:
                return None
            key, value = resolved
            p = self._prop(role, entity, key)
            return role, _cmp(p, op, value), {"$or": [{"$nex": {p: 1}}, _cmp(p, _NEG[op], value)]}
        if not isinstance(lit, n.Text | n.Symbol):
            return None
        if fld.type in ("text", "enum"):
            if op not in ("=", "!="):
                return None  # ordered enums compare by position: derived
            p = self._prop(role, entity, fld.name)
            return role, _cmp(p, op, lit.value), {"$or": [{"$nex": {p: 1}}, _cmp(p, _NEG[op], lit.value)]}
        if fld.type == "textset" and op in ("=", "!="):
            p = self._prop(role, entity, fld.name, True)
            if op == "=":
                return self._contains(role, p, lit.value)
            # "!=" on a set: present and without the element (an empty set qualifies).
            return role, _not_contains_present(p, lit.value), {"$or": [{"$nex": {p: 1}}, _any_of(p, lit.value, False)]}
        return None

    def _contains(self, role: str, p: str, value: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
        return role, _any_of(p, value, False), _any_of(p, value, True)


def _cmp(p: str, op: str, value: Any) -> dict[str, Any]:
    return {p: value} if op == "=" else {_CORE_OP[op]: {p: value}}


def _any_of(p: str, value: str, negated: bool) -> dict[str, Any]:
    """``p`` contains ``value``; negated: absent, empty, or no element equal."""
    if not negated:
        return {"$iany": {p: {"$i": value}}}
    return {"$or": [{"$nex": {p: 1}}, {empty_flag(p): True}, {"$iall": {p: {"$neq": {"$i": value}}}}]}


def _not_contains_present(p: str, value: str) -> dict[str, Any]:
    return {"$or": [{empty_flag(p): True}, {"$iall": {p: {"$neq": {"$i": value}}}}]}


def _any(tests: list[dict[str, Any]]) -> dict[str, Any]:
    return tests[0] if len(tests) == 1 else {"$or": tests}


def _all(tests: list[dict[str, Any]]) -> dict[str, Any]:
    return tests[0] if len(tests) == 1 else {"$and": tests}


def number_in_field_unit(fld: schema.Field, lit: n.Number) -> tuple[str, float] | None:
    """(property, constant) a numeric literal compares as against ``fld``; None if the
    network cannot say (a multi-unit field with a unitless literal, an unknown dimension)."""
    if fld.variants:
        if lit.unit is None:
            return None
        dim = units.lookup(lit.unit).dimension
        key = fld.variants.get(dim)
        if key is None:
            return None
        return key, units.convert(lit.value, lit.unit, units.BASE_UNITS[dim])
    # Exactly the interpreter's arithmetic: convert only when both units are given and
    # spelled differently; otherwise compare the literal as written.
    if lit.unit is not None and fld.unit is not None and lit.unit != fld.unit:
        try:
            return fld.name, units.convert(lit.value, lit.unit, fld.unit)
        except units.UnitError:
            return None
    return fld.name, lit.value


def free_item_vars(node: Any, bound: frozenset[str] = frozenset()) -> set[str]:
    """Item/diagnosis variables ``node`` reads that no quantifier inside it binds."""
    out: set[str] = set()
    if isinstance(node, n.FieldRef):
        if node.entity not in CONTEXT_ENTITIES and node.var not in bound:
            out.add(node.var)
        return out
    if isinstance(node, n.Quantified | n.Count):
        inner = bound | {node.var}
        return free_item_vars(node.cond, inner) if node.cond is not None else out
    if isinstance(node, tuple):
        for x in node:
            out |= free_item_vars(x, bound)
        return out
    if hasattr(node, "__dataclass_fields__"):
        for name in node.__dataclass_fields__:
            if name != "span":
                out |= free_item_vars(getattr(node, name), bound)
    return out
