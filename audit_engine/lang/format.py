"""Syntax tree -> canonical rule text (Chinese keywords). ``parse(format(x))`` equals ``x``
except for source positions; the tests use this to prove the parser round-trips."""

from __future__ import annotations

from typing import Any

from audit_engine.lang import nodes as n
from audit_engine.lang.render import format_number

_SCOPE_ZH = {"institution_level": "机构级别", "prescription_type": "处方类型", "department": "科室",
             "institution_code": "机构编码", "effective": "生效", "expires": "失效"}
_TYPE_ZH = {"text": "文本", "textset": "文本集", "int": "整数", "number": "数值", "bool": "布尔"}
_ORDER_ZH = {"highest": "最高", "lowest": "最低"}
_COLLECTION_ZH = {"item": "药品", "diagnosis": "诊断"}
_BRIEF_ZH = {"patient": "患者", "prescription": "处方", "prescriber": "医师", "institution": "机构",
             "diagnosis": "诊断", "item": "药品"}


def quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def format_expr(e: n.Expr) -> str:
    if isinstance(e, n.FieldRef):
        return f"{e.var}.{e.field}"
    if isinstance(e, n.Number):
        return format_number(e.value) + (f" {e.unit}" if e.unit else "")
    if isinstance(e, n.Text):
        return quote(e.value)
    if isinstance(e, n.Symbol):
        return e.value
    if isinstance(e, n.Bool):
        return "是" if e.value else "否"
    if isinstance(e, n.Lookup):
        return f"{e.table}[{', '.join(format_expr(k) for k in e.keys)}]"
    if isinstance(e, n.Column):
        return f"{format_expr(e.lookup)}.{e.column}"
    body = f" 满足 ({format_cond(e.cond)})" if e.cond is not None else ""
    return f"计数 {_binder(e.var, e.collection)}{body}"


def _binder(var: str, collection: str) -> str:
    from audit_engine.lang.parser import collection_of

    return var if collection_of(var) == collection else f"{var}: {_COLLECTION_ZH.get(collection, collection)}"


def _list(values: tuple[Any, ...]) -> str:
    return "(" + ", ".join(format_expr(v) for v in values) + ")"


def format_cond(c: n.Cond, level: int = 0) -> str:
    """``level`` 0 = or, 1 = and, 2 = not/atom: parenthesise what binds looser."""
    if isinstance(c, n.Or):
        text = " 或 ".join(format_cond(o, 1) for o in c.operands)
        return f"({text})" if level > 0 else text
    if isinstance(c, n.And):
        text = " 且 ".join(format_cond(o, 2) for o in c.operands)
        return f"({text})" if level > 1 else text
    if isinstance(c, n.Not):
        return "不 " + format_cond(c.operand, 2)
    if isinstance(c, n.Compare):
        return f"{format_expr(c.left)} {c.op} {format_expr(c.right)}"
    if isinstance(c, n.In):
        return f"{format_expr(c.value)} 属于 {_list(c.options)}"
    if isinstance(c, n.Between):
        return f"{format_expr(c.value)} 介于 {format_expr(c.low)} 和 {format_expr(c.high)}"
    if isinstance(c, n.Contains):
        return f"{format_expr(c.container)} 包含 {format_expr(c.item)}"
    if isinstance(c, n.StartsWith):
        return f"{format_expr(c.value)} 开头为 {_list(c.prefixes)}"
    if isinstance(c, n.Known):
        return f"已知 {format_expr(c.ref)}"
    if isinstance(c, n.Exists):
        return f"{format_expr(c.lookup)} 存在"
    if isinstance(c, n.Truthy):
        return format_expr(c.ref)
    kind = "任一" if c.kind == "any" else "所有"
    return f"{kind} {_binder(c.var, c.collection)} 满足 ({format_cond(c.cond)})"


def format_template(t: n.Template) -> str:
    out = []
    for part in t.parts:
        if isinstance(part, str):
            out.append(part.replace("{", "{{").replace("}", "}}"))
        else:
            out.append("{" + part.target + ("." + part.name if part.name else "") + "}")
    return quote("".join(out))


def _scope(items: tuple[n.ScopeItem, ...]) -> str:
    parts = []
    for it in items:
        key = _SCOPE_ZH[it.key]
        if it.key in ("effective", "expires"):
            parts.append(f"{key} {quote(it.values[0])}")
        elif len(it.values) == 1:
            parts.append(f"{key} = {quote(it.values[0])}")
        else:
            parts.append(f"{key} 属于 (" + ", ".join(quote(v) for v in it.values) + ")")
    return "范围 " + ", ".join(parts)


def _level(level: n.Level) -> str:
    if isinstance(level, n.FixedLevel):
        return f"等级 {level.value}"
    default = f" 否则 {level.default}" if level.default is not None else ""
    return f"等级 按表 {level.table}.{level.column}{default}"


def format_trigger(t: n.Trigger) -> str:
    if isinstance(t, n.When):
        return f"当 {format_cond(t.cond)}"
    if isinstance(t, n.ForEach):
        return f"对每个 {_binder(t.var, t.collection)} 满足 {format_cond(t.cond)}"
    return f"对每对 {t.first}, {t.second} 满足 {format_cond(t.cond)}"


def format_rule(r: n.Rule) -> str:
    lines = [f"规则 {r.id} {quote(r.title)} {{"]
    if r.category is not None:
        lines.append(f"  类别 {r.category.main}.{r.category.sub}")
    if r.level is not None:
        lines.append("  " + _level(r.level))
    if r.evidence is not None:
        lines.append(f"  依据 {quote(r.evidence)}")
    if r.scope:
        lines.append("  " + _scope(r.scope))
    if r.trigger is not None:
        lines.append("  " + format_trigger(r.trigger))
    if r.message is not None:
        lines.append(f"  提示 {format_template(r.message)}")
    if r.suggestion is not None:
        lines.append(f"  建议 {format_template(r.suggestion)}")
    return "\n".join([*lines, "}"])


def format_table(t: n.TableDecl) -> str:
    keys = ", ".join(k.name + (" 前缀" if k.match == "prefix" else "") for k in t.keys)
    cols = ", ".join(c.name + " " + _TYPE_ZH[c.type] + (f" {c.unit}" if c.unit else "")
                     + (f" 单位见 {c.unit_column}" if c.unit_column else "") for c in t.columns)
    lines = [f"表 {t.name} 来自 {quote(t.source)} {{", f"  键 {keys}", f"  列 {cols}"]
    if t.prefer is not None:
        lines.append("  优先 " + ("最先" if t.prefer.column is None else f"{t.prefer.column} {_ORDER_ZH[t.prefer.order]}"))
    return "\n".join([*lines, "}"])


def format_override(o: n.Override) -> str:
    head = f"覆盖 {o.rule_id}"
    if o.target is not None:
        key = "机构级别" if o.target.key == "institution_level" else "机构编码"
        values = o.target.values
        head += f" 对 {key} = {quote(values[0])}" if len(values) == 1 else \
            f" 对 {key} 属于 (" + ", ".join(quote(v) for v in values) + ")"
    actions = (["停用"] if o.disable else []) + ([_level(o.level)] if o.level else []) + \
        ([_scope(o.scope)] if o.scope else [])
    return f"{head} {{ {' '.join(actions)} }}"


def format_test(t: n.TestCase) -> str:
    lines = [f"测试 {quote(t.name)} {{"]
    for b in t.briefs:
        words = " ".join(quote(w.text) if w.quoted else w.text for w in b.words)
        lines.append(f"  {_BRIEF_ZH[b.entity]} {words}".rstrip())
    for e in t.expectations:
        if e.fires:
            ids = ", ".join(rid + (f" 等级 {lv}" if lv is not None else "") for rid, lv in zip(e.rule_ids, e.levels,
                                                                                              strict=True))
            lines.append(f"  期望 触发 {ids}")
        elif e.rule_ids:
            lines.append(f"  期望 不触发 {', '.join(e.rule_ids)}")
        else:
            lines.append("  期望 无")
    return "\n".join([*lines, "}"])


def format_file(f: n.RuleFile) -> str:
    """The whole file: header, imports, tables, rules, overrides, tests (in that order)."""
    parts: list[str] = []
    if f.header is not None:
        parts.append(f"规则库 {quote(f.header.name)}" + (f" 版本 {quote(f.header.version)}" if f.header.version else ""))
    parts += [f"导入 {quote(i.path)}" for i in f.imports]
    parts += [format_table(t) for t in f.tables]
    parts += [format_rule(r) for r in f.rules]
    parts += [format_override(o) for o in f.overrides]
    parts += [format_test(t) for t in f.tests]
    return "\n\n".join(parts) + "\n"
