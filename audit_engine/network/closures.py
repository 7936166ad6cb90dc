"""Derived-field conditions compiled once into Python closures.

A review evaluates about a hundred derived fields (``ir.DerivedField``: table lookups,
ordered enums, quantifiers ...). Walking the condition tree with
``interpreter.Evaluator.cond`` re-does, on every call, work that depends only on the
condition and the rulebase: the isinstance dispatch on node types, ``schema.field_of``,
finding the table, wrapping literals as ``Num`` / ``Txt``. ``compile_cond`` does that work
once per condition and returns a closure ``(evaluator, env) -> bool``.

``interpreter.Evaluator.cond`` remains the reference: every closure computes exactly
what it computes, reusing its helpers (``compare``, ``_wrap``, ``Num``, ``Txt``, ``Multi``,
``ABSENT``, ``TableData.lookup``), and a node kind not handled here falls back to
``ev.cond`` / ``ev.side``. Two shortcuts are taken, both value-preserving because sides
have no effects: a comparison whose first side is ABSENT is false without computing the
others (``compare`` is false on ABSENT), and a lookup stops at the first absent key
(``TableData.lookup`` returns None when any key is None).
``tests/engine/test_closures.py`` checks closure == interpreter on every derived field
of the shipped rulebase.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from audit_engine import schema
from audit_engine.lang import nodes as n
from audit_engine.lang import render as r
from audit_engine.lang.interpreter import (
    ABSENT,
    NOT_LITERAL,
    Env,
    Evaluator,
    Multi,
    Num,
    Txt,
    _wrap,
    compare,
    key_of,
    literal_side,
)
from audit_engine.lang.tables import TableData

Pred = Callable[[Evaluator, Env], bool]
Side = Callable[[Evaluator, Env], Any]
Key = Callable[[Evaluator, Env], Any]
Row = Callable[[Evaluator, Env], Mapping[str, Any] | None]

_MISSING: Any = object()


def compile_cond(cond: n.Cond, tables: Mapping[str, TableData]) -> Pred:
    """``cond`` as a closure equal to ``lambda ev, env: ev.cond(cond, env)`` for evaluators
    over ``tables``."""
    return _Compiler(tables).cond(cond)


Screen = Callable[[Evaluator, Mapping[str, Any]], bool]


def compile_screen(cond: n.Cond, tables: Mapping[str, TableData], binds: tuple[str, ...]
                   ) -> tuple[int, Screen] | None:
    """A cheap necessary condition of ``cond`` on one bound item, or None when there is none.

    ``(r, screen)``: whenever ``screen(ev, item)`` is false, ``cond`` is false with
    ``binds[r]`` bound to ``item``, whatever the other variables are bound to. Found where
    ``cond`` needs a table row (``T[...] 存在``, or a comparison with a column of ``T[...]``,
    false on ABSENT) whose indexed key column reads a field of ``binds[r]``: an item whose
    value there has no row in the index (``TableData.may_match``) cannot match. The runtime
    screens each item once per pair field instead of evaluating the field on every pair.
    """
    return _Compiler(tables).screen(cond, binds)


def _always(value: Any) -> Callable[[Evaluator, Env], Any]:
    return lambda ev, env: value


class _Compiler:
    def __init__(self, tables: Mapping[str, TableData]) -> None:
        self.tables = tables

    # ---------------------------------------------------------------- entities
    @staticmethod
    def entity(var: str, entity: str) -> Callable[[Evaluator, Env], Mapping[str, Any] | None]:
        """``Evaluator.entity``: the bound variable, else the prescription's single entity."""
        if entity in r.SINGLE_ENTITIES:
            def single(ev: Evaluator, env: Env) -> Mapping[str, Any] | None:
                data = env.get(var, _MISSING)
                return getattr(ev.facts, entity) if data is _MISSING else data
            return single

        def bound(ev: Evaluator, env: Env) -> Mapping[str, Any] | None:
            return env.get(var)  # None when unbound, like Evaluator.entity
        return bound

    # ---------------------------------------------------------------- values
    def side(self, e: n.Expr) -> Side:
        """``Evaluator.side``."""
        const = literal_side(e)
        if const is not NOT_LITERAL:
            return _always(const)
        if isinstance(e, n.FieldRef):
            return self.field(e)
        if isinstance(e, n.Column):
            row, column = self.lookup(e.lookup), e.column

            def col(ev: Evaluator, env: Env) -> Any:
                found = row(ev, env)
                if found is None:
                    return ABSENT
                v = found.get(column)  # a missing column and an empty cell are both ABSENT
                return ABSENT if v is None else _wrap(v, None)
            return col
        if isinstance(e, n.Count):
            elements, var = self.collection(e.collection), e.var
            test = self.cond(e.cond) if e.cond is not None else None

            def count(ev: Evaluator, env: Env) -> Any:
                if test is None:
                    return Num(float(len(elements(ev))), None)
                return Num(float(sum(1 for el in elements(ev) if test(ev, {**env, var: el}))), None)
            return count
        return lambda ev, env: ev.side(e, env)

    def field(self, e: n.FieldRef) -> Side:
        f = schema.field_of(e.entity, e.name)
        if f is None:
            return _always(ABSENT)
        fld = f
        data_of = self.entity(e.var, e.entity)
        if fld.variants:
            def multi(ev: Evaluator, env: Env) -> Any:
                data = data_of(ev, env)
                return ABSENT if data is None else Multi(data, fld)
            return multi
        name = fld.name

        def plain(ev: Evaluator, env: Env) -> Any:
            data = data_of(ev, env)
            if data is None:
                return ABSENT
            v = data.get(name, _MISSING)
            return ABSENT if v is _MISSING else _wrap(v, fld)
        return plain

    def key(self, e: n.Expr) -> Key:
        """``Evaluator.key_value``: str, a tuple of str, or None when absent."""
        const = literal_side(e)
        if const is not NOT_LITERAL:
            return _always(key_of(const))
        if not isinstance(e, n.FieldRef):
            side = self.side(e)
            return lambda ev, env: key_of(side(ev, env))
        f = schema.field_of(e.entity, e.name)
        if f is None or f.variants:
            return _always(None)  # ABSENT or a Multi: neither is a key
        fld, name, data_of = f, f.name, self.entity(e.var, e.entity)

        def field_key(ev: Evaluator, env: Env) -> Any:
            data = data_of(ev, env)
            if data is None:
                return None
            v = data.get(name, _MISSING)
            if v is _MISSING:
                return None
            t = type(v)
            if t is str:
                return v  # _wrap gives Txt(v)
            if t is list or t is tuple:
                return tuple(v)  # _wrap gives the tuple itself
            return key_of(_wrap(v, fld))
        return field_key

    def lookup(self, lk: n.Lookup) -> Row:
        """``Evaluator.lookup``: the winning row, or None."""
        table = self.tables.get(lk.table)
        if table is None or len(lk.keys) != len(table.decl.keys):
            return _always(None)
        tab = table
        keys = tuple(self.key(k) for k in lk.keys)

        def row(ev: Evaluator, env: Env) -> Mapping[str, Any] | None:
            values = []
            for k in keys:
                v = k(ev, env)
                if v is None:
                    return None  # TableData.lookup: no row for an absent key
                values.append(v)
            return tab.lookup(values)
        return row

    def screen(self, c: n.Cond, binds: tuple[str, ...]) -> tuple[int, Screen] | None:
        """See :func:`compile_screen`."""
        if isinstance(c, n.And):
            for o in c.operands:
                found = self.screen(o, binds)
                if found is not None:
                    return found
            return None
        lk: n.Lookup | None = None
        if isinstance(c, n.Exists):
            lk = c.lookup
        elif isinstance(c, n.Compare):  # compare is false when either side is ABSENT
            lk = next((s.lookup for s in (c.left, c.right) if isinstance(s, n.Column)), None)
        if lk is None:
            return None
        table = self.tables.get(lk.table)
        if table is None or len(lk.keys) != len(table.decl.keys) or table.index_column < 0:
            return None
        col = table.index_column
        ref = lk.keys[col]
        if not isinstance(ref, n.FieldRef) or ref.var not in binds:
            return None
        role, var, key, tab = binds.index(ref.var), ref.var, self.key(ref), table

        def screen(ev: Evaluator, item: Mapping[str, Any]) -> bool:
            v = key(ev, {var: item})
            return v is not None and tab.may_match(col, v)
        return role, screen

    @staticmethod
    def collection(name: str) -> Callable[[Evaluator], list[dict[str, Any]]]:
        """``Evaluator.collection``."""
        if name == "item":
            return lambda ev: ev.facts.items
        return lambda ev: ev.facts.diagnoses

    # ---------------------------------------------------------------- conditions
    def cond(self, c: n.Cond) -> Pred:
        """``Evaluator.cond``."""
        if isinstance(c, n.And):
            preds = tuple(self.cond(o) for o in c.operands)

            def and_(ev: Evaluator, env: Env) -> bool:
                for p in preds:
                    if not p(ev, env):
                        return False
                return True
            return and_
        if isinstance(c, n.Or):
            preds = tuple(self.cond(o) for o in c.operands)

            def or_(ev: Evaluator, env: Env) -> bool:
                for p in preds:
                    if p(ev, env):
                        return True
                return False
            return or_
        if isinstance(c, n.Not):
            inner = self.cond(c.operand)
            return lambda ev, env: not inner(ev, env)
        if isinstance(c, n.Compare):
            return self.compare(c)
        if isinstance(c, n.Between):
            value, low, high = self.side(c.value), self.side(c.low), self.side(c.high)

            def between(ev: Evaluator, env: Env) -> bool:
                v = value(ev, env)
                if v is ABSENT:
                    return False
                return compare(">=", v, low(ev, env)) and compare("<=", v, high(ev, env))
            return between
        if isinstance(c, n.In):
            value = self.side(c.value)
            options = tuple(self.side(o) for o in c.options)

            def in_(ev: Evaluator, env: Env) -> bool:
                v = value(ev, env)
                if v is ABSENT:
                    return False
                for o in options:
                    if compare("=", v, o(ev, env)):
                        return True
                return False
            return in_
        if isinstance(c, n.Contains):
            return self.contains(c)
        if isinstance(c, n.StartsWith):
            value = self.side(c.value)
            prefix_sides = tuple(self.side(x) for x in c.prefixes)

            def starts(ev: Evaluator, env: Env) -> bool:
                v = value(ev, env)
                values = list(v) if isinstance(v, tuple) else [v.value] if isinstance(v, Txt) else []
                prefixes = [p.value for p in (s(ev, env) for s in prefix_sides) if isinstance(p, Txt)]
                return any(x.startswith(p) for x in values for p in prefixes)
            return starts
        if isinstance(c, n.Known):
            f = schema.field_of(c.ref.entity, c.ref.name)
            if f is None:
                return _always(False)
            flat, data_of = f.keys, self.entity(c.ref.var, c.ref.entity)

            def known(ev: Evaluator, env: Env) -> bool:
                data = data_of(ev, env)
                return data is not None and any(k in data for k in flat)
            return known
        if isinstance(c, n.Truthy):
            data_of, name = self.entity(c.ref.var, c.ref.entity), c.ref.name

            def truthy(ev: Evaluator, env: Env) -> bool:
                data = data_of(ev, env)
                return data is not None and data.get(name) is True
            return truthy
        if isinstance(c, n.Exists):
            row = self.lookup(c.lookup)
            return lambda ev, env: row(ev, env) is not None
        if isinstance(c, n.Quantified):
            elements, var, test = self.collection(c.collection), c.var, self.cond(c.cond)
            if c.kind == "any":
                return lambda ev, env: any(test(ev, {**env, var: el}) for el in elements(ev))
            return lambda ev, env: all(test(ev, {**env, var: el}) for el in elements(ev))
        return lambda ev, env: ev.cond(c, env)

    def compare(self, c: n.Compare) -> Pred:
        op, left = c.op, self.side(c.left)
        right_const = literal_side(c.right)
        if right_const is not NOT_LITERAL:
            def compare_const(ev: Evaluator, env: Env) -> bool:
                return compare(op, left(ev, env), right_const)
            return compare_const
        right = self.side(c.right)

        def compare_sides(ev: Evaluator, env: Env) -> bool:
            a = left(ev, env)
            if a is ABSENT:
                return False  # compare is false on ABSENT whatever the other side
            return compare(op, a, right(ev, env))
        return compare_sides

    def contains(self, c: n.Contains) -> Pred:
        container = self.side(c.container)
        item_const = literal_side(c.item)
        if item_const is not NOT_LITERAL:
            if not isinstance(item_const, Txt):
                return _always(False)
            wanted = item_const.value

            def contains_const(ev: Evaluator, env: Env) -> bool:
                cont = container(ev, env)
                if isinstance(cont, tuple):
                    return wanted in cont
                return isinstance(cont, Txt) and wanted in cont.value
            return contains_const
        item = self.side(c.item)

        def contains_sides(ev: Evaluator, env: Env) -> bool:
            cont, x = container(ev, env), item(ev, env)
            if not isinstance(x, Txt):
                return False
            if isinstance(cont, tuple):
                return x.value in cont
            return isinstance(cont, Txt) and x.value in cont.value
        return contains_sides
