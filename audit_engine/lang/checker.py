"""Checks parsed rule files and returns them with names resolved; collects every problem.

Each ``check_*`` function returns the node rebuilt with canonical names (``FieldRef.entity``
/ ``.name``, ``Placeholder.kind``) together with its type, and appends diagnostics instead
of raising: the loader raises one ``RulebaseError`` holding all of them.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

from audit_engine import schema, units
from audit_engine.errors import Diagnostic, RulebaseError
from audit_engine.findings import CATEGORIES
from audit_engine.lang import nodes as n
from audit_engine.lang.render import first_lookups, top_level_only
from audit_engine.lang.tables import (
    Feeds,
    Quantity,
    TableData,
    check_cells,
    hint_for,
    judge_level,
    source_line,
)

SINGLE_ENTITIES = ("patient", "prescription", "prescriber", "institution")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class Vocabulary:
    """Names rule literals may use: ingredients, drug classes and drug names (from H3's
    dictionary).

    ``Vocabulary(open=True)`` accepts any name: the explicit opt-out for a caller that checks
    rule text without a dictionary (some language tests). Nothing turns name checking off
    implicitly: :meth:`default` raises when the dictionary cannot be loaded."""

    ingredients: frozenset[str] = frozenset()
    classes: frozenset[str] = frozenset()
    drugs: frozenset[str] = frozenset()
    open: bool = False

    @classmethod
    def from_dictionary(cls, dictionary: Any) -> Vocabulary:
        return cls(frozenset(dictionary.ingredient_names()), frozenset(dictionary.class_names()),
                   frozenset(dictionary.drug_names()))

    @classmethod
    def default(cls) -> Vocabulary:
        """The shipped dictionary's names. A dictionary with bad cells raises its RulebaseError
        (every bad cell as ``file:line:col``); one that cannot be read raises a RulebaseError
        naming the file. Drug-name checking is never silently switched off."""
        from audit_engine.knowledge.dictionary import default_tables_dir, load_dictionary

        try:
            return cls.from_dictionary(load_dictionary())
        except OSError as exc:
            where = getattr(exc, "filename", None) or str(default_tables_dir())
            raise RulebaseError([Diagnostic(
                str(where), 1, 1, f"药品字典无法读取：{exc.strerror or exc}；规则中的药名、成分与类别无从检查")]) from None


@dataclass(frozen=True)
class T:
    """A static type. kind: bool number text textset enum quantity count row any."""

    kind: str
    fld: schema.Field | None = None
    dims: frozenset[str] | None = None  # quantity: possible dimensions (None = known per row)
    multi: bool = False  # a multi-unit field: the other side's unit picks the variant
    literal: bool = False
    table: str | None = None


ANY = T("any")
_KIND_ZH = {"bool": "是/否", "number": "数值", "text": "文本", "textset": "文本集", "enum": "枚举",
            "quantity": "带单位的量", "row": "查表结果", "any": "值"}


def field_type(f: schema.Field) -> T:
    if f.variants:
        return T("quantity", f, frozenset(f.variants), multi=True)
    if f.unit is not None:
        return T("quantity", f, frozenset({units.lookup(f.unit).dimension}))
    if f.type in ("int", "number"):
        return T("number", f)
    return T(f.type, f)


class Checker:
    """Checks one rulebase (all files in load order) against the fact catalogue and tables."""

    def __init__(self, tables: dict[str, n.TableDecl], data: dict[str, TableData],
                 vocabulary: Vocabulary, diagnostics: list[Diagnostic]) -> None:
        self.tables = tables
        self.data = data
        self.vocab = vocabulary
        self.diags = diagnostics
        # Gathered while rules are checked, used by check_table_cells: what each lookup passes
        # for each key column ((table, column) -> feeds), and the columns 按表 reads as levels.
        self._feeds: dict[tuple[str, str], Feeds] = {}
        self._level_columns: dict[tuple[str, str], None] = {}

    # ------------------------------------------------------------------ reporting
    def error(self, span: n.Span, message: str, hint: str | None = None) -> None:
        end = span.end_col if span.end_line == span.line and span.end_col > span.col else None
        self.diags.append(Diagnostic(span.file, span.line, span.col, message, source_line(span.file, span.line),
                                     hint, end))

    # ------------------------------------------------------------------ rules
    def check_rule(self, rule: n.Rule) -> n.Rule:
        for dup in rule.duplicates:
            self.error(dup, f"规则 {rule.id} 的这一子句重复出现")
        for missing, name in ((rule.category, "类别"), (rule.level, "等级"), (rule.evidence, "依据"),
                              (rule.trigger, "条件（当 / 对每个 / 对每对）"), (rule.message, "提示")):
            if missing is None:
                self.error(rule.span, f"规则 {rule.id} 缺少{name}")
        if rule.evidence is not None and not rule.evidence.strip():
            self.error(rule.span, f"规则 {rule.id} 的依据为空")
        if rule.category is not None and rule.category.main not in CATEGORIES:
            self.error(rule.category.span, f"未知类别“{rule.category.main}”，应为 合法性 / 规范性 / 适宜性",
                       hint_for(rule.category.main, CATEGORIES))
        self.check_scope(rule.scope)
        trigger, bindings, lookups = self.check_trigger(rule.trigger) if rule.trigger else (None, {}, {})
        level = self.check_level(rule.level, lookups, rule.id) if rule.level else None
        message = self.check_template(rule.message, bindings, lookups) if rule.message else None
        suggestion = self.check_template(rule.suggestion, bindings, lookups) if rule.suggestion else None
        return dataclasses.replace(rule, trigger=trigger, level=level, message=message, suggestion=suggestion,
                                   effective_scope=n.Scope.of(rule.scope))

    def check_trigger(self, trig: n.Trigger) -> tuple[n.Trigger, dict[str, str], dict[str, n.Lookup]]:
        """Returns the checked trigger, the variables usable in templates (var -> collection)
        and the first lookup of each table whose keys only read those variables."""
        if isinstance(trig, n.When):
            env: dict[str, str] = {}
            out: n.Trigger = n.When(self.check_cond(trig.cond, env), trig.span)
        elif isinstance(trig, n.ForEach):
            if trig.collection != "item":
                self.error(trig.span, f"“对每个”只能遍历药品，不能遍历“{trig.collection}”", hint_for(trig.collection, ["药品"]))
            env = {trig.var: "item"}
            out = n.ForEach(trig.var, self.check_cond(trig.cond, env), trig.span, "item")
        else:
            if trig.first == trig.second:
                self.error(trig.span, f"“对每对”的两个变量不能同名：{trig.first}")
            env = {trig.first: "item", trig.second: "item"}
            out = n.ForEachPair(trig.first, trig.second, self.check_cond(trig.cond, env), trig.span)
        lookups: dict[str, n.Lookup] = {}
        for lk in first_lookups(out.cond):
            if lk.table not in lookups and top_level_only(lk, env):
                lookups[lk.table] = lk
        return out, env, lookups

    def check_level(self, level: n.Level, lookups: dict[str, n.Lookup], rule_id: str) -> n.Level:
        if isinstance(level, n.FixedLevel):
            if not 0 <= level.value <= 9:
                self.error(level.span, f"等级 {level.value} 超出范围 0–9")
            return level
        if level.default is not None and not 0 <= level.default <= 9:
            self.error(level.span, f"默认等级 {level.default} 超出范围 0–9")
        if self._table_column(level.table, level.column, lookups, level.span) is not None:
            self._level_columns[(level.table, level.column)] = None
        return level

    def _table_column(self, table: str, column: str, lookups: dict[str, n.Lookup], span: n.Span) -> T | None:
        decl = self.tables.get(table)
        if decl is None:
            self.error(span, f"未知的表“{table}”", hint_for(table, self.tables))
            return None
        if table not in lookups:
            self.error(span, f"条件中没有在规则层面查询表“{table}”，无法取其列“{column}”")
            return None
        return self.column_type(decl, column, span)

    def column_type(self, decl: n.TableDecl, column: str, span: n.Span) -> T | None:
        for kc in decl.keys:
            if kc.name == column:
                return T("text")
        for vc in decl.columns:
            if vc.name == column:
                if vc.unit:
                    return T("quantity", dims=frozenset({units.lookup(vc.unit).dimension}), table=decl.name)
                if vc.unit_column:
                    return T("quantity", dims=None, table=decl.name)
                return T("number" if vc.type in ("int", "number") else vc.type, table=decl.name)
        names = [k.name for k in decl.keys] + [c.name for c in decl.columns]
        self.error(span, f"表“{decl.name}”没有列“{column}”", hint_for(column, names))
        return None

    def check_template(self, tpl: n.Template, bindings: dict[str, str], lookups: dict[str, n.Lookup]) -> n.Template:
        parts: list[str | n.Placeholder] = []
        for part in tpl.parts:
            if isinstance(part, str):
                parts.append(part)
                continue
            parts.append(self.check_placeholder(part, bindings, lookups))
        return n.Template(tuple(parts), tpl.span)

    def check_placeholder(self, ph: n.Placeholder, bindings: dict[str, str],
                          lookups: dict[str, n.Lookup]) -> n.Placeholder:
        if not ph.target or not ph.name:
            self.error(ph.span, f"占位符“{{{ph.target}{'.' if ph.name else ''}{ph.name}}}”应写成 {{实体.字段}} 或 {{表.列}}")
            return ph
        if ph.target in self.tables:
            if self._table_column(ph.target, ph.name, lookups, ph.span) is None:
                return ph
            return dataclasses.replace(ph, kind="column")
        entity = bindings.get(ph.target) or _single_entity(ph.target)
        if entity is None:
            choices = list(bindings) + list(schema.ENTITIES.values()) + list(self.tables)
            self.error(ph.span, f"占位符中的“{ph.target}”既不是实体、变量，也不是表", hint_for(ph.target, choices))
            return ph
        f = schema.field_of(entity, ph.name)
        if f is None:
            self.error(ph.span, f"{_entity_zh(entity)}没有字段“{ph.name}”", hint_for(ph.name, schema.field_names(entity)))
            return ph
        return dataclasses.replace(ph, kind="field", entity=entity, field=f.name)

    # ------------------------------------------------------------------ scope
    def check_scope(self, items: Iterable[n.ScopeItem]) -> None:
        dates: dict[str, str] = {}
        for it in items:
            if it.key == "institution_level":
                self._enum_values(it.values, schema.INSTITUTION_LEVELS, "机构级别", it.span)
            elif it.key == "prescription_type":
                self._enum_values(it.values, schema.PRESCRIPTION_TYPES, "处方类型", it.span)
            elif it.key in ("effective", "expires"):
                if not _DATE.match(it.values[0]):
                    self.error(it.span, f"日期“{it.values[0]}”应写成 YYYY-MM-DD")
                else:
                    dates[it.key] = it.values[0]
        if "effective" in dates and "expires" in dates and dates["effective"] >= dates["expires"]:
            self.error(next(i for i in items if i.key == "expires").span, "失效日期应晚于生效日期")

    def _enum_values(self, values: Iterable[str], allowed: Iterable[str], what: str, span: n.Span) -> None:
        allowed = tuple(allowed)
        for v in values:
            if v not in allowed:
                self.error(span, f"未知的{what}“{v}”，可选：{' / '.join(allowed)}", hint_for(v, allowed))

    def check_override(self, ov: n.Override, rule: n.Rule | None, rule_ids: Iterable[str]) -> None:
        if rule is None:
            self.error(ov.span, f"覆盖的规则 {ov.rule_id} 不存在", hint_for(ov.rule_id, list(rule_ids)))
        if ov.target is not None and ov.target.key == "institution_level":
            self._enum_values(ov.target.values, schema.INSTITUTION_LEVELS, "机构级别", ov.target.span)
        if isinstance(ov.level, n.FixedLevel) and not 0 <= ov.level.value <= 9:
            self.error(ov.level.span, f"等级 {ov.level.value} 超出范围 0–9")
        if isinstance(ov.level, n.TableLevel):
            self.error(ov.level.span, "覆盖只能把等级改为固定数字")
        if not ov.disable and ov.level is None and not ov.scope:
            self.error(ov.span, f"覆盖 {ov.rule_id} 没有任何动作（停用 / 等级 / 范围）")
        self.check_scope(ov.scope)
        if rule is not None and ov.scope:
            narrowed = n.Scope.of(ov.scope, rule.effective_scope)
            for name, value in (("机构级别", narrowed.institution_levels), ("处方类型", narrowed.prescription_types),
                                ("科室", narrowed.departments), ("机构编码", narrowed.institution_codes)):
                if value is not None and not value:
                    self.error(ov.scope[0].span, f"覆盖后的范围与规则 {ov.rule_id} 原有的{name}范围没有交集")

    # ------------------------------------------------------------------ conditions
    def check_cond(self, c: n.Cond, env: dict[str, str]) -> n.Cond:
        if isinstance(c, n.And):
            return n.And(tuple(self.check_cond(o, env) for o in c.operands), c.span)
        if isinstance(c, n.Or):
            return n.Or(tuple(self.check_cond(o, env) for o in c.operands), c.span)
        if isinstance(c, n.Not):
            return n.Not(self.check_cond(c.operand, env), c.span)
        if isinstance(c, n.Compare):
            left, lt = self.check_expr(c.left, env)
            right, rt = self.check_expr(c.right, env)
            self.compatible(c.op, lt, rt, left, right, c.span)
            return n.Compare(c.op, left, right, c.span)
        if isinstance(c, n.Between):
            value, vt = self.check_expr(c.value, env)
            low, lt = self.check_expr(c.low, env)
            high, ht = self.check_expr(c.high, env)
            self.compatible("<=", lt, vt, low, value, c.span)
            self.compatible("<=", vt, ht, value, high, c.span)
            return n.Between(value, low, high, c.span)
        if isinstance(c, n.In):
            value, vt = self.check_expr(c.value, env)
            options = []
            for o in c.options:
                o2, ot = self.check_expr(o, env)
                self.compatible("=", vt, ot, value, o2, o.span)
                options.append(o2)
            return n.In(value, tuple(options), c.span)
        if isinstance(c, n.Contains):
            cont, ct = self.check_expr(c.container, env)
            item, it = self.check_expr(c.item, env)
            if ct.kind not in ("textset", "text", "any"):
                self.error(c.container.span, f"“包含”的左边应为文本集或文本，这里是{_KIND_ZH[ct.kind]}")
            elif it.kind not in ("text", "enum", "any"):
                self.error(c.item.span, f"“包含”的右边应为文字，这里是{_KIND_ZH[it.kind]}")
            elif ct.kind == "textset":
                self.vocabulary(ct, item)
            return n.Contains(cont, item, c.span)
        if isinstance(c, n.StartsWith):
            value, vt = self.check_expr(c.value, env)
            if vt.kind not in ("text", "textset", "any"):
                self.error(c.value.span, f"“开头为”只用于文本或文本集，这里是{_KIND_ZH[vt.kind]}")
            prefixes = []
            for p in c.prefixes:
                p2, pt = self.check_expr(p, env)
                if pt.kind not in ("text", "any"):
                    self.error(p.span, "“开头为”后应是带引号的文字")
                prefixes.append(p2)
            return n.StartsWith(value, tuple(prefixes), c.span)
        if isinstance(c, n.Known):
            ref, _ = self.check_field(c.ref, env)
            return n.Known(ref, c.span)
        if isinstance(c, n.Truthy):
            ref, t = self.check_field(c.ref, env)
            if t.kind not in ("bool", "any"):
                self.error(c.span, f"“{c.ref.var}.{c.ref.field}”不是是/否字段，不能单独作为条件，请写出比较",
                           None)
            return n.Truthy(ref, c.span)
        if isinstance(c, n.Exists):
            lk, _ = self.check_lookup(c.lookup, env)
            return n.Exists(lk, c.span)
        if isinstance(c, n.Quantified):
            inner = self._bind(c.var, c.collection, env, c.span)
            return n.Quantified(c.kind, c.var, cast(Any, c.collection), self.check_cond(c.cond, inner), c.span)
        raise TypeError(f"unknown condition node {c!r}")

    def _bind(self, var: str, collection: str, env: dict[str, str], span: n.Span) -> dict[str, str]:
        if collection not in ("item", "diagnosis"):
            self.error(span, f"只能对 药品 或 诊断 计数/量化，不能对“{collection}”", hint_for(collection, ["药品", "诊断"]))
        return {**env, var: collection if collection in ("item", "diagnosis") else "item"}

    def check_expr(self, e: n.Expr, env: dict[str, str]) -> tuple[n.Expr, T]:
        if isinstance(e, n.FieldRef):
            return self.check_field(e, env)
        if isinstance(e, n.Number):
            if e.unit is None:
                return e, T("number", literal=True)
            try:
                u = units.lookup(e.unit)
            except units.UnitError:
                self.error(e.span, f"未知单位“{e.unit}”", hint_for(e.unit, units.known_units()))
                return e, ANY
            return e, T("quantity", dims=frozenset({u.dimension}), literal=True)
        if isinstance(e, n.Text | n.Symbol):
            return e, T("text", literal=True)
        if isinstance(e, n.Bool):
            return e, T("bool", literal=True)
        if isinstance(e, n.Lookup):
            lk, _ = self.check_lookup(e, env)
            self.error(e.span, f"查表“{e.table}[…]”需要接“存在”或“.列名”")
            return lk, ANY
        if isinstance(e, n.Column):
            lk, ok = self.check_lookup(e.lookup, env)
            decl = self.tables.get(e.lookup.table)
            t = self.column_type(decl, e.column, e.span) if (decl is not None and ok) else None
            return n.Column(lk, e.column, e.span), t or ANY
        if isinstance(e, n.Count):
            inner = self._bind(e.var, e.collection, env, e.span)
            cond = self.check_cond(e.cond, inner) if e.cond is not None else None
            return n.Count(e.var, e.collection, cond, e.span), T("number")
        raise TypeError(f"unknown expression node {e!r}")

    def check_field(self, ref: n.FieldRef, env: dict[str, str]) -> tuple[n.FieldRef, T]:
        entity = env.get(ref.var) or _single_entity(ref.var)
        if entity is None:
            if schema.ENTITY_BY_ZH.get(ref.var, ref.var) in ("item", "diagnosis"):
                self.error(ref.span, f"“{ref.var}”须在“对每个 / 对每对 / 任一 / 所有 / 计数”之内使用")
            else:
                choices = list(env) + list(schema.ENTITIES.values()) + list(schema.ENTITIES)
                self.error(ref.span, f"未知的实体或变量“{ref.var}”", hint_for(ref.var, choices))
            return ref, ANY
        f = schema.field_of(entity, ref.field)
        if f is None:
            self.error(ref.span, f"未知字段“{ref.var}.{ref.field}”",
                       _qualified_hint(ref.var, ref.field, schema.field_names(entity)))
            return ref, ANY
        return dataclasses.replace(ref, entity=entity, name=f.name), field_type(f)

    def check_lookup(self, lk: n.Lookup, env: dict[str, str]) -> tuple[n.Lookup, bool]:
        keys = []
        types = []
        for k in lk.keys:
            k2, kt = self.check_expr(k, env)
            keys.append(k2)
            types.append(kt)
        decl = self.tables.get(lk.table)
        out = n.Lookup(lk.table, tuple(keys), lk.span)
        if decl is None:
            self.error(lk.span, f"未知的表“{lk.table}”", hint_for(lk.table, self.tables))
            return out, False
        if len(keys) != len(decl.keys):
            names = "、".join(k.name for k in decl.keys)
            self.error(lk.span, f"表“{lk.table}”有 {len(decl.keys)} 个键（{names}），这里给了 {len(keys)} 个")
            return out, False
        for kc, k, kt in zip(decl.keys, keys, types, strict=True):
            if kt.kind not in ("text", "textset", "enum", "any"):
                self.error(k.span, f"查表的键应为文字或文本集，这里是{_KIND_ZH[kt.kind]}")
            self._feeds.setdefault((decl.name, kc.name), Feeds()).add(k, kt.fld)
        return out, True

    # ------------------------------------------------------------------ table cells
    def check_table_cells(self) -> None:
        """Check the loaded tables against what the rules read from them, once per column:
        a key column holds values of the fields fed into it (ingredient, class and drug names
        from the dictionary, enum values, ICD-10 codes); a ``按表`` column holds levels 0–9."""
        for (table, column), feeds in self._feeds.items():
            data = self.data.get(table)
            domain = feeds.domain(self.vocab)
            if data is not None and domain is not None:
                self.diags.extend(check_cells(data, column, domain.judge))
        for table, column in self._level_columns:
            data = self.data.get(table)
            if data is not None:
                self.diags.extend(check_cells(data, column, judge_level))

    # ------------------------------------------------------------------ type rules
    def compatible(self, op: str, lt: T, rt: T, left: n.Expr, right: n.Expr, span: n.Span) -> None:
        """Report a type or unit mismatch between the two sides of a comparison."""
        if lt.kind == "any" or rt.kind == "any":
            return
        if rt.fld is not None and lt.fld is None:  # keep the field on the left
            lt, rt, left, right = rt, lt, right, left
        kinds = {lt.kind, rt.kind}
        where = right.span if lt.fld is not None else span
        if "quantity" in kinds:
            self._units(lt, rt, left, right, where)
            return
        if lt.kind == "number" and rt.kind == "number":
            return
        if kinds <= {"text", "enum", "textset"}:
            if op not in ("=", "!=") and not (lt.kind == "enum" and lt.fld is not None and lt.fld.ordered):
                self.error(span, f"{_KIND_ZH[lt.kind]}只能用 = 或 != 比较")
            if lt.kind == "enum" and lt.fld is not None:
                if rt.kind == "enum" and rt.fld is not None and rt.fld.values != lt.fld.values:
                    self.error(span, f"“{lt.fld.zh}”与“{rt.fld.zh}”的取值不同，不能比较")
                elif rt.literal and isinstance(right, n.Text | n.Symbol) and right.value not in lt.fld.values:
                    self.error(where, f"“{right.value}”不是“{lt.fld.zh}”的取值，可选：{' / '.join(lt.fld.values)}",
                               hint_for(right.value, lt.fld.values))
            elif lt.kind == "textset" and rt.literal:
                self.vocabulary(lt, right)
            elif lt.kind == "text" and rt.literal and lt.fld is not None and lt.fld.name == "name":
                self.vocabulary(lt, right)
            return
        if lt.kind == "bool" and rt.kind == "bool":
            if op not in ("=", "!="):
                self.error(span, "是/否只能用 = 或 != 比较")
            return
        self.error(where, f"类型不匹配：{_describe(lt, left)}是{_KIND_ZH[lt.kind]}，{_describe(rt, right)}是{_KIND_ZH[rt.kind]}")

    def _units(self, lt: T, rt: T, left: n.Expr, right: n.Expr, where: n.Span) -> None:
        if lt.kind != "quantity":
            lt, rt, left, right = rt, lt, right, left
        if rt.kind == "number":
            if lt.multi:
                dims = "、".join(units.BASE_UNITS[d] for d in sorted(lt.dims or ()))
                self.error(where, f"与{_describe(lt, left)}比较的数值需写明单位（如 {dims}）")
            elif lt.literal and not rt.literal:
                self.error(where, f"{_describe(rt, right)}没有单位，不能与带单位的量比较")
            return
        if rt.kind != "quantity":
            self.error(where, f"类型不匹配：{_describe(lt, left)}是带单位的量，{_describe(rt, right)}是{_KIND_ZH[rt.kind]}")
            return
        if lt.multi and rt.multi:
            self.error(where, "两个多单位的量不能直接比较，请与带单位的数值或表列比较")
            return
        if lt.dims is None or rt.dims is None:
            return
        if not (lt.dims & rt.dims):
            want = "、".join(units.BASE_UNITS[d] for d in sorted(lt.dims))
            got = "、".join(units.BASE_UNITS[d] for d in sorted(rt.dims))
            self.error(where, f"单位不匹配：{_describe(lt, left)}的单位是 {want} 一类，{_describe(rt, right)}是 {got} 一类")

    def vocabulary(self, t: T, lit: n.Expr) -> None:
        """Check a literal against the dictionary's names for ingredient/class/name fields."""
        if self.vocab.open or not isinstance(lit, n.Text | n.Symbol) or t.fld is None:
            return
        name = t.fld.name
        if name == "ingredients":
            known, what = self.vocab.ingredients, "成分"
        elif name == "classes":
            known, what = self.vocab.classes, "药物类别"
        elif name == "allergies":
            known, what = self.vocab.ingredients | self.vocab.classes, "成分或类别"
        elif name == "name" and t.fld.entity == "item":
            known, what = self.vocab.drugs, "药品名称"
        else:
            return
        if lit.value not in known:
            self.error(lit.span, f"药品字典中没有{what}“{lit.value}”", hint_for(lit.value, known))


def _single_entity(word: str) -> str | None:
    entity = schema.ENTITY_BY_ZH.get(word, word)
    return entity if entity in SINGLE_ENTITIES else None


def _entity_zh(entity: str) -> str:
    return schema.ENTITIES.get(entity, entity)


def _qualified_hint(var: str, field: str, names: list[str]) -> str | None:
    close = hint_for(field, names)
    if close is None:
        return None
    import difflib

    best = difflib.get_close_matches(field, names, n=1, cutoff=0.5)[0]
    return f"是否应为“{var}.{best}”？"


def _describe(t: T, e: n.Expr) -> str:
    if isinstance(e, n.FieldRef):
        return f"“{e.var}.{e.field}”"
    if isinstance(e, n.Number):
        return f"“{e.value:g}{' ' + e.unit if e.unit else ''}”"
    if isinstance(e, n.Text | n.Symbol):
        return f"“{e.value}”"
    if isinstance(e, n.Column):
        return f"“{e.lookup.table}.{e.column}”"
    if isinstance(e, n.Count):
        return f"“计数 {e.var}”"
    return "右边" if t.literal else "这一项"


__all__ = ["Checker", "Quantity", "T", "Vocabulary", "first_lookups"]
