"""Live statistics of a local session, in the shape a Backend.AI agent reports a container's.

A session's kernel is a process tree here; :class:`ProcessStats` samples it (CPU time and
resident memory of the kernel and its children) and answers like the agent's ``live_stat``:
one entry per metric, every value a decimal string, ``cpu_util`` in millicores of one core with
``pct`` its percentage (over 100 on several cores), ``mem`` in bytes with the machine's memory as
capacity (a local session has no limit of its own), ``stats.max`` the peak seen so far.
"""

from __future__ import annotations

import time

import psutil

CPU_CAPACITY = 1000  # millicores of one core, as the agent counts


class ProcessStats:
    """The live statistics of the process tree under one pid, sampled on demand."""

    def __init__(self):
        self._last: tuple[float, float] | None = None  # (monotonic time, CPU seconds) at the last sample
        self._peak_mem = 0
        self._peak_cpu = 0.0

    def sample(self, pid: int | None) -> dict[str, dict[str, str]] | None:
        """The statistics now; None when the process is gone (or not started)."""
        try:
            root = psutil.Process(pid) if pid else None
            tree = [root, *root.children(recursive=True)] if root else []
            cpu_seconds = mem = 0.0
            for proc in tree:
                try:
                    times = proc.cpu_times()
                    cpu_seconds += times.user + times.system
                    mem += proc.memory_info().rss
                except psutil.Error:
                    continue  # a child that just ended
            started = root.create_time() if root else 0.0
        except psutil.Error:
            return None
        if not tree:
            return None
        now = time.monotonic()
        if self._last is None:  # first sample: the average since the kernel started
            elapsed = max(time.time() - started, 1e-3)
            used = cpu_seconds
        else:
            elapsed = max(now - self._last[0], 1e-3)
            used = max(cpu_seconds - self._last[1], 0.0)
        self._last = (now, cpu_seconds)
        millicores = used / elapsed * CPU_CAPACITY
        self._peak_cpu = max(self._peak_cpu, millicores)
        self._peak_mem = max(self._peak_mem, int(mem))
        total = psutil.virtual_memory().total
        return {
            "cpu_util": _metric(millicores, CPU_CAPACITY, self._peak_cpu, "millicores"),
            "mem": _metric(mem, total, self._peak_mem, "bytes"),
            "cpu_used": _metric(cpu_seconds * 1000, None, cpu_seconds * 1000, "msec"),
        }


def _metric(current: float, capacity: float | None, peak: float, unit: str) -> dict[str, str]:
    pct = current / capacity * 100 if capacity else 0.0
    return {"current": f"{current:.2f}" if unit == "millicores" else str(int(current)),
            "capacity": str(int(capacity)) if capacity else "0", "pct": f"{pct:.2f}", "unit_hint": unit,
            "stats.max": f"{peak:.2f}" if unit == "millicores" else str(int(peak))}
