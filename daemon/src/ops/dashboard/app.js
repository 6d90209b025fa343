// AuthPulse dashboard: polls the JSON API and redraws. No dependencies.
"use strict";

const REFRESH_MS = 2000;
const fmt = new Intl.NumberFormat("en");

function $(id) { return document.getElementById(id); }

function text(id, value) { $(id).textContent = value; }

function cell(row, value, className) {
  const td = row.insertCell();
  td.textContent = value;
  if (className) td.className = className;
  return td;
}

function fill(tableId, rows, render) {
  const body = $(tableId).tBodies[0];
  body.replaceChildren();
  for (const item of rows) render(body.insertRow(), item);
}

async function get(path) {
  const response = await fetch(path, { cache: "no-store" });
  if (!response.ok) throw new Error(path + ": " + response.status);
  return response.json();
}

function drawSeries(canvasId, values, color) {
  const canvas = $(canvasId);
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = 24;
  ctx.clearRect(0, 0, w, h);
  const finite = values.filter((v) => v !== null && Number.isFinite(v));
  const max = Math.max(1, ...finite);
  ctx.fillStyle = "#8a97a5";
  ctx.font = "11px system-ui";
  ctx.fillText(fmt.format(Math.round(max)), 2, 11);
  ctx.strokeStyle = "#24303b";
  ctx.beginPath(); ctx.moveTo(pad, h - pad / 2); ctx.lineTo(w, h - pad / 2); ctx.stroke();
  if (values.length < 2) return;
  ctx.strokeStyle = color;
  ctx.lineWidth = 2;
  ctx.beginPath();
  values.forEach((v, i) => {
    const x = pad + (i / (values.length - 1)) * (w - pad);
    const y = h - pad / 2 - ((v || 0) / max) * (h - pad);
    if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
  });
  ctx.stroke();
}

function showStatus(status) {
  const s = status.summary;
  const phase = $("phase");
  phase.textContent = status.phase;
  phase.className = "phase " + status.phase;
  text("source", status.source || "-");
  text("policy-version", s.policy_version || "-");
  text("last-reload", status.last_reload_at || "never");
  text("updated", status.updated_at || "-");
  text("events-read", fmt.format(s.events_read));
  text("events-scored", fmt.format(s.events_scored));
  text("events-per-s", fmt.format(Math.round(status.events_per_s)));
  text("lag-p95", status.lag_p95_s === null ? "-" : status.lag_p95_s + " s");
  text("alerts-total", fmt.format(s.alerts));
  text("rejected", [s.invalid, s.late, s.duplicates].map((n) => fmt.format(n)).join(" / "));
  text("entities", fmt.format(status.sizes.users) + " / " + fmt.format(status.sizes.computers));
  text("open-incidents", fmt.format(status.sizes.open_incidents));
  const levels = ["low", "medium", "high", "critical"];
  const count = (level) => s.risk_levels[level.toUpperCase()] || 0;
  const most = Math.max(1, ...levels.map(count));
  fill("levels", levels, (row, level) => {
    const n = count(level);
    row.dataset.level = level;
    cell(row, level, "level-" + level);
    cell(row, fmt.format(n)).id = "level-count-" + level;
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.style.width = Math.max(1, (100 * n) / most) + "%";
    row.insertCell().appendChild(bar);
  });
}

function showRules(rules) {
  fill("rules", rules.rules, (row, rule) => {
    row.dataset.rule = rule.id;
    cell(row, rule.id);
    cell(row, rule.disabled ? "disabled (failures)" : rule.mode);
    cell(row, fmt.format(rule.evaluations || 0));
    cell(row, fmt.format(rule.hits || 0));
    const rate = rule.evaluations ? (100 * rule.hits) / rule.evaluations : 0;
    cell(row, rate.toFixed(3) + "%");
    cell(row, fmt.format(rule.failures || 0));
    cell(row, (rule.time_ms || 0).toFixed(1));
  });
}

function showAlerts(alerts) {
  fill("alerts", alerts, (row, a) => {
    row.dataset.alertId = a.alert_id;
    cell(row, a.status);
    cell(row, a.risk_level, "level-" + String(a.risk_level).toLowerCase());
    cell(row, a.risk_score);
    cell(row, a.entity_type + " " + a.entity_id);
    cell(row, (a.risk_flags || []).join(", "));
    cell(row, a.summary || "");
    cell(row, a.last_event_time);
  });
  const top = new Map();
  for (const a of alerts) {
    const key = a.entity_type + " " + a.entity_id;
    const seen = top.get(key) || { risk: 0, alerts: new Set() };
    seen.risk = Math.max(seen.risk, a.risk_score);
    seen.alerts.add(a.alert_id);
    top.set(key, seen);
  }
  const ranked = [...top.entries()].sort((x, y) => y[1].risk - x[1].risk).slice(0, 10);
  fill("top-entities", ranked, (row, [entity, seen]) => {
    cell(row, entity);
    cell(row, seen.risk);
    cell(row, seen.alerts.size);
  });
}

function showHistory(history) {
  const points = history.points || [];
  drawSeries("chart-rate", points.map((p) => p.events_per_s), "#4fb3ff");
  drawSeries("chart-lag", points.map((p) => p.lag_p95_s), "#ffb300");
}

async function refresh() {
  try {
    const [status, rules, alerts, history] = await Promise.all([
      get("/api/v1/status"), get("/api/v1/rules"), get("/api/v1/alerts?limit=100"), get("/api/v1/history"),
    ]);
    showStatus(status);
    showRules(rules);
    showAlerts(alerts.alerts);
    showHistory(history);
    document.body.dataset.refreshed = String(Date.now());
  } catch (e) {
    const phase = $("phase");
    phase.textContent = "unreachable";
    phase.className = "phase";
  }
}

refresh();
setInterval(refresh, REFRESH_MS);
