// Pairing: open a window here and show its PIN large; join a nearby device's window.
"use strict";

function renderPairing(state) {
  const p = state.pairing;
  const pin = document.getElementById("pair-pin");
  const status = document.getElementById("pair-status");
  const open = p && p.event === "open";
  pin.hidden = !open;
  pin.textContent = open ? p.pin : "";
  document.getElementById("pair-close").hidden = !open;
  document.getElementById("pair-open").disabled = !state.node.up;
  if (!p) { status.textContent = ""; return; }
  if (p.event === "open") {
    const until = new Date((p.at + p.timeout) * 1000).toLocaleTimeString();
    status.textContent = "Open until " + until + ". Devices join at level " + p.level + " at most.";
  } else if (p.event === "paired") {
    status.replaceChildren("Paired with ", h("strong", {}, p.name), ". Verification code ",
      h("strong", { class: "code" }, p.code), ": check that the new device shows the same.");
  } else if (p.event === "closed") {
    status.textContent = "The window closed: " + p.reason + ".";
  } else if (p.event === "error") {
    status.textContent = "Could not pair: " + p.reason;
  }
}

function renderNearby(state) {
  const box = document.getElementById("nearby");
  const open = Object.values(state.devices).filter((d) => d.online && d.pairing && !d.is_self);
  if (!open.length) {
    box.replaceChildren(h("p", { class: "hint" }, "No device nearby has a pairing window open."));
    return;
  }
  box.replaceChildren(...open.map((d) => {
    const input = h("input", { inputmode: "numeric", pattern: "[0-9]{6}", maxlength: "6",
                               placeholder: "PIN", required: true, "aria-label": "PIN for " + d.name });
    return h("form", {
      class: "row nearby", dataset: { deviceId: d.device_id },
      onsubmit: async (e) => {
        e.preventDefault();
        const result = document.getElementById("join-result");
        result.textContent = "Pairing with " + d.name + "...";
        try {
          const r = await Accord.api("pair_join", { device: d.device_id, pin: input.value });
          result.replaceChildren("Joined ", h("strong", {}, r.name), "'s circle. Verification code ",
            h("strong", { class: "code" }, r.code), ".");
        } catch (err) {
          result.textContent = "Could not pair with " + d.name + ": " + err.message;
        }
      },
    }, h("span", {}, d.name + " (" + d.type + ")"), input, h("button", { type: "submit" }, "Join"));
  }));
}

document.getElementById("pair-open").addEventListener("click", () => {
  Accord.api("pair_open", { timeout: 120 }).catch(() => {});
});
document.getElementById("pair-close").addEventListener("click", () => {
  Accord.api("pair_close", {}).catch(() => {});
});
Accord.on("pairing", renderPairing);
Accord.on("node", renderPairing);
Accord.on("devices", renderNearby);
