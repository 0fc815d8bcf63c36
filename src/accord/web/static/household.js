// Household: a card per device the node knows, grey while it is offline.
"use strict";


function hardwareLine(d) {
  if (d.summary) return d.summary;
  if (d.standing === "stranger") return "details shown once it is in the circle";
  return (d.capabilities || []).join(", ") || "—";
}

function batteryLine(state, d) {
  const b = (state.battery || {})[d.device_id];
  if (!b) return (d.capabilities || []).includes("battery") ? "…" : "mains";
  return Math.round(b.level_pct) + " %" + (b.charging ? " (charging)" : "");
}

function deviceCard(state, d) {
  const online = d.online && state.node.up;
  const standing = d.is_self ? "this device" : d.standing;
  return h("article", {
    class: "card device" + (online ? "" : " offline"),
    dataset: { deviceId: d.device_id, online: online ? "yes" : "no", name: d.name },
  },
    h("div", { class: "card-head" },
      h("span", { class: "icon type-" + d.type, "aria-hidden": "true" }, (d.type || "?").slice(0, 2)),
      h("h3", {}, d.name),
      h("span", { class: "pill " + (online ? "up" : "down") }, online ? "online" : "offline")),
    h("dl", {},
      h("dt", {}, "Type"), h("dd", {}, d.type),
      h("dt", {}, "Vendor"), h("dd", {}, [d.vendor, d.model].filter(Boolean).join(" ") || "—"),
      h("dt", {}, "Hardware"), h("dd", {}, hardwareLine(d)),
      h("dt", {}, "Battery"), h("dd", { class: "battery" }, batteryLine(state, d)),
      h("dt", {}, "Security"), h("dd", {}, d.security_level || "—"),
      h("dt", {}, "Circle"), h("dd", { class: "standing" }, standing + (d.pairing ? " · pairing open" : ""))));
}

function renderHousehold(state) {
  const devices = Object.values(state.devices).sort(
    (a, b) => (b.is_self - a.is_self) || (b.online - a.online) || a.name.localeCompare(b.name));
  const box = document.getElementById("devices");
  if (!devices.length) {
    box.replaceChildren(h("p", { class: "hint" }, state.node.up ? "No devices seen yet." : "Waiting for the node..."));
    return;
  }
  box.replaceChildren(...devices.map((d) => deviceCard(state, d)));
}

Accord.on("devices", renderHousehold);
Accord.on("node", renderHousehold);
Accord.on("battery", renderHousehold);
