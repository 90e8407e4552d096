"""Group 8: the reference clients' own execute loops against the same server, no Jupyter between.

- our async client: :func:`backend_jupyter.execution.run_cell`, ``transport="poll"`` and ``"ws"``;
- the official backend.ai-client SDK's synchronous loop (``query``, then ``continue`` until
  ``finished``), run in its own venv (``tests/sdk/venvs.py``): 23.9.10 and 26.9.6.

Each runs the trivial cell ``1`` (after WARMUP untimed runs) and the two 10 MB throughput cells of
group 3 (received text checked byte for byte).  p50 is given as a multiple of the local
ipykernel's p50 of group 1, MB/s as a share of its MB/s in group 3 (measured earlier in the same
run, so load drift on a shared machine can tilt these ratios; groups 1-4 interleave instead).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
import tempfile
import time
import uuid

from backend_jupyter.client import APIClient, ComputeSession
from backend_jupyter.execution import Finished, Output, RunFailed, run_cell

from .common import WARMUP, Row, Server, p50_p95, rate, ratio, summarize
from .output import CELLS

SDK_TIMEOUT = 300.0

# Runs inside an SDK venv: argv = [n, warmup, json {key: code}]; prints one JSON object.
SDK_PROGRAM = r'''
import hashlib, json, sys, time, uuid
from ai.backend.client.session import Session

def run(cs, code):
    r = cs.execute(None, code, mode="query")
    out = []
    while True:
        out += [data for kind, data in r.get("console") or [] if kind == "stdout"]
        if r["status"] in ("finished", "exec-timeout"):
            break
        r = cs.execute(r["runId"], "", mode="continue")
    assert r["status"] == "finished", r["status"]
    return "".join(out)

n, warmup, cells = int(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3])
result = {}
with Session() as s:
    v = getattr(s, "api_version", None)
    result["api_version"] = "v%s.%s" % v if isinstance(v, tuple) else str(v)
    cs = s.ComputeSession.get_or_create("python", name="bench-sdk-" + uuid.uuid4().hex[:8])
    try:
        for _ in range(warmup):
            run(cs, "1")
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            run(cs, "1")
            times.append(time.perf_counter() - t0)
        result["trivial"] = times
        for key, code in cells.items():
            t0 = time.perf_counter()
            text = run(cs, code)
            result[key] = {"seconds": time.perf_counter() - t0, "bytes": len(text),
                           "text_sha": hashlib.sha256(text.encode()).hexdigest()}
    finally:
        cs.destroy()
print(json.dumps(result))
'''


def _throughput(seconds: float, text: str, expected: str) -> dict:
    return {**rate(seconds, len(expected)), "bytes_received": len(text), "exact": text == expected}


# -- our client ------------------------------------------------------------------------------------

async def _consume(session: ComputeSession, code: str, transport: str) -> str:
    out = []
    async for ev in run_cell(session, code, transport=transport):
        if isinstance(ev, Output) and ev.stream == "stdout":
            out.append(ev.text)
        elif isinstance(ev, RunFailed):
            raise RuntimeError(f"{transport} run failed: {ev.error}")
        elif isinstance(ev, Finished) and ev.status != "finished":
            raise RuntimeError(f"{transport} run ended with {ev.status}")
    return "".join(out)


async def _ours(server: Server, n: int) -> dict:
    results = {}
    async with APIClient(server.config) as api:
        session = await ComputeSession.get_or_create(api, "python", name=f"bench-client-{uuid.uuid4().hex[:8]}")
        try:
            for transport in ("poll", "ws"):
                for _ in range(WARMUP):
                    await _consume(session, "1", transport)
                times = []
                for _ in range(n):
                    t0 = time.perf_counter()
                    await _consume(session, "1", transport)
                    times.append(time.perf_counter() - t0)
                r = {"label": f"our client run_cell, {transport}", "api_version": api.api_version,
                     "trivial": summarize(times, samples=True)}
                for key, (_, code, expected) in CELLS.items():
                    t0 = time.perf_counter()
                    text = await _consume(session, code, transport)
                    r[key] = _throughput(time.perf_counter() - t0, text, expected())
                results[f"ours_{transport}"] = r
        finally:
            await session.destroy()
    return results


def ours(server: Server, n: int, timeout: float = 300.0) -> dict:
    return asyncio.run(asyncio.wait_for(_ours(server, n), timeout))


# -- the official SDK ------------------------------------------------------------------------------

def sdk(server: Server, version: str, n: int) -> dict:
    """One SDK generation's runs; raises LookupError when its interpreter is missing here."""
    from tests.sdk.venvs import GENERATIONS, ensure_venv

    python = ensure_venv(GENERATIONS[version])
    cells = {key: code for key, (_, code, _) in CELLS.items()}
    proc = subprocess.run([str(python), "-c", SDK_PROGRAM, str(n), str(WARMUP), json.dumps(cells)],
                          env=server.env(), cwd=tempfile.gettempdir(), capture_output=True, text=True,
                          timeout=SDK_TIMEOUT, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"SDK {version} exited {proc.returncode}: {proc.stderr[-1500:]}")
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    r = {"label": f"backend.ai-client {version} (sync loop)", "api_version": data["api_version"],
         "trivial": summarize(data["trivial"], samples=True)}
    for key, (_, _, expected_text) in CELLS.items():
        expected = expected_text()
        got = data[key]
        r[key] = {**rate(got["seconds"], len(expected)), "bytes_received": got["bytes"],
                  "exact": got["text_sha"] == hashlib.sha256(expected.encode()).hexdigest()}
    return r


def reference_clients(server: Server, n: int, sdk_versions: list[str], errors: dict) -> dict:
    """Our client, then each SDK; an SDK that cannot run here is noted in ``errors`` (not fatal
    for the others)."""
    results = ours(server, n)
    for version in sdk_versions:
        try:
            results[f"sdk_{version}"] = sdk(server, version, n)
        except LookupError as e:
            print(f"skipping SDK {version}: {e}", file=sys.stderr)
            results[f"sdk_{version}"] = {"skipped": str(e)}
        except Exception as e:  # noqa: BLE001 - reported in the table and the JSON
            errors[f"clients.sdk_{version}"] = f"{type(e).__name__}: {e}"
    return results


def rows(results: dict, local_trivial_p50: float | None, local_throughput: dict) -> list[Row]:
    out = []
    for key, r in results.items():
        if "skipped" in r:
            out.append(Row("8", f"{key}: skipped", "", r["skipped"]))
            continue
        t = r["trivial"]
        out.append(Row("8", f"`1` round trip — {r['label']} ({r['api_version']})", t["n"], p50_p95(t),
                       ratio(t["p50_ms"], local_trivial_p50)))
        for cell, (title, _, _) in CELLS.items():
            c = r[cell]
            floor = local_throughput.get(cell, {}).get("mb_per_s")
            out.append(Row("8", f"{title} — {r['label']}", 1,
                           f"{c['seconds']:.2f} s, {c['mb_per_s']:.1f} MB/s, {'exact' if c['exact'] else 'NOT EXACT'}",
                           f"{c['mb_per_s'] / floor:.0%}" if floor else "", "exact text", c["exact"]))
    return out

