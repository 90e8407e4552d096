"""Group 9: the first cell of a new kernel, sent a while after the kernel started.

The wrapper kernel starts creating its session when it starts (eager start), so a first cell sent
``delay`` seconds later should take its own time plus little more (target: + < 0.5 s over the
trivial cell's p50 on a warm kernel).  For contrast, the same with ``eager_start=False``: the
first cell then waits for the whole session start.  On the embedded server always; on a real
manager when the suite is given one (``--manager``: the loopback stack of tests/manager/).
"""

from __future__ import annotations

import time
from pathlib import Path

from .common import KernelDriver, KernelKind, Row, ms

EAGER = KernelKind("wrapper_eager", "wrapper, eager start", "backend-python", "auto", eager=True)
LAZY = KernelKind("wrapper_lazy", "wrapper, session at the first cell", "backend-python", "auto", eager=False)
MARGIN_MS = 500.0


def first_cell_after(kind: KernelKind, env: dict[str, str], delay: float, workdir: Path, timeout: float) -> dict:
    """Start a kernel, wait ``delay`` s, run ``1``: the first cell's time, then a second's (warm)."""
    driver = KernelDriver(kind, env, Path(workdir) / f"{kind.key}.log")
    with driver:
        time.sleep(delay)
        first = driver.run_ok("1", timeout=timeout).seconds
        warm = min(driver.run_ok("1", timeout=timeout).seconds for _ in range(5))
    return {"first_ms": round(first * 1000, 1), "warm_ms": round(warm * 1000, 1), "delay_s": delay}


def eager_start(targets: dict[str, dict[str, str]], delay: float, workdir: Path, timeout: float = 180.0) -> dict:
    """``targets``: where → environment of a kernel pointed there (embedded, manager)."""
    return {where: {kind.key: first_cell_after(kind, env, delay, workdir, timeout) for kind in (EAGER, LAZY)}
            for where, env in targets.items()}


def rows(results: dict) -> list[Row]:
    out = []
    for where, kinds in results.items():
        eager, lazy = kinds[EAGER.key], kinds[LAZY.key]
        extra = eager["first_ms"] - eager["warm_ms"]
        out.append(Row("9", f"first cell {eager['delay_s']:g} s after kernel start, eager start ({where})", 1,
                       f"{ms(eager['first_ms'])} (a warm `1`: {ms(eager['warm_ms'])}; + {ms(extra)})", "",
                       f"+ < {ms(MARGIN_MS)}", extra < MARGIN_MS))
        out.append(Row("9", f"first cell {lazy['delay_s']:g} s after kernel start, eager_start=False ({where})", 1,
                       ms(lazy["first_ms"])))
    return out
