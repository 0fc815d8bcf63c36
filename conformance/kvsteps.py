"""kv read and write as a member, over data sync."""

from __future__ import annotations

import time
from typing import Any

from conformance.datasync import CATALOG, CATALOG_SETTINGS, Page, Sync, make_batch
from conformance.messages import ProtocolViolation, pack, unpack
from conformance.report import StepFailed
from conformance.steps import Options, State, alive

WRITE_STORE = "conformance"
WRITE_SETTINGS = ("shared", "S1", "")


def _sync(st: State) -> Sync:
    m = st.need_member()
    if st.sync is None:
        st.sync = Sync(m)
        st.sync.start()
    return st.sync  # type: ignore[no-any-return]


def declarations(page: Page, host: str) -> dict[str, tuple[str, str, str]]:
    """The stores the node declares in its catalog namespace, with their settings."""
    out = {}
    for (ns, key), value in page.rows.items():
        if ns != host or value is None:
            continue
        try:
            decl = unpack(value)
        except ProtocolViolation:
            continue
        if isinstance(decl, list) and len(decl) >= 3:
            out[key] = (str(decl[0]), str(decl[1]), str(decl[2]))
    return out


def kv_read(st: State, opt: Options) -> str:
    sync = _sync(st)
    try:
        catalog = sync.pull(CATALOG, CATALOG_SETTINGS, opt.timeout * 2)
    except TimeoutError as exc:
        raise StepFailed(str(exc)) from exc
    stores = declarations(catalog, st.host)
    checked = []
    for spec in opt.expect_kv:
        store, rest = spec.split("/", 1)
        key, want = rest.split("=", 1)
        if store not in stores:
            raise StepFailed(f"the node's catalog does not declare {store!r}: {sorted(stores)}")
        page = _pull(sync, store, stores[store], opt)
        got = page.rows.get(("" if stores[store][0] == "shared" else st.host, key))
        if got != want.encode():
            raise StepFailed(f"{store}/{key} = {got!r}, expected {want!r}")
        checked.append(f"{store}/{key}")
    return f"catalog: {len(catalog.rows)} rows, node declares {sorted(stores) or 'no store'}" + (
        f"; read {', '.join(checked)}" if checked else ""
    )


def _pull(sync: Sync, store: str, settings: tuple[str, str, str], opt: Options) -> Page:
    try:
        return sync.pull(store, settings, opt.timeout * 2)
    except TimeoutError as exc:
        raise StepFailed(str(exc)) from exc


def kv_write(st: State, opt: Options) -> str:
    sync = _sync(st)
    me = st.me.device_id
    decl = pack([*WRITE_SETTINGS, int(time.time() * 1000)])
    sync.push(CATALOG, CATALOG_SETTINGS, [[WRITE_STORE, decl]])
    value = f"written by {me}".encode()
    ops: list[list[Any]] = [["conformance/hello", value]]
    sync.push(WRITE_STORE, WRITE_SETTINGS, ops)
    deadline = time.monotonic() + opt.timeout * 3
    tries = 0
    while True:
        tries += 1
        page = _pull(sync, WRITE_STORE, WRITE_SETTINGS, opt)
        got = page.rows.get(("", "conformance/hello"))
        if got == value and page.origins.get(("", "conformance/hello")) == me:
            break
        if time.monotonic() > deadline:
            raise StepFailed(
                f"our write never came back in a pull of {WRITE_STORE} ({tries} pulls; "
                f"last: {got!r:.80}, {page.unproven} unproven groups, vv {page.vv})"
            )
        # the first push may have come before the node held our catalog declaration:
        # the same batch again is a duplicate if it was taken, applied if it was not
        sync.seqs[WRITE_STORE] -= 1
        sync.push(WRITE_STORE, WRITE_SETTINGS, ops)
    if page.vv.get(me) != 1:
        raise StepFailed(f"the node's vv for us is {page.vv.get(me)!r}, not 1")
    return (
        "pushed a signed batch; pulled it back with a valid relay proof"
        f" (vv[us]=1, {tries} pull(s))"
    )


def kv_forged(st: State, opt: Options) -> str:
    """A batch pushed by us that claims another member as its origin (signed by us):
    the spec says it is refused (ForgedOrigin) and nothing of it is applied."""
    sync = _sync(st)
    m = st.need_member()
    victim = next((d for d in m.keys if d not in (st.me.device_id, *m.revoked)), st.host)
    ops: list[list[Any]] = [["conformance/forged", b"not from " + victim.encode()]]
    hlc = [int(time.time() * 1000), 0]
    forged = make_batch(st.me, WRITE_STORE, False, 1, hlc, ops)
    forged[0] = victim  # the origin claimed; the signature stays ours
    sync.send(WRITE_SETTINGS, {"t": "push", "v": 2, "store": WRITE_STORE, "batches": [forged]})
    # then a genuine batch of ours: once it is back, the forged one was handled before it
    seq = sync.push(WRITE_STORE, WRITE_SETTINGS, [["conformance/after-forgery", b"ok"]])
    deadline = time.monotonic() + opt.timeout * 3
    while True:
        page = _pull(sync, WRITE_STORE, WRITE_SETTINGS, opt)
        if page.vv.get(st.me.device_id, 0) >= seq or time.monotonic() > deadline:
            break
    if ("", "conformance/forged") in page.rows:
        raise StepFailed(f"a batch claiming {victim} as origin was applied")
    if page.vv.get(st.me.device_id, 0) < seq:
        raise StepFailed("our genuine batch after the forged one never came back")
    alive(st, opt)
    return f"a batch claiming {victim} as origin, signed by us: not applied; node answers after"
