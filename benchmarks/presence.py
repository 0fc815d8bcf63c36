"""Presence benchmark: how fast a household of real node processes sees joins and losses.

Runs N real ``accord up`` processes on 127.0.0.1 (multicast off, each listening on its
own port and connected to the ones started before it) watched by an in-process
observer :class:`accord.node.Node`, then the floor: the same topology of small raw
Zenoh processes that only declare a liveliness token, watched by a raw liveliness
subscriber, with the identical Zenoh config (``zenoh_config(BusSettings(...))``).

Each trial picks the next node round-robin and measures, on both systems:

* clean stop: SIGTERM -> offline on the observer, then restart -> online again;
* crash: SIGKILL -> offline, then restart (same identity) -> online;
* freeze: SIGSTOP -> offline, then SIGKILL and a fresh identity on the same port ->
  online (the "join" of a never-seen device).

Joins are timed from a timestamp taken just before the spawn and from the child's own
pre-open timestamp (accord: ``started_at`` of its announcement, read over the control
socket; raw: encoded in the token key). Usage::

    .venv/bin/python benchmarks/presence.py [--nodes 10] [--trials 20] [--json-out PATH]
    .venv/bin/python benchmarks/presence.py --quick      # 4 nodes, 5 trials
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import datetime
import importlib.metadata
import json
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import zenoh
from rich.console import Console
from rich.table import Table

from accord.bus.settings import BusSettings, zenoh_config
from accord.control.client import ControlClient
from accord.directory_types import DirectoryEventLike if False else None  # noqa: F401
