// Apps: a column per online member; running apps are cards you drag to another
// device to move them there. Installed apps that are not running can be started.
"use strict";

let dragging = null;       // {app, from} while a card is being dragged
let renderLater = false;   // an update that came mid-drag, applied when it ends
const moving = new Set();  // apps with a move under way

async function moveApp(app, from, to) {
  if (from === to) return;
  moving.add(app);
  renderApps(Accord.state);
  try {
    const r = await Accord.api("app_move", { app: app, to: to });
    Accord.toast("Moved " + app + " from " + r.from + " to " + r.to + ".");
  } catch (err) {
    // Accord.api has said why in words; the next update shows where the app really is.
  } finally {
    moving.delete(app);
    renderApps(Accord.state);
  }
}

function runningCard(row, members) {
  const others = members.filter((m) => m.device_id !== row.device_id);
  const select = h("select", { "aria-label": "move " + row.app_id + " to",
    onchange: (e) => { if (e.target.value) moveApp(row.app_id, row.device_id, e.target.value); } },
    h("option", { value: "" }, "Move to…"),
    ...others.map((m) => h("option", { value: m.device_id }, m.name)));
  return h("div", {
    class: "card app" + (moving.has(row.app_id) ? " moving" : ""),
    draggable: "true",
    dataset: { appId: row.app_id, deviceId: row.device_id },
    ondragstart: (e) => {
      dragging = { app: row.app_id, from: row.device_id };
      e.dataTransfer.setData("text/plain", row.app_id);
      e.dataTransfer.effectAllowed = "move";
    },
    ondragend: () => {
      dragging = null;
      if (renderLater) { renderLater = false; renderApps(Accord.state); }
    },
  },
    h("strong", {}, row.app_id),
    h("span", { class: "meta" }, moving.has(row.app_id) ? "moving…" : (row.paused ? "paused" : "running")
      + (row.keep_alive ? " · keep-alive" : "")),
    h("div", { class: "row" }, select,
      h("button", { class: "quiet", onclick: () => Accord.api("app_stop", { app: row.app_id }).catch(() => {}) }, "Stop")));
}

function installedChip(row, deviceId, runningIds) {
  const busy = runningIds.has(row.app_id);
  return h("div", { class: "chip", dataset: { appId: row.app_id } },
    row.app_id + " " + (row.version || ""),
    h("button", { class: "quiet", disabled: busy, title: busy ? "already running elsewhere" : null,
      onclick: () => Accord.api("app_run", { app: row.app_id, on: deviceId }).catch(() => {}) }, "Run here"));
}

function renderApps(state) {
  if (dragging) { renderLater = true; return; }
  const box = document.getElementById("app-columns");
  const apps = state.apps || { running: [], installed: [], unreachable: [] };
  const members = Accord.members();
  const runningIds = new Set(apps.running.map((r) => r.app_id));
  const columns = members.map((m) => {
    const running = apps.running.filter((r) => r.device_id === m.device_id);
    const installed = apps.installed.filter((r) => r.device === m.name && !running.some((x) => x.app_id === r.app_id));
    return h("div", {
      class: "column", dataset: { deviceId: m.device_id, name: m.name },
      ondragover: (e) => { if (dragging && dragging.from !== m.device_id) { e.preventDefault(); e.currentTarget.classList.add("drop"); } },
      ondragleave: (e) => e.currentTarget.classList.remove("drop"),
      ondrop: (e) => {
        e.preventDefault();
        e.currentTarget.classList.remove("drop");
        const from = dragging;
        dragging = null;
        if (from) moveApp(from.app, from.from, m.device_id);
      },
    },
      h("h3", {}, m.name),
      running.length ? running.map((r) => runningCard(r, members)) : h("p", { class: "hint" }, "nothing running"),
      installed.length ? h("div", { class: "installed" }, h("span", { class: "meta" }, "installed:"),
        installed.map((r) => installedChip(r, m.device_id, runningIds))) : null);
  });
  const notes = apps.unreachable.length
    ? [h("p", { class: "status" }, "Not answering: " + apps.unreachable.join(", "))] : [];
  box.replaceChildren(...columns, ...notes);
}

document.getElementById("install-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const path = document.getElementById("install-path").value.trim();
  try {
    const r = await Accord.api("app_install", { path: path, on: "all" });
    const failed = r.failed.map((f) => f.device + ": " + f.error);
    Accord.toast("Installed " + r.app_id + " on " + (r.installed.join(", ") || "no device")
      + (failed.length ? "; failed on " + failed.join("; ") : ""), failed.length ? "error" : "info");
  } catch (err) { /* said already */ }
});

Accord.on("apps", renderApps);
Accord.on("devices", renderApps);
