"""Rule text -> syntax tree (``nodes.py``), with syntax errors as file:line:col diagnostics.

The grammar is ``grammar/rules.lark`` (LALR(1), contextual lexer). The Transformer below only
builds nodes; every meaning check lives in ``checker.py``.
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path
from typing import Any, cast

import lark
from lark import Token, Transformer
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from audit_engine.errors import Diagnostic, RulebaseError
from audit_engine.lang import nodes as n

GRAMMAR_PATH = Path(__file__).resolve().parents[2] / "grammar" / "rules.lark"

_CMP = {
    "=": "=", "==": "=", "等于": "=", "!=": "!=", "≠": "!=", "不等于": "!=",
    "<": "<", "小于": "<", "低于": "<", "<=": "<=", "≤": "<=", "小于等于": "<=", "不超过": "<=", "至多": "<=",
    ">": ">", "大于": ">", "超过": ">", ">=": ">=", "≥": ">=", "大于等于": ">=", "至少": ">=",
}
_COLLECTIONS = {"药品": "item", "item": "item", "items": "item", "drug": "item",
                "诊断": "diagnosis", "diagnosis": "diagnosis", "diagnoses": "diagnosis"}
_BRIEF = {"患者": "patient", "patient": "patient", "处方": "prescription", "prescription": "prescription",
          "医师": "prescriber", "prescriber": "prescriber", "机构": "institution", "institution": "institution",
          "诊断": "diagnosis", "diagnosis": "diagnosis", "药品": "item", "drug": "item"}
_SCOPE_KEYS = {"机构级别": "institution_level", "处方类型": "prescription_type", "科室": "department",
               "机构编码": "institution_code", "生效": "effective", "失效": "expires"}
_COL_TYPES = {"文本": "text", "文本集": "textset", "整数": "int", "数值": "number", "布尔": "bool"}
_ORDERS = {"最高": "highest", "最低": "lowest", "最先": "first", "highest": "highest", "lowest": "lowest",
           "first": "first"}
_BOOLS = {"是": True, "真": True, "true": True, "否": False, "假": False, "false": False}
# Friendly names of the grammar's named terminals, for "expected ..." in syntax errors.
_TERMINAL_WORDS = {
    "NAME": "名称", "STRING": "带引号的文字", "NUMBER": "数字", "INT": "整数", "RULE_ID": "规则编号",
    "UNIT": "单位", "WORD": "简述词", "$END": "文件结尾",
}


def collection_of(word: str) -> str:
    """The canonical collection ("item" / "diagnosis") a quantifier word names, else the word."""
    return _COLLECTIONS.get(word, word)


_LOCK = threading.Lock()


@functools.cache
def _lark() -> tuple[lark.Lark, _Build]:
    """The parser, with the node builder run inline (no intermediate parse tree: 2x faster).

    The builder's ``file`` is set per parse under ``_LOCK``.
    """
    builder = _Build("<text>")
    parser = lark.Lark(GRAMMAR_PATH.read_text(encoding="utf-8"), parser="lalr", lexer="contextual",
                       maybe_placeholders=False, transformer=builder)
    return parser, builder


def _unquote(tok: Token) -> str:
    s = str(tok)
    if s.startswith("“"):
        return s[1:-1]
    body = s[1:-1]
    if "\\" not in body:
        return body
    out, i = [], 0
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            out.append({"n": "\n", "t": "\t"}.get(nxt, nxt))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


class _Build(Transformer[Token, Any]):
    """Builds nodes as the parser reduces; spans come from the tokens kept in the tree."""

    def __init__(self, file: str) -> None:
        super().__init__()
        self.file = file

    # -- helpers
    def _cover(self, children: Any) -> n.Span:
        """The span from the first to the last positioned child (tokens kept in the tree and
        child nodes); keywords are filtered out of the tree, so a span starts at the first
        name, value or sub-node."""
        first = _edge(children, 0)
        last = _edge(children, -1)
        if first is None or last is None:
            return n.Span(self.file, 1, 1, 1, 1)
        return n.Span(self.file, first[0], first[1], last[2], last[3])

    def _tspan(self, tok: Token) -> n.Span:
        return n.Span(self.file, tok.line or 1, tok.column or 1, tok.end_line or tok.line or 1,
                      tok.end_column or (tok.column or 1) + len(tok))

    def _template(self, tok: Token) -> n.Template:
        text = _unquote(tok)
        parts: list[str | n.Placeholder] = []
        buf: list[str] = []
        i = 0
        base_col = (tok.column or 1) + 1
        while i < len(text):
            c = text[i]
            if c in "{}" and text[i:i + 2] in ("{{", "}}"):
                buf.append(c)
                i += 2
                continue
            if c == "{":
                end = text.find("}", i)
                if end < 0:
                    end = len(text)
                inner = text[i + 1:end].strip()
                if buf:
                    parts.append("".join(buf))
                    buf = []
                target, _, name = inner.partition(".")
                span = n.Span(self.file, tok.line or 1, base_col + i, tok.line or 1, base_col + end + 1)
                parts.append(n.Placeholder(target.strip(), name.strip(), span))
                i = end + 1
                continue
            buf.append(c)
            i += 1
        if buf:
            parts.append("".join(buf))
        return n.Template(tuple(parts), self._tspan(tok))

    # -- file level
    def start(self, items: list[Any]) -> list[Any]:
        return items

    def header(self, c: list[Token]) -> n.Header:
        return n.Header(_unquote(c[0]), _unquote(c[1]) if len(c) > 1 else None, self._cover(c))

    def import_(self, c: list[Token]) -> n.Import:
        return n.Import(_unquote(c[0]), self._cover(c))

    # -- tables
    def table(self, c: list[Any]) -> n.TableDecl:
        prefer = c[4] if len(c) > 4 else None
        return n.TableDecl(str(c[0]), _unquote(c[1]), tuple(c[2]), tuple(c[3]), prefer, self._cover(c),
                           self._tspan(c[1]))

    def table_keys(self, c: list[n.KeyColumn]) -> list[n.KeyColumn]:
        return c

    def table_cols(self, c: list[n.ValueColumn]) -> list[n.ValueColumn]:
        return c

    def key_col(self, c: list[Token]) -> n.KeyColumn:
        return n.KeyColumn(str(c[0]), "prefix" if len(c) > 1 else "exact", self._cover(c))

    def col_type(self, c: list[Token]) -> str:
        return _COL_TYPES.get(str(c[0]), str(c[0]))

    def value_col(self, c: list[Any]) -> n.ValueColumn:
        unit = unit_col = None
        if len(c) > 2:
            if c[2].type == "UNIT":
                unit = str(c[2])
            else:
                unit_col = str(c[2])
        return n.ValueColumn(str(c[0]), cast(n.ColumnType, c[1]), unit, unit_col, self._cover(c))

    def table_prefer(self, c: list[Token]) -> n.Prefer:
        if len(c) == 2:
            return n.Prefer(None, "first", self._cover(c))
        return n.Prefer(str(c[1]), cast(Any, _ORDERS[str(c[2])]), self._cover(c))

    # -- rules
    def rule(self, c: list[Any]) -> n.Rule:
        parts: dict[str, Any] = {}
        scope: list[n.ScopeItem] = []
        dupes: list[n.Span] = []
        for clause in c[2:]:
            key, value, span = _clause(clause)
            if key == "scope":
                scope.extend(value)
            elif key in parts:
                dupes.append(span)
            else:
                parts[key] = value
        return n.Rule(
            id=str(c[0]), title=_unquote(c[1]), category=parts.get("category"), level=parts.get("level"),
            evidence=parts.get("evidence"), scope=tuple(scope), trigger=parts.get("trigger"),
            message=parts.get("message"), suggestion=parts.get("suggestion"), span=self._tspan(c[0]),
            duplicates=tuple(dupes),
        )

    def category(self, c: list[Token]) -> n.Category:
        return n.Category(str(c[0]), str(c[1]), self._cover(c))

    def level(self, c: list[Token]) -> n.Level:
        if len(c) == 1:
            return n.FixedLevel(int(c[0]), self._cover(c))
        default = int(c[2]) if len(c) > 2 else None
        return n.TableLevel(str(c[0]), str(c[1]), default, self._cover(c))

    def evidence(self, c: list[Token]) -> _Clause:
        return _Clause("evidence", _unquote(c[0]), self._cover(c))

    def scope(self, c: list[n.ScopeItem]) -> list[n.ScopeItem]:
        return c

    def scope_item(self, c: list[Any]) -> n.ScopeItem:
        key = cast(n.ScopeKey, str(c[0]))
        if key in ("effective", "expires"):
            values: tuple[str, ...] = (_unquote(c[1]),)
        else:
            values = tuple(_literal_text(v) for v in c[1:])
        return n.ScopeItem(key, values, self._cover(c))

    def scope_key(self, c: list[Token]) -> Token:
        return c[0].update(value=_SCOPE_KEYS.get(str(c[0]), str(c[0])))

    date_key = scope_key

    def message(self, c: list[Token]) -> _Clause:
        t = self._template(c[0])
        return _Clause("message", t, t.span)

    def suggestion(self, c: list[Token]) -> _Clause:
        t = self._template(c[0])
        return _Clause("suggestion", t, t.span)

    def when(self, c: list[Any]) -> n.When:
        return n.When(c[0], self._cover(c))

    def for_each(self, c: list[Any]) -> n.ForEach:
        var, coll = c[0]
        return n.ForEach(str(var), c[1], self._cover(c), collection=coll)

    def for_each_pair(self, c: list[Any]) -> n.ForEachPair:
        return n.ForEachPair(str(c[0]), str(c[1]), c[2], self._cover(c))

    def binder(self, c: list[Token]) -> tuple[Token, str]:
        return c[0], collection_of(str(c[1]) if len(c) > 1 else str(c[0]))

    # -- conditions
    def or_cond(self, c: list[Any]) -> n.Or:
        return n.Or(tuple(c), self._cover(c))

    def and_cond(self, c: list[Any]) -> n.And:
        return n.And(tuple(c), self._cover(c))

    def not_(self, c: list[Any]) -> n.Not:
        return n.Not(c[0], self._cover(c))

    def compare(self, c: list[Any]) -> n.Compare:
        return n.Compare(cast(n.CompareOp, c[1]), c[0], c[2], self._cover(c))

    def cmp_op(self, c: list[Token]) -> str:
        return _CMP[str(c[0])]

    def in_(self, c: list[Any]) -> n.In:
        return n.In(c[0], tuple(c[1:]), self._cover(c))

    def between(self, c: list[Any]) -> n.Between:
        return n.Between(c[0], c[1], c[-1], self._cover(c))

    def contains(self, c: list[Any]) -> n.Contains:
        return n.Contains(c[0], c[1], self._cover(c))

    def starts_with(self, c: list[Any]) -> n.StartsWith:
        return n.StartsWith(c[0], tuple(c[1:]), self._cover(c))

    def known(self, c: list[Any]) -> n.Known:
        return n.Known(c[0], self._cover(c))

    def exists(self, c: list[Any]) -> n.Exists:
        return n.Exists(c[0], self._cover(c))

    def truthy(self, c: list[Any]) -> n.Truthy:
        return n.Truthy(c[0], self._cover(c))

    def quantified(self, c: list[Any]) -> n.Quantified:
        kind = "any" if str(c[0]) in ("任一", "any") else "all"
        var, coll = c[1]
        return n.Quantified(cast(Any, kind), str(var), cast(Any, coll), c[2], self._cover(c))

    def quant(self, c: list[Token]) -> Token:
        return c[0]

    # -- expressions
    def field_ref(self, c: list[Token]) -> n.FieldRef:
        return n.FieldRef(str(c[0]), str(c[1]), self._cover(c))

    def lookup(self, c: list[Any]) -> n.Lookup:
        return n.Lookup(str(c[0]), tuple(c[1:]), self._cover(c))

    def column(self, c: list[Any]) -> n.Column:
        return n.Column(c[0], str(c[1]), self._cover(c))

    def count(self, c: list[Any]) -> n.Count:
        var, coll = c[1]
        return n.Count(str(var), cast(Any, coll), c[2] if len(c) > 2 else None, self._cover(c))

    def count_kw(self, c: list[Token]) -> Token:
        return c[0]

    def number(self, c: list[Token]) -> n.Number:
        return n.Number(float(c[0]), str(c[1]) if len(c) > 1 else None, self._cover(c))

    def text(self, c: list[Token]) -> n.Text:
        return n.Text(_unquote(c[0]), self._cover(c))

    def symbol(self, c: list[Token]) -> n.Symbol:
        return n.Symbol(str(c[0]), self._cover(c))

    def bool_(self, c: list[Token]) -> n.Bool:
        return n.Bool(_BOOLS[str(c[0])], self._cover(c))

    # -- overrides
    def override(self, c: list[Any]) -> n.Override:
        target = None
        disable = False
        level: n.Level | None = None
        scope: list[n.ScopeItem] = []
        for part in c[1:]:
            if isinstance(part, n.OverrideTarget):
                target = part
            elif isinstance(part, _Disable):
                disable = True
            elif isinstance(part, list):
                scope.extend(part)
            else:
                level = part
        return n.Override(str(c[0]), target, disable, level, tuple(scope), self._tspan(c[0]))

    def override_target(self, c: list[Any]) -> n.OverrideTarget:
        key = "institution_level" if c[0] in ("机构级别", "institution_level") else "institution_code"
        return n.OverrideTarget(cast(Any, key), tuple(_literal_text(v) for v in c[1:]), self._cover(c))

    def target_key(self, c: list[Token]) -> str:
        return str(c[0])

    def disable(self, c: list[Any]) -> _Disable:
        return _Disable()

    # -- tests
    def test(self, c: list[Any]) -> n.TestCase:
        briefs = tuple(x for x in c[1:] if isinstance(x, n.Brief))
        expects = tuple(x for x in c[1:] if isinstance(x, n.Expectation))
        return n.TestCase(_unquote(c[0]), briefs, expects, self._cover(c))

    def brief(self, c: list[Token]) -> n.Brief:
        words = tuple(n.Word(_unquote(t) if t.type == "STRING" else str(t), t.type == "STRING", self._tspan(t))
                      for t in c[1:])
        return n.Brief(_BRIEF[str(c[0])], words, self._cover(c))

    def brief_kw(self, c: list[Token]) -> Token:
        return c[0]

    def expect(self, c: list[Any]) -> n.Expectation:
        word = str(c[1])
        span = self._cover(c)
        if word in ("无", "none"):
            return n.Expectation(False, (), (), span)
        rest = [x for x in c[2:] if not (isinstance(x, Token) and x.type == "COMMA")]
        if word in ("触发", "fire", "fires"):
            return n.Expectation(True, tuple(r[0] for r in rest), tuple(r[1] for r in rest), span)
        ids = tuple(str(x) for x in rest if isinstance(x, Token) and x.type == "RULE_ID")
        return n.Expectation(False, ids, tuple(None for _ in ids), span)

    def expect_id(self, c: list[Token]) -> tuple[str, int | None]:
        return str(c[0]), (int(c[1]) if len(c) > 1 else None)


class _Clause:
    """A rule clause whose value is not a node of its own (evidence, message, suggestion)."""

    def __init__(self, key: str, value: Any, span: n.Span) -> None:
        self.key, self.value, self.span = key, value, span


class _Disable:
    pass


def _clause(clause: Any) -> tuple[str, Any, n.Span]:
    if isinstance(clause, _Clause):
        return clause.key, clause.value, clause.span
    if isinstance(clause, list):
        return "scope", clause, clause[0].span
    if isinstance(clause, n.Category):
        return "category", clause, clause.span
    if isinstance(clause, n.FixedLevel | n.TableLevel):
        return "level", clause, clause.span
    return "trigger", clause, clause.span


def _edge(x: Any, side: int) -> tuple[int, int, int, int] | None:
    """(line, col, end_line, end_col) of the first (side 0) or last (side -1) positioned leaf."""
    if isinstance(x, Token):
        if x.line is None:
            return None
        return (x.line, x.column or 1, x.end_line or x.line, x.end_column or (x.column or 1) + len(x))
    span = getattr(x, "span", None)
    if isinstance(span, n.Span):
        return (span.line, span.col, span.end_line, span.end_col)
    if isinstance(x, list | tuple):
        seq = x if side == 0 else list(reversed(x))
        for y in seq:
            e = _edge(y, side)
            if e is not None:
                return e
    return None


def _literal_text(v: Any) -> str:
    return v.value if isinstance(v, n.Text | n.Symbol) else str(getattr(v, "value", v))


def _describe_expected(expected: set[str] | frozenset[str]) -> str:
    """The expected tokens in words a pharmacist reads: Chinese keywords first (their English
    twins are left out when a Chinese form is listed), then symbols, then kinds of token."""
    parser = _lark()[0]
    keywords: set[str] = set()
    kinds: set[str] = set()
    for name in expected:
        if name in _TERMINAL_WORDS:
            kinds.add(_TERMINAL_WORDS[name])
            continue
        try:
            pattern = parser.get_terminal(name).pattern
        except KeyError:
            continue
        if isinstance(pattern, lark.lexer.PatternStr):
            keywords.add(pattern.value)
    chinese = sorted(k for k in keywords if not k.isascii())
    symbols = sorted(k for k in keywords if k.isascii() and not k[0].isalpha())
    english = sorted(k for k in keywords if k.isascii() and k[0].isalpha()) if not chinese else []
    words = [f"“{k}”" for k in (*chinese, *symbols, *english)] + sorted(kinds)
    if len(words) > 12:
        words = [*words[:12], "…"]
    return "、".join(words)


def _state_terminals(err: UnexpectedToken) -> set[str]:
    """Every terminal the parser state accepts. lark's own ``expected`` drops keywords whose
    generated terminal name is not upper case, which is every Chinese keyword."""
    state = getattr(err, "state", None)
    try:
        return {name for name in state.parse_conf.states[state.position] if name != "$END"}  # type: ignore[union-attr]
    except (AttributeError, KeyError, TypeError):
        return set()


def _syntax_error(err: UnexpectedInput, file: str, lines: list[str]) -> Diagnostic:
    line = getattr(err, "line", 1) or 1
    col = getattr(err, "column", 1) or 1
    if line < 1:
        line, col = len(lines) or 1, (len(lines[-1]) + 1 if lines else 1)
    source = lines[line - 1] if 0 < line <= len(lines) else ""
    if isinstance(err, UnexpectedToken):
        tok = err.token
        if tok.type == "$END":
            message = "语法错误：文件意外结束"
            end = None
        else:
            message = f"语法错误：此处不应出现“{tok}”"
            end = col + max(1, len(str(tok)))
        expected = _state_terminals(err) or set(err.expected)
        hint = f"应为 {_describe_expected(expected)}" if expected else None
        return Diagnostic(file, line, col, message, source, hint, end)
    if isinstance(err, UnexpectedCharacters):
        ch = source[col - 1] if 0 < col <= len(source) else "?"
        allowed = err.allowed or set()
        hint = f"应为 {_describe_expected(allowed)}" if allowed else None
        return Diagnostic(file, line, col, f"语法错误：无法识别的字符“{ch}”", source, hint, None)
    if isinstance(err, UnexpectedEOF):
        hint = f"应为 {_describe_expected(set(err.expected))}" if err.expected else None
        return Diagnostic(file, line, col, "语法错误：文件意外结束", source, hint, None)
    return Diagnostic(file, line, col, "语法错误", source)


def parse_text(text: str, file: str = "<text>") -> n.RuleFile:
    """Parse one rule file's text; raises RulebaseError with a syntax diagnostic.

    Results are cached by (text, file): the tree is immutable, and reloading a rulebase in
    which one file changed then parses only that file.
    """
    return _parse_cached(text, file)


@functools.lru_cache(maxsize=256)
def _parse_cached(text: str, file: str) -> n.RuleFile:
    parser, builder = _lark()
    try:
        with _LOCK:
            builder.file = file
            items: list[Any] = cast(list[Any], parser.parse(text))
    except UnexpectedInput as err:
        raise RulebaseError([_syntax_error(err, file, text.splitlines())]) from None
    header = next((i for i in items if isinstance(i, n.Header)), None)
    return n.RuleFile(
        path=file,
        header=header,
        imports=tuple(i for i in items if isinstance(i, n.Import)),
        tables=tuple(i for i in items if isinstance(i, n.TableDecl)),
        rules=tuple(i for i in items if isinstance(i, n.Rule)),
        overrides=tuple(i for i in items if isinstance(i, n.Override)),
        tests=tuple(i for i in items if isinstance(i, n.TestCase)),
    )


def parse_file(path: str | Path) -> n.RuleFile:
    """Parse the rule file at ``path`` (UTF-8)."""
    p = Path(path)
    return parse_text(p.read_text(encoding="utf-8"), str(p))
