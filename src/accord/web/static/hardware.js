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
  const panels = [...fridges.values()].map((f) => f.panel);
  if (panels.length !== box.children.length || panels.some((p, i) => box.children[i] !== p)) {
    box.replaceChildren(...panels);  // only when fridges came or went: keeps focus
  }
}

function closeFridges() {
  for (const f of fridges.values()) f.source.close();
  fridges.clear();
}

function openFridge(id) {
  const panel = h("div", { class: "panel fridge", dataset: { deviceId: id } }, h("h2", {}, Accord.deviceName(id)), h("p", { class: "hint" }, "Waiting for readings..."));
  const f = { source: new EventSource("/events/sensors?device=" + encodeURIComponent(id)), history: {}, ranges: {}, panel: panel };
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

// A cabinet's box is built once; each reading updates its parts in place, so a
// setpoint being typed (or a button being pressed) is never swapped out under you.
function cabinetBox(id, f, name) {
  const range = () => f.ranges[name];
  const last = () => f.history[name][f.history[name].length - 1];
  const input = h("input", { type: "number", step: "0.5", "aria-label": name + " setpoint" });
  const parts = {
    temp: h("span", { class: "temp" }),
    door: h("span", { class: "pill door" }),
    chart: h("div", { class: "chart-box" }),
    meta: h("p", { class: "meta" }),
    toggle: h("button", { type: "button", class: "quiet", onclick: () =>
      Accord.api("call", { device: id, target: "sim.door", args: { door: name, open: !last().open } }).catch(() => {}) }),
    input: input,
  };
  const form = h("form", { class: "row", novalidate: true, onsubmit: async (e) => {
    e.preventDefault();
    const value = Number(input.value);
    const r = range();
    if (Number.isNaN(value) || (r && (value < r.min_c || value > r.max_c))) {
      Accord.toast(`The ${name} takes a setpoint from ${r.min_c} to ${r.max_c} °C.`, "error");
      return;
    }
    try {
      await Accord.api("call", { device: id, target: "thermostat.set", args: { cabinet: name, celsius: value } });
      Accord.toast(`${name} set to ${value} °C.`);
    } catch (err) { /* said already */ }
  } }, input, h("button", { type: "submit" }, "Set"), parts.toggle);
  const box = h("div", { class: "cabinet", dataset: { cabinet: name } },
    h("h3", {}, name[0].toUpperCase() + name.slice(1), " ", parts.temp, parts.door),
    parts.chart, parts.meta, form);
  return { box: box, parts: parts };
}

function updateCabinet(f, name, cab) {
  const points = f.history[name];
  const last = points[points.length - 1];
  const r = f.ranges[name];
  const p = cab.parts;
  cab.box.dataset.door = last.open ? "open" : "closed";
  p.temp.textContent = last.t.toFixed(1) + " °C";
  p.door.textContent = last.open ? "door open" : "door closed";
  p.door.className = "pill door " + (last.open ? "down" : "up");
  p.chart.replaceChildren(chart(points, r));
  p.meta.textContent = `setpoint ${last.set} °C` + (r ? ` (allowed ${r.min_c} to ${r.max_c})` : "") + (last.cold ? " · compressor on" : "");
  p.toggle.textContent = last.open ? "Close door" : "Open door";
  if (r) { p.input.min = r.min_c; p.input.max = r.max_c; }
  if (document.activeElement !== p.input && p.input.dataset.shown !== String(last.set)) {
    p.input.value = last.set;  // follow the device, unless someone is typing
    p.input.dataset.shown = String(last.set);
  }
}

function drawFridge(id, f) {
  if (!f.boxes) {
    f.boxes = {};
    f.panel.replaceChildren(h("h2", {}, Accord.deviceName(id)), h("div", { class: "cabinets" }));
  }
  f.panel.querySelector(".trouble")?.remove();
  for (const name of Object.keys(f.history)) {
    if (!f.boxes[name]) {
      f.boxes[name] = cabinetBox(id, f, name);
      f.panel.querySelector(".cabinets").append(f.boxes[name].box);
    }
    updateCabinet(f, name, f.boxes[name]);
  }
}

Accord.on("devices", renderHardwareSelects);
Accord.pageHooks.hardware = { show: syncFridges, hide: closeFridges };
