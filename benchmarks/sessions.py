"""Group 5: session creation on the embedded server, through our async client.

*cold*: a new session name each time (a new kernel; the first one, untimed, warms the server);
only the creation is timed, not the destroy.  *warm*: ``get_or_create`` of a live session's name
(reuse).  Target: cold p95 < 1.5 s.
"""

from __future__ import annotations

import asyncio
import time
import uuid

from backend_jupyter.client import APIClient, ComputeSession

from .common import Row, Server, ms, p50_p95, summarize

COLD_TARGET_MS = 1500.0


async def _create(server: Server, cold: int, warm: int) -> dict:
    async with APIClient(server.config) as api:
        cold_times = []
        for i in range(cold + 1):
            t0 = time.perf_counter()
            s = await ComputeSession.get_or_create(api, "python", name=f"bench-cold-{uuid.uuid4().hex[:8]}")
            elapsed = time.perf_counter() - t0
            await s.destroy()
            if i:
                cold_times.append(elapsed)
        session = await ComputeSession.get_or_create(api, "python", name=f"bench-warm-{uuid.uuid4().hex[:8]}")
        try:
            warm_times = []
            for _ in range(warm):
                t0 = time.perf_counter()
                again = await ComputeSession.get_or_create(api, "python", name=session.name)
                warm_times.append(time.perf_counter() - t0)
                if again.created:
                    raise RuntimeError("a warm get_or_create created a new session")
        finally:
            await session.destroy()
    return {"cold": summarize(cold_times, samples=True), "warm": summarize(warm_times, samples=True)}


def session_create(server: Server, cold: int, warm: int, timeout: float = 120.0) -> dict:
    return asyncio.run(asyncio.wait_for(_create(server, cold, warm), timeout))


def rows(results: dict) -> list[Row]:
    cold, warm = results["cold"], results["warm"]
    return [
        Row("5", "session create, cold (new name, new kernel)", cold["n"], f"{p50_p95(cold)} · max {ms(cold['max_ms'])}",
            "", f"p95 < {COLD_TARGET_MS / 1000:g} s", cold["p95_ms"] < COLD_TARGET_MS),
        Row("5", "session create, warm (get_or_create of a live name)", warm["n"], p50_p95(warm)),
    ]
