"""A session described for people: its fields and its live resource usage.

A manager answers ``GET /session/{name}`` with the session's fields (26.09 writes its resource
slots as Python reprs, ``{'cpu': Decimal('1.000000')}``; its ``lastStat`` stays null).  Live
statistics come from its GraphQL API (``ComputeSession.live_stat``): one entry per metric
(``cpu_util``, ``mem``, ``cuda_util``, ``cuda_mem``, ...), each with ``current``, ``capacity``,
``pct`` and ``stats.max`` as decimal strings and a ``unit_hint``: ``cpu_util`` in millicores of one
core (``pct`` is the percentage of one core, so it passes 100 on several), ``mem`` in bytes with the
container's limit as capacity, ``cuda_util`` in percent.  The embedded server reports its session's
process tree in the same place and shape.  See docs/protocol.md.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from .variables import human_size

# metric key → label, in the order they are shown
METRICS = {"cpu_util": "CPU", "mem": "memory", "cuda_util": "GPU", "cuda_mem": "GPU memory",
           "rocm_util": "GPU", "rocm_mem": "GPU memory"}


@dataclass(frozen=True)
class Metric:
    label: str
    current: float  # percent for utilisation, bytes for memory
    capacity: float | None
    peak: float | None  # the highest value the server saw lately (``stats.max``)
    unit: str  # "percent" or "bytes"

    def text(self) -> str:
        if self.unit == "bytes":
            cap = f" of {human_size(int(self.capacity))}" if self.capacity else ""
            return f"{self.label} {human_size(int(self.current))}{cap}"
        return f"{self.label} {self.current:.0f} %"


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _as_dict(value: Any) -> dict:
    """A field a server may send as a JSON string, or (26.09's slots) as a Python repr."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {key: number for key, number in _REPR_ITEM.findall(value)}
    return value if isinstance(value, dict) else {}


_REPR_ITEM = re.compile(r"'([\w.]+)': Decimal\('([-\d.]+)'\)")


def metrics(stat: dict | None) -> list[Metric]:
    """The usage in a ``live_stat`` dict (empty when there is none)."""
    found = []
    for key, label in METRICS.items():
        entry = (stat or {}).get(key)
        if not isinstance(entry, dict) or _number(entry.get("current")) is None:
            continue
        hint = str(entry.get("unit_hint") or "")
        if hint == "bytes" or (not hint and key.endswith("_mem")) or key == "mem":
            found.append(Metric(label, _number(entry["current"]), _number(entry.get("capacity")),
                                _number(entry.get("stats.max")), "bytes"))
        elif hint == "millicores":  # pct is the share of one core
            pct = _number(entry.get("pct"))
            current = pct if pct is not None else _number(entry["current"]) / 10
            found.append(Metric(label, current, None, None, "percent"))
        else:
            found.append(Metric(label, _number(entry["current"]), None, None, "percent"))
    return found


def usage_line(stat: dict | None) -> str:
    """``CPU 85 %, memory 312.4 MB of 4.3 GB``; a plain sentence when nothing is reported."""
    found = metrics(stat)
    if not found:
        return "not reported by this server (it keeps no live statistics for the session)"
    return ", ".join(m.text() for m in found)


def memory(stat: dict | None) -> float | None:
    """The memory in use (bytes), or its recent peak where the server gives one."""
    for m in metrics(stat):
        if m.label == "memory":
            return max(m.current, m.peak or 0)
    return None


def _age(info: dict) -> str:
    ms = _number(info.get("age"))
    if ms is None:
        return str(info.get("creationTime") or "?")
    seconds = int(ms / 1000)
    hours, rest = divmod(seconds, 3600)
    return (f"{hours} h " if hours else "") + f"{rest // 60} min {rest % 60} s"


def _slots(info: dict) -> str:
    slots = _as_dict(info.get("occupiedSlots") or info.get("occupying_slots"))
    return ", ".join(f"{key}={_slot_value(key, value)}" for key, value in slots.items()) or "not reported"


def _slot_value(key: str, value: Any) -> str:
    number = _number(value)
    if number is None:
        return str(value)
    if key == "mem" or key.endswith(".mem"):
        return human_size(int(number))
    return f"{number:g}"


def describe_session(info: dict, stat: dict | None, *, endpoint: str, managed=None) -> str:
    """``%backend_session info``: one line per field."""
    mounts = info.get("mounts") or []
    rows = [
        ("name", info.get("sessionName") or info.get("name") or (managed.name if managed else "?")),
        ("id", info.get("sessionId") or info.get("id") or "?"),
        ("image", info.get("image") or info.get("lang") or "?"),
        ("status", info.get("status") or "?"),
        ("age", _age(info)),
        ("endpoint", endpoint),
        ("resources", _slots(info)),
        ("mounts", ", ".join(str(m) for m in mounts) if mounts else "none"),
        ("usage", usage_line(stat)),
    ]
    if "numQueriesExecuted" in info:
        rows.append(("runs", info["numQueriesExecuted"]))
    if managed is not None:
        rows.append(("ours", "yes, destroyed when this front-end exits" + (" (kept)" if managed.keep else "")
                     if managed.owned else "no, attached: never destroyed from here"))
    return "\n".join(f"{key:10} {value}" for key, value in rows)
