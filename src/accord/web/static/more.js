// Continuity (clipboard, notifications, files received), rules, and the event log.
"use strict";

function when(seconds) {
  return seconds ? new Date(seconds * 1000).toLocaleTimeString() : "";
}

function renderClipboard(state) {
  const box = document.getElementById("clip-items");
  const items = (state.clipboard && state.clipboard.items) || [];
  box.replaceChildren(items.length
    ? h("ul", { class: "list" }, items.map((i) => h("li", {},
        h("strong", {}, i.name || i.kind), h("span", { class: "meta" },
          ` ${i.size} bytes · from ${i.origin} · ${when(i.created)} · ${i.label}`))))
    : h("p", { class: "hint" }, "Nothing copied in the circle lately."));
}

function renderNotifications(state) {
  Accord.fillDeviceSelect(document.getElementById("notify-device"));
  const box = document.getElementById("notifications");
  const notes = (state.notifications || []).filter((n) => !n.dismissed).slice().reverse();
  box.replaceChildren(notes.length
    ? h("ul", { class: "list" }, notes.map((n) => h("li", { dataset: { id: n.id } },
        h("strong", {}, n.title), n.body ? " — " + n.body : "",
        h("span", { class: "meta" }, ` from ${n.app || n.from} on ${n.on} · ${when(n.created)}`),
        h("button", { class: "quiet", onclick: () => Accord.api("notifications_dismiss", { id: n.id }).catch(() => {}) }, "Dismiss"))))
    : h("p", { class: "hint" }, "No notifications."));
}

function renderTransfers(state) {
  const t = state.transfers;
  const box = document.getElementById("transfers");
  if (!t) { box.replaceChildren(); return; }
  const rows = [...t.active, ...t.recent];
  box.replaceChildren(h("p", { class: "meta" }, "Inbox: " + t.inbox),
    rows.length || t.partial.length ? h("ul", { class: "list" },
      rows.map((r) => h("li", {}, r.files.join(", "), h("span", { class: "meta" },
        ` from ${r.from} · ${r.state} · ${r.bytes_done}/${r.bytes_total} bytes` + (r.error ? " · " + r.error : "")))),
      t.partial.map((p) => h("li", {}, p.file, h("span", { class: "meta" },
        ` from ${p.from} · interrupted at ${p.bytes_done}/${p.bytes_total} bytes (sending again resumes)`))))
      : h("p", { class: "hint" }, "No files received yet (accord send FILE --to DEVICE)."));
}

function renderRules(state) {
  const box = document.getElementById("rules");
  const rules = (state.rules && state.rules.rules) || [];
  if (!rules.length) {
    box.replaceChildren(h("p", { class: "hint" }, "No rules in this circle (accord rule add FILE)."));
    return;
  }
  box.replaceChildren(h("div", { class: "cards" }, rules.map((r) => h("article", { class: "card" + (r.enabled ? "" : " offline") },
    h("div", { class: "card-head" }, h("h3", {}, r.name),
      h("button", { class: "quiet", onclick: () => Accord.api("rule_enable", { name: r.name, enabled: !r.enabled }).catch(() => {}) },
        r.enabled ? "Disable" : "Enable")),
    h("dl", {},
      h("dt", {}, "When"), h("dd", {}, r.triggers.join("; ") || "—"),
      h("dt", {}, "Author"), h("dd", {}, r.author),
      h("dt", {}, "Runs on"), h("dd", {}, r.runner || (r.enabled ? "no member can run it now" : "disabled")),
      h("dt", {}, "Last run"), h("dd", {}, r.last_run ? when(r.last_run.started) + " · " + r.last_run.outcome : "never"))))));
}

function renderLog(state) {
  const box = document.getElementById("log");
  box.replaceChildren(...state.log.slice().reverse().map((l) =>
    h("li", { class: l.level }, h("time", {}, when(l.at)), " ", l.text)));
}

document.getElementById("clip-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const input = document.getElementById("clip-text");
  try {
    await Accord.api("clip_copy", { text: input.value });
    input.value = "";
  } catch (err) { /* said already */ }
});

document.getElementById("notify-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const device = document.getElementById("notify-device").value;
  try {
    await Accord.api("notify", { device: device, title: document.getElementById("notify-title").value,
                                 body: document.getElementById("notify-body").value });
    Accord.toast("Notified " + Accord.deviceName(device) + ".");
  } catch (err) { /* said already */ }
});

Accord.on("clipboard", renderClipboard);
Accord.on("notifications", renderNotifications);
Accord.on("devices", renderNotifications);
Accord.on("transfers", renderTransfers);
Accord.on("rules", renderRules);
Accord.on("log", renderLog);
