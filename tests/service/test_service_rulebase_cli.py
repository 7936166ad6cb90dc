"""The pharmacist's path from the guide, end to end against a running service:
write a rule → try it on a brief prescription → push → validate → dry-run → activate →
the service serves it → roll back; and the same steps straight on the database."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from dbutil import fresh_database
from svcutil import ROOT, Server, free_port, service_env

RULE = """
规则 ELDERLY-ANTIHISTAMINE-1 "老年人使用第一代抗组胺药" {
  类别 适宜性.老年用药
  等级 3
  依据 "《中国老年人潜在不适当用药判断标准（2017年版）》：第一代抗组胺药（氯苯那敏等）"
  对每个 药品 满足 患者.人群 = 老年 且 药品.成分 包含 "氯苯那敏"
  提示 "{药品.名称} 抗胆碱作用强，老年人易致意识模糊、便秘、尿潴留"
  建议 "换用氯雷他定、西替利嗪等第二代抗组胺药"
}
测试 "75 岁用氯苯那敏：触发" {
  患者 年龄 75 岁
  药品 氯苯那敏 4 mg 每日3次 3 天
  期望 触发 ELDERLY-ANTIHISTAMINE-1 等级 3
}
测试 "75 岁用氯雷他定：不触发" {
  患者 年龄 75 岁
  药品 氯雷他定 10 mg 每日1次 7 天
  期望 不触发 ELDERLY-ANTIHISTAMINE-1
}
"""

BRIEF = """患者 年龄 75 岁 女
处方 门诊
机构 县级医院 编码 "LEAD001"
医师 主治医师
药品 氯苯那敏 4 mg 每日3次 3 天 口服
"""


def run(env: dict[str, str], *args: str, stdin: str | None = None, ok: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([sys.executable, "-m", "audit_engine.cli", *args], env=env, input=stdin, text=True,
                       capture_output=True, timeout=300, cwd=ROOT)
    if ok:
        assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r


def rule_ids(review: dict[str, Any]) -> list[tuple[str, int]]:
    return sorted((f["rule_id"], f["level"]) for f in review["findings"])


@pytest.fixture
def service(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """A running service on a fresh database (SQLite unless the test asks for PostgreSQL)."""
    for url in fresh_database(getattr(request, "param", "sqlite"), tmp_path):
        yield from _serve(url, tmp_path)


def _serve(url: str, tmp_path: Path) -> Any:
    env = service_env(url, tmp_path)
    env["AUDIT_RULEBASE"] = str(ROOT / "rulebase")
    env["AUDIT_RULEBASE_POLL_SECONDS"] = "0.5"
    for k in ("AUDIT_ADMIN_USER", "AUDIT_ADMIN_PASSWORD"):
        env.pop(k, None)
    out = run(env, "institution", "add", "LEAD001", "县人民医院", "--level", "县级医院").stdout
    key = re.search(r"(ak_\S+)", out)
    assert key, out
    run(env, "user", "add", "zhuren", "--role", "admin", stdin="pw-zhuren-123\n")
    run(env, "user", "add", "yaoshi", "--role", "pharmacist", "--institution", "LEAD001", stdin="pw-yaoshi-123\n")
    # the real rules network (audit-engine serve itself): this test is about the rules
    server = Server(env, free_port(), tmp_path / "server.log", fake=False)
    server.start(timeout=180)
    try:
        yield server, env, key.group(1), url
    finally:
        server.stop()


def post_review(server: Server, key: str, bundle: dict[str, Any], number: str) -> dict[str, Any]:
    bundle = json.loads(json.dumps(bundle))
    bundle["identifier"]["value"] = number
    for e in bundle["entry"]:
        if "groupIdentifier" in e["resource"]:
            e["resource"]["groupIdentifier"]["value"] = number
    r = httpx.post(f"{server.base}/api/v1/reviews", json=bundle, headers={"Authorization": f"Bearer {key}"},
                   timeout=60)
    assert r.status_code in (200, 201), r.text
    body: dict[str, Any] = r.json()
    return body


def test_write_try_push_validate_activate_and_roll_back_with_the_cli(service: Any, tmp_path: Path) -> None:
    server, env, key, db_url = service
    # 1. write the rule into a copy of the rulebase, check and test it
    work = tmp_path / "county-rules"
    shutil.copytree(ROOT / "rulebase", work)
    with (work / "special_populations.rules").open("a", encoding="utf-8") as fh:
        fh.write(RULE)
    assert "条规则" in run(env, "check", str(work)).stdout
    assert " 0 failed" in run(env, "test", str(work)).stdout
    # 2. try it on a brief prescription, offline
    brief = tmp_path / "case.txt"
    brief.write_text(BRIEF, encoding="utf-8")
    summary = run(env, "review", str(brief), "--rulebase", str(work)).stdout
    assert summary.startswith("审核结论：医师说明理由（explain，默认策略）")
    assert "[等级 3] ELDERLY-ANTIHISTAMINE-1" in summary
    offline = json.loads(run(env, "review", str(brief), "--rulebase", str(work), "--json").stdout)
    # 3. the same case as FHIR, for the HIS team; the service still runs the shipped rules
    bundle = json.loads(run(env, "brief", "to-fhir", str(brief)).stdout)
    before = post_review(server, key, bundle, "CLI-E2E-1")
    assert "ELDERLY-ANTIHISTAMINE-1" not in {f["rule_id"] for f in before["findings"]}

    admin = {**env, "AUDIT_ADMIN_USER": "zhuren", "AUDIT_ADMIN_PASSWORD": "pw-zhuren-123"}
    url = ["--url", server.base]
    # 4. validate, push, list
    assert run(admin, "rulebase", "validate", str(work), *url).stdout.startswith("校验通过：")
    pushed = run(admin, "rulebase", "push", str(work), "--label", "增加老年抗组胺药规则", *url).stdout
    version = re.search(r"已上传版本 ([0-9a-f]{64})", pushed)
    assert version, pushed
    v = version.group(1)
    listed = run(admin, "rulebase", "list", *url).stdout
    assert f"  {v[:16]}  uploaded" in listed
    # 5. dry-run and activate by a short prefix
    dry = run(admin, "rulebase", "dry-run", v[:12], *url).stdout
    assert dry.startswith(f"试运行版本 {v[:16]}：重审最近 1 张处方")
    activated = run(admin, "rulebase", "activate", v[:12], *url).stdout
    assert f"已激活版本 {v}" in activated and f"服务正在使用：{v}" in activated
    # 6. the service now reviews with the new rule, with the findings of the offline review
    after = post_review(server, key, bundle, "CLI-E2E-2")
    assert rule_ids(after) == rule_ids(offline)
    assert ("ELDERLY-ANTIHISTAMINE-1", 3) in rule_ids(after)
    assert after["verdict"] == offline["verdict"] == "explain"
    # 7. roll back
    rolled = run(admin, "rulebase", "rollback", *url).stdout
    assert "已回滚到版本" in rolled and v not in rolled.splitlines()[0]
    # 8. the audit log names the admin for every step, as for the API
    engine = sa.create_engine(db_url)
    with engine.connect() as c:
        rows = c.execute(sa.text("SELECT action, actor_name, object_id FROM audit_log WHERE object_type = 'rulebase' "
                                 "ORDER BY id")).all()
    engine.dispose()
    steps = [(a, who) for a, who, obj in rows if obj == v[:64] or a == "rulebase.rolled_back"]
    assert [a for a, _ in steps] == ["rulebase.uploaded", "rulebase.activated", "rulebase.rolled_back"]
    assert {who for _, who in steps} == {"zhuren"}


@pytest.mark.parametrize("service", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
def test_the_same_steps_straight_on_the_database_and_the_service_follows(service: Any, tmp_path: Path) -> None:
    server, env, _key, db_url = service
    work = tmp_path / "county-rules"
    shutil.copytree(ROOT / "rulebase", work)
    with (work / "special_populations.rules").open("a", encoding="utf-8") as fh:
        fh.write(RULE)
    admin = {**env, "AUDIT_ADMIN_USER": "zhuren", "AUDIT_ADMIN_PASSWORD": "pw-zhuren-123"}
    db = ["--database-url", db_url]
    pushed = run(admin, "rulebase", "push", str(work), *db).stdout
    v = re.search(r"已上传版本 ([0-9a-f]{64})", pushed).group(1)  # type: ignore[union-attr]
    assert run(admin, "rulebase", "dry-run", v[:10], *db).stdout.startswith(f"试运行版本 {v[:16]}：重审最近 0 张处方")
    out = run(admin, "rulebase", "activate", v[:10], *db).stdout
    assert "各服务进程将在轮询间隔内切换到该版本" in out
    import time

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if httpx.get(f"{server.base}/health", timeout=5).json()["rulebase"]["version"] == v:
            break
        time.sleep(0.5)
    assert httpx.get(f"{server.base}/health", timeout=5).json()["rulebase"]["version"] == v
    assert run(admin, "rulebase", "list", *db).stdout.startswith(f"* {v[:16]}  active")
    rolled = run(admin, "rulebase", "rollback", *db).stdout
    assert rolled.startswith("已回滚到版本 ") and v not in rolled
    engine = sa.create_engine(db_url)
    with engine.connect() as c:
        actions = c.execute(sa.text("SELECT action, actor_name FROM audit_log WHERE object_type = 'rulebase' "
                                    "AND actor_name = 'zhuren' ORDER BY id")).all()
    engine.dispose()
    assert [a for a, _ in actions] == ["rulebase.uploaded", "rulebase.activated", "rulebase.rolled_back"]


def test_a_pharmacist_cannot_push_and_a_broken_rulebase_is_refused_with_file_line_col(service: Any,
                                                                                         tmp_path: Path) -> None:
    server, env, _key, db_url = service
    work = tmp_path / "county-rules"
    shutil.copytree(ROOT / "rulebase", work)
    text = (work / "form.rules").read_text(encoding="utf-8")
    (work / "form.rules").write_text(text.replace("药品.天数 > 7", "药品.天树 > 7", 1), encoding="utf-8")
    pharmacist = {**env, "AUDIT_ADMIN_USER": "yaoshi", "AUDIT_ADMIN_PASSWORD": "pw-yaoshi-123"}
    for where in (["--url", server.base], ["--database-url", db_url]):
        r = run(pharmacist, "rulebase", "push", str(work), *where, ok=False)
        assert r.returncode == 1 and "错误：" in r.stderr and "Traceback" not in r.stderr
    admin = {**env, "AUDIT_ADMIN_USER": "zhuren", "AUDIT_ADMIN_PASSWORD": "pw-zhuren-123"}
    r = run(admin, "rulebase", "push", str(work), "--url", server.base, ok=False)
    assert r.returncode == 1
    assert re.search(r"^form\.rules:\d+:\d+: .*天树", r.stdout, re.M), r.stdout
    wrong = {**admin, "AUDIT_ADMIN_PASSWORD": "not-the-password"}
    r = run(wrong, "rulebase", "list", "--url", server.base, ok=False)
    assert r.returncode == 1 and "登录失败（HTTP 401）" in r.stderr
