// scalecast dashboard: polls the JSON API and /metrics; no build step.
"use strict";
(function () {
  const POLL_MS = 5000;
  const TOKEN_KEY = "scalecast_token";
  const $ = (id) => document.getElementById(id);
  const state = {
    targets: [],
    selected: null,
    timelineChart: null,
    sqlChart: null,
    lastMetrics: null, // {t, values}
    timer: null,
    timeline: null,
  };

  // ---------- helpers ----------
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null) continue;
      if (k === "class") e.className = v;
      else e.setAttribute(k, v);
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }
  const fmtNum = (v, d = 2) =>
    v === null || v === undefined || !isFinite(v) ? "–" : Number(v).toLocaleString(undefined, { maximumFractionDigits: d });
  const fmtMoney = (v) => (v === null || v === undefined || !isFinite(v) ? "–" : "$" + Number(v).toFixed(2));
  const fmtPct = (v) => (v === null || v === undefined || !isFinite(v) ? "–" : (v * 100).toFixed(0) + " %");
  function fmtBytes(b) {
    if (b === null || b === undefined || !isFinite(b)) return "–";
    const u = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; }
    return b.toFixed(i ? 1 : 0) + " " + u[i];
  }
  const fmtTime = (ms) => new Date(ms).toLocaleString(undefined, { hour12: false });
  function setStatus(text, bad) {
    const s = $("status");
    s.textContent = text;
    s.className = bad ? "error" : "";
  }

  // ---------- API with auth ----------
  class AuthError extends Error {}
  async function api(path, opts) {
    const o = Object.assign({ headers: {} }, opts || {});
    const tok = sessionStorage.getItem(TOKEN_KEY);
    if (tok) o.headers["Authorization"] = "Bearer " + tok;
    const r = await fetch(path, o);
    if (r.status === 401) {
      $("auth").hidden = false;
      throw new AuthError("this server needs an API token");
    }
    const text = await r.text();
    if (!r.ok) {
      let reason = text;
      try { reason = JSON.parse(text).error || text; } catch (_) { /* not JSON */ }
      throw new Error(r.status + ": " + reason);
    }
    return text;
  }
  const apiJson = async (path, opts) => JSON.parse(await api(path, opts));

  $("auth").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const t = $("token").value.trim();
    if (t) sessionStorage.setItem(TOKEN_KEY, t);
    $("token").value = "";
    $("auth").hidden = true;
    refresh();
  });

  // ---------- targets ----------
  function modeBadge(t) {
    if (t.paused) return el("span", { class: "badge paused" }, "paused");
    if (t.mode === "forecast_and_scale") return el("span", { class: "badge scale" }, "forecast & scale");
    return el("span", { class: "badge shadow" }, "forecast only");
  }
  function renderTargets(list) {
    const tb = $("targets").tBodies[0];
    const rows = [];
    for (const t of list) {
      const la = t.last_action;
      const action = la
        ? el("span", { title: la.reason }, `${la.result} → ${la.replicas} (${fmtTime(Date.parse(la.ts))})`)
        : el("span", { class: "muted" }, "none yet");
      const sav = t.savings_per_hour;
      const tr = el(
        "tr",
        { class: "clickable" + (t.name === state.selected ? " selected" : ""), tabindex: "0", "data-target": t.name,
          "aria-label": `Show target ${t.name} in the chart` },
        el("th", { scope: "row" }, t.name, t.kind && t.kind !== "none" ? el("span", { class: "muted" }, " " + t.kind) : null),
        el("td", {}, modeBadge(t)),
        el("td", { class: "num current" }, fmtNum(t.current_replicas, 0)),
        el("td", { class: "num recommended" }, fmtNum(t.recommended_replicas, 0)),
        el("td", { class: "num" }, fmtPct(t.utilization)),
        el("td", { class: "num" }, fmtMoney(t.cost_per_hour_now)),
        el("td", { class: "num" }, fmtMoney(t.cost_per_hour_recommended)),
        el("td", { class: "num " + (sav > 0 ? "good" : sav < 0 ? "bad" : "") }, fmtMoney(sav)),
        el("td", {}, action)
      );
      const pick = () => { selectTarget(t.name); };
      tr.addEventListener("click", pick);
      tr.addEventListener("keydown", (ev) => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); pick(); } });
      rows.push(tr);
    }
    if (!rows.length) {
      rows.push(el("tr", { class: "empty" }, el("td", { colspan: "9" }, "no scaling targets (add a scaling: section to the pipeline)")));
    }
    tb.replaceChildren(...rows);
    const sel = $("target-select");
    const names = list.map((t) => t.name);
    const have = Array.from(sel.options).map((o) => o.value);
    if (names.join("\n") !== have.join("\n")) {
      sel.replaceChildren(...names.map((n) => el("option", { value: n }, n)));
    }
    if (!state.selected || !names.includes(state.selected)) state.selected = names[0] || null;
    if (state.selected) sel.value = state.selected;
    const cur = list.find((t) => t.name === state.selected);
    const ns = $("next-schedule");
    if (cur && cur.next_schedule) {
      ns.textContent = `Next scheduled override: ${cur.next_schedule.name} at ${fmtTime(Date.parse(cur.next_schedule.at))} (min ${cur.next_schedule.min_replicas} replicas)`;
    } else {
      ns.textContent = cur ? "No scheduled override" : "";
    }
  }
  function selectTarget(name) {
    state.selected = name;
    renderTargets(state.targets);
    refreshTimeline();
  }
  $("target-select").addEventListener("change", (ev) => selectTarget(ev.target.value));

  // ---------- timeline chart ----------
  function chartWidth(div) {
    return Math.max(300, div.clientWidth || div.parentElement.clientWidth - 32);
  }
  function buildTimelineData(tl) {
    const xs = new Set();
    for (const p of tl.demand) xs.add(p[0]);
    for (const p of tl.capacity) xs.add(p[0]);
    for (const p of tl.forecast) xs.add(p[0]);
    for (const r of tl.recommendations) xs.add(r.ts_ms);
    const x = Array.from(xs).sort((a, b) => a - b);
    const idx = new Map(x.map((v, i) => [v, i]));
    const col = () => new Array(x.length).fill(null);
    const demand = col(), cap = col(), p10 = col(), p50 = col(), p90 = col(), marks = col();
    for (const [t, v] of tl.demand) demand[idx.get(t)] = v;
    for (const [t, v] of tl.capacity) cap[idx.get(t)] = v;
    for (const [t, a, b, c] of tl.forecast) { const i = idx.get(t); p10[i] = a; p50[i] = b; p90[i] = c; }
    // Markers sit on the demand line (the last demand at or before them).
    const recAt = new Map(x.map((v, i) => [v, i]));
    for (const r of tl.recommendations) {
      const i = recAt.get(r.ts_ms);
      let y = demand[i];
      for (let j = i; y === null && j >= 0; j--) y = demand[j];
      marks[i] = y === null ? cap[i] : y;
    }
    return [x.map((v) => v / 1000), demand, cap, p10, p50, p90, marks];
  }
  function timelineOpts(div) {
    return {
      width: chartWidth(div),
      height: 320,
      scales: { x: { time: true } },
      legend: { live: true },
      cursor: { points: { size: 6 } },
      series: [
        {},
        { label: "demand", stroke: "#1d2330", width: 1.5, spanGaps: true },
        { label: "provisioned capacity", stroke: "#1a7f37", width: 2, dash: [6, 4], spanGaps: true, paths: uPlot.paths.stepped({ align: 1 }) },
        { label: "forecast p10", stroke: "rgba(31,111,235,0.5)", width: 1, spanGaps: true },
        { label: "forecast p50", stroke: "#1f6feb", width: 1.5, dash: [3, 3], spanGaps: true },
        { label: "forecast p90", stroke: "rgba(31,111,235,0.5)", width: 1, spanGaps: true },
        { label: "decisions", stroke: "#c62828", width: 0, paths: () => null, points: { show: true, size: 8, fill: "#c62828", stroke: "#c62828" } },
      ],
      bands: [{ series: [5, 3], fill: "rgba(31,111,235,0.18)" }],
      hooks: { setCursor: [(u) => showHover(u)] },
    };
  }
  function showHover(u) {
    const i = u.cursor.idx;
    const info = $("hover-info");
    const tl = state.timeline;
    if (i === null || i === undefined || !tl) { info.textContent = ""; return; }
    const ms = Math.round(u.data[0][i] * 1000);
    const r = tl.recommendations.find((m) => m.ts_ms === ms);
    info.textContent = r
      ? `${fmtTime(ms)}: ${r.current_replicas} → ${r.recommended_replicas} replicas (${r.decided_by}): ${r.reason}`
      : "";
  }
  function renderTimeline(tl) {
    state.timeline = tl;
    const div = $("timeline-chart");
    const data = buildTimelineData(tl);
    div.dataset.demandPoints = String(tl.demand.length);
    div.dataset.forecastPoints = String(tl.forecast.length);
    div.dataset.capacityPoints = String(tl.capacity.length);
    div.dataset.decisions = String(tl.recommendations.length);
    if (!state.timelineChart) {
      state.timelineChart = new uPlot(timelineOpts(div), data, div);
    } else {
      state.timelineChart.setData(data);
    }
    const recs = tl.recommendations.slice(-50).reverse();
    $("recs").tBodies[0].replaceChildren(
      ...recs.map((r) =>
        el("tr", {},
          el("td", {}, fmtTime(r.ts_ms)),
          el("td", { class: "num" }, r.current_replicas),
          el("td", { class: "num" }, r.recommended_replicas),
          el("td", {}, r.decided_by),
          el("td", { class: "reason" }, r.reason)))
    );
  }
  async function refreshTimeline() {
    if (!state.selected) return;
    const range = $("range").value;
    const tl = await apiJson(`/api/v1/targets/${encodeURIComponent(state.selected)}/timeline?range_secs=${range}`);
    renderTimeline(tl);
  }
  $("range").addEventListener("change", () => { refreshTimeline().catch(showError); });

  // ---------- pipeline health ----------
  // Parses Prometheus/OpenMetrics text into [{name, labels, value}].
  function parseMetrics(text) {
    const out = [];
    for (const raw of text.split("\n")) {
      const line = raw.trim();
      if (!line || line.startsWith("#")) continue;
      const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/.exec(line);
      if (!m) continue;
      const labels = {};
      if (m[3]) {
        const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
        let l;
        while ((l = re.exec(m[3])) !== null) labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
      }
      const v = m[4] === "+Inf" ? Infinity : m[4] === "-Inf" ? -Infinity : parseFloat(m[4]);
      out.push({ name: m[1], labels, value: v });
    }
    return out;
  }
  const sum = (ms, name, pred) => ms.filter((m) => m.name === name && (!pred || pred(m.labels))).reduce((a, m) => a + (isFinite(m.value) ? m.value : 0), 0);
  const has = (ms, name) => ms.some((m) => m.name === name);
  const SOURCE_KINDS = [
    ["scrape", "scalecast_scrape_samples_total", ["scalecast_scrape_failures_total", "scalecast_scrape_store_errors_total"]],
    ["replay", "scalecast_replay_samples_total", ["scalecast_replay_store_errors_total"]],
    ["kafka", "scalecast_kafka_samples_total", ["scalecast_kafka_errors_total", "scalecast_kafka_dead_letter_total"]],
    ["cloudwatch", "scalecast_cloudwatch_samples_total", ["scalecast_cloudwatch_api_errors_total"]],
  ];
  function renderHealth(ms, prev, dtSec) {
    const rate = (name, pred) => {
      if (!prev || !(dtSec > 0)) return null;
      return Math.max(0, (sum(ms, name, pred) - sum(prev, name, pred)) / dtSec);
    };
    const errors =
      sum(ms, "scalecast_samples_rejected_total") + sum(ms, "scalecast_flush_errors_total") +
      sum(ms, "scalecast_query_errors_total") +
      SOURCE_KINDS.reduce((a, k) => a + k[2].reduce((b, n) => b + sum(ms, n), 0), 0);
    const qCount = sum(ms, "scalecast_query_duration_seconds_count");
    const qSum = sum(ms, "scalecast_query_duration_seconds_sum");
    let qLat = qCount > 0 ? qSum / qCount : null;
    if (prev) {
      const dc = qCount - sum(prev, "scalecast_query_duration_seconds_count");
      if (dc > 0) qLat = (qSum - sum(prev, "scalecast_query_duration_seconds_sum")) / dc;
    }
    const sources = new Map();
    for (const [kind, samples, errs] of SOURCE_KINDS) {
      for (const m of ms.filter((m) => m.name === samples)) {
        const id = m.labels.source || m.labels.id || kind;
        const pred = (l) => (l.source || l.id || kind) === id;
        sources.set(id, {
          kind, samples: m.value, rate: rate(samples, pred),
          errors: errs.reduce((a, n) => a + sum(ms, n, pred), 0),
          up: kind === "scrape" ? sum(ms, "scalecast_scrape_targets", pred) : null,
        });
      }
    }
    const writes = sum(ms, "scalecast_write_requests_total");
    if (writes > 0) sources.set("remote_write", { kind: "remote_write", samples: null, rate: rate("scalecast_write_requests_total"), errors: sum(ms, "scalecast_samples_rejected_total"), up: null, unit: "req" });
    const up = Array.from(sources.values()).filter((s) => s.up === null ? (s.rate === null ? s.samples > 0 : s.rate > 0 || s.errors === 0) : s.up > 0).length;
    const lag = has(ms, "scalecast_kafka_consumer_lag") ? sum(ms, "scalecast_kafka_consumer_lag") : null;
    const stats = [
      ["Ready", sum(ms, "scalecast_ready") > 0 ? "yes" : "no"],
      ["Sources active", `${up} / ${sources.size}`],
      ["Samples/s", fmtNum(rate("scalecast_samples_received_total"), 1)],
      ["Samples received", fmtNum(sum(ms, "scalecast_samples_received_total"), 0)],
      ["Errors (total)", fmtNum(errors, 0)],
      ["Kafka lag", lag === null ? "–" : fmtNum(lag, 0)],
      ["WAL segments", fmtNum(sum(ms, "scalecast_wal_segments"), 0)],
      ["In memory (head)", fmtNum(sum(ms, "scalecast_head_samples"), 0)],
      ["Storage", `${fmtBytes(sum(ms, "scalecast_storage_bytes"))} in ${fmtNum(sum(ms, "scalecast_storage_files"), 0)} files`],
      ["Query latency", qLat === null ? "–" : (qLat * 1000).toFixed(1) + " ms"],
      ["Queries", fmtNum(sum(ms, "scalecast_queries_total"), 0)],
    ];
    $("health").replaceChildren(...stats.map(([k, v]) => el("div", {}, el("dt", {}, k), el("dd", {}, v))));
    $("sources").tBodies[0].replaceChildren(
      ...Array.from(sources.entries()).map(([id, s]) =>
        el("tr", {},
          el("th", { scope: "row" }, id),
          el("td", {}, s.kind),
          el("td", { class: "num" }, s.rate === null ? "–" : fmtNum(s.rate, 1) + (s.unit ? " " + s.unit : "")),
          el("td", { class: "num" }, fmtNum(s.samples, 0)),
          el("td", { class: "num " + (s.errors > 0 ? "bad" : "") }, fmtNum(s.errors, 0)),
          el("td", {}, s.up === null ? "–" : s.up > 0 ? `${s.up} targets` : "down")))
    );
  }
  async function refreshHealth() {
    const text = await api("/metrics");
    const ms = parseMetrics(text);
    const now = performance.now();
    const prev = state.lastMetrics;
    renderHealth(ms, prev && prev.values, prev ? (now - prev.t) / 1000 : 0);
    state.lastMetrics = { t: now, values: ms };
  }

  // ---------- SQL ----------
  function asTime(v) {
    if (typeof v === "number") return v > 1e11 ? v : null;
    if (typeof v === "string" && /^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}/.test(v)) {
      const s = /[zZ]|[+-]\d{2}:?\d{2}$/.test(v) ? v : v.replace(" ", "T") + "Z";
      const t = Date.parse(s);
      return isNaN(t) ? null : t;
    }
    return null;
  }
  function renderSql(rows) {
    const table = $("sql-result");
    const cols = [];
    for (const r of rows) for (const k of Object.keys(r)) if (!cols.includes(k)) cols.push(k);
    table.tHead.replaceChildren(el("tr", {}, ...cols.map((c) => el("th", { scope: "col" }, c))));
    const cell = (v) =>
      v === null || v === undefined ? "" :
      typeof v === "number" ? (Number.isInteger(v) ? String(v) : String(+v.toPrecision(8))) :
      typeof v === "object" ? JSON.stringify(v) : String(v);
    table.tBodies[0].replaceChildren(
      ...rows.slice(0, 1000).map((r) =>
        el("tr", {}, ...cols.map((c) => el("td", { class: typeof r[c] === "number" ? "num" : null }, cell(r[c])))))
    );
    // A chart when there is a time column and a numeric column.
    const div = $("sql-chart");
    const timeCol = cols.find((c) => rows.length && rows.every((r) => r[c] === null || asTime(r[c]) !== null) && rows.some((r) => r[c] !== null));
    const numCol = cols.find((c) => c !== timeCol && rows.length && rows.every((r) => r[c] === null || typeof r[c] === "number") && rows.some((r) => typeof r[c] === "number"));
    if (state.sqlChart) { state.sqlChart.destroy(); state.sqlChart = null; }
    if (!timeCol || !numCol) { div.hidden = true; div.dataset.series = "0"; return; }
    // One line per value of the first text column (e.g. name), up to 8; without
    // one, one line per numeric column.
    const keyCol = cols.find((c) => c !== timeCol && c !== numCol && rows.every((r) => typeof r[c] === "string"));
    const numCols = keyCol
      ? [numCol]
      : cols.filter((c) => c !== timeCol && rows.every((r) => r[c] === null || typeof r[c] === "number") && rows.some((r) => typeof r[c] === "number")).slice(0, 8);
    const groups = new Map();
    for (const r of rows) {
      const t = asTime(r[timeCol]);
      if (t === null) continue;
      for (const nc of numCols) {
        const k = keyCol ? r[keyCol] : nc;
        if (!groups.has(k)) { if (groups.size >= 8) continue; groups.set(k, new Map()); }
        if (typeof r[nc] === "number") groups.get(k).set(t, r[nc]);
      }
    }
    const xs = Array.from(new Set(Array.from(groups.values()).flatMap((g) => Array.from(g.keys())))).sort((a, b) => a - b);
    const palette = ["#1f6feb", "#c62828", "#1a7f37", "#9a6700", "#8250df", "#0a7ea4", "#bf3989", "#57606a"];
    const series = [{}];
    const data = [xs.map((x) => x / 1000)];
    let i = 0;
    for (const [k, g] of groups) {
      series.push({ label: String(k), stroke: palette[i++ % palette.length], width: 1.5, spanGaps: true });
      data.push(xs.map((x) => (g.has(x) ? g.get(x) : null)));
    }
    div.hidden = false;
    div.dataset.series = String(groups.size);
    div.setAttribute("aria-label", `Chart of ${numCols.join(", ")} over ${timeCol}` + (keyCol ? ` by ${keyCol}` : ""));
    state.sqlChart = new uPlot({ width: chartWidth(div), height: 220, scales: { x: { time: true } }, series }, data, div);
  }
  async function runSql() {
    const q = $("sql-query").value;
    const st = $("sql-status");
    st.textContent = "running…";
    st.className = "";
    const t0 = performance.now();
    try {
      const rows = await apiJson("/api/v1/sql", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ query: q }),
      });
      const list = Array.isArray(rows) ? rows : [];
      renderSql(list);
      st.textContent = `${list.length} rows in ${Math.round(performance.now() - t0)} ms` + (list.length > 1000 ? " (first 1000 shown)" : "");
      $("sql-result").dataset.rows = String(list.length);
    } catch (e) {
      st.textContent = e.message;
      st.className = "error";
    }
  }
  $("sql-form").addEventListener("submit", (ev) => { ev.preventDefault(); runSql(); });
  $("sql-query").addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); runSql(); }
  });

  // ---------- refresh loop ----------
  function showError(e) {
    if (e instanceof AuthError) setStatus(e.message, true);
    else setStatus("error: " + e.message, true);
  }
  let running = false;
  async function refresh() {
    if (running) return;
    running = true;
    try {
      const results = await Promise.allSettled([
        apiJson("/api/v1/targets").then((t) => { state.targets = Array.isArray(t) ? t : []; renderTargets(state.targets); return refreshTimeline(); }),
        refreshHealth(),
      ]);
      const failed = results.find((r) => r.status === "rejected");
      if (failed) showError(failed.reason);
      else setStatus("updated " + new Date().toLocaleTimeString(undefined, { hour12: false }));
    } finally {
      running = false;
    }
  }
  function schedule() {
    if (state.timer) clearInterval(state.timer);
    state.timer = $("autorefresh").checked ? setInterval(refresh, POLL_MS) : null;
  }
  $("autorefresh").addEventListener("change", schedule);
  window.addEventListener("resize", () => {
    for (const [c, id, h] of [[state.timelineChart, "timeline-chart", 320], [state.sqlChart, "sql-chart", 220]]) {
      if (c) c.setSize({ width: chartWidth($(id)), height: h });
    }
  });
  // Ask for the token up front when the server has auth on (GET /api/v1/config
  // needs no token and shows whether `api.auth` is set), instead of waiting for a 401.
  async function checkAuth() {
    if (sessionStorage.getItem(TOKEN_KEY)) return;
    try {
      const cfg = await apiJson("/api/v1/config");
      if (cfg && cfg.api && cfg.api.auth) {
        $("auth").hidden = false;
        $("token").focus();
      }
    } catch (_) {
      // Older servers without /api/v1/config: the first 401 shows the form.
    }
  }
  checkAuth();
  refresh();
  schedule();
})();
