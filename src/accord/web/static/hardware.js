// Hardware: a photo from any member's camera, text on a display, and each
// refrigerator as a live chart of its cabinets (temperature, setpoint, door).
"use strict";

const CHART_POINTS = 120;   // seconds of history shown (one reading a second)
const fridges = new Map();  // device id -> {source, history: {cabinet: [...]}, ranges}

function renderHardwareSelects() {
  Accord.fillDeviceSelect(document.getElementById("camera-device"), "camera");
  Accord.fillDeviceSelect(document.getElementById("display-device"), "display");
  if (Accord.page === "hardware") syncFridges();
}

document.getElementById("capture").addEventListener("click", async () => {
  const device = document.getElementById("camera-device").value;
  const status = document.getElementById("photo-status");
  const button = document.getElementById("capture");
  if (!device) { status.textContent = "No member with a camera is online."; return; }
  button.disabled = true;
  status.textContent = "Taking a photo with " + Accord.deviceName(device) + "'s camera...";
  try {
    const r = await Accord.api("capture", { device: device, width: 800, height: 600 });
    const img = document.getElementById("photo");
    img.src = r.src;
    img.hidden = false;
    status.textContent = "Photo from " + Accord.deviceName(device) + ": " + r.width + "×" + r.height + ", " + Math.round(r.bytes / 1024) + " KiB.";
  } catch (err) {
    status.textContent = "No photo: " + err.message;
  } finally {
    button.disabled = false;
  }
});

document.getElementById("show-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const device = document.getElementById("display-device").value;
  const text = document.getElementById("show-text").value;
  const status = document.getElementById("show-status");
  try {
    await Accord.api("call", { device: device, target: "display.show", args: { text: text } });
    status.textContent = Accord.deviceName(device) + " shows “" + text + "”.";
  } catch (err) {
    status.textContent = "Not shown: " + err.message;
  }
});

// -- refrigerators ---------------------------------------------------------

function syncFridges() {
  const wanted = new Set(Accord.members().filter((d) => d.capabilities.includes("temperature-control")).map((d) => d.device_id));
  for (const [id, f] of fridges) if (!wanted.has(id)) { f.source.close(); fridges.delete(id); }
  for (const id of wanted) if (!fridges.has(id)) openFridge(id);
  const box = document.getElementById("fridges");
  box.replaceChildren(...[...fridges.values()].map((f) => f.panel));
}

function closeFridges() {
  for (const f of fridges.values()) f.source.close();
  fridges.clear();
}

function openFridge(id) {
  const panel = h("div", { class: "panel fridge", dataset: { deviceId: id } }, h("h2", {}, Accord.deviceName(id)), h("p", { class: "hint" }, "Waiting for readings..."));
  const f = { source: new EventSource("/events/sensors?device=" + encodeURIComponent(id)), history: {}, ranges: {}, panel: panel, cabinets: {} };
  fridges.set(id, f);
  f.source.addEventListener("setpoints", (e) => {
    for (const s of JSON.parse(e.data)) f.ranges[s.cabinet] = s;
  });
  f.source.addEventListener("reading", (e) => {
    const r = JSON.parse(e.data);
    for (const c of r.cabinets) {
      const h_ = (f.history[c.name] = f.history[c.name] || []);
      h_.push({ at: r.at, t: c.temperature_c, set: c.setpoint_c, open: c.door_open, cold: c.compressor_on });
      if (h_.length > CHART_POINTS) h_.shift();
    }
    drawFridge(id, f);
  });
  f.source.addEventListener("trouble", (e) => {
    panel.querySelector(".trouble")?.remove();
    panel.append(h("p", { class: "status error trouble" }, JSON.parse(e.data).error + " (trying again)"));
  });
}

const SVG = "http://www.w3.org/2000/svg";
function s(tag, attrs) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  return el;
}

function chart(points, range) {
  const W = 300, H = 120, P = 4;
  const temps = points.flatMap((p) => [p.t, p.set]);
  let lo = Math.min(...temps, range ? range.min_c : Infinity) - 0.5;
  let hi = Math.max(...temps, range ? range.max_c : -Infinity) + 0.5;
  // The newest reading at the right edge; history scrolls off to the left.
  const x = (i) => W - P - (W - 2 * P) * ((points.length - 1 - i) / (CHART_POINTS - 1));
  const y = (t) => P + (H - 2 * P) * (1 - (t - lo) / (hi - lo));
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img" });
  points.forEach((p, i) => {
    if (p.open) svg.append(s("rect", { x: x(i) - 1.3, y: 0, width: 2.6, height: H, class: "door-open" }));
  });
  const line = (key, cls) => s("polyline", { points: points.map((p, i) => `${x(i).toFixed(1)},${y(p[key]).toFixed(1)}`).join(" "), class: cls });
  svg.append(line("set", "setpoint"), line("t", "temperature"));
  const label = (t) => { const el = s("text", { x: P + 2, y: y(t) + 3 }); el.textContent = t.toFixed(1) + " °C"; return el; };
  svg.append(label(hi - 0.5), label(lo + 0.5));
  return svg;
}

function cabinetBox(id, f, name) {
  const points = f.history[name];
  const last = points[points.length - 1];
  const range = f.ranges[name];
  const input = h("input", { type: "number", step: "0.5", value: last.set, "aria-label": name + " setpoint",
    min: range ? range.min_c : null, max: range ? range.max_c : null });
  const form = h("form", { class: "row", onsubmit: async (e) => {
    e.preventDefault();
    const value = Number(input.value);
    if (range && (value < range.min_c || value > range.max_c || Number.isNaN(value))) {
      Accord.toast(`The ${name} takes a setpoint from ${range.min_c} to ${range.max_c} °C.`, "error");
      return;
    }
    try {
      await Accord.api("call", { device: id, target: "thermostat.set", args: { cabinet: name, celsius: value } });
      Accord.toast(`${name} set to ${value} °C.`);
    } catch (err) { /* said already */ }
  } }, input, h("button", { type: "submit" }, "Set"),
    h("button", { type: "button", class: "quiet", onclick: () =>
      Accord.api("call", { device: id, target: "sim.door", args: { door: name, open: !last.open } }).catch(() => {}) },
      last.open ? "Close door" : "Open door"));
  return h("div", { class: "cabinet", dataset: { cabinet: name, door: last.open ? "open" : "closed" } },
    h("h3", {}, name[0].toUpperCase() + name.slice(1), " ", h("span", { class: "temp" }, last.t.toFixed(1) + " °C"),
      h("span", { class: "pill " + (last.open ? "down" : "up") + " door" }, last.open ? "door open" : "door closed")),
    chart(points, range),
    h("p", { class: "meta" }, `setpoint ${last.set} °C` + (range ? ` (allowed ${range.min_c} to ${range.max_c})` : "") + (last.cold ? " · compressor on" : "")),
    form);
}

function drawFridge(id, f) {
  const focused = f.panel.contains(document.activeElement) && document.activeElement.tagName === "INPUT";
  if (focused) return;  // do not replace a setpoint someone is typing
  f.panel.replaceChildren(h("h2", {}, Accord.deviceName(id)),
    h("div", { class: "cabinets" }, Object.keys(f.history).map((name) => cabinetBox(id, f, name))));
}

Accord.on("devices", renderHardwareSelects);
Accord.pageHooks.hardware = { show: syncFridges, hide: closeFridges };
