// 药师工作台: keyboard-first queue client over the JSON API (no framework, no CDN).
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const state = { token: sessionStorage.getItem("auditToken"), user: sessionStorage.getItem("auditUser"),
                  tasks: [], selected: 0, detail: null, busy: false };
  const STATUS_ZH = { pending: "待领取", claimed: "已领取", returned: "已打回", escalated: "超时升级",
                      approved: "已通过", rejected: "已拒绝", modified: "已修改", double_signed: "双签",
                      timeout_passed: "超时通过", abandoned: "已关闭" };

  function say(text, kind) { const s = $("status"); s.textContent = text; s.className = kind || ""; }
  function esc(t) { return String(t == null ? "" : t).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c])); }

  async function api(method, path, body) {
    const headers = { Authorization: "Bearer " + state.token };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    if (r.status === 401) { logout(); throw new Error("登录已失效，请重新登录"); }
    if (r.status === 204) return null;
    const data = await r.json().catch(() => ({}));
    if (!r.ok) {
      const issue = (data.issue && data.issue[0]) || {};
      throw new Error(issue.diagnostics || ("请求失败 " + r.status));
    }
    return data;
  }

  function showLogin() { $("login").hidden = false; $("bench").hidden = true; $("logout").hidden = true; $("who").textContent = ""; }
  function showBench() {
    $("login").hidden = true; $("bench").hidden = false; $("logout").hidden = false;
    $("who").textContent = "药师：" + (state.user || "");
    refresh();
  }
  function logout() { sessionStorage.removeItem("auditToken"); state.token = null; showLogin(); }

  $("login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const form = new FormData(ev.target);
    const r = await fetch("/api/v1/auth/token", { method: "POST", body: new URLSearchParams(form) });
    const data = await r.json().catch(() => ({}));
    if (!r.ok) { $("login-error").textContent = "用户名或密码错误"; return; }
    state.token = data.access_token; state.user = data.username;
    sessionStorage.setItem("auditToken", state.token); sessionStorage.setItem("auditUser", state.user);
    $("login-error").textContent = "";
    showBench();
  });
  $("logout").addEventListener("click", logout);

  async function refresh(selectId) {
    try {
      const data = await api("GET", "/api/v1/tasks");
      state.tasks = data.tasks;
      if (selectId) {
        const i = state.tasks.findIndex((t) => t.id === selectId);
        if (i >= 0) state.selected = i;
      }
      state.selected = Math.max(0, Math.min(state.selected, state.tasks.length - 1));
      renderQueue();
      await loadDetail();
    } catch (e) { say(e.message, "bad"); }
  }

  function renderQueue() {
    const ol = $("queue");
    ol.innerHTML = "";
    state.tasks.forEach((t, i) => {
      const li = document.createElement("li");
      li.dataset.id = t.id;
      li.className = i === state.selected ? "selected" : "";
      li.innerHTML =
        (t.emergency ? '<span class="tag emergency">急诊</span>' : "") +
        (t.escalated ? '<span class="tag emergency">超时升级</span>' : "") +
        '<span class="tag ' + (t.status === "claimed" ? "claimed" : "") + '">' + esc(STATUS_ZH[t.status] || t.status) + "</span>" +
        '<span class="tag ' + (t.max_level >= 7 ? "lv-high" : "") + '">' + esc(t.max_level) + " 级</span>" +
        '<div class="meta">' + esc(t.institution_code || "") + " · " + esc((t.created_at || "").replace("T", " ").slice(0, 16)) + "</div>";
      li.addEventListener("click", () => { state.selected = i; renderQueue(); loadDetail(); });
      ol.appendChild(li);
    });
    $("queue-count").textContent = "（" + state.tasks.length + "）";
    $("queue-empty").hidden = state.tasks.length > 0;
    const sel = ol.querySelector(".selected");
    if (sel) sel.scrollIntoView({ block: "nearest" });
  }

  // Context facts: null means the engine could not establish the fact, shown as 未知 (never blank).
  const UNKNOWN = '<span class="unknown">未知</span>';
  const known = (v) => v !== null && v !== undefined && v !== "";
  const num = (v) => String(Math.round(Number(v) * 1000) / 1000);
  const yesNo = (v) => (v === true ? '<span class="alert">是</span>' : v === false ? "否" : UNKNOWN);
  const list = (v, fmt) => (!Array.isArray(v) ? UNKNOWN : v.length ? v.map(fmt).join("、") : "无");

  function age(p) {
    if (!known(p.age_years)) return UNKNOWN;
    if (p.age_years >= 3) return esc(p.age_years) + " 岁";
    if (p.age_years >= 1) return esc(p.age_years) + " 岁 " + esc((p.age_months || 0) % 12) + " 个月";
    if (known(p.age_months) && p.age_months >= 1) return esc(p.age_months) + " 个月（" + esc(p.age_days) + " 天）";
    return known(p.age_days) ? esc(p.age_days) + " 天" : UNKNOWN;
  }

  function contextHtml(ctx, findings) {
    const titles = {};
    (findings || []).forEach((f) => { titles[f.rule_id] = f.title; });
    if (!ctx) return '<p class="unknown">未能取得患者与处方信息</p>';
    const p = ctx.patient || {}, rx = ctx.prescription || {};
    const v = (x, unit) => (known(x) ? esc(typeof x === "number" ? num(x) : x) + (unit ? " " + unit : "") : UNKNOWN);
    const cell = (label, html, cls) => '<div class="fact' + (cls ? " " + cls : "") + '"><dt>' + label + "</dt><dd>" + html + "</dd></div>";
    const allergies = list(p.allergies, (a) => '<span class="alert">' + esc(a) + "</span>");
    const diagnoses = list(p.diagnoses, (d) => (known(d.code) ? "<code>" + esc(d.code) + "</code> " : "") + (known(d.name) ? esc(d.name) : UNKNOWN));
    const patient =
      '<dl id="patient" class="facts">' +
      cell("性别", v(p.sex)) + cell("年龄", age(p) + (known(p.population) ? '<small>（' + esc(p.population) + "）</small>" : "")) +
      cell("体重", v(p.weight, "kg")) + cell("eGFR", v(p.egfr, "mL/min/1.73m²")) +
      cell("妊娠", yesNo(p.pregnant)) + cell("哺乳", yesNo(p.lactating)) +
      cell("过敏", allergies, "wide") + cell("诊断", diagnoses, "wide") + "</dl>";
    const type = known(rx.type) ? '<span class="tag' + (rx.type === "急诊" ? " emergency" : "") + '">' + esc(rx.type) + "</span>" : UNKNOWN;
    const prescription =
      '<dl id="prescription" class="facts">' +
      cell("处方类型", type + (rx.long_term ? '<span class="tag">长期处方</span>' : "")) + cell("科室", v(rx.department)) +
      cell("医师职称", v(rx.prescriber_title)) +
      cell("机构", v(rx.institution_code) + (known(rx.institution_level) ? "（" + esc(rx.institution_level) + "）" : "")) +
      cell("开具日期", v(rx.date)) + "</dl>";
    const rows = (ctx.items || []).map((it, i) => {
      const flagged = (it.implicated_by || []).length > 0;
      const cls = flagged ? "implicated" + (it.max_level >= 7 ? " high" : "") : "";
      const dose = (it.dose || []).length ? it.dose.map((d) => esc(num(d.value)) + " " + esc(d.unit)).join(" / ") : UNKNOWN;
      const freq = known(it.frequency) ? "每日 " + esc(num(it.frequency)) + " 次" : UNKNOWN;
      const notes = (it.issues || []).map((m) => '<div class="issue">' + esc(m) + "</div>").join("");
      return '<tr class="' + cls + '" data-ref="' + esc(it.reference) + '"><td>' + (i + 1) + "</td>" +
        "<td>" + (known(it.name) ? esc(it.name) : UNKNOWN) + notes + "</td><td>" + dose + "</td>" +
        "<td>" + freq + (it.prn ? "（按需）" : "") + "</td><td>" + v(it.route) + "</td><td>" + v(it.days, "天") + "</td>" +
        "<td>" + (flagged ? '<span class="tag lv">' + esc(it.max_level) + " 级</span>" + it.implicated_by.map((r) => '<span title="' + esc(r) + '">' + esc(titles[r] || r) + "</span>").join("、") : "—") + "</td></tr>";
    }).join("");
    const drugs =
      "<h3>药品（" + (ctx.items || []).length + "）</h3>" +
      '<table id="drugs"><thead><tr><th>#</th><th>药品</th><th>单次剂量</th><th>频次</th><th>途径</th><th>天数</th><th>涉及问题</th></tr></thead>' +
      "<tbody>" + (rows || '<tr><td colspan="7">' + UNKNOWN + "</td></tr>") + "</tbody></table>";
    return "<h3>患者</h3>" + patient + "<h3>处方</h3>" + prescription + drugs;
  }

  async function loadDetail() {
    const t = state.tasks[state.selected];
    if (!t) { state.detail = null; $("detail").innerHTML = '<p class="hint">队列为空。按 <kbd>c</kbd> 领取，<kbd>g</kbd> 刷新。</p>'; return; }
    const d = await api("GET", "/api/v1/tasks/" + encodeURIComponent(t.id));
    state.detail = d;
    const rv = d.review || { findings: [] };
    const findings = (rv.findings || []).map((f) =>
      '<div class="finding ' + (f.level >= 7 ? "high" : "") + '"><h4>【' + esc(f.level) + "级·" + esc(f.category) + "】" + esc(f.title) + "</h4>" +
      "<p>" + esc(f.message) + "</p>" + (f.suggestion ? "<p>建议：" + esc(f.suggestion) + "</p>" : "") +
      '<p class="evidence">依据：' + esc(f.evidence) + " · 规则 " + esc(f.rule_id) + " · " + esc((f.implicated || []).join("、")) + "</p></div>").join("");
    $("detail").innerHTML =
      "<h2>任务 " + esc(d.id.slice(0, 8)) + " · " + esc(STATUS_ZH[d.status] || d.status) + "</h2>" +
      "<p>机构 " + esc(d.institution_code || "") + " · 系统结论 " + esc(rv.verdict_zh || rv.verdict || "") +
      " · 处方号 " + esc(rv.prescription_identifier || "—") + " · 规则库 " + esc((rv.rulebase_version || "").slice(0, 12)) + "</p>" +
      contextHtml(rv.context, rv.findings) +
      '<h3 id="findings-title">系统发现的问题（' + (rv.findings || []).length + "）</h3>" + (findings || "<p>无</p>") +
      '<p class="actions"><kbd>a</kbd>通过 <kbd>r</kbd>拒绝 <kbd>b</kbd>打回</p>';
  }

  async function claim() {
    try {
      const t = await api("POST", "/api/v1/queue/claim");
      if (!t) { say("队列为空，没有可领取的任务"); return; }
      say("已领取任务 " + t.id.slice(0, 8), "good");
      await refresh(t.id);
    } catch (e) { say(e.message, "bad"); }
  }

  function askReason(title) {
    return new Promise((resolve) => {
      const dlg = $("reason-dialog");
      $("reason-title").textContent = title;
      $("reason").value = "";
      const done = (value) => { dlg.close(); cleanup(); resolve(value); };
      const onSubmit = (ev) => { ev.preventDefault(); const v = $("reason").value.trim(); if (v) done(v); };
      const onCancel = () => done(null);
      const onKey = (ev) => { if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) onSubmit(ev); };
      function cleanup() {
        $("reason-form").removeEventListener("submit", onSubmit);
        $("reason-cancel").removeEventListener("click", onCancel);
        dlg.removeEventListener("cancel", onCancel);
        $("reason").removeEventListener("keydown", onKey);
      }
      $("reason-form").addEventListener("submit", onSubmit);
      $("reason-cancel").addEventListener("click", onCancel);
      dlg.addEventListener("cancel", onCancel);
      $("reason").addEventListener("keydown", onKey);
      dlg.showModal();
      $("reason").focus();
    });
  }

  async function decide(decision) {
    const t = state.tasks[state.selected];
    if (!t) return;
    let reason = null;
    if (decision !== "approve") {
      reason = await askReason(decision === "reject" ? "拒绝理由" : "打回理由（医生将看到）");
      if (reason === null) return;
    }
    try {
      await api("POST", "/api/v1/tasks/" + encodeURIComponent(t.id) + "/decision", { decision, reason });
      say({ approve: "已通过", reject: "已拒绝", return: "已打回医生" }[decision] + "：任务 " + t.id.slice(0, 8), "good");
      await refresh();
    } catch (e) { say(e.message, "bad"); }
  }

  document.addEventListener("keydown", (ev) => {
    if ($("bench").hidden || $("reason-dialog").open) return;
    if (ev.target instanceof HTMLInputElement || ev.target instanceof HTMLTextAreaElement) return;
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const key = ev.key;
    if (key === "j" || key === "k") {
      if (!state.tasks.length) return;
      state.selected = Math.max(0, Math.min(state.tasks.length - 1, state.selected + (key === "j" ? 1 : -1)));
      renderQueue(); loadDetail().catch((e) => say(e.message, "bad"));
    } else if (key === "c") { claim(); }
    else if (key === "a") { decide("approve"); }
    else if (key === "r") { decide("reject"); }
    else if (key === "b") { decide("return"); }
    else if (key === "g") { refresh(); }
    else if (key === "?") { $("help").hidden = !$("help").hidden; }
    else { return; }
    ev.preventDefault();
  });

  if (state.token) showBench(); else showLogin();
  setInterval(() => { if (state.token && !$("bench").hidden && !$("reason-dialog").open) refresh(); }, 15000);
})();
