// Data: the stores this device holds, and one store's keys and values, live.
"use strict";

let storeSource = null;
let storeName = "";
const storeRows = new Map();  // key (or device/key) -> row

function rowKey(r) { return (r.device || "") + "\u0000" + r.key; }

function valueCell(r) {
  if (r.deleted) return h("td", { class: "meta" }, "deleted");
  if (r.text !== undefined) return h("td", { class: "value" }, r.text + (r.cut ? " …" : ""));
  return h("td", { class: "value meta" }, r.binary || (r.bytes + " bytes"));
}

function renderStoreTable(changed) {
  const view = document.getElementById("store-view");
  const rows = [...storeRows.values()].sort((a, b) => a.key.localeCompare(b.key));
  const perDevice = rows.some((r) => r.device_name !== undefined);
  const table = h("table", { class: "kv" },
    h("thead", {}, h("tr", {}, perDevice ? h("th", {}, "Device") : null, h("th", {}, "Key"), h("th", {}, "Value"), h("th", {}, "By"))),
    h("tbody", {}, rows.map((r) => h("tr", { class: changed && changed.has(rowKey(r)) ? "fresh" : "", dataset: { key: r.key } },
      perDevice ? h("td", {}, r.device_name || (r.device || "").slice(0, 10)) : null,
      h("td", { class: "key" }, r.key), valueCell(r),
      h("td", { class: "meta" }, r.origin_name || "")))));
  view.replaceChildren(h("h2", {}, storeName), rows.length ? table : h("p", { class: "hint" }, "This store is empty."));
}

function openStore(name) {
  closeStore();
  storeName = name;
  storeRows.clear();
  document.getElementById("store-view").replaceChildren(h("p", { class: "hint" }, "Loading " + name + "..."));
  storeSource = new EventSource("/events/kv?store=" + encodeURIComponent(name));
  storeSource.addEventListener("entries", (e) => {
    storeRows.clear();
    for (const r of JSON.parse(e.data).entries) storeRows.set(rowKey(r), r);
    renderStoreTable(null);
  });
  storeSource.addEventListener("changes", (e) => {
    const changed = new Set();
    for (const c of JSON.parse(e.data).changes) {
      if (c.deleted) storeRows.delete(rowKey(c)); else storeRows.set(rowKey(c), c);
      changed.add(rowKey(c));
    }
    renderStoreTable(changed);
  });
  storeSource.addEventListener("trouble", (e) => {
    const view = document.getElementById("store-view");
    view.prepend(h("p", { class: "status error" }, "Store " + name + ": " + JSON.parse(e.data).error + " (trying again)"));
  });
  renderStores(Accord.state);
}

function closeStore() {
  if (storeSource) storeSource.close();
  storeSource = null;
}

function renderStores(state) {
  const box = document.getElementById("stores");
  const stores = state.stores || [];
  if (!stores.length) { box.replaceChildren(h("p", { class: "hint" }, "No stores yet.")); return; }
  box.replaceChildren(...stores.map((s) => h("button", {
    class: "chip" + (s.name === storeName ? " active" : ""), dataset: { store: s.name },
    onclick: () => openStore(s.name),
  }, s.name + " ", h("span", { class: "label" }, s.label), h("span", { class: "meta" }, " " + s.keys + " keys · " + s.kind))));
}

Accord.on("stores", renderStores);
Accord.pageHooks.data = {
  show: () => { if (storeName) openStore(storeName); },
  hide: closeStore,
};
