"""Group 6: many wrapper kernels at once against one server.

K wrapper kernels (default transport) start together and each creates its session (first cell);
then, released at once by a barrier, each runs C cells ``print('<its token>', i)`` on its own
thread.  Reported: p50/p95 cell latency over all cells, wall time, cells/s, errors (a cell that
failed, timed out, lost its idle or printed anything but its own line: must be 0), and whether
output crossed sessions (any stream text with another kernel's token, including output that
arrived outside any request: must be none).
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

from .common import (
    READY_TIMEOUT,
    WRAPPER_AUTO,
    KernelDriver,
    Row,
    Server,
    p50_p95,
    parallel,
    start_kernel,
    summarize,
)

CELL_TIMEOUT = 60.0


def concurrency(server: Server, workdir: Path, kernels: int, cells: int) -> dict:
    drivers = [start_kernel(WRAPPER_AUTO, server, workdir) for _ in range(kernels)]
    tokens = [f"tok{i:02d}-{uuid.uuid4().hex[:10]}" for i in range(kernels)]
    try:
        t0 = time.perf_counter()
        for d in drivers:
            d.start()
        parallel(lambda d: d.wait_ready(READY_TIMEOUT), drivers, READY_TIMEOUT + 10)
        parallel(lambda d: d.run_ok("1", timeout=READY_TIMEOUT), drivers, READY_TIMEOUT + 10)
        startup = time.perf_counter() - t0
        barrier = threading.Barrier(kernels)
        per_kernel = parallel(lambda i: _work(drivers[i], tokens[i], cells, barrier), range(kernels),
                              cells * CELL_TIMEOUT + 30)
    finally:
        parallel(lambda d: d.shutdown(), drivers, 60)

    latencies = [t for k in per_kernel for t in k["latencies"]]
    wall = max(k["end"] for k in per_kernel) - min(k["start"] for k in per_kernel)
    crossed = []
    for i, k in enumerate(per_kernel):
        seen = k["texts"] + drivers[i].stray
        foreign = [tok for j, tok in enumerate(tokens) if j != i and any(tok in text for text in seen)]
        if foreign:
            crossed.append({"kernel": i, "saw": foreign})
    return {
        "kernels": kernels, "cells_per_kernel": cells, "startup_s": round(startup, 2),
        "latency": summarize(latencies) if latencies else None, "wall_s": round(wall, 2),
        "cells_per_s": round(len(latencies) / wall, 1) if wall > 0 else None,
        "errors": sum(k["errors"] for k in per_kernel), "error_samples": [e for k in per_kernel for e in k["samples"]][:5],
        "cells_ok": len(latencies), "stray_texts": sum(len(d.stray) for d in drivers),
        "crossed": crossed, "isolation_ok": not crossed,
    }


def _work(driver: KernelDriver, token: str, cells: int, barrier: threading.Barrier) -> dict:
    out = {"latencies": [], "texts": [], "errors": 0, "samples": []}
    barrier.wait(timeout=60)
    out["start"] = time.perf_counter()
    for i in range(cells):
        try:
            run = driver.run(f"print({token!r}, {i})", timeout=CELL_TIMEOUT)
        except Exception as e:  # noqa: BLE001 - counted, and the kernel's next cell still runs
            out["errors"] += 1
            out["samples"].append(f"{token} cell {i}: {type(e).__name__}: {e}")
            continue
        texts = [text for _, _, text in run.streams]
        out["texts"] += texts
        if run.ok and "".join(texts) == f"{token} {i}\n":
            out["latencies"].append(run.seconds)
        else:
            out["errors"] += 1
            out["samples"].append(f"{token} cell {i}: status={run.status} idle={run.idle} streams={run.streams!r:.200}")
    out["end"] = time.perf_counter()
    return out


def rows(r: dict) -> list[Row]:
    lat = r["latency"]
    return [
        Row("6", f"{r['kernels']} wrapper kernels × {r['cells_per_kernel']} cells at once, cell latency",
            r["cells_ok"], f"{p50_p95(lat) if lat else 'no cell succeeded'}; {r['cells_per_s']} cells/s; "
                           f"start + sessions {r['startup_s']:.1f} s", "", ""),
        Row("6", "concurrency: errors", r["kernels"] * r["cells_per_kernel"], str(r["errors"]), "", "0",
            r["errors"] == 0),
        Row("6", "concurrency: output stays in its session (own token only)", r["kernels"],
            "isolated" if r["isolation_ok"] else f"CROSSED: {r['crossed']}", "", "no foreign token",
            r["isolation_ok"]),
    ]
