"""Load a rulebase: files and their imports, tables, checks, overrides -> one ``Rulebase``.

Files load depth first, each file's imports before the file itself, each file once (a
diamond is fine, a cycle is an error). Every problem found anywhere is collected, and one
``RulebaseError`` holding all of them is raised at the end.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

from audit_engine.errors import Diagnostic, RulebaseError
from audit_engine.lang import nodes as n
from audit_engine.lang.checker import Checker, Vocabulary
from audit_engine.lang.confine import confined, rulebase_root
from audit_engine.lang.parser import parse_text
from audit_engine.lang.tables import TableData, hint_for, load_table, remember_source, source_line


def shown_path(path: Path) -> str:
    """``path`` as diagnostics show it: relative to the working directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path.resolve())


def _at(span: n.Span, message: str, hint: str | None = None) -> Diagnostic:
    end = span.end_col if span.end_line == span.line and span.end_col > span.col else None
    return Diagnostic(span.file, span.line, span.col, message, source_line(span.file, span.line), hint, end)


class _Files:
    """Parses files in import order, collecting diagnostics."""

    def __init__(self, diags: list[Diagnostic], root: Path) -> None:
        self.diags = diags
        self.root = root
        self.order: list[tuple[Path, n.RuleFile]] = []
        self.done: set[Path] = set()
        self.raw: dict[Path, bytes] = {}
        self.unparsed = False  # some file did not parse: its imports are unknown

    def visit(self, path: Path, stack: list[Path], via: n.Import | None) -> None:
        path = path.resolve()
        if path in stack:
            chain = " → ".join(shown_path(p) for p in [*stack[stack.index(path):], path])
            assert via is not None
            self.diags.append(_at(via.span, f"循环导入：{chain}"))
            return
        if path in self.done:
            return
        self.done.add(path)
        if not path.is_file():
            if via is not None:
                self.diags.append(_at(via.span, f"导入的文件不存在：{via.path}",
                                      hint_for(Path(via.path).name, [p.name for p in path.parent.glob("*.rules")])
                                      if path.parent.is_dir() else None))
            else:
                self.diags.append(Diagnostic(shown_path(path), 1, 1, "规则文件不存在"))
            return
        data = path.read_bytes()
        self.raw[path] = data
        text = data.decode("utf-8-sig", errors="replace")
        shown = shown_path(path)
        remember_source(shown, text)
        try:
            parsed = parse_text(text, shown)
        except RulebaseError as err:
            self.diags.extend(err.diagnostics)
            self.unparsed = True
            return
        for imp in parsed.imports:
            target, problem = confined(imp.path, path.parent, self.root)
            if problem is not None:
                self.diags.append(_at(imp.span, f"导入的{problem}"))
                continue
            assert target is not None
            self.visit(target, [*stack, path], imp)
        self.order.append((path, parsed))


def rule_files(path: Path) -> list[Path]:
    """The files a PATH names: the file itself, or every ``*.rules`` directly in a folder."""
    if path.is_dir():
        return sorted(path.glob("*.rules"))
    return [path]


def orphans(root: Path, files: _Files) -> list[Diagnostic]:
    """A diagnostic for every ``.rules`` file under ``root`` that nothing loaded.

    Top-level files load by themselves; a file in a sub-folder (``institutions/``) loads only
    when imported, and one nobody imports would silently never apply. The diagnostic names the
    file that imports its siblings (else a top-level file) and the exact line to add there."""
    loaded = set(files.done)
    out: list[Diagnostic] = []
    for p in sorted(root.rglob("*.rules")):
        real = p.resolve()
        if real in loaded or not real.is_relative_to(root) or any(part.startswith(".") for part in p.relative_to(root).parts):
            continue
        importer = _importer_for(real, files, root)
        line = f'导入 "{Path(os.path.relpath(real, importer.parent)).as_posix()}"'
        where = shown_path(importer)
        if Path(where).is_absolute():  # outside the working directory (an uploaded copy): name it in the rulebase
            where = importer.relative_to(root).as_posix() if importer.is_relative_to(root) else importer.name
        out.append(Diagnostic(shown_path(real), 1, 1,
                              f"此文件未被导入，其中的规则、覆盖和测试都不会生效：请在 {where} 中加一行 {line}"))
    return out


def _importer_for(orphan: Path, files: _Files, root: Path) -> Path:
    """The loaded file that already imports files from ``orphan``'s folder, else a top-level one."""
    for fpath, rf in files.order:
        for imp in rf.imports:
            if (fpath.parent / imp.path).resolve().parent == orphan.parent:
                return fpath
    top = sorted(p.resolve() for p in root.glob("*.rules"))
    named = [p for p in top if p.name == "overrides.rules"]
    return (named or top or [root / "overrides.rules"])[0]


def load_rulebase(path: str | Path, *, vocabulary: Vocabulary | None = None) -> n.Rulebase:
    """Load, check and fold a rulebase (a ``.rules`` file or a folder of them).

    Raises ``RulebaseError`` with every diagnostic when anything is wrong.
    """
    root = Path(path)
    diags: list[Diagnostic] = []
    if not root.exists():
        raise RulebaseError([Diagnostic(str(root), 1, 1, "规则文件或目录不存在")])
    confine = rulebase_root(root)
    files = _Files(diags, confine)
    entries = rule_files(root)
    if not entries:
        raise RulebaseError([Diagnostic(str(root), 1, 1, "目录中没有 .rules 文件")])
    for entry in entries:
        entry_real = entry.resolve()
        if not entry_real.is_relative_to(confine):
            diags.append(Diagnostic(shown_path(entry), 1, 1, "规则文件是指向规则库目录之外的链接，不予读取"))
            continue
        files.visit(entry, [], None)
    if root.is_dir() and not files.unparsed:  # with a syntax error, what it imports is unknown
        diags.extend(orphans(confine, files))
    vocab = vocabulary if vocabulary is not None else Vocabulary.default()

    # tables
    decls: dict[str, n.TableDecl] = {}
    data: dict[str, TableData] = {}
    table_bytes: dict[Path, bytes] = {}
    for fpath, rf in files.order:
        for decl in rf.tables:
            if decl.name in decls:
                first = decls[decl.name].span
                diags.append(_at(decl.span, f"表“{decl.name}”重复定义（首次定义于 {first.file}:{first.line}）"))
                continue
            decls[decl.name] = decl
            _check_decl(decl, diags)
            loaded = load_table(decl, fpath.parent, diags, confine)
            if loaded is not None:
                data[decl.name] = loaded
                table_bytes[Path(loaded.path)] = Path(loaded.path).read_bytes()

    checker = Checker(decls, data, vocab, diags)

    # rules, in load order
    rules: dict[str, n.Rule] = {}
    for _, rf in files.order:
        for rule in rf.rules:
            checked = checker.check_rule(rule)
            if rule.id in rules:
                first = rules[rule.id].span
                diags.append(_at(rule.span, f"规则编号 {rule.id} 重复（首次定义于 {first.file}:{first.line}）"))
                continue
            rules[rule.id] = checked

    # overrides, in load order
    disabled: set[str] = set()
    for _, rf in files.order:
        for ov in rf.overrides:
            target = rules.get(ov.rule_id)
            checker.check_override(ov, target, rules)
            if target is not None:
                rules[ov.rule_id] = _apply(target, ov, disabled)

    # table cells, now that every lookup has told the checker what it reads from each column
    checker.check_table_cells()

    # test cases
    tests: list[n.TestCase] = []
    from audit_engine.lang import testcases

    for _, rf in files.order:
        for case in rf.tests:
            diags.extend(testcases.check_case(case, set(rules) | disabled))
            tests.append(case)

    if diags:
        raise RulebaseError(_unique(diags))
    header = next((rf.header for _, rf in reversed(files.order) if rf.header is not None), None)
    digest = hashlib.sha256()
    for p, raw in sorted({**files.raw, **table_bytes}.items(), key=lambda kv: str(kv[0])):
        digest.update(str(p.relative_to(_common_root(files.raw, table_bytes))).encode())
        digest.update(b"\0")
        digest.update(raw)
        digest.update(b"\0")
    return n.Rulebase(
        name=header.name if header else (root.stem if root.is_file() else root.name),
        version=header.version if header else None,
        rules=tuple(r for rid, r in rules.items() if rid not in disabled),
        tables=data,
        tests=tuple(tests),
        files=tuple(shown_path(p) for p, _ in files.order),
        source_hash=digest.hexdigest(),
    )


def _apply(rule: n.Rule, ov: n.Override, disabled: set[str]) -> n.Rule:
    """Fold an unconditional override into the rule, or keep a conditional one as a variant."""
    if ov.target is not None:
        return dataclasses.replace(rule, variants=(*rule.variants, ov))
    if ov.disable:
        disabled.add(rule.id)
    level = rule.level
    variants = rule.variants
    if ov.level is not None:
        # A later unconditional level beats earlier conditional ones.
        level = ov.level
        variants = tuple(dataclasses.replace(v, level=None) for v in variants)
    scope = n.Scope.of(ov.scope, rule.effective_scope) if ov.scope else rule.effective_scope
    return dataclasses.replace(rule, level=level, variants=variants, effective_scope=scope)


def _check_decl(decl: n.TableDecl, diags: list[Diagnostic]) -> None:
    from audit_engine import units

    names: set[str] = set()
    cols: list[n.KeyColumn | n.ValueColumn] = [*decl.keys, *decl.columns]
    for col in cols:
        if col.name in names:
            diags.append(_at(col.span, f"表“{decl.name}”的列“{col.name}”重复声明"))
        names.add(col.name)
    for vc in decl.columns:
        if vc.unit is not None:
            try:
                units.lookup(vc.unit)
            except units.UnitError:
                diags.append(_at(vc.span, f"未知单位“{vc.unit}”", hint_for(vc.unit, units.known_units())))
            if vc.type not in ("number", "int"):
                diags.append(_at(vc.span, f"列“{vc.name}”带单位，类型应为 数值"))
    prefer = decl.prefer
    if prefer is not None and prefer.column is not None:
        pcol = next((c for c in decl.columns if c.name == prefer.column), None)
        if pcol is None:
            diags.append(_at(prefer.span, f"优先依据的列“{prefer.column}”未在表“{decl.name}”中声明",
                             hint_for(prefer.column, [c.name for c in decl.columns])))
        elif pcol.type not in ("int", "number"):
            diags.append(_at(prefer.span, f"优先依据的列“{prefer.column}”应为数值或整数"))


def _common_root(*groups: dict[Path, bytes]) -> Path:
    import os

    paths = [str(p) for g in groups for p in g]
    return Path(os.path.commonpath(paths)) if len(paths) > 1 else Path(paths[0]).parent


def _unique(diags: list[Diagnostic]) -> list[Diagnostic]:
    seen: set[Diagnostic] = set()
    out = []
    for d in diags:
        if d not in seen:
            seen.add(d)
            out.append(d)
    return out
