// 药师工作台: keyboard-first queue client over the JSON API (no framework, no CDN).
//
// Live updates by polling GET /api/v1/queue every POLL_MS with If-None-Match: the database is
// the only place where arrivals, colleagues' claims and the worker's timeouts meet (several
// API processes and a separate worker process), so a push channel would itself have to poll
// it; an unchanged queue costs a 304 and no rendering.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const POLL_MS = Number(window.WB_POLL_MS || 3000);
  const PAGE = 50;
  const WORK = new Set(["pending", "escalated", "claimed"]);
  const STATUS_ZH = { pending: "待领取", claimed: "已领取", returned: "已打回", escalated: "超时升级",
                      approved: "已通过", rejected: "已拒绝", modified: "已修改", double_signed: "双签",
                      timeout_passed: "超时通过", abandoned: "已关闭" };
  const DECISION_ZH = { approve: "通过", reject: "拒绝", return: "打回", timeout_pass: "超时通过" };
  const ANSWER_ZH = { modify: "修改处方并重新提交", insist: "坚持原处方（双签）" };
  const FIELD_ZH = { dose: "单次剂量", frequency: "频次", days: "天数", route: "途径" };
  const ROLE_ZH = { quality: "质控", admin: "管理员", pharmacist: "药师" };
  const REASONS = JSON.parse($("reason-data").textContent || "{}");

  const fresh = () => ({
    token: sessionStorage.getItem("auditToken"), user: sessionStorage.getItem("auditUser"),
    role: sessionStorage.getItem("auditRole"), rows: [], total: 0, offset: 0, selectedId: null, index: 0,
    detail: null, history: null, etag: null, skew: 0, busy: false, mine: new Set(), filters: {}, loadSeq: 0,
  });
  let state = fresh();
  let pollTimer = null;
  window.wbTimings = { shows: [] };

  function say(text, kind) { const s = $("status"); s.textContent = text; s.className = kind || ""; }
  function esc(t) { return String(t == null ? "" : t).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c])); }
  const serverNow = () => Date.now() + state.skew;
  const short = (id) => String(id || "").slice(0, 8);
  function clock(iso) { if (!iso) return ""; const d = new Date(iso); return d.toLocaleString("zh-CN", { hour12: false, month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit" }); }
  function mmss(ms) {
    const s = Math.max(0, Math.round(Math.abs(ms) / 1000));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    return (h ? h + ":" + String(m).padStart(2, "0") : String(m)) + ":" + String(r).padStart(2, "0");
  }
  function waited(iso) { const m = Math.floor((serverNow() - new Date(iso).getTime()) / 60000); return m < 1 ? "刚到达" : "已等 " + m + " 分钟"; }

  class HttpError extends Error { constructor(status, message) { super(message); this.status = status; } }

  async function api(method, path, body, extraHeaders) {
    const session = state;
    if (!session.token) throw new HttpError(401, "");
    const headers = Object.assign({ Authorization: "Bearer " + state.token }, extraHeaders || {});
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const r = await fetch(path, { method, headers, cache: "no-store", body: body === undefined ? undefined : JSON.stringify(body) });
    // Logged out (or in as someone else) meanwhile: this answer belongs to nobody on screen now.
    if (session !== state) throw new HttpError(401, "");
    if (r.status === 401) { logout(); throw new HttpError(401, "登录已失效，请重新登录"); }
    if (r.status === 204 || r.status === 304) return { status: r.status, data: null, headers: r.headers };
    const data = await r.json().catch(() => ({}));
    if (!r.ok) {
      const issue = (data.issue && data.issue[0]) || {};
      throw new HttpError(r.status, issue.diagnostics || ("请求失败 " + r.status));
    }
    return { status: r.status, data, headers: r.headers };
  }

  // ------------------------------------------------------------------ who is here
  function hideAll() { for (const id of ["login", "bench", "refused"]) $(id).hidden = true; }
  function showLogin() { hideAll(); $("login").hidden = false; $("logout").hidden = true; $("who").textContent = ""; }
  function showRefused() {
    hideAll(); $("refused").hidden = false; $("logout").hidden = false;
    $("who").textContent = (ROLE_ZH[state.role] || state.role) + "：" + (state.user || "");
    const quality = state.role === "quality";
    $("refused-text").textContent = (ROLE_ZH[state.role] ? "您以" + ROLE_ZH[state.role] + "（" + state.role + "）身份登录" : "您的账号不是药师账号") + "，不能领取或审核处方。" +
      (quality ? "质控统计请前往质控页面。" : "规则库与系统管理请使用接口文档页面。");
    const link = $("refused-link");
    link.href = quality ? "/quality" : "/docs";
    link.textContent = quality ? "前往质控页面 /quality" : "前往接口文档 /docs";
  }
  function showBench() {
    hideAll(); $("bench").hidden = false; $("logout").hidden = false;
    $("who").textContent = "药师：" + (state.user || "");
    refresh();
    clearInterval(pollTimer);
    pollTimer = setInterval(() => { if (state.token && !$("bench").hidden && !$("reason-dialog").open) refresh(); }, POLL_MS);
  }
  function enter() { if (!state.token) showLogin(); else if (state.role && state.role !== "pharmacist") showRefused(); else showBench(); }

  function logout() {
    clearInterval(pollTimer); pollTimer = null;
    for (const k of ["auditToken", "auditUser", "auditRole"]) sessionStorage.removeItem(k);
    state = fresh();
    // Nothing of the previous user stays on screen.
    $("queue").innerHTML = ""; $("detail").innerHTML = ""; $("claim-banner").hidden = true;
    $("queue-count").textContent = ""; $("page-info").textContent = ""; say("");
    $("filters").reset(); $("login-form").reset(); $("login-error").textContent = ""; $("help").hidden = true;
    $("f-institution").innerHTML = '<option value="">全部机构</option>'; $("f-institution").dataset.html = "";
    document.body.dataset.shown = "";
    if ($("reason-dialog").open) $("reason-dialog").close();
    showLogin();
  }

  $("login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const form = new FormData(ev.target);
    const r = await fetch("/api/v1/auth/token", { method: "POST", body: new URLSearchParams(form) });
    const data = await r.json().catch(() => ({}));
    if (!r.ok) { $("login-error").textContent = "用户名或密码错误"; return; }
    state = fresh();
    state.token = data.access_token; state.user = data.username; state.role = data.role;
    sessionStorage.setItem("auditToken", state.token); sessionStorage.setItem("auditUser", state.user);
    sessionStorage.setItem("auditRole", state.role || "");
    $("login-error").textContent = ""; say("");
    enter();
  });
  $("logout").addEventListener("click", logout);
  $("refused-logout").addEventListener("click", logout);

  // ------------------------------------------------------------------ the queue
  function query() {
    const p = new URLSearchParams({ offset: String(state.offset), limit: String(PAGE) });
    for (const [k, v] of Object.entries(state.filters)) if (v) p.set(k, v);
    return "/api/v1/queue?" + p.toString();
  }

  async function refresh(opts) {
    opts = opts || {};
    try {
      const r = await api("GET", query(), undefined, state.etag && !opts.force ? { "If-None-Match": state.etag } : {});
      if (r.status === 304) return;
      state.etag = r.headers.get("ETag");
      const page = r.data;
      state.skew = new Date(page.now).getTime() - Date.now();
      if (!page.rows.length && page.total > 0 && state.offset > 0) { state.offset = Math.max(0, state.offset - PAGE); state.etag = null; return refresh(opts); }
      const before = state.rows.find((t) => t.task_id === state.selectedId);
      state.rows = page.rows; state.total = page.total;
      fillInstitutions(page.institutions);
      let i = state.rows.findIndex((t) => t.task_id === state.selectedId);
      if (opts.selectId) i = Math.max(0, state.rows.findIndex((t) => t.task_id === opts.selectId));
      const vanished = i < 0 && state.selectedId && !opts.advance;
      if (i < 0 && !vanished) i = Math.min(state.index, state.rows.length - 1);
      renderQueue(i);
      if (vanished) { goneFromQueue(); return; }
      if (i < 0) { showEmpty(); return; }
      const now = state.rows[i];
      const changed = !before || !state.detail || now.task_id !== state.detail.id || JSON.stringify(now) !== JSON.stringify(before);
      if (changed || opts.force) await loadDetail();
    } catch (e) {
      // A session from before the role was remembered, or a role changed meanwhile.
      if (e.status === 403) { state.role = state.role && state.role !== "pharmacist" ? state.role : "非药师"; clearInterval(pollTimer); showRefused(); return; }
      if (e.status !== 401) say(e.message, "bad");
    }
  }

  function fillInstitutions(list) {
    const sel = $("f-institution");
    const want = ['<option value="">全部机构</option>'].concat(list.map((i) =>
      '<option value="' + esc(i.code) + '">' + esc(i.name) + "（" + i.count + "）</option>")).join("");
    if (sel.dataset.html !== want) { const v = sel.value; sel.innerHTML = want; sel.dataset.html = want; sel.value = v; }
  }

  function rowHtml(t, selected) {
    const mine = t.claimed_by === state.user;
    const type = t.rx_type ? '<span class="tag' + (t.emergency ? " emergency" : "") + '">' + esc(t.rx_type) + "</span>" : "";
    const status = t.status === "claimed" ? '<span class="tag claimed' + (mine ? " mine" : "") + '">' + (mine ? "我已领取" : esc(t.claimed_by) + " 处理中") + "</span>"
      : t.status === "pending" || t.status === "escalated" ? "" : '<span class="tag neutral">' + esc(STATUS_ZH[t.status] || t.status) + "</span>";
    const countdown = t.escalated ? '<span class="tag escalated">超时升级</span>'
      : t.deadline_at ? '<span class="countdown" data-deadline="' + esc(t.deadline_at) + '"></span>' : "";
    return '<li data-id="' + esc(t.task_id) + '" class="row' + (selected ? " selected" : "") + (t.escalated ? " escalated" : "") + '">' +
      '<div class="line1">' + type + '<span class="tag' + (t.max_level >= 7 ? " lv-high" : t.max_level >= 5 ? " lv" : "") + '">' + esc(t.max_level) + " 级</span>" + status + countdown + "</div>" +
      '<div class="drugs">' + esc(t.drugs_text || "（无药品）") + "</div>" +
      (t.top_finding ? '<div class="problem">' + esc(t.top_finding) + (t.finding_count > 1 ? ' <small>等 ' + t.finding_count + " 项</small>" : "") + "</div>" : "") +
      '<div class="meta">' + esc(t.institution_name) + " · " + '<span class="waited" data-since="' + esc(t.created_at) + '">' + esc(waited(t.created_at)) + "</span></div></li>";
  }

  function renderQueue(i) {
    state.index = i < 0 ? state.index : i;
    const sel = i >= 0 ? state.rows[i] : null;
    if (sel) state.selectedId = sel.task_id;
    $("queue").innerHTML = state.rows.map((t, n) => rowHtml(t, n === i)).join("");
    $("queue-count").textContent = "（" + state.total + "）";
    $("queue-empty").hidden = state.rows.length > 0;
    const from = state.rows.length ? state.offset + 1 : 0, to = state.offset + state.rows.length;
    $("page-info").textContent = state.total > PAGE ? "第 " + from + "–" + to + " 条，共 " + state.total + " 条" : "";
    $("prev-page").hidden = state.offset === 0;
    $("next-page").hidden = to >= state.total;
    tick();
    if (window.wbTimings.firstQueue === undefined) window.wbTimings.firstQueue = performance.now();
    const el = $("queue").querySelector(".selected");
    if (el) el.scrollIntoView({ block: "nearest" });
  }

  $("queue").addEventListener("click", (ev) => {
    const li = ev.target.closest("li[data-id]");
    if (!li) return;
    select(state.rows.findIndex((t) => t.task_id === li.dataset.id));
  });
  function select(i) {
    if (i < 0 || i >= state.rows.length) return;
    for (const li of $("queue").querySelectorAll(".selected")) li.classList.remove("selected");
    const li = $("queue").children[i];
    if (li) { li.classList.add("selected"); li.scrollIntoView({ block: "nearest" }); }
    state.index = i; state.selectedId = state.rows[i].task_id;
    loadDetail().catch((e) => say(e.message, "bad"));
  }
  async function page(delta, selectLast) {
    const next = state.offset + delta * PAGE;
    if (next < 0 || next >= state.total) return;
    state.offset = next; state.etag = null; state.selectedId = null; state.index = selectLast ? PAGE - 1 : 0;
    await refresh();
  }
  $("prev-page").addEventListener("click", () => page(-1));
  $("next-page").addEventListener("click", () => page(1));
  for (const sel of $("filters").querySelectorAll("select")) {
    sel.addEventListener("change", () => {
      state.filters[sel.name] = sel.value; state.offset = 0; state.etag = null; state.selectedId = null; state.index = 0;
      sel.blur(); refresh();
    });
  }

  // ------------------------------------------------------------------ the clock: countdowns tick every second
  function tick() {
    const now = serverNow();
    for (const el of document.querySelectorAll("[data-deadline]")) {
      const left = new Date(el.dataset.deadline).getTime() - now;
      const label = el.dataset.label || "";
      el.textContent = left > 0 ? label + "剩余 " + mmss(left) : label + "已超时 " + mmss(left);
      el.classList.toggle("late", left <= 0);
      el.classList.toggle("soon", left > 0 && left < 5 * 60000);
    }
    for (const el of document.querySelectorAll("[data-since]")) el.textContent = waited(el.dataset.since);
    renderClaimBanner();
  }
  setInterval(tick, 1000);

  function renderClaimBanner() {
    const b = $("claim-banner"), d = state.detail;
    if (!d || $("bench").hidden) { b.hidden = true; return; }
    const now = serverNow();
    let html = "", cls = "";
    if (d.gone) {
      html = (state.mine.has(d.id) ? "你的领取已过期，" : "") + "此任务已离开队列（已被他人处理、超时或被撤回），不能再处理。按 <kbd>j</kbd>/<kbd>k</kbd> 选择其他任务。";
      cls = "bad";
    } else if (d.status === "claimed" && d.claimed_by === state.user) {
      const left = new Date(d.lease_expires_at).getTime() - now;
      if (left > 60000) { html = "你已领取此任务，租约剩余 " + mmss(left) + "。<kbd>a</kbd> 通过 <kbd>r</kbd> 拒绝 <kbd>b</kbd> 打回"; cls = "ok"; }
      else if (left > 0) { html = "你已领取此任务，租约只剩 " + mmss(left) + "：按 <kbd>c</kbd> 续期，过期后他人可领取。"; cls = "warn"; }
      else { html = "你的领取已于 " + esc(clock(d.lease_expires_at)) + " 过期，任务可能已被他人领取。按 <kbd>c</kbd> 重新领取。"; cls = "bad"; }
    } else if (d.status === "claimed") {
      const left = new Date(d.lease_expires_at).getTime() - now;
      html = left > 0 ? esc(d.claimed_by) + " 正在处理此任务（租约剩余 " + mmss(left) + "），你不能处理。按 <kbd>j</kbd> 看下一个。"
        : esc(d.claimed_by) + " 的领取已过期，按 <kbd>c</kbd> 可领取。";
      cls = "warn";
    } else if (state.mine.has(d.id) && WORK.has(d.status)) {
      html = "你的领取已过期，任务已回到队列。按 <kbd>c</kbd> 重新领取。"; cls = "bad";
    } else if (d.status === "pending" || d.status === "escalated") {
      html = "未领取：按 <kbd>c</kbd> 领取，或直接按 <kbd>a</kbd>/<kbd>r</kbd>/<kbd>b</kbd>（将先领取再决定）。"; cls = "info";
    } else {
      html = "此任务已不在待审状态（" + esc(STATUS_ZH[d.status] || d.status) + "）。"; cls = "warn";
    }
    if (b.dataset.html !== html || b.className !== cls) { b.innerHTML = html; b.dataset.html = html; b.className = cls; }
    b.hidden = false;
  }

  function showEmpty() {
    state.detail = null; state.history = null; state.selectedId = null;
    $("detail").innerHTML = '<p class="hint">队列为空。新处方到达时会自动出现（每 ' + POLL_MS / 1000 + ' 秒刷新）。</p>';
    renderClaimBanner();
  }
  // The task on screen left the work list (decided by a colleague, timed out, withdrawn): say so
  // and keep it on screen, but act on nothing until the pharmacist picks another task.
  function goneFromQueue() {
    if (state.detail && state.detail.id === state.selectedId) state.detail.gone = true;
    renderClaimBanner();
  }

  // ------------------------------------------------------------------ the decision screen
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

  function contextHtml(ctx, findings, hist) {
    const titles = {};
    (findings || []).forEach((f) => { titles[f.rule_id] = f.title; });
    if (!ctx) return '<p class="unknown">未能取得患者与处方信息</p>';
    const p = ctx.patient || {}, rx = ctx.prescription || {};
    const v = (x, unit) => (known(x) ? esc(typeof x === "number" ? num(x) : x) + (unit ? " " + unit : "") : UNKNOWN);
    const cell = (label, html, cls) => '<div class="fact' + (cls ? " " + cls : "") + '"><dt>' + label + "</dt><dd>" + html + "</dd></div>";
    const allergies = list(p.allergies, (a) => '<span class="alert">' + esc(a) + "</span>");
    const diagnoses = list(p.diagnoses, (d) => (known(d.code) ? "<code>" + esc(d.code) + "</code> " : "") + (known(d.name) ? esc(d.name) : UNKNOWN));
    const ids = hist && hist.patient_identifiers.length
      ? hist.patient_identifiers.map((i) => '<span class="pid" title="' + esc(i.system || "") + '">' + esc(i.value) + "</span>").join("、") : UNKNOWN;
    const patient =
      '<dl id="patient" class="facts">' + cell("患者标识", ids) +
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
      const name = known(it.name) ? esc(it.name) : known(it.written_name) ? esc(it.written_name) + ' <span class="unknown">未识别</span>' : '<span class="unknown">未识别药品</span>';
      return '<tr class="' + cls + '" data-ref="' + esc(it.reference) + '"><td>' + (i + 1) + "</td>" +
        "<td>" + name + notes + "</td><td>" + dose + "</td>" +
        "<td>" + freq + (it.prn ? "（按需）" : "") + "</td><td>" + v(it.route) + "</td><td>" + v(it.days, "天") + "</td>" +
        "<td>" + (flagged ? '<span class="tag lv">' + esc(it.max_level) + " 级</span>" + it.implicated_by.map((r) => '<span title="' + esc(r) + '">' + esc(titles[r] || r) + "</span>").join("、") : "—") + "</td></tr>";
    }).join("");
    const drugs =
      "<h3>药品（" + (ctx.items || []).length + "）</h3>" +
      '<table id="drugs"><thead><tr><th>#</th><th>药品</th><th>单次剂量</th><th>频次</th><th>途径</th><th>天数</th><th>涉及问题</th></tr></thead>' +
      "<tbody>" + (rows || '<tr><td colspan="7">' + UNKNOWN + "</td></tr>") + "</tbody></table>";
    return "<h3>患者</h3>" + patient + "<h3>处方</h3>" + prescription + drugs;
  }

  function changesHtml(h) {
    if (!h || !h.previous_review_id) return "";
    if (!h.changes.length) return '<section id="changes"><h3>与上一版本相比</h3><p>药品、剂量、频次、天数、途径均未改变。</p></section>';
    const li = h.changes.map((c) => {
      if (c.kind === "added") return '<li class="added">新增 <b>' + esc(c.name) + "</b></li>";
      if (c.kind === "removed") return '<li class="removed">删除 <b>' + esc(c.name) + "</b></li>";
      return '<li class="changed"><b>' + esc(c.name) + "</b> " + c.changes.map((f) =>
        esc(FIELD_ZH[f.field] || f.field) + " <del>" + esc(f.before || "未写") + "</del> → <ins>" + esc(f.after || "未写") + "</ins>").join("；") + "</li>";
    }).join("");
    const prev = h.versions.find((v) => v.review_id === h.previous_review_id);
    const returned = prev && (prev.decision === "return" || prev.doctor_answer === "modify");
    return '<section id="changes"><h3>' + (returned ? "与被打回的版本相比，医生修改了" : "与上一版本相比的变化") + "</h3><ul>" + li + "</ul></section>";
  }

  function historyHtml(h) {
    if (!h) return "";
    const items = h.versions.map((v, n) => {
      const steps = [];
      steps.push("系统结论：" + esc(v.verdict_zh) + (v.findings.length ? "（" + v.findings.slice(0, 3).map((f) => esc(f.level) + "级 " + esc(f.title)).join("；") + (v.findings.length > 3 ? " 等 " + v.findings.length + " 项" : "") + "）" : ""));
      if (v.decision) steps.push((v.decided_by === "system" ? "系统" : "药师 " + esc(v.decided_by)) + " " + esc(DECISION_ZH[v.decision] || v.decision) + (v.decided_at ? "（" + esc(clock(v.decided_at)) + "）" : "") + (v.reason ? "：" + esc(v.reason) : ""));
      if (v.doctor_answer) steps.push("医生 " + esc(ANSWER_ZH[v.doctor_answer] || v.doctor_answer) + (v.doctor_reason ? "：" + esc(v.doctor_reason) : ""));
      // The current version's task status comes with the task itself (fresher than the history's).
      if (v.current && state.detail && v.task_id === state.detail.id) v = Object.assign({}, v, { task_status: state.detail.status });
      const status = v.task_status ? (STATUS_ZH[v.task_status] ? '<span class="tag">' + esc(STATUS_ZH[v.task_status]) + "</span>" : '<span class="tag neutral">' + esc(v.task_status) + "</span>") : '<span class="tag">' + esc(v.outcome_zh) + "</span>";
      return '<li class="version' + (v.current ? " current" : "") + '"><div><b>第 ' + (n + 1) + " 版</b>" + (v.current ? "（当前）" : "") +
        " · 处方号 " + esc(v.prescription_number || "—") + " · " + esc(clock(v.created_at)) + " " + status + "</div>" +
        '<div class="drugs">' + esc(v.drugs.join("、")) + "</div><ul>" + steps.map((s) => "<li>" + s + "</li>").join("") + "</ul></li>";
    }).join("");
    return '<section id="history"><h3>处方历史（' + h.versions.length + " 个版本）</h3><ol>" + items + "</ol></section>";
  }

  // The task being loaded, so that a key pressed meanwhile acts on it once it is shown.
  function loadDetail() {
    const p = showDetail();
    state.loading = p;
    return p;
  }

  async function showDetail() {
    const t = state.rows[state.index];
    if (!t) { showEmpty(); return; }
    const seq = ++state.loadSeq;
    const t0 = performance.now();
    const id = encodeURIComponent(t.task_id);
    const [task, hist] = await Promise.all([api("GET", "/api/v1/tasks/" + id), api("GET", "/api/v1/tasks/" + id + "/history")]);
    if (seq !== state.loadSeq) return; // a later selection won
    const d = task.data, h = hist.data;
    state.detail = d; state.history = h;
    const rv = d.review || { findings: [] };
    const findings = (rv.findings || []).map((f) =>
      '<div class="finding ' + (f.level >= 7 ? "high" : "") + '"><h4>【' + esc(f.level) + "级·" + esc(f.category) + "】" + esc(f.title) + "</h4>" +
      "<p>" + esc(f.message) + "</p>" + (f.suggestion ? "<p>建议：" + esc(f.suggestion) + "</p>" : "") +
      '<p class="evidence">依据：' + esc(f.evidence) + " · 规则 " + esc(f.rule_id) + " · " + esc((f.implicated || []).join("、")) + "</p></div>").join("");
    const deadline = d.escalated ? '<span class="tag escalated">已超时升级，请优先处理</span>'
      : d.deadline_at && WORK.has(d.status) ? '<span class="countdown big" data-label="截止 ' + esc(clock(d.deadline_at)) + " · " + '" data-deadline="' + esc(d.deadline_at) + '"></span>' : "";
    const statusTag = STATUS_ZH[d.status] ? esc(STATUS_ZH[d.status]) : '<span class="tag neutral">' + esc(d.status) + "</span>";
    $("detail").innerHTML =
      '<h2 id="task-title">任务 ' + esc(short(d.id)) + " · " + statusTag + " " + deadline + "</h2>" +
      '<p class="summary">' + esc(t.institution_name || d.institution_code || "") + " · 系统结论 " + esc(rv.verdict_zh || rv.verdict || "") +
      ' · 处方号 <b id="rx-number">' + esc(h.prescription_number || "—") + "</b> · 规则库 " + esc((rv.rulebase_version || "").slice(0, 12)) + "</p>" +
      changesHtml(h) +
      contextHtml(rv.context, rv.findings, h) +
      '<h3 id="findings-title">系统发现的问题（' + (rv.findings || []).length + "）</h3>" + (findings || "<p>无</p>") +
      historyHtml(h) +
      '<p class="actions"><kbd>a</kbd>通过 <kbd>r</kbd>拒绝 <kbd>b</kbd>打回 <kbd>j</kbd>下一个</p>';
    $("detail-pane").scrollTop = 0;
    tick();
    // Figures for the browser tests: fetch-to-shown, and key-press-to-shown when a key moved here.
    const end = performance.now();
    window.wbTimings.shows.push(end - t0);
    if (window.wbTimings.keyAt !== undefined) { window.wbTimings.lastKeyToShown = end - window.wbTimings.keyAt; window.wbTimings.keyAt = undefined; }
    if (window.wbTimings.firstDetail === undefined) window.wbTimings.firstDetail = end;
    document.body.dataset.shown = d.id;
  }

  // ------------------------------------------------------------------ acting
  // The task on screen, only while it is still in the list (never a neighbour that slid into its place).
  function current() { return state.rows.find((t) => t.task_id === state.selectedId) || null; }

  async function claimSelected() {
    const t = current();
    const heldByOther = t && t.status === "claimed" && t.claimed_by !== state.user &&
      new Date(t.lease_expires_at).getTime() > serverNow();
    try {
      let task;
      if (t && !heldByOther && (WORK.has(t.status))) {
        task = (await api("POST", "/api/v1/tasks/" + encodeURIComponent(t.task_id) + "/claim")).data;
      } else {
        const r = await api("POST", "/api/v1/queue/claim");
        if (r.status === 204) { say("队列中没有可领取的任务"); return null; }
        task = r.data;
      }
      state.mine.add(task.id);
      say("已领取任务 " + short(task.id) + (heldByOther ? "（当前任务由 " + t.claimed_by + " 处理，已领取下一个）" : ""), "good");
      state.etag = null;
      await refresh({ selectId: task.id, force: true });
      return task;
    } catch (e) {
      say(e.message, "bad"); state.etag = null; await refresh({ force: true }); return null;
    }
  }

  // Claim first when needed: a task nobody holds, or whose lease (ours or another's) ran out.
  async function ensureClaimed(t) {
    const leaseLeft = t.lease_expires_at ? new Date(t.lease_expires_at).getTime() - serverNow() : 0;
    if (t.status === "claimed" && t.claimed_by === state.user && leaseLeft > 0) return true;
    if (t.status === "claimed" && t.claimed_by !== state.user && leaseLeft > 0) {
      say("任务已由 " + t.claimed_by + " 领取，你不能处理。按 j 看下一个任务。", "bad"); return false;
    }
    if (!WORK.has(t.status)) { say("此任务状态为 " + (STATUS_ZH[t.status] || t.status) + "，不能处理", "bad"); return false; }
    try {
      const claimed = (await api("POST", "/api/v1/tasks/" + encodeURIComponent(t.task_id) + "/claim")).data;
      state.mine.add(t.task_id);
      const now = { status: claimed.status, claimed_by: claimed.claimed_by, lease_expires_at: claimed.lease_expires_at };
      Object.assign(t, now);
      if (state.detail && state.detail.id === t.task_id) Object.assign(state.detail, now);
      renderClaimBanner();
      return true;
    } catch (e) {
      say("未能领取：" + e.message + "。按 c 领取其他任务。", "bad");
      state.etag = null; await refresh({ force: true });
      return false;
    }
  }

  function askReason(title, decision) {
    return new Promise((resolve) => {
      const dlg = $("reason-dialog");
      const fromFindings = ((state.detail && state.detail.review && state.detail.review.findings) || []).map((f) => f.suggestion).filter(Boolean);
      const templates = Array.from(new Set(fromFindings.concat(REASONS[decision] || []))).slice(0, 9);
      $("reason-templates").innerHTML = templates.map((t, i) => "<li><kbd>" + (i + 1) + "</kbd> " + esc(t) + "</li>").join("");
      $("reason-title").textContent = title;
      $("reason").value = "";
      const box = $("reason");
      const pick = (n) => {
        const t = templates[n - 1];
        if (!t) return;
        box.value = box.value.trim() ? box.value.trim() + "；" + t : t;
        box.focus(); box.setSelectionRange(box.value.length, box.value.length);
      };
      const done = (value) => { dlg.close(); cleanup(); resolve(value); };
      const onSubmit = (ev) => { ev.preventDefault(); const v = box.value.trim(); if (v) done(v); };
      const onCancel = (ev) => { if (ev) ev.preventDefault(); done(null); };
      const onKey = (ev) => {
        if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { onSubmit(ev); return; }
        const digit = /^[1-9]$/.test(ev.key) ? Number(ev.key) : 0;
        // A digit picks a template while the text is empty or the list has focus; Alt+digit always does.
        if (digit && (ev.altKey || document.activeElement !== box || !box.value)) { ev.preventDefault(); pick(digit); }
      };
      function cleanup() {
        $("reason-form").removeEventListener("submit", onSubmit);
        $("reason-cancel").removeEventListener("click", onCancel);
        dlg.removeEventListener("cancel", onCancel);
        dlg.removeEventListener("keydown", onKey);
      }
      $("reason-form").addEventListener("submit", onSubmit);
      $("reason-cancel").addEventListener("click", onCancel);
      dlg.addEventListener("cancel", onCancel);
      dlg.addEventListener("keydown", onKey);
      dlg.showModal();
      box.focus();
    });
  }

  async function decide(decision) {
    if (state.busy) return; // one decision at a time: a second key press while one is under way is ignored
    state.busy = true;
    try {
      let t = current();
      if (t && (!state.detail || state.detail.id !== t.task_id) && state.loading) {
        await state.loading.catch(() => {});
        t = current();
      }
      if (!t || !state.detail || state.detail.id !== t.task_id || state.detail.gone) {
        say(state.detail && state.detail.gone ? "此任务已离开队列，不能处理" : "请先用 j / k 选择任务", "bad"); return;
      }
      if (!(await ensureClaimed(t))) return;
      let reason = null;
      if (decision !== "approve") {
        reason = await askReason(decision === "reject" ? "拒绝理由" : "打回理由（医生将看到）", decision);
        if (reason === null) { say("已取消；任务仍由你领取"); state.etag = null; await refresh({ force: true }); return; }
      }
      await api("POST", "/api/v1/tasks/" + encodeURIComponent(t.task_id) + "/decision", { decision, reason });
      state.mine.delete(t.task_id);
      say({ approve: "已通过", reject: "已拒绝", return: "已打回医生" }[decision] + "：处方 " + (t.prescription_number || short(t.task_id)), "good");
      // Move on: the decided task leaves the list and the next one takes its place.
      state.etag = null; state.selectedId = null; state.busy = false;
      await refresh({ advance: true });
    } catch (e) {
      say(e.message, "bad"); state.etag = null; await refresh({ force: true });
    } finally { state.busy = false; }
  }

  function move(delta) {
    if (!state.rows.length) return;
    const i = state.index + delta;
    if (i >= state.rows.length) { if (state.offset + PAGE < state.total) page(1); return; }
    if (i < 0) { if (state.offset > 0) page(-1, true); return; }
    select(i);
  }

  document.addEventListener("keydown", (ev) => {
    if ($("bench").hidden || $("reason-dialog").open) return;
    const tag = ev.target && ev.target.tagName;
    if (tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT") return;
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const key = ev.key;
    if (key === "j" || key === "k") window.wbTimings.keyAt = performance.now();
    if (key === "j") move(1);
    else if (key === "k") move(-1);
    else if (key === "c") { if (!state.busy) claimSelected(); }
    else if (key === "a") decide("approve");
    else if (key === "r") decide("reject");
    else if (key === "b") decide("return");
    else if (key === "g") { state.etag = null; refresh({ force: true }); }
    else if (key === "]") page(1);
    else if (key === "[") page(-1);
    else if (key === "?") $("help").hidden = !$("help").hidden;
    else return;
    ev.preventDefault();
  });

  enter();
})();
