// 质控工作台: every view is drawn from the JSON API (/api/v1/stats, /api/v1/quality); charts with the shipped ECharts.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const state = { token: sessionStorage.getItem("qualityToken"), user: sessionStorage.getItem("qualityUser"),
                  view: "overview", defs: {}, sample: null, current: -1, replayTimer: null, homo: null };
  const KPIS = ["prescriptions", "flag_rate", "recheck_rate", "intervention_rate", "acceptance_rate", "timeout_rate",
                "antimicrobial_rate", "injection_rate", "essential_prescription_rate", "drugs_per_prescription"];
  const PRESCRIBING = [["drugs_per_prescription", 2, "WHO/INRUD 参考 < 2"], ["antimicrobial_rate", 0.2, "门诊 ≤ 20%"],
                       ["injection_rate", 0.2, "WHO/INRUD 参考 < 20%"], ["essential_item_rate", null, ""],
                       ["essential_prescription_rate", null, ""], ["emergency_iv_steroid_rate", null, ""],
                       ["off_formulary_rate", null, ""]];
  const HOMO = ["antimicrobial_rate", "injection_rate", "flag_rate", "intervention_rate", "drugs_per_prescription",
                "essential_prescription_rate", "recheck_rate", "acceptance_rate"];
  const VERDICT = { pass: "通过", explain: "需说明", recheck: "药师复核", block: "拦截" };

  function esc(v) { return String(v ?? "").replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c])); }
  function name(code) { return (state.defs[code] && state.defs[code].name) || code; }
  function isRate(code) { return !/^(prescriptions|drugs_per_prescription|decision_seconds)/.test(code); }
  function fmt(code, v) {
    if (v === null || v === undefined) return "—";
    if (isRate(code)) return (v * 100).toFixed(1) + "%";
    return Number.isInteger(v) ? String(v) : Number(v).toFixed(2);
  }
  function reviewLink(id, label) { return `<a class="review" data-review="${esc(id)}">${esc(label || id.slice(0, 8))}</a>`; }

  async function api(path, opts = {}) {
    const headers = { Authorization: "Bearer " + state.token };
    if (opts.body !== undefined) headers["Content-Type"] = "application/json";
    const r = await fetch(path, { method: opts.method || "GET", headers,
                                  body: opts.body === undefined ? undefined : JSON.stringify(opts.body) });
    if (r.status === 401) { logout(); throw new Error("请重新登录"); }
    if (opts.raw) return r;
    const data = await r.json().catch(() => null);
    if (!r.ok) {
      const msg = data && data.issue ? data.issue.map((i) => i.diagnostics).join("；") : r.statusText;
      throw new Error(msg);
    }
    return data;
  }

  // ------------------------------------------------------------------ month helpers
  function monthRange(m) {
    const [y, mo] = m.split("-").map(Number);
    const last = new Date(Date.UTC(y, mo, 0)).getUTCDate();
    return { from: `${m}-01`, to: `${m}-${String(last).padStart(2, "0")}` };
  }
  function shiftMonth(m, delta) {
    const [y, mo] = m.split("-").map(Number);
    const d = new Date(Date.UTC(y, mo - 1 + delta, 1));
    return `${d.getUTCFullYear()}-${String(d.getUTCMonth() + 1).padStart(2, "0")}`;
  }
  function month() { return $("month").value; }
  function qs(obj) { return new URLSearchParams(Object.entries(obj).filter(([, v]) => v !== "" && v !== null && v !== undefined)).toString(); }

  // ------------------------------------------------------------------ login and tabs
  function showLogin() { $("login").hidden = false; $("app").hidden = true; $("logout").hidden = true; $("who").textContent = ""; }
  async function showApp() {
    $("login").hidden = true; $("app").hidden = false; $("logout").hidden = false;
    $("who").textContent = state.user || "";
    try {
      const defs = await api("/api/v1/stats/definitions");
      defs.forEach((d) => { state.defs[d.code] = d; });
    } catch (e) { return; }
    $("homo-indicator").innerHTML = HOMO.map((c) => `<option value="${c}">${esc(name(c))}</option>`).join("");
    const fromHash = location.hash.slice(1);
    show(document.querySelector(`[data-view="${fromHash}"]`) ? fromHash : "overview");
  }
  function logout() { sessionStorage.removeItem("qualityToken"); state.token = null; showLogin(); }
  $("logout").addEventListener("click", logout);
  $("login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const r = await fetch("/api/v1/auth/token", { method: "POST", body: new URLSearchParams(new FormData(ev.target)) });
    const data = await r.json().catch(() => ({}));
    if (!r.ok) { $("login-error").textContent = "用户名或密码错误"; return; }
    if (!["quality", "admin"].includes(data.role)) { $("login-error").textContent = "需要质控（quality）或管理员角色"; return; }
    state.token = data.access_token; state.user = data.username;
    sessionStorage.setItem("qualityToken", state.token); sessionStorage.setItem("qualityUser", state.user);
    $("login-error").textContent = "";
    showApp();
  });
  document.querySelectorAll("#tabs button").forEach((b) => b.addEventListener("click", () => show(b.dataset.view)));
  $("month").addEventListener("change", () => show(state.view));

  const LOADERS = {};
  function show(view) {
    state.view = view;
    history.replaceState(null, "", "#" + view);
    document.querySelectorAll(".view").forEach((s) => { s.hidden = s.id !== "view-" + view; });
    document.querySelectorAll("#tabs button").forEach((b) => b.setAttribute("aria-selected", String(b.dataset.view === view)));
    LOADERS[view]().catch((e) => { console.error(e); });
  }

  // ------------------------------------------------------------------ overview
  LOADERS.overview = async () => {
    const m = month(), prev = shiftMonth(m, -1);
    $("overview-period").textContent = `${m}（对比 ${prev}）`;
    const [cur, last, mon, qual] = await Promise.all([
      api("/api/v1/stats/indicators?" + qs({ ...monthRange(m), group_by: "institution" })),
      api("/api/v1/stats/indicators?" + qs({ ...monthRange(prev), group_by: "institution" })),
      api("/api/v1/stats/monitoring?" + qs({ month: m })),
      api("/api/v1/quality/qualification?" + qs({ month: m })),
    ]);
    const cards = KPIS.map((code) => {
      const a = cur.alliance.indicators[code] || {}, b = last.alliance.indicators[code] || {};
      let delta = "";
      if (a.value != null && b.value != null) {
        const d = a.value - b.value;
        const cls = Math.abs(d) < 1e-9 ? "flat" : d > 0 ? "up" : "down";
        const shown = isRate(code) ? (d * 100).toFixed(1) + " 个百分点" : (Number.isInteger(d) ? String(d) : d.toFixed(2));
        delta = `<span class="${cls}">${d > 0 ? "▲" : d < 0 ? "▼" : "＝"} ${shown}</span>`;
      }
      return `<div class="card" data-code="${code}"><div class="name">${esc(name(code))}</div>
        <div class="value">${fmt(code, a.value)}</div><div>较上月 ${delta || "—"}</div></div>`;
    });
    const q = qual.alliance.indicators.qualification_rate;
    cards.push(`<div class="card" data-code="qualification_rate"><div class="name">处方合格率（点评）</div>
      <div class="value">${fmt("qualification_rate", q.value)}</div><div>${q.numerator}/${q.denominator} 张已点评</div></div>`);
    $("kpis").innerHTML = cards.join("");
    $("alerts").tBodies[0].innerHTML = mon.alerts.map((a) => `<tr><td>${esc(a.institution_name)}</td>
      <td>${esc(a.drug || name(a.code))}${a.type ? "（" + esc(a.type) + "）" : ""}</td>
      <td>${a.value == null ? "—" : fmt(a.drug ? "prescriptions" : a.code, a.value)}</td><td>${esc(a.message)}</td></tr>`).join("");
    $("alerts-empty").hidden = mon.alerts.length > 0;
  };

  // ------------------------------------------------------------------ homogenisation
  LOADERS.homogenisation = async () => {
    const data = await api("/api/v1/stats/indicators?" + qs({ ...monthRange(month()), group_by: "institution", type: $("homo-type").value }));
    state.homo = data;
    drawHomo();
  };
  $("homo-indicator").addEventListener("change", drawHomo);
  $("homo-type").addEventListener("change", () => LOADERS.homogenisation());
  function drawHomo() {
    const data = state.homo; if (!data) return;
    const code = $("homo-indicator").value;
    const sp = data.spread[code] || { outliers: [] };
    const rows = data.rows.filter((r) => r.indicators[code] && r.indicators[code].value != null);
    const el = $("homo-chart");
    const chart = echarts.getInstanceByDom(el) || echarts.init(el);
    const scale = isRate(code) ? 100 : 1;
    chart.setOption({
      animation: false,
      tooltip: { trigger: "item", formatter: (p) => `${p.name}<br>${esc(name(code))}：${fmt(code, p.value / scale)}` },
      grid: { left: 60, right: 30, bottom: 70, top: 30 },
      xAxis: { type: "category", data: rows.map((r) => r.label), axisLabel: { interval: 0, rotate: 20 } },
      yAxis: { type: "value", name: isRate(code) ? "%" : "" },
      series: [{
        type: "bar", name: name(code),
        data: rows.map((r) => ({ value: r.indicators[code].value * scale, key: r.key,
          itemStyle: { color: sp.outliers.includes(r.key) ? "#c62828" : "#0b6e99" } })),
        markLine: sp.median == null ? undefined : { symbol: "none", lineStyle: { type: "dashed" },
          data: [{ yAxis: sp.median * scale, name: "中位数" }], label: { position: "insideEndTop", formatter: "中位数 {c}" } },
        markArea: sp.q1 == null ? undefined : { itemStyle: { color: "rgba(120,120,120,0.15)" },
          data: [[{ yAxis: sp.q1 * scale, name: "Q1–Q3" }, { yAxis: sp.q3 * scale }]] },
      }],
    }, true);
    chart.off("click");
    chart.on("click", (p) => openMember(p.data.key));
    el.dataset.outliers = sp.outliers.join(",");
  }
  function openMember(key) {
    const data = state.homo; const row = data.rows.find((r) => r.key === key); if (!row) return;
    $("member").hidden = false;
    $("member-title").textContent = `${row.label}（${row.key}）`;
    $("member-table").tBodies[0].innerHTML = Object.entries(row.indicators).filter(([c]) => state.defs[c]).map(([c, f]) => {
      const sp = data.spread[c] || { outliers: [] };
      const out = sp.outliers.includes(key);
      return `<tr><td>${esc(name(c))}</td><td class="${out ? "over" : ""}">${fmt(c, f.value)}</td>
        <td>${f.numerator ?? "—"}${f.denominator != null ? " / " + f.denominator : ""}</td>
        <td>${fmt(c, sp.median)}</td><td>${out ? "离群" : ""}</td></tr>`;
    }).join("");
    $("member").scrollIntoView({ block: "nearest" });
  }

  // ------------------------------------------------------------------ rules
  LOADERS.rules = async () => {
    const data = await api("/api/v1/stats/rules?" + qs(monthRange(month())));
    const rules = data.rules.slice().sort((a, b) => (b.noisy - a.noisy) || (b.indicators.hits.value - a.indicators.hits.value));
    $("rules").tBodies[0].innerHTML = rules.map((r) => `<tr class="${r.noisy ? "noisy" : ""}" data-rule="${esc(r.rule_id)}">
      <td><a class="rule">${esc(r.rule_id)}</a> ${esc(r.title)}</td><td>${r.indicators.hits.value}</td>
      <td>${fmt("hit_rate", r.indicators.hit_rate.value)}</td><td>${fmt("agreement_rate", r.indicators.agreement_rate.value)}</td>
      <td>${fmt("override_rate", r.indicators.override_rate.value)}</td>
      <td>${r.examples.map((e) => reviewLink(e.review_id, e.institution)).join("")}</td></tr>`).join("");
    $("silent").innerHTML = data.silent.map((r) => `<li>${esc(r.rule_id)} ${esc(r.title)}</li>`).join("") || "<li>无</li>";
    document.querySelectorAll("#rules a.rule").forEach((a) => a.addEventListener("click", () => ruleTrend(a.textContent)));
    if (rules.length) ruleTrend(rules[0].rule_id);
  };
  async function ruleTrend(rule) {
    const months = [-3, -2, -1, 0].map((d) => shiftMonth(month(), d));
    const all = await Promise.all(months.map((m) => api("/api/v1/stats/rules?" + qs(monthRange(m)))));
    const pick = (d, k) => { const r = d.rules.find((x) => x.rule_id === rule); return r && r.indicators[k].value != null ? +(r.indicators[k].value * 100).toFixed(1) : null; };
    const el = $("rule-trend");
    const chart = echarts.getInstanceByDom(el) || echarts.init(el);
    chart.setOption({ animation: false, title: { text: rule, textStyle: { fontSize: 13 } }, tooltip: { trigger: "axis" },
      legend: { right: 10 }, grid: { left: 50, right: 20, top: 40, bottom: 30 },
      xAxis: { type: "category", data: months }, yAxis: { type: "value", name: "%" },
      series: [{ name: "命中率", type: "line", data: all.map((d) => pick(d, "hit_rate")) },
               { name: "药师认同率", type: "line", data: all.map((d) => pick(d, "agreement_rate")) }] }, true);
  }

  // ------------------------------------------------------------------ prescribing and training
  LOADERS.prescribing = async () => {
    const [ind, fb] = await Promise.all([
      api("/api/v1/stats/indicators?" + qs({ ...monthRange(month()), group_by: "institution" })),
      api("/api/v1/stats/prescribers?" + qs({ month: month() })),
    ]);
    const head = `<thead><tr><th>机构</th>${PRESCRIBING.map(([c, , t]) => `<th>${esc(name(c))}${t ? "<br><small>目标 " + esc(t) + "</small>" : ""}</th>`).join("")}</tr></thead>`;
    const line = (label, inds) => `<tr><td>${esc(label)}</td>${PRESCRIBING.map(([c, target]) => {
      const v = inds[c] ? inds[c].value : null;
      return `<td class="${target != null && v != null && v > target ? "over" : ""}">${fmt(c, v)}</td>`; }).join("")}</tr>`;
    $("prescribing").innerHTML = head + "<tbody>" + ind.rows.map((r) => line(r.label, r.indicators)).join("")
      + line("医共体", ind.alliance.indicators) + "</tbody>";
    $("prescribers").tBodies[0].innerHTML = fb.prescribers.map((p) => `<tr><td>${esc(p.institution_name)}</td><td>${esc(p.name)}</td>
      <td>${esc(p.title || "")}</td><td>${p.prescriptions.value}</td><td>${fmt("flag_rate", p.flag_rate.value)}</td>
      <td>${fmt("flag_rate", p.institution_flag_rate.value)}</td><td>${fmt("flag_rate", p.alliance_flag_rate.value)}</td>
      <td>${p.problems.map((q) => `${esc(q.title)}（${q.prescriptions}）${reviewLink(q.example_review_id, "示例")}`).join("<br>")}</td></tr>`).join("");
  };
  $("print-feedback").addEventListener("click", () => window.print());

  // ------------------------------------------------------------------ reports
  LOADERS.reports = async () => {
    const q = await api("/api/v1/quality/qualification?" + qs({ month: month() }));
    $("qualification").tBodies[0].innerHTML = [...q.rows, { key: "", label: "医共体", indicators: q.alliance.indicators }].map((r) => {
      const f = r.indicators.qualification_rate;
      return `<tr><td>${esc(r.label)}</td><td>${f.numerator}/${f.denominator}</td><td>${fmt("qualification_rate", f.value)}</td></tr>`;
    }).join("");
  };
  document.querySelectorAll(".downloads button").forEach((b) => b.addEventListener("click", async () => {
    $("download-status").textContent = "正在生成……";
    const r = await api("/api/v1/stats/report?" + qs({ month: month(), format: b.dataset.format }), { raw: true });
    if (!r.ok) { $("download-status").textContent = "生成失败"; return; }
    const cd = r.headers.get("Content-Disposition") || "";
    const file = decodeURIComponent((cd.match(/filename="?([^";]+)"?/) || [])[1] || `report-${month()}`);
    const url = URL.createObjectURL(await r.blob());
    const a = document.createElement("a"); a.href = url; a.download = file; document.body.appendChild(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    $("download-status").textContent = `已下载 ${file}`;
  }));

  // ------------------------------------------------------------------ 处方点评
  let codes = [];
  LOADERS.comments = async () => {
    if (!codes.length) codes = await api("/api/v1/quality/comment-codes");
    const list = await api("/api/v1/quality/samples?" + qs({ month: month() }));
    $("samples").innerHTML = list.map((s) => `<option value="${s.id}">${esc(s.month)} 种子 ${s.seed}（${s.commented}/${s.size}，${esc(s.drawn_by)} ${esc(s.drawn_at.slice(0, 16).replace("T", " "))}）</option>`).join("");
    loadTeaching();
    if (list.length) await openSample(state.sample && list.some((s) => s.id === state.sample.id) ? state.sample.id : list[0].id);
    else { state.sample = null; $("sample-items").innerHTML = ""; $("sample-info").textContent = "本月尚未抽样"; }
  };
  $("samples").addEventListener("change", () => openSample($("samples").value));
  $("draw-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const seed = $("seed").value === "" ? null : Number($("seed").value);
    try {
      const s = await api("/api/v1/quality/samples", { method: "POST", body: { month: month(), seed } });
      state.sample = s; state.current = -1;
      await LOADERS.comments();
    } catch (e) { $("sample-info").textContent = "抽样失败：" + e.message; }
  });
  async function openSample(id) {
    const s = await api("/api/v1/quality/samples/" + id);
    state.sample = s; $("samples").value = id;
    $("sample-info").textContent = `抽样 ${s.size} 张（已点评 ${s.commented}），种子 ${s.seed}，${s.drawn_by} 于 ${s.drawn_at.replace("T", " ").slice(0, 16)} 抽取。` +
      s.strata.map((x) => `${x.institution_name}${x.stratum === "herbal" ? "（饮片）" : ""} ${x.drawn}/${x.population}（法定 ≥ ${x.minimum}）`).join("；");
    renderItems();
    select(state.current >= 0 && state.current < s.items.length ? state.current : s.items.findIndex((i) => !i.comment));
  }
  function renderItems() {
    $("sample-items").innerHTML = state.sample.items.map((it, n) => `<li data-n="${n}" class="${it.comment ? (it.comment.judgement === "合理" ? "done" : "bad") : ""}${n === state.current ? " selected" : ""}">
      ${n + 1}. ${esc(it.institution_name)} · ${esc(VERDICT[it.verdict] || it.verdict)} · ${esc(it.created_at.slice(0, 10))}</li>`).join("");
    document.querySelectorAll("#sample-items li").forEach((li) => li.addEventListener("click", () => select(Number(li.dataset.n))));
  }
  async function select(n) {
    if (!state.sample || n < 0 || n >= state.sample.items.length) return;
    state.current = n;
    document.querySelectorAll("#sample-items li").forEach((li) => li.classList.toggle("selected", Number(li.dataset.n) === n));
    const item = state.sample.items[n];
    const r = await api("/api/v1/reviews/" + item.review_id);
    const c = item.comment;
    $("commentary").innerHTML = `<h3>第 ${n + 1} 张 · ${esc(item.institution_name)} · 系统结论 ${esc(r.verdict_zh || r.verdict)}</h3>
      ${contextHtml(r)}
      <div class="judge"><p>点评：<strong id="judgement">${c ? esc(c.judgement) : "未点评"}</strong>
        <span id="chosen-codes">${c ? c.codes.map((x) => `<span class="tag" data-code="${x.code}">${x.code} ${esc(x.text)}</span>`).join("") : ""}</span></p>
      <label>点评代码 <input id="code-input" list="code-list" size="8" placeholder="如 B05"></label>
      <datalist id="code-list">${codes.map((x) => `<option value="${x.code}">${esc(x.group_name)}：${esc(x.text)}</option>`).join("")}</datalist>
      <label>点评意见 <input id="note" size="50" value="${c && c.note ? esc(c.note) : ""}"></label>
      <p id="comment-status" role="status"></p></div>`;
    $("code-input").addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && !ev.ctrlKey) { ev.preventDefault(); ev.stopPropagation(); addCode($("code-input").value.trim().toUpperCase()); }
      else if (ev.key === "Enter" && ev.ctrlKey) { ev.preventDefault(); ev.stopPropagation(); save("不合理"); }
      else if (ev.key === "Escape") { $("code-input").blur(); }
    });
    $("note").addEventListener("keydown", (ev) => {
      if (ev.key === "Enter") { ev.preventDefault(); ev.stopPropagation(); save($("judgement").textContent === "合理" ? "合理" : "不合理"); }
      else if (ev.key === "Escape") { $("note").blur(); }
    });
    $("commentary").focus();
  }
  function contextHtml(r) {
    const ctx = r.context || { patient: {}, prescription: {}, items: [] };
    const p = ctx.patient || {}, rx = ctx.prescription || {};
    const age = p.age_years != null ? p.age_years + " 岁" : p.age_months != null ? p.age_months + " 月龄" : "未知";
    const dx = (p.diagnoses || []).map((d) => `${esc(d.code)} ${esc(d.name || "")}`).join("、") || "未知";
    const items = (ctx.items || []).map((i) => `<tr class="${i.implicated_by.length ? "over" : ""}"><td>${esc(i.name || "未识别")}</td>
      <td>${(i.dose || []).map((d) => d.value + " " + d.unit).join(" / ") || "—"}</td><td>${i.frequency != null ? "每日 " + i.frequency + " 次" : "—"}</td>
      <td>${esc(i.route || "—")}</td><td>${i.days != null ? i.days + " 天" : "—"}</td></tr>`).join("");
    const findings = (r.findings || []).map((f) => `<li>[${f.level}] ${esc(f.rule_id)} ${esc(f.title)}：${esc(f.message)}</li>`).join("") || "<li>系统未发现问题</li>";
    const decision = r.decision ? `<p>药师决定：${esc(r.decision.decision || "")} ${esc(r.decision.reason || "")}</p>` : "";
    return `<p>患者：${esc(p.sex || "未知")}，${esc(age)}，${esc(p.population || "")}；诊断：${dx}</p>
      <p>${esc(rx.type || "")} · ${esc(rx.department || "")} · 医师职称 ${esc(rx.prescriber_title || "未知")} · ${esc(rx.institution_level || "")}</p>
      <table class="grid"><thead><tr><th>药品</th><th>剂量</th><th>频次</th><th>途径</th><th>天数</th></tr></thead><tbody>${items}</tbody></table>
      <h4>系统发现的问题</h4><ul>${findings}</ul>${decision}`;
  }
  function addCode(code) {
    if (!code) return;
    const known = codes.find((x) => x.code === code);
    if (!known) { $("comment-status").textContent = `未知的点评代码 ${code}`; return; }
    $("judgement").textContent = "不合理";
    if (!document.querySelector(`#chosen-codes [data-code="${code}"]`)) {
      $("chosen-codes").insertAdjacentHTML("beforeend", `<span class="tag" data-code="${code}">${code} ${esc(known.text)}</span>`);
    }
    $("code-input").value = "";
    $("comment-status").textContent = "回车继续添加代码，Ctrl+Enter 保存";
  }
  async function save(judgement) {
    const item = state.sample.items[state.current];
    const chosen = judgement === "合理" ? [] : [...document.querySelectorAll("#chosen-codes .tag")].map((t) => t.dataset.code);
    try {
      const c = await api(`/api/v1/quality/samples/${state.sample.id}/comments/${item.review_id}`, { method: "PUT",
        body: { judgement, codes: chosen, note: $("note").value || null } });
      item.comment = c;
      state.sample.commented = state.sample.items.filter((i) => i.comment).length;
      renderItems();
      $("sample-info").textContent = $("sample-info").textContent.replace(/已点评 \d+/, `已点评 ${state.sample.commented}`);
      await select(Math.min(state.current + 1, state.sample.items.length - 1));
      $("comment-status").textContent = `已保存第 ${state.sample.items.indexOf(item) + 1} 张：${judgement}`;
    } catch (e) { $("comment-status").textContent = "保存失败：" + e.message; }
  }
  async function loadTeaching() {
    const cases = await api("/api/v1/quality/teaching-cases");
    $("teaching").innerHTML = cases.map((c) => {
      const p = c.case.patient || {};
      const drugs = (c.case.items || []).map((i) => `${esc(i.name)} ${esc(i.dose || "")}`).join("、");
      const codes = c.case.comment ? c.case.comment.codes.map((x) => x.code).join(" ") : "";
      return `<li><strong>${esc(c.title)}</strong>（${c.source === "comment" ? "点评" : "药师干预"}${codes ? " " + esc(codes) : ""}）：
        ${esc(p.sex || "")} ${esc(p.age || "")}，${(p.diagnoses || []).map((d) => esc(d.name || d.code)).join("、")}；${drugs}
        ${c.case.lesson ? "<br>要点：" + esc(c.case.lesson) : ""}</li>`;
    }).join("") || "<li>暂无</li>";
  }
  async function teaching() {
    const item = state.sample.items[state.current];
    try {
      await api("/api/v1/quality/teaching-cases", { method: "POST", body: { review_id: item.review_id, lesson: $("note").value || null } });
      $("comment-status").textContent = "已收入教学案例库（匿名化）";
      loadTeaching();
    } catch (e) { $("comment-status").textContent = e.message; }
  }
  document.addEventListener("keydown", (ev) => {
    if (state.view !== "comments" || !state.sample || ev.target.matches("input, select, textarea") || ev.ctrlKey || ev.altKey || ev.metaKey) return;
    const k = ev.key;
    if (k === "1") { ev.preventDefault(); save("合理"); }
    else if (k === "2") { ev.preventDefault(); $("judgement").textContent = "不合理"; $("code-input").focus(); }
    else if (k === "n") { ev.preventDefault(); $("note").focus(); }
    else if (k === "j") { select(state.current + 1); }
    else if (k === "k") { select(state.current - 1); }
    else if (k === "t") { teaching(); }
    else if (k === "Enter" && $("judgement") && $("judgement").textContent === "不合理") { save("不合理"); }
  });

  // ------------------------------------------------------------------ what-if replay
  LOADERS.replay = async () => {
    const list = await api("/api/v1/quality/candidates");
    $("candidate").innerHTML = list.map((c) => `<option value="${c.version}">${esc(c.label || "未命名")}（${c.version.slice(0, 12)}，${esc(c.status)}）</option>`).join("")
      || "<option value=''>没有候选版本（请先上传）</option>";
    const jobs = await api("/api/v1/quality/replays");
    if (jobs.length && !state.replayTimer) pollReplay(jobs[0].id);
  };
  $("replay-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const job = await api("/api/v1/quality/replays", { method: "POST", body: { candidate: $("candidate").value, days: Number($("days").value) } });
      pollReplay(job.id);
    } catch (e) { $("replay-status").textContent = "无法开始：" + e.message; }
  });
  async function pollReplay(id) {
    clearTimeout(state.replayTimer);
    const job = await api("/api/v1/quality/replays/" + id);
    $("replay-progress").hidden = false; $("replay-progress").value = job.progress;
    const word = { queued: "排队中", running: "进行中", done: "已完成", failed: "失败" }[job.status];
    $("replay-status").textContent = `${word}：${job.done}/${job.total}（候选 ${job.candidate_version.slice(0, 12)} 对照现行 ${job.baseline_version.slice(0, 12)}，最近 ${job.days} 天）${job.error ? " " + job.error : ""}`;
    if (job.status === "queued" || job.status === "running") { state.replayTimer = setTimeout(() => pollReplay(id), 800); return; }
    state.replayTimer = null;
    if (job.status !== "done") return;
    const s = job.summary;
    const trans = Object.entries(s.transitions).filter(([k]) => k.split("→")[0] !== k.split("→")[1]).map(([k, v]) => `${k.replace(/\w+/g, (w) => VERDICT[w] || w)} ${v} 张`).join("，");
    $("replay-result").hidden = false;
    $("replay-summary").textContent = `重放 ${s.examined} 张处方：${s.finding_changes} 张的提示规则有变化，${s.verdict_changes} 张结论改变${trans ? "（" + trans + "）" : ""}；失败 ${s.failed} 张。`;
    const changed = job.rules.filter((r) => r.added || r.removed || r.level_changed);
    $("replay-rules").tBodies[0].innerHTML = (changed.length ? changed : job.rules.slice(0, 10)).map((r) => `<tr><td>${esc(r.rule_id)} ${esc(r.title)}</td>
      <td>${r.baseline_hits}</td><td>${r.candidate_hits}</td><td>${r.added}</td><td>${r.removed}</td>
      <td>${r.level_changed}${Object.keys(r.levels).length ? "（" + Object.entries(r.levels).map(([k, v]) => `等级 ${k}：${v}`).join("，") + "）" : ""}</td>
      <td>${[...r.examples_added, ...r.examples_removed, ...r.examples_level_changed].slice(0, 4).map((e) => reviewLink(e.review_id, e.institution)).join("")}</td></tr>`).join("");
    $("replay-institutions").tBodies[0].innerHTML = job.institutions.map((i) => `<tr><td>${esc(i.name)}</td><td>${i.examined}</td>
      <td>${i.added}</td><td>${i.removed}</td><td>${i.verdict_changes}</td></tr>`).join("");
  }

  // ------------------------------------------------------------------ review dialog (every example is clickable)
  document.addEventListener("click", async (ev) => {
    const a = ev.target.closest("a.review"); if (!a) return;
    ev.preventDefault();
    const r = await api("/api/v1/reviews/" + a.dataset.review);
    $("review-body").innerHTML = `<h3>审核 ${esc(r.id.slice(0, 12))} · ${esc(r.institution_code || "")} · ${esc(r.verdict_zh || r.verdict)} · ${esc(r.outcome || "")}</h3>${contextHtml(r)}`;
    $("review-dialog").showModal();
  });

  // ------------------------------------------------------------------ start
  const now = new Date();
  $("month").value = shiftMonth(`${now.getFullYear()}-${String(now.getMonth() + 1).padStart(2, "0")}`, -1);  // the last full month
  if (state.token) showApp(); else showLogin();
})();
