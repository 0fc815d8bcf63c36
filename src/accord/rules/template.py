"""Simple templating of trigger values into action parameters.

``"{{ trigger.value }}"`` alone in a string becomes the value itself (a number stays
a number); inside text it is written as text. Names are dotted paths into the run's
variables: ``trigger.*`` (what fired it), ``wait.*`` (what a wait-for-trigger saw),
``rule.name`` and ``now`` (the run's start, seconds since the epoch). No expressions
and no code: a template cannot do anything but copy a value.
"""

from __future__ import annotations

import re
from typing import Any

_PLACE = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*(\.[A-Za-z0-9_\-]+)*$")
ROOTS = ("trigger", "wait", "rule", "now")


def check_template(text: str) -> str:
    """What is wrong with the placeholders of ``text`` ("" if nothing)."""
    for match in _PLACE.finditer(text):
        name = match.group(1)
        if not _NAME.match(name) or name.split(".")[0] not in ROOTS:
            return (f"{{{{ {name} }}}} is not a value a rule knows; use trigger.value, "
                    "trigger.device, wait.value, rule.name or now")  # fmt: skip
    if "{{" in _PLACE.sub("", text) or "}}" in _PLACE.sub("", text):
        return "unbalanced {{ or }} in a template"
    return ""


def lookup(variables: dict[str, Any], name: str) -> Any:
    value: Any = variables
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def render(value: Any, variables: dict[str, Any]) -> Any:
    """``value`` (a parameter, or a table or list of them) with placeholders filled."""
    if isinstance(value, str):
        whole = _PLACE.fullmatch(value.strip())
        if whole:
            return lookup(variables, whole.group(1))
        return _PLACE.sub(lambda m: _text(lookup(variables, m.group(1))), value)
    if isinstance(value, dict):
        return {k: render(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, variables) for v in value]
    return value


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
