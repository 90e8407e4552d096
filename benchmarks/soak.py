"""Group 7: a long series of cells in one wrapper kernel (default transport).

After the session is up and WARMUP cells ran, N cells ``<i>`` (each must answer ``i``); RSS and
open file descriptors of the wrapper kernel, the server and the session's kernel at the start
and at the end, and the latency of the first and the last tenth of the cells (drift).  Checks:
no failed cell, fds stable (growth ≤ 5 per process), RSS growth < 50 MB per process.
"""

from __future__ import annotations

from pathlib import Path

from .common import (
    WARMUP,
    WRAPPER_AUTO,
    Row,
    Server,
    first_cell,
    p50_p95,
    snapshot,
    start_kernel,
    summarize,
    wrapper_probes,
)

FD_GROWTH_BOUND = 5
RSS_GROWTH_BOUND_MB = 50.0


def soak(server: Server, workdir: Path, cells: int) -> dict:
    with start_kernel(WRAPPER_AUTO, server, workdir) as driver:
        _, session_kernels = first_cell(driver, server)
        probes = wrapper_probes(driver, server, session_kernels)
        driver.timed("1", 0, warmup=WARMUP)
        start = snapshot(probes)
        times, errors, samples = [], 0, []
        for i in range(cells):
            run = driver.run(str(i), timeout=60)
            if run.ok and run.value() == str(i):
                times.append(run.seconds)
            else:
                errors += 1
                samples.append(f"cell {i}: status={run.status} idle={run.idle} value={run.value()!r:.100}")
        end = snapshot(probes)
    tenth = max(1, len(times) // 10)
    return {"cells": cells, "errors": errors, "error_samples": samples[:5],
            "latency": summarize(times), "first_tenth": summarize(times[:tenth]),
            "last_tenth": summarize(times[-tenth:]), "start": start, "end": end}


def process_ok(start: dict, end: dict) -> bool:
    return end["fds"] - start["fds"] <= FD_GROWTH_BOUND and end["rss_mb"] - start["rss_mb"] < RSS_GROWTH_BOUND_MB


def rows(r: dict) -> list[Row]:
    out = [Row("7", f"soak: {r['cells']} cells in one wrapper kernel", r["cells"],
               f"errors {r['errors']}; {p50_p95(r['latency'])}; first tenth p50 {r['first_tenth']['p50_ms']:.1f} ms"
               f" → last tenth p50 {r['last_tenth']['p50_ms']:.1f} ms", "", "0 errors", r["errors"] == 0)]
    for name, start in r["start"].items():
        end = r["end"][name]
        out.append(Row("7", f"soak: {name} RSS and open fds, start → end", start["processes"],
                       f"RSS {start['rss_mb']:.1f} → {end['rss_mb']:.1f} MB; fds {start['fds']} → {end['fds']}", "",
                       f"Δfds ≤ {FD_GROWTH_BOUND}, ΔRSS < {RSS_GROWTH_BOUND_MB:.0f} MB", process_ok(start, end)))
    return out
