// The page's core: one event stream from the server (no polling), the state it
// carries, tabs, and the one way to ask the node for something (Accord.api).
"use strict";

const Accord = {
  state: { node: { up: false, error: "connecting..." }, devices: {}, apps: null,
           battery: {}, pairing: null, notifications: [], clipboard: null,
           rules: null, transfers: null, stores: null, log: [] },
  renderers: {},   // topic -> [function(state)], registered by each page's script
  pageHooks: {},   // page -> { show(), hide() }, for pages with their own streams
  page: "household",
};

// h("div", {class: "x", onclick: f}, "text", child...): elements without innerHTML,
// so a device name can never become markup.
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

Accord.on = function (topic, fn) {
  (Accord.renderers[topic] = Accord.renderers[topic] || []).push(fn);
};

Accord.render = function (topic) {
  for (const fn of Accord.renderers[topic] || []) {
    try { fn(Accord.state); } catch (err) { Accord.toast("display error: " + err.message, "error"); }
  }
};

// Ask the node (through the server). Resolves to the result; on failure shows the
// reason in words and rejects with it.
Accord.api = async function (method, params) {
  let response;
  try {
    response = await fetch("/api/" + method, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Accord": "1" },
      body: JSON.stringify(params || {}),
      credentials: "same-origin",
    });
  } catch (err) {
    const message = "the control center does not answer (is `accord web` still running?)";
    Accord.toast(message, "error");
    throw new Error(message);
  }
  const body = await response.json().catch(() => ({ error: response.statusText }));
  if (!response.ok) {
    Accord.toast(body.error || "failed", "error");
    throw new Error(body.error || "failed");
  }
  return body;
};

Accord.toast = function (text, level) {
  const el = h("div", { class: "toast " + (level || "info"), role: "status" }, text);
  document.getElementById("toasts").append(el);
  setTimeout(() => el.remove(), level === "error" ? 8000 : 4000);
};

Accord.deviceName = function (id) {
  const d = Accord.state.devices[id];
  return d ? d.name : id.slice(0, 10);
};

// Members that are online, this device first: who actions can target.
Accord.members = function () {
  return Object.values(Accord.state.devices)
    .filter((d) => d.online && (d.standing === "member" || d.standing === "self"))
    .sort((a, b) => (b.is_self - a.is_self) || a.name.localeCompare(b.name));
};

Accord.fillDeviceSelect = function (select, wanted) {
  const current = select.value;
  const options = Accord.members().filter((d) => !wanted || d.capabilities.includes(wanted));
  select.replaceChildren(...options.map((d) => h("option", { value: d.device_id }, d.name)));
  if (options.some((d) => d.device_id === current)) select.value = current;
  select.disabled = options.length === 0;
};

function renderNode(state) {
  const pill = document.getElementById("node-state");
  const banner = document.getElementById("banner");
  document.body.classList.toggle("node-down", !state.node.up);
  if (state.node.up) {
    const s = state.node.status || {};
    pill.textContent = (s.name || "node") + " · " + (s.membership || "");
    pill.className = "pill up";
    banner.hidden = true;
  } else {
    pill.textContent = "node not answering";
    pill.className = "pill down";
    banner.hidden = false;
    banner.textContent = state.node.error + " — this page recovers by itself when the node is back.";
  }
}
Accord.on("node", renderNode);

function connect() {
  const source = new EventSource("/events");
  source.addEventListener("hello", (e) => {
    const snap = JSON.parse(e.data);
    const s = Accord.state;
    s.home = snap.home;
    s.node = snap.node;
    s.devices = {};
    for (const d of snap.devices) s.devices[d.device_id] = d;
    for (const k of ["apps", "battery", "pairing", "notifications", "clipboard", "rules",
                     "transfers", "stores"]) {
      if (snap[k] !== undefined) s[k] = snap[k];
    }
    s.log = snap.log || [];
    for (const topic of Object.keys(Accord.renderers)) Accord.render(topic);
  });
  source.addEventListener("node", (e) => { Accord.state.node = JSON.parse(e.data); Accord.render("node"); Accord.render("devices"); });
  source.addEventListener("device", (e) => {
    const d = JSON.parse(e.data);
    Accord.state.devices[d.device_id] = d;
    Accord.render("devices");
  });
  source.addEventListener("log", (e) => { Accord.state.log.push(JSON.parse(e.data)); Accord.render("log"); });
  for (const topic of ["apps", "battery", "pairing", "notifications", "clipboard", "rules",
                       "transfers", "stores"]) {
    source.addEventListener(topic, (e) => { Accord.state[topic] = JSON.parse(e.data); Accord.render(topic); });
  }
  source.onerror = () => {
    // The browser reconnects by itself; meanwhile say why nothing moves.
    Accord.state.node = { up: false, error: "the control center server does not answer (was `accord web` stopped?)" };
    Accord.render("node");
  };
}

function showPage(page) {
  if (Accord.pageHooks[Accord.page] && Accord.pageHooks[Accord.page].hide) Accord.pageHooks[Accord.page].hide();
  Accord.page = page;
  for (const b of document.querySelectorAll("#tabs button")) b.classList.toggle("active", b.dataset.page === page);
  for (const s of document.querySelectorAll("main > .page")) s.hidden = s.id !== "page-" + page;
  if (Accord.pageHooks[page] && Accord.pageHooks[page].show) Accord.pageHooks[page].show();
  history.replaceState(null, "", "#" + page);
}
Accord.showPage = showPage;

document.addEventListener("DOMContentLoaded", () => {
  for (const b of document.querySelectorAll("#tabs button")) b.addEventListener("click", () => showPage(b.dataset.page));
  connect();
  const first = location.hash.slice(1);
  if (first && document.getElementById("page-" + first)) showPage(first);
});
