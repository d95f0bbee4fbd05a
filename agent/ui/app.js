// hearsay dashboard: members, recent updates and their spread, traffic by
// mechanism. Plain JavaScript over the agent's own API, no dependencies:
//   GET /v1/stats?watch=1   status, members and traffic, every second (SSE)
//   GET /v1/watch?prefix=   every change this node applies (SSE)
//   GET /v1/spread?key=…    which members hold a key's newest version, and how it got there
"use strict";

const MECHANISMS = ["direct-mail", "rumor", "anti-entropy", "membership", "observation"];
const VIAS = ["local", "direct-mail", "rumor", "anti-entropy", ""];
const MAX_UPDATES = 20;          // updates shown
const SPREAD_EVERY_MS = 500;     // how often an incomplete spread is asked again
const SPREAD_GIVE_UP_MS = 60000; // after that an update is no longer followed
const HISTORY = 300;             // traffic samples kept (one per stats event)

const $ = (sel) => document.querySelector(sel);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function fmtBytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n.toFixed(0) : n.toFixed(1)) + " " + units[i];
}

// keyLabel shows a key as text when the API says it is valid UTF-8, else
// as base64 (keys are bytes).
function keyLabel(k) {
  return k.key_text !== undefined && k.key_text !== "" ? k.key_text : "base64:" + k.key;
}

// --- status and members ---------------------------------------------------

let aliveMembers = 1;

function renderStatus(st) {
  $("#node").textContent = st.name;
  $("#version").textContent = st.version ? "v" + st.version : "";
  const r = $("#ready");
  r.textContent = st.ready ? "ready" : "not ready: " + (st.not_ready || []).join("; ");
  r.className = "badge " + (st.ready ? "ok" : "bad");
}

function renderMembers(members) {
  const body = $("#members tbody");
  body.replaceChildren();
  aliveMembers = 0;
  members.sort((a, b) => a.name.localeCompare(b.name));
  for (const m of members) {
    if (m.state === "alive" || m.state === "suspect") aliveMembers++;
    const off = m.clock_offset === undefined ? "" : (m.clock_offset * 1000).toFixed(1) + " ms";
    let trust = "";
    if (m.state === "revoked") trust = "revoked";
    else if (m.quarantined) trust = "quarantined";
    const row = el("tr", { "data-member": m.name },
      el("td", {}, m.name + (m.self ? " (this node)" : "")),
      el("td", {}, m.address),
      el("td", { class: "state-" + m.state }, m.state),
      el("td", { class: "num" }, m.incarnation),
      el("td", { class: "num" }, off),
      el("td", { class: "num" }, m.outbox || 0),
      el("td", { class: trust }, trust));
    body.append(row);
  }
  $("#member-count").textContent = `${aliveMembers} live of ${members.length}`;
}

// --- traffic ---------------------------------------------------------------

let lastTraffic = null;
const history = Object.fromEntries(MECHANISMS.map((m) => [m, []]));

function spark(values) {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", `0 0 ${HISTORY} 28`);
  svg.setAttribute("preserveAspectRatio", "none");
  const max = Math.max(1, ...values);
  const pts = values.map((v, i) => `${HISTORY - values.length + i},${27 - (v / max) * 26}`).join(" ");
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("points", pts);
  svg.append(line);
  return svg;
}

function renderTraffic(traffic, time) {
  const now = Date.parse(time);
  const body = $("#traffic tbody");
  body.replaceChildren();
  for (const m of MECHANISMS) {
    const t = traffic[m] || { sent_messages: 0, sent_bytes: 0, received_messages: 0, received_bytes: 0 };
    let msgRate = 0, byteRate = 0;
    if (lastTraffic && lastTraffic.traffic[m] && now > lastTraffic.time) {
      const dt = (now - lastTraffic.time) / 1000;
      msgRate = (t.sent_messages - lastTraffic.traffic[m].sent_messages) / dt;
      byteRate = (t.sent_bytes - lastTraffic.traffic[m].sent_bytes) / dt;
      history[m].push(byteRate);
      if (history[m].length > HISTORY) history[m].shift();
    }
    body.append(el("tr", { "data-mechanism": m },
      el("td", {}, m),
      el("td", { class: "num" }, msgRate.toFixed(1)),
      el("td", { class: "num" }, fmtBytes(byteRate)),
      el("td", { class: "num" }, `${t.sent_messages} (${fmtBytes(t.sent_bytes)})`),
      el("td", { class: "num" }, `${t.received_messages} (${fmtBytes(t.received_bytes)})`),
      el("td", {}, spark(history[m]))));
  }
  lastTraffic = { traffic, time: now };
}

// --- updates and their spread ----------------------------------------------

// compareVersions orders versions as the store does: hybrid clock, then
// node id (both hex, "hlc@node").
function compareVersions(a, b) {
  const [ah, an] = a.split("@").map((x) => BigInt("0x" + x));
  const [bh, bn] = b.split("@").map((x) => BigInt("0x" + x));
  if (ah !== bh) return ah < bh ? -1 : 1;
  if (an !== bn) return an < bn ? -1 : 1;
  return 0;
}

// updates: newest first; each {key (base64), label, version, row, spread, since}
const updates = [];

function addUpdate(ev) {
  const existing = updates.findIndex((u) => u.key === ev.key);
  if (existing >= 0) {
    updates[existing].row.remove();
    updates.splice(existing, 1);
  }
  const u = { key: ev.key, label: keyLabel(ev), version: ev.version, deleted: ev.deleted, since: Date.now(), spread: null };
  u.row = el("tr", { "data-key": ev.key });
  updates.unshift(u);
  while (updates.length > MAX_UPDATES) updates.pop().row.remove();
  $("#updates tbody").prepend(u.row);
  renderUpdate(u);
  followSpread(u);
}

function renderUpdate(u) {
  const counts = Object.fromEntries(VIAS.map((v) => [v, 0]));
  let holding = 0, asked = aliveMembers;
  if (u.spread) {
    asked = u.spread.answered;
    for (const h of u.spread.holders) {
      if (h.present && h.version === u.version) { holding++; counts[h.via || ""]++; }
      else if (h.present && compareVersions(h.version, u.version) > 0) { holding++; } // superseded there already
    }
  }
  const total = Math.max(asked, aliveMembers);
  const done = u.spread && holding >= total;
  u.row.replaceChildren(
    el("td", {}, u.label + (u.deleted ? " (deleted)" : "")),
    el("td", { class: "dim" }, u.version),
    el("td", { class: "spread " + (done ? "complete" : "partial") }, u.spread ? `${holding}/${total}` : "…"),
    ...VIAS.map((v) => el("td", { class: "num" }, u.spread ? counts[v] : "")));
  return done;
}

async function followSpread(u) {
  while (updates.includes(u) && Date.now() - u.since < SPREAD_GIVE_UP_MS) {
    try {
      const resp = await fetch("/v1/spread?key=" + encodeURIComponent(u.key), { cache: "no-store" });
      if (resp.ok) {
        const body = await resp.json();
        u.spread = { answered: body.answered, holders: body.keys[0].holders };
        if (renderUpdate(u)) return;
      }
    } catch (e) {
      // the agent is away: keep trying until we give up on this update
    }
    await new Promise((r) => setTimeout(r, SPREAD_EVERY_MS));
  }
}

// --- streams -----------------------------------------------------------------

function connect() {
  const stats = new EventSource("/v1/stats?watch=1");
  stats.addEventListener("stats", (e) => {
    const s = JSON.parse(e.data);
    renderStatus(s.status);
    renderMembers(s.members);
    renderTraffic(s.traffic, s.time);
    $("#conn").textContent = "live";
  });
  stats.onerror = () => { $("#conn").textContent = "reconnecting…"; };

  const watch = new EventSource("/v1/watch?prefix=");
  const onChange = (e) => addUpdate(JSON.parse(e.data));
  watch.addEventListener("put", onChange);
  watch.addEventListener("delete", onChange);
}

connect();
