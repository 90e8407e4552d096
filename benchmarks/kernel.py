"""Kernel benchmark: the "Backend.AI Python" wrapper kernel against a plain local ipykernel.

    python benchmarks/kernel.py [--quick] [--n N]   # from the repository root; --quick: n=40, 3 TTFO runs

Both kernels (kernelspecs ``python3`` and ``backend-python``, the latter on a private embedded
server in a temporary data dir) are driven identically through jupyter_client: send execute_request,
wait for the shell execute_reply *and* the IOPub ``idle`` of that request (at most IDLE_GRACE s after
the reply: the idle may be dropped under an IOPub flood); IOPub messages are timestamped on arrival.

1. Start to ready; the first cell ``1`` (the wrapper starts its remote session there); after WARMUP
   untimed cells, ``1`` round trips (default n=300): min/p50/p95/max ms and p50 / local p50.
2. Time to first output of ``print('a'); sleep 1 s; print('b')``: request to the first ``stream``
   message containing ``a`` (5 runs after a warm-up).
3. Throughput of ~10 MB in 200,000 short lines and of one 10 MB line: seconds to reply+idle, MB/s,
   stream messages, exact text in order; RSS (sampled every 50 ms) of the kernel process and, for the
   wrapper, of the embedded server and of the server's children (the remote ipykernel).

Prints markdown tables, writes benchmarks/results/kernel.json; always shuts both kernels and the
server down.  The secret key only goes into the wrapper's environment; it is never printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import psutil
import zmq
from jupyter_client import KernelManager

from backend_jupyter.embedded import ensure_server

RESULTS = Path(__file__).parent / "results" / "kernel.json"
WARMUP = 5
IDLE_GRACE = 5.0
TTFO_CODE = "import time; print('a', flush=True); time.sleep(1); print('b')"
LINES_CODE = "for i in range(200000): print(f'{i:08d} ' + 'x'*41)"
LINES_TEXT = "".join(f"{i:08d} " + "x" * 41 + "\n" for i in range(200000))
BIGLINE_CODE = "print('y'*10_000_000)"
BIGLINE_TEXT = "y" * 10_000_000 + "\n"


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile, ``q`` in [0, 1]."""
    s, k = sorted(values), (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def summarize(label: str, seconds: list[float]) -> dict:
    ms = [x * 1000 for x in seconds]
    return {"label": label, "n": len(ms), "min_ms": min(ms), "p50_ms": percentile(ms, 0.5),
            "p95_ms": percentile(ms, 0.95), "max_ms": max(ms), "samples_ms": [round(x, 3) for x in ms]}


class Kernel:
    """One kernel process driven through jupyter_client's blocking client."""

    def __init__(self, kernel_name: str, env: dict[str, str], stderr=None):
        t0 = time.perf_counter()
        self.km = KernelManager(kernel_name=kernel_name)
        self.km.start_kernel(env=env, stderr=stderr)
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)
        self.ready_s = time.perf_counter() - t0
        self.pid = self.km.provisioner.process.pid
        self.poller = zmq.Poller()
        for channel in (self.kc.shell_channel, self.kc.iopub_channel):
            self.poller.register(channel.socket, zmq.POLLIN)

    def run(self, code: str, timeout: float = 300.0) -> dict:
        """Execute ``code``; returns seconds to reply+idle, the reply status, whether the idle came,
        and the stream messages of this request as (seconds since the request, name, text)."""
        shell, iopub = self.kc.shell_channel, self.kc.iopub_channel
        t0 = time.perf_counter()
        msg_id = self.kc.execute(code)
        deadline, reply, idle, streams = t0 + timeout, None, False, []
        while not (reply and idle):
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            events = dict(self.poller.poll(remaining * 1000))
            while iopub.msg_ready():
                msg, now = iopub.get_msg(timeout=0), time.perf_counter()
                if msg["parent_header"].get("msg_id") != msg_id:
                    continue
                if msg["msg_type"] == "stream":
                    streams.append((now - t0, msg["content"]["name"], msg["content"]["text"]))
                elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                    idle = True
            if shell.socket in events and reply is None:
                msg = shell.get_msg(timeout=0)
                if msg["parent_header"].get("msg_id") == msg_id:
                    reply = msg
                    deadline = min(deadline, time.perf_counter() + IDLE_GRACE)  # the idle may be lost
        if reply is None:
            raise TimeoutError(f"no execute_reply within {timeout} s for {code[:60]!r}")
        return {"seconds": time.perf_counter() - t0, "status": reply["content"]["status"], "idle": idle,
                "streams": streams}

    def timed(self, code: str, n: int) -> list[float]:
        runs = [self.run(code) for _ in range(n)]
        assert all(r["status"] == "ok" and r["idle"] for r in runs), code
        return [r["seconds"] for r in runs]

    def shutdown(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


def rss_mb(probes: dict) -> dict[str, float]:
    """RSS in MiB per probe (a callable returning psutil processes); 0 if a process is gone."""
    try:
        return {name: sum(p.memory_info().rss for p in procs()) / 2**20 for name, procs in probes.items()}
    except psutil.Error:
        return {name: 0.0 for name in probes}


def throughput(kernel: Kernel, code: str, expected: str, probes: dict) -> dict:
    """Run an output-heavy cell, check its exact stdout, and sample RSS every 50 ms meanwhile."""
    before, done = rss_mb(probes), threading.Event()
    peak = dict(before)

    def sample() -> None:
        while not done.wait(0.05):
            peak.update({k: max(peak[k], v) for k, v in rss_mb(probes).items()})

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        r = kernel.run(code, timeout=600)
    finally:
        done.set()
        thread.join()
    after = rss_mb(probes)
    rss = {k: {"before_mb": round(before[k], 1), "peak_mb": round(peak[k], 1), "after_mb": round(after[k], 1)}
           for k in probes}
    text = "".join(t for _, name, t in r["streams"] if name == "stdout")
    return {"seconds": round(r["seconds"], 3), "mb_per_s": round(len(expected) / 1e6 / r["seconds"], 2),
            "status": r["status"], "idle": r["idle"], "stream_messages": len(r["streams"]),
            "bytes_expected": len(expected), "bytes_received": len(text), "exact": text == expected,
            "first_stream_s": round(r["streams"][0][0], 3) if r["streams"] else None, "rss": rss}


def bench(kernel: Kernel, key: str, args, results: dict, probes: dict) -> None:
    results["latency"][f"{key}_ready"] = summarize(f"{key}: kernel start to ready", [kernel.ready_s])
    first = kernel.timed("1", 1)  # the wrapper creates its remote session here
    results["latency"][f"{key}_first"] = summarize(f"{key}: first cell `1` (session start)", first)
    kernel.timed("1", WARMUP)
    results["latency"][f"{key}_trivial"] = summarize(f"{key}: `1` round trip", kernel.timed("1", args.n))
    ttfo = []
    for r in [kernel.run(TTFO_CODE) for _ in range(args.ttfo + 1)][1:]:  # the first is a warm-up
        ttfo.append(next((t for t, _, text in r["streams"] if "a" in text), None))
    assert None not in ttfo, f"{key}: no stream message containing 'a'"
    results["latency"][f"{key}_ttfo"] = summarize(f"{key}: first output (print a, sleep 1 s, print b)", ttfo)
    results["throughput"][f"{key}_lines"] = throughput(kernel, LINES_CODE, LINES_TEXT, probes)
    results["throughput"][f"{key}_bigline"] = throughput(kernel, BIGLINE_CODE, BIGLINE_TEXT, probes)


def tables(results: dict) -> str:
    lat = results["latency"]
    rows = ["| measurement | n | min | p50 | p95 | max | p50 / local |", "|---|---:|---:|---:|---:|---:|---:|"]
    for key, r in lat.items():
        floor = lat.get("local" + key[key.index("_"):], {}).get("p50_ms")
        ratio = f"{r['p50_ms'] / floor:.1f}×" if floor else ""
        rows.append(f"| {r['label']} | {r['n']} | {r['min_ms']:.2f} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} "
                    f"| {r['max_ms']:.2f} | {ratio} |")
    rows += ["", "| kernel / cell | s to reply+idle | MB/s | stream msgs | exact | idle | first stream s | "
                 + "peak RSS MB (before → peak → after) |", "|---|---:|---:|---:|---|---|---:|---|"]
    for key, r in results["throughput"].items():
        rss = "; ".join(f"{k} {v['before_mb']:.0f} → {v['peak_mb']:.0f} → {v['after_mb']:.0f}"
                        for k, v in r["rss"].items())
        exact = "yes" if r["exact"] else f"NO ({r['bytes_received']} of {r['bytes_expected']} B)"
        rows.append(f"| {key} | {r['seconds']:.2f} | {r['mb_per_s']:.1f} | {r['stream_messages']} | {exact} "
                    f"| {'yes' if r['idle'] else 'NO'} | {r['first_stream_s']} | {rss} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=None, help="trivial-cell repetitions (default 300; 40 with --quick)")
    parser.add_argument("--quick", action="store_true", help="n=40, 3 first-output runs")
    args = parser.parse_args()
    args.n = args.n or (40 if args.quick else 300)
    args.ttfo = 3 if args.quick else 5
    meta = {"n": args.n, "ttfo_n": args.ttfo, "python": sys.version.split()[0], "platform": platform.platform(),
            "cpus": os.cpu_count(), "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    results: dict = {"latency": {}, "throughput": {}}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKEND_", "SORNA_"))}
    local = wrapper = server = None
    with tempfile.TemporaryDirectory(prefix="bj-kbench-", ignore_cleanup_errors=True) as tmp:
        try:
            local = Kernel("python3", env, stderr=subprocess.DEVNULL)
            lp = psutil.Process(local.pid)
            bench(local, "local", args, results, {"kernel": lambda: [lp]})
            local.shutdown()
            local = None
            server = ensure_server(Path(tmp) / "server")
            cfg = server.config()
            wenv = dict(env, BACKEND_ENDPOINT=cfg.endpoint, BACKEND_ACCESS_KEY=cfg.access_key,
                        BACKEND_SECRET_KEY=cfg.secret_key)
            wrapper = Kernel("backend-python", wenv)
            wp, sp = psutil.Process(wrapper.pid), psutil.Process(server.process.pid)
            bench(wrapper, "wrapper", args, results, {"kernel": lambda: [wp], "server": lambda: [sp],
                                                      "server children": lambda: sp.children(recursive=True)})
        finally:
            for k in (local, wrapper):
                if k is not None:
                    k.shutdown()
            if server is not None:
                server.stop()
    print(tables(results))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
