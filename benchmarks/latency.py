"""Groups 1 and 2, per kernel: the trivial cell's round trip and the time to first output.

1. ``1`` round trips (after WARMUP untimed cells): p50/p95, and p50 as a multiple of the local
   ipykernel's p50 (target ≤ 1.5× for the wrapper).  The no-op wrapper kernel (noop_kernel.py)
   is measured alongside: what ipykernel's messaging alone costs any wrapper kernel.
2. ``print('a'); time.sleep(1); print('b')``: request to the first ``stream`` containing ``a``
   (target < 100 ms).  The same with ``flush=True`` is measured too: ipykernel's stdout is
   flushed by a 0.2 s timer unless flushed, so that row shows the path without the timer.
"""

from __future__ import annotations

from .common import KernelDriver, Row, p50_p95, ratio, summarize

RATIO_TARGET = 1.5
TTFO_TARGET_MS = 100.0
TTFO_CODE = "import time; print('a'); time.sleep(1); print('b')"
TTFO_FLUSH_CODE = "import time; print('a', flush=True); time.sleep(1); print('b')"


def trivial(drivers: dict[str, KernelDriver], n: int, block: int = 10) -> dict:
    """``n`` timed ``1`` cells per kernel, interleaved in blocks so that load drift on the machine
    hits every kernel alike."""
    times: dict[str, list[float]] = {key: [] for key in drivers}
    for d in drivers.values():
        d.timed("1", 0)  # warm-up
    while any(len(t) < n for t in times.values()):
        for key, d in drivers.items():
            times[key] += d.timed("1", min(block, n - len(times[key])), warmup=0)
    return {key: summarize(t, samples=True) for key, t in times.items()}


def first_output(drivers: dict[str, KernelDriver], runs: int, warmup: int) -> dict:
    """Seconds to the first ``a`` per kernel, for the plain and the flushed print; runs interleaved."""
    times: dict[str, dict[str, list[float]]] = {key: {"print": [], "print_flush": []} for key in drivers}
    for i in range(warmup + runs):
        for variant, code in (("print", TTFO_CODE), ("print_flush", TTFO_FLUSH_CODE)):
            for key, d in drivers.items():
                run = d.run_ok(code, timeout=30)
                t = run.first_stream("a")
                if t is None or run.stdout() != "a\nb\n":
                    raise RuntimeError(f"{d.kind.label}: expected 'a\\nb\\n', got {run.streams!r}")
                if i >= warmup:
                    times[key][variant].append(t)
    return {key: {v: summarize(t, samples=True) for v, t in per.items()} for key, per in times.items()}


def trivial_rows(results: dict, labels: dict[str, str]) -> list[Row]:
    floor = results.get("local", {}).get("p50_ms")
    rows = []
    for key, r in results.items():
        wrapper = key not in ("local", "noop")  # the no-op kernel is a diagnostic floor, not the product
        rows.append(Row("1", f"`1` round trip — {labels[key]}", r["n"], p50_p95(r), ratio(r["p50_ms"], floor),
                        f"p50 ≤ {RATIO_TARGET}× local" if wrapper else "(floor)" if key == "local" else "(diagnostic)",
                        (r["p50_ms"] <= RATIO_TARGET * floor) if wrapper and floor else None))
    return rows


def first_output_rows(results: dict, labels: dict[str, str]) -> list[Row]:
    rows = []
    for variant, title in (("print", "first output `print('a'); sleep(1); print('b')`"),
                           ("print_flush", "first output, same with `flush=True` (diagnostic)")):
        floor = results.get("local", {}).get(variant, {}).get("p50_ms")
        for key, r in results.items():
            s = r[variant]
            targeted = key != "local" and variant == "print"
            rows.append(Row("2", f"{title} — {labels[key]}", s["n"], p50_p95(s), ratio(s["p50_ms"], floor),
                            f"p95 < {TTFO_TARGET_MS:.0f} ms" if targeted else "",
                            (s["p95_ms"] < TTFO_TARGET_MS) if targeted else None))
    return rows
