// The tts-ops status page: polls /api/status and /api/logs, fills the page with
// textContent only (service names and log lines are never parsed as markup).
"use strict";

const $ = (selector) => document.querySelector(selector);
let refreshMs = 2000;
let actions = false;

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "-" : String(text);
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "-";
  const s = Math.floor(seconds);
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m" + String(s % 60).padStart(2, "0") + "s";
  return Math.floor(s / 3600) + "h" + String(Math.floor(s % 3600 / 60)).padStart(2, "0") + "m";
}

function bytes(n) {
  if (!n) return "-";
  return (n / 1048576).toFixed(1) + "MiB";
}

function clock(ts) {
  return new Date(ts * 1000).toLocaleTimeString();
}

function say(text, isError) {
  const p = $("#message");
  p.textContent = text;
  p.className = isError ? "error" : "";
}

async function act(action, service) {
  const token = $("#token").value;
  sessionStorage.setItem("tts-ops-token", token);
  say(action + " " + service + " ...", false);
  try {
    const resp = await fetch("/api/services/" + encodeURIComponent(service) + "/" + action, {
      method: "POST", headers: {"Authorization": "Bearer " + token}});
    const body = await resp.json();
    say(action + " " + service + ": " + (body.message || body.error), !resp.ok);
  } catch (err) {
    say(action + " " + service + ": " + err, true);
  }
  refresh();
}

function renderServices(services) {
  const body = $("#services tbody");
  body.replaceChildren();
  for (const s of services) {
    const tr = document.createElement("tr");
    tr.dataset.name = s.name;
    tr.dataset.state = s.state;
    cell(tr, s.name, "name");
    cell(tr, s.service);
    cell(tr, s.state, "state state-" + s.state);
    cell(tr, s.ready ? "yes" : "no");
    cell(tr, s.pid);
    cell(tr, duration(s.uptime_s));
    cell(tr, s.restarts);
    cell(tr, s.cpu_percent === null ? null : s.cpu_percent.toFixed(1) + "%");
    cell(tr, bytes(s.rss_bytes));
    cell(tr, s.release);
    cell(tr, s.health);
    const own = s.port ? s.host + ":" + s.port : null;
    // clients use the service's address; a slot's own (private) port is shown beside it
    cell(tr, s.address && own && s.address !== own ? s.address + " (private " + own + ")"
                                                   : s.address || own);
    const td = cell(tr, "", "actions");
    if (actions) {
      for (const action of ["restart", "stop", "start"]) {
        const button = document.createElement("button");
        button.textContent = action;
        button.dataset.action = action;
        button.addEventListener("click", () => act(action, s.service));
        td.appendChild(button);
      }
    }
    body.appendChild(tr);
  }
  const select = $("#log-name");
  const chosen = select.value;
  // a service's log is its serving generation's: it stays chosen across deploys
  const names = Array.from(new Set(services.map((s) => s.service)));
  if (names.join("\n") !== Array.from(select.options).map((o) => o.value).join("\n")) {
    select.replaceChildren(...names.map((n) => {
      const option = document.createElement("option");
      option.value = option.textContent = n;
      return option;
    }));
    if (names.includes(chosen)) select.value = chosen;
  }
}

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs) {
  const element = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) element.setAttribute(key, String(value));
  return element;
}

// one metric of one service over the window, with its deploys as vertical marks
function chart(service, points, index, label, unit, deploys, now, windowS) {
  const W = 320, H = 64;
  const box = svg("svg", {viewBox: "0 0 " + W + " " + H, width: W, height: H, class: "trend",
                          role: "img"});
  box.dataset.service = service;
  box.dataset.metric = label;
  const values = points.map((p) => p[index]).filter((v) => v !== null);
  const top = Math.max(0, ...values) || 1;
  // the axis spans what there is, up to the window: a fresh page's minute fills the width
  const span = Math.max(10, Math.min(windowS, now - Math.min(now - 10, ...points.map((p) => p[0]),
    ...deploys.filter((d) => d.service === service && d.started_at >= now - windowS)
      .map((d) => d.started_at))));
  const x = (t) => Math.max(0, Math.min(W, (t - (now - span)) / span * W));
  box.dataset.span = String(Math.round(span));
  const y = (v) => H - 3 - v / top * (H - 16);
  let d = "", pen = false;
  for (const p of points) {
    if (p[index] === null) { pen = false; continue; }
    d += (pen ? "L" : "M") + x(p[0]).toFixed(1) + " " + y(p[index]).toFixed(1) + " ";
    pen = true;
  }
  box.dataset.points = String(values.length);
  box.appendChild(svg("rect", {x: 0, y: 0, width: W, height: H, class: "frame"}));
  box.appendChild(svg("path", {d: d.trim() || "M0 " + (H - 3), class: "line"}));
  for (const dep of deploys) {
    if (dep.service !== service || dep.started_at < now - span) continue;
    const at = x(dep.started_at).toFixed(1);
    const mark = svg("line", {x1: at, x2: at, y1: 0, y2: H,
                              class: "deploy deploy-" + (dep.result || "running")});
    mark.dataset.id = dep.id;
    const title = svg("title", {});
    title.textContent = (dep.kind || "deploy") + " " + dep.id + ": " + (dep.result || "running") +
      " at " + clock(dep.started_at);
    mark.appendChild(title);
    box.appendChild(mark);
  }
  const last = values.length ? values[values.length - 1] : null;
  const text = svg("text", {x: 4, y: 11, class: "label"});
  text.textContent = label + (last === null ? "" : "  " + last.toFixed(last < 10 ? 2 : 0) +
    " " + unit) + "  (max " + (values.length ? top.toFixed(top < 10 ? 2 : 0) : "-") +
    ", last " + (span < 120 ? Math.round(span) + " s" : Math.round(span / 60) + " min") + ")";
  box.appendChild(text);
  return box;
}

function renderTrends(trends, deploys, now, windowS) {
  const section = $("#trends");
  const names = Array.from(new Set(Object.keys(trends).concat(
    deploys.filter((d) => d.started_at >= now - windowS).map((d) => d.service)))).sort();
  section.replaceChildren(...names.map((service) => {
    const points = trends[service] || [];
    const div = document.createElement("div");
    div.className = "trend-row";
    div.dataset.service = service;
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = service;
    div.appendChild(name);
    div.appendChild(chart(service, points, 1, "requests", "/s", deploys, now, windowS));
    div.appendChild(chart(service, points, 2, "p95", "ms", deploys, now, windowS));
    div.appendChild(chart(service, points, 3, "errors", "/s", deploys, now, windowS));
    return div;
  }));
  if (!names.length) {
    const p = document.createElement("p");
    p.textContent = "no samples yet: a running service's /metrics is read every refresh";
    section.replaceChildren(p);
  }
}

function renderEvents(events) {
  const list = $("#events");
  list.replaceChildren(...events.slice().reverse().map((e) => {
    const li = document.createElement("li");
    li.textContent = clock(e.ts) + "  " + e.service + "  " + e.kind +
      (e.reason ? "  " + e.reason : "");
    return li;
  }));
}

function renderDeploys(deploys) {
  const body = $("#deploys tbody");
  body.replaceChildren();
  for (const d of deploys) {
    const tr = document.createElement("tr");
    for (const value of [d.id, d.service, d.kind || "deploy", d.strategy, d.result,
                         d.duration_s === undefined ? null : d.duration_s.toFixed(2) + "s"]) {
      cell(tr, value);
    }
    body.appendChild(tr);
  }
}

async function refreshLog() {
  const name = $("#log-name").value;
  if (!name) return;
  try {
    const resp = await fetch("/api/logs/" + encodeURIComponent(name) + "?lines=40",
                             {cache: "no-store"});
    const body = await resp.json();
    $("#log").textContent = resp.ok ? body.lines.join("\n") : body.error;
  } catch (err) {
    $("#log").textContent = String(err);
  }
}

async function refresh() {
  try {
    const resp = await fetch("/api/status", {cache: "no-store"});
    const data = await resp.json();
    if (!resp.ok) throw new Error(data.error || resp.status);
    refreshMs = Math.max(250, data.refresh_s * 1000);
    actions = data.actions;
    $("#token-form").hidden = !actions;
    document.body.dataset.actions = actions ? "yes" : "no";
    renderServices(data.services);
    renderEvents(data.events);
    renderDeploys(data.deploys);
    renderTrends(data.trends || {}, data.timeline || [], data.generated_at,
                 data.window_s || 900);
    const updated = $("#updated");
    updated.textContent = "updated " + clock(data.generated_at);
    updated.className = "";
    await refreshLog();
  } catch (err) {
    const updated = $("#updated");
    updated.textContent = "cannot reach tts-ops web: " + err.message;
    updated.className = "stale";
  }
}

async function loop() {
  await refresh();
  setTimeout(loop, refreshMs);
}

document.addEventListener("DOMContentLoaded", () => {
  $("#token").value = sessionStorage.getItem("tts-ops-token") || "";
  $("#token-form").addEventListener("submit", (e) => e.preventDefault());
  $("#log-name").addEventListener("change", refreshLog);
  loop();
});
