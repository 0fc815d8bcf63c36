"""Rules: trigger-to-action latency against a direct RPC of the same call, takeover
time after the runner leaves, and CPU per evaluation with 1000 rules on one runner.

Latency: a fridge door opens (sim.door) and a rule run by the laptop shows text on
the TV; measured from the door call to the end of display.show as the trace records
it, beside a direct display.show from the laptop in the same run. In-process nodes
on 127.0.0.1 (one process, so both share a clock). Takeover: the runner stops and
the next member in line holds the rule's engine. CPU: the pure engine, 1000 rules
of the issue's shape fed sensor readings (what a runner does per reading).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from rich.console import Console

from accord.bus.settings import BusSettings
from accord.device.home import init_home
from accord.node import Node
from accord.rules.control import RulesControl
from accord.rules.engine import Engine
from accord.rules.facts import Facts, SensorEvent
from accord.rules.parse import parse_rule
from accord.rules.records import Candidate, runner_for
from accord.sim.household import free_port
from common import (
    BenchParser,
    machine,
    new_table,
    result_header,
    run_main,
    sees,
    write_results,
)

RULE = """
name = "{name}"
[trigger]
device = "fridge"
sensor = "doors.fridge"
equals = true
[[action]]
device = "tv"
call = "display.show"
params = {{ text = "door {{{{ trigger.since }}}}" }}
"""


async def _until(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


async def _start(stack: AsyncExitStack, root: Path, name: str, profile: str,
                 endpoints: list[str], port: int) -> Node:  # fmt: skip
    home_dir = root / name
    if (home_dir / "identity.key").exists() or home_dir.exists():
        from accord.device.home import open_home

        home = open_home(home_dir)
    else:
        home = init_home(home_dir, profile_name=profile, name=name)
    ep = f"tcp/127.0.0.1:{port}"
    settings = BusSettings(listen=(ep,), connect=tuple(e for e in endpoints if e != ep),
                           multicast=False)  # fmt: skip
    node = Node(home, settings)
    await node.start()
    stack.push_async_callback(node.stop)
    return node


async def _pair(host: Node, joiner: Node) -> None:
    await _until(lambda: sees(joiner, host.home.device_id), 10, "joiner to see host")
    pin = (await host.trust.pair_window({"timeout": 30}))["pin"]
    await joiner.trust.pair_join({"device": host.name, "pin": pin})


def _rule_for(runner: Node, nodes: list[Node]) -> str:
    cands = [Candidate(n.home.device_id, n.name, True) for n in nodes]
    return next(f"door-{i}" for i in range(1000)
                if runner_for(f"door-{i}", cands).device_id == runner.home.device_id)  # type: ignore[union-attr]  # fmt: skip


async def _door(node: Node, fridge: Node, is_open: bool) -> None:
    await node.rpc.call(fridge.home.device_id, "sim", "door", {"door": "fridge", "open": is_open})


async def live(root: Path, rounds: int, takeovers: int) -> dict[str, Any]:
    async with AsyncExitStack() as stack:
        ports = {n: free_port() for n in ("tv", "fridge", "laptop")}
        eps = [f"tcp/127.0.0.1:{p}" for p in ports.values()]
        tv = await _start(stack, root, "tv", "tv", [], ports["tv"])
        fridge = await _start(stack, root, "fridge", "midea-fridge", eps[:1], ports["fridge"])
        laptop = await _start(stack, root, "laptop", "laptop", eps[:2], ports["laptop"])
        await _pair(tv, fridge)
        await _pair(tv, laptop)
        nodes = [tv, fridge, laptop]
        for a in nodes:
            for b in nodes:
                if a is not b:
                    await _until(lambda a=a, b=b: sees(a, b.home.device_id, details=True), 10,
                                 "details")  # fmt: skip
        name = _rule_for(laptop, nodes)
        await RulesControl(laptop.rules).add({"source": RULE.format(name=name)})
        await _until(lambda: name in laptop.rules.running_rules(), 10, "the laptop to run it")
        direct, rule = [], []
        tv_id = tv.home.device_id
        for _ in range(rounds):
            t = time.perf_counter()
            await laptop.rpc.call(tv_id, "display", "show", {"text": "direct"})
            direct.append((time.perf_counter() - t) * 1000)
        for _ in range(rounds):
            await _door(laptop, fridge, False)
            await asyncio.sleep(0.25)  # the runner sees it closed
            before = [t.run_id for t in laptop.rules.traces(name)[-1:]]
            opened = time.time()
            await _door(laptop, fridge, True)
            await _until(lambda b=before: [t.run_id for t in laptop.rules.traces(name)[-1:]] != b,
                         10, "the run")  # fmt: skip
            act = laptop.rules.traces(name)[-1].actions[0]
            rule.append((act.ended - opened) * 1000)
        await _door(laptop, fridge, False)
        takeover = []
        for _ in range(takeovers):
            t = time.perf_counter()
            await laptop.stop()
            await _until(lambda: any(name in n.rules.running_rules() for n in (tv, fridge)), 20,
                         "another member to take the rule over")  # fmt: skip
            takeover.append((time.perf_counter() - t) * 1000)
            await laptop.start()
            await _until(lambda: name in laptop.rules.running_rules(), 20, "the laptop back")
        return {"direct_rpc_ms": direct, "rule_trigger_to_action_ms": rule,
                "takeover_ms": takeover}  # fmt: skip


def cpu(rules: int, readings: int) -> dict[str, Any]:
    names = {"fridge": "fridge-id", "tv": "tv-id"}
    engines = [Engine(parse_rule(RULE.format(name=f"r{i}")), "v", runner="bench", names=names)
               for i in range(rules)]  # fmt: skip
    facts = Facts(now=0.0)
    t = time.process_time()
    for i in range(readings):
        facts.now = float(i)
        event = SensorEvent("fridge-id", {"doors": {"fridge": i % 2 == 0, "freezer": False}})
        for engine in engines:
            engine.observe(event, facts)
            engine.take_actions()
            engine.take_traces()
    spent = time.process_time() - t
    return {"rules": rules, "readings": readings,
            "cpu_us_per_evaluation": round(spent / (rules * readings) * 1e6, 2),
            "cpu_ms_per_reading_all_rules": round(spent / readings * 1000, 2)}  # fmt: skip


def body(console: Console, root: Path) -> int:
    parser = BenchParser("rules", __doc__)
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--json-out", type=Path, default=None)
    parser.count("--rounds", "latency rounds", 30, 8)
    parser.count("--takeovers", "runner takeovers", 3, 1)
    args = parser.parse(None)
    started = time.monotonic()
    measured = asyncio.run(live(root, args.rounds, args.takeovers))
    load = cpu(1000, 20 if args.quick else 100)
    p50 = statistics.median
    table = new_table("rules", ["measure", "p50", "min", "max"], left=["measure"])
    for label, key in (("direct display.show RPC (floor)", "direct_rpc_ms"),
                       ("door opens -> rule's display.show done", "rule_trigger_to_action_ms"),
                       ("takeover after the runner leaves", "takeover_ms")):  # fmt: skip
        xs = measured[key]
        table.add_row(label, f"{p50(xs):.1f} ms", f"{min(xs):.1f}", f"{max(xs):.1f}")
    table.add_row("CPU per rule evaluation (1000 rules)", f"{load['cpu_us_per_evaluation']} us",
                  "-", "-")  # fmt: skip
    console.print(table)
    result = {**result_header("rules", machine("msgspec"), args.argv), **measured, "cpu": load}
    write_results(args.json_out, result, console, time.monotonic() - started)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(body, prefix="acc-br-", width=110))
