"""Rule text reads only the uploaded rulebase: validate never reads, nor echoes, a server file."""

from __future__ import annotations

from apiworld import SAMPLE_RULEBASE, World


def sample_files() -> dict[str, str]:
    return {p.relative_to(SAMPLE_RULEBASE).as_posix(): p.read_text(encoding="utf-8")
            for p in SAMPLE_RULEBASE.rglob("*") if p.is_file()}


def validate(w: World, files: dict[str, str]) -> tuple[int, dict]:
    r = w.client.post("/api/v1/rulebases/validate", json={"files": files}, headers=w.user("admin"))
    return r.status_code, r.json()


def test_importing_etc_passwd_is_an_error_at_the_import_that_does_not_echo_the_file(rules_world: World) -> None:
    files = sample_files()
    files["base.rules"] = 'import "/etc/passwd"\n' + files["base.rules"]
    status, body = validate(rules_world, files)
    assert status == 422
    (diag,) = [d for d in body["diagnostics"] if "导入" in d["message"]]
    assert (diag["file"], diag["line"], diag["col"]) == ("base.rules", 1, 8)
    assert "绝对路径" in diag["message"]
    assert "root:" not in str(body)


def test_proc_self_environ_as_import_or_table_source_never_reaches_the_answer(rules_world: World) -> None:
    files = sample_files()
    files["base.rules"] = ('导入 "/proc/self/environ"\n'
                           '表 环境 来自 "../../../../../../../proc/self/environ" { 键 甲 列 乙 文本 }\n'
                           + files["base.rules"])
    status, body = validate(rules_world, files)
    assert status == 422
    where = sorted((d["line"], d["col"]) for d in body["diagnostics"] if d["file"] == "base.rules")
    assert (1, 4) in where and (2, 9) in where
    text = str(body)
    assert "PATH=" not in text and "DATABASE_URL" not in text


def test_dotdot_out_of_the_uploaded_folder_is_refused(rules_world: World) -> None:
    files = sample_files()
    files["base.rules"] = '导入 "../../base.rules"\n' + files["base.rules"]
    status, body = validate(rules_world, files)
    assert status == 422
    assert any("规则库目录之外" in d["message"] and d["line"] == 1 for d in body["diagnostics"])


def test_an_uploaded_file_nobody_imports_is_named_with_the_line_to_add(rules_world: World) -> None:
    files = sample_files()
    files["institutions/dc-9.rules"] = '导入 "../base.rules"\n'
    status, body = validate(rules_world, files)
    assert status == 422
    (diag,) = body["diagnostics"]
    assert diag["file"] == "institutions/dc-9.rules" and diag["line"] == 1
    assert diag["message"].endswith('中加一行 导入 "institutions/dc-9.rules"')
    assert "/" not in diag["message"].split("请在 ")[1].split(" 中加一行")[0]
