"""Round-trip benchmark: our client and the embedded server against a plain local ipykernel.

Run from the repository root (``tests`` must be importable for the SDK venvs):

    python benchmarks/roundtrip.py            # full run (--n 200)
    python benchmarks/roundtrip.py --quick    # n=30, 2 cold creates, SDK 23.9.10 only
    python benchmarks/roundtrip.py --no-sdk   # skip the official backend.ai-client SDK

What is measured (every path is warmed up with a few untimed runs first):

1. Session creation on a fresh embedded server: *cold* (a new session name each time, so a new
   kernel) and *warm* (``get_or_create`` of a live session name, i.e. reuse).
2. Round trip of the trivial cell ``1``:
   - the local floor: an ipykernel driven directly with jupyter_client (execute, wait for the
     reply and the idle status);
   - our client, ``run_cell(..., transport="poll")`` and ``transport="ws"``, consumed to the end;
   - the official SDK's synchronous execute loop (``query``, then ``continue`` until
     ``finished``), run in its own venv (``tests/sdk/venvs.py``): 23.9.10 and, unless --quick,
     26.9.6.  Each p50 is also given as a multiple of the local floor's p50.
3. Time to first output of a cell printing ``a``, sleeping 1 s, then printing ``b``: from the
   start of the run to the first Output event containing ``a`` (poll and ws).

Prints a markdown table (min/p50/p95/max in ms) and writes benchmarks/results/roundtrip.json.
The benchmark owns its server (a temporary data dir) and always stops it and the local kernel.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

from jupyter_client.manager import start_new_kernel

from backend_jupyter.client import APIClient, ComputeSession
from backend_jupyter.embedded import ensure_server
from backend_jupyter.execution import Finished, Output, RunFailed, run_cell

RESULTS = Path(__file__).parent / "results" / "roundtrip.json"
WARMUP = 5
TTFO_CODE = "import time; print('a', flush=True); time.sleep(1); print('b')"

# Runs inside an SDK venv: argv[1] = N; prints the API version, then a JSON list of seconds.
SDK_PROGRAM = r'''
import json, sys, time, uuid
from ai.backend.client.session import Session

def run(cs):
    r = cs.execute(None, "1", mode="query")
    while r["status"] not in ("finished", "exec-timeout"):
        r = cs.execute(r["runId"], "", mode="continue")
    assert r["status"] == "finished", r

n = int(sys.argv[1])
with Session() as s:
    print("api_version", getattr(s, "api_version", None))
    cs = s.ComputeSession.get_or_create("python", name="bench-sdk-" + uuid.uuid4().hex[:8])
    try:
        for _ in range(5):
            run(cs)
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            run(cs)
            times.append(time.perf_counter() - t0)
    finally:
        cs.destroy()
print(json.dumps(times))
'''


# -- statistics ------------------------------------------------------------------------------------

def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile, ``q`` in [0, 1]."""
    s = sorted(values)
    k = (len(s) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def summarize(label: str, seconds: list[float]) -> dict:
    ms = [x * 1000 for x in seconds]
    return {"label": label, "n": len(ms), "min_ms": min(ms), "p50_ms": percentile(ms, 0.5),
            "p95_ms": percentile(ms, 0.95), "max_ms": max(ms), "samples_ms": [round(x, 3) for x in ms]}


# -- 2a. the local floor ---------------------------------------------------------------------------

def bench_local(kc, n: int) -> list[float]:
    """``1`` on a local ipykernel: execute, then wait for execute_reply and idle."""
    times = []
    for _ in range(WARMUP + n):
        t0 = time.perf_counter()
        reply = kc.execute_interactive("1", output_hook=lambda msg: None, timeout=30)
        times.append(time.perf_counter() - t0)
        assert reply["content"]["status"] == "ok", reply["content"]
    return times[WARMUP:]


# -- 1, 2b/c, 3. our client ------------------------------------------------------------------------

async def consume(session: ComputeSession, code: str, transport: str, first: str | None = None) -> float | None:
    """Run ``code`` to the end; returns the seconds until the first Output containing ``first``."""
    t0 = time.perf_counter()
    first_at = None
    async for ev in run_cell(session, code, transport=transport):
        if first is not None and first_at is None and isinstance(ev, Output) and first in ev.text:
            first_at = time.perf_counter() - t0
        if isinstance(ev, RunFailed):
            raise RuntimeError(f"{transport} run failed: {ev.error}")
        if isinstance(ev, Finished) and ev.status != "finished":
            raise RuntimeError(f"{transport} run ended with {ev.status}")
    return first_at


async def timed(n: int, warmup: int, fn) -> list[float]:
    """Seconds per ``await fn()``, ``n`` times after ``warmup`` untimed calls."""
    for _ in range(warmup):
        await fn()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        await fn()
        times.append(time.perf_counter() - t0)
    return times


async def bench_ours(config, args, results: dict, meta: dict) -> None:
    async with APIClient(config) as api:
        meta["our_api_version"] = api.api_version

        # Cold: a new name each time; only the creation is timed, the destroy is not.
        cold_times = []
        for i in range(args.cold + 1):  # first one is an untimed warm-up
            t0 = time.perf_counter()
            s = await ComputeSession.get_or_create(api, "python", name=f"bench-cold-{uuid.uuid4().hex[:8]}")
            elapsed = time.perf_counter() - t0
            await s.destroy()
            if i:
                cold_times.append(elapsed)
        results["create_cold"] = summarize("session create, cold (new name)", cold_times)

        name = f"bench-{uuid.uuid4().hex[:8]}"
        session = await ComputeSession.get_or_create(api, "python", name=name)
        try:
            warm = await timed(20, 2, lambda: ComputeSession.get_or_create(api, "python", name=name))
            results["create_warm"] = summarize("session create, warm (get_or_create existing)", warm)
            for transport in ("poll", "ws"):
                t = await timed(args.n, WARMUP, lambda: consume(session, "1", transport))
                results[f"ours_{transport}"] = summarize(f"`1` via our client, {transport}", t)
            for transport in ("poll", "ws"):
                await consume(session, TTFO_CODE, transport, first="a")  # warm-up
                ttfo = [await consume(session, TTFO_CODE, transport, first="a") for _ in range(5)]
                if None in ttfo:
                    raise RuntimeError(f"{transport}: no Output containing 'a'")
                results[f"ttfo_{transport}"] = summarize(f"first output, {transport} (print, sleep 1 s, print)", ttfo)
        finally:
            await session.destroy()


# -- 2d. the official SDK --------------------------------------------------------------------------

def bench_sdk(version: str, config, n: int, meta: dict) -> list[float] | None:
    from tests.sdk.venvs import GENERATIONS, ensure_venv

    try:
        python = ensure_venv(GENERATIONS[version])
    except LookupError as e:
        print(f"skipping SDK {version}: {e}", file=sys.stderr)
        return None
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKEND_", "SORNA_"))}
    env.update(BACKEND_ENDPOINT=config.endpoint, BACKEND_ACCESS_KEY=config.access_key,
               BACKEND_SECRET_KEY=config.secret_key)
    proc = subprocess.run([str(python), "-c", SDK_PROGRAM, str(n)], env=env, cwd=tempfile.gettempdir(),
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        print(f"SDK {version} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    lines = proc.stdout.strip().splitlines()
    for line in lines:
        if line.startswith("api_version "):
            meta[f"sdk_{version}_api_version"] = line.split(" ", 1)[1]
    return json.loads(lines[-1])


# -- report ----------------------------------------------------------------------------------------

def table(results: dict) -> str:
    floor = results.get("local", {}).get("p50_ms")
    rows = ["| measurement | n | min | p50 | p95 | max | p50 / floor |", "|---|---:|---:|---:|---:|---:|---:|"]
    for key, r in results.items():
        ratio = f"{r['p50_ms'] / floor:.1f}×" if floor and (key == "local" or key.startswith(("ours_", "sdk_"))) else ""
        rows.append(f"| {r['label']} | {r['n']} | {r['min_ms']:.2f} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} "
                    f"| {r['max_ms']:.2f} | {ratio} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=None, help="trivial-cell repetitions (default 200; 30 with --quick)")
    parser.add_argument("--quick", action="store_true", help="n=30, 2 cold creates, SDK 23.9.10 only")
    parser.add_argument("--no-sdk", action="store_true", help="skip the official SDK")
    args = parser.parse_args()
    args.n = args.n or (30 if args.quick else 200)
    args.cold = 2 if args.quick else 5
    generations = [] if args.no_sdk else ["23.9.10"] if args.quick else ["23.9.10", "26.9.6"]

    meta = {"n": args.n, "quick": args.quick, "python": sys.version.split()[0], "platform": platform.platform(),
            "cpus": os.cpu_count(), "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    results: dict[str, dict] = {}
    km, kc = start_new_kernel(kernel_name="python3", stderr=subprocess.DEVNULL)
    server = None
    with tempfile.TemporaryDirectory(prefix="bj-bench-", ignore_cleanup_errors=True) as tmp:
        try:
            results["local"] = summarize("`1` on local ipykernel (jupyter_client): the floor", bench_local(kc, args.n))
            kc.stop_channels()
            km.shutdown_kernel(now=True)
            kc = km = None
            server = ensure_server(Path(tmp) / "server")
            config = server.config()
            asyncio.run(bench_ours(config, args, results, meta))
            for version in generations:
                times = bench_sdk(version, config, args.n, meta)
                if times:
                    results[f"sdk_{version}"] = summarize(f"`1` via backend.ai-client {version} (sync loop)", times)
        finally:
            if kc is not None:
                kc.stop_channels()
                km.shutdown_kernel(now=True)
            if server is not None:
                server.stop()

    order = ["create_cold", "create_warm", "local", "ours_poll", "ours_ws",
             *[f"sdk_{v}" for v in generations], "ttfo_poll", "ttfo_ws"]
    results = {k: results[k] for k in order if k in results}
    print(table(results))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
