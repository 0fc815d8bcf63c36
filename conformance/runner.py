"""Run every step in order against one node."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from conformance import detailsteps, hostile, kvsteps, membership, steps
from conformance.link import Link
from conformance.report import Report
from conformance.steps import Options, State

Step = Callable[[State, Options], str]


PLAN: list[tuple[str, Step]] = [
    ("discover", steps.discover),
    ("stranger", hostile.stranger),
    ("wrong pin", steps.wrong_pin),
    ("pair", steps.do_pair),
    ("details", detailsteps.details),
    ("call", steps.call),
    ("stream", steps.stream),
    ("typed errors", steps.typed_errors),
    ("kv read", kvsteps.kv_read),
    ("kv write", kvsteps.kv_write),
    ("replay", steps.replay),
    ("forgery", steps.forged),
    ("forged batch", kvsteps.kv_forged),
    ("malformed", hostile.malformed),
    ("revocation", hostile.revocation),
    ("leave", membership.leave),
]
# steps that run only when named in --only (leaving ends the membership that the
# revocation step needs the node to end)
ON_REQUEST = {"leave"}
NAMES = [name for name, _ in PLAN]


def run(opt: Options) -> Report:
    """Run the plan (only ``opt.only`` if given: discover always runs, the others in
    plan order) and report each step."""
    report = Report(node=", ".join(opt.connect))
    link = Link(opt.connect)
    try:
        st = State(link)
        for name, step in PLAN:
            if opt.only and name != "discover" and name not in opt.only:
                continue
            if name in ON_REQUEST and name not in opt.only:
                continue
            report.run(name, partial(step, st, opt))
        if st.host:
            report.node = f"{st.host} at {report.node}"
    finally:
        link.close()
    return report
