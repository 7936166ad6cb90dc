"""The rule language's syntax tree, and the semantics every evaluator must reproduce.

The parser builds these frozen dataclasses; the checker returns a copy with names resolved
(``FieldRef.entity`` / ``FieldRef.name``, ``Placeholder.kind`` ...); the loader folds
overrides in and wraps everything in a :class:`Rulebase`. The reference interpreter
(``interpreter.py``) and the durable_rules compiler (``compiler.py``) both read the checked
tree, and MUST agree on the meaning written in the docstrings below.

General semantics (binding for every evaluator)
-----------------------------------------------
* **Two-valued logic.** Any atom that reads an absent fact (absent key, lookup with no
  row, empty table cell) is *false*. ``Not`` is plain negation, so ``不 患者.慢病`` is true
  when chronic status is unknown, and ``患者.年龄 < 12 岁`` never fires without an age.
  ``Known`` is true iff the fact is present.
* **Bindings.** An expression reads the entity dicts of ``PrescriptionFacts``
  (patient, prescription, prescriber, institution) by entity name, and item / diagnosis
  dicts through variables bound by quantifiers (``ForEach``, ``ForEachPair``,
  ``Quantified``, ``Count``). A quantifier variable may shadow an outer one of the same name.
  Inner item quantifiers range over ALL items, including an item bound by an outer quantifier.
* **Rule scope** (see :class:`Scope`) is tested before the condition; a rule out of scope
  produces nothing.
* **Findings.** ``ForEach``: one finding per item that satisfies the condition; implicated =
  (that item's ``reference``,). ``ForEachPair``: over unordered pairs of distinct items
  (i < j by position), the condition is tried with (first, second) = (i, j) and then (j, i);
  one finding per pair that matches in either order; implicated = (ref_i, ref_j) in item
  order; message, suggestion and table-driven level come from the FIRST order that matched.
  ``When`` (prescription level): one finding; implicated = the union, in item order, of the
  items that satisfy the body of each *outermost* item quantifier (``Quantified`` /
  ``Count`` over items, not nested inside any other quantifier) anywhere in the condition,
  each evaluated for every item regardless of polarity or short-circuiting (a ``Count``
  without a condition counts every item); if that union is empty, all items. Diagnosis
  quantifiers never implicate anything.
* **Messages and table levels** are produced by ``audit_engine.lang.render`` (one
  implementation for both evaluators); ``interpreter.finish`` de-duplicates and sorts.
* Findings are ``audit_engine.findings.Finding``; ``category`` is the main category,
  ``subtype`` the sub-type, ``evidence`` the 依据 text, ``source`` is "file:line" of the rule.
  The result list is de-duplicated and sorted by ``(Finding.sort_key(), message)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

# --------------------------------------------------------------------------- spans


@dataclass(frozen=True, slots=True)
class Span:
    """Where a node sits in its file: 1-based line and column, end exclusive."""

    file: str
    line: int
    col: int
    end_line: int
    end_col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


NO_SPAN = Span("<builtin>", 0, 0, 0, 0)

# --------------------------------------------------------------------------- expressions


@dataclass(frozen=True, slots=True)
class FieldRef:
    """``var.field``: a fact field of an entity (患者/处方/医师/机构) or of a bound variable.

    ``var`` and ``field`` are as written (Chinese or English). After checking, ``entity`` is
    the canonical English entity ("patient", "prescription", "prescriber", "institution",
    "item", "diagnosis") and ``name`` the canonical English field name of
    ``audit_engine.schema.FIELDS``; ``var`` is then the binding to read (an entity name for
    the four single entities, else the quantifier variable).

    Value: the fact value, or ABSENT when the key is missing. A multi-unit quantity
    (``Field.variants``) has no value on its own: a comparison picks the variant key from
    the dimension of the other side (see :class:`Compare`). A ``textset`` value is a list of
    strings.
    """

    var: str
    field: str
    span: Span
    entity: str = ""
    name: str = ""


@dataclass(frozen=True, slots=True)
class Number:
    """A number literal with an optional unit (``20 mg``, ``7``, ``25 mL/min/1.73m²``).

    With a unit, its value is ``value`` converted to the unit dimension's base unit
    (``audit_engine.units``): ``4 g`` = 4000 in dimension "mass".
    """

    value: float
    unit: str | None
    span: Span


@dataclass(frozen=True, slots=True)
class Text:
    """A quoted string literal."""

    value: str
    span: Span


@dataclass(frozen=True, slots=True)
class Symbol:
    """A bare word used as a value (``门诊``, ``村卫生室``, ``限制使用级``): behaves exactly as
    :class:`Text` with the same value; the checker requires it to be a member of the enum it
    is compared with (or any text for text fields)."""

    value: str
    span: Span


@dataclass(frozen=True, slots=True)
class Bool:
    """``是``/``否``/``真``/``假``/``true``/``false``."""

    value: bool
    span: Span


@dataclass(frozen=True, slots=True)
class Lookup:
    """``表名[key1, key2, ...]``: the winning row of a knowledge table, or no row.

    Key expressions are positional, one per declared key column. A key expression's value
    matches a cell when: the cell is empty (a wildcard); or the column is exact and the value
    equals the cell; or the column is ``前缀`` and the value starts with the cell. A textset
    value matches if ANY element matches. An absent key value matches nothing (no row, even
    against a wildcard cell). Among matching rows the winner is (1) the most specific
    (most non-empty key cells), then (2) the table's ``优先`` order (highest / lowest of a
    column; rows with the cell empty last), then (3) first in file. Implemented once in
    ``audit_engine.lang.tables.TableData.lookup``; the network must call that, not re-derive.
    """

    table: str
    keys: tuple[Expr, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Column:
    """``表名[...].列``: a column of the winning row; ABSENT if no row or the cell is empty."""

    lookup: Lookup
    column: str
    span: Span


@dataclass(frozen=True, slots=True)
class Count:
    """``计数 药品 满足 (cond)`` or ``计数 药品``: how many items (or diagnoses) satisfy cond.

    ``collection`` is "item" or "diagnosis"; ``var`` is bound to each element in turn.
    Always present (0 when there are none). Compares as a plain number.
    """

    var: str
    collection: Literal["item", "diagnosis"]
    cond: Cond | None
    span: Span


Expr = FieldRef | Number | Text | Symbol | Bool | Lookup | Column | Count

# --------------------------------------------------------------------------- conditions

CompareOp = Literal["=", "!=", "<", "<=", ">", ">="]


@dataclass(frozen=True, slots=True)
class Compare:
    """``left op right``. False whenever either side is ABSENT.

    * numbers / ints: numeric comparison. A single-unit quantity field (``体重`` kg, ``天数`` 天)
      compares with a literal converted to the field's unit; a unitless literal means the
      field's own unit.
    * multi-unit quantity field (``日剂量``, ``年龄``) vs a literal with a unit: the literal's
      dimension picks the variant key (``4 g`` -> ``daily_dose_mg`` compared with 4000;
      ``12 岁`` -> ``age_years``; ``28 天`` -> ``age_days``). Absent variant => false.
    * multi-unit field vs a table quantity column: the column's unit dimension picks the
      variant (per row when the column takes its unit from another column).
    * ordered enums (抗菌级别 / 抗菌药物权限) compare ``<``/``>`` by position in
      ``schema.Field.values``; other enums and text only with ``=`` / ``!=``.
    * textset vs text: ``=`` means the set contains the text, ``!=`` means it does not
      (and the set is present). textset vs textset: ``=`` means they share an element,
      ``!=`` that they share none (both present).
    * bool vs bool literal: equality.
    """

    op: CompareOp
    left: Expr
    right: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class In:
    """``x 属于 (a, b, …)``: x equals one of the options; a textset x: any element does."""

    value: Expr
    options: tuple[Expr, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Between:
    """``x 介于 low 和 high``: ``low <= x <= high`` (inclusive), with Compare's unit rules."""

    value: Expr
    low: Expr
    high: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class Contains:
    """``x 包含 y``: textset x has element y; text x has y as a substring."""

    container: Expr
    item: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class StartsWith:
    """``x 开头为 ("N18", "N19")``: text x starts with one of the prefixes; a textset x: any
    element does (ICD-10 prefix match on ``患者.诊断编码``)."""

    value: Expr
    prefixes: tuple[Expr, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Known:
    """``已知 f``: true iff the fact is present (for a multi-unit quantity: any variant)."""

    ref: FieldRef
    span: Span


@dataclass(frozen=True, slots=True)
class Exists:
    """``表名[...] 存在``: true iff the lookup finds a row."""

    lookup: Lookup
    span: Span


@dataclass(frozen=True, slots=True)
class Truthy:
    """A bare boolean field used as a condition (``患者.妊娠``): true iff present and true."""

    ref: FieldRef
    span: Span


@dataclass(frozen=True, slots=True)
class Quantified:
    """``任一 药品 满足 (cond)`` / ``所有 药品 满足 (cond)`` (also over 诊断).

    ``any``: some element satisfies cond. ``all``: every element does — true when the
    collection is EMPTY (vacuous truth).
    """

    kind: Literal["any", "all"]
    var: str
    collection: Literal["item", "diagnosis"]
    cond: Cond
    span: Span


@dataclass(frozen=True, slots=True)
class And:
    """All operands are true."""

    operands: tuple[Cond, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Or:
    """At least one operand is true."""

    operands: tuple[Cond, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Not:
    """Plain negation (two-valued: NOT of an atom on an absent fact is true)."""

    operand: Cond
    span: Span


Cond = Compare | In | Between | Contains | StartsWith | Known | Exists | Truthy | Quantified | And | Or | Not

# --------------------------------------------------------------------------- rule parts


@dataclass(frozen=True, slots=True)
class When:
    """``当 cond``: a prescription-level rule (one finding; see module docstring)."""

    cond: Cond
    span: Span


@dataclass(frozen=True, slots=True)
class ForEach:
    """``对每个 药品 满足 cond``: one finding per item satisfying cond; ``var`` bound to it."""

    var: str
    cond: Cond
    span: Span
    collection: str = "item"  # as written; the checker requires "item"


@dataclass(frozen=True, slots=True)
class ForEachPair:
    """``对每对 甲, 乙 满足 cond``: unordered pairs of distinct items, both orders tried."""

    first: str
    second: str
    cond: Cond
    span: Span


Trigger = When | ForEach | ForEachPair


@dataclass(frozen=True, slots=True)
class Placeholder:
    """``{x.y}`` in a template. After checking, ``kind`` is "field" (``entity``/``name``
    resolved like FieldRef, ``x`` a binding of the rule's trigger or an entity) or "column"
    (``x`` a table looked up in the rule; the value comes from the FIRST lookup of that
    table in source order of the condition, re-evaluated with the finding's bindings).

    Rendering (``audit_engine.lang.render``): absent -> ``未知``; textset -> elements joined
    by ``、``; bool -> 是/否; numbers without a trailing ``.0`` (at most 4 decimals);
    a multi-unit quantity -> first present variant in ``variants`` order as "value unit"
    with the dimension's base unit; a table number with a declared unit -> the cell as
    written plus that unit (``2.4 g``); with a per-row unit (``单位见 单位``) -> the cell alone
    (write ``{表.单位}`` to show the unit).
    """

    target: str
    name: str
    span: Span
    kind: Literal["", "field", "column"] = ""
    entity: str = ""
    field: str = ""


@dataclass(frozen=True, slots=True)
class Template:
    """A message or suggestion: literal text and placeholders in order (``{{``/``}}`` escape)."""

    parts: tuple[str | Placeholder, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Category:
    """``类别 适宜性.剂量``: main category (合法性/规范性/适宜性) and sub-type."""

    main: str
    sub: str
    span: Span


@dataclass(frozen=True, slots=True)
class FixedLevel:
    """``等级 6`` (0–9)."""

    value: int
    span: Span


@dataclass(frozen=True, slots=True)
class TableLevel:
    """``等级 按表 相互作用.等级 [否则 5]``: the level is that column of the rule's first
    lookup of the table (resolved like a column Placeholder); ``default`` (5 if omitted)
    when there is no row or the cell is empty."""

    table: str
    column: str
    default: int | None
    span: Span


Level = FixedLevel | TableLevel

ScopeKey = Literal["institution_level", "prescription_type", "department", "institution_code",
                   "effective", "expires"]


@dataclass(frozen=True, slots=True)
class ScopeItem:
    """One restriction in ``范围``: 机构级别 / 处方类型 / 科室 / 机构编码 take a set of values
    (``=`` one value, ``属于 (…)`` several); 生效 / 失效 take one date "YYYY-MM-DD"."""

    key: ScopeKey
    values: tuple[str, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Scope:
    """The intersection of a rule's scope items (None = unrestricted).

    ``admits``: every restricted dimension must be present in the facts and inside the set
    (absent fact => not admitted). Dates compare the text ``prescription.date``:
    ``effective <= date < expires``.
    """

    institution_levels: frozenset[str] | None = None
    prescription_types: frozenset[str] | None = None
    departments: frozenset[str] | None = None
    institution_codes: frozenset[str] | None = None
    effective: str | None = None
    expires: str | None = None

    @staticmethod
    def of(items: tuple[ScopeItem, ...], base: Scope | None = None) -> Scope:
        """Intersect ``items`` into ``base`` (the narrowing used by overrides, too)."""
        scope = base or Scope()
        sets: dict[str, frozenset[str] | None] = {
            "institution_level": scope.institution_levels, "prescription_type": scope.prescription_types,
            "department": scope.departments, "institution_code": scope.institution_codes,
        }
        effective, expires = scope.effective, scope.expires
        for it in items:
            if it.key in sets:
                old = sets[it.key]
                new = frozenset(it.values)
                sets[it.key] = new if old is None else old & new
            elif it.key == "effective":
                effective = max(effective or it.values[0], it.values[0])
            else:
                expires = min(expires or it.values[0], it.values[0])
        return Scope(sets["institution_level"], sets["prescription_type"], sets["department"],
                     sets["institution_code"], effective, expires)

    def admits(self, facts: Any) -> bool:
        """Whether a rule with this scope applies to ``facts`` (a PrescriptionFacts)."""
        checks = (
            (self.institution_levels, facts.institution.get("level")),
            (self.prescription_types, facts.prescription.get("type")),
            (self.departments, facts.prescription.get("department")),
            (self.institution_codes, facts.institution.get("code")),
        )
        for allowed, value in checks:
            if allowed is not None and (value is None or value not in allowed):
                return False
        if self.effective is not None or self.expires is not None:
            date = facts.prescription.get("date")
            if date is None:
                return False
            if self.effective is not None and date < self.effective:
                return False
            if self.expires is not None and date >= self.expires:
                return False
        return True


@dataclass(frozen=True, slots=True)
class OverrideTarget:
    """``对 机构级别 = 村卫生室`` / ``对 机构编码 属于 ("A", "B")``: which institutions."""

    key: Literal["institution_level", "institution_code"]
    values: tuple[str, ...]
    span: Span

    def matches(self, institution: dict[str, Any]) -> bool:
        value = institution.get("level" if self.key == "institution_level" else "code")
        return value is not None and value in self.values


@dataclass(frozen=True, slots=True)
class Override:
    """``覆盖 ID [对 …] { 停用 | 等级 N | 范围 … }``.

    Without a target it is folded into the rule by the loader (disabled rules are dropped
    from ``Rulebase.rules``). With a target it stays in ``Rule.variants`` and is applied at
    evaluation time: take the variants whose target matches ``facts.institution``, in
    order; ``disable`` switches the rule off; ``level`` replaces the level (later wins);
    ``scope`` items are intersected into the rule's scope (``Scope.of``).
    """

    rule_id: str
    target: OverrideTarget | None
    disable: bool
    level: Level | None
    scope: tuple[ScopeItem, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Rule:
    """``规则 ID "标题" { … }``. Checked rules always have category, level, evidence, trigger
    and message. ``variants`` holds the conditional overrides (load order), see Override;
    ``effective_scope`` is the scope after unconditional overrides."""

    id: str
    title: str
    category: Category | None
    level: Level | None
    evidence: str | None
    scope: tuple[ScopeItem, ...]
    trigger: Trigger | None
    message: Template | None
    suggestion: Template | None
    span: Span
    variants: tuple[Override, ...] = ()
    effective_scope: Scope = field(default_factory=Scope)
    duplicates: tuple[Span, ...] = ()  # clauses written twice (parser); the checker reports them

    def resolve_for(self, institution: dict[str, Any]) -> tuple[bool, Level | None, Scope]:
        """(enabled, level, scope) once the variants matching ``institution`` are applied."""
        enabled, level, scope = True, self.level, self.effective_scope
        for v in self.variants:
            if v.target is not None and not v.target.matches(institution):
                continue
            if v.disable:
                enabled = False
            if v.level is not None:
                level = v.level
            if v.scope:
                scope = Scope.of(v.scope, scope)
        return enabled, level, scope


# --------------------------------------------------------------------------- tables


@dataclass(frozen=True, slots=True)
class KeyColumn:
    """A key column: ``exact`` equality or ``prefix`` (the cell is a prefix of the value)."""

    name: str
    match: Literal["exact", "prefix"]
    span: Span


ColumnType = Literal["text", "int", "number", "bool", "textset"]


@dataclass(frozen=True, slots=True)
class ValueColumn:
    """A value column: its type; a number column may carry a fixed ``unit`` (``上限 数值 mg``)
    or take its unit per row from ``unit_column`` (``上限 数值 单位见 单位``). textset cells
    split on ``|`` or ``、``."""

    name: str
    type: ColumnType
    unit: str | None
    unit_column: str | None
    span: Span


@dataclass(frozen=True, slots=True)
class Prefer:
    """``优先 等级 最高`` / ``优先 等级 最低`` / ``优先 最先`` (default): tie-break among rows."""

    column: str | None
    order: Literal["highest", "lowest", "first"]
    span: Span


@dataclass(frozen=True, slots=True)
class TableDecl:
    """``表 名 来自 "tables/x.csv" { 键 …  列 …  [优先 …] }``; path relative to the rule file."""

    name: str
    source: str
    keys: tuple[KeyColumn, ...]
    columns: tuple[ValueColumn, ...]
    prefer: Prefer | None
    span: Span
    source_span: Span | None = field(default=None, compare=False)  # the quoted path, for path errors


# --------------------------------------------------------------------------- test cases


@dataclass(frozen=True, slots=True)
class Word:
    """One word of a test brief as written (bare word or quoted string)."""

    text: str
    quoted: bool
    span: Span


@dataclass(frozen=True, slots=True)
class Brief:
    """``患者 …`` / ``处方 …`` / ``医师 …`` / ``机构 …`` / ``诊断 …`` / ``药品 名称 …``: an entity
    in brief; ``entity`` is the canonical English entity. ``testcases.py`` interprets words."""

    entity: str
    words: tuple[Word, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Expectation:
    """``期望 触发 A, B`` (fires=True) / ``期望 不触发 A`` (fires=False) / ``期望 无`` (rule_ids
    empty, fires=False: no finding at all). ``levels`` gives an expected level per id (or None)."""

    fires: bool
    rule_ids: tuple[str, ...]
    levels: tuple[int | None, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class TestCase:
    """``测试 "名称" { briefs…  期望 … }``."""

    name: str
    briefs: tuple[Brief, ...]
    expectations: tuple[Expectation, ...]
    span: Span


# --------------------------------------------------------------------------- files


@dataclass(frozen=True, slots=True)
class Import:
    """``导入 "path"``: load another rule file (relative to this one) first."""

    path: str
    span: Span


@dataclass(frozen=True, slots=True)
class Header:
    """``规则库 "名称" 版本 "2026.11"``."""

    name: str
    version: str | None
    span: Span


@dataclass(frozen=True, slots=True)
class RuleFile:
    """One parsed ``.rules`` file, parts in source order per kind."""

    path: str
    header: Header | None
    imports: tuple[Import, ...]
    tables: tuple[TableDecl, ...]
    rules: tuple[Rule, ...]
    overrides: tuple[Override, ...]
    tests: tuple[TestCase, ...]


@dataclass(frozen=True, slots=True)
class Rulebase:
    """A loaded, checked rulebase (``loader.load_rulebase``).

    ``rules``: checked rules in load order (imports first), unconditional overrides folded in,
    disabled ones removed, conditional overrides in ``Rule.variants``. ``tables``: name ->
    ``audit_engine.lang.tables.TableData``. ``source_hash``: sha256 over every source file and
    table file (path and bytes, sorted by path).
    """

    name: str
    version: str | None
    rules: tuple[Rule, ...]
    tables: dict[str, Any]
    tests: tuple[TestCase, ...]
    files: tuple[str, ...]
    source_hash: str
