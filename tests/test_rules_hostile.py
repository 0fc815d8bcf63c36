"""Bad rule files get errors that point at the line and field (pure); a hostile
member cannot forge a rule in another's name, replay an old one, or get a rule to do
what its author may not (in-process nodes)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import pytest

from accord.errors import PermissionDenied, RemoteError
from accord.node import Node
from accord.rules.acting import ActRequest
from accord.rules.errors import RuleFileError
from accord.rules.parse import parse_rule
from accord.rules.records import RULE_PREFIX, RuleRecord, sign_record
from tests.nodes import Mesh, household

GOOD = """\
name = "door"
[trigger]
device = "fridge"
sensor = "doors.fridge"
equals = true
for = "2s"
[[action]]
device = "tv"
call = "display.show"
params = { text = "open" }
"""


@pytest.mark.parametrize(
    ("broken", "where"),
    [
        (GOOD.replace('for = "2s"', 'for = "two"'), "rule.toml:6: trigger.for: 'two' is not"),
        (GOOD.replace('for = "2s"', 'fro = "2s"'), "rule.toml:6: trigger.fro: unknown field"),
        (GOOD.replace("equals = true", "above = true"), "rule.toml:5: trigger.above: must be"),
        (GOOD.replace('call = "display.show"', 'call = "display"'), "rule.toml:9: action[0].call"),
        (GOOD.replace('name = "door"', 'name = "a b"'), "rule.toml:1: name: use letters"),
        (GOOD.replace('"open"', '"{{ trigger.value"'), "rule.toml:10: action[0].params.text"),
        (GOOD.replace('"open"', '"{{ secrets }}"'), "rule.toml:10: action[0].params.text"),
        (GOOD.replace("[[action]]", "[[acton]]"), "rule.toml:7: acton: unknown field"),
        (GOOD.replace('sensor = "doors.fridge"', ""), "rule.toml:2: trigger: say what triggers"),
        (GOOD + 'mode = "single"\n', "rule.toml:11: action[0].mode: unknown field"),
        (GOOD.replace("equals = true", "equals = "), "rule.toml:5: not valid TOML"),
        ('name = "x"\n[trigger]\nat = "25:00"\n[[action]]\ndelay = 1\n', "rule.toml:3: trigger.at"),
        ('name = "x"\n[trigger]\nevery = "1m"\n', "needs at least one [action]"),
        ("name = 'x'\n[trigger]\nevery = 60\n[[action]]\ndevice = 'tv'\ncall = 'rules.act'\n",
         "rule.toml:6: action[0].call: a rule cannot call the rules service"),
        ('name = "x"\n[trigger]\nevery = 60\n[[action]]\nwait = { at = "10:00" }\n',
         "rule.toml:5: action[0].wait: wait for a sensor"),
        ('name = "x"\n[trigger]\nevery = 60\n[[condition]]\nor = []\n[[action]]\ndelay = 1\n',
         "rule.toml:5: condition[0].or: must be a list"),
    ],
)  # fmt: skip
def test_malformed_rule_files_say_where_and_what(broken: str, where: str) -> None:
    with pytest.raises(RuleFileError) as caught:
        parse_rule(broken, "rule.toml")
    assert where in str(caught.value), str(caught.value)


@pytest.fixture
async def three(mesh: Mesh) -> list[Node]:
    return await household(mesh, ("phone", "nokia-x60"), ("tv", "tv"), ("fridge", "midea-fridge"))


def _record(author: Node, source: str = GOOD, at: float = 1000.0, **kw: object) -> RuleRecord:
    unsigned = RuleRecord(name="door", source=source, author=author.home.device_id,
                          written_at=at, **kw)  # type: ignore[arg-type]  # fmt: skip
    return sign_record(unsigned, author.home.identity.sign)


async def _act(caller: Node, target: Node, record: RuleRecord) -> object:
    req = ActRequest(record, 0, {"trigger": {"value": True}})
    return await caller.rpc.call(target.home.device_id, "rules", "act", req)


async def test_a_member_cannot_forge_a_rule_in_anothers_name(three: list[Node]) -> None:
    phone, tv, fridge = three
    # signed by the fridge, claiming the phone as author
    forged = sign_record(msgspec.structs.replace(_record(phone), signature=b""),
                         fridge.home.identity.sign)  # fmt: skip
    with pytest.raises(RemoteError, match="not signed by a current member"):
        await _act(fridge, tv, forged)
    # the phone's real signature on other text does not carry over
    tampered = msgspec.structs.replace(_record(phone), source=GOOD.replace("open", "pwned"))
    with pytest.raises(RemoteError, match="not signed"):
        await _act(fridge, tv, tampered)
    # a record of the phone's, written into the fridge's own namespace, does not count
    assert fridge.rules.rules is not None
    await fridge.rules.rules.put(RULE_PREFIX + "door", msgspec.msgpack.encode(_record(phone)))
    await fridge.rules.rules.put(RULE_PREFIX + "x", msgspec.msgpack.encode(forged))
    assert fridge.rules.records() == {}
    assert tv.rules.records() == {}


async def test_an_old_version_cannot_be_replayed_nor_sent_to_another_device(
    three: list[Node],
) -> None:
    phone, tv, fridge = three
    old = _record(phone, at=1000.0)
    assert await _act(fridge, tv, old)  # a valid record: the TV shows it as the phone's
    newer = _record(phone, at=2000.0, enabled=False)
    assert phone.rules.rules is not None
    await phone.rules.rules.put(RULE_PREFIX + "door", msgspec.msgpack.encode(newer))
    for _ in range(200):  # until the newer record has reached the TV
        if tv.rules.record("door") == newer:
            break
        await asyncio.sleep(0.02)
    with pytest.raises(RemoteError, match="changed since"):
        await _act(fridge, tv, old)
    with pytest.raises(RemoteError, match="not this device"):
        await _act(fridge, phone, _record(phone, at=3000.0))


async def test_a_rule_cannot_do_what_its_author_may_not(three: list[Node]) -> None:
    phone, tv, fridge = three
    tv.services.restrict("display", {phone.home.device_id})  # only the phone may use it
    with pytest.raises(PermissionDenied, match="restricted"):
        await _act(phone, tv, _record(fridge))  # the fridge wrote it: refused
    assert await _act(fridge, tv, _record(phone, at=5000.0))  # the phone wrote it: shown
    # apps: the SL1 fridge may not run code on the SL4 phone, whoever runs the rule
    run_app = GOOD.replace('device = "tv"\ncall = "display.show"\nparams = { text = "open" }',
                           'app = "notes"\nrun = "phone"')  # fmt: skip
    with pytest.raises(PermissionDenied, match=r"fridge \(SL1\) may not run apps"):
        await _act(tv, phone, _record(fridge, source=run_app, at=6000.0))


@pytest.mark.parametrize(
    "path",
    sorted(Path(__file__).resolve().parents[1].glob("examples/**/*.toml")),
    ids=lambda p: p.name,
)
def test_the_example_rules_parse(path: Path) -> None:
    if path.name == "accord-app.toml":
        return
    rule = parse_rule(path.read_text(), str(path))
    assert rule.actions
